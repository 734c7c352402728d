"""Command line: ``rtsave train`` / ``test`` / ``checkpoint export`` / ``sync`` (also ``python -m rtsave_async``).

The seed's form ``--run train|test`` is accepted too::

    rtsave train --run_name demo --total_timesteps 20000
    python -m rtsave_async --run train --model_path models/demo/realtime_data/checkpoints/checkpoint_....zip

Arguments are parsed and checked before torch and SB3 are imported, so a mistake is
reported at once, in one line, with exit status 2.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from rtsave_async.cli.errors import CliError

EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    from rtsave_async.cli.arguments import parse_args

    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        if "run_command" in args:
            return args.run_command(args)
        if args.command == "train":
            from rtsave_async.cli.train import train

            return train(args)
        if args.command == "test":
            from rtsave_async.cli.test import test

            return test(args)
        from rtsave_async.cli.checkpoint import export

        return export(args)
    except CliError as exc:
        print(f"rtsave: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


__all__ = ["CliError", "main"]
