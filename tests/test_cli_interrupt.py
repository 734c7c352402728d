"""Ctrl-C in a terminal: the progress bar stops first, the resume line is one line."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

from cli_support import FAST_PPO, child_env, newest_checkpoint_record
from rtsave_async import list_snapshot_files

COLUMNS = 80


def read_available(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # EIO: the child closed the terminal
        return b""


def checkpoints_so_far(save_dir: Path) -> list[Path]:
    """The run's checkpoint files; none before the run folder exists."""
    return list_snapshot_files(save_dir, "checkpoints") if save_dir.exists() else []


def test_ctrl_c_in_a_terminal_prints_the_resume_line_on_one_line(tmp_path: Path) -> None:
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, COLUMNS, 0, 0))
    child = subprocess.Popen(
        [sys.executable, "-m", "rtsave_async", "train", "--run_name", "ctrl_c", "--total_timesteps", "1000000",
         "--hyperparams", FAST_PPO, "--checkpoint_frequency", "256"],
        cwd=tmp_path, stdin=terminal, stdout=terminal, stderr=terminal, env=child_env(TERM="xterm-256color"),
        start_new_session=True)
    os.close(terminal)
    save_dir = tmp_path / "models" / "ctrl_c" / "realtime_data"
    output = b""
    deadline = time.monotonic() + 300
    while not checkpoints_so_far(save_dir) and time.monotonic() < deadline:
        output += read_available(controller)  # keep the terminal drained while the bar draws
    assert checkpoints_so_far(save_dir), output.decode(errors="replace")
    output += read_available(controller)
    os.killpg(child.pid, signal.SIGINT)  # what Ctrl-C sends: the whole foreground group
    while chunk := read_available(controller):
        output += chunk
    assert child.wait(timeout=120) == 130
    os.close(controller)
    lines = re.split(r"[\r\n]+", output.decode(errors="replace"))
    resume_lines = [line for line in lines if "rtsave: resume with: " in line]
    assert len(resume_lines) == 1, output
    command = newest_checkpoint_record(save_dir)["recovery_info"]["resume_command"]
    assert len(command) > COLUMNS  # long enough that a wrapping terminal writer would have broken it
    assert resume_lines[0].strip() == f"rtsave: resume with: {command}"
