"""SB3 callbacks that save training data in real time through a background writer.

The training thread only gathers records (``rtsave_async.collectors``), copies
what the environment could still change, and submits them to a
:class:`~rtsave_async.writer.SnapshotWriter`; serialization and disk I/O happen
on the writer's thread.
"""

from __future__ import annotations

import inspect
import os
import warnings
from pathlib import Path
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback

from rtsave_async import names
from rtsave_async.callbacks.checkpointing import CheckpointSaver
from rtsave_async.collectors import (
    EnvStateReader,
    EpisodeTracker,
    LearningMetricsTracker,
    build_environment_state_record,
    collect_hyperparameters,
)
from rtsave_async.collectors.hyperparameters import with_git_revision
from rtsave_async.collectors.episodes import DEFAULT_SUCCESS_WINDOW
from rtsave_async.validation import check_positive_int
from rtsave_async.writer import SnapshotWriter


class TimestepTrigger:
    """Fires once each time the timestep count crosses a multiple of ``frequency``.

    With several envs one callback call advances ``num_timesteps`` by ``n_envs``, so
    a multiple can be crossed without being hit exactly; it still fires once.

    :param frequency: period in environment timesteps (>= 1)
    :param name: the setting ``frequency`` comes from, for error messages
    """

    def __init__(self, frequency: int, name: str = "frequency"):
        self.frequency = check_positive_int(f"{name} (environment timesteps)", frequency)
        self.next_timestep = frequency

    def restart(self, start_timestep: int) -> None:
        """Count from ``start_timestep``: next firing at the first multiple above it."""
        self.next_timestep = self._next_multiple(start_timestep)

    def _next_multiple(self, timestep: int) -> int:
        return (timestep // self.frequency + 1) * self.frequency

    def is_due(self, timestep: int) -> bool:
        """True (once) when ``timestep`` reached the next multiple of ``frequency``."""
        if timestep < self.next_timestep:
            return False
        self.next_timestep = self._next_multiple(timestep)
        return True


class RealTimeSavingCallback(BaseCallback):
    """
    Save episode data, environment state, learning metrics and hyper-parameters
    while training, without blocking the training loop.

    Every ``save_frequency`` environment timesteps, one file per enabled category is
    written under ``save_dir``::

        <save_dir>/episodes/episodes_<YYYYMMDD_HHMMSS>_<seq>.json
        <save_dir>/environment_states/env_states_<YYYYMMDD_HHMMSS>_<seq>.json
        <save_dir>/learning_metrics/learning_metrics_<YYYYMMDD_HHMMSS>_<seq>.json
        <save_dir>/hyperparameters/hyperparameters_<YYYYMMDD_HHMMSS>_<seq>.json  (at training start)

    Each file holds a JSON array: one record per env for ``episodes``, one record
    otherwise. The training thread only gathers and submits; a background
    :class:`~rtsave_async.writer.SnapshotWriter` serializes and writes.

    .. note::

      Frequencies count environment timesteps (``model.num_timesteps``), not
      callback calls: with ``n_envs=4`` one call is 4 timesteps. A save happens
      each time ``num_timesteps`` reaches or crosses a multiple of ``save_frequency``
      (unlike SB3's ``CheckpointCallback``, no need to divide by ``n_envs``).

    Works alone or in a ``CallbackList`` beside ``EvalCallback``/``CheckpointCallback``,
    with any Gymnasium env under ``DummyVecEnv``/``SubprocVecEnv`` and VecEnv
    wrappers. Envs implementing the optional state protocol (see
    ``rtsave_async.collectors.env_state``) give richer records; other envs leave
    those fields ``null``.

    :param save_dir: root folder of the saved data
    :param save_frequency: save every this many environment timesteps; default 1000
    :param save_episode_data: write ``episodes`` records; default True
    :param save_environment_state: write ``environment_states`` records; default True
    :param save_learning_metrics: write ``learning_metrics`` records; default True
    :param save_hyperparameters: write one ``hyperparameters`` record at training
        start; default True
    :param save_checkpoints: write resumable checkpoints under ``checkpoints/``
        (see :class:`~rtsave_async.callbacks.checkpointing.CheckpointSaver`); default True
    :param checkpoint_frequency: checkpoint period in environment timesteps; a
        checkpoint is taken at the first rollout start at or after each multiple,
        where the model state is consistent, and one more when training ends;
        default 10000
    :param total_timesteps: planned final ``num_timesteps`` for ``training_progress``;
        default None = the value ``model.learn()`` was given
    :param verbose: 0 silent, 1 a summary at training end, 2 also one line per save
    :param writer_options: keyword arguments for the :class:`SnapshotWriter` the
        callback creates (``queue_size``, ``policy``, ``block_timeout``, ``durable``,
        ``exit_timeout``, ``batch_size``, ``drain_interval``, ``io``); default None =
        writer defaults
    :param writer: an existing writer to submit to instead (its ``save_dir`` must be
        ``save_dir``); the callback flushes but never closes it; default None
    :param success_window: finished episodes averaged in ``recent_success_rate_avg``;
        default 100
    :param save_on_training_end: also save at the last timestep when training ends
        (unless a save just happened there); default True
    :param checkpoint_options: keyword arguments for the
        :class:`~rtsave_async.callbacks.checkpointing.CheckpointSaver` (``keep_last``,
        ``keep_every``, ``if_busy``, ``save_replay_buffer``, ``resume_command``);
        default None = keep every checkpoint, skip one that is due while the
        previous one is still being written
    """

    def __init__(
        self,
        save_dir: str | os.PathLike[str],
        save_frequency: int = 1000,
        save_episode_data: bool = True,
        save_environment_state: bool = True,
        save_learning_metrics: bool = True,
        save_hyperparameters: bool = True,
        save_checkpoints: bool = True,
        checkpoint_frequency: int = 10000,
        total_timesteps: int | None = None,
        verbose: int = 0,
        writer_options: dict[str, Any] | None = None,
        writer: SnapshotWriter | None = None,
        success_window: int = DEFAULT_SUCCESS_WINDOW,
        save_on_training_end: bool = True,
        checkpoint_options: dict[str, Any] | None = None,
    ):
        super().__init__(verbose)
        if writer is not None and writer_options:
            raise ValueError("pass either writer or writer_options, not both")
        if writer is not None and Path(writer.save_dir).resolve() != Path(save_dir).resolve():
            raise ValueError(f"writer.save_dir {writer.save_dir} differs from save_dir {save_dir}")
        try:  # a misspelt option fails here, not inside learn()
            inspect.signature(SnapshotWriter).bind(save_dir, **(writer_options or {}))
        except TypeError as exc:
            raise TypeError(f"writer_options: {exc}") from None
        self.save_dir = Path(save_dir)
        self.save_frequency = save_frequency
        self.save_episode_data = save_episode_data
        self.save_environment_state = save_environment_state
        self.save_learning_metrics = save_learning_metrics
        self.save_hyperparameters = save_hyperparameters
        self.save_checkpoints = save_checkpoints
        self.checkpoint_frequency = checkpoint_frequency
        self.total_timesteps = total_timesteps
        self.writer_options = dict(writer_options or {})
        self.success_window = success_window
        self.save_on_training_end = save_on_training_end
        self.writer: SnapshotWriter | None = writer
        self._owns_writer = writer is None
        #: Timesteps at which a snapshot was saved during the current ``learn()``.
        self.saved_timesteps: list[int] = []
        self._save_trigger = TimestepTrigger(save_frequency, "save_frequency")
        self._checkpoint_trigger = TimestepTrigger(checkpoint_frequency, "checkpoint_frequency")
        self.checkpoint_saver = CheckpointSaver(**(checkpoint_options or {})) if save_checkpoints else None
        #: The writer's statistics when training ended (None before).
        self.writer_stats: dict[str, Any] | None = None
        self._restored_state: dict[str, Any] | None = None

    # ------------------------------------------------------------------ SB3 hooks
    def _init_callback(self) -> None:
        if self.writer is None:
            self.writer = SnapshotWriter(self.save_dir, **self.writer_options)

    def _on_training_start(self) -> None:
        start = self.num_timesteps
        self._env_state = EnvStateReader(self.training_env)
        self._episodes = EpisodeTracker(self._env_state.num_envs, self.success_window)
        if self._restored_state is not None:
            try:
                self._episodes.load_state_dict(self._restored_state["episodes"])
            except ValueError as exc:  # e.g. resumed with another number of envs
                warnings.warn(f"RealTimeSavingCallback: episode counters start from zero: {exc}", stacklevel=2)
            self._restored_state = None
        self._learning = LearningMetricsTracker(start)
        self._save_trigger.restart(start)
        self._checkpoint_trigger.restart(start)
        self.saved_timesteps = []
        if self.save_hyperparameters:
            summary = self._env_state.environment_summary()
            record = collect_hyperparameters(self.model, start, self._planned_total_timesteps(), summary)
            self._submit(names.HYPERPARAMETERS, with_git_revision(record))

    def _on_rollout_start(self) -> None:
        self._remember_logger_values()
        self._checkpoint_if_due()

    def _on_rollout_end(self) -> None:
        self._remember_logger_values()

    def _remember_logger_values(self) -> None:
        """Copy what the SB3 logger holds now; it clears its values on every dump.

        Called at rollout start (values recorded by ``train()`` are visible), rollout
        end (values recorded by callbacks such as ``EvalCallback``) and training end,
        i.e. around every dump, instead of in the save path.
        """
        self._learning.remember_logger_values(self.model.logger.name_to_value)

    def _on_step(self) -> bool:
        dones, infos = self.locals["dones"], self.locals["infos"]
        self._episodes.record_step(dones, infos)
        if self.save_learning_metrics:
            self._learning.record_step(infos)
        if self._save_trigger.is_due(self.num_timesteps):
            self.save_snapshot()
        return True

    def _on_training_end(self) -> None:
        self._remember_logger_values()
        self._checkpoint_if_due(final=True)
        if self.save_on_training_end and self.saved_timesteps[-1:] != [self.num_timesteps]:
            self.save_snapshot()
        assert self.writer is not None
        if self._owns_writer:
            stats = self.writer.close()
            self.writer = None  # a later learn() creates a fresh one
        else:
            self.writer.flush(self.writer.exit_timeout)
            stats = self.writer.stats()
        self.writer_stats = stats
        if self.verbose >= 1:
            print(
                f"RealTimeSavingCallback: {stats['written']} snapshot file(s) written, "
                f"{stats['dropped']} dropped, {stats['failed']} failed, "
                f"{stats['bytes_written'] / 2**20:.2f} MiB in {self.save_dir}"
            )

    # ------------------------------------------------------------------ saving
    def save_snapshot(self) -> None:
        """Gather this timestep's records, then submit one file per enabled category.

        Makes at most one batched VecEnv call per protocol item; never touches disk.
        Everything is gathered before the first submit, which wakes the writer thread,
        so that the writer does not compete for the GIL while records are gathered.
        """
        timestep = self.num_timesteps
        for category, records in self._gather_payloads(timestep):
            self._submit(category, records)
        self.saved_timesteps.append(timestep)
        if self.verbose >= 2:
            print(f"RealTimeSavingCallback: snapshot at timestep {timestep} submitted")

    def _gather_payloads(self, timestep: int) -> list[tuple[str, list[dict[str, Any]]]]:
        """``(category, records)`` for every enabled per-save category."""
        env_state = self._env_state
        payloads = []
        if self.save_learning_metrics:
            record = self._learning.take_record(
                timestep,
                self._planned_total_timesteps(),
                self._episodes.recent_success_rate(),
                env_state.curriculum_progress(),
            )
            payloads.append((names.LEARNING_METRICS, [record]))
        if self.save_episode_data:
            records = self._episodes.take_records(
                timestep,
                env_state.detailed_episode_info(),
                env_state.performance_metrics(),
                env_state.max_episode_steps,
                env_state.dt,
            )
            payloads.append((names.EPISODES, records))
        if self.save_environment_state:
            payloads.append((names.ENVIRONMENT_STATES, [build_environment_state_record(timestep, env_state)]))
        return payloads

    def _checkpoint_if_due(self, final: bool = False) -> None:
        """Checkpoint if a multiple of ``checkpoint_frequency`` was reached (training thread: copies only).

        With ``final`` (training end) a checkpoint is always taken unless one was just
        taken at this timestep, waiting for the previous one if it is still in flight:
        the state a run ends in can always be resumed.
        """
        saver = self.checkpoint_saver
        if saver is None:
            return
        due = self._checkpoint_trigger.is_due(self.num_timesteps)
        if not (due or (final and saver.submitted_timesteps[-1:] != [self.num_timesteps])):
            return
        assert self.writer is not None
        total = self._planned_total_timesteps() or self.num_timesteps
        taken = saver.checkpoint(self.writer, self.model, self.state_dict(), total, wait_if_busy=final)
        if self.verbose >= 2:
            print(f"RealTimeSavingCallback: checkpoint at timestep {self.num_timesteps} "
                  f"{'submitted' if taken else 'skipped (previous one still being written)'}")

    # ------------------------------------------------------------------ resume
    def state_dict(self) -> dict[str, Any]:
        """The callback's own counters, saved in every checkpoint."""
        return {"episodes": self._episodes.state_dict()}

    def restore_state(self, state: dict[str, Any] | None) -> None:
        """Continue the counters of a checkpoint (``ResumedRun.callback_state``) in the next ``learn()``."""
        self._restored_state = state

    def episode_counts(self) -> list[int]:
        """Finished episodes per env, including those before a resume."""
        return list(self._episodes.episode_counts)

    def success_counts(self) -> list[int]:
        """Successful episodes per env (``info["is_success"]``), including those before a resume."""
        return list(self._episodes.success_counts)

    def _submit(self, category: str, records: Any) -> None:
        assert self.writer is not None
        self.writer.submit(category, records)  # a drop is counted and logged by the writer

    def _planned_total_timesteps(self) -> int | None:
        return self.total_timesteps or getattr(self.model, "_total_timesteps", None) or None


class ComprehensiveSavingCallback(RealTimeSavingCallback):
    """
    :class:`RealTimeSavingCallback` with every category and checkpoints switched on.

    Frequencies count environment timesteps (``model.num_timesteps``), not callback
    calls.

    :param save_dir: root folder of the saved data
    :param save_frequency: save every this many environment timesteps; default 1000
    :param checkpoint_frequency: checkpoint period in environment timesteps; default 10000
    :param total_timesteps: planned final ``num_timesteps``; default None = from ``learn()``
    :param verbose: 0 silent, 1 a summary at training end (default), 2 also per save
    :param kwargs: other :class:`RealTimeSavingCallback` options (``writer_options``,
        ``writer``, ``success_window``, ``save_on_training_end``, ``checkpoint_options``)
    """

    def __init__(
        self,
        save_dir: str | os.PathLike[str],
        save_frequency: int = 1000,
        checkpoint_frequency: int = 10000,
        total_timesteps: int | None = None,
        verbose: int = 1,
        **kwargs: Any,
    ):
        super().__init__(
            save_dir,
            save_frequency=save_frequency,
            save_episode_data=True,
            save_environment_state=True,
            save_learning_metrics=True,
            save_hyperparameters=True,
            save_checkpoints=True,
            checkpoint_frequency=checkpoint_frequency,
            total_timesteps=total_timesteps,
            verbose=verbose,
            **kwargs,
        )
