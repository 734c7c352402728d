"""What the run-reading commands share: opening RUN, and turning read errors into one line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rtsave_async.cli.errors import CliError
from rtsave_async.readers.run import Run, open_run

RUN_HELP = "a run folder (the save_dir holding run.json and the category folders)"


class ExampleFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples in a command's ``--help`` epilog as written."""


def add_command(commands: argparse._SubParsersAction, name: str, help: str, example: str,
                handler: object) -> argparse.ArgumentParser:
    """A sub-command with ``--help`` ending in ``example`` that runs ``handler(args)`` (its ``run_command``)."""
    parser = commands.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".",
                                 epilog=f"example:\n{example}", formatter_class=ExampleFormatter)
    parser.set_defaults(run_command=handler)
    return parser


def open_run_argument(text: str) -> Run:
    """The run named on the command line (a path, or a URL once stores take them), damage raising."""
    with reading():
        return open_run(text, errors="raise")


@contextmanager
def reading() -> Iterator[None]:
    """Missing folders, non-runs, damaged files, a missing extra and I/O errors become a
    :class:`CliError` (one line naming the path, exit status 2)."""
    try:
        yield
    except (FileNotFoundError, ValueError, ImportError) as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")) from None


def format_bytes(size: int | None) -> str:
    """``532 B``, ``41.2 KiB``, ``1.3 GiB`` (``?`` for None)."""
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def write_out(text: str) -> None:
    """Write ``text`` to stdout and flush; a pipe closed by the reader (``| head``) ends
    the command quietly, exit status 0."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the flush at exit cannot fail again
        raise SystemExit(0) from None
