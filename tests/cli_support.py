"""Running the real ``rtsave`` entry point in a child process, for the CLI tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import PROJECT_ROOT

FAST_PPO = '{"n_steps": 128, "batch_size": 64, "n_epochs": 2}'
FAST_SAC = '{"learning_starts": 100, "batch_size": 32, "policy_kwargs": {"net_arch": [16]}}'


def child_env(**extra: str) -> dict[str, str]:
    """A minimal environment: the project importable, no MUJOCO_GL or DISPLAY inherited."""
    return {"PYTHONPATH": str(PROJECT_ROOT), "PATH": "/usr/bin:/bin", **extra}


def rtsave(*args: str, cwd: Path, python_options: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """``python -m rtsave_async ARGS`` in ``cwd`` (what the ``rtsave`` script runs)."""
    return subprocess.run([sys.executable, *python_options, "-m", "rtsave_async", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600, env=child_env())


def line_starting(text: str, prefix: str) -> str:
    """The one line of ``text`` that starts with ``prefix`` (fails if there is none)."""
    lines = [line for line in text.splitlines() if line.startswith(prefix)]
    assert lines, f"no line starting with {prefix!r} in:\n{text}"
    return lines[-1]


def newest_checkpoint_record(save_dir: Path) -> dict:
    """The newest checkpoint's metadata, read through the checkpoints API."""
    from rtsave_async import list_snapshot_files
    from rtsave_async.checkpoints import find_checkpoint

    return find_checkpoint(list_snapshot_files(save_dir, "checkpoints")[-1]).metadata
