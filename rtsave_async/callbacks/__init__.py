"""Stable-Baselines3 callbacks for real-time saving."""

from rtsave_async.callbacks.curriculum import CurriculumCallback
from rtsave_async.callbacks.realtime import ComprehensiveSavingCallback, RealTimeSavingCallback

__all__ = ["ComprehensiveSavingCallback", "CurriculumCallback", "RealTimeSavingCallback"]
