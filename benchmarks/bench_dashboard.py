"""Dashboard benchmark: time to first paint, bytes for it, and live-update latency.

For runs of 10,000, 100,000 and 1,000,000 episode records (``jsonl.zst``, 4 envs per
save, built by the tests' segment builder) it starts ``rtsave dashboard RUN --port 0``
as a real process (timed from the process start to the URL printed, and to the whole
run read in the background), then opens the page in headless Chromium
(Debian's ``/usr/bin/chromium`` driven by Playwright), each round in a new browser
context (no cache):

- time to first paint: navigation start -> every chart drawn (the page's
  ``rtsave-charts-drawn`` performance mark, set after uPlot drew the first data)
- bytes received for it (Chrome DevTools ``Network.dataReceived``: page, script,
  styles and the first server-sent event with the downsampled series)

Update latency: a run the real :class:`SnapshotWriter` extends, one save at a time at
random 0.1-0.3 s gaps; per save, from just before ``submit`` to the page having drawn
it (the page's clock, ``Date.now()``, is this machine's clock too); median and p99.

    python -m benchmarks.bench_dashboard [--records 10000,100000,1000000] [--rounds 3] [--updates 100] [--quick]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks import reporting
from tests.support.dashboard import CHROMIUM, GrowingRun, build_large_run, dashboard_process, wait_until_read


def first_paint(browser, url: str) -> tuple[float, int, int]:
    """(ms from navigation start to the charts drawn, bytes received by then, points drawn)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        received = [0]
        devtools = context.new_cdp_session(page)
        devtools.send("Network.enable")
        devtools.on("Network.dataReceived", lambda event: received.__setitem__(0, received[0] + event["dataLength"]))
        page.goto(url)
        page.wait_for_function("() => window.rtsaveDashboard && rtsaveDashboard.painted", timeout=120_000)
        painted = page.evaluate("() => performance.getEntriesByName('rtsave-charts-drawn')[0].startTime")
        points = page.evaluate("() => Object.keys(rtsaveDashboard.charts)"
                               ".reduce((n, id) => n + rtsaveDashboard.shown(id).reduce((m, l) => m + l.points, 0), 0)")
        return painted, received[0], points
    finally:
        context.close()


def update_latencies(browser, run: GrowingRun, updates: int) -> list[float]:
    """Seconds from submit to drawn, for ``updates`` saves of the live ``run``."""
    for _ in range(10):
        run.save()
    latencies = []
    rng = random.Random(0)
    try:
        with dashboard_process(run.root) as (url, _):
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            page.wait_for_function("() => window.rtsaveDashboard && rtsaveDashboard.painted", timeout=60_000)
            for _ in range(updates):
                time.sleep(rng.uniform(0.1, 0.3))
                submitted = time.time()
                timestep = run.save(flush=False)
                page.wait_for_function(f"() => rtsaveDashboard.updates.some(u => u.timestep >= {timestep})",
                                       timeout=30_000)
                shown = page.evaluate(f"() => rtsaveDashboard.updates.find(u => u.timestep >= {timestep}).at")
                latencies.append(shown / 1000 - submitted)
            page.close()
    finally:
        run.close()
    return latencies


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", default="10000,100000,1000000", help="run sizes, comma-separated")
    parser.add_argument("--rounds", type=int, default=3, help="page loads per run size (default 3)")
    parser.add_argument("--updates", type=int, default=100, help="live updates timed (default 100)")
    parser.add_argument("--dir", type=Path, default=None, help="where to build the runs (default: a temp folder)")
    reporting.add_run_options(parser, "runs of 2,000 and 8,000 records, 1 round, 5 updates (a smoke test)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from playwright.sync_api import sync_playwright

    sizes = [2_000, 8_000] if args.quick else [int(size) for size in args.records.split(",")]
    rounds, updates = (1, 5) if args.quick else (args.rounds, args.updates)
    load_before = os.getloadavg()[0]
    root = Path(tempfile.mkdtemp(prefix="bench_dashboard_", dir=args.dir))
    rows = []
    try:
        live = GrowingRun(root / "live", num_envs=4)  # before Playwright: its sync API holds this thread's event loop
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
            for size in sizes:
                run = root / f"run_{size}"
                built = time.perf_counter()
                build_large_run(run, size, num_envs=4)
                built = time.perf_counter() - built
                started = time.perf_counter()
                with dashboard_process(run) as (url, _):
                    startup = time.perf_counter() - started  # the URL is printed after at most a read budget
                    wait_until_read(url)
                    read = time.perf_counter() - started
                    samples = [first_paint(browser, url) for _ in range(rounds)]
                paints = [paint for paint, _, _ in samples]
                rows.append((size, built, startup, read, statistics.median(paints), min(paints), max(paints),
                             samples[0][1], samples[0][2]))
                shutil.rmtree(run)
            latencies = update_latencies(browser, live, updates)
            browser.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    chromium_version = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True).stdout.strip()
    command = "python -m benchmarks.bench_dashboard" + (" --quick" if args.quick else
                                                         f" --records {args.records} --rounds {rounds} --updates {updates}")
    lines = reporting.header_lines("## Dashboard (bench_dashboard)", command, load_before)
    lines += [
        f"- Browser: {chromium_version}, headless, driven by Playwright; a new context (no cache) per page load; "
        f"Python {sys.version.split()[0]}",
        "- Runs: `jsonl.zst`, small episode records (timestep, env_id, success_rate, one finished episode), 4 envs "
        "per save: 12 series of records/4 points each (return and success rate per env and mean)",
        "- Start-up: `rtsave dashboard RUN` from process start to the URL printed (the page is served after at "
        "most half a second of reading; the rest of the run is read in the background, the page filling in); "
        "whole run read: until `/api/runs` says no run is loading. First paint is measured after that, on the "
        "whole run",
        "",
        "| Records | run built s | dashboard start-up s | whole run read s | first paint ms (median) | min | max "
        "| bytes for first paint | points drawn |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for size, built, startup, read, median, low, high, received, points in rows:
        lines.append(f"| {size:,} | {built:.1f} | {startup:.1f} | {read:.1f} | {median:,.0f} | {low:,.0f} | "
                     f"{high:,.0f} | {received:,} | {points:,} |")
    lines += [
        "",
        f"Update latency (record submitted to the real writer -> drawn on the page), {len(latencies)} updates at "
        f"0.1-0.3 s gaps, server polls every 0.25 s: median {statistics.median(latencies) * 1000:.0f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms "
        f"(target: within 1 s: {'met' if percentile(latencies, 0.99) <= 1.0 else 'not met'}).",
    ]
    return reporting.publish("\n".join(lines) + "\n", args.results, append=not args.no_append)


if __name__ == "__main__":
    raise SystemExit(main())
