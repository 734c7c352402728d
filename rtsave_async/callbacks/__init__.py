"""Stable-Baselines3 callbacks for real-time saving."""

from rtsave_async.callbacks.checkpointing import CheckpointSaver
from rtsave_async.callbacks.curriculum import CurriculumCallback
from rtsave_async.callbacks.realtime import ComprehensiveSavingCallback, RealTimeSavingCallback

__all__ = ["CheckpointSaver", "ComprehensiveSavingCallback", "CurriculumCallback", "RealTimeSavingCallback"]
