"""``rtsave inspect RUN``: a run (or each run of a parent folder) at a glance, rendered with rich."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from rtsave_async.cli.runs import RUN_HELP, add_command, format_bytes, open_run_argument, reading, write_out

EXAMPLE = """  rtsave inspect models/go1_demo/realtime_data
  rtsave inspect models                       # one line per run inside
  rtsave inspect models/go1_demo/realtime_data --json | jq .progress"""
SPARK = "▁▂▃▄▅▆▇█"
STATE_STYLES = {"running": "bold green", "finished": "bold blue", "crashed": "bold red"}
ARROWS = {"up": "[green]↑[/]", "down": "[red]↓[/]", "flat": "→", None: ""}


def add_parser(commands: argparse._SubParsersAction) -> None:
    from rtsave_async.cli.arguments import positive_int  # loaded already: it is building this parser

    parser = add_command(commands, "inspect", "summarize a run, or list the runs of a parent folder", EXAMPLE,
                         inspect)
    parser.add_argument("run", metavar="RUN", help=RUN_HELP + ", or a folder holding runs")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object (for scripts)")
    parser.add_argument("--window", type=positive_int, default=100,
                        help="finished episodes in the 'last window' figures (default 100)")
    parser.add_argument("--full", action="store_true",
                        help="read every episode record, for the mean return over all episodes (default: only "
                             "the newest files are read)")


def inspect(args: argparse.Namespace) -> int:
    from rtsave_async.readers.discover import find_runs
    from rtsave_async.readers.run import open_run
    from rtsave_async.readers.summary import run_row, summarize

    with reading():
        runs = find_runs(args.run)
        if list(runs) != [""]:
            if not runs:
                open_run_argument(args.run)  # says why this is no run
            rows = [run_row(name, open_run(store, errors="raise")) for name, store in runs.items()]
            if args.json:
                write_out(json.dumps({"runs": rows}) + "\n")
            else:
                render_runs(args.run, rows)
            return 0
        summary = summarize(open_run_argument(args.run), window=args.window, full=args.full)
    if args.json:
        write_out(json.dumps(summary) + "\n")
    else:
        render_summary(summary)
    return 0


def render_runs(parent: str, rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(rows)} runs in {parent}", title_justify="left")
    for column, justify in (("run", "left"), ("status", "left"), ("timesteps", "right"),
                            ("success rate", "right"), ("last update", "left")):
        table.add_column(column, justify=justify)
    for row in rows:
        table.add_row(row["name"], _state(row["state"]), _count(row["timesteps"]), _percent(row["success_rate"]),
                      _ago(row["last_update"], short=True))
    Console().print(table)


def render_summary(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", justify="right")
    grid.add_column(overflow="fold")  # paths are never cut short
    progress, episodes, window = summary["progress"], summary["episodes"], summary["episodes"]["window"]
    env = summary["env"]
    status = summary["status"]
    grid.add_row("run", f"{summary['url']}  {_state(status['state'])}  (format {summary['format'] or '?'}, "
                        f"{len(status['writers'])} writer(s), last update {_ago(status['last_update'])})")
    grid.add_row("training", f"{summary['algorithm'] or '?'} ({summary['policy'] or '?'}) on {env['name'] or '?'}"
                             f", {env['num_envs'] or '?'} envs" + _details(env))
    grid.add_row("hyperparameters", ", ".join(f"{name}={value}" for name, value in summary["hyperparameters"].items())
                 or "-")
    grid.add_row("progress", _progress(progress))
    grid.add_row("episodes", f"{_count(episodes['total'])} episodes, success rate {_percent(episodes['success_rate'])}"
                             f", mean return {_number(episodes['mean_return'])}"
                             + ("" if episodes["complete"] else " (all episodes: --full)"))
    grid.add_row(f"last {window['size']}", f"{window['episodes']} episodes, success rate "
                 f"{_percent(window['success_rate'])}, mean return {_number(window['mean_return'])}  "
                 f"{_sparkline(window['sparkline'])} {ARROWS[window['trend']]}")
    learning = summary["learning"]
    metrics = ", ".join(f"{name.split('/', 1)[1]}={_number(value)}" for name, value in learning["metrics"].items()
                        if name.startswith("train/"))
    grid.add_row("learning", f"at {_count(learning['timestep'])}: fps {_number(learning['fps'])}, memory "
                             f"{_number(learning['memory_mb'])} MB" + (f"\n{metrics}" if metrics else ""))
    curriculum = summary["curriculum"]
    grid.add_row("curriculum", f"rand_power {_numbers(curriculum['rand_power'])}, curriculum progress "
                               f"{_number(curriculum['curriculum_progress'])}")
    grid.add_row("checkpoints", _checkpoints(summary["checkpoints"]))
    grid.add_row("writer health", _health(summary["writer_health"]))
    console = Console()
    console.print(grid)
    if summary["resume_command"]:  # one line, as it is, for copying
        console.print("resume with: " + summary["resume_command"], soft_wrap=True, markup=False, highlight=False)


def _details(env: dict[str, Any]) -> str:
    parts = [f"ctrl_type {env['ctrl_type']}" if env["ctrl_type"] else "", "biped" if env["biped"] else ""]
    parts = [part for part in parts if part]
    return f" ({', '.join(parts)})" if parts else ""


def _progress(progress: dict[str, Any]) -> str:
    text = f"{_count(progress['timesteps'])} of {_count(progress['total_timesteps'])} timesteps"
    if progress["fraction"] is not None:
        text += f" ({progress['fraction']:.0%})"
    text += f", wall {_duration(progress['wall_seconds'])}, {_number(progress['steps_per_second'])} steps/s"
    if progress["eta_seconds"] is not None:
        text += f", ETA {_duration(progress['eta_seconds'])}"
    if progress["training_starts"] > 1:
        text += f", {progress['training_starts'] - 1} resume(s)"
    return text


def _checkpoints(checkpoints: list[dict[str, Any]]) -> str:
    if not checkpoints:
        return "none"
    lines = [f"{'[green]resumable[/]' if entry['resumable'] else '[red]incomplete[/]'}  step "
             f"{_count(entry['timestep'])}  {format_bytes(entry['bytes'])}  {entry['path']}" for entry in checkpoints[:5]]
    if len(checkpoints) > 5:
        lines.append(f"... {len(checkpoints) - 5} older")
    return "\n".join(lines)


def _health(health: dict[str, Any]) -> str:
    def flagged(name: str) -> str:
        return f"[bold red]{name} {health[name]}[/]" if health[name] else f"{name} 0"

    text = (f"written {_count(health['written'])}, {flagged('dropped')}, {flagged('failed')}, {flagged('errors')}, "
            f"queue peak {health['peak_queue_depth']}")
    if health["writer_died"]:
        text += ", [bold red]writer thread died[/]"
    if health["last_error"]:
        text += f"\nlast error: [red]{health['last_error']}[/]"
    return text


def _state(state: str) -> str:
    return f"[{STATE_STYLES.get(state, 'bold')}]{state}[/]"


def _sparkline(values: list[float]) -> str:
    if not values:
        return ""
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    return "".join(SPARK[min(len(SPARK) - 1, int((value - low) / span * len(SPARK)))] for value in values)


def _count(value: Any) -> str:
    return "?" if value is None else f"{value:,}"


def _percent(value: Any) -> str:
    return "-" if value is None else f"{value:.1%}"


def _number(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:,.4g}" if isinstance(value, float) else f"{value:,}"


def _numbers(values: Any) -> str:
    return "-" if not isinstance(values, list) else "[" + ", ".join(_number(value) for value in values) + "]"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{seconds:.1f}s"


def _ago(moment: str | None, short: bool = False) -> str:
    from rtsave_async.names import parse_utc_iso

    parsed = parse_utc_iso(moment)
    if parsed is None:
        return "-"
    ago = f"{_duration(max(0.0, time.time() - parsed))} ago"
    return ago if short else f"{moment[:19].replace('T', ' ')} UTC ({ago})"
