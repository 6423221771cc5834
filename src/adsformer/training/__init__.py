"""Training: the loop, its batch sources, data-parallel training over processes, and the evaluation metrics."""
