"""Curriculum callback: lower the environments' domain randomization (``rand_power``) over training."""

from __future__ import annotations

import warnings

from stable_baselines3.common.callbacks import BaseCallback

SET_RAND_POWER = "set_rand_power"


class CurriculumCallback(BaseCallback):
    """Move every env's ``rand_power`` linearly from ``initial_rand_power`` to ``final_rand_power``.

    Schedule units are environment timesteps, i.e. ``model.num_timesteps`` (summed over all
    envs of the VecEnv): the value is ``initial_rand_power`` up to ``start_timestep``,
    ``final_rand_power`` from ``end_timestep`` on, and linear in between.

    The value is sent with ``training_env.env_method("set_rand_power", value)`` at training
    start and then only when it has moved by at least ``min_change`` since the last send, or
    when the final value is reached. Envs take it from their next reset. If the envs have no
    ``set_rand_power`` method the callback warns once and does nothing.

    After a resume, continue the ramp rather than restart it: pass the value the envs had
    in the checkpoint as ``initial_rand_power`` and the resumed timestep as
    ``start_timestep`` (``rtsave train`` does this).

    Args:
        initial_rand_power: value at and before ``start_timestep``.
        final_rand_power: value at and after ``end_timestep``.
        start_timestep: environment timestep where the ramp begins.
        end_timestep: environment timestep where the ramp ends (> ``start_timestep``).
        min_change: smallest change of the value worth sending to the envs.
        verbose: 1 prints every value sent.
    """

    def __init__(
        self,
        initial_rand_power: float = 1.0,
        final_rand_power: float = 0.0,
        start_timestep: int = 0,
        end_timestep: int = 1_000_000,
        min_change: float = 0.01,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose)
        if end_timestep <= start_timestep:
            raise ValueError(f"end_timestep ({end_timestep}) must be greater than start_timestep ({start_timestep})")
        if min_change <= 0:
            raise ValueError(f"min_change must be positive, got {min_change}")
        self.initial_rand_power = float(initial_rand_power)
        self.final_rand_power = float(final_rand_power)
        self.start_timestep = int(start_timestep)
        self.end_timestep = int(end_timestep)
        self.min_change = float(min_change)
        #: Last value sent to the envs (None before the first send or when unsupported).
        self.current_rand_power: float | None = None
        self._supported = False

    def rand_power_at(self, timestep: int) -> float:
        """Scheduled ``rand_power`` at an environment timestep."""
        fraction = (timestep - self.start_timestep) / (self.end_timestep - self.start_timestep)
        fraction = min(1.0, max(0.0, fraction))
        return self.initial_rand_power + fraction * (self.final_rand_power - self.initial_rand_power)

    def _on_training_start(self) -> None:
        self._supported = self.training_env.has_attr(SET_RAND_POWER)
        if not self._supported:
            warnings.warn(
                f"CurriculumCallback: the training envs have no {SET_RAND_POWER}() method; "
                "rand_power will not be scheduled.",
                stacklevel=2,
            )
            return
        self._send(self.rand_power_at(self.num_timesteps))

    def _on_step(self) -> bool:
        if self._supported:
            value = self.rand_power_at(self.num_timesteps)
            reached_final = value == self.final_rand_power and self.current_rand_power != value
            if reached_final or abs(value - self.current_rand_power) >= self.min_change:
                self._send(value)
        return True

    def _send(self, value: float) -> None:
        self.training_env.env_method(SET_RAND_POWER, value)
        self.current_rand_power = value
        self.logger.record("curriculum/rand_power", value)
        if self.verbose >= 1:
            print(f"CurriculumCallback: rand_power = {value:.4f} at timestep {self.num_timesteps}")
