"""``rtsave archive RUN``: pack a finished run's records into compressed segments or Parquet files."""

from __future__ import annotations

import argparse
import time

from rtsave_async.cli.runs import RUN_HELP, add_command, format_bytes, reading

EXAMPLE = """  rtsave archive models/go1_demo/realtime_data                     # Parquet (needs the export extra)
  rtsave archive models/go1_demo/realtime_data --format jsonl.zst"""


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = add_command(commands, "archive", "pack a finished run's records into few compressed files (Parquet or "
                                              "jsonl.zst) that the same reader reads; checkpoints stay", EXAMPLE,
                         archive)
    parser.add_argument("run", metavar="RUN", help=RUN_HELP + "; training must have finished")
    parser.add_argument("--format", choices=("parquet", "jsonl.zst"), default="parquet",
                        help="parquet: columnar, smallest, fastest into pandas (default); jsonl.zst: the "
                             "segment format, no extra needed")


def archive(args: argparse.Namespace) -> int:
    from rtsave_async.formats.archive import archive_run

    started = time.perf_counter()
    with reading():
        if args.format == "parquet":
            from rtsave_async.readers.parquet import import_pyarrow

            import_pyarrow()
        report = archive_run(args.run, args.format)
    print(f"rtsave: archived {report.url} as {report.format}: {report.files_before:,} files, "
          f"{format_bytes(report.bytes_before)} -> {report.files_after:,} files, {format_bytes(report.bytes_after)} "
          f"({_ratio(report.ratio)}, {time.perf_counter() - started:.1f} s); checkpoints unchanged")
    for category, sizes in report.categories.items():
        print(f"  {category}: {sizes['files_before']:,} files, {format_bytes(sizes['bytes_before'])} -> "
              f"{sizes['files_after']:,}, {format_bytes(sizes['bytes_after'])}")
    return 0


def _ratio(ratio: float) -> str:
    """``5.8x smaller``, or ``1.7x larger`` (a small run: Parquet's per-column overhead outweighs the JSON)."""
    return f"{ratio:.1f}x smaller" if ratio >= 1 else f"{1 / ratio:.1f}x larger"
