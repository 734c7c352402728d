"""SB3 callbacks that save training data in real time through a background writer.

The training thread only gathers records (``rtsave_async.collectors``), copies
what the environment could still change, and submits them to a
:class:`~rtsave_async.writer.SnapshotWriter`; serialization and disk I/O happen
on the writer's thread.
"""

from __future__ import annotations

import copy
import inspect
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from rtsave_async import names
from rtsave_async.checkpoints.saver import CheckpointSaver
from rtsave_async.collectors import (
    EnvStateReader,
    EpisodeTracker,
    LearningMetricsTracker,
    LoggerValueCapture,
    build_environment_state_record,
    collect_hyperparameters,
)
from rtsave_async.collectors.env_state import (
    ENVIRONMENT_READINGS,
    EPISODE_READINGS,
    LEARNING_READINGS,
    SaveSteps,
    env_attribute_names,
)
from rtsave_async.collectors.episodes import DEFAULT_SUCCESS_KEYS, DEFAULT_SUCCESS_WINDOW
from rtsave_async.collectors.hyperparameters import with_git_revision
from rtsave_async.collectors.values import ValueProblems
from rtsave_async.remote.urls import same_location, save_location
from rtsave_async.validation import check_positive_int
from rtsave_async.writer import SnapshotWriter
from rtsave_async.writer.held_saves import HeldSaves

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm
    from stable_baselines3.common.logger import Logger
    from stable_baselines3.common.vec_env import VecEnv


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

    ``episodes`` files hold a JSON array with one record per env, ``environment_states``
    and ``learning_metrics`` files a one-record array; ``hyperparameters`` and
    ``checkpoints`` files hold one JSON object. The training thread only gathers and
    submits; a background :class:`~rtsave_async.writer.SnapshotWriter` serializes and
    writes.

    .. note::

      Frequencies count environment timesteps (``model.num_timesteps``), not
      callback calls: with ``n_envs=4`` one call is 4 timesteps. A save happens
      each time ``num_timesteps`` reaches or crosses a multiple of ``save_frequency``
      (unlike SB3's ``CheckpointCallback``, no need to divide by ``n_envs``).

    Works alone or in a ``CallbackList`` beside ``EvalCallback``/``CheckpointCallback``,
    with any Gymnasium env under ``DummyVecEnv``/``SubprocVecEnv`` and VecEnv
    wrappers. Envs implementing the optional state protocol (see
    ``rtsave_async.collectors.env_state``) give richer records; other envs leave
    those fields ``null``. Under ``SubprocVecEnv``, saving often, wrap each env in
    :class:`~rtsave_async.collectors.ReadingsInStepInfo`: a save then reads the
    envs' state from the step's infos instead of a round trip to the workers.

    Every hook may be called again, before or after ``learn()`` (rl_zoo3 calls
    ``on_training_end()`` once more after ``learn()``): outside a run they do nothing.
    A later ``learn()`` starts a new writer and continues the episode counters. Driven
    by hand without a model (``_on_training_start()``, ``_on_step()`` with
    ``num_timesteps`` set, ``on_training_end()``), it saves what it can (timesteps,
    counters from ``self.locals`` when present) and skips hyperparameters and
    checkpoints with one warning.

    :param save_dir: root folder of the saved data
    :param save_frequency: save every this many environment timesteps; default 1000
    :param save_episode_data: write ``episodes`` records; default True
    :param save_environment_state: write ``environment_states`` records; default True
    :param save_hyperparameters: write one ``hyperparameters`` record at training
        start; default True
    :param save_checkpoints: write resumable checkpoints under ``checkpoints/``
        (see :class:`~rtsave_async.checkpoints.saver.CheckpointSaver`); default True
    :param checkpoint_frequency: checkpoint period in environment timesteps; a
        checkpoint is taken at the first rollout start at or after each multiple,
        where the model state is consistent, and one more when training ends;
        default 10000
    :param total_timesteps: final ``num_timesteps`` for ``training_progress`` when
        ``learn()`` gives none (a model driven by hand); default None. The target
        ``learn()`` computes (``model._total_timesteps``) is preferred.
    :param verbose: 0 silent, 1 a summary at training end, 2 also one line per save
    :param save_learning_metrics: write ``learning_metrics`` records; default True
    :param writer_options: keyword arguments for the :class:`SnapshotWriter` the
        callback creates (``queue_size``, ``queue_bytes``, ``policy``, ``block_timeout``,
        ``durable``, ``exit_timeout``, ``batch_size``, ``drain_interval``, ``io``);
        default None = writer defaults
    :param writer: an existing writer to submit to instead (its ``save_dir`` must be
        ``save_dir``); the callback flushes but never closes it; default None
    :param success_window: finished episodes averaged in ``recent_success_rate_avg``;
        default 100
    :param save_on_training_end: also save at the last timestep when training ends
        (unless a save just happened there); default True
    :param checkpoint_options: keyword arguments for the
        :class:`~rtsave_async.checkpoints.saver.CheckpointSaver` (``keep_last``,
        ``keep_every``, ``if_busy``, ``save_replay_buffer``, ``resume_command``);
        default None = keep every checkpoint, skip one that is due while the
        previous one is still being written
    :param env_attributes: record field -> the env's own attribute name(s), for envs
        that use other names than ours (e.g. ``{"rand_power": "_rand_power"}``); fields:
        ``rand_power``, ``curriculum_progress``, ``success_count``, ``max_episode_steps``.
        Default None: the names of ``rtsave_async.collectors.env_state.DEFAULT_ENV_ATTRIBUTES``.
    :param success_keys: info keys read as the success signal at an episode's end,
        in order; default ``("is_success", "bipedal_success")``
    """

    def __init__(
        self,
        save_dir: str | os.PathLike[str],
        save_frequency: int = 1000,
        save_episode_data: bool = True,
        save_environment_state: bool = True,
        save_hyperparameters: bool = True,
        save_checkpoints: bool = True,
        checkpoint_frequency: int = 10000,
        total_timesteps: int | None = None,
        verbose: int = 0,
        save_learning_metrics: bool = True,
        writer_options: dict[str, Any] | None = None,
        writer: SnapshotWriter | None = None,
        success_window: int = DEFAULT_SUCCESS_WINDOW,
        save_on_training_end: bool = True,
        checkpoint_options: dict[str, Any] | None = None,
        env_attributes: Mapping[str, str | Sequence[str]] | None = None,
        success_keys: Sequence[str] = DEFAULT_SUCCESS_KEYS,
    ):
        super().__init__(verbose)
        if writer is not None and writer_options:
            raise ValueError("pass either writer or writer_options, not both")
        if writer is not None and not same_location(writer.save_dir, save_dir):
            raise ValueError(f"writer.save_dir {writer.save_dir} differs from save_dir {save_dir}")
        try:  # a misspelt option fails here, not inside learn()
            inspect.signature(SnapshotWriter).bind(save_dir, **(writer_options or {}))
        except TypeError as exc:
            raise TypeError(f"writer_options: {exc}") from None
        env_attribute_names(env_attributes)  # an unknown field fails here too
        self.save_dir = save_location(save_dir)  # a Path, or the URL of a run in object storage
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
        self.env_attributes = dict(env_attributes or {})
        self.success_keys = tuple(success_keys)
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
        self._running = False
        self._env_state: EnvStateReader | None = None
        self._base_venv: VecEnv | None = None
        self._episodes: EpisodeTracker | None = None
        self._learning: LearningMetricsTracker | None = None
        self._logger_capture: tuple[LoggerValueCapture, Logger] | None = None
        self._last_infos: Sequence[dict[str, Any]] | None = None
        self._held_saves: HeldSaves | None = None
        self._warned: set[str] = set()
        #: Values from the env saved as a placeholder or null instead (``counts``: kind -> how many).
        self.value_problems = ValueProblems()

    # ------------------------------------------------------------------ SB3 hooks
    def _init_callback(self) -> None:
        self._ensure_writer()

    def _on_training_start(self) -> None:
        if self._running:
            return
        self._held_saves = HeldSaves(self._ensure_writer())
        model = self._attached_model()
        start = self.num_timesteps
        venv = model.get_env() if model is not None else None
        self._env_state = EnvStateReader(venv, self.env_attributes, self.value_problems)
        # The VecEnv below every wrapper keeps the infos of its automatic resets (``reset_infos``).
        self._base_venv = self._env_state.venv.unwrapped if self._env_state.venv is not None else None
        if self._restored_state is not None:  # resumed from a checkpoint
            previous, envs_were_reset = self._restored_state, False
        elif self._episodes is not None:  # a later learn() on the same callback
            previous, envs_were_reset = self.state_dict(), self.locals.get("reset_num_timesteps", True)
        else:
            previous, envs_were_reset = None, False
        self._restored_state = None
        self._episodes = EpisodeTracker(
            self._env_state.num_envs, self.success_window, self.success_keys, self.value_problems)
        self._learning = LearningMetricsTracker(start, self.value_problems)
        if previous is not None:
            self._continue_counters(previous, envs_were_reset)
        self._save_trigger.restart(start)
        # Envs wrapped in ReadingsInStepInfo only: they read after the steps a copy of the save trigger fires at.
        self._env_state.read_in_steps(self._save_readings(),
                                      SaveSteps(start, self._env_state.num_envs, copy.copy(self._save_trigger)))
        self._checkpoint_trigger.restart(start)
        self.saved_timesteps = []
        self._last_infos = None
        self._running = True
        self._check_total_timesteps(start)
        if model is None:
            if self.save_hyperparameters or self.save_checkpoints:
                self._warn_once("no model is attached (callback driven without learn()): "
                                "hyperparameters and checkpoints are skipped")
            return
        capture = LoggerValueCapture(self._learning)
        capture.attach(model.logger)
        self._logger_capture = (capture, model.logger)
        if self.save_hyperparameters:
            summary = self._env_state.environment_summary()
            record = collect_hyperparameters(model, start, self._planned_total_timesteps(), summary)
            self._submit(names.HYPERPARAMETERS, with_git_revision(record))

    def _on_rollout_start(self) -> None:
        if not self._running:
            return
        self._remember_logger_values()
        self._checkpoint_if_due()

    def _on_rollout_end(self) -> None:
        if self._running:
            self._held_saves.release()  # not held through the policy update
            self._remember_logger_values()

    def _remember_logger_values(self) -> None:
        """Copy what the SB3 logger holds now, recorded but not yet dumped.

        Dumped values reach the tracker through :class:`LoggerValueCapture`; values
        recorded between dumps (``log_interval`` > 1) are copied at rollout start
        (values recorded by ``train()`` are visible), rollout end and training end.
        """
        model = self._attached_model()
        if model is not None:
            self._learning.remember_logger_values(model.logger.name_to_value)

    def _on_step(self) -> bool:
        if not self._running:
            return True
        try:
            self._record_step()
        except Exception as exc:  # a value the collectors did not foresee must not stop training
            self._report_gathering_error("this step's bookkeeping", exc)
        if self._save_trigger.is_due(self.num_timesteps):
            self.save_snapshot()
        return True

    def _record_step(self) -> None:
        dones, infos = self.locals.get("dones"), self.locals.get("infos")
        if infos is not None:
            self._env_state.take_step_readings(infos)
            if dones is not None:
                reset_infos = getattr(self._base_venv, "reset_infos", None)
                self._episodes.record_step(np.asarray(dones), infos, reset_infos)
            if self.save_learning_metrics:
                self._learning.record_step(infos)
            self._last_infos = infos

    def _on_training_end(self) -> None:
        if not self._running:
            return
        try:
            self._remember_logger_values()
            self._checkpoint_if_due(final=True)
            if self.save_on_training_end and self.saved_timesteps[-1:] != [self.num_timesteps]:
                self.save_snapshot()
        finally:
            self._running = False
            self._env_state.close()
            self._finish_writer()

    def _finish_writer(self) -> None:
        """Submit the held saves; detach from the logger; close our writer (flush one we
        were given) and report."""
        if self._held_saves is not None:
            self._held_saves.release()
        if self._logger_capture is not None:
            capture, logger = self._logger_capture
            capture.detach(logger)
            self._logger_capture = None
        writer = self.writer
        if writer is None:
            return
        if self._owns_writer:
            stats = writer.close()
            self.writer = None  # a later learn() creates a fresh one
        else:
            writer.flush(writer.exit_timeout)
            stats = writer.stats()
        self.writer_stats = stats
        if self.verbose >= 1:
            print(
                f"RealTimeSavingCallback: {stats['written']} snapshot file(s) written, "
                f"{stats['dropped']} dropped, {stats['failed']} failed, "
                f"{stats['bytes_written'] / 2**20:.2f} MiB in {self.save_dir}"
            )

    # ------------------------------------------------------------------ saving
    def save_snapshot(self) -> None:
        """Gather this timestep's records, then submit one save per enabled category.

        Makes one batched VecEnv call (one round trip per SubprocVecEnv worker; none when
        its envs are wrapped in :class:`~rtsave_async.collectors.ReadingsInStepInfo`); never touches disk.
        Everything is gathered before the first submit, which wakes the writer thread,
        so that the writer does not compete for the GIL while records are gathered.
        Saves that follow each other within the writer's ``drain_interval`` (saving
        every few steps) are held and submitted a batch at a time
        (:class:`~rtsave_async.writer.held_saves.HeldSaves`), at the latest when the
        rollout ends, before a checkpoint, at training end and by the exit hooks.

        :raises RuntimeError: outside a run (before training starts or after it ended)
        """
        if not self._running:
            raise RuntimeError("RealTimeSavingCallback.save_snapshot() needs a running training "
                               "(between training start and training end)")
        timestep = self.num_timesteps
        try:
            payloads = self._gather_payloads(timestep)
        except Exception as exc:  # as in _on_step: counted, and training goes on
            self._report_gathering_error("this snapshot", exc)
            payloads = []
        self._held_saves.add(payloads)
        self.saved_timesteps.append(timestep)
        if self.verbose >= 2:
            print(f"RealTimeSavingCallback: snapshot at timestep {timestep} taken")

    def _gather_payloads(self, timestep: int) -> list[tuple[str, list[dict[str, Any]]]]:
        """``(category, records)`` for every enabled per-save category."""
        env_state = self._env_state
        readings = env_state.read(self._save_readings())
        payloads = []
        if self.save_learning_metrics:
            record = self._learning.take_record(
                timestep,
                self._planned_total_timesteps(),
                self._episodes.recent_success_rate(),
                readings.curriculum_progress,
            )
            payloads.append((names.LEARNING_METRICS, [record]))
        if self.save_episode_data:
            records = self._episodes.take_records(
                timestep,
                readings.detailed_episode_info,
                readings.performance_metrics,
                env_state.max_episode_steps,
                env_state.dt,
                readings.success_counts,
                self._last_infos,
                copied=True,  # the reader's results are fresh plain copies
            )
            payloads.append((names.EPISODES, records))
        if self.save_environment_state:
            record = build_environment_state_record(timestep, env_state.num_envs, readings)
            payloads.append((names.ENVIRONMENT_STATES, [record]))
        return payloads

    def _save_readings(self) -> tuple[str, ...]:
        """The :class:`EnvReadings` fields a save reads."""
        return ((LEARNING_READINGS if self.save_learning_metrics else ())
                + (EPISODE_READINGS if self.save_episode_data else ())
                + (ENVIRONMENT_READINGS if self.save_environment_state else ()))

    def _checkpoint_if_due(self, final: bool = False) -> None:
        """Checkpoint if a multiple of ``checkpoint_frequency`` was reached (training thread: copies only).

        With ``final`` (training end) a checkpoint is always taken unless one was just
        taken at this timestep, waiting for the previous one if it is still in flight:
        the state a run ends in can always be resumed. Nothing without a model.
        """
        saver, model = self.checkpoint_saver, self._attached_model()
        if saver is None or model is None:
            return
        due = self._checkpoint_trigger.is_due(self.num_timesteps)
        if not (due or (final and saver.submitted_timesteps[-1:] != [self.num_timesteps])):
            return
        total = self._planned_total_timesteps() or self.num_timesteps
        self._held_saves.release()  # the saves before a checkpoint are submitted before it
        taken = saver.checkpoint(self.writer, model, self.state_dict(), total, wait_if_busy=final)
        if self.verbose >= 2:
            print(f"RealTimeSavingCallback: checkpoint at timestep {self.num_timesteps} "
                  f"{'submitted' if taken else 'skipped (previous one still being written)'}")

    # ------------------------------------------------------------------ resume
    def state_dict(self) -> dict[str, Any]:
        """The callback's own counters (episodes, last logger values), saved in every checkpoint.

        Empty before the first training start.
        """
        if self._episodes is None:
            return {}
        return {"episodes": self._episodes.state_dict(), "logger": dict(self._learning.logger_values)}

    def restore_state(self, state: dict[str, Any] | None) -> None:
        """Continue the counters of a checkpoint (``ResumedRun.callback_state``) in the next ``learn()``."""
        self._restored_state = state

    def _continue_counters(self, state: dict[str, Any], envs_were_reset: bool) -> None:
        """Load a :meth:`state_dict` into the fresh trackers of a new run."""
        # Last known values: the first records after a resume are not left with an empty ``logger``.
        self._learning.remember_logger_values(state.get("logger") or {})
        if not state.get("episodes"):
            return
        try:
            self._episodes.load_state_dict(state["episodes"])
        except ValueError as exc:  # e.g. resumed with another number of envs
            warnings.warn(f"RealTimeSavingCallback: episode counters start from zero: {exc}", stacklevel=3)
            return
        if envs_were_reset:
            self._episodes.restart_episodes()

    def episode_counts(self) -> list[int]:
        """Finished episodes per env, including those before a resume (empty before training)."""
        return list(self._episodes.episode_counts) if self._episodes is not None else []

    def success_counts(self) -> list[int]:
        """Successful episodes per env (the ``success_keys`` signal), including those before a resume."""
        return list(self._episodes.success_counts) if self._episodes is not None else []

    @property
    def success_signal_seen(self) -> bool:
        """True once a finished episode gave a success signal (a ``success_keys`` info key,
        or a ``success_rate`` the env reported). Without one, ``success_rate`` and
        ``recent_success_rate_avg`` stay null: "no success signal", not "never succeeded"."""
        return self._episodes is not None and self._episodes.success_signal_seen

    # ------------------------------------------------------------------ helpers
    def _attached_model(self) -> BaseAlgorithm | None:
        """The model ``learn()`` attached, or None when the callback is driven by hand."""
        return getattr(self, "model", None)

    def _ensure_writer(self) -> SnapshotWriter:
        if self.writer is None:
            self.writer = SnapshotWriter(self.save_dir, **self.writer_options)
        return self.writer

    def _submit(self, category: str, records: Any) -> None:
        self._ensure_writer().submit(category, records)  # a drop is counted and logged by the writer

    def _planned_total_timesteps(self) -> int | None:
        """The final timestep ``learn()`` aims at, else the ``total_timesteps`` option."""
        return getattr(self._attached_model(), "_total_timesteps", None) or self.total_timesteps or None

    def _check_total_timesteps(self, start: int) -> None:
        if self.total_timesteps is not None and self.total_timesteps <= start:
            self._warn_once(
                f"total_timesteps ({self.total_timesteps}) is not above the starting timestep ({start}); "
                f"training_progress uses the target of learn() ({self._planned_total_timesteps()})"
            )

    def _report_gathering_error(self, what: str, exc: Exception) -> None:
        self.value_problems.report(f"gathering raised {type(exc).__name__}",
                                   f"gathering {what} raised {exc!r:.200}; it is skipped")

    def _warn_once(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            warnings.warn(f"RealTimeSavingCallback: {message}", stacklevel=3)


class ComprehensiveSavingCallback(RealTimeSavingCallback):
    """
    :class:`RealTimeSavingCallback` with every category and checkpoints switched on
    (unless switched off through ``kwargs``).

    Frequencies count environment timesteps (``model.num_timesteps``), not callback
    calls.

    :param save_dir: root folder of the saved data
    :param save_frequency: save every this many environment timesteps; default 1000
    :param checkpoint_frequency: checkpoint period in environment timesteps; default 10000
    :param verbose: 0 silent, 1 a summary at training end (default), 2 also per save
    :param kwargs: other :class:`RealTimeSavingCallback` options (``total_timesteps``,
        ``save_episode_data``, ``save_environment_state``, ``save_hyperparameters``,
        ``save_checkpoints``, ``save_learning_metrics``, ``writer_options``, ``writer``,
        ``success_window``, ``save_on_training_end``, ``checkpoint_options``,
        ``env_attributes``, ``success_keys``)
    """

    def __init__(
        self,
        save_dir: str | os.PathLike[str],
        save_frequency: int = 1000,
        checkpoint_frequency: int = 10000,
        verbose: int = 1,
        **kwargs: Any,
    ):
        super().__init__(
            save_dir,
            save_frequency=save_frequency,
            checkpoint_frequency=checkpoint_frequency,
            verbose=verbose,
            **kwargs,
        )
