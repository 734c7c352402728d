"""``rtsave dashboard``: downsampling, a real browser on a growing run, path safety, a 1,000,000-record run."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, urlsplit

import numpy as np

from rtsave_async.dashboard.data import RunData
from rtsave_async.dashboard.server import Dashboard
from rtsave_async.readers.summary import writer_counters
from rtsave_async.dashboard.series import downsample
from rtsave_async.readers import open_run
from rtsave_async.sinks import LocalSink
from rtsave_async.writer import SnapshotWriter
from tests.support.dashboard import (
    PROJECT_ROOT,
    GrowingRun,
    build_large_run,
    episode_record,
    chromium,
    chromium_or_skip,
    dashboard_process,
    wait_until_read,
)
from tests.support.sinks import GatedSink

CHECKPOINT_BYTES = 12_345


def get(url: str, target: str) -> tuple[int, bytes]:
    """GET ``target`` sent exactly as given (no client-side normalisation of ``..`` or ``%2f``)."""
    address = urlsplit(url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    try:
        connection.request("GET", target)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def files_of(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file below ``folder`` with its size and modification time (ns)."""
    return {str(path): (path.stat().st_size, path.stat().st_mtime_ns) for path in folder.rglob("*") if path.is_file()}


def series_of(url: str, run: str, **query: object) -> dict:
    extra = "".join(f"&{key}={value}" for key, value in query.items())
    status, body = get(url, f"/api/series?run={quote(run, safe='')}{extra}")
    assert status == 200, body
    return json.loads(body)


# ------------------------------------------------------------------ downsampling
def test_downsample_keeps_every_spike_and_the_last_point_deterministically() -> None:
    rng = np.random.default_rng(0)
    x = np.arange(1_000_000, dtype=float)
    y = rng.normal(size=x.size)
    y[123_457], y[876_543] = 50.0, -50.0  # one-point spikes
    y[500_000] = np.nan

    kept_x, kept_y = downsample(x, y, 2000)

    assert len(kept_x) <= 2000
    assert 50.0 in kept_y and -50.0 in kept_y
    assert kept_x[-1] == x[-1]
    assert np.all(np.diff(kept_x) > 0)  # original order, no point twice
    again_x, again_y = downsample(x, y, 2000)
    assert np.array_equal(kept_x, again_x) and np.array_equal(kept_y, again_y, equal_nan=True)
    small_x, small_y = downsample(x[:1500], y[:1500], 2000)
    assert len(small_x) == 1500  # fits: every point


def test_run_data_series_follow_the_records(tmp_path: Path) -> None:
    run = GrowingRun(tmp_path / "run", num_envs=3)
    for _ in range(4):
        run.save()
    data = RunData("", open_run(str(tmp_path / "run")))

    assert data.update() == 1 + 4 * 5  # hyperparameters, then per save 3 episode records + 2
    lengths = data.lengths()
    assert lengths["success_rate/env2"] == lengths["success_rate/mean"] == lengths["return/mean"] == 4
    assert lengths["rand_power/env0"] == lengths["learning/train/value_loss"] == lengths["cost/torque"] == 4
    answer = data.points()["series"]
    assert list(answer["success_rate/mean"][0]) == [1000.0, 2000.0, 3000.0, 4000.0]
    run.save()
    assert data.update() == 5
    sent = dict(lengths)
    fresh = data.new_points(sent)
    assert fresh["return/env1"][0] == 4 and list(fresh["return/env1"][1]) == [5000.0]
    assert sent["return/env1"] == 5 and data.new_points(sent) == {}
    assert data.summary()["progress"]["timestep"] == 5000
    late = episode_record(5000, 0)  # one more env-0 episode record at 5000, read by the next poll
    late["success_rate"] = 1.0
    run.writer.submit("episodes", [late])
    run.writer.flush()
    assert data.update() == 1
    x, y = data.points()["series"]["success_rate/env0"]
    assert len(x) == 5 and y[-1] == (episode_record(5000, 0)["success_rate"] + 1.0) / 2  # one point per timestep
    run.close()


def _discovered_without_time_to_read(folder: Path) -> tuple[Dashboard, RunData]:
    """A dashboard of a finished run of 30 saves of 2 envs, discovered with no read budget:
    a file read, then the page could be served."""
    run = GrowingRun(folder, num_envs=2)
    for _ in range(30):
        run.save()
    run.close()
    board = Dashboard(str(folder), read_budget=0.0)
    board.discover()
    return board, board.runs[""]


def test_a_big_run_is_served_at_once_and_read_over_the_following_polls(tmp_path: Path) -> None:
    board, data = _discovered_without_time_to_read(tmp_path / "run")
    assert data.loading and data.summary()["loading"] is True and data.records < 1 + 30 * 4
    polls = 0
    while data.loading:
        board._poll_once()  # what the server's poller does between its sleeps
        polls += 1
    assert polls > 1 and data.summary()["loading"] is False
    whole = RunData("", open_run(str(tmp_path / "run")))
    whole.update()
    assert data.records == whole.records == 1 + 30 * 4
    assert data.lengths() == whole.lengths()
    for name, (x, y) in whole.points()["series"].items():
        assert list(data.points()["series"][name][0]) == list(x) and list(data.points()["series"][name][1]) == list(y)


def test_a_run_s_summary_is_never_older_than_the_records_taken_in(tmp_path: Path) -> None:
    board, data = _discovered_without_time_to_read(tmp_path / "run")
    assert board.summary("")["loading"] is True  # cached, as when a page asked for it
    while data.loading:
        data.update(0.0)  # records taken in by a poll the cached summary has not seen
    summary = board.summary("")  # what /api/runs shows
    assert summary["loading"] is False and summary["records"] == data.records == 1 + 30 * 4


def test_writer_health_is_red_when_the_writer_dropped_records(tmp_path: Path) -> None:
    gate = GatedSink(LocalSink(tmp_path))
    writer = SnapshotWriter(tmp_path, queue_size=1, policy="drop_newest", sink=gate)
    writer.submit("episodes", {"timestep": 1})
    gate.entered.wait(10)
    accepted = [writer.submit("episodes", {"timestep": 2 + index}) for index in range(5)]
    gate.open()
    stats = writer.close()

    health = writer_counters(open_run(str(tmp_path)).writer_stats())

    assert accepted.count(False) == stats["dropped"] > 0
    assert health["dropped"] == stats["dropped"] and health["written"] == stats["written"]
    assert health["ok"] is False


# ------------------------------------------------------------------ the real browser
def test_dashboard_in_a_real_browser_follows_a_growing_run(tmp_path: Path) -> None:
    chromium_or_skip()
    run = GrowingRun(tmp_path / "run", num_envs=2)
    for _ in range(5):
        run.save()
    run.checkpoint(CHECKPOINT_BYTES)
    with dashboard_process(tmp_path / "run") as (url, _), chromium() as page:
        run.start(interval=0.2)  # keeps writing while the page opens
        page.goto(url)
        page.wait_for_function("() => window.rtsaveDashboard && rtsaveDashboard.painted", timeout=30_000)
        run.pause()
        saves = run.saves
        # every save reaches the page through the live stream, then each line has one point per save
        page.wait_for_function(f"() => rtsaveDashboard.shown('success_rate').every(l => l.points === {saves})",
                               timeout=30_000)
        lengths = series_of(url, "")["lengths"]
        charts = page.evaluate("() => Object.keys(rtsaveDashboard.charts)")
        assert {"return", "success_rate", "reward", "cost", "rand_power", "curriculum",
                "learning/train/value_loss"} <= set(charts)
        for chart in ("success_rate", "reward", "rand_power", "learning/train/value_loss"):
            page.wait_for_function(f"() => rtsaveDashboard.shown({chart!r}).every(l => l.points === {saves})")
            for line in page.evaluate(f"() => rtsaveDashboard.shown({chart!r})"):
                assert line["points"] == lengths[line["name"]] == saves

        timestep = run.save()  # a new record appears without reload
        page.wait_for_function(f"() => rtsaveDashboard.maxX('success_rate') >= {timestep}", timeout=30_000)
        page.wait_for_function(f"() => document.querySelector('[data-field=timesteps]').textContent"
                               f".startsWith('{timestep:,} /')", timeout=30_000)

        checkpoint = open_run(str(tmp_path / "run")).checkpoints()[-1]
        row = page.locator(f"[data-checkpoint='{Path(checkpoint.path).name}']")
        assert row.locator("[data-bytes]").get_attribute("data-bytes") == str(checkpoint.bytes) == str(CHECKPOINT_BYTES)
        assert "--model_path" in row.locator(".resume").text_content()

        stats = run.close()
        page.wait_for_function("() => document.querySelector('[data-field=status]').textContent === 'finished'",
                               timeout=30_000)
        page.wait_for_function(f"() => document.querySelector('[data-field=written]').textContent === "
                               f"'{stats['written']:,}'", timeout=30_000)
        assert page.locator(".health").get_attribute("data-ok") == "true"
        assert page.locator("[data-field=dropped]").text_content() == "0"
        page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000


def test_a_parent_folder_lists_its_runs_and_overlays_the_picked_ones(tmp_path: Path) -> None:
    chromium_or_skip()
    for name, saves in (("alpha", 3), ("beta", 4)):
        run = GrowingRun(tmp_path / name / "realtime_data")
        for _ in range(saves):
            run.save()
        run.close()
    with dashboard_process(tmp_path) as (url, _), chromium() as page:
        page.goto(url)
        page.wait_for_function("() => window.rtsaveDashboard && rtsaveDashboard.painted", timeout=30_000)
        assert page.locator("#run-table tbody tr").count() == 2
        page.locator("input[data-run='beta/realtime_data']").check()
        page.wait_for_function("() => rtsaveDashboard.shown('success_rate').length === 2", timeout=30_000)
        shown = {line["run"]: line["points"] for line in page.evaluate("() => rtsaveDashboard.shown('success_rate')")}
    assert shown == {"alpha/realtime_data": 3, "beta/realtime_data": 4}


def test_zooming_in_the_browser_fetches_the_visible_range_at_full_resolution(tmp_path: Path) -> None:
    chromium_or_skip()
    build_large_run(tmp_path / "run", 40_000, num_envs=4)  # 10,000 saves: 10,000 points per line
    with dashboard_process(tmp_path / "run") as (url, _), chromium() as page:
        page.goto(url)
        page.wait_for_function("() => window.rtsaveDashboard && rtsaveDashboard.painted", timeout=30_000)
        (whole,) = page.evaluate("() => rtsaveDashboard.shown('success_rate')")
        assert whole["points"] <= 2000
        over = page.locator("[data-chart=success_rate] .u-over").bounding_box()
        y = over["y"] + over["height"] / 2
        page.mouse.move(over["x"] + over["width"] * 0.40, y)
        page.mouse.down()
        page.mouse.move(over["x"] + over["width"] * 0.45, y, steps=5)
        page.mouse.up()
        page.wait_for_function("() => rtsaveDashboard.zoomData !== null", timeout=30_000)
        x0, x1 = page.evaluate("() => rtsaveDashboard.zoom")
        inside = sum(1 for save in range(1, 10_001) if x0 <= save * 100 <= x1)  # timesteps 100, 200, ...
        assert 100 < inside <= 2000
        page.wait_for_function(f"() => rtsaveDashboard.shown('success_rate')[0].points === {inside}", timeout=30_000)
        page.locator("[data-chart=success_rate] .u-over").dblclick()
        page.wait_for_function("() => rtsaveDashboard.zoom === null", timeout=30_000)
        # The reset redraws on the next animation frame; a frame callback queued now runs after that redraw.
        page.evaluate("() => new Promise((drawn) => requestAnimationFrame(() => drawn()))")
        assert page.evaluate("() => rtsaveDashboard.shown('success_rate')")[0]["points"] == whole["points"]


# ------------------------------------------------------------------ safety
def test_paths_leaving_the_root_get_404_and_nothing_writes(tmp_path: Path) -> None:
    inside = GrowingRun(tmp_path / "root" / "inside")
    inside.save()
    inside.close()
    outside = GrowingRun(tmp_path / "secret")
    outside.save()
    outside.close()
    os.symlink(tmp_path / "secret", tmp_path / "root" / "link")
    before = files_of(tmp_path)
    with dashboard_process(tmp_path / "root") as (url, printed):
        assert "warning" not in printed  # loopback by default
        status, body = get(url, "/api/runs")
        assert status == 200 and [run["name"] for run in json.loads(body)["runs"]] == ["inside"]
        assert get(url, "/api/series?run=inside")[0] == 200
        for target in ("/api/series?run=link", "/api/series?run=../secret", "/api/series?run=..%2Fsecret",
                       f"/api/series?run={quote(str(tmp_path / 'secret'), safe='')}",
                       f"/api/series?run={tmp_path / 'secret'}", "/static/../server.py", "/static/%2e%2e/data.py",
                       "/static/vendor%2FuPlot.min.css", "/static/vendor%5CuPlot.min.css", "/static//etc/passwd",
                       "/static/series.py", "/api/events?run=link", "/../secret/run.json"):
            assert get(url, target)[0] == 404, target
        address = urlsplit(url)
        for method in ("POST", "PUT", "DELETE"):
            connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
            connection.request(method, "/api/series?run=inside")
            assert connection.getresponse().status == 405, method
            connection.close()
    assert files_of(tmp_path) == before


def test_host_0_0_0_0_warns_that_the_data_is_on_the_network(tmp_path: Path) -> None:
    run = GrowingRun(tmp_path / "run")
    run.save()
    run.close()
    with dashboard_process(tmp_path / "run", "--host", "0.0.0.0") as (url, printed):
        assert url.startswith("http://0.0.0.0:")
    assert "rtsave: warning: --host 0.0.0.0 serves the run's data to every machine" in printed


def rtsave_dashboard(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rtsave_async", "dashboard", *args], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(PROJECT_ROOT)), timeout=60)


def test_a_folder_without_runs_or_a_bad_port_is_one_clear_error(tmp_path: Path) -> None:
    result = rtsave_dashboard(str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip() == f"rtsave: error: {tmp_path}: no run found in it or below it (no run.json, " \
                                    "no category folder with records)"
    result = rtsave_dashboard(str(tmp_path / "missing"))
    assert (result.returncode, result.stderr.strip()) == (2, f"rtsave: error: {tmp_path / 'missing'}: no such folder")
    result = rtsave_dashboard(str(tmp_path), "--port", "70000")
    assert result.returncode == 2
    assert result.stderr.strip().endswith("argument --port: must be a port number 0-65535, got '70000'")


# ------------------------------------------------------------------ size
def test_a_million_record_run_is_served_downsampled(tmp_path: Path) -> None:
    build_large_run(tmp_path / "big", 1_000_000, num_envs=4)
    with dashboard_process(tmp_path / "big") as (url, printed):
        assert "read in the background" in printed  # served before the whole run is read
        (row,) = wait_until_read(url)
        assert row["records"] == 1_000_000
        answer = series_of(url, "")
        assert answer["lengths"]["success_rate/env0"] == 250_000
        assert answer["lengths"]["return/mean"] == 250_000
        assert {len(x) for x, _ in answer["series"].values()} <= set(range(1, 2001))
        zoomed = series_of(url, "", x0=100_000, x1=149_900)  # 500 saves: every point, full resolution
        assert len(zoomed["series"]["success_rate/env3"][0]) == 500
