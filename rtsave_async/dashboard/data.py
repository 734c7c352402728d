"""What the dashboard shows of one run, kept up to date from the reader's cursor.

:class:`RunData` polls ``Run.cursor()`` (only what is new is read) and turns each
record into points of named :class:`~rtsave_async.dashboard.series.Series` plus the
latest values the page shows as text. Series names are ``<chart>/<line>``:

- ``return/env<i>``, ``return/mean``: the mean return of the episodes that finished at
  one timestep (``finished_episodes``) in that env / in all envs (one point per
  timestep, so lines of different envs line up)
- ``success_rate/env<i>``, ``success_rate/mean``: each env's ``success_rate``, and their mean
- ``reward/<component>``, ``cost/<component>``: ``learning_metrics`` components
- ``learning/<key>``: SB3 logger values (``train/value_loss`` ...), ``fps``, ``memory_usage_mb``
- ``rand_power/env<i>`` (``environment_states``), ``curriculum/curriculum_progress``
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

import numpy as np

from rtsave_async.dashboard.series import DEFAULT_POINTS, Series, downsample
from rtsave_async.names import CHECKPOINTS, ENVIRONMENT_STATES, EPISODES, HYPERPARAMETERS, LEARNING_METRICS, parse_utc_iso
from rtsave_async.readers.run import Record, Run
from rtsave_async.readers.status import run_status
from rtsave_async.readers.summary import checkpoint_rows, number_or_none, writer_counters

#: learning_metrics fields drawn as ``learning/<field>`` besides the SB3 logger's.
LEARNING_FIELDS = ("fps", "memory_usage_mb", "recent_success_rate_avg")
#: Charts whose lines have one point per timestep: the mean of the values at it.
AVERAGED = ("return", "success_rate")
#: Learning-metric saves used for steps/s (their write times and timesteps).
RATE_WINDOW = 20


class RunData:
    """The dashboard's in-memory view of ``run``; :meth:`update` reads what is new.

    Thread-safe: :meth:`update` runs in a worker thread while the server answers requests.
    """

    def __init__(self, name: str, run: Run):
        self.name = name
        self.run = run
        self.series: dict[str, Series] = {}
        self.records = 0
        self._cursor = run.cursor()
        self._lock = threading.Lock()
        self._envs: dict[int, dict[str, Any]] = {}
        self._learning: dict[str, Any] = {}
        self._hyperparameters: dict[str, Any] = {}
        self._rates: deque[tuple[str | None, int]] = deque(maxlen=RATE_WINDOW)
        self._mean_sums: dict[str, tuple[float, float, float]] = {}  # newest point's x, sum, count
        self._pending: dict[str, tuple[list[float], list[float]]] = {}
        self._env_names: dict[int, tuple[str, str]] = {}
        self._reading = threading.Lock()
        self._checkpoints: list[dict[str, Any]] = []
        self._caught_up = False  # nothing read yet

    # ------------------------------------------------------------------ reading
    @property
    def loading(self) -> bool:
        """True while the records already written have not all been read and taken in
        (see :meth:`update`)."""
        return not self._caught_up

    def update(self, budget: float | None = None) -> int:
        """Read the records written since the last call; returns how many there were.

        :param budget: seconds after which no further file is read (a big run is read over
            several calls, :attr:`loading` meanwhile); default None: read all
        """
        with self._reading:  # one poll at a time: a cursor returns each record once
            records = self._cursor.poll(budget)
            caught_up = self._cursor.caught_up
            if not records:
                self._caught_up = caught_up
                return 0
            checkpoints = self._read_checkpoints() if any(r.category == CHECKPOINTS for r in records) else None
            with self._lock:
                for record in records:
                    self._ingest(record)
                for name, (xs, ys) in self._pending.items():
                    self._append(name, np.asarray(xs, dtype=float), np.asarray(ys, dtype=float))
                self._pending.clear()
                self.records += len(records)
                self._caught_up = caught_up  # with the records counted: a reader never sees done too early
                if checkpoints is not None:
                    self._checkpoints = checkpoints
        return len(records)

    def _ingest(self, record: Record) -> None:
        data = record.data
        if not isinstance(data, dict):
            return
        timestep = number_or_none(data.get("timestep"))
        if record.category == HYPERPARAMETERS:
            self._hyperparameters = data
        if timestep is None:
            return
        if record.category == EPISODES:
            self._episode(timestep, data)
        elif record.category == LEARNING_METRICS:
            self._learning_metrics(timestep, data, record.time)
        elif record.category == ENVIRONMENT_STATES:
            for env_id, power in enumerate(data.get("rand_power") or []):
                self._point(f"rand_power/env{env_id}", timestep, power)

    def _episode(self, timestep: float, data: dict[str, Any]) -> None:
        env_id = data.get("env_id")
        if not isinstance(env_id, int):
            return
        self._envs[env_id] = data
        names = self._env_names.get(env_id)
        if names is None:
            names = self._env_names[env_id] = (f"return/env{env_id}", f"success_rate/env{env_id}")
        for episode in data.get("finished_episodes") or ():
            if isinstance(episode, dict) and self._point(names[0], timestep, episode.get("return")):
                self._point("return/mean", timestep, episode["return"])
        if self._point(names[1], timestep, data.get("success_rate")):
            self._point("success_rate/mean", timestep, data["success_rate"])

    def _learning_metrics(self, timestep: float, data: dict[str, Any], time: str | None) -> None:
        self._learning = data
        self._rates.append((time, int(timestep)))
        for group in ("reward", "cost"):
            components = data.get(f"{group}_components")
            if isinstance(components, dict):
                for component, value in components.items():
                    self._point(f"{group}/{component}", timestep, value)
        for field in LEARNING_FIELDS:
            self._point(f"learning/{field}", timestep, data.get(field))
        logger = data.get("logger")
        if isinstance(logger, dict):
            for key, value in logger.items():
                if not key.startswith("time/"):  # time/fps etc. repeat fps and the timestep
                    self._point(f"learning/{key}", timestep, value)
        self._point("curriculum/curriculum_progress", timestep, data.get("curriculum_progress"))

    def _point(self, name: str, x: float, value: Any) -> bool:
        """Gather a point for :meth:`update` to append; False if ``value`` is not a number."""
        y = number_or_none(value)
        if y is None:
            return False
        pending = self._pending.get(name)
        if pending is None:
            pending = self._pending[name] = ([], [])
        pending[0].append(x)
        pending[1].append(y)
        return True

    def _append(self, name: str, x: np.ndarray, y: np.ndarray) -> None:
        """Append a poll's points to series ``name``; the series of :data:`AVERAGED` charts get
        one point per timestep (the mean of that timestep's values, records of one save
        sharing a timestep), also when the timestep continues from the previous poll."""
        series = self.series.get(name)
        if series is None:
            series = self.series[name] = Series()
        if name.partition("/")[0] not in AVERAGED:
            series.extend(x, y)
            return
        starts = np.flatnonzero(np.concatenate(([True], x[1:] != x[:-1])))
        counts = np.diff(np.append(starts, len(x))).astype(float)
        sums = np.add.reduceat(y, starts)
        x = x[starts]
        last = self._mean_sums.get(name)
        if last is not None and last[0] == x[0]:
            sums[0] += last[1]
            counts[0] += last[2]
            series.replace_last(sums[0] / counts[0])
            series.extend(x[1:], sums[1:] / counts[1:])
        else:
            series.extend(x, sums / counts)
        self._mean_sums[name] = (x[-1], sums[-1], counts[-1])

    def _read_checkpoints(self) -> list[dict[str, Any]]:
        """The complete checkpoints, newest first, named by their file."""
        return [{"name": row["key"].rpartition("/")[2], **row} for row in checkpoint_rows(self.run)
                if row["bytes"] is not None]

    # ------------------------------------------------------------------ answers
    def lengths(self) -> dict[str, int]:
        """Points per series now: what a client has after a full fetch."""
        with self._lock:
            return {name: series.length for name, series in self.series.items()}

    def points(
        self,
        x0: float | None = None,
        x1: float | None = None,
        points: int = DEFAULT_POINTS,
        upto: dict[str, int] | None = None,
    ) -> dict[str, Any]:
        """Every series in ``[x0, x1]``, downsampled to at most ``points`` each:
        ``{"series": {name: [x array, y array]}, "lengths": {name: points read so far}}``
        (numpy arrays: encode with ``orjson.OPT_SERIALIZE_NUMPY``, which writes NaN as null).
        ``upto`` limits each series to its first n points (what a live stream starts after).
        """
        with self._lock:
            windows = {name: series.window(x0, x1, None if upto is None else upto.get(name, 0))
                       for name, series in self.series.items()}
            lengths = {name: series.length for name, series in self.series.items()}
        answer = {}
        for name, (x, y) in windows.items():
            x, y = downsample(x, y, points)
            answer[name] = [x, y]
        return {"series": answer, "lengths": upto or lengths}

    def new_points(self, sent: dict[str, int]) -> dict[str, Any]:
        """Points after the first ``sent[name]`` of each series: ``{name: [start, x array, y array]}``;
        ``sent`` is updated to the new lengths."""
        with self._lock:
            fresh = {}
            for name, series in self.series.items():
                start = sent.get(name, 0)
                if series.length > start:
                    fresh[name] = [start, series.x[start:].copy(), series.y[start:].copy()]
                    sent[name] = series.length
        return fresh

    def summary(self) -> dict[str, Any]:
        """The run's latest state as JSON-ready values (status, progress, envs, checkpoints, health)."""
        status = run_status(self.run)
        stats = self.run.writer_stats()
        with self._lock:
            learning, hyperparameters = self._learning, self._hyperparameters
            envs = [_env_state(env_id, data) for env_id, data in sorted(self._envs.items())]
            rand_power = {name: float(series.y[-1]) for name, series in self.series.items()
                          if name.startswith("rand_power/") and series.length}
            checkpoints = list(self._checkpoints)
            records, loading = self.records, self.loading  # together: update() sets both under the lock
        for env in envs:
            env["rand_power"] = rand_power.get(f"rand_power/env{env['env_id']}")
        return {
            "name": self.name,
            "url": self.run.url,
            "status": {"state": status.state, "writers": status.writers, "last_update": status.last_update},
            "algorithm": hyperparameters.get("model_type"),
            "env": (hyperparameters.get("environment") or {}).get("env_name"),
            "progress": self._progress(learning, hyperparameters),
            "curriculum_progress": number_or_none(learning.get("curriculum_progress")),
            "envs": envs,
            "checkpoints": checkpoints,
            "health": writer_counters(stats),
            "records": records,
            "loading": loading,
        }

    def _progress(self, learning: dict[str, Any], hyperparameters: dict[str, Any]) -> dict[str, Any]:
        timestep = number_or_none(learning.get("timestep"))
        total = number_or_none(learning.get("total_timesteps")) or number_or_none(hyperparameters.get("total_timesteps"))
        rate = self._steps_per_second() or number_or_none(learning.get("fps"))
        remaining = None if timestep is None or total is None else max(0.0, total - timestep)
        return {
            "timestep": timestep,
            "total_timesteps": total,
            "fraction": None if not total or timestep is None else min(1.0, timestep / total),
            "steps_per_second": rate,
            "eta_seconds": remaining / rate if remaining is not None and rate else None,
        }

    def _steps_per_second(self) -> float | None:
        """Timesteps per second of wall time over the last :data:`RATE_WINDOW` learning-metric saves."""
        with self._lock:
            window = list(self._rates)
        if len(window) < 2:
            return None
        (first_time, first_step), (last_time, last_step) = window[0], window[-1]
        start, end = parse_utc_iso(first_time), parse_utc_iso(last_time)
        if start is None or end is None or end <= start or last_step < first_step:
            return None
        return (last_step - first_step) / (end - start)


def _env_state(env_id: int, data: dict[str, Any]) -> dict[str, Any]:
    detail = data.get("detailed_info") or {}
    robot = detail.get("robot_state") or {}
    orientation = robot.get("orientation") or {}
    return {
        "env_id": env_id,
        "timestep": data.get("timestep"),
        "episode_count": data.get("episode_count"),
        "success_count": data.get("success_count"),
        "success_rate": data.get("success_rate"),
        "current_step": (detail.get("episode_info") or {}).get("current_step"),
        "position": robot.get("position"),
        "orientation": {key: orientation.get(key) for key in ("roll", "pitch", "yaw")} if orientation else None,
        "foot_contacts": detail.get("foot_contacts"),
    }

