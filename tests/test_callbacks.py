"""RealTimeSavingCallback / ComprehensiveSavingCallback under real SB3 training runs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, EvalCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecNormalize

from rtsave_async import names
from rtsave_async.callbacks import ComprehensiveSavingCallback, RealTimeSavingCallback
from rtsave_async.collectors import ReadingsInStepInfo
from rtsave_async.collectors.env_state import INSTALL_STEP_READINGS, WORKER_SIDE_READ
from rtsave_async.readers import load_records
from support.vec_envs import CountingSubprocVecEnv
from support.writers import RecordingWriter

EPISODE_LENGTH = 10
DATA_CATEGORIES = (names.EPISODES, names.ENVIRONMENT_STATES, names.LEARNING_METRICS)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny networks gain nothing from intra-op threads, and on a busy 2-core machine
    two spinning torch threads slow every update down many times over."""
    threads = th.get_num_threads()
    th.set_num_threads(1)
    yield
    th.set_num_threads(threads)


def small_policy() -> dict[str, Any]:
    """Fresh policy_kwargs each time (SB3 adds keys to the dict it is given)."""
    return {"net_arch": [16]}


class ProtocolEnv(gym.Env):
    """Fixed-length episodes where even-numbered episodes succeed; implements the state protocol.

    It deliberately reuses and mutates the objects it hands out (the detailed-info dict,
    its numpy arrays, the reward-component dict in ``info``), like a real env that keeps
    its state in place: anything the callback does not copy changes under it.
    """

    def __init__(self, continuous: bool = False, episode_length: int = EPISODE_LENGTH):
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32) if continuous else gym.spaces.Discrete(2)
        self.episode_length = episode_length
        self.frame_skip = 5
        self.dt = 0.02
        self.rand_power = 0.1
        self.curriculum_progress = 0.25
        self.protocol_calls = {"summary": 0, "detailed": 0, "performance": 0}
        self._episode_index = -1
        self._step_in_episode = 0
        self._joint_positions = np.zeros(4)
        self._detailed = {
            "episode_info": {"current_step": 0, "time_remaining": 0.0},
            "robot_state": {"position": {"x": 0.0, "y": 0.0, "z": 0.3}, "joint_positions": self._joint_positions},
            "foot_contacts": [True, True, True, True],
        }
        self._reward_components = {"alive": 1.0, "parity": 0.0}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._episode_index += 1
        self._step_in_episode = 0
        self._publish_state()
        return np.zeros(3, np.float32), {}

    def _publish_state(self) -> None:
        """Update the detailed-info dict and its array in place."""
        step = self._step_in_episode
        self._detailed["episode_info"]["current_step"] = step
        self._detailed["episode_info"]["time_remaining"] = (self.episode_length - step) * self.dt
        self._detailed["robot_state"]["position"]["x"] = float(step)
        self._joint_positions[:] = step
        self._detailed["foot_contacts"][step % 4] = not self._detailed["foot_contacts"][step % 4]

    def step(self, action):
        self._step_in_episode += 1
        step = self._step_in_episode
        self._publish_state()
        self._reward_components["parity"] = float(step % 2)
        info: dict[str, Any] = {"reward_components": self._reward_components, "cost_components": {"torque": 0.5}}
        truncated = step >= self.episode_length
        if truncated:
            info["is_success"] = self._episode_index % 2 == 0
        return np.full(3, step / self.episode_length, np.float32), 1.0, False, truncated, info

    def get_environment_summary(self) -> dict[str, Any]:
        self.protocol_calls["summary"] += 1
        return {"environment_class": "ProtocolEnv", "ctrl_type": "position", "biped": False,
                "frame_skip": self.frame_skip, "dt": self.dt}

    def get_detailed_episode_info(self) -> dict[str, Any]:
        self.protocol_calls["detailed"] += 1
        return self._detailed

    def get_performance_metrics(self) -> dict[str, float]:
        self.protocol_calls["performance"] += 1
        return {"episode_progress": self._step_in_episode / self.episode_length, "stability_score": 0.9}


def protocol_vec_env(n_envs: int, vec_env_cls: type = DummyVecEnv, continuous: bool = False):
    kwargs = {"start_method": "fork"} if vec_env_cls is SubprocVecEnv else None
    return make_vec_env(ProtocolEnv, n_envs=n_envs, seed=0, vec_env_cls=vec_env_cls,
                        env_kwargs={"continuous": continuous}, vec_env_kwargs=kwargs)


def crossing_timesteps(n_envs: int, total: int, frequency: int) -> list[int]:
    """Timesteps (multiples of n_envs) at which a multiple of ``frequency`` is reached or crossed."""
    return [t for t in range(n_envs, total + 1, n_envs) if t // frequency > (t - n_envs) // frequency]


def timesteps_in(save_dir: Path, category: str) -> list[int]:
    return [records[0]["timestep"] for records in load_records(save_dir, category)]


def check_episode_counts(record: dict, n_envs: int) -> None:
    """Counts the ProtocolEnv must give at the record's timestep (even episodes succeed)."""
    finished = (record["timestep"] // n_envs) // EPISODE_LENGTH
    assert record["episode_count"] == finished
    assert record["success_count"] == (finished + 1) // 2
    expected_rate = (finished + 1) // 2 / finished if finished else None
    assert record["success_rate"] == pytest.approx(expected_rate)


def test_ppo_dummy_vec_env_writes_seed_layout_at_timestep_multiples(tmp_path: Path) -> None:
    n_envs, total, frequency = 3, 384, 50
    env = protocol_vec_env(n_envs)
    callback = RealTimeSavingCallback(tmp_path, save_frequency=frequency, checkpoint_frequency=100,
                                      checkpoint_options={"if_busy": "wait"})
    model = PPO("MlpPolicy", env, n_steps=32, batch_size=48, n_epochs=1, policy_kwargs=small_policy(), seed=0)
    model.learn(total, callback=callback)

    expected = crossing_timesteps(n_envs, total, frequency)
    assert expected[-1] != total  # so the extra save at training end is exercised
    expected_saves = [*expected, total]
    for category in DATA_CATEGORIES:
        assert timesteps_in(tmp_path, category) == expected_saves, category
    assert callback.saved_timesteps == expected_saves
    # Checkpoints wait for a consistent point: rollout starts (every 3 * 32 = 96 timesteps)
    # and training end; the first such point at or after 100, 200 and 300.
    assert callback.checkpoint_saver.submitted_timesteps == [192, 288, 384]
    assert timesteps_in(tmp_path, names.CHECKPOINTS) == [192, 288, 384]

    file_names = [path.name for path in sorted((tmp_path / names.ENVIRONMENT_STATES).iterdir())]
    assert all(name.startswith("env_states_") and name.endswith(".json") for name in file_names)
    assert len(load_records(tmp_path, names.HYPERPARAMETERS)) == 1

    for records in load_records(tmp_path, names.EPISODES):
        assert [record["env_id"] for record in records] == list(range(n_envs))
        for record in records:
            check_episode_counts(record, n_envs)
            detailed = record["detailed_info"]
            assert set(detailed) == {"episode_info", "robot_state", "performance_metrics", "foot_contacts"}
            step = (record["timestep"] // n_envs) % EPISODE_LENGTH
            assert detailed["episode_info"]["current_step"] == step
            assert detailed["robot_state"]["position"]["x"] == step
            assert detailed["robot_state"]["joint_positions"] == [step] * 4
            assert detailed["performance_metrics"] == {"episode_progress": step / EPISODE_LENGTH,
                                                       "stability_score": 0.9}
    all_finished = [episode for records in load_records(tmp_path, names.EPISODES)
                    for episode in records[0]["finished_episodes"]]
    assert len(all_finished) == (total // n_envs) // EPISODE_LENGTH
    assert all(episode["length"] == EPISODE_LENGTH and episode["return"] == EPISODE_LENGTH
               for episode in all_finished)
    assert [episode["is_success"] for episode in all_finished] == [i % 2 == 0 for i in range(len(all_finished))]

    for records in load_records(tmp_path, names.ENVIRONMENT_STATES):
        (record,) = records
        assert record["num_envs"] == n_envs
        assert record["rand_power"] == [0.1] * n_envs
        summary = record["environment_summary"]
        assert summary["environment_class"] == "ProtocolEnv"
        assert (summary["ctrl_type"], summary["biped"], summary["frame_skip"], summary["dt"]) == ("position", False, 5, 0.02)
        assert summary["observation_space"]["shape"] == [3]
        assert summary["action_space"]["n"] == 2

    metrics = [records[0] for records in load_records(tmp_path, names.LEARNING_METRICS)]
    for record in metrics:
        assert record["total_timesteps"] == total
        assert record["training_progress"] == pytest.approx(record["timestep"] / total)
        assert record["curriculum_progress"] == pytest.approx(0.25)
        assert record["memory_usage_mb"] > 10
        assert record["reward_components"]["alive"] == pytest.approx(1.0)
        assert 0.0 <= record["reward_components"]["parity"] <= 1.0
        assert record["cost_components"] == {"torque": pytest.approx(0.5)}
    finished_total = (total // n_envs) // EPISODE_LENGTH * n_envs
    assert metrics[-1]["recent_success_rate_avg"] == pytest.approx(
        ((total // n_envs) // EPISODE_LENGTH + 1) // 2 * n_envs / finished_total)
    # PPO's first update happens after 32 * 3 = 96 timesteps; later saves carry its losses.
    assert "train/value_loss" not in metrics[0]["logger"]
    assert {"train/value_loss", "train/entropy_loss", "train/learning_rate"} <= set(metrics[-1]["logger"])


class SubmitProbe(BaseCallback):
    """After the saving callback in a ``CallbackList``: how many of its saves its writer had been given."""

    def __init__(self, saving: RealTimeSavingCallback):
        super().__init__()
        self.saving = saving
        self.behind_at_steps: list[int] = []  # per step: saves taken but not yet submitted
        self.behind_at_rollout_ends: list[int] = []

    def _behind(self) -> int:
        submitted_saves = (self.saving.writer.stats()["submitted"] - 1) // len(DATA_CATEGORIES)  # 1 hyperparameters
        return len(self.saving.saved_timesteps) - submitted_saves

    def _on_step(self) -> bool:
        self.behind_at_steps.append(self._behind())
        return True

    def _on_rollout_end(self) -> None:
        self.behind_at_rollout_ends.append(self._behind())


def test_saving_every_step_holds_saves_back_for_batches_and_none_past_a_rollout(tmp_path: Path) -> None:
    n_envs, total = 2, 256
    callback = RealTimeSavingCallback(tmp_path, save_frequency=1, save_checkpoints=False,
                                      writer_options={"format": "jsonl.zst"})
    probe = SubmitProbe(callback)
    model = PPO("MlpPolicy", protocol_vec_env(n_envs), n_steps=32, batch_size=64, n_epochs=1,
                policy_kwargs=small_policy(), seed=0)
    model.learn(total, callback=CallbackList([callback, probe]))
    assert max(probe.behind_at_steps) > 1  # saves were held: several steps apart from their submit
    assert probe.behind_at_rollout_ends == [0] * (total // (32 * n_envs))
    expected = list(range(n_envs, total + 1, n_envs))
    assert callback.saved_timesteps == expected
    for category in DATA_CATEGORIES:
        assert timesteps_in(tmp_path, category) == expected, category


def test_protocol_is_called_once_per_save_not_per_step(tmp_path: Path) -> None:
    env = protocol_vec_env(2)
    callback = RealTimeSavingCallback(tmp_path, save_frequency=40, save_on_training_end=False)
    PPO("MlpPolicy", env, n_steps=40, batch_size=40, n_epochs=1, policy_kwargs=small_policy()).learn(160, callback=callback)

    saves = len(callback.saved_timesteps)
    assert saves == 4
    for inner_env in env.envs:
        calls = inner_env.unwrapped.protocol_calls
        assert calls["detailed"] == calls["performance"] == saves
    # environment summary: env 0 only, once per save plus once for the hyperparameters
    assert env.envs[0].unwrapped.protocol_calls["summary"] == saves + 1
    assert env.envs[1].unwrapped.protocol_calls["summary"] == 0


def test_sac_subproc_vec_env_with_protocol(tmp_path: Path) -> None:
    n_envs, total = 2, 200
    env = protocol_vec_env(n_envs, SubprocVecEnv, continuous=True)
    try:
        callback = RealTimeSavingCallback(tmp_path, save_frequency=60)
        model = SAC("MlpPolicy", env, learning_starts=50, batch_size=32, policy_kwargs=small_policy(), seed=0)
        model.learn(total, callback=callback)
    finally:
        env.close()

    assert timesteps_in(tmp_path, names.EPISODES) == [*crossing_timesteps(n_envs, total, 60), total]
    for records in load_records(tmp_path, names.EPISODES):
        for record in records:
            check_episode_counts(record, n_envs)
            assert record["detailed_info"]["robot_state"]["position"]["x"] == (record["timestep"] // n_envs) % EPISODE_LENGTH
    summary = load_records(tmp_path, names.ENVIRONMENT_STATES)[-1][0]["environment_summary"]
    assert summary["vec_env_class"] == "SubprocVecEnv"
    assert summary["environment_class"] == "ProtocolEnv"
    (hyperparameters,) = load_records(tmp_path, names.HYPERPARAMETERS)[0]
    assert hyperparameters["model_type"] == "SAC"
    assert hyperparameters["algorithm_hyperparameters"]["learning_starts"] == 50
    assert hyperparameters["algorithm_hyperparameters"]["train_freq"] == {"frequency": 1, "unit": "step"}
    assert "train/actor_loss" in load_records(tmp_path, names.LEARNING_METRICS)[-1][0]["logger"]


@pytest.mark.parametrize("save_frequency", [1, 6])
def test_a_subproc_run_reading_in_the_env_steps_saves_without_a_round_trip(tmp_path: Path, save_frequency: int) -> None:
    n_envs, total = 2, 128
    env = make_vec_env(ProtocolEnv, n_envs=n_envs, seed=0, vec_env_cls=CountingSubprocVecEnv,
                       wrapper_class=ReadingsInStepInfo, vec_env_kwargs={"start_method": "fork"})
    try:
        callback = RealTimeSavingCallback(tmp_path, save_frequency=save_frequency, save_checkpoints=False)
        PPO("MlpPolicy", env, n_steps=32, batch_size=32, n_epochs=1, policy_kwargs=small_policy(), seed=0).learn(
            total, callback=callback)
        called = env.env_methods_called
    finally:
        env.close()

    saves = load_records(tmp_path, names.EPISODES)
    due = crossing_timesteps(n_envs, total, save_frequency)
    final = [] if due[-1] == total else [total]  # saved at training end, after a step no save followed
    assert [records[0]["timestep"] for records in saves] == due + final
    assert called.count(INSTALL_STEP_READINGS) == n_envs + 1  # started on each env, stopped at the end
    # The static summary's probes, the hyperparameters' summary and the final save's read: no other save.
    assert called.count(WORKER_SIDE_READ) <= 3 + len(final)
    for records in saves:
        steps = records[0]["timestep"] // n_envs
        for record in records:  # read before the automatic reset: an episode's last step shows its last state
            assert record["detailed_info"]["robot_state"]["position"]["x"] == (steps - 1) % EPISODE_LENGTH + 1


@pytest.mark.parametrize("vec_env_cls", [DummyVecEnv, SubprocVecEnv])
def test_plain_gymnasium_env_gives_nulls_not_errors(tmp_path: Path, vec_env_cls: type) -> None:
    n_envs, total = 2, 256
    kwargs = {"start_method": "fork"} if vec_env_cls is SubprocVecEnv else None
    env = make_vec_env("CartPole-v1", n_envs=n_envs, seed=0, vec_env_cls=vec_env_cls, vec_env_kwargs=kwargs)
    try:
        callback = RealTimeSavingCallback(tmp_path, save_frequency=64)
        PPO("MlpPolicy", env, n_steps=64, batch_size=64, n_epochs=1, policy_kwargs=small_policy()).learn(total, callback=callback)
    finally:
        env.close()

    episodes = load_records(tmp_path, names.EPISODES)
    assert [records[0]["timestep"] for records in episodes] == crossing_timesteps(n_envs, total, 64)
    last = episodes[-1]
    for record in last:
        assert record["success_count"] == 0 and record["success_rate"] is None  # CartPole has no is_success
        detailed = record["detailed_info"]
        assert detailed["robot_state"] is None and detailed["foot_contacts"] is None
        assert detailed["performance_metrics"]["stability_score"] is None
        assert 0 <= detailed["episode_info"]["current_step"] < 500
    finished = [episode for records in episodes for record in records for episode in record["finished_episodes"]]
    assert len(finished) == sum(record["episode_count"] for record in last) > 0
    assert all(episode["return"] == episode["length"] for episode in finished)  # CartPole: reward 1 per step
    state = load_records(tmp_path, names.ENVIRONMENT_STATES)[-1][0]
    assert state["rand_power"] is None
    summary = state["environment_summary"]
    assert summary["environment_class"] == "CartPoleEnv"
    assert summary["ctrl_type"] is None and summary["max_episode_steps"] == 500
    metrics = load_records(tmp_path, names.LEARNING_METRICS)[-1][0]
    assert metrics["curriculum_progress"] is None and metrics["recent_success_rate_avg"] is None
    assert metrics["reward_components"] is None and metrics["cost_components"] is None


def test_vec_normalize_wrapper_passes_protocol_through(tmp_path: Path) -> None:
    env = VecNormalize(protocol_vec_env(2))
    callback = RealTimeSavingCallback(tmp_path, save_frequency=40)
    PPO("MlpPolicy", env, n_steps=40, batch_size=40, n_epochs=1, policy_kwargs=small_policy()).learn(80, callback=callback)

    state = load_records(tmp_path, names.ENVIRONMENT_STATES)[-1][0]
    assert state["rand_power"] == [0.1, 0.1]
    assert state["environment_summary"]["vec_env_class"] == "VecNormalize"
    assert state["environment_summary"]["ctrl_type"] == "position"
    assert load_records(tmp_path, names.EPISODES)[-1][0]["detailed_info"]["performance_metrics"]["stability_score"] == 0.9


def evaluations_after_training(log_dir: Path, extra_callbacks: list) -> dict[str, np.ndarray]:
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    eval_env = make_vec_env("CartPole-v1", n_envs=1, seed=1)
    evaluation = EvalCallback(eval_env, eval_freq=64, n_eval_episodes=2, log_path=str(log_dir), verbose=0)
    model = PPO("MlpPolicy", env, n_steps=64, batch_size=64, n_epochs=2, policy_kwargs=small_policy(), seed=0)
    model.learn(384, callback=CallbackList([evaluation, *extra_callbacks]))
    with np.load(log_dir / "evaluations.npz") as evaluations:
        return {key: evaluations[key] for key in evaluations.files}


def test_inside_callback_list_eval_callback_results_are_unchanged(tmp_path: Path) -> None:
    alone = evaluations_after_training(tmp_path / "alone", [])
    saving = RealTimeSavingCallback(tmp_path / "data", save_frequency=100)
    together = evaluations_after_training(tmp_path / "together", [saving])

    assert list(alone["timesteps"]) == [128, 256, 384]
    for key in alone:
        np.testing.assert_array_equal(alone[key], together[key])
    assert timesteps_in(tmp_path / "data", names.EPISODES) == [100, 200, 300, 384]


def test_records_are_never_mutated_after_submit(tmp_path: Path) -> None:
    writer = RecordingWriter(tmp_path)
    callback = RealTimeSavingCallback(tmp_path, save_frequency=8, writer=writer, save_checkpoints=False)
    model = PPO("MlpPolicy", protocol_vec_env(2), n_steps=32, batch_size=32, n_epochs=1, policy_kwargs=small_policy())
    model.learn(128, callback=callback)

    assert len(writer.payloads(names.EPISODES)) == 16
    for category, records, snapshot_at_submit in writer.submitted:
        assert records == snapshot_at_submit, category
    # the env did move on: its live state differs from what the first save recorded
    first_detailed = writer.payloads(names.EPISODES)[0][0]["detailed_info"]
    assert first_detailed["robot_state"]["position"]["x"] == 4
    assert writer.flushes == [writer.exit_timeout]  # a borrowed writer is flushed (bounded), not closed


def test_success_counting_from_is_success(tmp_path: Path) -> None:
    writer = RecordingWriter(tmp_path)
    callback = RealTimeSavingCallback(tmp_path, save_frequency=100, writer=writer, success_window=4,
                                      save_checkpoints=False)
    PPO("MlpPolicy", protocol_vec_env(1), n_steps=50, batch_size=50, n_epochs=1, policy_kwargs=small_policy()).learn(
        300, callback=callback)

    counts = [(records[0]["episode_count"], records[0]["success_count"])
              for records in writer.payloads(names.EPISODES)]
    assert counts == [(10, 5), (20, 10), (30, 15)]
    finished = writer.payloads(names.EPISODES)[0][0]["finished_episodes"]
    assert [episode["is_success"] for episode in finished] == [True, False] * 5
    # last 4 episodes: numbers 26..29 -> True, False, True, False
    assert writer.payloads(names.LEARNING_METRICS)[-1][0]["recent_success_rate_avg"] == 0.5


def test_comprehensive_callback_switches_everything_on(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    callback = ComprehensiveSavingCallback(tmp_path, save_frequency=64, checkpoint_frequency=128,
                                           total_timesteps=1000, checkpoint_options={"if_busy": "wait"})
    assert all([callback.save_episode_data, callback.save_environment_state, callback.save_learning_metrics,
                callback.save_hyperparameters, callback.save_checkpoints])
    model = PPO("MlpPolicy", protocol_vec_env(2), n_steps=32, batch_size=64, n_epochs=1, policy_kwargs=small_policy())
    model.learn(256, callback=callback)

    output = capsys.readouterr().out
    # 4 saves x 3 categories + hyperparameters + checkpoints at 128 and 256
    assert "15 snapshot file(s) written, 0 dropped" in output and str(tmp_path) in output
    metrics = load_records(tmp_path, names.LEARNING_METRICS)[-1][0]
    # learn()'s own target wins over the option (which is for callbacks driven without learn())
    assert metrics["total_timesteps"] == 256 and metrics["training_progress"] == 1.0
    assert (tmp_path / "writer_stats.json").exists()
    assert callback.writer is None  # its own writer is closed at training end


def test_disabled_categories_are_not_written(tmp_path: Path) -> None:
    callback = RealTimeSavingCallback(tmp_path, save_frequency=32, save_episode_data=False,
                                      save_hyperparameters=False, save_learning_metrics=False)
    PPO("MlpPolicy", protocol_vec_env(2), n_steps=32, batch_size=64, n_epochs=1, policy_kwargs=small_policy()).learn(
        64, callback=callback)

    assert not (tmp_path / names.EPISODES).exists()
    assert not (tmp_path / names.HYPERPARAMETERS).exists()
    assert not (tmp_path / names.LEARNING_METRICS).exists()
    assert timesteps_in(tmp_path, names.ENVIRONMENT_STATES) == [32, 64]


def test_second_learn_call_continues_at_multiples_with_a_fresh_writer(tmp_path: Path) -> None:
    callback = RealTimeSavingCallback(tmp_path, save_frequency=50, save_on_training_end=False)
    model = PPO("MlpPolicy", protocol_vec_env(2), n_steps=32, batch_size=64, n_epochs=1, policy_kwargs=small_policy())
    model.learn(64, callback=callback)
    model.learn(128, callback=callback, reset_num_timesteps=False)

    assert model.num_timesteps == 192
    assert timesteps_in(tmp_path, names.EPISODES) == [50, 100, 150]
    hyperparameters = [records[0] for records in load_records(tmp_path, names.HYPERPARAMETERS)]
    assert [record["timestep"] for record in hyperparameters] == [0, 64]
    assert hyperparameters[0]["command_line"] == sys.argv


def test_invalid_arguments_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="frequency"):
        RealTimeSavingCallback(tmp_path, save_frequency=0)
    with pytest.raises(ValueError, match="differs"):
        RealTimeSavingCallback(tmp_path / "a", writer=RecordingWriter(tmp_path / "b"))


def test_go1_env_fills_every_field(tmp_path: Path) -> None:
    envs = pytest.importorskip("rtsave_async.envs")
    env = make_vec_env(envs.GO1_ENV_ID, n_envs=2, seed=0)
    callback = RealTimeSavingCallback(tmp_path, save_frequency=64)
    PPO("MlpPolicy", env, n_steps=32, batch_size=64, n_epochs=1, policy_kwargs=small_policy()).learn(128, callback=callback)

    assert timesteps_in(tmp_path, names.EPISODES) == [64, 128]
    for record in load_records(tmp_path, names.EPISODES)[-1]:
        detailed = record["detailed_info"]
        robot = detailed["robot_state"]
        assert set(robot["position"]) == {"x", "y", "z"}
        assert len(robot["velocity"]["linear"]) == len(robot["velocity"]["angular"]) == 3
        assert len(robot["joint_positions"]) == len(robot["joint_velocities"]) == 12
        assert len(detailed["foot_contacts"]) == 4
        assert detailed["episode_info"]["current_step"] >= 0
        assert 0.0 <= detailed["performance_metrics"]["stability_score"] <= 1.0
    state = load_records(tmp_path, names.ENVIRONMENT_STATES)[-1][0]
    summary = state["environment_summary"]
    assert summary["environment_class"] == "Go1MujocoEnv"
    # The env's own step limit (15 s / 0.02 s), and the physics step under a name that is not the record's timestep.
    assert summary["max_episode_steps"] == 750 and summary["physics_timestep_s"] == 0.002 and "timestep" not in summary
    assert len(state["rand_power"]) == 2
    metrics = load_records(tmp_path, names.LEARNING_METRICS)[-1][0]
    assert metrics["reward_components"] and metrics["cost_components"]
    assert metrics["curriculum_progress"] is not None
