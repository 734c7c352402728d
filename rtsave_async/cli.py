"""Command line: ``rtsave train`` / ``rtsave test`` (also ``python -m rtsave_async``).

The seed's form ``--run train|test`` is accepted too::

    rtsave train --run_name demo --total_timesteps 20000
    python -m rtsave_async --run train --model_path models/demo/realtime_data/checkpoints/checkpoint_....zip
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import gymnasium as gym
import numpy as np
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv

from rtsave_async.callbacks import ComprehensiveSavingCallback, CurriculumCallback
from rtsave_async.callbacks.checkpointing import train_command
from rtsave_async.checkpoints import ALGORITHMS, CheckpointError, CheckpointInfo, find_checkpoint, load_checkpoint
from rtsave_async.envs import GO1_ENV_ID

GO1_ONLY_OPTIONS = ("ctrl_type", "biped", "rand_power")
VEC_ENV_CLASSES = {"dummy": DummyVecEnv, "subproc": SubprocVecEnv}
EXIT_INTERRUPTED = 130
MAX_NAME_BYTES = 255  # NAME_MAX of Linux file systems (ext4, xfs, btrfs, tmpfs)


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object of keyword arguments")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="rtsave", description="Train or test an SB3 agent with real-time saving.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineErrorParser)
    train = commands.add_parser("train", help="train (or resume) with real-time saving")
    test = commands.add_parser("test", help="run episodes of a saved model")
    for sub in (train, test):
        sub.add_argument("--env", default=None, help=f"Gymnasium env id (default {GO1_ENV_ID}, or the checkpoint's)")
        sub.add_argument("--ctrl_type", choices=("position", "torque"), default=None, help="Go1 control type")
        sub.add_argument("--biped", action="store_true", default=None, help="Go1 stands and walks on its hind legs")
        sub.add_argument("--rand_power", type=non_negative_float, default=None, help="Go1 domain randomization")
        sub.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
        sub.add_argument("--model_path", default=None, help="checkpoint .zip or .json (resume / test)")
        sub.add_argument("--algo", choices=sorted(name.lower() for name in ALGORITHMS), default=None,
                         help="algorithm (default: the checkpoint's, else ppo)")
        sub.add_argument("--allow_pickle", action="store_true",
                         help="load the pickled state of an older checkpoint (runs its code: trusted files only)")
    train.add_argument("--run_name", default=None, help="run name (default: go1_<algo>_<time>)")
    train.add_argument("--total_timesteps", type=positive_int, default=20_000,
                       help="final num_timesteps, also when resuming (default 20000)")
    train.add_argument("--num_envs", "--num_parallel_envs", dest="num_envs", type=positive_int, default=2,
                       help="parallel environments (default 2)")
    train.add_argument("--hyperparams", type=json_object, default={}, metavar="JSON",
                       help='algorithm keyword arguments, e.g. \'{"n_steps": 256}\' (new runs only)')
    train.add_argument("--save_frequency", type=positive_int, default=1000, help="save every N timesteps")
    train.add_argument("--checkpoint_frequency", type=positive_int, default=10_000,
                       help="checkpoint every N timesteps")
    train.add_argument("--keep_last", type=positive_int, default=None, help="checkpoints kept (default all)")
    train.add_argument("--save_dir", default=None,
                       help="real-time data folder (default models/<run_name>/realtime_data)")
    train.add_argument("--vec", choices=sorted(VEC_ENV_CLASSES), default="dummy", help="VecEnv class")
    train.add_argument("--no_progress", action="store_true", help="no progress bar")
    test.add_argument("--episodes", type=positive_int, default=5, help="episodes to run (default 5)")
    test.add_argument("--record", default=None, metavar="GIF", help="save a GIF of the first episode")
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


def make_env(env_id: str, **env_kwargs: Any) -> gym.Env:
    """``gym.make`` that registers our envs first (also inside subprocess workers)."""
    import rtsave_async.envs  # noqa: F401  (registers rtsave/Go1-v0)

    return gym.make(env_id, **env_kwargs)


def environment_options(args: argparse.Namespace, recorded: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The env id and kwargs: flags first, then what the checkpoint recorded, then defaults."""
    env_id = args.env or recorded.get("env_id") or GO1_ENV_ID
    kwargs = dict(recorded.get("env_kwargs") or {}) if env_id == recorded.get("env_id") else {}
    for option in GO1_ONLY_OPTIONS:
        value = getattr(args, option)
        if value is None:
            continue
        if env_id != GO1_ENV_ID:
            raise SystemExit(f"rtsave: error: --{option} applies only to {GO1_ENV_ID}, not {env_id}")
        kwargs[option] = value
    return env_id, kwargs


def build_vec_env(env_id: str, env_kwargs: dict[str, Any], num_envs: int, seed: int, vec: str = "dummy") -> VecEnv:
    try:
        return make_vec_env(functools.partial(make_env, env_id, **env_kwargs), n_envs=num_envs, seed=seed,
                            vec_env_cls=VEC_ENV_CLASSES[vec])
    except gym.error.Error as exc:
        raise SystemExit(f"rtsave: error: cannot make env {env_id!r}: {exc}") from None


def verified_checkpoint(model_path: str | None) -> CheckpointInfo | None:
    """The checkpoint at ``model_path``, every file verified once (None without a path)."""
    if model_path is None:
        return None
    try:
        return find_checkpoint(model_path)
    except CheckpointError as exc:
        raise SystemExit(f"rtsave: error: {exc}") from None


def resume_command_builder(args: argparse.Namespace, save_dir: Path) -> Callable[[str], str]:
    """Checkpoint zip -> the exact command that resumes this run from it."""
    words = ["--algo", args.algo, "--env", args.env_id, "--num_envs", str(args.num_envs), "--seed", str(args.seed),
             "--vec", args.vec, "--total_timesteps", str(args.total_timesteps), "--save_frequency", str(args.save_frequency),
             "--checkpoint_frequency", str(args.checkpoint_frequency), "--save_dir", str(save_dir)]
    for option in GO1_ONLY_OPTIONS:
        value = args.env_kwargs.get(option)
        if value is True:
            words.append(f"--{option}")
        elif value not in (None, False):
            words += [f"--{option}", str(value)]
    if args.keep_last:
        words += ["--keep_last", str(args.keep_last)]
    if args.hyperparams:
        words += ["--hyperparams", json.dumps(args.hyperparams)]
    return train_command(words)


def check_run_options(args: argparse.Namespace) -> None:
    """A run name is one plain folder name (at most 255 bytes) under models/; no path may hold a null byte."""
    name = args.run_name
    if name is not None and (not name or name in (".", "..") or "/" in name or "\0" in name):
        raise SystemExit(f"rtsave: error: --run_name {name!r} must be a plain folder name (no '/', '..' or null byte)")
    name_bytes = len(os.fsencode(name)) if name is not None else 0
    if name_bytes > MAX_NAME_BYTES:
        raise SystemExit(f"rtsave: error: --run_name is {name_bytes} bytes long; a folder name "
                         f"may have at most {MAX_NAME_BYTES}")
    if args.save_dir is not None and "\0" in args.save_dir:
        raise SystemExit(f"rtsave: error: --save_dir {args.save_dir!r} contains a null byte")


def train(args: argparse.Namespace) -> int:
    checkpoint = verified_checkpoint(args.model_path)
    recorded = (checkpoint.metadata if checkpoint else None) or {}
    args.algo = args.algo or (recorded.get("algorithm") or "ppo").lower()
    args.env_id, args.env_kwargs = environment_options(args, recorded)
    check_run_options(args)
    if args.save_dir:
        save_dir = Path(args.save_dir)
    elif checkpoint and recorded and args.run_name is None:
        save_dir = checkpoint.model_path.parent.parent  # continue the resumed run's folder
    else:
        run_name = args.run_name or f"{args.env_id.split('/')[-1].lower()}_{args.algo}_{time.strftime('%Y%m%d_%H%M%S')}"
        save_dir = Path("models") / run_name / "realtime_data"
    env = build_vec_env(args.env_id, args.env_kwargs, args.num_envs, args.seed, args.vec)
    if checkpoint:
        try:
            resumed = load_checkpoint(checkpoint, env, algorithm=args.algo, allow_pickle=args.allow_pickle)
        except CheckpointError as exc:
            env.close()
            raise SystemExit(f"rtsave: error: {exc}") from None
        model, callback_state = resumed.model, resumed.callback_state
        if model.num_timesteps >= args.total_timesteps:
            env.close()
            raise SystemExit(f"rtsave: error: the checkpoint is at timestep {model.num_timesteps}; "
                             f"--total_timesteps ({args.total_timesteps}) must be larger")
    else:
        try:
            model = ALGORITHMS[args.algo.upper()]("MlpPolicy", env, seed=args.seed, device="cpu", **args.hyperparams)
        except TypeError as exc:
            env.close()
            raise SystemExit(f"rtsave: error: --hyperparams: {exc}") from None
        callback_state = None
    saving = ComprehensiveSavingCallback(
        save_dir, save_frequency=args.save_frequency, checkpoint_frequency=args.checkpoint_frequency,
        total_timesteps=args.total_timesteps, verbose=0,
        checkpoint_options={"keep_last": args.keep_last, "resume_command": resume_command_builder(args, save_dir)},
    )
    saving.restore_state(callback_state)
    callbacks = [saving]
    initial_rand_power = args.env_kwargs.get("rand_power")
    if initial_rand_power:
        callbacks.append(CurriculumCallback(initial_rand_power, 0.0, end_timestep=args.total_timesteps))
    started_at = model.num_timesteps
    print(f"rtsave: training {args.algo.upper()} on {args.env_id} ({args.num_envs} envs) from timestep "
          f"{started_at} to {args.total_timesteps}; real-time data in {save_dir}", flush=True)
    try:
        model.learn(args.total_timesteps - started_at, callback=callbacks, reset_num_timesteps=False,
                    progress_bar=not args.no_progress)
    except KeyboardInterrupt:
        print(f"\nrtsave: interrupted at timestep {model.num_timesteps}; everything submitted is flushed to "
              f"{save_dir}", file=sys.stderr)
        print_resume_hint(saving)
        return EXIT_INTERRUPTED
    finally:
        env.close()
    print_summary(saving, model.num_timesteps)
    return 0


def print_summary(saving: ComprehensiveSavingCallback, timesteps: int) -> None:
    stats = saving.writer_stats or {}
    episodes = sum(saving.episode_counts())
    successes = sum(saving.success_counts())
    rate = f"{successes / episodes:.1%}" if episodes else "n/a"
    print(f"rtsave: done. timesteps {timesteps}, episodes {episodes}, success rate {rate}")
    print(f"rtsave: files written {stats.get('written', 0)}, dropped {stats.get('dropped', 0)}, "
          f"failed {stats.get('failed', 0)}; data in {saving.save_dir}")
    print_resume_hint(saving)


def print_resume_hint(saving: ComprehensiveSavingCallback) -> None:
    written = saving.checkpoint_saver.written if saving.checkpoint_saver else []
    if written:
        from rtsave_async.checkpoints.format import read_checkpoint_metadata

        metadata = read_checkpoint_metadata(written[-1])
        print(f"rtsave: resume with: {metadata['recovery_info']['resume_command']}")


def test(args: argparse.Namespace) -> int:
    if args.model_path is None:
        raise SystemExit("rtsave: error: test needs --model_path (a checkpoint .zip or .json)")
    checkpoint = verified_checkpoint(args.model_path)
    env_id, env_kwargs = environment_options(args, checkpoint.metadata or {})
    record = args.record is not None and rendering_works(env_id, env_kwargs)
    env = build_vec_env(env_id, {**env_kwargs, "render_mode": "rgb_array"} if record else env_kwargs, 1, args.seed)
    try:
        resumed = load_checkpoint(checkpoint, env, algorithm=args.algo, restore_rng=False,
                                  allow_pickle=args.allow_pickle)
    except CheckpointError as exc:
        raise SystemExit(f"rtsave: error: {exc}") from None
    model = resumed.model
    vec_env = model.get_env()
    vec_normalize = model.get_vec_normalize_env()
    if vec_normalize is not None:
        vec_normalize.training, vec_normalize.norm_reward = False, False
    returns, successes, frames = [], [], []
    for episode in range(args.episodes):
        observation, done, episode_return, info = vec_env.reset(), False, 0.0, {}
        while not done:
            action, _ = model.predict(observation, deterministic=True)
            observation, reward, dones, infos = vec_env.step(action)
            episode_return, done, info = episode_return + float(reward[0]), bool(dones[0]), infos[0]
            if episode == 0 and record:
                frames.append(vec_env.get_images()[0])
        returns.append(episode_return)
        successes.append(bool(info.get("is_success", False)))
        print(f"rtsave: episode {episode + 1}: return {episode_return:.2f}, success {successes[-1]}")
    vec_env.close()
    print(f"rtsave: mean return {np.mean(returns):.2f} +- {np.std(returns):.2f} over {len(returns)} episodes, "
          f"success rate {np.mean(successes):.1%}")
    if frames:
        import imageio.v2 as imageio

        imageio.mimsave(args.record, frames, duration=1000 / 30)
        print(f"rtsave: recorded {len(frames)} frames to {args.record}")
    return 0


def rendering_works(env_id: str, env_kwargs: dict[str, Any]) -> bool:
    """Whether ``env_id`` renders RGB frames here; says why not when it does not."""
    try:
        probe = make_env(env_id, render_mode="rgb_array", **env_kwargs)
        probe.reset(seed=0)
        probe.render()
        probe.close()
    except Exception as exc:  # no GL backend (try MUJOCO_GL=egl or osmesa), or no renderer for this env
        print(f"rtsave: --record skipped: rendering is unavailable here ({type(exc).__name__}: {exc})")
        return False
    return True


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(seed_style_argv(sys.argv[1:] if argv is None else argv))
    return train(args) if args.command == "train" else test(args)
