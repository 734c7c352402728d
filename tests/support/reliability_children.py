"""Child processes of the reliability scenarios (``tests/support/reliability_scenarios.py``).

Run as ``python -m tests.support.reliability_children KIND ...``:

- ``stream``: submits numbered records flat out (or paced) until killed.
- ``train``: PPO on Pendulum-v1 with :class:`RealTimeSavingCallback`, ending as ``--mode`` says.
- ``gated_checkpoint``: stores a checkpoint's attachment, then stops before its JSON.
- ``read``: lists and parses a save_dir over and over, reporting what it saw.

Each writing child keeps a :class:`SubmitLedger`: a small side file rewritten in place
(``os.pwrite``) before and after every submit, so the parent knows what was submitted
even after a SIGKILL. The page cache outlives a killed process, so no fsync is needed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from rtsave_async.names import JSON_SUFFIX, WRITERS_FOLDER, is_temp_name
from rtsave_async.sinks import LocalSink
from rtsave_async.writer import SnapshotWriter
from tests.support.sinks import FailingSink, SlowSink

LEDGER_BYTES = 2048
STREAM_CATEGORY = "episodes"
PPO_OPTIONS: dict[str, Any] = {"n_steps": 64, "batch_size": 64, "n_epochs": 1, "policy_kwargs": {"net_arch": [16]}}
TRAIN_ENVS = 2
SAVE_FREQUENCY = 16
CHECKPOINT_FREQUENCY = 128
CALLBACK_END_TIMESTEP = 1000
ENV_FAILURE_STEP = 500  # per env: the env raises at this many steps since its creation
READ_RECORD_KEY = "sha256"


@dataclass
class Ledger:
    """Submits per category: started (``attempted``), returned True (``accepted``) or False (``refused``)."""

    attempted: Counter[str] = field(default_factory=Counter)
    accepted: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)

    def in_flight(self, category: str) -> int:
        """1 if a submit to ``category`` had started but not returned (the process died in it)."""
        return self.attempted[category] - self.accepted[category] - self.refused[category]


class SubmitLedger:
    """Counts every ``SnapshotWriter.submit`` of this process into a side file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        self.ledger = Ledger()
        self._lock = threading.Lock()
        self._save()

    def install(self) -> None:
        """Route every ``SnapshotWriter.submit`` through this ledger."""
        original_submit = SnapshotWriter.submit
        ledger = self

        def counted_submit(writer: SnapshotWriter, category: str, *args: Any, **kwargs: Any) -> bool:
            ledger.count("attempted", category)
            accepted = original_submit(writer, category, *args, **kwargs)
            ledger.count("accepted" if accepted else "refused", category)
            return accepted

        SnapshotWriter.submit = counted_submit  # type: ignore[method-assign]

    def count(self, outcome: str, category: str) -> None:
        with self._lock:
            getattr(self.ledger, outcome)[category] += 1
            self._save()

    def _save(self) -> None:
        data = orjson.dumps({name: dict(getattr(self.ledger, name)) for name in ("attempted", "accepted", "refused")})
        os.pwrite(self._fd, data.ljust(LEDGER_BYTES), 0)


def read_ledger(path: Path) -> Ledger:
    """The ledger a child left at ``path`` (empty if it never started one)."""
    try:
        data = orjson.loads(path.read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return Ledger()
    return Ledger(**{name: Counter(counts) for name, counts in data.items()})


def stream(args: argparse.Namespace) -> None:
    """Submit ``{"index": i, "payload": ...}`` records until killed; sleep 1 ms every ``pace_every``."""
    SubmitLedger(args.ledger).install()
    writer = SnapshotWriter(args.save_dir, queue_size=args.queue_size, block_timeout=60, format=args.format)
    payload = "x" * args.payload_bytes
    index = 0
    while True:
        writer.submit(STREAM_CATEGORY, [{"index": index, "payload": payload}])
        index += 1
        if args.pace_every and index % args.pace_every == 0:
            time.sleep(0.001)


def train(args: argparse.Namespace) -> None:
    """PPO with the saving callback; ends by ``args.mode``."""
    import gymnasium as gym
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    from rtsave_async import RealTimeSavingCallback

    class FailingStep(gym.Wrapper):
        """Raises inside ``step`` after ``ENV_FAILURE_STEP`` steps."""

        def __init__(self, env: gym.Env) -> None:
            super().__init__(env)
            self.steps = 0

        def step(self, action: Any) -> Any:
            self.steps += 1
            if self.steps >= ENV_FAILURE_STEP:
                raise RuntimeError("env.step failed on purpose")
            return self.env.step(action)

    class EndTraining(BaseCallback):
        """Ends training at ``CALLBACK_END_TIMESTEP`` by raising or by ``sys.exit``."""

        def _on_step(self) -> bool:
            if self.num_timesteps >= CALLBACK_END_TIMESTEP:
                if args.mode == "sys_exit":
                    sys.exit(5)
                raise RuntimeError("a callback failed on purpose")
            return True

    torch.set_num_threads(1)
    SubmitLedger(args.ledger).install()
    sink = LocalSink(args.save_dir)
    if args.seconds_per_file != 0:
        sink = SlowSink(sink, None if args.seconds_per_file < 0 else args.seconds_per_file)
    env = make_vec_env("Pendulum-v1", n_envs=TRAIN_ENVS, seed=0,
                       wrapper_class=FailingStep if args.mode == "env_raises" else None)
    model = PPO("MlpPolicy", env, seed=0, device="cpu", **PPO_OPTIONS)
    saving = RealTimeSavingCallback(
        args.save_dir, save_frequency=SAVE_FREQUENCY, checkpoint_frequency=CHECKPOINT_FREQUENCY,
        save_checkpoints=not args.no_checkpoints,
        writer_options={"queue_size": args.queue_size, "block_timeout": 60, "exit_timeout": args.exit_timeout,
                        "sink": sink, "format": args.format},
        checkpoint_options={"keep_last": args.keep_last},
    )
    callbacks = [saving, EndTraining()] if args.mode in ("callback_raises", "sys_exit") else [saving]
    total = args.total_timesteps if args.mode == "return" else 10**9
    model.learn(total, callback=callbacks)
    print(orjson.dumps(saving.writer_stats).decode(), flush=True)


def gated_checkpoint(args: argparse.Namespace) -> None:
    """Store a checkpoint's ``.zip``, then hang before its JSON (the parent kills us)."""
    writer = SnapshotWriter(args.save_dir, sink=FailingSink(LocalSink(args.save_dir), hang=True))
    writer.submit("checkpoints", lambda files: [{"files": files}], attachments={".zip": lambda: b"model" * 100})
    threading.Event().wait()


def stream_record(index: int, payload: str) -> dict[str, Any]:
    """A record whose content a reader can check: the payload's SHA-256 travels with it."""
    return {"index": index, "payload": payload, READ_RECORD_KEY: hashlib.sha256(payload.encode()).hexdigest()}


def check_save_dir_once(save_dir: Path) -> tuple[int, list[str]]:
    """Parse every final-named file under ``save_dir`` once; (files checked, problems).

    A JSON file must parse and its records' checksums match; a record's attachments
    (``files``) must exist with the recorded SHA-256. Files vanishing are no problem.
    """
    checked, problems = 0, []
    try:
        folders = [entry for entry in os.scandir(save_dir) if entry.is_dir() and entry.name != WRITERS_FOLDER]
    except FileNotFoundError:
        return 0, []
    for folder in folders:
        for name in os.listdir(folder.path):
            if is_temp_name(name) or not name.endswith(JSON_SUFFIX):
                continue
            path = Path(folder.path, name)
            try:
                records = orjson.loads(path.read_bytes())
            except FileNotFoundError:
                continue
            except orjson.JSONDecodeError as exc:
                problems.append(f"{path}: {exc}")
                continue
            checked += 1
            if isinstance(records, dict):  # checkpoints and hyperparameters: one object per file
                records = [records]
            problems.extend(f"{path}: {problem}" for record in records for problem in _record_problems(path, record))
    return checked, problems


def _record_problems(path: Path, record: dict[str, Any]) -> list[str]:
    problems = []
    if READ_RECORD_KEY in record and hashlib.sha256(record["payload"].encode()).hexdigest() != record[READ_RECORD_KEY]:
        problems.append(f"record {record.get('index')} payload differs from its checksum")
    for entry in (record.get("files") or {}).values():
        attachment = path.with_name(entry["name"])
        if not attachment.is_file() or hashlib.sha256(attachment.read_bytes()).hexdigest() != entry["sha256"]:
            problems.append(f"attachment {entry['name']} missing or differs from the recorded SHA-256")
    return problems


def read(args: argparse.Namespace) -> None:
    """Check the save_dir over and over until ``args.stop_file`` exists; print a JSON summary."""
    checked, problems, passes = 0, [], 0
    stop_file = Path(args.stop_file)
    print("reading", flush=True)
    while not stop_file.exists():
        pass_checked, pass_problems = check_save_dir_once(Path(args.save_dir))
        checked, passes = checked + pass_checked, passes + 1
        problems.extend(pass_problems)
    print(orjson.dumps({"checked": checked, "passes": passes, "problems": problems[:20]}).decode(), flush=True)


CHILDREN: dict[str, Callable[[argparse.Namespace], None]] = {
    "stream": stream, "train": train, "gated_checkpoint": gated_checkpoint, "read": read,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    kinds = parser.add_subparsers(dest="kind", required=True)
    streamer = kinds.add_parser("stream")
    streamer.add_argument("save_dir")
    streamer.add_argument("ledger")
    streamer.add_argument("--pace_every", type=int, default=0)
    streamer.add_argument("--payload_bytes", type=int, default=2000)
    streamer.add_argument("--queue_size", type=int, default=256)
    streamer.add_argument("--format", default="json")
    trainer = kinds.add_parser("train")
    trainer.add_argument("save_dir")
    trainer.add_argument("ledger")
    trainer.add_argument("--mode", choices=("forever", "return", "env_raises", "callback_raises", "sys_exit"),
                         default="forever")
    trainer.add_argument("--total_timesteps", type=int, default=1024)
    trainer.add_argument("--queue_size", type=int, default=1024)
    trainer.add_argument("--exit_timeout", type=float, default=60.0)
    trainer.add_argument("--keep_last", type=int, default=None)
    trainer.add_argument("--no_checkpoints", action="store_true")
    trainer.add_argument("--format", default="json")
    trainer.add_argument("--seconds_per_file", type=float, default=0.0,
                         help="extra time the disk takes per file; negative: it never answers")
    gated = kinds.add_parser("gated_checkpoint")
    gated.add_argument("save_dir")
    reader = kinds.add_parser("read")
    reader.add_argument("save_dir")
    reader.add_argument("--stop_file", required=True)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    CHILDREN[args.kind](args)


if __name__ == "__main__":
    main()
