"""``rtsave test``: run episodes of a saved policy with deterministic actions."""

from __future__ import annotations

import argparse
import os
from typing import Any

import numpy as np

from rtsave_async.checkpoints import CheckpointError, load_checkpoint
from rtsave_async.cli.environments import check_algorithm_fits, environment_options, make_env
from rtsave_async.cli.errors import CliError
from rtsave_async.cli.session import build_vec_env, set_torch_threads, verified_checkpoint


def test(args: argparse.Namespace) -> int:
    set_torch_threads(args.torch_threads)
    checkpoint = verified_checkpoint(args.model_path)
    recorded = checkpoint.metadata or {}
    env_id, env_kwargs = environment_options(args, recorded)
    algo = args.algo or (recorded.get("algorithm") or "").lower()
    if algo:
        check_algorithm_fits(algo, env_id, env_kwargs)
    record = args.record is not None and rendering_works(env_id, env_kwargs)
    env = build_vec_env(env_id, {**env_kwargs, "render_mode": "rgb_array"} if record else env_kwargs, 1, args.seed)
    try:
        # The policy only: testing never needs the replay buffer, env or RNG states of training.
        model = load_checkpoint(checkpoint, env, algorithm=args.algo or None, for_prediction=True,
                                allow_pickle=args.allow_pickle).model
    except CheckpointError as exc:
        env.close()
        raise CliError(str(exc)) from None
    print("rtsave: actions are deterministic (the policy's most likely action), so returns differ from the "
          "training episodes', whose actions were sampled")
    vec_env = model.get_env()
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
        successes.append(info.get("is_success"))
        success = "" if successes[-1] is None else f", success {bool(successes[-1])}"
        print(f"rtsave: episode {episode + 1}: return {episode_return:.2f}{success}")
    vec_env.close()
    reported = [bool(value) for value in successes if value is not None]
    success_text = f"success rate {np.mean(reported):.1%}" if reported else "no success signal"
    print(f"rtsave: mean return {np.mean(returns):.2f} +- {np.std(returns):.2f} over {len(returns)} episodes, "
          f"{success_text}")
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
    except Exception as exc:  # no GL backend, or no renderer for this env
        hint = "" if os.environ.get("MUJOCO_GL") else "; on a machine without a display run with MUJOCO_GL=egl"
        print(f"rtsave: --record skipped: rendering is unavailable here ({type(exc).__name__}: {exc}){hint}")
        return False
    return True
