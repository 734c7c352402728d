"""The command line end to end: train, resume, test, and one-line errors."""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from cli_support import FAST_PPO, FAST_SAC, child_env, line_starting, newest_checkpoint_record, rtsave
from rtsave_async import list_snapshot_files, load_records
from rtsave_async.cli.arguments import build_parser
from rtsave_async.cli.environments import environment_options


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
    resume_line = line_starting(first.stdout, "rtsave: resume with: ")
    assert str(checkpoints[-1].with_suffix(".zip")) in resume_line  # absolute: works from any folder
    files_before = {path.name for path in save_dir.rglob("*.json")}
    rand_power_at_checkpoint = next(record[0]["rand_power"][0] for record in load_records(save_dir, "environment_states")
                                    if record[0]["timestep"] == 512)

    # Resume from the earlier checkpoint (rand_power about 0.25 there) with a larger target.
    resumed = rtsave("train", "--model_path", str(checkpoints[0].with_suffix(".zip")), "--total_timesteps", "2048",
                     "--save_frequency", "256", "--checkpoint_frequency", "512", "--no_progress", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "from timestep 512 to 2048" in resumed.stdout
    files_after = {path.name for path in save_dir.rglob("*.json")}
    assert files_before < files_after  # continued in the same folder, nothing replaced
    assert load_records(save_dir, "checkpoints")[-1][0]["timestep"] == 2048
    episodes = load_records(save_dir, "episodes")
    assert episodes[-1][0]["episode_count"] >= episodes[len(episodes) // 2][0]["episode_count"]  # counters carried on
    # The ramp goes on from the checkpoint's value down to 0 at the new target; it does not restart.
    resumed_states = [json.loads(path.read_bytes())[0] for path in list_snapshot_files(save_dir, "environment_states")
                      if path.name not in files_before]
    powers = [state["rand_power"][0] for state in resumed_states]
    assert powers[0] <= rand_power_at_checkpoint and powers == sorted(powers, reverse=True) and powers[-1] < 0.01

    tested = rtsave("test", "--model_path", str(list_snapshot_files(save_dir, "checkpoints")[-1]),
                    "--episodes", "2", "--record", "first.gif", cwd=tmp_path)
    assert tested.returncode == 0, tested.stderr
    assert "over 2 episodes, success rate" in tested.stdout
    assert "deterministic" in tested.stdout
    # Without MUJOCO_GL (child_env passes none) rendering either works or the hint names the fix.
    assert (tmp_path / "first.gif").is_file() or "MUJOCO_GL=egl" in tested.stdout


@pytest.mark.parametrize("args, message", [
    (["train", "--num_envs", "0"], "argument --num_envs/--num_parallel_envs: must be a positive integer"),
    (["train", "--total_timesteps", "abc"], "argument --total_timesteps: must be a positive integer, got 'abc'"),
    (["train", "--algo", "xyz"], "argument --algo: invalid choice"),
    (["train", "--env", "CartPole-v1", "--biped"], "--biped applies only to rtsave/Go1-v0"),
    (["train", "--hyperparams", "[1]"], "must be a JSON object"),
    (["train", "--model_path", "missing.zip"], "missing.zip: no such checkpoint file"),
    (["train", "--algo", "dqn"], "--algo dqn does not fit rtsave/Go1-v0: its action space is Box(-1.0, 1.0, (12,), "
                                 "float32), dqn needs Discrete actions; algorithms that fit: a2c, ppo, sac, td3, ddpg"),
    (["train", "--env", "CartPole-v1", "--algo", "sac"],
     "--algo sac does not fit CartPole-v1: its action space is Discrete(2), sac needs Box actions; "
     "algorithms that fit: a2c, ppo, dqn"),
    (["train", "--save_dir", "/proc/x"], "--save_dir /proc/x is not writable"),
    (["test", "--model_path", "broken.zip", "--algo", "sac"], "broken.zip: cannot be loaded as a SAC model"),
    (["test"], "test needs --model_path"),
])
def test_bad_input_gives_one_clear_line_and_status_2(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "broken.zip").write_bytes(b"not a zip")
    result = rtsave(*args, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / "models").exists()  # nothing trained, no run folder left behind


@pytest.mark.parametrize("args", [["train", "--total_timesteps", "abc"], ["train", "--algo", "dqn"],
                                  ["train", "--save_dir", "/proc/x"], ["test", "--model_path", "missing.zip"]])
def test_argument_errors_come_before_torch_is_imported(tmp_path: Path, args: list[str]) -> None:
    result = rtsave(*args, cwd=tmp_path, python_options=("-X", "importtime"))
    assert result.returncode == 2 and "rtsave" in result.stderr.splitlines()[-1]
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "gymnasium" in imported or args[0] == "test"  # the import log is there ...
    assert not {"torch", "stable_baselines3"} & imported  # ... and the heavy modules are not in it


def test_version_and_every_flag_states_its_default(tmp_path: Path) -> None:
    from rtsave_async import __version__

    assert rtsave("--version", cwd=tmp_path).stdout.strip() == f"rtsave {__version__}"
    helps = " ".join(rtsave("train", "--help", cwd=tmp_path).stdout.split())
    assert "(default 1000)" in helps and "(default 10000)" in helps and "one thread" in helps
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    export = commands["checkpoint"]._subparsers._group_actions[0].choices["export"]
    for command in (commands["train"], commands["test"], export):
        for action in command._actions:
            if action.option_strings and action.dest != "help":
                assert "default" in action.help, f"{command.prog} {action.option_strings[0]}: {action.help}"


def test_model_path_folder_offers_its_newest_checkpoint(tmp_path: Path) -> None:
    checkpoints = tmp_path / "models" / "demo" / "realtime_data" / "checkpoints"
    checkpoints.mkdir(parents=True)
    for sequence in (1, 2):
        (checkpoints / f"checkpoint_20260101_000000_0000000{sequence}.json").write_text("{}")
    result = rtsave("test", "--model_path", "models/demo", cwd=tmp_path)
    assert result.returncode == 2
    assert ("--model_path models/demo is a folder, not a checkpoint file; its newest checkpoint is "
            f"{Path('models/demo/realtime_data/checkpoints/checkpoint_20260101_000000_00000002.json')}") in result.stderr


def test_torch_threads_default_one_and_progress_stops_at_the_announced_timestep(tmp_path: Path) -> None:
    result = rtsave("train", "--run_name", "bar", "--total_timesteps", "600", "--hyperparams", FAST_PPO,
                    "--checkpoint_frequency", "100000", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    start = line_starting(result.stdout, "rtsave: training ")
    assert "1 torch thread" in start
    assert "so training stops at timestep 768" in start  # 3 rollouts of 128 steps x 2 envs
    counts = [(int(done), int(total)) for done, total in re.findall(r"(\d+)/(\d+) \[", result.stderr)]
    assert counts and all(done <= total == 768 for done, total in counts) and counts[-1] == (768, 768)
    threads = rtsave("train", "--run_name", "threads", "--total_timesteps", "256", "--hyperparams", FAST_PPO,
                     "--torch_threads", "2", "--no_progress", cwd=tmp_path)
    assert "2 torch threads" in line_starting(threads.stdout, "rtsave: training ")
    assert "--torch_threads 2" in line_starting(threads.stdout, "rtsave: resume with: ")


def test_finished_run_resume_line_works_from_anywhere_and_a_moved_run_resumes(tmp_path: Path) -> None:
    first = rtsave("train", "--run_name", "done", "--total_timesteps", "500", "--hyperparams", FAST_PPO,
                   "--no_progress", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    line = line_starting(first.stdout, "rtsave: resume with: ").removeprefix("rtsave: resume with: ")
    assert "--total_timesteps 1012" in line  # 512 reached, as far again as this run went
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    again = subprocess.run(shlex.split(line) + ["--no_progress"], cwd=elsewhere, capture_output=True, text=True,
                           timeout=600, env=child_env())
    assert again.returncode == 0, again.stderr
    assert "from timestep 512 to 1012" in again.stdout
    assert not (elsewhere / "models").exists()  # it continued in the run's own folder

    moved = tmp_path / "moved"
    shutil.move(tmp_path / "models" / "done", moved)
    checkpoint = newest_checkpoint_record(moved / "realtime_data")
    zip_name = Path(checkpoint["model_path"]).name
    resumed = rtsave("train", "--model_path", str(moved / "realtime_data" / "checkpoints" / zip_name),
                     "--total_timesteps", "1600", "--no_progress", cwd=elsewhere)
    assert resumed.returncode == 0, resumed.stderr
    assert f"real-time data in {moved / 'realtime_data'}" in resumed.stdout
    assert newest_checkpoint_record(moved / "realtime_data")["timestep"] == 1792


def test_resume_with_another_num_envs_says_what_was_restored(tmp_path: Path) -> None:
    first = rtsave("train", "--run_name", "envs", "--total_timesteps", "256", "--hyperparams", FAST_PPO,
                   "--no_progress", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    save_dir = tmp_path / "models" / "envs" / "realtime_data"
    zip_path = newest_checkpoint_record(save_dir)["model_path"]
    resumed = rtsave("train", "--model_path", zip_path, "--num_envs", "3", "--total_timesteps", "600",
                     "--no_progress", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "Warning" not in resumed.stderr
    line = line_starting(resumed.stdout, "rtsave: resumed from ")
    assert "restored: model parameters and optimizer states at timestep 256, RNG states; not restored: env states " \
           "(the checkpoint has 2 envs, this run 3: envs start from a reset), episode and success counters" in line
    instructions = newest_checkpoint_record(save_dir)["recovery_info"]["resume_instructions"]
    assert "the states of the 3 envs when resumed with 3 envs" in instructions
    assert "replay buffer" not in instructions  # PPO has none


def test_sac_checkpoint_tests_and_resumes_with_another_num_envs(tmp_path: Path) -> None:
    first = rtsave("train", "--run_name", "sac", "--algo", "sac", "--env", "Pendulum-v1", "--total_timesteps", "300",
                   "--checkpoint_frequency", "150", "--hyperparams", FAST_SAC, "--no_progress", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "no success signal" in line_starting(first.stdout, "rtsave: done.")
    save_dir = tmp_path / "models" / "sac" / "realtime_data"
    json_path = list_snapshot_files(save_dir, "checkpoints")[-1]
    tested = rtsave("test", "--model_path", str(json_path), "--episodes", "1", cwd=tmp_path)
    assert tested.returncode == 0, tested.stderr  # one env: the replay buffer is never loaded for testing
    assert "over 1 episodes, no success signal" in tested.stdout
    resumed = rtsave("train", "--model_path", str(json_path), "--num_envs", "1", "--total_timesteps", "400",
                     "--no_progress", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert ("replay buffer (300 of 300 transitions, regrouped from 2 envs x 500000 slots to 1 x 1000000)"
            in line_starting(resumed.stdout, "rtsave: resumed from "))


def test_saving_failures_during_training_exit_non_zero(tmp_path: Path, mount_tmpfs) -> None:
    tiny = mount_tmpfs("size=32k")  # writable when checked, full once checkpoints arrive
    result = rtsave("train", "--save_dir", str(tiny), "--total_timesteps", "256", "--hyperparams", FAST_PPO,
                    "--no_progress", cwd=tmp_path)
    assert result.returncode == 1
    error = line_starting(result.stderr, "rtsave: error: ")
    assert re.search(r"\d+ snapshot file\(s\) not saved \(\d+ failed, 0 dropped\); first error: .*No space", error)


@pytest.mark.parametrize("key", ["env_name", "env_id"])  # env_id: checkpoints written before env_name
def test_environment_options_come_from_the_checkpoints_env_name(key: str) -> None:
    args = argparse.Namespace(env=None, ctrl_type=None, biped=None, rand_power=None)
    assert environment_options(args, {key: "Pendulum-v1", "env_kwargs": {"g": 9.0}}) == ("Pendulum-v1", {"g": 9.0})


def test_format_jsonl_zst_writes_segments_and_a_resume_keeps_the_runs_format(tmp_path: Path) -> None:
    from rtsave_async import open_run

    first = rtsave("train", "--run_name", "segments", "--total_timesteps", "256", "--hyperparams", FAST_PPO,
                   "--save_frequency", "16", "--format", "jsonl.zst", "--no_progress", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    save_dir = tmp_path / "models" / "segments" / "realtime_data"
    assert [path.name.endswith(".jsonl.zst") for path in (save_dir / "episodes").iterdir()] == [True]
    timesteps = [record["timestep"] for record in open_run(save_dir).records("learning_metrics")]
    assert timesteps == list(range(16, 257, 16))

    zip_path = newest_checkpoint_record(save_dir)["model_path"]
    mismatch = rtsave("train", "--model_path", zip_path, "--total_timesteps", "512", "--format", "json",
                      "--no_progress", cwd=tmp_path)
    assert mismatch.returncode == 2 and "holds a jsonl.zst run" in mismatch.stderr, mismatch.stderr
    resumed = rtsave("train", "--model_path", zip_path, "--total_timesteps", "512", "--no_progress", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert not list(save_dir.rglob("episodes_*.json"))  # the resumed writer kept the run's format
    assert [record["timestep"] for record in open_run(save_dir).records("learning_metrics")][-1] == 512
