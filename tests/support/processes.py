"""Child Python processes for tests and benchmarks, with this checkout importable."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def python_child(code: str, *args: str, **popen_kwargs) -> subprocess.Popen:
    """Start ``python -c code args...`` with the project importable, stdout piped."""
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT), PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **popen_kwargs,
    )
