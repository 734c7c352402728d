"""Training overhead measured in one process, variants alternating segment by segment.

Run ``python -m benchmarks.bench_training_paired --env-id rtsave/Go1-v0`` (about 5
minutes on 2 cores; ``--quick`` for a smoke run).

``bench_training`` runs every variant in a fresh process, a minute apart. On a shared
VM the machine's speed drifts by tens of percent over such spans, which hides a
one-percent effect. Here one PPO model trains on, and ``learn()`` is called again and
again for ``--segment-timesteps`` (default 4096) steps at a time, the variants
(``bench_training``'s letters; ``(a)`` no callback always runs) taking turns: each
round runs every variant once, in an order rotated and reversed from round to round,
so that the runs compared sit seconds apart and a linear drift cancels. Each segment
gets a fresh callback, so its fixed cost (writer start, hyperparameter record, final
save, close) is in it too, and reported apart.

Reported per variant: steps/s medians, and the paired ratio (a round's segment over
the same round's ``(a)`` segment) as a median with a bootstrap 95 % interval, also per
step (fixed cost left out), and the same for the CPU time of the process and of the
training thread (steadier than wall time on a shared machine), and how often the
training thread blocked (its voluntary context switches, on Linux: for the GIL or a lock
the writer thread held, or for SubprocVecEnv workers). The Markdown section is printed
and appended to ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

try:
    import resource
except ImportError:  # Windows has no resource module: the waits column reads "-"
    resource = None  # type: ignore[assignment]

from benchmarks.bench_training import VARIANTS, VEC_NAMES, FixedCostTimer, make_callback, make_model, variant_list
from benchmarks.reporting import add_run_options, file_system_of, header_lines, publish

SECTION_HEADING = "## Training overhead, variants alternating in one process (bench_training_paired)"
BOOTSTRAP_SAMPLES = 10_000
DEFAULT_SEGMENT_TIMESTEPS = 4096
DEFAULT_ROUNDS = 12


def round_order(variants: Sequence[str], round_index: int) -> list[str]:
    """The variants of round ``round_index``: rotated by the round, reversed every other round."""
    shift = round_index % len(variants)
    order = list(variants[shift:]) + list(variants[:shift])
    return order[::-1] if round_index % 2 else order


def run_segments(args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    """Every variant once per round on one model; per variant, its segments' figures."""
    model = make_model(args.env_id, args.n_envs, args.n_steps, 0, args.vec)
    model.learn(args.segment_timesteps)  # warm-up: first rollouts and updates, not measured
    variants = ["a", *args.variants]
    results: dict[str, list[dict[str, Any]]] = {variant: [] for variant in variants}
    save_root = Path(tempfile.mkdtemp(prefix="bench_training_paired_", dir=args.save_root))
    try:
        for round_index in range(args.rounds):
            for variant in round_order(variants, round_index):
                save_dir = save_root / f"{variant}{round_index}"
                callback = make_callback(variant, save_dir)
                timer = FixedCostTimer(callback) if callback is not None else None
                start, process_start, thread_start = time.perf_counter(), time.process_time(), time.thread_time()
                waits_start = thread_waits()
                model.learn(args.segment_timesteps, callback=timer, reset_num_timesteps=False)
                seconds = time.perf_counter() - start
                fixed = timer.fixed_seconds if timer is not None else 0.0
                results[variant].append({"seconds": seconds, "fixed_s": fixed,
                                         "hook_s": timer.hook_seconds if timer is not None else 0.0,
                                         "process_cpu_s": time.process_time() - process_start,
                                         "thread_cpu_s": time.thread_time() - thread_start,
                                         "waits": _difference(thread_waits(), waits_start),
                                         "rate": args.segment_timesteps / seconds,
                                         "per_step_rate": args.segment_timesteps / (seconds - fixed)})
                shutil.rmtree(save_dir, ignore_errors=True)
            print(f"round {round_index + 1}/{args.rounds}: " + ", ".join(
                f"({variant}) {results[variant][-1]['rate']:.0f}" for variant in variants) + " steps/s",
                file=sys.stderr)
    finally:
        model.get_env().close()
        shutil.rmtree(save_root, ignore_errors=True)
    return results


def thread_waits() -> int | None:
    """The calling thread's voluntary context switches so far (it blocked: the GIL, a
    lock, I/O); None where ``getrusage`` cannot tell them per thread."""
    if resource is None or not hasattr(resource, "RUSAGE_THREAD"):
        return None
    return resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw


def _difference(end: int | None, start: int | None) -> int | None:
    return None if end is None or start is None else end - start


def median_interval(values: Sequence[float], seed: int = 0) -> tuple[float, float, float]:
    """The median of ``values`` and a bootstrap 95 % interval of it."""
    data = np.asarray(values, dtype=float)
    resamples = np.random.default_rng(seed).choice(data, size=(BOOTSTRAP_SAMPLES, len(data)), replace=True)
    low, high = np.percentile(np.median(resamples, axis=1), [2.5, 97.5])
    return float(np.median(data)), float(low), float(high)


def format_section(args: argparse.Namespace, results: dict[str, list[dict[str, Any]]], command: str,
                   load_before: float) -> str:
    save_root = Path(args.save_root or tempfile.gettempdir())
    lines = [
        *header_lines(SECTION_HEADING, command, load_before),
        f"- Workload: PPO `MlpPolicy`, `{args.env_id}`, {args.n_envs} envs in a {VEC_NAMES[args.vec]}, "
        f"n_steps={args.n_steps}, torch threads {args.torch_threads}; one model, {args.rounds} rounds of one "
        f"`learn({args.segment_timesteps}, reset_num_timesteps=False)` per variant (after one warm-up "
        f"segment), a fresh callback per segment, checkpoints off; save dirs in `{save_root}` "
        f"({file_system_of(save_root).describe()})",
        "",
        "| Variant | steps/s (median) | min | max | paired ratio to (a), median [95 % interval] | "
        "paired, per step (fixed cost left out) | fixed ms per learn() | process CPU / (a)'s | "
        "training thread CPU / (a)'s | in the callback's hooks, share of the segment's steps | "
        "1 - that share | training thread waits per 1,000 steps (median) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    base = results["a"]
    for variant, segments in results.items():
        rates = [segment["rate"] for segment in segments]
        ratio = median_interval([s["rate"] / b["rate"] for s, b in zip(segments, base)])
        per_step = median_interval([s["per_step_rate"] / b["rate"] for s, b in zip(segments, base)])
        fixed_ms = 1000 * statistics.median(segment["fixed_s"] for segment in segments)
        process_cpu = median_interval([s["process_cpu_s"] / b["process_cpu_s"] for s, b in zip(segments, base)])
        thread_cpu = median_interval([s["thread_cpu_s"] / b["thread_cpu_s"] for s, b in zip(segments, base)])
        hook_share = median_interval([s["hook_s"] / (s["seconds"] - s["fixed_s"]) for s in segments])
        direct = tuple(1 - share for share in (hook_share[0], hook_share[2], hook_share[1]))
        waits = [s["waits"] for s in segments if s["waits"] is not None]
        waits_cell = f"{1000 * statistics.median(waits) / args.segment_timesteps:.1f}" if waits else "-"
        lines.append(f"| ({variant}) {VARIANTS[variant]} | {statistics.median(rates):.0f} | {min(rates):.0f} | "
                     f"{max(rates):.0f} | {_interval(ratio)} | {_interval(per_step)} | {fixed_ms:.0f} | "
                     f"{_interval(process_cpu)} | {_interval(thread_cpu)} | {_interval(hook_share, '.2%')} | "
                     f"{_interval(direct)} | {waits_cell} |")
    lines += [
        "",
        "Paired ratio = a round's segment over the same round's (a) segment (seconds apart); the interval is a "
        f"bootstrap ({BOOTSTRAP_SAMPLES:,} resamples) of the median over the rounds. CPU columns: the "
        "segment's CPU seconds over the same round's (a) segment's (above 1: more CPU), for the whole process "
        "(every thread; not SubprocVecEnv workers or other processes) and for the training thread alone; "
        "CPU time leaves out waiting (the GIL, the disk), so it is steadier than wall time but is not the speed. "
        "Hooks: the wall time spent inside the callback's `update_locals`, `on_step` and `on_rollout_start`/`end` "
        "over the segment's time without its fixed cost; 1 minus it is the per-step ratio to no saving that the "
        "callback's own work allows (it leaves out what it makes other code pay, e.g. the writer thread's share "
        "of the GIL), and it is measured within a segment, so it varies much less than the paired ratios. "
        "Waits: the training thread's voluntary context switches in the segment (`getrusage`, Linux), each a "
        "time it blocked: for the GIL or a lock another thread held, or, in a SubprocVecEnv, for the workers.",
    ]
    return "\n".join(lines) + "\n"


def _interval(estimate: tuple[float, float, float], style: str = ".3f") -> str:
    return f"{estimate[0]:{style}} [{estimate[1]:{style}}, {estimate[2]:{style}}]"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-id", default="Ant-v5", help="Gymnasium id, e.g. rtsave/Go1-v0 (default Ant-v5)")
    parser.add_argument("--n-envs", type=int, default=4, help="envs (default 4)")
    parser.add_argument("--n-steps", type=int, default=512, help="PPO n_steps per env (default 512)")
    parser.add_argument("--vec", choices=sorted(VEC_NAMES), default="dummy",
                        help="VecEnv class (default dummy; subproc-steps: SubprocVecEnv, each env wrapped in "
                             "ReadingsInStepInfo)")
    parser.add_argument("--variants", type=variant_list, default=["b", "f"],
                        help="comma-separated variants besides (a) (default b,f)")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help=f"rounds (default {DEFAULT_ROUNDS})")
    parser.add_argument("--segment-timesteps", type=int, default=DEFAULT_SEGMENT_TIMESTEPS,
                        help=f"timesteps per learn() (default {DEFAULT_SEGMENT_TIMESTEPS})")
    parser.add_argument("--torch-threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--save-root", help="folder for the save dirs (default: the system temp dir)")
    add_run_options(parser, "tiny smoke run (2 rounds of 256 steps)")
    args = parser.parse_args(argv)
    args.variants = [variant for variant in args.variants if variant != "a"]
    if args.quick:
        args.rounds, args.segment_timesteps, args.n_steps = 2, 256, 64
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print its Markdown section and append it to RESULTS.md."""
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.torch_threads)
    load_before = os.getloadavg()[0]
    command = " ".join(["python -m benchmarks.bench_training_paired", *(sys.argv[1:] if argv is None else argv)])
    results = run_segments(args)
    return publish(format_section(args, results, command, load_before), args.results, append=not args.no_append)


if __name__ == "__main__":
    sys.exit(main())
