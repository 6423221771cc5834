"""A seeded, vectorized marketplace simulator with known personalization signal.

Sessions of users with drifting short-term intents (leaf taxonomy, color, price band) browse, search and
buy; ad requests inside sessions show ranked listings whose clicks depend on position and on how well the
ad matches the hidden intent, which only the recent action sequence reveals.

>>> from adsformer.simulator import SimulatorConfig, generate, simulate
>>> ds, truth = generate(SimulatorConfig.preset("tiny"))          # in memory
>>> simulate(SimulatorConfig.preset("demo"), Path("data/demo"))   # dataset + truth.json + images

See :mod:`adsformer.simulator.config` for every knob and the click model formula.
"""

from adsformer.simulator.config import PRESETS, SimulatorConfig
from adsformer.simulator.pipeline import generate, simulate
from adsformer.simulator.truth import Truth, history_empty, signal_report

__all__ = ["PRESETS", "SimulatorConfig", "Truth", "generate", "history_empty", "signal_report", "simulate"]
