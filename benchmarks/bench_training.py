"""Training-overhead benchmark: what real-time saving costs a PPO run.

Run ``python -m benchmarks.bench_training`` (about 10-15 minutes on 2 cores;
``--quick`` for a smoke run). PPO trains ``--env-id`` (default ``Ant-v5``; the Go1
env is ``rtsave/Go1-v0``) on ``--n-envs`` (default 4) envs in a ``DummyVecEnv``
(``--vec subproc`` for a ``SubprocVecEnv``, ``--vec subproc-steps`` for one whose envs are
wrapped in :class:`~rtsave_async.collectors.ReadingsInStepInfo`).
Each run is a fresh child process; the variants are interleaved, round after round:

- ``(a)`` no callback;
- ``(b)`` :class:`RealTimeSavingCallback` at the seed's defaults (``save_frequency=1000``);
- ``(c)`` :class:`RealTimeSavingCallback` saving at every step (``save_frequency=1``);
- ``(d)`` naive: the same callback and collectors (so the SAME records), but every
  file is written with ``json.dump(..., indent=2)`` in the training thread, at every
  step like ``(c)``;
- ``(e)`` the seed's original pattern: ``get_attr`` of the envs' episode counters at
  every step, plus indented JSON written synchronously at each save (every 1000
  timesteps);
- ``(f)`` ours at every step like ``(c)``, in the segment format (``format="jsonl.zst"``:
  one append per writer batch instead of one file per save).

Three more split ``(f)``'s cost (``--variants g,q,p``; not run by default):

- ``(g)`` the records gathered at every step, never submitted: the training thread's
  gathering alone;
- ``(q)`` ``(f)`` with the writer thread asleep until ``close`` (a queue too large to
  fill, a drain interval longer than the run): gathering and submitting, with no
  writer running beside the training; its stores land in the fixed cost;
- ``(p)`` ``(f)``'s lines serialized on submit and piped to a child process that
  compresses and appends them (:mod:`benchmarks.piped_writer`): what is left when
  storing moves to another process.

Checkpoints are switched off in every variant (``bench_checkpoint`` measures them).

Reported: env-steps/s medians, ratios to ``(a)``, the fixed cost of each ``learn()``
(the callback's init, training start and training end: writer start, hyperparameter
record, final save, close) apart from the per-step rate, the added wall time of ``(d)``
vs ``(c)``, and the training-thread cost of one save (gather + copy + submit) measured
with ``perf_counter_ns`` around ``save_snapshot`` in a 12-env run saving every step.
The Markdown section is printed and appended to ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import io
import json
import os
import platform
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.piped_writer import PipedSegmentWriter
from benchmarks.reporting import add_run_options, cpu_model, file_system_of, publish
from stable_baselines3.common.callbacks import BaseCallback, CallbackList

from rtsave_async.callbacks import RealTimeSavingCallback
from rtsave_async.collectors import ReadingsInStepInfo
from rtsave_async.cli.environments import make_env
from rtsave_async.names import HYPERPARAMETERS, file_prefix, parse_name

SECTION_HEADING = "## Training overhead (bench_training)"
SEED_SAVE_FREQUENCY = 1000  # timesteps, the seed's default
SAVE_COST_P99_TARGET_US = 100.0
TARGET_RATIO_B = 0.99
TARGET_RATIO_C = 0.85
TARGET_RATIO_F = 0.95
TARGET_ADDED_TIME_FACTOR = 5.0
PROFILE_TOP = 12
QUEUE_UNTIL_CLOSE = 4_000_000  # snapshots: (q)'s queue, woken only when a quarter full
DRAIN_INTERVAL_UNTIL_CLOSE = 24 * 3600.0  # seconds: (q)'s writer sleeps through the run
EARLIER_DRAIN_INTERVAL = 0.05  # seconds: (r)'s, the writer's default before session 13

BUSY_STEP_US = 300  # (k)'s cost per step: about what (f) spends in its hooks on Go1

VARIANTS: dict[str, str] = {
    "a": "no callback",
    "b": f"ours, save_frequency={SEED_SAVE_FREQUENCY}",
    "c": "ours, save_frequency=1 (every step)",
    "d": "naive sync json.dump(indent=2), every step",
    "e": f"seed pattern: get_attr every step + sync indented JSON every {SEED_SAVE_FREQUENCY}",
    "f": "ours, format=jsonl.zst, save_frequency=1",
    # Where (f)'s cost goes; not run by default:
    "g": "(f)'s records gathered, not submitted",
    "q": "(f), writer thread asleep until close",
    "r": f"(f), drain_interval={EARLIER_DRAIN_INTERVAL} (saves held for as long)",
    "p": "(f)'s lines piped to a writer process",
    # Calibration: a known cost per step, and how much of it the paired ratio shows:
    "k": f"a callback busy for {BUSY_STEP_US} µs per step, saving nothing",
    "n": "a callback that does nothing (SB3's callback calls alone)",
}
DEFAULT_VARIANTS = ("a", "b", "c", "d", "e", "f")
VEC_NAMES = {"dummy": "DummyVecEnv", "subproc": "SubprocVecEnv",
             "subproc-steps": "SubprocVecEnv, each env in `ReadingsInStepInfo`"}


@dataclass(frozen=True)
class Scale:
    """How much work the benchmark does."""

    timesteps: int  # per training run
    rounds: int  # runs per variant
    save_cost_samples: int  # timed saves in the 12-env run


FULL_SCALE = Scale(timesteps=16384, rounds=5, save_cost_samples=1500)
QUICK_SCALE = Scale(timesteps=1024, rounds=1, save_cost_samples=100)


# ------------------------------------------------------------------ comparison writers
def _json_default(value: Any) -> Any:
    """``default=`` for stdlib json: numpy arrays and scalars as Python values."""
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


class SynchronousJsonWriter:
    """Writer stand-in that writes each submit at once, in the caller's thread.

    Same file layout as :class:`~rtsave_async.writer.SnapshotWriter`; each file is
    ``json.dump(records, indent=2)``, the naive way.
    """

    def __init__(self, save_dir: Path):
        self.save_dir = Path(save_dir)
        self.exit_timeout = 0.0  # nothing is ever pending
        self.drain_interval = 0.0  # each submit is written at once: the callback holds no save back
        self._sequence = 0
        self._bytes_written = 0

    def submit(self, category: str, records: Any, deadline: float | None = None) -> bool:
        """Write ``records`` now; a callable payload (hyperparameters) is called first, as the writer does."""
        records = records({}) if callable(records) else records
        folder = self.save_dir / category
        folder.mkdir(parents=True, exist_ok=True)
        self._sequence += 1
        stamp = time.strftime("%Y%m%d_%H%M%S")
        path = folder / f"{file_prefix(category)}_{stamp}_{self._sequence:06d}.json"
        with path.open("w", encoding="utf-8") as handle:
            json.dump(records, handle, indent=2, default=_json_default)
            self._bytes_written += handle.tell()
        return True

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def stats(self) -> dict[str, Any]:
        return {"written": self._sequence, "dropped": 0, "failed": 0, "bytes_written": self._bytes_written}


class SeedPatternCallback(RealTimeSavingCallback):
    """The seed's pattern: read the envs' episode counters with ``get_attr`` at every step.

    The counters are ``Monitor``'s ``episode_returns``/``episode_lengths``; saving goes
    through a :class:`SynchronousJsonWriter`.
    """

    def _on_step(self) -> bool:
        self.episode_counts = [len(returns) for returns in self.training_env.get_attr("episode_returns")]
        self.episode_lengths = self.training_env.get_attr("episode_lengths")
        return super()._on_step()


class TimedSavingCallback(RealTimeSavingCallback):
    """Records the training-thread time of every save, in ns: whole, and its gather + copy part."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.save_durations_ns: list[int] = []
        self.gather_durations_ns: list[int] = []

    def save_snapshot(self) -> None:
        start = time.perf_counter_ns()
        super().save_snapshot()
        self.save_durations_ns.append(time.perf_counter_ns() - start)

    def _gather_payloads(self, timestep: int) -> list[tuple[str, list[dict[str, Any]]]]:
        start = time.perf_counter_ns()
        payloads = super()._gather_payloads(timestep)
        self.gather_durations_ns.append(time.perf_counter_ns() - start)
        return payloads


class GatherOnlyCallback(RealTimeSavingCallback):
    """Gathers every save's records as usual but never submits them (hyperparameters
    excepted): the training thread's share of saving, without the queue or the writer."""

    def _submit(self, category: str, records: Any) -> None:
        if category == HYPERPARAMETERS:
            super()._submit(category, records)


class BusyStepCallback(BaseCallback):
    """Saves nothing and spends ``busy_us`` microseconds of Python per step: a cost known
    in advance, to see how much of a per-step cost the paired ratio shows."""

    def __init__(self, busy_us: float = BUSY_STEP_US):
        super().__init__()
        self.busy_seconds = busy_us * 1e-6

    def _on_step(self) -> bool:
        until = time.perf_counter() + self.busy_seconds
        while time.perf_counter() < until:
            pass
        return True


class PipedWriterCallback(RealTimeSavingCallback):
    """Saves through a :class:`~benchmarks.piped_writer.PipedSegmentWriter`, closed with training."""

    def __init__(self, save_dir: Path, **kwargs: Any):
        self.piped_writer = PipedSegmentWriter(save_dir)
        super().__init__(save_dir, writer=self.piped_writer, **kwargs)

    def _finish_writer(self) -> None:
        super()._finish_writer()
        self.writer_stats = self.piped_writer.close()


class FixedCostTimer(CallbackList):
    """Runs one callback and times the parts of ``learn()`` that do not scale with steps:
    ``init_callback``, ``on_training_start`` and ``on_training_end`` (``fixed_seconds``);
    and, apart, the time spent in its hooks that run during training (``update_locals``,
    ``on_step``, ``on_rollout_start``/``end``: ``hook_seconds``), the callback's direct
    cost per step (what it makes other code pay, e.g. the writer thread's share of the
    GIL, is left out)."""

    def __init__(self, callback: BaseCallback):
        super().__init__([callback])
        self.fixed_seconds = 0.0
        self.hook_seconds = 0.0

    def _timed(self, part: Any) -> None:
        start = time.perf_counter()
        part()
        self.fixed_seconds += time.perf_counter() - start

    def _hook(self, hook: Callable[..., Any], *args: Any) -> Any:
        start = time.perf_counter()
        result = hook(*args)
        self.hook_seconds += time.perf_counter() - start
        return result

    def _init_callback(self) -> None:
        self._timed(super()._init_callback)

    def _on_training_start(self) -> None:
        self._timed(super()._on_training_start)

    def _on_training_end(self) -> None:
        self._timed(super()._on_training_end)

    def update_child_locals(self, locals_: dict[str, Any]) -> None:
        self._hook(super().update_child_locals, locals_)

    def _on_step(self) -> bool:
        return self._hook(super()._on_step)

    def _on_rollout_start(self) -> None:
        self._hook(super()._on_rollout_start)

    def _on_rollout_end(self) -> None:
        self._hook(super()._on_rollout_end)


# ------------------------------------------------------------------ one run (child process)
def make_model(env_id: str, n_envs: int, n_steps: int, seed: int, vec: str = "dummy") -> Any:
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    vec_env_cls = SubprocVecEnv if vec.startswith("subproc") else DummyVecEnv
    wrapper_class = ReadingsInStepInfo if vec == "subproc-steps" else None  # idle unless a callback starts it
    # make_env registers the rtsave/* ids first, also inside SubprocVecEnv's fresh worker processes.
    env = make_vec_env(functools.partial(make_env, env_id), n_envs=n_envs, seed=seed, vec_env_cls=vec_env_cls,
                       wrapper_class=wrapper_class)
    return PPO("MlpPolicy", env, n_steps=n_steps, seed=seed, verbose=0)


def make_callback(variant: str, save_dir: Path) -> BaseCallback | None:
    """The callback of ``variant``; checkpoints are off in all (``bench_checkpoint`` measures them)."""
    if variant == "a":
        return None
    if variant == "b":
        return RealTimeSavingCallback(save_dir, save_frequency=SEED_SAVE_FREQUENCY, save_checkpoints=False)
    if variant == "c":
        return RealTimeSavingCallback(save_dir, save_frequency=1, save_checkpoints=False)
    if variant == "d":
        return RealTimeSavingCallback(save_dir, save_frequency=1, save_checkpoints=False,
                                      writer=SynchronousJsonWriter(save_dir))
    if variant == "e":
        return SeedPatternCallback(save_dir, save_frequency=SEED_SAVE_FREQUENCY, save_checkpoints=False,
                                   writer=SynchronousJsonWriter(save_dir))
    if variant == "f":
        return RealTimeSavingCallback(save_dir, save_frequency=1, save_checkpoints=False,
                                      writer_options={"format": "jsonl.zst"})
    if variant == "g":
        return GatherOnlyCallback(save_dir, save_frequency=1, save_checkpoints=False,
                                  writer_options={"format": "jsonl.zst"})
    if variant == "q":  # a queue too big to fill and a drain interval longer than any run: stored at close
        return RealTimeSavingCallback(save_dir, save_frequency=1, save_checkpoints=False,
                                      writer_options={"format": "jsonl.zst", "queue_size": QUEUE_UNTIL_CLOSE,
                                                      "drain_interval": DRAIN_INTERVAL_UNTIL_CLOSE})
    if variant == "r":
        return RealTimeSavingCallback(save_dir, save_frequency=1, save_checkpoints=False,
                                      writer_options={"format": "jsonl.zst", "drain_interval": EARLIER_DRAIN_INTERVAL})
    if variant == "p":
        return PipedWriterCallback(save_dir, save_frequency=1, save_checkpoints=False)
    if variant == "k":
        return BusyStepCallback()
    if variant == "n":
        return BusyStepCallback(busy_us=0)
    raise ValueError(f"unknown variant {variant!r}")


def run_training(args: argparse.Namespace) -> dict[str, Any]:
    """One timed ``learn()`` of ``args.variant``; returns steps/s and the seconds taken."""
    model = make_model(args.env_id, args.n_envs, args.n_steps, args.seed, args.vec)
    save_dir = Path(tempfile.mkdtemp(prefix=f"bench_training_{args.variant}_", dir=args.save_root))
    try:
        callback = make_callback(args.variant, save_dir)
        timer = FixedCostTimer(callback) if callback is not None else None
        start = time.perf_counter()
        model.learn(args.timesteps, callback=timer)
        seconds = time.perf_counter() - start
        model.get_env().close()
        files = sum(1 for path in save_dir.rglob("*") if parse_name(path.name) is not None)  # json files, segments
    finally:
        shutil.rmtree(save_dir, ignore_errors=True)
    fixed = timer.fixed_seconds if timer is not None else 0.0
    writer_stats = getattr(callback, "writer_stats", None) or {}
    return {"variant": args.variant, "seconds": seconds, "steps_per_s": model.num_timesteps / seconds,
            "writer_cpu_s": writer_stats.get("thread_cpu_seconds"),
            "fixed_s": fixed, "per_step_rate": model.num_timesteps / (seconds - fixed),
            "timesteps": model.num_timesteps, "files": files}


def run_save_cost(args: argparse.Namespace) -> dict[str, Any]:
    """Time ``save_snapshot`` in a ``args.n_envs``-env run saving every step; profile it too."""
    model = make_model(args.env_id, args.n_envs, args.n_steps, args.seed, args.vec)
    save_dir = Path(tempfile.mkdtemp(prefix="bench_training_save_cost_", dir=args.save_root))
    try:
        callback = TimedSavingCallback(save_dir, save_frequency=1, save_on_training_end=False, save_checkpoints=False)
        model.learn(args.samples * args.n_envs, callback=callback)
        durations_us = np.array(callback.save_durations_ns) / 1000.0
        gather_us = np.array(callback.gather_durations_ns) / 1000.0
        submit_us = durations_us - gather_us
        profiler = cProfile.Profile()
        profiled = TimedSavingCallback(save_dir / "profiled", save_frequency=1, save_on_training_end=False,
                                       save_checkpoints=False,
                                       writer_options={"queue_size": 4 * args.samples})  # never blocks
        profiled.init_callback(model)
        profiled.on_training_start({"dones": np.zeros(args.n_envs, bool), "infos": [{}] * args.n_envs}, {})
        profiler.enable()
        for _ in range(args.samples):
            profiled.save_snapshot()
        profiler.disable()
        profiled.on_training_end()
        report = io.StringIO()
        pstats.Stats(profiler, stream=report).sort_stats("tottime").print_stats(PROFILE_TOP)
    finally:
        shutil.rmtree(save_dir, ignore_errors=True)
    return {
        "samples": len(durations_us),
        "p50_us": float(np.percentile(durations_us, 50)),
        "p99_us": float(np.percentile(durations_us, 99)),
        "max_us": float(durations_us.max()),
        "gather_p50_us": float(np.percentile(gather_us, 50)),
        "gather_p99_us": float(np.percentile(gather_us, 99)),
        "submit_p50_us": float(np.percentile(submit_us, 50)),
        "submit_p99_us": float(np.percentile(submit_us, 99)),
        "profile": report.getvalue(),
    }


# ------------------------------------------------------------------ orchestration (parent)
def run_child(mode: str, options: Sequence[str]) -> dict[str, Any]:
    """Run ``mode`` in a fresh interpreter; its last stdout line is the JSON result."""
    command = [sys.executable, "-m", "benchmarks.bench_training", "--child", mode, *options]
    completed = subprocess.run(command, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def common_options(args: argparse.Namespace) -> list[str]:
    options = ["--env-id", args.env_id, "--n-steps", str(args.n_steps), "--torch-threads", str(args.torch_threads),
               "--vec", args.vec]
    return options + (["--save-root", args.save_root] if args.save_root else [])


def run_rounds(args: argparse.Namespace, scale: Scale) -> dict[str, list[dict[str, Any]]]:
    """Every variant once per round, the order rotated each round."""
    results: dict[str, list[dict[str, Any]]] = {variant: [] for variant in args.variants}
    order = list(args.variants)
    for round_index in range(scale.rounds):
        rotation = order[round_index % len(order):] + order[:round_index % len(order)]
        for variant in rotation:
            result = run_child("train", [*common_options(args), "--variant", variant, "--n-envs", str(args.n_envs),
                                         "--timesteps", str(scale.timesteps), "--seed", str(round_index)])
            results[variant].append(result)
            print(f"round {round_index + 1}/{scale.rounds} ({variant}) {VARIANTS[variant]}: "
                  f"{result['steps_per_s']:.0f} steps/s, {result['files']} files", file=sys.stderr)
    return results


def _median_or_none(values: Sequence[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return statistics.median(known) if known else None


def format_section(args: argparse.Namespace, scale: Scale, results: dict[str, list[dict[str, Any]]],
                   save_cost: dict[str, Any], command: str) -> str:
    median_rate = {variant: statistics.median(r["steps_per_s"] for r in runs) for variant, runs in results.items()}
    median_seconds = {variant: statistics.median(r["seconds"] for r in runs) for variant, runs in results.items()}
    ratio = {variant: rate / median_rate["a"] for variant, rate in median_rate.items()}
    per_step_rate = {variant: statistics.median(r["per_step_rate"] for r in runs) for variant, runs in results.items()}
    per_step_ratio = {variant: rate / per_step_rate["a"] for variant, rate in per_step_rate.items()}
    fixed_ms = {variant: 1000 * statistics.median(r["fixed_s"] for r in runs) for variant, runs in results.items()}
    spread = {variant: (max(r["steps_per_s"] for r in runs) - min(r["steps_per_s"] for r in runs)) / median_rate[variant]
              for variant, runs in results.items()}
    paired = {variant: sorted(r["steps_per_s"] / base["steps_per_s"] for r, base in zip(runs, results["a"]))
              for variant, runs in results.items()}
    writer_cpu = {variant: _median_or_none([r.get("writer_cpu_s") for r in runs]) for variant, runs in results.items()}

    save_root = Path(args.save_root or tempfile.gettempdir())
    lines = [
        SECTION_HEADING,
        "",
        f"- Command: `{command}`",
        f"- Date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Machine: {cpu_model()}, {os.cpu_count()} cores; Python {platform.python_version()}, "
        f"torch threads {args.torch_threads}; load average before start {args.load_before:.2f}; "
        f"save dirs in `{save_root}` ({file_system_of(save_root).describe()})",
        f"- Workload: PPO `MlpPolicy`, `{args.env_id}`, {args.n_envs} envs in a {VEC_NAMES[args.vec]}, "
        f"n_steps={args.n_steps} "
        f"(other PPO defaults), {scale.timesteps} timesteps per run, {scale.rounds} interleaved round(s), "
        "each run in a fresh process, checkpoints off; steps/s = timesteps / wall time of `learn()` "
        "(writer close included).",
        "",
        "| Variant | env-steps/s (median) | min | max | spread | ratio to (a) | fixed ms per learn() | "
        "per-step ratio to (a) | paired ratio, median [min, max] | writer thread CPU s per run | files per run |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for variant, runs in results.items():
        rates = [r["steps_per_s"] for r in runs]
        lines.append(f"| ({variant}) {VARIANTS[variant]} | {median_rate[variant]:.0f} | {min(rates):.0f} | "
                     f"{max(rates):.0f} | {spread[variant]:.1%} | {ratio[variant]:.3f} | {fixed_ms[variant]:.0f} | "
                     f"{per_step_ratio[variant]:.3f} | {statistics.median(paired[variant]):.3f} "
                     f"[{paired[variant][0]:.3f}, {paired[variant][-1]:.3f}] | "
                     f"{'-' if writer_cpu[variant] is None else f'{writer_cpu[variant]:.2f}'} | {runs[0]['files']} |")
    lines += [
        "",
        "Spread = (max - min) / median over the rounds. Paired ratio = each round's run over the same round's "
        "(a) run (the runs of a round are back to back, so slow phases of the machine cancel). Fixed ms = the callback's init, training start and "
        "training end (writer start, hyperparameter record, final save, close); the per-step ratio leaves it out. "
        "Writer thread CPU = the CPU seconds the writer thread used in the run (its `stats()['thread_cpu_seconds']`; "
        "- for writers that have no thread).",
    ]
    targets = ["", "| Target | Result | Met |", "| --- | --- | --- |"]
    for variant, target in (("b", TARGET_RATIO_B), ("c", TARGET_RATIO_C), ("f", TARGET_RATIO_F)):
        if variant in ratio:
            targets.append(f"| ({variant}) >= {target}x of (a) | {ratio[variant]:.3f}x | {_met(ratio[variant] >= target)} |")
    if "c" in median_seconds and "d" in median_seconds:
        added_c = median_seconds["c"] - median_seconds["a"]
        added_d = median_seconds["d"] - median_seconds["a"]
        added_factor = added_d / added_c if added_c > 0 else float("inf")
        lines += ["", f"Added wall time per run vs (a): (c) {added_c:+.2f} s, (d) {added_d:+.2f} s, "
                      f"(d)/(c) = {added_factor:.1f}x."]
        targets.append(f"| (d) added time >= {TARGET_ADDED_TIME_FACTOR:.0f}x (c)'s | {added_factor:.1f}x | "
                       f"{_met(added_factor >= TARGET_ADDED_TIME_FACTOR)} |")
    targets.append(f"| save p99 <= {SAVE_COST_P99_TARGET_US:.0f} µs | {save_cost['p99_us']:.1f} µs | "
                   f"{_met(save_cost['p99_us'] <= SAVE_COST_P99_TARGET_US)} |")
    lines += [
        "",
        f"Training-thread cost of one save (gather + copy + submit), {args.save_cost_envs} envs, "
        f"saving every step, {save_cost['samples']} saves: p50 {save_cost['p50_us']:.1f} µs, "
        f"p99 {save_cost['p99_us']:.1f} µs, max {save_cost['max_us']:.1f} µs; of which gather + copy "
        f"p50 {save_cost['gather_p50_us']:.1f} / p99 {save_cost['gather_p99_us']:.1f} µs and the three "
        f"`submit` calls p50 {save_cost['submit_p50_us']:.1f} / p99 {save_cost['submit_p99_us']:.1f} µs.",
        *targets,
    ]
    if save_cost["p99_us"] > SAVE_COST_P99_TARGET_US:
        lines += ["", "Profile of the save path (cProfile, back-to-back saves, top by own time):", "", "```",
                  save_cost["profile"].strip(), "```"]
    return "\n".join(lines) + "\n"


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def variant_list(text: str) -> list[str]:
    chosen = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(VARIANTS))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    return [name for name in VARIANTS if name in chosen or name == "a"]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env-id", default="Ant-v5", help="Gymnasium id, e.g. rtsave/Go1-v0 (default Ant-v5)")
    parser.add_argument("--n-envs", type=int, default=4, help="envs in the training runs (default 4)")
    parser.add_argument("--n-steps", type=int, default=512, help="PPO n_steps per env (default 512)")
    parser.add_argument("--save-cost-envs", type=int, default=12, help="envs in the save-cost run (default 12)")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="torch intra-op threads (default 1: leaves the 2nd core to envs and the writer)")
    parser.add_argument("--save-root", help="folder for the runs' save dirs (default: the system temp dir)")
    parser.add_argument("--vec", choices=sorted(VEC_NAMES), default="dummy",
                        help="VecEnv class (default dummy; subproc-steps: SubprocVecEnv, each env wrapped in "
                             "ReadingsInStepInfo)")
    parser.add_argument("--variants", type=variant_list, default=list(DEFAULT_VARIANTS),
                        help="comma-separated variants to run; (a) always runs (default " + ",".join(DEFAULT_VARIANTS)
                             + "; g, q and p split (f)'s cost)")
    add_run_options(parser, "tiny smoke run")
    # child-process options
    parser.add_argument("--child", choices=["train", "save-cost"], help=argparse.SUPPRESS)
    parser.add_argument("--variant", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--timesteps", type=int,
                        help=f"timesteps per training run (default {FULL_SCALE.timesteps}; longer runs shrink the "
                             "share of the fixed per-learn() cost and the noise)")
    parser.add_argument("--rounds", type=int, help=f"interleaved rounds (default {FULL_SCALE.rounds})")
    parser.add_argument("--samples", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print its Markdown section and append it to RESULTS.md."""
    args = parse_args(argv)
    if args.child:
        import torch

        torch.set_num_threads(args.torch_threads)
        result = run_training(args) if args.child == "train" else run_save_cost(args)
        print(json.dumps(result))
        return 0

    scale = QUICK_SCALE if args.quick else FULL_SCALE
    scale = Scale(timesteps=args.timesteps or scale.timesteps, rounds=args.rounds or scale.rounds,
                  save_cost_samples=scale.save_cost_samples)
    args.load_before = os.getloadavg()[0]
    command = " ".join(["python -m benchmarks.bench_training", *(sys.argv[1:] if argv is None else argv)])
    results = run_rounds(args, scale)
    save_cost = run_child("save-cost", [*common_options(args), "--n-envs", str(args.save_cost_envs),
                                        "--samples", str(scale.save_cost_samples)])
    section = format_section(args, scale, results, save_cost, command)
    return publish(section, args.results, append=not args.no_append)


if __name__ == "__main__":
    sys.exit(main())
