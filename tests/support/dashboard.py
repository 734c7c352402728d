"""Runs for the dashboard's tests and benchmark, the dashboard as a real process, a browser.

- :class:`GrowingRun`: the real :class:`SnapshotWriter` writing Go1-shaped saves
  (episodes per env, learning metrics, environment states; checkpoints with a real
  attachment) on demand or from a background thread, like a training run
- :func:`build_large_run`: a ``jsonl.zst`` run of many episode records in big frames
  (the tests' segment builder), built in seconds
- :func:`dashboard_process`: ``python -m rtsave_async dashboard ROOT --port 0`` and its URL
- :func:`chromium`: Playwright's Chromium on Debian's ``/usr/bin/chromium``; skipped
  when there is none, except under CI (``CI`` set), where a missing browser fails
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rtsave_async.writer import SnapshotWriter
from tests.support.segment_builder import SegmentRunWriter

CHROMIUM = "/usr/bin/chromium"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
REWARDS = ("tracking_lin_vel", "tracking_ang_vel", "feet_air_time")
COSTS = ("torque", "action_rate", "orientation")


def episode_record(timestep: int, env_id: int) -> dict[str, Any]:
    """One env's episode record at ``timestep``, shaped like the episode collector's."""
    phase = (timestep // 1000 + env_id) % 7
    return {
        "timestep": timestep, "env_id": env_id, "episode_count": timestep // 500, "success_count": timestep // 2000,
        "success_rate": round(phase / 7, 4),
        "detailed_info": {
            "episode_info": {"current_step": timestep % 750, "time_remaining": 3.5},
            "robot_state": {"position": {"x": 0.1 * phase, "y": -0.2, "z": 0.28},
                            "orientation": {"w": 1.0, "x": 0.0, "y": 0.0, "z": 0.0, "roll": 0.01, "pitch": -0.02,
                                            "yaw": 0.5 + env_id}},
            "foot_contacts": {"FR": True, "FL": phase % 2 == 0, "RR": False, "RL": True},
        },
        "finished_episodes": [{"return": 10.0 * phase + env_id, "length": 300, "is_success": phase > 3}],
    }


def learning_record(timestep: int, total_timesteps: int) -> dict[str, Any]:
    """A learning-metrics record at ``timestep``, shaped like the learning collector's."""
    step = timestep // 1000
    return {
        "timestep": timestep, "total_timesteps": total_timesteps, "training_progress": timestep / total_timesteps,
        "recent_success_rate_avg": 0.1 * (step % 10), "curriculum_progress": timestep / total_timesteps,
        "memory_usage_mb": 300.0 + step, "fps": 1000.0 + step % 5,
        "reward_components": {name: 0.1 * index + 0.01 * (step % 9) for index, name in enumerate(REWARDS)},
        "cost_components": {name: 0.05 * index + 0.01 * (step % 4) for index, name in enumerate(COSTS)},
        "logger": {"train/value_loss": 1.0 / (1 + step), "train/entropy_loss": -16.0 + 0.01 * step,
                   "train/explained_variance": min(1.0, 0.1 * step), "train/learning_rate": 0.0003},
    }


class GrowingRun:
    """A run the real writer extends: :meth:`save` one training save (blocking until stored),
    or :meth:`start` a background thread saving every ``interval`` seconds."""

    def __init__(self, root: Path, num_envs: int = 2, total_timesteps: int = 1_000_000, frequency: int = 1000,
                 **writer_options: Any):
        self.root, self.num_envs, self.total, self.frequency = root, num_envs, total_timesteps, frequency
        self.writer = SnapshotWriter(root, **writer_options)
        self.timestep = 0
        self.saves = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.writer.submit("hyperparameters", {"timestep": 0, "total_timesteps": total_timesteps,
                                               "model_type": "PPO", "environment": {"env_name": "rtsave/Go1-v0"}})

    def save(self, flush: bool = True) -> int:
        """One save at the next timestep; returns that timestep."""
        self.timestep += self.frequency
        self.writer.submit("episodes", [episode_record(self.timestep, env) for env in range(self.num_envs)])
        self.writer.submit("learning_metrics", learning_record(self.timestep, self.total))
        self.writer.submit("environment_states", {"timestep": self.timestep, "num_envs": self.num_envs,
                                                  "rand_power": [0.5 * (1 - self.timestep / self.total)] * self.num_envs})
        self.saves += 1
        if flush:
            self.writer.flush()
        return self.timestep

    def checkpoint(self, size: int) -> None:
        """A checkpoint at the current timestep whose ``.zip`` holds ``size`` bytes."""
        timestep = self.timestep

        def metadata(files: dict[str, Any]) -> dict[str, Any]:
            return {"timestep": timestep, "files": files,
                    "recovery_info": {"can_resume": True,
                                      "resume_command": f"rtsave train --model_path {files['zip']['path']}"}}

        self.writer.submit("checkpoints", metadata, attachments={".zip": lambda: b"\x01" * size})
        self.writer.flush()

    def start(self, interval: float) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._keep_saving, args=(interval,), daemon=True)
        self._thread.start()

    def pause(self) -> None:
        """Stop the background thread after its current save (stored when this returns)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _keep_saving(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.save()

    def close(self) -> dict[str, Any]:
        self.pause()
        return self.writer.close()


def build_large_run(root: Path, records: int, num_envs: int = 4, per_frame: int = 50_000) -> None:
    """A finished ``jsonl.zst`` run of ``records`` small episode records: ``num_envs`` per
    save, one save per 100 timesteps, ``per_frame`` records per zstd frame."""
    writer = SegmentRunWriter(root, "bench-writer")
    saves = records // num_envs
    for index in range(saves):
        timestep = (index + 1) * 100
        writer.save("episodes", [{"timestep": timestep, "env_id": env, "success_rate": ((index + env) % 100) / 100,
                                  "finished_episodes": [{"return": float((index * 7 + env) % 1000)}]}
                                 for env in range(num_envs)])
        if (index + 1) % (per_frame // num_envs) == 0:
            writer.flush()
    writer.flush()
    writer.close()


@contextlib.contextmanager
def dashboard_process(root: Path | str, *extra: str) -> Iterator[tuple[str, str]]:
    """``rtsave dashboard ROOT --port 0`` in a child process: yields (its URL, what it printed
    up to the URL); stopped with SIGINT (Ctrl-C) afterwards."""
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT), PYTHONUNBUFFERED="1")
    process = subprocess.Popen([sys.executable, "-m", "rtsave_async", "dashboard", str(root), "--port", "0", *extra],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        url, printed = None, []
        for line in process.stdout:
            printed.append(line)
            if "dashboard at " in line:
                url = line.split("dashboard at ", 1)[1].split()[0]
                break
        if url is None:
            raise AssertionError(f"the dashboard did not start: {process.stderr.read()}")
        yield url, "".join(printed)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_until_read(url: str, timeout: float = 300.0) -> list[dict]:
    """The ``/api/runs`` rows once no run is ``loading`` any more (a big run is read after
    the server starts); AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        with urllib.request.urlopen(url + "api/runs", timeout=30) as response:
            rows = json.loads(response.read())["runs"]
        if not any(row["loading"] for row in rows):
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"the dashboard was still reading after {timeout:.0f} s: {rows}")
        time.sleep(0.2)


def chromium_or_skip() -> None:
    """Skip (outside CI) or fail (in CI) when there is no browser to drive."""
    pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra")
    if not os.path.exists(CHROMIUM):
        message = f"no {CHROMIUM}: install Debian's chromium (apt-get install chromium), as .ci/run does"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@contextlib.contextmanager
def chromium(viewport: tuple[int, int] = (1400, 1000)) -> Iterator[Any]:
    """A new page of a headless Chromium (``/usr/bin/chromium``, launched by Playwright)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
        finally:
            browser.close()
