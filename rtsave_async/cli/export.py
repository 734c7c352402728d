"""``rtsave export RUN --format parquet|csv|jsonl --out PATH``: every record of a category as a table file."""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

from rtsave_async.cli.errors import CliError
from rtsave_async.cli.runs import RUN_HELP, add_command, format_bytes, open_run_argument, reading

EXPORT_FORMATS = ("parquet", "csv", "jsonl")
EXAMPLE = """  rtsave export models/go1_demo/realtime_data --format parquet --out episodes.parquet
  rtsave export models/go1_demo/realtime_data --category learning_metrics --format csv --out metrics.csv"""


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = add_command(commands, "export", "write every record of a category as Parquet, CSV or JSON lines, "
                                             "nested fields as dotted columns", EXAMPLE, export)
    parser.add_argument("run", metavar="RUN", help=RUN_HELP)
    parser.add_argument("--format", choices=EXPORT_FORMATS, required=True,
                        help="parquet (needs the export extra), csv or jsonl")
    parser.add_argument("--category", default="episodes", help="the category to export (default episodes)")
    parser.add_argument("--out", required=True, metavar="PATH", help="the file to write (replaced if it exists)")
    parser.add_argument("--metadata", action="store_true",
                        help="add the _rtsave.writer, _rtsave.seq and _rtsave.time columns (default off)")


def export(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    with reading():
        if args.format == "parquet":
            from rtsave_async.readers.parquet import import_pyarrow

            import_pyarrow()  # before the run is read: a missing extra is said at once
        run = open_run_argument(args.run)
        frame = run.to_pandas(args.category, with_metadata=args.metadata)
    if frame.empty:
        raise CliError(f"{run.url}: no {args.category} records to export")
    temp = os.path.join(os.path.dirname(os.path.abspath(args.out)), f".{os.path.basename(args.out)}.{os.getpid()}.tmp")
    try:
        write_frame(frame, args.format, temp)
        os.replace(temp, args.out)
    except OSError as exc:
        raise CliError(f"--out {args.out}: {exc.strerror or exc}") from None
    except (ValueError, TypeError) as exc:  # pyarrow refusing a column of mixed types, say
        raise CliError(f"--out {args.out}: cannot write {args.format} ({exc})") from None
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
    print(f"rtsave: exported {len(frame):,} {args.category} records x {len(frame.columns)} columns to {args.out} "
          f"({format_bytes(os.path.getsize(args.out))}, {time.perf_counter() - started:.1f} s)")
    return 0


def write_frame(frame: Any, format: str, path: str) -> None:
    """Write ``frame``: Parquet keeps list columns as lists; CSV writes them as JSON text, JSON lines as arrays
    (missing values: empty in CSV, null in JSON lines)."""
    if format == "parquet":
        frame.to_parquet(path, index=False, compression="zstd")
    elif format == "csv":
        frame = frame.copy()
        for name in frame.columns:
            if frame[name].dtype == object and frame[name].map(lambda value: isinstance(value, (list, dict))).any():
                frame[name] = frame[name].map(lambda value: json.dumps(value) if isinstance(value, (list, dict))
                                              else value)
        frame.to_csv(path, index=False)
    else:  # orjson: every float as written (pandas' to_json rounds to 10 digits)
        import orjson

        option = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE
        with open(path, "wb") as handle:
            for row in frame.to_dict(orient="records"):
                handle.write(orjson.dumps(row, option=option))
