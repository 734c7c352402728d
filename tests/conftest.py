"""Shared fixtures: subprocess runner, mounts. Test doubles of sinks: ``support/sinks.py``."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import PROJECT_ROOT, python_child  # noqa: F401  (tests import them from here)


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
