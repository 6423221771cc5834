"""Experiments: the train / evaluate pipelines, ablations, the daily and position studies, the A/B test and the demo."""
