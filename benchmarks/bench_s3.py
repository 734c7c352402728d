"""Object-storage benchmark: a run written to ``s3://`` on a loopback S3 server (moto).

Run ``python -m benchmarks.bench_s3`` (about 5 minutes on 2 cores; ``--quick`` for a
smoke run). The server (``tests/support/s3.py``, moto's real S3 HTTP API) runs in a
child process so it takes no GIL time from the measured one. Measured:

1. Records/s: 1-record episode saves submitted as fast as possible with
   ``format="jsonl.zst"``, until ``close()`` returns (everything uploaded), against the
   same into a local folder.
2. Upload lag: saves submitted at a steady rate; a reader in another process follows
   the run through ``open_run(url).cursor()`` and notes when each record first shows;
   lag = seen - submitted (one host clock), median and p99, at the default
   ``upload_interval`` (2 s).
3. Checkpoint upload: a checkpoint of incompressible attachments (1, 16, 64 MiB):
   local write time (submit -> ``on_written``) against the time until its JSON is
   in the bucket.
4. Training throughput: PPO on CartPole (4 envs, small rollouts) with ``ComprehensiveSavingCallback`` at
   its defaults, ``s3://`` save_dir against a local one, each run a fresh child
   process, interleaved round after round; steps/s from the first to the last step
   (the end of ``learn()``, which waits for the upload, is reported apart; the rate
   includes the uploader's start: s3fs/botocore loading its S3 model on the writer
   thread in the first second); and one run
   pair during which the server is down for 30 s (records lost counted from the bucket
   afterwards).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.reporting import add_run_options, header_lines, publish

SECTION_HEADING = "## Object storage (bench_s3)"
TESTS = Path(__file__).resolve().parents[1] / "tests"
PROJECT_ROOT = Path(__file__).resolve().parents[1]
TARGET_TRAINING_RATIO = 0.99
OUTAGE_SECONDS = 30.0


@dataclass(frozen=True)
class Scale:
    records: int  # for records/s
    lag_records: int
    lag_rate: float  # saves per second
    checkpoint_mib: tuple[int, ...]
    timesteps: int
    rounds: int
    outage_timesteps: int
    outage_seconds: float
    ppo: dict[str, int]  # PPO hyperparameters (the callback runs at its defaults)


FULL = Scale(records=50_000, lag_records=600, lag_rate=40.0, checkpoint_mib=(1, 16, 64), timesteps=80_000,
             rounds=3, outage_timesteps=150_000, outage_seconds=OUTAGE_SECONDS,
             ppo={"n_steps": 512, "batch_size": 256, "n_epochs": 4})
QUICK = Scale(records=500, lag_records=20, lag_rate=20.0, checkpoint_mib=(1,), timesteps=512, rounds=1,
              outage_timesteps=1024, outage_seconds=1.0, ppo={"n_steps": 64, "batch_size": 64, "n_epochs": 1})


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def child_environment(server: Any, spool_root: Path) -> dict[str, str]:
    return dict(os.environ, **server.environment(), PYTHONPATH=str(PROJECT_ROOT), RTSAVE_SPOOL_ROOT=str(spool_root))


# ---------------------------------------------------------------------------- 1. records/s
def records_per_second(save_dir: str, count: int) -> float:
    from rtsave_async import SnapshotWriter

    started = time.perf_counter()
    writer = SnapshotWriter(save_dir, format="jsonl.zst", queue_size=4096)
    for i in range(count):
        writer.submit("episodes", {"i": i, "episode_reward": 1.5, "episode_length": 200})
    stats = writer.close(timeout=300)
    elapsed = time.perf_counter() - started
    assert stats["written"] == count and stats.get("upload", {}).get("pending_files", 0) == 0, stats
    return count / elapsed


# ---------------------------------------------------------------------------- 2. lag
FOLLOW_CODE = """
import json, sys, time
from rtsave_async.readers import open_run
url, expected, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
while True:
    try:
        cursor = open_run(url).cursor("episodes")
        break
    except (FileNotFoundError, ValueError):
        time.sleep(0.05)
lags = []
deadline = time.monotonic() + 120
while len(lags) < expected and time.monotonic() < deadline:
    for record in cursor.poll():
        lags.append(time.time() - record.data["submitted"])
    time.sleep(0.1)
json.dump(lags, open(out, "w"))
"""


def upload_lag(url: str, count: int, rate: float, environment: dict[str, str], work: Path) -> list[float]:
    from rtsave_async import SnapshotWriter

    out = work / f"lags-{uuid.uuid4().hex[:6]}.json"
    writer = SnapshotWriter(url, format="jsonl.zst")
    follower = subprocess.Popen([sys.executable, "-c", FOLLOW_CODE, url, str(count), str(out)], env=environment)
    try:
        for i in range(count):
            writer.submit("episodes", {"i": i, "submitted": time.time()})
            time.sleep(1 / rate)
        follower.wait(180)
    finally:
        writer.close(timeout=60)
        if follower.poll() is None:
            follower.kill()
    lags = json.loads(out.read_text())
    assert len(lags) == count, f"the remote reader saw {len(lags)} of {count} records"
    return lags


# ---------------------------------------------------------------------------- 3. checkpoints
def checkpoint_times(url: str, local: Path, mib: int) -> tuple[float, float, float]:
    """(local write seconds to the spool, seconds until the JSON is in the bucket, local folder seconds)."""
    from rtsave_async import SnapshotWriter
    from rtsave_async.readers.remote_store import FsspecRunStore

    blob = os.urandom(mib * 2**20)
    results = []
    for save_dir in (url, str(local)):
        writer = SnapshotWriter(save_dir)
        written: dict[str, float] = {}

        def note_written(where: str | None) -> None:
            written["at"] = time.perf_counter()

        started = time.perf_counter()
        writer.submit("checkpoints", lambda files: [{"files": {k: {"name": v["name"]} for k, v in files.items()}}],
                      attachments={".zip": lambda: blob}, on_written=note_written)
        writer.flush()
        local_seconds = written["at"] - started
        remote_seconds = None
        if save_dir == url:
            store = FsspecRunStore(url)
            while not any(key.endswith(".json") for key in store.list("checkpoints")):
                time.sleep(0.02)
            remote_seconds = time.perf_counter() - started
        writer.close(timeout=120)
        results.append((local_seconds, remote_seconds))
    return results[0][0], results[0][1], results[1][0]


# ---------------------------------------------------------------------------- 4. training
TRAIN_CODE = """
import json, sys, time
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.callbacks import BaseCallback
from rtsave_async import ComprehensiveSavingCallback


class StepClock(BaseCallback):
    # The per-step rate: from the first to the last step, without the writer's start and close.
    def _on_step(self):
        now = time.perf_counter()
        if not hasattr(self, "first"):
            self.first, self.first_steps = now, self.num_timesteps
        self.last, self.last_steps = now, self.num_timesteps
        return True


save_dir, timesteps, hyperparameters = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
torch.set_num_threads(1)  # as rtsave train's default --torch_threads 1: fastest, and steadier on a shared machine
env = make_vec_env("CartPole-v1", n_envs=4, seed=0)
model = PPO("MlpPolicy", env, seed=0, device="cpu", **hyperparameters)
saving = ComprehensiveSavingCallback(save_dir, total_timesteps=timesteps, writer_options={"exit_timeout": 120})
clock = StepClock()
print("started", flush=True)
model.learn(timesteps, callback=[saving, clock])
close_seconds = time.perf_counter() - clock.last
rate = (clock.last_steps - clock.first_steps) / (clock.last - clock.first)
print(json.dumps({"steps_per_second": rate, "close_seconds": close_seconds, "stats": saving.writer_stats}),
      flush=True)
"""


def train_once(save_dir: str, timesteps: int, ppo: dict[str, int], environment: dict[str, str],
               outage: tuple[Any, float] | None = None) -> dict[str, Any]:
    child = subprocess.Popen([sys.executable, "-c", TRAIN_CODE, save_dir, str(timesteps), json.dumps(ppo)],
                             env=environment, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "started"
    if outage is not None:
        server, seconds = outage
        time.sleep(2.0)
        server.stop()
        time.sleep(seconds)
        server.start()
    output = child.stdout.read()
    assert child.wait() == 0, output
    return json.loads(output.strip().splitlines()[-1])


def count_records(path_or_url: str) -> int:
    from rtsave_async.readers import open_run

    run = open_run(path_or_url)
    return sum(sum(1 for _ in run.records(category, branches="all")) for category in run.categories())


# ---------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_options(parser, "a smoke run: tiny counts, 1 s outage (figures meaningless)")
    args = parser.parse_args(argv)
    scale = QUICK if args.quick else FULL
    sys.path.insert(0, str(TESTS))
    from support.s3 import S3ServerProcess

    load_before = os.getloadavg()[0]
    server = S3ServerProcess()
    server.start()
    saved_environment = dict(os.environ)
    work = Path(tempfile.mkdtemp(prefix="bench_s3-"))
    os.environ.update(server.environment(), RTSAVE_SPOOL_ROOT=str(work / "spool"))
    environment = child_environment(server, work / "spool")
    bucket = server.new_bucket()
    try:
        rates = {"s3": records_per_second(f"s3://{bucket}/rate", scale.records),
                 "local": records_per_second(str(work / "rate"), scale.records)}
        lags = upload_lag(f"s3://{bucket}/lag", scale.lag_records, scale.lag_rate, environment, work)
        checkpoints = {mib: checkpoint_times(f"s3://{bucket}/ckpt{mib}", work / f"ckpt{mib}", mib)
                       for mib in scale.checkpoint_mib}
        rounds: list[dict[str, float]] = []
        for number in range(scale.rounds):
            order = ("local", "s3") if number % 2 == 0 else ("s3", "local")
            result = {}
            for variant in order:
                save_dir = f"s3://{bucket}/train{number}" if variant == "s3" else str(work / f"train{number}")
                run = train_once(save_dir, scale.timesteps, scale.ppo, environment)
                result[variant], result[f"{variant}_close"] = run["steps_per_second"], run["close_seconds"]
            rounds.append(result)
        outage_local = train_once(str(work / "outage-local"), scale.outage_timesteps, scale.ppo, environment)
        outage_url = f"s3://{bucket}/outage"
        outage_s3 = train_once(outage_url, scale.outage_timesteps, scale.ppo, environment,
                               (server, scale.outage_seconds))
        spool_records = count_records(str(work / "spool" / "s3" / bucket / "outage"))
        bucket_records = count_records(outage_url)
    finally:
        os.environ.clear()
        os.environ.update(saved_environment)
        server.close()
    section = report(args, scale, load_before, rates, lags, checkpoints, rounds, outage_local, outage_s3,
                     spool_records, bucket_records)
    return publish(section, args.results, not args.no_append)


def report(args, scale, load_before, rates, lags, checkpoints, rounds, outage_local, outage_s3, spool_records,
           bucket_records) -> str:
    command = "python -m benchmarks.bench_s3" + (" --quick" if args.quick else "")
    ratios = [result["s3"] / result["local"] for result in rounds]
    upload = outage_s3["stats"]["upload"]
    lines = header_lines(SECTION_HEADING, command, load_before) + [
        "- Load: other helpers' tests and builds ran on the machine at the same time (2 shared cores); "
        "the S3 server is moto's (`tests/support/s3.py`) in a child process on loopback.",
        "",
        "| measurement | figure |",
        "| --- | --- |",
        f"| records/s, jsonl.zst, submit -> close() with everything uploaded, s3:// | {rates['s3']:,.0f} |",
        f"| records/s, same, local folder | {rates['local']:,.0f} |",
        f"| upload lag (submitted -> seen by a remote `open_run` cursor), {len(lags)} records at "
        f"{scale.lag_rate:g}/s, upload_interval 2 s: median / p99 | {statistics.median(lags):.2f} s / "
        f"{percentile(lags, 0.99):.2f} s |",
    ]
    for mib, (spool_seconds, bucket_seconds, local_seconds) in checkpoints.items():
        lines.append(f"| checkpoint of {mib} MiB: local folder write / spool write (s3://) / until its JSON is "
                     f"in the bucket | {local_seconds * 1000:.0f} ms / {spool_seconds * 1000:.0f} ms / "
                     f"{bucket_seconds * 1000:.0f} ms |")
    lines += [
        f"| PPO CartPole, 4 envs, 1 torch thread, {scale.ppo}, {scale.timesteps} timesteps, callback defaults: steps/s local "
        f"vs s3:// "
        f"({len(rounds)} interleaved rounds) | "
        + "; ".join(f"{r['local']:,.0f} vs {r['s3']:,.0f}" for r in rounds) + " |",
        f"| ratio s3:// / local per round (target >= {TARGET_TRAINING_RATIO}) | "
        + ", ".join(f"{ratio:.3f}" for ratio in ratios) + f" (median {statistics.median(ratios):.3f}) |",
        "| end of learn() (last step -> callback closed: final save, close; for s3:// waiting for the upload), "
        "median local vs s3:// | "
        f"{statistics.median(r['local_close'] for r in rounds):.2f} s vs "
        f"{statistics.median(r['s3_close'] for r in rounds):.2f} s |",
        f"| {scale.outage_timesteps} timesteps with the server down for {scale.outage_seconds:g} s: steps/s "
        f"local vs s3:// | {outage_local['steps_per_second']:,.0f} vs {outage_s3['steps_per_second']:,.0f} "
        f"({outage_s3['steps_per_second'] / outage_local['steps_per_second']:.3f}) |",
        f"| records of that run: in the spool / in the bucket after the restart (lost: "
        f"{spool_records - bucket_records}) | {spool_records} / {bucket_records}; upload errors counted "
        f"{upload['errors']}, pending at close {upload['pending_files']} |",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
