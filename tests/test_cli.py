"""The command line end to end: train, resume, test, and one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PROJECT_ROOT
from rtsave_async import list_snapshot_files, load_records

FAST_PPO = '{"n_steps": 128, "batch_size": 64, "n_epochs": 2}'


def rtsave(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rtsave_async", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env={"PYTHONPATH": str(PROJECT_ROOT), "PATH": "/usr/bin:/bin"})


def assert_no_nulls(value, where: str) -> None:
    """Every field of a seed example record is present and non-null."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert_no_nulls(item, f"{where}.{key}")
    else:
        assert value is not None, where


SEED_FIELDS = {
    "episodes": ["timestep", "env_id", "episode_count", "success_count", "success_rate",
                 "detailed_info.episode_info.current_step", "detailed_info.episode_info.time_remaining",
                 "detailed_info.robot_state.position.x", "detailed_info.robot_state.position.z",
                 "detailed_info.robot_state.velocity.linear", "detailed_info.performance_metrics.episode_progress",
                 "detailed_info.performance_metrics.stability_score"],
    "environment_states": ["timestep", "num_envs", "rand_power", "environment_summary.environment_class",
                           "environment_summary.ctrl_type", "environment_summary.biped",
                           "environment_summary.frame_skip", "environment_summary.dt"],
    "learning_metrics": ["timestep", "total_timesteps", "training_progress", "recent_success_rate_avg",
                         "curriculum_progress", "memory_usage_mb"],
    "checkpoints": ["timestep", "recovery_info.can_resume", "recovery_info.resume_instructions"],
}


def field(record: dict, dotted: str):
    for key in dotted.split("."):
        record = record[key]
    return record


def test_train_resume_and_test_end_to_end(tmp_path: Path) -> None:
    first = rtsave("--run", "train", "--run_name", "demo", "--total_timesteps", "1024", "--num_envs", "2",
                   "--rand_power", "0.5", "--save_frequency", "256", "--checkpoint_frequency", "512",
                   "--hyperparams", FAST_PPO, "--no_progress", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    save_dir = tmp_path / "models" / "demo" / "realtime_data"
    assert f"data in {Path('models/demo/realtime_data')}" in first.stdout
    for category, fields in SEED_FIELDS.items():
        last = load_records(save_dir, category)[-1]
        for record in last:
            for dotted in fields:
                assert_no_nulls(field(record, dotted), f"{category}:{dotted}")
    assert load_records(save_dir, "hyperparameters")[0][0]["model_type"] == "PPO"
    checkpoints = list_snapshot_files(save_dir, "checkpoints")
    assert [load_records(save_dir, "checkpoints")[i][0]["timestep"] for i in range(2)] == [512, 1024]
    resume_line = next(line for line in first.stdout.splitlines() if line.startswith("rtsave: resume with: "))
    assert str(checkpoints[-1].with_suffix(".zip").relative_to(tmp_path)) in resume_line
    files_before = {path.name for path in save_dir.rglob("*.json")}

    resumed = rtsave("train", "--model_path", str(checkpoints[-1].with_suffix(".zip")), "--total_timesteps", "1536",
                     "--checkpoint_frequency", "512", "--no_progress", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "from timestep 1024 to 1536" in resumed.stdout
    files_after = {path.name for path in save_dir.rglob("*.json")}
    assert files_before < files_after  # continued in the same folder, nothing replaced
    assert load_records(save_dir, "checkpoints")[-1][0]["timestep"] == 1536
    episodes = load_records(save_dir, "episodes")
    assert episodes[-1][0]["episode_count"] >= episodes[len(episodes) // 2][0]["episode_count"]  # counters carried on

    tested = rtsave("test", "--model_path", str(list_snapshot_files(save_dir, "checkpoints")[-1]),
                    "--episodes", "2", cwd=tmp_path)
    assert tested.returncode == 0, tested.stderr
    assert "over 2 episodes, success rate" in tested.stdout


@pytest.mark.parametrize("args, message", [
    (["train", "--num_envs", "0"], "argument --num_envs/--num_parallel_envs: must be a positive integer"),
    (["train", "--algo", "xyz"], "argument --algo: invalid choice"),
    (["train", "--env", "CartPole-v1", "--biped"], "--biped applies only to rtsave/Go1-v0"),
    (["train", "--hyperparams", "[1]"], "must be a JSON object"),
    (["train", "--model_path", "missing.zip"], "missing.zip: no such checkpoint file"),
    (["test", "--model_path", "broken.zip", "--algo", "sac"], "broken.zip: cannot be loaded as a SAC model"),
    (["test"], "test needs --model_path"),
])
def test_bad_input_gives_one_clear_line(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "broken.zip").write_bytes(b"not a zip")
    result = rtsave(*args, cwd=tmp_path)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
