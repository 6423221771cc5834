"""Training and evaluation: metrics, the training loop, runs on disk."""
