"""The ``rtsave`` argument parser and the checks that need no torch or SB3.

Everything here imports in a fraction of a second, so a mistyped flag is reported
before the heavy modules load.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from rtsave_async import __version__
from rtsave_async.formats import FORMATS, JSON
from rtsave_async.names import CHECKPOINTS
from rtsave_async.cli.environments import (
    ALGORITHM_ACTION_SPACES,
    GO1_ENV_ID,
    check_algorithm_fits,
    environment_options,
)
from rtsave_async.cli.errors import CliError
from rtsave_async.readers import list_snapshot_files
from rtsave_async.readers.run import Run
from rtsave_async.readers.store import LocalRunStore
from rtsave_async.remote.urls import default_spool_dir, is_url, parse_url, save_location

MAX_NAME_BYTES = 255  # NAME_MAX of Linux file systems (ext4, xfs, btrfs, tmpfs)
VEC_ENV_NAMES = ("dummy", "subproc")
EXPORT_LAYOUTS = ("sb3", "zoo")

TORCH_THREADS_HELP = (
    "torch intra-op threads (default 1): the small MLP policies of SB3 train fastest on one "
    "thread on a CPU; more threads mostly wait on each other, and on a busy machine they make "
    "training several times slower")
RAND_POWER_HELP = (
    "Go1 domain randomization at the start (default 0 = off); the curriculum lowers it linearly "
    "to 0 at --total_timesteps. On resume it continues from the checkpoint's value (or from this "
    "value, when given) down to 0 at the new --total_timesteps")


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object of keyword arguments")
    return value


#: Commands in modules of their own, each with ``add_parser(commands)`` setting ``run_command``.
COMMAND_MODULES = (
    "rtsave_async.cli.dashboard",
    "rtsave_async.cli.inspect",
    "rtsave_async.cli.tail",
    "rtsave_async.cli.export",
    "rtsave_async.cli.archive",
    "rtsave_async.cli.sync",
)

ALLOW_PICKLE_HELP = ("load the pickled state of a checkpoint written by an older version (unpickling runs code: "
                     "trusted files only; default off)")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="rtsave", description="Train or test an SB3 agent with real-time saving.")
    parser.add_argument("--version", action="version", version=f"rtsave {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineErrorParser)
    train = commands.add_parser("train", help="train (or resume) with real-time saving")
    test = commands.add_parser("test", help="run episodes of a saved model (deterministic actions)")
    for sub in (train, test):
        sub.add_argument("--env", default=None, help=f"Gymnasium env id (default {GO1_ENV_ID}, or the checkpoint's)")
        sub.add_argument("--ctrl_type", choices=("position", "torque"), default=None,
                         help="Go1 control type (default position, or the checkpoint's)")
        sub.add_argument("--biped", action="store_true", default=None,
                         help="Go1 stands and walks on its hind legs (default off, or the checkpoint's)")
        sub.add_argument("--rand_power", type=non_negative_float, default=None, help=RAND_POWER_HELP)
        sub.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
        sub.add_argument("--model_path", default=None,
                         help="checkpoint .zip or .json: train resumes from it, test runs it (default none: "
                              "train starts a new run)")
        sub.add_argument("--algo", choices=sorted(ALGORITHM_ACTION_SPACES), default=None,
                         help="algorithm (default: the checkpoint's, else ppo)")
        sub.add_argument("--torch_threads", type=positive_int, default=1, help=TORCH_THREADS_HELP)
        sub.add_argument("--allow_pickle", action="store_true", help=ALLOW_PICKLE_HELP)
    train.add_argument("--run_name", default=None, help="run name (default go1_<algo>_<YYYYMMDD_HHMMSS>)")
    train.add_argument("--total_timesteps", type=positive_int, default=20_000,
                       help="final num_timesteps, also when resuming (default 20000); PPO and A2C stop at the "
                            "end of a rollout, so at the next multiple of n_steps x num_envs (said at start)")
    train.add_argument("--num_envs", "--num_parallel_envs", dest="num_envs", type=positive_int, default=2,
                       help="parallel environments (default 2)")
    train.add_argument("--hyperparams", type=json_object, default={}, metavar="JSON",
                       help='algorithm keyword arguments for a new run, e.g. \'{"n_steps": 256}\' (default {})')
    train.add_argument("--save_frequency", type=positive_int, default=1000,
                       help="save records every N environment timesteps (default 1000)")
    train.add_argument("--checkpoint_frequency", type=positive_int, default=10_000,
                       help="checkpoint every N environment timesteps, and at the end (default 10000)")
    train.add_argument("--keep_last", type=positive_int, default=None,
                       help="newest checkpoints kept on disk (default all)")
    train.add_argument("--save_dir", default=None,
                       help="real-time data folder, or a storage URL such as s3://bucket/prefix/run (needs "
                            "the s3 extra; written through a local spool, uploaded behind) (default "
                            "models/<run_name>/realtime_data, or the resumed checkpoint's run folder)")
    train.add_argument("--spool_dir", default=None,
                       help="URL --save_dir only: the local folder written first (default "
                            "~/.cache/rtsave_async/spool/<protocol>/<bucket>/<path>)")
    train.add_argument("--vec", choices=VEC_ENV_NAMES, default="dummy", help="VecEnv class (default dummy)")
    train.add_argument("--format", choices=FORMATS, default=None,
                       help="how records are stored: json, one file per save, or jsonl.zst, compressed "
                            "append-only segments for frequent saving (default: the run folder's format, "
                            "else json)")
    train.add_argument("--no_progress", action="store_true", help="no progress bar (default: a bar)")
    test.add_argument("--episodes", type=positive_int, default=5, help="episodes to run (default 5)")
    test.add_argument("--record", default=None, metavar="GIF",
                      help="save a GIF of the first episode (default none; headless machines need MUJOCO_GL=egl)")
    checkpoint = commands.add_parser("checkpoint", help="work with a checkpoint")
    checkpoint_commands = checkpoint.add_subparsers(dest="checkpoint_command", required=True,
                                                    parser_class=OneLineErrorParser)
    export = checkpoint_commands.add_parser(
        "export", help="write a checkpoint as SB3's own files (model.zip, vecnormalize.pkl, replay_buffer.pkl)")
    export.add_argument("checkpoint", metavar="CKPT", help="the checkpoint's .zip or .json")
    export.add_argument("out_dir", metavar="OUT_DIR", help="folder to write into (created if missing)")
    export.add_argument("--layout", choices=EXPORT_LAYOUTS, default="sb3",
                        help="sb3: OUT_DIR/model.zip, vecnormalize.pkl, replay_buffer.pkl; zoo: what "
                             "`rl_zoo3.train -i OUT_DIR/<env>.zip` reads: <env>.zip, <env>/vecnormalize.pkl, "
                             "replay_buffer.pkl (default sb3)")
    export.add_argument("--torch_threads", type=positive_int, default=1, help=TORCH_THREADS_HELP)
    export.add_argument("--allow_pickle", action="store_true", help=ALLOW_PICKLE_HELP)
    for module in COMMAND_MODULES:
        importlib.import_module(module).add_parser(commands)
    return parser


def seed_style_argv(argv: Sequence[str]) -> list[str]:
    """``--run train ...`` (the seed's form) -> ``train ...``."""
    argv = list(argv)
    for index, word in enumerate(argv):
        if word == "--run" and index + 1 < len(argv):
            return [argv[index + 1], *argv[:index], *argv[index + 2:]]
        if word.startswith("--run="):
            return [word.split("=", 1)[1], *argv[:index], *argv[index + 1:]]
    return argv


def check_run_options(args: argparse.Namespace) -> None:
    """A run name is one plain folder name (at most 255 bytes) under models/; no path may hold a null byte."""
    name = args.run_name
    if name is not None and (not name or name in (".", "..") or "/" in name or "\0" in name):
        raise CliError(f"--run_name {name!r} must be a plain folder name (no '/', '..' or null byte)")
    name_bytes = len(os.fsencode(name)) if name is not None else 0
    if name_bytes > MAX_NAME_BYTES:
        raise CliError(f"--run_name is {name_bytes} bytes long; a folder name may have at most {MAX_NAME_BYTES}")
    if args.save_dir is not None and "\0" in args.save_dir:
        raise CliError(f"--save_dir {args.save_dir!r} contains a null byte")
    remote = is_url(args.save_dir) if args.save_dir else is_url(args.model_path)  # a resumed run stays where it was
    if args.spool_dir is not None and not remote:
        raise CliError("--spool_dir is only for a run in object storage (--save_dir s3://..., or resuming from "
                       "--model_path s3://... without --save_dir)")


def check_model_path(option: str, model_path: str | None) -> None:
    """The checkpoint path names a file; a folder gets its newest checkpoint offered."""
    if model_path is None or is_url(model_path):  # a URL is checked when it is fetched
        return
    path = Path(model_path)
    if path.is_dir():
        newest = newest_checkpoint(path)
        offer = f"its newest checkpoint is {newest}" if newest else "it holds no checkpoint"
        raise CliError(f"{option} {model_path} is a folder, not a checkpoint file; {offer}")
    if not path.is_file():
        raise CliError(f"{model_path}: no such checkpoint file")


def newest_checkpoint(folder: Path) -> Path | None:
    """The most recently written checkpoint JSON under ``folder`` (a run, data or checkpoints folder)."""
    folders = [folder] if folder.name == CHECKPOINTS else []
    folders += [path for path in folder.rglob(CHECKPOINTS) if path.is_dir()]
    candidates = [path for found in folders for path in list_snapshot_files(found.parent, CHECKPOINTS)]
    return max(candidates, key=lambda path: path.stat().st_mtime, default=None)


def check_writable(folder: Path | str, option: str = "--save_dir", spool_dir: str | None = None) -> None:
    """Create ``folder`` and write a file in it, so a folder that cannot be written fails before any work.
    For a URL: its spool folder (the network is never waited for: uploads retry in the background)."""
    if isinstance(folder, str):
        folder, option = spool_folder(folder, spool_dir), "the spool folder"
    probe = folder / f".rtsave-write-check-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise CliError(f"{option} {folder} is not writable ({exc.strerror or exc})") from None


def spool_folder(url: str, spool_dir: str | None) -> Path:
    """``--spool_dir``, else the default spool folder of ``url`` (a bad URL is a CliError)."""
    try:
        return Path(spool_dir) if spool_dir else default_spool_dir(parse_url(url))
    except ValueError as exc:
        raise CliError(f"--save_dir: {exc}") from None


def save_dir_for(args: argparse.Namespace, resumed_run_folder: Path | str | None) -> Path | str:
    """``--save_dir``, else the resumed checkpoint's run folder (without ``--run_name``),
    else models/<run_name>/realtime_data. A URL stays a string."""
    if args.save_dir:
        return save_location(args.save_dir)
    if resumed_run_folder is not None and args.run_name is None:
        return resumed_run_folder
    run_name = args.run_name or f"{args.env_id.split('/')[-1].lower()}_{args.algo}_{time.strftime('%Y%m%d_%H%M%S')}"
    return Path("models") / run_name / "realtime_data"


def storage_format(requested: str | None, save_path: Path | str, spool_dir: str | None = None) -> str:
    """The ``--format`` to write with: the one asked for, else the run folder's, else json.
    For a URL the spool's copy of the run is asked (no network at start).

    :raises CliError: if the run folder already holds records of another format
    """
    local = spool_folder(save_path, spool_dir) if isinstance(save_path, str) else save_path
    manifest = Run(LocalRunStore(local)).manifest()  # None: a new run, or a run from before run.json
    recorded = manifest.get("format") if isinstance(manifest, dict) else None
    if requested and recorded and requested != recorded:
        raise CliError(f"--format {requested}: {save_path} holds a {recorded} run; resume it with --format "
                       f"{recorded} or give another --save_dir")
    return requested or recorded or JSON


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Parse and check everything that can be checked without torch (a :class:`CliError` otherwise).

    For a new run this is everything: the env is made once to check the algorithm
    fits its action space, and the save folder is checked writable.
    """
    args = build_parser().parse_args(seed_style_argv(argv))
    if "run_command" in args:  # a command that checks its own arguments (cli/<command>.py)
        return args
    if args.command == "checkpoint":
        check_model_path("CKPT", args.checkpoint)
        return args
    check_model_path("--model_path", args.model_path)
    if args.command == "test":
        if args.model_path is None:
            raise CliError("test needs --model_path (a checkpoint .zip or .json)")
        return args
    check_run_options(args)
    if args.model_path is None:
        args.algo = args.algo or "ppo"
        args.env_id, args.env_kwargs = environment_options(args, {})
        check_algorithm_fits(args.algo, args.env_id, args.env_kwargs)
        args.save_path = save_dir_for(args, None)
        check_writable(args.save_path, spool_dir=args.spool_dir)
        args.format = storage_format(args.format, args.save_path, args.spool_dir)
    return args
