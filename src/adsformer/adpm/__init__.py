"""ADPM, the adSformer diversifiable personalization module (paper section 2)."""

from adsformer.adpm.config import ADPMConfig, EncoderConfig, LearnedConfig, PretrainedConfig, TouchConfig
from adsformer.adpm.module import ADPM

__all__ = ["ADPM", "ADPMConfig", "EncoderConfig", "LearnedConfig", "PretrainedConfig", "TouchConfig"]
