"""Collectors: gather the records of each snapshot category, without touching disk.

Each collector only reads training objects (step infos, the VecEnv, the model)
and returns detached, JSON-ready dicts; submitting them to a writer is the
callback's job.
"""

from rtsave_async.collectors.env_state import EnvStateReader, ReadingsInStepInfo, build_environment_state_record
from rtsave_async.collectors.episodes import EpisodeTracker
from rtsave_async.collectors.hyperparameters import collect_hyperparameters
from rtsave_async.collectors.learning import ComponentAverager, LearningMetricsTracker, LoggerValueCapture
from rtsave_async.collectors.values import describe_space, plain_copy

__all__ = [
    "ComponentAverager",
    "EnvStateReader",
    "EpisodeTracker",
    "LearningMetricsTracker",
    "LoggerValueCapture",
    "ReadingsInStepInfo",
    "build_environment_state_record",
    "collect_hyperparameters",
    "describe_space",
    "plain_copy",
]
