"""``rtsave train``: train or resume an SB3 agent with real-time saving."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from collections.abc import Callable
from typing import Any

from stable_baselines3.common.base_class import BaseAlgorithm

from rtsave_async.callbacks import ComprehensiveSavingCallback, CurriculumCallback
from rtsave_async.checkpoints import ALGORITHMS, CheckpointError, ResumedRun, load_checkpoint
from rtsave_async.checkpoints.format import read_checkpoint_metadata
from rtsave_async.cli.arguments import check_writable, save_dir_for, storage_format
from rtsave_async.cli.environments import GO1_ENV_ID, check_algorithm_fits, environment_options
from rtsave_async.cli.errors import CliError
from rtsave_async.cli.progress import ProgressBar, planned_stop, timesteps_per_round
from rtsave_async.cli.session import build_vec_env, set_torch_threads, verified_checkpoint
from rtsave_async.remote.urls import is_url, run_url_of_checkpoint

EXIT_INTERRUPTED = 130
EXIT_SAVING_FAILED = 1


def train(args: argparse.Namespace) -> int:
    threads = set_torch_threads(args.torch_threads)
    checkpoint = verified_checkpoint(args.model_path)
    if checkpoint is not None:  # a new run was fully checked before torch was imported
        recorded = checkpoint.metadata or {}
        args.algo = args.algo or (recorded.get("algorithm") or "ppo").lower()
        args.env_id, args.env_kwargs = environment_options(args, recorded)
        check_algorithm_fits(args.algo, args.env_id, args.env_kwargs)
        run_folder = (run_url_of_checkpoint(args.model_path) if is_url(args.model_path)  # fetched to a cache
                      else checkpoint.model_path.parent.parent) if recorded else None  # <save_dir>/checkpoints/<ckpt>
        args.save_path = save_dir_for(args, run_folder)
        check_writable(args.save_path, spool_dir=args.spool_dir)
        args.format = storage_format(args.format, args.save_path, args.spool_dir)
    env = build_vec_env(args.env_id, args.env_kwargs, args.num_envs, args.seed, args.vec)
    try:
        model, resumed = start_model(args, checkpoint, env)
    except BaseException:
        env.close()
        raise
    started_at = model.num_timesteps
    saving = ComprehensiveSavingCallback(
        args.save_path, save_frequency=args.save_frequency, checkpoint_frequency=args.checkpoint_frequency,
        total_timesteps=args.total_timesteps, verbose=0, writer_options=writer_options(args),
        checkpoint_options={"keep_last": args.keep_last, "resume_command": resume_command_builder(args, started_at)},
    )
    callbacks: list[Any] = [saving]
    if resumed is not None:
        saving.restore_state(kept_callback_state(resumed, args.num_envs))
        print(f"rtsave: resumed from {resumed.info.model_path}: {resumed.describe()}", flush=True)
    curriculum = curriculum_for(args, resumed, started_at)
    if curriculum is not None:
        callbacks.append(curriculum)
    stop = planned_stop(model, args.total_timesteps)
    print(start_line(args, model, stop, threads), flush=True)
    progress = None if args.no_progress else ProgressBar(started_at, stop)
    if progress is not None:
        callbacks.append(progress)
    interrupted = False
    try:
        model.learn(args.total_timesteps - started_at, callback=callbacks, reset_num_timesteps=False)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if progress is not None:
            progress.close()  # before printing: a bar still drawing would break the lines below
        env.close()
    if interrupted:
        print(f"rtsave: interrupted at timestep {model.num_timesteps}; everything submitted is flushed to "
              f"{args.save_path}", file=sys.stderr)
        print_resume_hint(saving)
        return EXIT_INTERRUPTED
    return print_summary(saving, model.num_timesteps)


def writer_options(args: argparse.Namespace) -> dict[str, Any]:
    """The SnapshotWriter options the flags give (``--spool_dir`` for a URL save_dir)."""
    options: dict[str, Any] = {"format": args.format}
    if args.spool_dir:
        options["spool_dir"] = args.spool_dir
    return options


def start_model(args: argparse.Namespace, checkpoint: Any, env: Any) -> tuple[BaseAlgorithm, ResumedRun | None]:
    """The model to train: loaded from the checkpoint, or new."""
    if checkpoint is None:
        try:
            return ALGORITHMS[args.algo.upper()]("MlpPolicy", env, seed=args.seed, device="cpu",
                                                 **args.hyperparams), None
        except TypeError as exc:
            raise CliError(f"--hyperparams: {exc}") from None
    try:
        resumed = load_checkpoint(checkpoint, env, algorithm=args.algo, device="cpu", allow_pickle=args.allow_pickle)
    except CheckpointError as exc:
        raise CliError(str(exc)) from None
    timestep = resumed.model.num_timesteps
    if timestep >= args.total_timesteps:
        raise CliError(f"the checkpoint is at timestep {timestep}; --total_timesteps is the final count, so "
                       f"give one larger than {timestep} (e.g. --total_timesteps {timestep + args.total_timesteps})")
    return resumed.model, resumed


def kept_callback_state(resumed: ResumedRun, num_envs: int) -> dict[str, Any] | None:
    """The saving callback's counters if they fit ``num_envs`` (they are per env); noted in ``resumed``."""
    saved_envs = (resumed.info.metadata or {}).get("num_envs")
    if resumed.callback_state is None:
        return None
    if saved_envs == num_envs:
        resumed.restored.append("episode and success counters")
        return resumed.callback_state
    resumed.not_restored.append(f"episode and success counters (kept per env; the checkpoint has {saved_envs} "
                                f"envs, this run {num_envs}: they start from zero)")
    return None


def curriculum_for(args: argparse.Namespace, resumed: ResumedRun | None, start: int) -> CurriculumCallback | None:
    """The ``rand_power`` ramp: from its start value (a new run's ``--rand_power``, the checkpoint's
    current value on resume unless ``--rand_power`` is given) at ``start`` down to 0 at ``--total_timesteps``."""
    if args.env_id != GO1_ENV_ID:
        return None
    value = args.rand_power
    if value is None and resumed is not None:
        value = checkpoint_rand_power(resumed, args.env_kwargs.get("rand_power"))
    if value is None or (not value and resumed is None):
        return None
    return CurriculumCallback(value, 0.0, start_timestep=start, end_timestep=args.total_timesteps)


def checkpoint_rand_power(resumed: ResumedRun, recorded: float | None) -> float | None:
    """``rand_power`` when the checkpoint was taken (from the envs' saved states), else ``recorded``."""
    states = resumed.env_states or [None]
    if isinstance(states[0], dict) and states[0].get("rand_power") is not None:
        return float(states[0]["rand_power"])
    return recorded


def start_line(args: argparse.Namespace, model: BaseAlgorithm, stop: int, threads: int) -> str:
    algo = args.algo.upper()
    line = (f"rtsave: training {algo} on {args.env_id} ({args.num_envs} envs, {threads} torch "
            f"thread{'s' if threads != 1 else ''}) from timestep {model.num_timesteps} to {args.total_timesteps}")
    if stop != args.total_timesteps:
        line += (f"; {algo} checks the target every {timesteps_per_round(model)} timesteps, so training stops at "
                 f"timestep {stop}")
    return f"{line}; real-time data in {args.save_path}"


def resume_command_builder(args: argparse.Namespace, started_at: int) -> Callable[[str, int], str]:
    """(model zip, checkpoint timestep) -> the command that resumes this run from it.

    A checkpoint at or past the target (the run finished) gets a target as far beyond
    it as this run went, so the printed line always works. The env options and the
    save folder come from the checkpoint itself, so a moved run folder resumes too.
    """
    words = [sys.executable, "-m", "rtsave_async", "train", "--algo", args.algo, "--env", args.env_id,
             "--num_envs", str(args.num_envs), "--seed", str(args.seed), "--vec", args.vec,
             "--save_frequency", str(args.save_frequency), "--checkpoint_frequency", str(args.checkpoint_frequency)]
    if args.keep_last:
        words += ["--keep_last", str(args.keep_last)]
    if args.torch_threads != 1:
        words += ["--torch_threads", str(args.torch_threads)]
    span = args.total_timesteps - started_at

    def command(model_path: str, timestep: int) -> str:
        total = args.total_timesteps if timestep < args.total_timesteps else timestep + span
        return shlex.join([*words, "--total_timesteps", str(total), "--model_path", model_path])

    return command


def print_summary(saving: ComprehensiveSavingCallback, timesteps: int) -> int:
    """The end-of-run lines; the exit status (1 when a snapshot was not saved)."""
    stats = saving.writer_stats or {}
    print(f"rtsave: done. timesteps {timesteps}, episodes {sum(saving.episode_counts())}, "
          f"{success_summary(saving)}")
    print(f"rtsave: files written {stats.get('written', 0)}, dropped {stats.get('dropped', 0)}, "
          f"failed {stats.get('failed', 0)}; data in {saving.save_dir}")
    print_resume_hint(saving)
    lost = stats.get("failed", 0) + stats.get("dropped", 0)
    if not lost:
        return 0
    errors = stats.get("errors") or ["(no error message kept)"]
    print(f"rtsave: error: {lost} snapshot file(s) not saved ({stats.get('failed', 0)} failed, "
          f"{stats.get('dropped', 0)} dropped); first error: {errors[0]}", file=sys.stderr)
    return EXIT_SAVING_FAILED


def success_summary(saving: ComprehensiveSavingCallback) -> str:
    """``"success rate 12.5%"``, or ``"no success signal"`` when the env never reported success."""
    if not saving.success_signal_seen:
        return "no success signal"
    counters = saving.state_dict().get("episodes", {})
    reported = sum(counters.get("episodes_with_success_info", []))
    episodes = reported or sum(saving.episode_counts())
    return f"success rate {sum(saving.success_counts()) / episodes:.1%}" if episodes else "success rate n/a"


def print_resume_hint(saving: ComprehensiveSavingCallback) -> None:
    written = saving.checkpoint_saver.written if saving.checkpoint_saver else []
    if not written:
        print("rtsave: no checkpoint was written yet; nothing to resume from", file=sys.stderr)
        return
    # Only the command is needed: reading the JSON, not hashing every file again as find_checkpoint does.
    newest = written[-1]
    if isinstance(newest, str):  # a URL: its JSON is in the writer's local spool too
        upload = (saving.writer_stats or {}).get("upload", {})
        newest = Path(upload["spool"], newest[len(str(saving.save_dir)):].lstrip("/"))
    command = read_checkpoint_metadata(newest)["recovery_info"]["resume_command"]
    print(f"rtsave: resume with: {command}", flush=True)
