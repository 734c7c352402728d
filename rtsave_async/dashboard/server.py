"""The dashboard's web server (aiohttp): the page, its data as JSON, live updates as SSE.

Endpoints (all GET; nothing writes or deletes):

- ``/``: the page; ``/static/<file>``: its script, style and the vendored uPlot
- ``/api/runs``: the runs found under the root, with status, progress and whether
  their records are still being read (``loading``: a big run is served at once and
  filled in over the following polls)
- ``/api/series?run=NAME[&x0=&x1=][&points=]``: every series of a run in ``[x0, x1]``,
  downsampled to ``points`` (default 2,000) per series; the page asks again at full
  resolution for the range the user zooms into
- ``/api/events?run=NAME[&run=NAME2 ...]``: server-sent events: first ``init``
  (downsampled series and summary per run), then ``update`` with only the new points
  and the new summary, within :data:`POLL_SECONDS` of a record being readable

A run is named by its name relative to the root (as :func:`find_runs` gives it);
anything else, a path with ``..``, an encoded slash or backslash, or a run folder
that is a symlink leading out of the root gets 404.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import os
import threading
import time
from typing import Any

import orjson
from aiohttp import web

from rtsave_async.dashboard.data import RunData
from rtsave_async.dashboard.series import DEFAULT_POINTS
from rtsave_async.readers import LocalRunStore, RunStore, find_runs, open_run, open_store

#: How often watched runs are polled for new records (seconds).
POLL_SECONDS = 0.25
#: A summary (status, writer health) is refreshed at least this often, new records or not.
SUMMARY_SECONDS = 1.0
#: Most points per series a client may ask for in one response.
MAX_POINTS = 200_000
#: Seconds of reading per run and request or poll: a big run is served at once and
#: filled in over the following polls, instead of read whole before the first answer.
READ_BUDGET = 0.5

STATIC_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".txt": "text/plain"}
STATIC_FILES = ("index.html", "dashboard.js", "dashboard.css", "vendor/uPlot.iife.min.js", "vendor/uPlot.min.css",
                "vendor/uPlot.LICENSE", "vendor/VERSION.txt")
_UNSAFE_IN_PATH = ("..", "%2f", "%5c", "\\", "%00", "//")
_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


def _json_response(data: Any) -> web.Response:
    return web.Response(body=orjson.dumps(data, option=_JSON_OPTIONS), content_type="application/json",
                        headers={"Cache-Control": "no-store"})


def _inside_root(root: RunStore, store: RunStore) -> bool:
    """False for a local run folder that resolves (through symlinks) outside the root."""
    if not isinstance(root, LocalRunStore) or not isinstance(store, LocalRunStore):
        return True
    base = os.path.realpath(root.root)
    target = os.path.realpath(store.root)
    return target == base or target.startswith(base.rstrip(os.sep) + os.sep)


class Dashboard:
    """The runs under ``root`` (a run folder or a parent of runs; a local path or a URL)
    and the aiohttp application serving them.

    :param poll_seconds: how often watched runs are polled; default :data:`POLL_SECONDS`
    :param read_budget: seconds of reading per run and request or poll; default :data:`READ_BUDGET`
    """

    def __init__(self, root: str, poll_seconds: float = POLL_SECONDS, read_budget: float = READ_BUDGET):
        self.root = open_store(root)
        self.poll_seconds = poll_seconds
        self.read_budget = read_budget
        self.runs: dict[str, RunData] = {}
        self._summaries: dict[str, tuple[float, dict[str, Any]]] = {}
        self._versions: dict[str, int] = {}
        self._watchers: dict[str, int] = {}
        self._changed = asyncio.Condition()
        self._discovering = threading.Lock()
        self._static = {name: (importlib.resources.files(__package__).joinpath("static", name).read_bytes(),
                               STATIC_TYPES.get(os.path.splitext(name)[1], "application/octet-stream"))
                        for name in STATIC_FILES}

    # ------------------------------------------------------------------ runs
    def discover(self) -> int:
        """Find the runs under the root and read what they hold, each for at most
        :attr:`read_budget` seconds (the poller reads the rest); blocking, returns records read."""
        read = 0
        with self._discovering:  # pages ask for the run list concurrently
            for name, store in find_runs(self.root).items():
                if name not in self.runs and _inside_root(self.root, store):
                    try:
                        run = open_run(store)
                    except ValueError:  # an empty folder that only looks like a run: not shown until it holds one
                        continue
                    self.runs[name] = RunData(name, run)
                if name in self.runs:
                    read += self.runs[name].update(self.read_budget)
        return read

    def summary(self, name: str, max_age: float = SUMMARY_SECONDS) -> dict[str, Any]:
        """The run's summary, recomputed when older than ``max_age`` seconds or when records
        were taken in since (blocking): its record count and ``loading`` are never stale."""
        made, summary = self._summaries.get(name, (0.0, None))
        run = self.runs[name]
        if (summary is None or time.monotonic() - made >= max_age
                or (summary["records"], summary["loading"]) != (run.records, run.loading)):
            summary = run.summary()
            self._summaries[name] = (time.monotonic(), summary)
        return summary

    def _poll_once(self) -> list[str]:
        """Update the watched runs and the runs still loading; the names whose data or
        summary changed (blocking)."""
        changed = []
        for name in [name for name, run in self.runs.items() if self._watchers.get(name) or run.loading]:
            made, previous = self._summaries.get(name, (0.0, None))
            if self.runs[name].update(self.read_budget):
                self.summary(name, max_age=0.0)
                changed.append(name)
            elif time.monotonic() - made >= SUMMARY_SECONDS and self.summary(name, max_age=0.0) != previous:
                changed.append(name)
        return changed

    async def poll_forever(self) -> None:
        while True:
            changed = await asyncio.to_thread(self._poll_once)
            if changed:
                for name in changed:
                    self._versions[name] = self._versions.get(name, 0) + 1
                async with self._changed:
                    self._changed.notify_all()
            loading = any(run.loading for run in self.runs.values())
            await asyncio.sleep(0 if loading else self.poll_seconds)

    def _run_names(self, request: web.Request) -> list[str]:
        names = request.query.getall("run", [])
        if not names or any(name not in self.runs for name in names):
            raise web.HTTPNotFound(text="no such run")
        return list(dict.fromkeys(names))

    # ------------------------------------------------------------------ handlers
    async def index(self, request: web.Request) -> web.Response:
        return self._static_response("index.html")

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self._static:
            raise web.HTTPNotFound()
        return self._static_response(name)

    def _static_response(self, name: str) -> web.Response:
        body, content_type = self._static[name]
        return web.Response(body=body, content_type=content_type)

    async def list_runs(self, request: web.Request) -> web.Response:
        await asyncio.to_thread(self.discover)
        rows = []
        for name in list(self.runs):
            summary = await asyncio.to_thread(self.summary, name)
            mean = self.runs[name].series.get("success_rate/mean")
            rows.append({"name": name, "state": summary["status"]["state"],
                         "last_update": summary["status"]["last_update"], "progress": summary["progress"],
                         "success_rate": float(mean.y[-1]) if mean is not None and mean.length else None,
                         "algorithm": summary["algorithm"], "env": summary["env"], "records": summary["records"],
                         "loading": summary["loading"]})
        return _json_response({"root": self.root.url(), "runs": rows})

    async def series(self, request: web.Request) -> web.Response:
        (name,) = self._run_names(request)[:1]
        try:
            x0 = float(request.query["x0"]) if "x0" in request.query else None
            x1 = float(request.query["x1"]) if "x1" in request.query else None
            points = int(request.query.get("points", DEFAULT_POINTS))
        except ValueError:
            raise web.HTTPBadRequest(text="x0, x1 must be numbers and points an integer") from None
        if not 3 <= points <= MAX_POINTS:
            raise web.HTTPBadRequest(text=f"points must be between 3 and {MAX_POINTS}")
        data = await asyncio.to_thread(self.runs[name].points, x0, x1, points)
        return _json_response({"run": name, **data})

    async def events(self, request: web.Request) -> web.StreamResponse:
        names = self._run_names(request)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
        await response.prepare(request)
        for name in names:
            self._watchers[name] = self._watchers.get(name, 0) + 1
        try:
            sent: dict[str, dict[str, int]] = {}
            seen: dict[str, int] = {}
            for name in names:
                data = await asyncio.to_thread(self.runs[name].points)
                sent[name] = dict(data["lengths"])
                seen[name] = self._versions.get(name, 0)
                summary = await asyncio.to_thread(self.summary, name)
                await self._send(response, "init", {"run": name, **data, "summary": summary})
            while True:
                async with self._changed:
                    await self._changed.wait_for(
                        lambda: any(self._versions.get(name, 0) != seen[name] for name in names))
                for name in names:
                    if self._versions.get(name, 0) != seen[name]:
                        seen[name] = self._versions.get(name, 0)
                        fresh = self.runs[name].new_points(sent[name])
                        await self._send(response, "update",
                                         {"run": name, "points": fresh, "summary": self._summaries[name][1]})
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            for name in names:
                self._watchers[name] -= 1
        return response

    @staticmethod
    async def _send(response: web.StreamResponse, event: str, data: Any) -> None:
        await response.write(b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data, option=_JSON_OPTIONS)
                             + b"\n\n")

    # ------------------------------------------------------------------ app
    def app(self) -> web.Application:
        app = web.Application(middlewares=[reject_unsafe_paths])
        app.router.add_get("/", self.index)
        app.router.add_get("/static/{name:.+}", self.static)
        app.router.add_get("/api/runs", self.list_runs)
        app.router.add_get("/api/series", self.series)
        app.router.add_get("/api/events", self.events)
        app.on_startup.append(self._start_polling)
        app.on_cleanup.append(self._stop_polling)
        return app

    async def _start_polling(self, app: web.Application) -> None:
        app["poller"] = asyncio.create_task(self.poll_forever())

    async def _stop_polling(self, app: web.Application) -> None:
        app["poller"].cancel()


@web.middleware
async def reject_unsafe_paths(request: web.Request, handler: Any) -> web.StreamResponse:
    """404 for ``..``, encoded slashes/backslashes, NUL or empty segments anywhere in the
    request target, before any handler sees the decoded path; only GET and HEAD are served."""
    raw = request.raw_path.partition("?")[0].lower()  # run names in the query are looked up, never joined
    if any(part in raw for part in _UNSAFE_IN_PATH) or "%2e%2e" in raw or "%2e." in raw or ".%2e" in raw:
        raise web.HTTPNotFound()
    if request.method not in ("GET", "HEAD"):
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "HEAD"])
    return await handler(request)


async def serve(dashboard: Dashboard, host: str, port: int, ready: Any = print) -> None:
    """Serve ``dashboard`` on ``host:port`` (0: any free port) until cancelled; ``ready(url)`` once listening."""
    runner = web.AppRunner(dashboard.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0]
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    ready(f"http://{shown}:{bound[1]}/")
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()

