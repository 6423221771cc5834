"""Experiments: configurations of whole runs, the train / evaluate / ablate pipelines and the demo."""
