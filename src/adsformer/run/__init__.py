"""A run: what training writes and serving reads.

The experiment config (:mod:`~adsformer.run.config`), the run directory on disk
(:mod:`~adsformer.run.artifact`), the probability corrections applied after the model
(:mod:`~adsformer.run.calibration`), the model built for a feature set (:mod:`~adsformer.run.model`), the
scoring function (:mod:`~adsformer.run.scoring`), the :class:`~adsformer.run.predictor.Predictor` and the
TorchScript export (:mod:`~adsformer.run.export`). Training and serving both build on this package; it
imports neither.
"""
