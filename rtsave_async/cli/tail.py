"""``rtsave tail RUN``: follow new records as they are written, one compact line each (like ``tail -f``)."""

from __future__ import annotations

import argparse
import time
from typing import Any

from rtsave_async.cli.runs import RUN_HELP, add_command, open_run_argument, reading, write_out

EXAMPLE = """  rtsave tail models/go1_demo/realtime_data
  rtsave tail models/go1_demo/realtime_data --category episodes --fields timestep,env_id,success_rate
  rtsave tail models/go1_demo/realtime_data --category learning_metrics --fields timestep,logger.train/loss"""
MISSING = "-"


def add_parser(commands: argparse._SubParsersAction) -> None:
    from rtsave_async.cli.arguments import non_negative_float

    parser = add_command(commands, "tail", "follow a run's new records as they are written (Ctrl-C stops)",
                         EXAMPLE, tail)
    parser.add_argument("run", metavar="RUN", help=RUN_HELP)
    parser.add_argument("--category", default=None, help="one category (default: all of them)")
    parser.add_argument("--fields", default=None, metavar="A,B.C",
                        help="comma-separated fields to show, dotted for nested ones (default: the top-level "
                             "fields, nested ones abbreviated)")
    parser.add_argument("--lines", type=int, default=10, metavar="N",
                        help="records already written shown first, the newest N (default 10; 0: none)")
    parser.add_argument("--interval", type=non_negative_float, default=0.5,
                        help="seconds between looks for new records (default 0.5)")


def tail(args: argparse.Namespace) -> int:
    fields = [field.strip() for field in args.fields.split(",") if field.strip()] if args.fields else None
    with reading():
        run = open_run_argument(args.run)
        cursor = run.cursor(args.category)
        try:
            written = cursor.poll()
            show(written[len(written) - args.lines:] if 0 < args.lines < len(written) else
                 written if args.lines > 0 else [], fields)
            while True:
                time.sleep(args.interval)
                show(cursor.poll(), fields)
        except KeyboardInterrupt:
            return 0


def show(records: list[Any], fields: list[str] | None) -> None:
    """Print one line per record and flush (so a pipe sees each batch at once)."""
    if records:
        write_out("".join(line(record, fields) + "\n" for record in records))


def line(record: Any, fields: list[str] | None) -> str:
    """``<time> <category> field=value ...`` for one :class:`~rtsave_async.readers.run.Record`."""
    moment = (record.time or "")[11:23] or "--:--:--.---"
    data = record.data
    if fields is not None:
        parts = [f"{field}={_short(_lookup(data, field))}" for field in fields]
    elif isinstance(data, dict):
        parts = [f"{name}={_short(value)}" for name, value in data.items()]
    else:
        parts = [_short(data)]
    return f"{moment} {record.category} " + " ".join(parts)


def _lookup(data: Any, dotted: str) -> Any:
    """``data["a"]["b"]`` for ``"a.b"``; a key holding dots itself (``"train/loss"``) is tried whole first."""
    if isinstance(data, dict) and dotted in data:
        return data[dotted]
    head, _, rest = dotted.partition(".")
    if not rest or not isinstance(data, dict) or head not in data:
        return MISSING if not isinstance(data, dict) or head not in data else data[head]
    return _lookup(data[head], rest)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict):
        return "{" + ",".join(value) + "}" if len(value) <= 4 else f"{{{len(value)} fields}}"
    if isinstance(value, list):
        if len(value) <= 4 and all(not isinstance(item, (dict, list)) for item in value):
            return "[" + ",".join(_short(item) for item in value) + "]"
        return f"[{len(value)} items]"
    return "null" if value is None else str(value)
