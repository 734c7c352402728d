"""Shared fixtures: subprocess runner, mounts. Test doubles of sinks: ``support/sinks.py``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def python_child(code: str, *args: str, **popen_kwargs) -> subprocess.Popen:
    """Start ``python -c code args...`` with the project importable, stdout piped."""
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT), PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **popen_kwargs,
    )


@pytest.fixture
def mount_tmpfs(tmp_path: Path) -> Iterator:
    """Mount a small tmpfs (``options`` e.g. ``"size=64k"`` or ``"ro"``); unmounted after."""
    mounted: list[Path] = []

    def mount(options: str) -> Path:
        target = tmp_path / f"mnt-{uuid.uuid4().hex[:8]}"
        target.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip() or 'mount failed'})")
        mounted.append(target)
        return target

    yield mount
    for target in mounted:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


pytest_plugins = ["support.s3"]  # the loopback S3 server fixtures: s3_server, bucket
