"""Checkpoint stall and size: our :class:`CheckpointSaver` vs SB3's ``CheckpointCallback``.

Run ``python -m benchmarks.bench_checkpoint`` (about 1-2 minutes on 2 cores;
``--quick`` for a ~10 s smoke run). For each algorithm one model is trained once,
wrapped in ``VecNormalize``, and both savers checkpoint that same model state:

- **SAC**, 1 env, the default 1,000,000-transition replay buffer, after 10,000 steps
  (``learning_starts=1000``, ``train_freq=10``, ``gradient_steps=1``: 900 gradient
  steps, so the optimizers hold state, in about 30 s with one torch thread);
- **PPO**, 4 envs, default ``n_steps=2048``, after 2 rollouts.

Savers:

- SB3: ``CheckpointCallback(save_freq=1, save_replay_buffer=True, save_vecnormalize=True)``;
  the stall is its ``on_step()`` call at a step where it saves (``model.save``,
  ``model.save_replay_buffer``, ``VecNormalize.save``, all on the training thread).
- Ours: ``CheckpointSaver.checkpoint(...)``, the call ``RealTimeSavingCallback._checkpoint_if_due``
  makes (capture = copies, then submit); the writer thread's time until the checkpoint
  is on disk (``wait_idle``) is measured after the stall, outside it.

Each saver first saves once untimed (a warm-up: first-touch page faults of the
untouched part of SB3's buffer and of fresh page-cache memory made SB3's first saves
up to 10x slower), then ``repeats`` timed times, interleaved in an order that
alternates every repeat; before each save the previous repeat's files of that saver are
deleted, dirty pages are flushed (``os.sync``) and the garbage collector runs, so
both savers start from the same page-cache state. Figures are medians. The Markdown
section is printed and appended to ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch as th
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import CheckpointCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

from benchmarks.reporting import add_run_options, file_system_of, header_lines, publish
from rtsave_async.checkpoints.capture import capture_checkpoint
from rtsave_async.checkpoints.format import read_checkpoint_metadata
from rtsave_async.checkpoints.saver import CheckpointSaver, script_resume_command
from rtsave_async.collectors import EpisodeTracker
from rtsave_async.names import REPLAY_BUFFER_SUFFIX
from rtsave_async.writer import SnapshotWriter

SECTION_HEADING = "## Checkpoint stall and size (bench_checkpoint)"
REPORT_FILE_NAME = "bench_checkpoint.json"
SB3_SAVER = "SB3 CheckpointCallback"
OUR_SAVER = "ours CheckpointSaver"
STALL_TARGET_FRACTION = 0.05  # our SAC stall must be at most this share of SB3's
PROFILE_TOP = 15  # rows of the capture profile shown
PROFILE_CAPTURES = 5  # captures profiled together, so the first one's page faults do not dominate
SEED = 0
MB = 1e6  # bytes


@dataclass(frozen=True)
class Scale:
    """How much work the benchmark does."""

    sac_timesteps: int
    sac_buffer_size: int  # transitions
    sac_learning_starts: int  # timesteps
    sac_train_freq: int  # timesteps between gradient steps
    ppo_n_envs: int
    ppo_n_steps: int  # per env and rollout
    ppo_rollouts: int
    repeats: int  # timed saves per saver and algorithm


FULL_SCALE = Scale(sac_timesteps=10_000, sac_buffer_size=1_000_000, sac_learning_starts=1_000, sac_train_freq=10,
                   ppo_n_envs=4, ppo_n_steps=2048, ppo_rollouts=2, repeats=5)
QUICK_SCALE = Scale(sac_timesteps=600, sac_buffer_size=5_000, sac_learning_starts=300, sac_train_freq=10,
                    ppo_n_envs=4, ppo_n_steps=64, ppo_rollouts=2, repeats=2)


@dataclass
class SaveMeasurement:
    """One checkpoint by one saver."""

    stall_s: float  # training-thread time in the save call
    background_s: float  # writer-thread time after the call returned, until on disk (0 for SB3)
    total_bytes: int  # every file of the checkpoint
    replay_buffer_bytes: int | None  # the replay-buffer file; None without one
    checkpoint_path: str  # SB3: the model zip; ours: the checkpoint's JSON


@dataclass
class AlgorithmResult:
    """Both savers' measurements on one trained model."""

    algorithm: str
    timesteps: int
    replay_buffer_raw_bytes: int | None  # the filled part of the buffer, uncompressed
    measurements: dict[str, list[SaveMeasurement]]

    def median(self, saver: str, field: str) -> float | None:
        values = [getattr(measurement, field) for measurement in self.measurements[saver]]
        return None if values[0] is None else statistics.median(values)

    def stall_range_s(self, saver: str) -> tuple[float, float]:
        stalls = [measurement.stall_s for measurement in self.measurements[saver]]
        return min(stalls), max(stalls)


# ------------------------------------------------------------------ models
def train_sac(env_id: str, scale: Scale) -> SAC:
    """SAC on one VecNormalize-wrapped env, trained for ``scale.sac_timesteps``."""
    env = VecNormalize(make_vec_env(env_id, n_envs=1, seed=SEED))
    model = SAC("MlpPolicy", env, buffer_size=scale.sac_buffer_size, learning_starts=scale.sac_learning_starts,
                train_freq=scale.sac_train_freq, gradient_steps=1, seed=SEED)
    return model.learn(scale.sac_timesteps)


def train_ppo(env_id: str, scale: Scale) -> PPO:
    """PPO on ``scale.ppo_n_envs`` VecNormalize-wrapped envs, trained for ``scale.ppo_rollouts`` rollouts."""
    env = VecNormalize(make_vec_env(env_id, n_envs=scale.ppo_n_envs, seed=SEED))
    model = PPO("MlpPolicy", env, n_steps=scale.ppo_n_steps, seed=SEED)
    return model.learn(scale.ppo_rollouts * scale.ppo_n_steps * scale.ppo_n_envs)


# ------------------------------------------------------------------ savers
def elapsed_s(call: Callable[[], object]) -> float:
    """Wall time of ``call()``, in seconds."""
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def callback_state(model: BaseAlgorithm) -> dict[str, Any]:
    """What ``RealTimeSavingCallback.state_dict()`` hands the saver."""
    return {"episodes": EpisodeTracker(model.n_envs).state_dict()}


def save_with_sb3(model: BaseAlgorithm, folder: Path) -> SaveMeasurement:
    """One ``CheckpointCallback.on_step()`` at a step where it saves."""
    callback = CheckpointCallback(save_freq=1, save_path=str(folder), save_replay_buffer=True, save_vecnormalize=True)
    callback.init_callback(model)
    stall_s = elapsed_s(callback.on_step)
    files = [path for path in folder.iterdir() if path.is_file()]
    replay_buffer_files = [path for path in files if path.name.startswith(f"{callback.name_prefix}_replay_buffer_")]
    return SaveMeasurement(
        stall_s=stall_s,
        background_s=0.0,
        total_bytes=sum(path.stat().st_size for path in files),
        replay_buffer_bytes=replay_buffer_files[0].stat().st_size if replay_buffer_files else None,
        checkpoint_path=callback._checkpoint_path(extension="zip"),
    )


def save_with_ours(model: BaseAlgorithm, folder: Path) -> SaveMeasurement:
    """One ``CheckpointSaver.checkpoint`` (timed), then the writer's time until it is on disk."""
    saver = CheckpointSaver()
    state = callback_state(model)
    with SnapshotWriter(folder) as writer:
        stall_s = elapsed_s(lambda: saver.checkpoint(writer, model, state, model.num_timesteps))
        background_s = elapsed_s(saver.wait_idle)
    if len(saver.written) != 1:
        raise RuntimeError(f"our checkpoint in {folder} was not written "
                           f"(failed={saver.failed}, skipped={saver.skipped})")
    json_path = saver.written[0]
    files = read_checkpoint_metadata(json_path)["files"]
    replay_buffer_file = files.get(REPLAY_BUFFER_SUFFIX.lstrip("."))
    return SaveMeasurement(
        stall_s=stall_s,
        background_s=background_s,
        total_bytes=json_path.stat().st_size + sum(entry["bytes"] for entry in files.values()),
        replay_buffer_bytes=None if replay_buffer_file is None else replay_buffer_file["bytes"],
        checkpoint_path=str(json_path),
    )


SAVERS: dict[str, Callable[[BaseAlgorithm, Path], SaveMeasurement]] = {
    SB3_SAVER: save_with_sb3,
    OUR_SAVER: save_with_ours,
}


def replay_buffer_raw_bytes(checkpoint_json: str) -> int | None:
    """``contents.replay_buffer.raw_bytes`` of our checkpoint: the filled part, uncompressed."""
    replay_buffer = read_checkpoint_metadata(checkpoint_json)["contents"]["replay_buffer"]
    return None if replay_buffer is None else replay_buffer["raw_bytes"]


def save_from_clean_state(saver: str, model: BaseAlgorithm, saver_folder: Path, run_name: str) -> SaveMeasurement:
    """Delete the saver's previous files, flush dirty pages, collect garbage, then save.

    The checkpoint goes into ``saver_folder/run_name``.
    """
    shutil.rmtree(saver_folder, ignore_errors=True)
    os.sync()
    gc.collect()
    return SAVERS[saver](model, saver_folder / run_name)


def compare_savers(algorithm: str, model: BaseAlgorithm, out: Path, repeats: int) -> AlgorithmResult:
    """One untimed warm-up save per saver, then ``repeats`` timed saves each, interleaved.

    The last repeat's files stay in ``out/<algorithm>/<saver>/``.
    """
    folders = {saver: out / algorithm / saver.split()[0].lower() for saver in SAVERS}
    for saver in SAVERS:
        save_from_clean_state(saver, model, folders[saver], "warm_up")
    measurements: dict[str, list[SaveMeasurement]] = {saver: [] for saver in SAVERS}
    for repeat in range(repeats):
        order = list(SAVERS) if repeat % 2 == 0 else list(reversed(SAVERS))
        for saver in order:
            measurements[saver].append(save_from_clean_state(saver, model, folders[saver], f"repeat_{repeat}"))
            print(f"{algorithm} repeat {repeat}: {saver} stall {measurements[saver][-1].stall_s * 1e3:.1f} ms",
                  file=sys.stderr)
    raw_bytes = replay_buffer_raw_bytes(measurements[OUR_SAVER][-1].checkpoint_path)
    return AlgorithmResult(algorithm, int(model.num_timesteps), raw_bytes, measurements)


def profile_capture(model: BaseAlgorithm) -> str:
    """cProfile of ``PROFILE_CAPTURES`` training-thread captures on ``model``, top rows by cumulative time."""
    state = callback_state(model)
    profiler = cProfile.Profile()
    for _ in range(PROFILE_CAPTURES):
        profiler.runcall(capture_checkpoint, model, state, script_resume_command)
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).strip_dirs().sort_stats("cumulative").print_stats(PROFILE_TOP)
    return text.getvalue().strip()


# ------------------------------------------------------------------ report
def _mb(value: float | None) -> str:
    return "—" if value is None else f"{value / MB:,.2f}"


def _ratio(ours: float | None, sb3: float | None) -> str:
    return "—" if ours is None or not sb3 else f"{ours / sb3:.2%}"


def _met(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def format_table(results: Sequence[AlgorithmResult]) -> str:
    lines = [
        "| Algorithm | Saver | training-thread stall ms, median (min–max) | writer thread ms after the stall | "
        "on disk MB | replay-buffer file MB | filled part of the buffer, raw MB |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        for saver in SAVERS:
            low, high = result.stall_range_s(saver)
            background = "—" if saver == SB3_SAVER else f"{result.median(saver, 'background_s') * 1e3:,.0f}"
            lines.append(
                f"| {result.algorithm} | {saver} | {result.median(saver, 'stall_s') * 1e3:,.1f} "
                f"({low * 1e3:,.1f}–{high * 1e3:,.1f}) | {background} | {_mb(result.median(saver, 'total_bytes'))} | "
                f"{_mb(result.median(saver, 'replay_buffer_bytes'))} | {_mb(result.replay_buffer_raw_bytes)} |"
            )
        ratios = [_ratio(result.median(OUR_SAVER, field), result.median(SB3_SAVER, field))
                  for field in ("stall_s", "total_bytes", "replay_buffer_bytes")]
        lines.append(f"| {result.algorithm} | ratio ours/SB3 | {ratios[0]} | | {ratios[1]} | {ratios[2]} | |")
    return "\n".join(lines)


def format_targets(sac: AlgorithmResult) -> tuple[str, bool]:
    """The issue's two SAC targets as Markdown bullets; also whether both are met."""
    our_stall, sb3_stall = sac.median(OUR_SAVER, "stall_s"), sac.median(SB3_SAVER, "stall_s")
    our_buffer_file = sac.median(OUR_SAVER, "replay_buffer_bytes")
    stall_ok = our_stall <= STALL_TARGET_FRACTION * sb3_stall
    size_ok = our_buffer_file is not None and sac.replay_buffer_raw_bytes is not None \
        and our_buffer_file <= sac.replay_buffer_raw_bytes
    lines = [
        f"- Target: our SAC stall <= {STALL_TARGET_FRACTION:.0%} of SB3's: {our_stall * 1e3:,.1f} ms vs "
        f"{sb3_stall * 1e3:,.1f} ms = {_ratio(our_stall, sb3_stall)}: {_met(stall_ok)}.",
        f"- Target: our replay-buffer file <= the filled part's raw size: {_mb(our_buffer_file)} MB vs "
        f"{_mb(sac.replay_buffer_raw_bytes)} MB = {_ratio(our_buffer_file, sac.replay_buffer_raw_bytes)}: "
        f"{_met(size_ok)}.",
    ]
    return "\n".join(lines), stall_ok and size_ok


def format_header(command: str, env_id: str, scale: Scale, out: Path, load_before: float) -> str:
    versions = ", ".join(f"{package} {version(package)}" for package in
                         ("stable-baselines3", "gymnasium", "mujoco", "torch", "numpy", "zstandard"))
    return "\n".join([
        *header_lines(SECTION_HEADING, command, load_before),
        f"- Output folder: {file_system_of(out).describe()}; no fsync by either saver (SB3 does none, ours "
        "runs with the writer's default `durable=False`)",
        f"- Python {platform.python_version()}, {versions}; torch uses {th.get_num_threads()} thread(s)",
        f"- Models (`{env_id}`, each wrapped in `VecNormalize`, trained once; both savers checkpoint the same "
        f"state): SAC, 1 env, `buffer_size={scale.sac_buffer_size:,}`, {scale.sac_timesteps:,} timesteps with "
        f"`learning_starts={scale.sac_learning_starts:,}`, `train_freq={scale.sac_train_freq}`, "
        f"`gradient_steps=1`; PPO, {scale.ppo_n_envs} envs, `n_steps={scale.ppo_n_steps}`, "
        f"{scale.ppo_rollouts} rollouts.",
        "- Method: SB3 = `CheckpointCallback(save_replay_buffer=True, save_vecnormalize=True).on_step()` at a "
        "saving step; ours = `CheckpointSaver.checkpoint(...)` (capture + submit, what "
        "`RealTimeSavingCallback._checkpoint_if_due` calls), then `wait_idle()` outside the stall gives the "
        "writer-thread time (training thread idle meanwhile). One untimed warm-up save per saver, then "
        f"{scale.repeats} timed repeats per saver, order alternating; before each save the previous repeat's "
        "files are deleted, `os.sync()` and `gc.collect()` run. Medians; MB = 10^6 bytes; sizes are file "
        "sizes (ours include the JSON metadata and the state file).",
    ])


# ------------------------------------------------------------------ CLI
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_checkpoint",
        description="Training-thread stall and on-disk size: our CheckpointSaver vs SB3's CheckpointCallback.",
    )
    add_run_options(parser, f"smoke run: SAC buffer {QUICK_SCALE.sac_buffer_size:,}, {QUICK_SCALE.repeats} repeats")
    parser.add_argument("--env-id", default="Ant-v5", help="Gymnasium env id for both algorithms; default Ant-v5")
    parser.add_argument("--out", type=Path,
                        help=f"folder for the checkpoints; kept, with the last repeat's files and {REPORT_FILE_NAME}; "
                             "default: a temporary folder, removed at the end")
    parser.add_argument("--profile", action="store_true", help="profile our SAC capture even if the targets are met")
    return parser.parse_args(argv)


def write_report(out: Path, results: Sequence[AlgorithmResult], targets_met: bool) -> None:
    """The measurements as JSON in ``out``, for tests and later analysis."""
    report = {"targets_met": targets_met, "algorithms": {result.algorithm: asdict(result) for result in results}}
    (out / REPORT_FILE_NAME).write_text(json.dumps(report, indent=2), encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print its Markdown section and append it to RESULTS.md."""
    args = parse_args(argv)
    argv = sys.argv[1:] if argv is None else list(argv)
    scale = QUICK_SCALE if args.quick else FULL_SCALE
    torch_threads = th.get_num_threads()
    # The 2 cores are shared with other jobs; a second torch thread made SAC's gradient steps ~6x slower.
    th.set_num_threads(1)
    out = args.out or Path(tempfile.mkdtemp(prefix="rtsave-bench-checkpoint-"))
    out.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    try:
        print(f"training SAC on {args.env_id}", file=sys.stderr)
        sac_model = train_sac(args.env_id, scale)
        sac = compare_savers("SAC", sac_model, out, scale.repeats)
        findings, targets_met = format_targets(sac)
        profile = profile_capture(sac_model) if args.profile or not targets_met else ""
        del sac_model  # frees the replay buffer before PPO
        gc.collect()
        print(f"training PPO on {args.env_id}", file=sys.stderr)
        ppo = compare_savers("PPO", train_ppo(args.env_id, scale), out, scale.repeats)
        write_report(out, [sac, ppo], targets_met)
        header = format_header(" ".join(["python -m benchmarks.bench_checkpoint", *argv]), args.env_id, scale, out,
                               load_before)
    finally:
        th.set_num_threads(torch_threads)
        if args.out is None:
            shutil.rmtree(out, ignore_errors=True)
    parts = [header, "", format_table([sac, ppo]), "", findings, ""]
    if profile:
        parts += [f"Profile of {PROFILE_CAPTURES} captures of our SAC checkpoint (`capture_checkpoint`, training "
                  f"thread; the stall's other part is `SnapshotWriter.submit`), top {PROFILE_TOP} by cumulative "
                  "time:", "", "```text", profile, "```", ""]
    section = "\n".join(parts)
    return publish(section, args.results, append=not args.no_append)


if __name__ == "__main__":
    sys.exit(main())
