"""The training progress bar of ``rtsave train``."""

from __future__ import annotations

import sys

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.type_aliases import TrainFrequencyUnit
from tqdm import tqdm


def timesteps_per_round(model: BaseAlgorithm) -> int | None:
    """Timesteps between the points where ``learn()`` checks its target, or None if that varies.

    On-policy algorithms collect whole rollouts (``n_steps`` per env); off-policy ones
    ``train_freq`` steps per env (unknown when counted in episodes).
    """
    if isinstance(model, OnPolicyAlgorithm):
        return model.n_steps * model.n_envs
    if isinstance(model, OffPolicyAlgorithm) and model.train_freq.unit == TrainFrequencyUnit.STEP:
        return model.train_freq.frequency * model.n_envs
    return None


def planned_stop(model: BaseAlgorithm, total_timesteps: int) -> int:
    """The timestep ``learn()`` actually stops at when asked to reach ``total_timesteps``."""
    step = timesteps_per_round(model)
    remaining = total_timesteps - model.num_timesteps
    if step is None or remaining <= 0:
        return total_timesteps
    return model.num_timesteps + -(-remaining // step) * step


class ProgressBar(BaseCallback):
    """A tqdm bar from ``start`` to ``stop`` environment timesteps, never past ``stop``.

    :meth:`close` ends the bar's line; call it before printing anything else (also
    after Ctrl-C), so printed lines are never interleaved with the bar.
    """

    def __init__(self, start: int, stop: int) -> None:
        super().__init__()
        self._bar = tqdm(total=stop - start, unit="step", file=sys.stderr, dynamic_ncols=True, smoothing=0.1)
        self._start = start

    def _on_step(self) -> bool:
        done = min(self.num_timesteps - self._start, self._bar.total)
        if done > self._bar.n:
            self._bar.update(done - self._bar.n)
        return True

    def close(self) -> None:
        self._bar.close()
