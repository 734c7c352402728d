"""CheckpointSaver: the checkpoint job of the saving callbacks.

Checkpoints are taken where the model state is consistent: at the first rollout
start (after the previous update) at or after each multiple of
``checkpoint_frequency`` environment timesteps, and when training ends.
The training thread only copies (:func:`capture_checkpoint`); the writer thread
encodes, writes and applies retention (through the writer's sink, on its loop).
"""

from __future__ import annotations

import shlex
import sys
import threading
from collections.abc import Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rtsave_async.checkpoints.capture import ResumeCommand, capture_checkpoint
from rtsave_async.checkpoints.retention import prune_checkpoints
from rtsave_async.names import CHECKPOINTS
from rtsave_async.remote.urls import save_location
from rtsave_async.validation import check_positive_int

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm

    from rtsave_async.sinks import Sink
    from rtsave_async.writer import SnapshotWriter

IF_BUSY_POLICIES = ("skip", "wait")


class CheckpointSaver:
    """Takes checkpoints and submits them to a writer, at most one in flight.

    :param keep_last: newest checkpoints kept on disk; None keeps all. Default None.
    :param keep_every: also keep every checkpoint whose sequence number is a multiple
        of this; default None.
    :param if_busy: when a checkpoint is due while the previous one is still being
        written: ``"skip"`` (default) counts it in ``skipped`` and goes on; ``"wait"``
        blocks the training thread until the previous one is on disk (at most the
        writer's ``exit_timeout``, then skips).
    :param save_replay_buffer: include off-policy replay buffers; default True.
    :param resume_command: (absolute model-zip path, checkpoint timestep) -> the
        command line that resumes from it (the ``rtsave`` command line passes its
        own); default :func:`script_resume_command`: the command that started this
        process with ``--model_path`` pointed at the checkpoint, or None.
    """

    def __init__(
        self,
        keep_last: int | None = None,
        keep_every: int | None = None,
        if_busy: str = "skip",
        save_replay_buffer: bool = True,
        resume_command: ResumeCommand | None = None,
    ) -> None:
        if if_busy not in IF_BUSY_POLICIES:
            raise ValueError(f"if_busy must be one of {IF_BUSY_POLICIES}, got {if_busy!r}")
        for name, value in (("keep_last", keep_last), ("keep_every", keep_every)):
            if value is not None:
                check_positive_int(f"{name} (or None)", value)
        self.keep_last = keep_last
        self.keep_every = keep_every
        self.if_busy = if_busy
        self.save_replay_buffer = save_replay_buffer
        self.resume_command = resume_command or script_resume_command
        self.submitted_timesteps: list[int] = []
        self.written: list[Path | str] = []  # a URL (str) for a run in object storage
        self.failed = 0
        self.skipped = 0
        self._idle = threading.Event()
        self._idle.set()

    def checkpoint(
        self,
        writer: SnapshotWriter,
        model: BaseAlgorithm,
        callback_state: dict[str, Any],
        total_timesteps: int,
        wait_if_busy: bool = False,
    ) -> bool:
        """Copy the model and submit it; False if skipped (busy) or dropped by the writer.

        :param total_timesteps: the run's planned total, for the resume instructions
        :param wait_if_busy: wait for a checkpoint in flight whatever ``if_busy`` says
        """
        if not self._idle.is_set():
            waits = self.if_busy == "wait" or wait_if_busy
            # Wait at most as long as the writer itself would at exit: a stalled disk must not hang training.
            if not (waits and self._idle.wait(writer.exit_timeout)):
                self.skipped += 1
                return False
        capture = capture_checkpoint(model, callback_state, self.resume_command, self.save_replay_buffer, total_timesteps)
        self._idle.clear()
        accepted = False
        try:
            accepted = writer.submit(CHECKPOINTS, capture.build_records, attachments=capture.attachments,
                                     on_written=lambda url: self._on_written(writer.sink, writer.writer_id, url))
        finally:
            if not accepted:  # refused, or submit raised: on_written never comes
                self._idle.set()
        if not accepted:
            return False
        self.submitted_timesteps.append(capture.timestep)
        return True

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no checkpoint is in flight; True if none is."""
        return self._idle.wait(timeout)

    def _on_written(self, sink: Sink, writer_id: str, url: str | None) -> Awaitable[None] | None:
        """On the writer thread: retention after a complete checkpoint, then ready again."""
        if url is None:
            self.failed += 1
            self._idle.set()
            return None
        self.written.append(save_location(url))
        return self._prune_then_idle(sink, writer_id)

    async def _prune_then_idle(self, sink: Sink, writer_id: str) -> None:
        try:
            await prune_checkpoints(sink, self.keep_last, self.keep_every, writer_id)
        finally:
            self._idle.set()


def script_resume_command(model_path: str, timestep: int) -> str | None:
    """The command line that started this process, with its ``--model_path`` pointed at ``model_path``.

    None when that command has no ``--model_path`` option: only the user's script
    knows how to rebuild its env, so no other command is guessed.
    """
    words = list(getattr(sys, "orig_argv", sys.argv))
    for index, word in enumerate(words):
        if word == "--model_path" and index + 1 < len(words):
            words[index + 1] = model_path
            break
        if word.startswith("--model_path="):
            words[index] = f"--model_path={model_path}"
            break
    else:
        return None
    words[0] = sys.executable
    if len(words) > 1 and Path(words[1]).is_file():  # the script, absolute so the line works from anywhere
        words[1] = str(Path(words[1]).absolute())
    return shlex.join(words)

