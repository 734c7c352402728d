"""``rtsave dashboard RUN_OR_PARENT``: serve a live view of a run (or of the runs in a folder)."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import time
from typing import Any

from rtsave_async.cli.errors import CliError

EXAMPLE = """example:
  rtsave dashboard models/go1_demo/realtime_data      # one run, at http://127.0.0.1:8050/
  rtsave dashboard models --port 8060                 # every run under models/, pick runs to overlay"""


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Register ``dashboard`` on the ``rtsave`` sub-command parsers."""
    parser = commands.add_parser(
        "dashboard", help="live charts of a run (or of the runs in a folder) in the browser",
        description="Serve a live dashboard of a run folder, or of every run below a parent folder.",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", metavar="RUN_OR_PARENT", help="a run folder (its save_dir) or a folder of runs")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1, this machine only; 0.0.0.0 shows the "
                             "data to the network)")
    parser.add_argument("--port", type=port_number, default=8050, help="port (default 8050; 0: any free port)")
    parser.set_defaults(run_command=dashboard)
    return parser


def port_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number 0-65535, got {text!r}")
    return value


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def dashboard(args: argparse.Namespace) -> int:
    from rtsave_async.dashboard.server import Dashboard, serve

    started = time.perf_counter()
    board = Dashboard(args.run)
    try:
        records = board.discover()
    except FileNotFoundError as exc:
        raise CliError(str(exc)) from None
    if not board.runs:
        raise CliError(f"{args.run}: no run found in it or below it (no run.json, no category folder with records)")
    loading = any(run.loading for run in board.runs.values())
    print(f"rtsave: {len(board.runs)} run(s), {records:,} records read in {time.perf_counter() - started:.1f} s"
          + ("; the rest is read in the background, the page fills in as it comes" if loading else ""), flush=True)
    if not is_loopback(args.host):
        print(f"rtsave: warning: --host {args.host} serves the run's data to every machine that can reach this "
              f"one on the network (no password); use the default 127.0.0.1 to keep it on this machine", flush=True)

    def ready(url: str) -> None:
        print(f"rtsave: dashboard at {url} (Ctrl-C to stop)", flush=True)

    try:
        asyncio.run(serve(board, args.host, args.port, ready))
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        raise CliError(f"--host {args.host} --port {args.port}: cannot listen ({exc.strerror or exc})") from None
    return 0
