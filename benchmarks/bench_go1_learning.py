"""Does SB3 PPO learn on rtsave/Go1-v0? Prints a Markdown learning-curve table.

Baselines (uniform random actions, zero action = hold the standing pose) and the PPO policy
(deterministic) after every ``total_timesteps / eval_points`` environment steps are evaluated
on the same seeded episodes. The table also lists the mean return of the last 100 training
episodes (stochastic policy, unnormalized reward). PPO trains on reward-normalized envs
(VecNormalize, observations are already scaled by the env) with one torch thread, which is
faster than two when the environments share the same two cores.

    python -m benchmarks.bench_go1_learning --total-timesteps 400000 --n-envs 4
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecNormalize

from rtsave_async.envs import GO1_ENV_ID

#: "module:id" so that SubprocVecEnv workers import (and register) the env themselves.
IMPORTABLE_ENV_ID = f"rtsave_async.envs:{GO1_ENV_ID}"
EVAL_SEED_OFFSET = 10_000

Policy = Callable[[np.ndarray], np.ndarray]


@dataclass
class Evaluation:
    """Averages over the evaluation episodes."""

    mean_return: float
    std_return: float
    mean_length: float  # control steps
    success_rate: float
    lin_tracking_per_step: float  # weighted tracking_lin_vel reward per step (max 2)


@dataclass
class CurvePoint:
    """One table row: a policy evaluated after ``env_steps`` of PPO training."""

    policy: str
    env_steps: int
    evaluation: Evaluation
    train_seconds: float = 0.0
    training_return: float | None = None  # mean of the last 100 training episodes


def evaluate(env: gym.Env, policy: Policy, episodes: int, seed: int) -> Evaluation:
    """Run ``episodes`` seeded episodes (seeds seed, seed+1, ...) with ``policy``."""
    returns, lengths, successes, tracking = [], [], [], []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        total, steps, done, info = 0.0, 0, False, {}
        while not done:
            obs, reward, terminated, truncated, info = env.step(policy(obs))
            total += reward
            steps += 1
            tracking.append(info["reward_components"]["tracking_lin_vel"])
            done = terminated or truncated
        returns.append(total)
        lengths.append(steps)
        successes.append(info["is_success"])
    return Evaluation(float(np.mean(returns)), float(np.std(returns)), float(np.mean(lengths)),
                      float(np.mean(successes)), float(np.mean(tracking)))


def machine_description() -> str:
    """CPU model and usable core count, e.g. 'AMD EPYC, 2 cores'."""
    model = platform.processor() or "unknown CPU"
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        pass
    return f"{model}, {len(os.sched_getaffinity(0))} cores"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--total-timesteps", type=int, default=400_000, help="PPO budget in environment steps")
    parser.add_argument("--n-envs", type=int, default=4, help="parallel training environments")
    parser.add_argument("--eval-points", type=int, default=5, help="learning-curve points after step 0")
    parser.add_argument("--eval-episodes", type=int, default=5, help="episodes per evaluation")
    parser.add_argument("--ctrl-type", choices=["position", "torque"], default="position")
    parser.add_argument("--subproc", action="store_true", help="SubprocVecEnv instead of DummyVecEnv")
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.torch_threads)
    started = datetime.datetime.now().astimezone()
    env_kwargs = {"ctrl_type": args.ctrl_type}
    eval_env = gym.make(IMPORTABLE_ENV_ID, **env_kwargs)
    eval_seed = args.seed + EVAL_SEED_OFFSET
    action_rng = np.random.default_rng(args.seed)
    action_shape = eval_env.action_space.shape
    baselines: dict[str, Policy] = {
        "random (uniform)": lambda _: action_rng.uniform(-1, 1, action_shape),
        "zero action (stand)": lambda _: np.zeros(action_shape),
    }
    rows = [CurvePoint(name, 0, evaluate(eval_env, policy, args.eval_episodes, eval_seed))
            for name, policy in baselines.items()]

    train_env = VecNormalize(
        make_vec_env(IMPORTABLE_ENV_ID, n_envs=args.n_envs, seed=args.seed, env_kwargs=env_kwargs,
                     vec_env_cls=SubprocVecEnv if args.subproc else DummyVecEnv),
        norm_obs=False, norm_reward=True,
    )
    model = PPO("MlpPolicy", train_env, n_steps=512, batch_size=256, n_epochs=5, learning_rate=3e-4,
                gamma=0.99, gae_lambda=0.95, policy_kwargs={"net_arch": [128, 128], "log_std_init": -1.0},
                seed=args.seed, device="cpu")

    def ppo_policy(obs: np.ndarray) -> np.ndarray:
        return model.predict(obs, deterministic=True)[0]

    rows.append(CurvePoint("PPO (deterministic)", 0, evaluate(eval_env, ppo_policy, args.eval_episodes, eval_seed)))
    train_seconds = 0.0
    for point in range(1, args.eval_points + 1):
        target = args.total_timesteps * point // args.eval_points
        tic = time.perf_counter()
        model.learn(total_timesteps=target - model.num_timesteps, reset_num_timesteps=False)
        train_seconds += time.perf_counter() - tic
        evaluation = evaluate(eval_env, ppo_policy, args.eval_episodes, eval_seed)
        finished = [episode["r"] for episode in model.ep_info_buffer]
        training_return = float(np.mean(finished)) if finished else None
        rows.append(CurvePoint("PPO (deterministic)", model.num_timesteps, evaluation, train_seconds, training_return))
        print(f"[{model.num_timesteps} steps, {train_seconds:.0f} s] mean return {evaluation.mean_return:.1f}",
              file=sys.stderr, flush=True)
    train_env.close()

    print(f"Command: `python -m benchmarks.bench_go1_learning {' '.join(sys.argv[1:] if argv is None else argv)}`")
    print(f"Date: {started:%Y-%m-%d %H:%M %Z}; machine: {machine_description()}")
    print(f"Env: {GO1_ENV_ID} {env_kwargs}, {args.n_envs} training envs; evaluation: "
          f"{args.eval_episodes} seeded episodes (max {eval_env.unwrapped.max_episode_steps} steps)\n")
    print("| policy | env steps | train time (s) | mean return ± std | mean ep. length | success rate "
          "| lin-vel tracking / step (max 2) | training return (stochastic, last 100 ep.) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        ev = row.evaluation
        training = "–" if row.training_return is None else f"{row.training_return:.1f}"
        print(f"| {row.policy} | {row.env_steps} | {row.train_seconds:.0f} "
              f"| {ev.mean_return:.1f} ± {ev.std_return:.1f} | {ev.mean_length:.0f} | {ev.success_rate:.2f} "
              f"| {ev.lin_tracking_per_step:.3f} | {training} |")


if __name__ == "__main__":
    main()
