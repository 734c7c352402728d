"""Runs written by the real SnapshotWriter, shaped like the callbacks' records (for reader tests and benchmarks)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from rtsave_async import SnapshotWriter

ENVS = 2
TOTAL_TIMESTEPS = 100_000


def episode_record(timestep: int, env_id: int, rng: random.Random, finished: int = 1) -> dict[str, Any]:
    """One ``episodes`` record as the tracker builds it (counters, detailed state, finished episodes)."""
    count = timestep // 100
    return {
        "timestep": timestep, "env_id": env_id, "episode_count": count, "success_count": count // 4,
        "success_rate": 0.25,
        "detailed_info": {"robot_state": {"position": {"x": rng.uniform(-1, 1), "y": rng.uniform(-1, 1)},
                                          "joint_positions": [rng.uniform(-2, 2) for _ in range(12)]},
                          "foot_contacts": {"FR": True, "FL": False, "RR": True, "RL": False}},
        "finished_episodes": [{"return": round(rng.uniform(0, 100), 6), "length": rng.randrange(1, 750),
                               "is_success": rng.random() < 0.25} for _ in range(finished)],
    }


def start_run(path: Path, **writer_options: Any) -> SnapshotWriter:
    """A writer on ``path`` that has written the run's hyperparameters record."""
    writer = SnapshotWriter(path, **writer_options)
    writer.submit("hyperparameters", {"timestep": 0, "total_timesteps": TOTAL_TIMESTEPS, "model_type": "PPO",
                                      "policy_type": "ActorCriticPolicy",
                                      "algorithm_hyperparameters": {"learning_rate": 0.0003, "n_steps": 128}})
    return writer


def write_saves(writer: SnapshotWriter, first: int, count: int, rng: random.Random, envs: int = ENVS) -> None:
    """Saves ``first .. first+count-1``: an episodes save (a record per env), learning metrics, env states."""
    for save in range(first, first + count):
        timestep = (save + 1) * 100
        writer.submit("episodes", [episode_record(timestep, env, rng) for env in range(envs)])
        writer.submit("learning_metrics", [{"timestep": timestep, "total_timesteps": TOTAL_TIMESTEPS, "fps": 500.0,
                                            "memory_usage_mb": 300.5, "curriculum_progress": timestep / 1e5,
                                            "logger": {"train/loss": rng.random(), "train/learning_rate": 3e-4}}])
        writer.submit("environment_states", [{"timestep": timestep, "num_envs": envs, "rand_power": [0.1] * envs,
                                              "environment_summary": {"env_name": "CartPole-v1"}}])


def finished_run(path: Path, saves: int = 30, seed: int = 0, **writer_options: Any) -> Path:
    """A closed run of ``saves`` saves per category."""
    writer = start_run(path, **writer_options)
    write_saves(writer, 0, saves, random.Random(seed))
    writer.close()
    return path
