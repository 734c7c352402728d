"""The callbacks as our users and SB3 tooling use them: their scripts, their env, rl_zoo3."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import CallbackList, EvalCallback
from stable_baselines3.common.env_util import make_vec_env
from user_envs import DETAILED_INFO_KEYS, OwnNamesEnv, UserTrainerEnv

from rtsave_async import names
from rtsave_async.callbacks import ComprehensiveSavingCallback, RealTimeSavingCallback
from rtsave_async.checkpoints import load_checkpoint
from rtsave_async.readers import iter_records, list_snapshot_files, load_records


@pytest.fixture(autouse=True)
def one_torch_thread():
    threads = th.get_num_threads()
    th.set_num_threads(1)
    yield
    th.set_num_threads(threads)


def tiny_ppo(env, **kwargs) -> PPO:
    return PPO("MlpPolicy", env, n_steps=32, batch_size=64, n_epochs=1, policy_kwargs={"net_arch": [8]}, **kwargs)


def timesteps_in(save_dir: Path, category: str) -> list[int]:
    return [records[0]["timestep"] for records in load_records(save_dir, category)]


# ---------------------------------------------------------------- item 1: hooks called again, before/after learn()
def test_hooks_are_safe_before_after_and_twice_and_a_second_learn_continues(tmp_path: Path) -> None:
    callback = RealTimeSavingCallback(tmp_path, save_frequency=64, checkpoint_frequency=10_000)
    assert callback._on_step() is True  # before any learn(): nothing to do, no error
    callback.on_training_end()
    model = tiny_ppo(make_vec_env("CartPole-v1", n_envs=2, seed=0))
    model.learn(128, callback=callback)
    stats = callback.writer_stats
    callback.on_training_end()  # what rl_zoo3 does after learn(); used to hit `assert self.writer is not None`
    callback._on_rollout_start()
    assert callback._on_step() is True
    assert callback.writer_stats is stats and callback.writer is None
    with pytest.raises(RuntimeError, match="needs a running training"):
        callback.save_snapshot()
    episodes_after_first = sum(callback.episode_counts())

    model.learn(128, callback=callback, reset_num_timesteps=False)  # a fresh writer; counters continue
    assert callback.writer_stats["written"] > 0 and callback.writer_stats["failed"] == 0
    assert sum(callback.episode_counts()) > episodes_after_first
    assert timesteps_in(tmp_path, names.EPISODES) == [64, 128, 192, 256]
    # The records count on from the first learn(), not from zero.
    assert sum(record["episode_count"] for record in load_records(tmp_path, names.EPISODES)[-1]) \
        == sum(callback.episode_counts())


# ---------------------------------------------------------------- item 2: the users' own test script
def test_users_hand_driven_script_runs_and_saves_what_it_can(tmp_path: Path, capsys) -> None:
    save_dir = tmp_path / "test_realtime"
    with pytest.warns(UserWarning, match="no model is attached") as caught:
        cb = RealTimeSavingCallback(save_dir=str(save_dir), save_frequency=10, checkpoint_frequency=50, verbose=1)
        cb._on_training_start()
        for step in range(100):
            cb.num_timesteps = step
            cb._on_step()
        cb.on_training_end()
    assert len([w for w in caught if "no model is attached" in str(w.message)]) == 1
    assert "30 snapshot file(s) written, 0 dropped, 0 failed" in capsys.readouterr().out
    expected = [10, 20, 30, 40, 50, 60, 70, 80, 90, 99]  # every multiple, and the last step at the end
    for category in (names.EPISODES, names.ENVIRONMENT_STATES, names.LEARNING_METRICS):
        assert timesteps_in(save_dir, category) == expected
    assert not (save_dir / "hyperparameters").exists() and not (save_dir / "checkpoints").exists()
    metrics = load_records(save_dir, names.LEARNING_METRICS)[-1][0]
    assert metrics["total_timesteps"] is None and metrics["training_progress"] is None


def test_hand_driven_with_locals_counts_episodes_and_uses_total_timesteps(tmp_path: Path) -> None:
    cb = RealTimeSavingCallback(tmp_path, save_frequency=10, total_timesteps=40, save_checkpoints=False,
                                save_hyperparameters=False)
    cb._on_training_start()
    for step in range(1, 41):
        cb.num_timesteps = step
        cb.locals = {"dones": [step % 5 == 0], "infos": [{"is_success": True} if step % 5 == 0 else {}]}
        cb._on_step()
    cb.on_training_end()
    (last,) = load_records(tmp_path, names.EPISODES)[-1]
    assert (last["episode_count"], last["success_count"], last["success_rate"]) == (8, 8, 1.0)
    assert load_records(tmp_path, names.LEARNING_METRICS)[-1][0]["training_progress"] == 1.0


# ---------------------------------------------------------------- item 3: file shapes our users read
def test_checkpoint_and_hyperparameter_files_are_one_object_each(tmp_path: Path) -> None:
    callback = ComprehensiveSavingCallback(tmp_path, save_frequency=64, checkpoint_frequency=64, verbose=0)
    tiny_ppo(make_vec_env("CartPole-v1", n_envs=2, seed=0)).learn(128, callback=callback)

    with open(list_snapshot_files(tmp_path, names.CHECKPOINTS)[-1]) as f:  # their README's lines
        checkpoint = json.load(f)
    assert checkpoint["timestep"] == 128 and checkpoint["recovery_info"]["can_resume"] is True
    with open(list_snapshot_files(tmp_path, names.HYPERPARAMETERS)[0]) as f:  # their test's line
        data = json.load(f)
    assert data.get("model_type") == "PPO"
    for category in (names.EPISODES, names.ENVIRONMENT_STATES, names.LEARNING_METRICS):
        assert isinstance(json.loads(list_snapshot_files(tmp_path, category)[0].read_bytes()), list)
    assert [record["timestep"] for record in iter_records(tmp_path, names.CHECKPOINTS)] == [64, 128]
    assert load_records(tmp_path, names.HYPERPARAMETERS)[0][0]["model_type"] == "PPO"


def test_files_of_earlier_runs_in_one_element_arrays_still_read(tmp_path: Path) -> None:
    callback = ComprehensiveSavingCallback(tmp_path, save_frequency=1000, checkpoint_frequency=64, verbose=0)
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    tiny_ppo(env).learn(64, callback=callback)
    for category in (names.CHECKPOINTS, names.HYPERPARAMETERS):
        for path in list_snapshot_files(tmp_path, category):
            path.write_bytes(json.dumps([json.loads(path.read_bytes())]).encode())  # the old shape
    json_path = list_snapshot_files(tmp_path, names.CHECKPOINTS)[-1]
    assert load_checkpoint(json_path, env).model.num_timesteps == 64
    assert [record["timestep"] for record in iter_records(tmp_path, names.CHECKPOINTS)] == [64]
    assert load_records(tmp_path, names.HYPERPARAMETERS)[0][0]["model_type"] == "PPO"


# ---------------------------------------------------------------- item 4: signatures
def test_category_switches_pass_through_comprehensive_kwargs(tmp_path: Path) -> None:
    callback = ComprehensiveSavingCallback(tmp_path, save_episode_data=False, save_checkpoints=False, verbose=0)
    assert not callback.save_episode_data and callback.checkpoint_saver is None
    assert callback.save_environment_state and callback.save_hyperparameters
    tiny_ppo(make_vec_env("CartPole-v1", n_envs=1, seed=0)).learn(64, callback=callback)
    assert not (tmp_path / "episodes").exists() and not (tmp_path / "checkpoints").exists()
    assert (tmp_path / "environment_states").is_dir()
    with pytest.raises(TypeError, match="save_episodes"):
        ComprehensiveSavingCallback(tmp_path, save_episodes=False)


def test_positional_order_matches_the_users_original(tmp_path: Path) -> None:
    callback = RealTimeSavingCallback(tmp_path, 10, False, True, False, True, 50, 1000, 2)
    assert (callback.save_frequency, callback.save_episode_data, callback.save_environment_state,
            callback.save_hyperparameters, callback.save_checkpoints, callback.checkpoint_frequency,
            callback.total_timesteps, callback.verbose) == (10, False, True, False, True, 50, 1000, 2)
    callback = ComprehensiveSavingCallback(tmp_path, 10, 50, 2)
    assert (callback.save_frequency, callback.checkpoint_frequency, callback.verbose) == (10, 50, 2)


# ---------------------------------------------------------------- item 5: the users' env names
def test_users_env_names_fill_every_field_and_every_key_is_kept(tmp_path: Path) -> None:
    env = make_vec_env(UserTrainerEnv, n_envs=2, seed=0)
    callback = RealTimeSavingCallback(tmp_path, save_frequency=64, save_checkpoints=False)
    tiny_ppo(env).learn(128, callback=callback)

    for record in load_records(tmp_path, names.EPISODES)[-1]:
        assert record["episode_count"] == 8 and record["success_count"] == 4 and record["success_rate"] == 0.5
        detailed = record["detailed_info"]
        assert set(DETAILED_INFO_KEYS) <= set(detailed)  # the env's own keys, none dropped
        assert detailed["stability_metrics"] == {"roll": 0.0, "pitch": 0.01}
        # The env's detailed info has no episode_info: filled from our own counters.
        assert detailed["episode_info"]["current_step"] == 0
        assert detailed["episode_info"]["time_remaining"] is None  # no step limit known
    state = load_records(tmp_path, names.ENVIRONMENT_STATES)[-1][0]
    assert state["rand_power"] == [0.4, 0.4]
    assert state["environment_summary"]["ctrl_type"] is None
    metrics = load_records(tmp_path, names.LEARNING_METRICS)[-1][0]
    assert metrics["recent_success_rate_avg"] == 0.5
    assert metrics["curriculum_progress"] == pytest.approx(0.8)
    assert metrics["reward_components"] == {"tracking": 1.0, "air_time": pytest.approx(0.125)}
    assert metrics["cost_components"] == {"torque": 0.5}
    assert callback.success_signal_seen


def test_env_reported_success_count_and_rate_without_a_success_key(tmp_path: Path) -> None:
    env = make_vec_env(UserTrainerEnv, n_envs=1, seed=0, env_kwargs={"reports_bipedal_success": False})
    callback = RealTimeSavingCallback(tmp_path, save_frequency=64, save_checkpoints=False)
    tiny_ppo(env).learn(64, callback=callback)
    (record,) = load_records(tmp_path, names.EPISODES)[-1]
    # 8 episodes, 4 successes (_success_count); the reset info after the 8th says 4/8.
    assert (record["episode_count"], record["success_count"], record["success_rate"]) == (8, 4, 0.5)
    assert load_records(tmp_path, names.LEARNING_METRICS)[-1][0]["recent_success_rate_avg"] == 0.5


def test_contact_info_of_the_step_info_fills_foot_contacts_without_detailed_info(tmp_path: Path) -> None:
    cb = RealTimeSavingCallback(tmp_path, save_frequency=1, save_checkpoints=False, save_hyperparameters=False)
    cb._on_training_start()
    cb.num_timesteps = 1
    cb.locals = {"dones": np.array([False]), "infos": [{"contact_info": {"FR": True, "FL": False}}]}
    cb._on_step()
    cb.on_training_end()
    (record,) = load_records(tmp_path, names.EPISODES)[0]
    assert record["detailed_info"]["foot_contacts"] == {"FR": True, "FL": False}


def test_env_attributes_map_the_users_own_names(tmp_path: Path) -> None:
    env = make_vec_env(OwnNamesEnv, n_envs=2, seed=0)
    callback = RealTimeSavingCallback(tmp_path, save_frequency=64, save_checkpoints=False,
                                      env_attributes={"rand_power": "noise_level"})
    tiny_ppo(env).learn(64, callback=callback)
    assert load_records(tmp_path, names.ENVIRONMENT_STATES)[-1][0]["rand_power"] == [0.7, 0.7]
    with pytest.raises(ValueError, match="env_attributes: unknown field 'randpower'"):
        RealTimeSavingCallback(tmp_path, env_attributes={"randpower": "noise_level"})


# ---------------------------------------------------------------- item 7: training_progress within [0, 1]
def test_progress_follows_learns_target_when_resuming_with_steps_to_add(tmp_path: Path) -> None:
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    model = tiny_ppo(env)
    model.learn(128)
    # Their trainer resumes with --total_timesteps meaning "steps to add": 128 here, below the start.
    callback = RealTimeSavingCallback(tmp_path, save_frequency=64, save_checkpoints=False, total_timesteps=128)
    with pytest.warns(UserWarning, match=r"total_timesteps \(128\) is not above the starting timestep \(128\)"):
        model.learn(128, callback=callback, reset_num_timesteps=False)
    metrics = [records[0] for records in load_records(tmp_path, names.LEARNING_METRICS)]
    assert [m["total_timesteps"] for m in metrics] == [256, 256]
    assert [m["training_progress"] for m in metrics] == [0.75, 1.0]


# ---------------------------------------------------------------- item 8: values dumped at once by other callbacks
def test_eval_callback_values_reach_learning_metrics(tmp_path: Path) -> None:
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    saving = RealTimeSavingCallback(tmp_path, save_frequency=64, save_checkpoints=False)
    evaluation = EvalCallback(make_vec_env("CartPole-v1", n_envs=1, seed=1), eval_freq=16, n_eval_episodes=1,
                              verbose=0)
    model = tiny_ppo(env)
    model.learn(128, callback=CallbackList([evaluation, saving]))  # at 128: evaluated and dumped, then saved
    last = load_records(tmp_path, names.LEARNING_METRICS)[-1][0]
    assert last["timestep"] == 128 and last["logger"]["eval/mean_reward"] == evaluation.last_mean_reward
    assert "eval/mean_ep_length" in last["logger"]
    assert saving._logger_capture is None and not any(
        type(output).__name__ == "LoggerValueCapture" for output in model.logger.output_formats)


# ---------------------------------------------------------------- issue 13 item 9: fields that were null or misleading
def test_success_signal_is_reported_absent_for_envs_without_one(tmp_path: Path) -> None:
    callback = RealTimeSavingCallback(tmp_path, save_frequency=64, save_checkpoints=False)
    tiny_ppo(make_vec_env("CartPole-v1", n_envs=2, seed=0)).learn(128, callback=callback)
    assert sum(callback.episode_counts()) > 0 and not callback.success_signal_seen
    (record, _) = load_records(tmp_path, names.EPISODES)[-1]
    assert record["success_rate"] is None and record["success_count"] == 0


def test_logger_values_carry_over_a_resume(tmp_path: Path) -> None:
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    first = RealTimeSavingCallback(tmp_path / "a", save_frequency=1000, checkpoint_frequency=128)
    tiny_ppo(env).learn(128, callback=first)
    resumed = load_checkpoint(list_snapshot_files(tmp_path / "a", names.CHECKPOINTS)[-1], env)
    second = RealTimeSavingCallback(tmp_path / "b", save_frequency=16, save_checkpoints=False)
    second.restore_state(resumed.callback_state)
    resumed.model.learn(64, callback=second, reset_num_timesteps=False)
    earliest = load_records(tmp_path / "b", names.LEARNING_METRICS)[0][0]
    assert earliest["timestep"] == 144  # within the first rollout: nothing dumped yet in this run
    assert "train/value_loss" in earliest["logger"] and "time/fps" in earliest["logger"]


# ---------------------------------------------------------------- rl-baselines3-zoo through its real command line
ZOO_HYPERPARAMETERS = """\
CartPole-v1:
  n_timesteps: 2048
  policy: 'MlpPolicy'
  n_envs: 2
  n_steps: 256
  batch_size: 128
  n_epochs: 1
  learning_rate: lin_0.001
  normalize: {normalize}
  policy_kwargs: "dict(net_arch=[16])"
  callback:
    - rtsave_async.ComprehensiveSavingCallback:
        save_dir: {save_dir}
        save_frequency: 500
        checkpoint_frequency: 1000
"""


def monitor_returns(path: Path) -> list[float]:
    with open(path) as f:
        next(f)  # the JSON header line
        return [float(row["r"]) for row in csv.DictReader(f)]


@pytest.mark.parametrize("normalize", [False, True], ids=["plain", "VecNormalize"])
def test_rl_zoo3_train_with_our_callback_in_its_hyperparameters(tmp_path: Path, normalize: bool) -> None:
    save_dir, log_dir = tmp_path / "realtime_data", tmp_path / "logs"
    config = tmp_path / "ppo.yml"
    config.write_text(ZOO_HYPERPARAMETERS.format(save_dir=save_dir, normalize=str(normalize).lower()))
    completed = subprocess.run(
        [sys.executable, "-m", "rl_zoo3.train", "--algo", "ppo", "--env", "CartPole-v1", "-n", "2048",
         "-conf", str(config), "-f", str(log_dir), "--seed", "0", "--eval-freq", "-1", "--num-threads", "1"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    run = log_dir / "ppo" / "CartPole-v1_1"
    assert (run / "CartPole-v1.zip").is_file()
    assert (run / "CartPole-v1" / "vecnormalize.pkl").is_file() == normalize

    episodes = load_records(save_dir, names.EPISODES)
    for env_id in (0, 1):
        ours = [episode["return"] for records in episodes for episode in records[env_id]["finished_episodes"]]
        # Every episode Monitor wrote (its CSV rounds to 6 digits), in order: the final save is at the last step.
        assert len(ours) >= 20 and ours == pytest.approx(monitor_returns(run / f"{env_id}.monitor.csv"))
    assert timesteps_in(save_dir, names.EPISODES)[-1] == 2048
    (hyperparameters,) = load_records(save_dir, names.HYPERPARAMETERS)[0]
    assert hyperparameters["algorithm_hyperparameters"]["learning_rate"] == {
        "schedule": "SimpleLinearSchedule(initial_value=0.001)", "value_at_start": 0.001, "value_at_end": 0.0}
    checkpoint = json.loads(list_snapshot_files(save_dir, names.CHECKPOINTS)[-1].read_bytes())
    assert checkpoint["timestep"] == 2048 and checkpoint["contents"]["vec_normalize"] is normalize
