"""``rtsave sync RUN_DIR URL``: upload a run folder (a writer's spool, or any local run) to object storage."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from rtsave_async.cli.errors import CliError

EXAMPLE = ("example: rtsave sync ~/.cache/rtsave_async/spool/s3/my-bucket/sweep/run1 s3://my-bucket/sweep/run1\n"
           "(the endpoint and credentials come from AWS_ENDPOINT_URL, AWS_PROFILE, ~/.aws/config, ...)")


def add_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    sync = commands.add_parser(
        "sync", help="upload what a run folder has and the bucket lacks (resumable, idempotent), then verify",
        description="Upload a run folder to a storage URL: what is missing only, create-only, then verify sizes "
                    "and checksums. Safe while the run is still written, and to run again.",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    sync.add_argument("run_dir", metavar="RUN_DIR", help="the local run folder (a spool, or a local save_dir)")
    sync.add_argument("url", metavar="URL", help="where the run goes, e.g. s3://bucket/prefix/run")
    sync.add_argument("--timeout", type=float, default=300.0,
                      help="seconds to keep retrying network faults before giving up (default 300)")
    sync.set_defaults(run_command=sync_command)
    return sync


def check(args: argparse.Namespace) -> None:
    from rtsave_async.names import RUN_MANIFEST_KEY, STANDARD_CATEGORIES
    from rtsave_async.remote.urls import parse_url

    folder = Path(args.run_dir)
    if not folder.is_dir():
        raise CliError(f"{folder}: no such run folder")
    if not (folder / RUN_MANIFEST_KEY).is_file() and not any((folder / name).is_dir() for name in STANDARD_CATEGORIES):
        raise CliError(f"{folder}: not an rtsave run (no {RUN_MANIFEST_KEY}, no category folder)")
    try:
        args.remote = parse_url(args.url)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def sync_command(args: argparse.Namespace) -> int:
    """Check the arguments, upload, verify; 0 when everything is verified, 1 otherwise."""
    check(args)
    from rtsave_async.remote.filesystem import MissingExtraError, check_backend
    from rtsave_async.upload.sync import sync_run

    try:
        check_backend(args.remote)
    except (MissingExtraError, ValueError) as exc:
        raise CliError(str(exc)) from None
    report = asyncio.run(sync_run(args.run_dir, args.remote, timeout=args.timeout))
    stats = report.stats
    print(f"rtsave: sync {args.run_dir} -> {args.remote}: uploaded {stats['uploaded_files']} file(s) and "
          f"{stats['parts']} segment part(s), {stats['uploaded_bytes'] / 2**20:.2f} MiB; "
          f"{stats['already_there']} already there")
    if not report.complete:
        print(f"rtsave: error: {len(report.pending)} file(s) not uploaded within {args.timeout:g} s "
              f"(last error: {stats['last_error']}); run the same command again to resume", file=sys.stderr)
        return 1
    if report.missing or report.mismatched:
        for key in report.missing:
            print(f"rtsave: error: {args.remote.join(key)}: missing or another size than {args.run_dir}/{key}",
                  file=sys.stderr)
        for key in report.mismatched:
            print(f"rtsave: error: {args.remote.join(key)}: another checksum than {args.run_dir}/{key}",
                  file=sys.stderr)
        return 1
    conflicts = f"; {stats['conflicts']} conflict(s): {stats['last_error']}" if stats["conflicts"] else ""
    print(f"rtsave: verified {report.verified} file(s): all present with matching sizes and checksums{conflicts}")
    return 1 if stats["conflicts"] else 0
