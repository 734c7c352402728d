"""Collectors in isolation: bookkeeping, copying and config conversion, no training."""

from __future__ import annotations

import enum
import subprocess
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3 import SAC
from stable_baselines3.common.env_util import make_vec_env
from rl_zoo3.utils import linear_schedule
from stable_baselines3.common.utils import FloatSchedule, LinearSchedule
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

import rtsave_async
from rtsave_async.envs import GO1_ENV_ID, Go1MujocoEnv
from user_envs import UserTrainerEnv
from support.vec_envs import CountingSubprocVecEnv
from rtsave_async.callbacks.realtime import TimestepTrigger
from rtsave_async.collectors import (
    ComponentAverager,
    EnvStateReader,
    EpisodeTracker,
    LearningMetricsTracker,
    ReadingsInStepInfo,
    collect_hyperparameters,
    describe_space,
    plain_copy,
)
from rtsave_async.collectors.env_state import (
    ENVIRONMENT_READINGS,
    EPISODE_READINGS,
    LEARNING_READINGS,
    STEP_READINGS_KEY,
    EnvReadings,
    SaveSteps,
    attribute_owner,
)
from rtsave_async.collectors.hyperparameters import config_value, git_revision, with_git_revision


def step_with(tracker: EpisodeTracker, done_envs: list[int], infos: dict[int, dict]) -> None:
    dones = np.zeros(tracker.num_envs, bool)
    dones[done_envs] = True
    tracker.record_step(dones, [infos.get(env_id, {}) for env_id in range(tracker.num_envs)])


def test_a_success_signal_without_a_truth_value_counts_the_episode_without_one() -> None:
    tracker = EpisodeTracker(num_envs=1)
    with pytest.warns(UserWarning, match="no truth value"):
        step_with(tracker, [0], {0: {"is_success": np.array([True, False])}})
    step_with(tracker, [0], {0: {"is_success": np.array([True, False])}})
    assert tracker.episode_counts == [2] and tracker.success_rate(0) is None
    assert tracker.problems.counts == {"success signal not a truth value": 2}


def test_episode_tracker_counts_per_env_and_resets_finished_list_per_save() -> None:
    tracker = EpisodeTracker(num_envs=2, success_window=3)
    step_with(tracker, [], {})
    step_with(tracker, [0], {0: {"episode": {"r": 2.5, "l": 2, "t": 0.1}, "is_success": np.True_}})
    step_with(tracker, [0, 1], {0: {"is_success": False}, 1: {"episode": {"r": np.float32(3.0), "l": 3}}})
    step_with(tracker, [], {})

    records = tracker.take_records(timestep=8, max_episode_steps=10, dt=0.5)
    assert [(r["env_id"], r["episode_count"], r["success_count"], r["success_rate"]) for r in records] == [
        (0, 2, 1, 0.5),
        (1, 1, 0, None),  # env 1 never reported is_success
    ]
    assert records[0]["finished_episodes"] == [
        {"return": 2.5, "length": 2, "is_success": True},
        {"return": None, "length": 1, "is_success": False},  # no Monitor info: length counted by the tracker
    ]
    assert records[1]["finished_episodes"] == [{"return": 3.0, "length": 3, "is_success": None}]
    assert records[0]["detailed_info"] == {
        "episode_info": {"current_step": 1, "time_remaining": 4.5},
        "robot_state": None,
        "performance_metrics": {"episode_progress": 0.1, "stability_score": None},
        "foot_contacts": None,
    }
    assert tracker.recent_success_rate() == 0.5
    assert all(record["finished_episodes"] == [] for record in tracker.take_records(timestep=10))


def test_episode_tracker_prefers_env_detail_and_copies_it() -> None:
    tracker = EpisodeTracker(num_envs=1)
    joints = np.arange(3.0)
    detail = {"episode_info": {"current_step": 7, "time_remaining": 1.0}, "robot_state": {"joints": joints},
              "foot_contacts": [True, False]}
    performance = {"episode_progress": np.float64(0.7), "stability_score": 0.8}
    (record,) = tracker.take_records(5, [detail], [performance])
    joints[:] = -1
    detail["foot_contacts"].append(True)
    assert record["detailed_info"] == {
        "episode_info": {"current_step": 7, "time_remaining": 1.0},
        "robot_state": {"joints": [0.0, 1.0, 2.0]},
        "performance_metrics": {"episode_progress": 0.7, "stability_score": 0.8},
        "foot_contacts": [True, False],
    }
    assert type(record["detailed_info"]["performance_metrics"]["episode_progress"]) is float


def test_episode_info_without_our_keys_is_completed_and_every_key_is_kept() -> None:
    tracker = EpisodeTracker(num_envs=1)
    step_with(tracker, [], {})
    step_with(tracker, [], {})
    detail = {"episode_info": {"phase": "stance"}, "simulation_time": 0.04}
    (record,) = tracker.take_records(2, [detail], None, max_episode_steps=10, dt=0.02)
    detailed = record["detailed_info"]
    assert detailed["episode_info"] == {"phase": "stance", "current_step": 2, "time_remaining": pytest.approx(0.16)}
    assert detailed["simulation_time"] == 0.04


def test_recent_success_rate_is_none_without_success_info() -> None:
    tracker = EpisodeTracker(num_envs=1)
    step_with(tracker, [0], {0: {}})
    assert tracker.recent_success_rate() is None


class Color(enum.Enum):
    RED = "red"


def test_plain_copy_detaches_and_converts() -> None:
    array = np.array([[1, 2], [3, 4]], dtype=np.int32)
    nested = {"array": array, 3: (np.float32(0.5), Color.RED), "tensor": th.tensor([1.5]), "other": Path("/x")}
    copied = plain_copy(nested)
    array[0, 0] = 99
    assert copied == {"array": [[1, 2], [3, 4]], "3": [0.5, "red"], "tensor": [1.5], "other": "/x"}
    assert type(copied["3"][0]) is float


def test_component_averager_means_per_name_then_resets() -> None:
    averager = ComponentAverager()
    assert averager.take_means() is None
    averager.add({"a": 1.0, "b": np.float32(2.0)})
    averager.add({"a": 3.0})
    assert averager.take_means() == {"a": 2.0, "b": 2.0}
    assert averager.take_means() is None


def test_learning_tracker_keeps_last_logger_values_across_clears() -> None:
    tracker = LearningMetricsTracker(start_timestep=0)
    name_to_value = {"train/loss": np.float32(0.25), "train/n_updates": 3, "rollout/video": object()}
    tracker.remember_logger_values(name_to_value)
    name_to_value.clear()  # what Logger.dump() does
    tracker.remember_logger_values(name_to_value)
    tracker.record_step([{"reward_components": {"alive": 1.0}}, {"reward_components": {"alive": 0.0}}, {}])
    record = tracker.take_record(100, 400, 0.5, None)
    assert record["logger"] == {"train/loss": 0.25, "train/n_updates": 3}
    assert record["reward_components"] == {"alive": 0.5} and record["cost_components"] is None
    assert record["training_progress"] == 0.25 and record["fps"] > 0 and record["memory_usage_mb"] > 0
    assert tracker.take_record(200, None, None, None)["training_progress"] is None


def test_flat_reward_and_cost_keys_of_any_real_number_type_are_averaged_as_floats() -> None:
    tracker = LearningMetricsTracker(start_timestep=0)
    infos = [{"reward_forward": np.float64(1.0), "reward_ctrl": np.float32(-0.5), "reward_alive": True,
              "cost_torque": np.int64(2), "x_position": np.float64(3.0), "reward_name": "fast", 7: 1.0},
             {"reward_forward": 3.0, "reward_ctrl": -1, "reward_alive": False, "cost_torque": 4.0}]
    for _ in range(2):  # the second time, the keys and types are known
        tracker.record_step(infos)
    record = tracker.take_record(8, None, None, None)
    assert record["reward_components"] == {"forward": 2.0, "ctrl": -0.75, "alive": 0.5}
    assert record["cost_components"] == {"torque": 3.0}
    assert all(type(value) is float for value in record["reward_components"].values())


def test_flat_terms_follow_an_info_whose_keys_and_value_types_change_between_steps() -> None:
    tracker = LearningMetricsTracker(start_timestep=0)
    steps = [
        [{"reward_forward": 1.0, "x_position": 0.5}],
        [{"x_position": 0.6, "reward_forward": 3.0, "episode": {"r": 4.0, "l": 2}, "cost_fall": 1.0}],
        [{"reward_forward": np.array([9.0, 9.0]), "x_position": 0.7}],  # no longer a number: left out
        [{"reward_forward": None, "reward_ctrl": np.float32(-2.0)}],
    ]
    for infos in steps:
        tracker.record_step(infos)
    record = tracker.take_record(4, None, None, None)
    assert record["reward_components"] == {"forward": 2.0, "ctrl": -2.0}
    assert record["cost_components"] == {"fall": 1.0}
    tracker.record_step([{"reward_forward": 5.0}])
    assert tracker.take_record(5, None, None, None)["reward_components"] == {"forward": 5.0}


def test_timestep_trigger_fires_once_per_crossed_multiple() -> None:
    trigger = TimestepTrigger(10)
    trigger.restart(25)
    fired = [t for t in range(26, 80, 4) if trigger.is_due(t)]
    assert fired == [30, 42, 50, 62, 70]
    with pytest.raises(ValueError):
        TimestepTrigger(0)


def test_env_state_reader_without_protocol_reads_static_fallbacks() -> None:
    env = make_vec_env("Pendulum-v1", n_envs=2)
    reader = EnvStateReader(env)
    # Only TimeLimit's own step limit is found; the spec's value is the one used.
    assert [name for name, found in reader.supported.items() if found] == ["max_episode_steps"]
    assert reader.max_episode_steps == 200 and reader.dt == 0.05  # PendulumEnv.dt
    readings = reader.read(["detailed_episode_info", "rand_power", "curriculum_progress", "success_counts"])
    assert readings == EnvReadings()
    summary = reader.environment_summary()
    assert summary["environment_class"] == "PendulumEnv" and summary["env_name"] == "Pendulum-v1"
    assert summary["action_space"] == describe_space(env.action_space)
    summary["environment_class"] = "changed"
    assert reader.environment_summary()["environment_class"] == "PendulumEnv"


def _go1_readings_in_step_info() -> gym.Env:
    return ReadingsInStepInfo(gym.make(f"rtsave_async.envs:{GO1_ENV_ID}"))


def _stepped_go1_vec_env(vec_env_class: type, n_envs: int = 3, make_env=None):
    kwargs = {"start_method": "fork"} if issubclass(vec_env_class, SubprocVecEnv) else {}
    make_env = make_env or (lambda: gym.make(f"rtsave_async.envs:{GO1_ENV_ID}"))
    vec_env = vec_env_class([make_env] * n_envs, **kwargs)
    vec_env.seed(0)
    vec_env.reset()
    for step in range(3):
        vec_env.step(np.full((n_envs, 12), 0.1 * step, dtype=np.float32))
    return vec_env


def test_a_save_reads_every_env_in_one_round_trip_per_worker_with_the_in_process_values() -> None:
    fields = LEARNING_READINGS + EPISODE_READINGS + ENVIRONMENT_READINGS
    in_process = _stepped_go1_vec_env(DummyVecEnv)
    in_workers = _stepped_go1_vec_env(CountingSubprocVecEnv)
    try:
        expected = EnvStateReader(in_process).read(fields)
        reader = EnvStateReader(in_workers)
        before = in_workers.env_method_calls
        readings = reader.read(fields)
        assert in_workers.env_method_calls == before + 1
        assert readings.environment_summary.pop("vec_env_class") == "CountingSubprocVecEnv"
        assert expected.environment_summary.pop("vec_env_class") == "DummyVecEnv"
        assert readings == expected
        assert len(readings.detailed_episode_info) == 3 and readings.detailed_episode_info[0]["robot_state"]
        assert readings.rand_power == [0.0, 0.0, 0.0] and readings.curriculum_progress == 0.0
    finally:
        in_process.close()
        in_workers.close()


def test_envs_reading_in_their_steps_send_a_save_s_readings_with_the_infos_and_the_save_makes_no_round_trip(
) -> None:
    fields = LEARNING_READINGS + EPISODE_READINGS + ENVIRONMENT_READINGS
    venv = _stepped_go1_vec_env(CountingSubprocVecEnv, make_env=_go1_readings_in_step_info)
    try:
        reader = EnvStateReader(venv)
        _, _, _, infos = venv.step(np.zeros((3, 12), dtype=np.float32))
        assert all(STEP_READINGS_KEY not in info for info in infos)  # idle until started
        assert reader.read_in_steps(fields, SaveSteps(0, 3, TimestepTrigger(1)))  # a save after every step
        for step in range(3):
            _, _, dones, infos = venv.step(np.full((3, 12), 0.05 * step, dtype=np.float32))
            reader.take_step_readings(infos)
            assert all(STEP_READINGS_KEY not in info for info in infos)  # taken out: no buffer keeps them
            before = venv.env_method_calls
            from_steps = reader.read(fields)
            assert venv.env_method_calls == before  # no round trip
            through_calls = reader.read(fields)  # used once: this read goes to the workers
            assert venv.env_method_calls == before + 1
            assert not dones.any() and from_steps == through_calls  # no reset in between: the same state
            assert from_steps.detailed_episode_info[2]["episode_info"]["current_step"] == 5 + step
        reader.close()
        _, _, _, infos = venv.step(np.zeros((3, 12), dtype=np.float32))
        assert all(STEP_READINGS_KEY not in info for info in infos)  # stopped
    finally:
        venv.close()


def test_readings_in_step_infos_do_nothing_in_process_or_unwrapped() -> None:
    fields = EPISODE_READINGS
    in_process = _stepped_go1_vec_env(DummyVecEnv, make_env=_go1_readings_in_step_info)
    unwrapped = _stepped_go1_vec_env(SubprocVecEnv, n_envs=2)
    try:
        assert not EnvStateReader(in_process).read_in_steps(fields, SaveSteps(0, 3, TimestepTrigger(1)))  # a local call is cheaper
        assert not EnvStateReader(unwrapped).read_in_steps(fields, SaveSteps(0, 2, TimestepTrigger(1)))
        _, _, _, infos = in_process.step(np.zeros((3, 12), dtype=np.float32))
        assert all(STEP_READINGS_KEY not in info for info in infos)
    finally:
        in_process.close()
        unwrapped.close()


@pytest.mark.parametrize("first_timestep", [0, 5, 1000])
@pytest.mark.parametrize("step_timesteps", [1, 3, 8])
@pytest.mark.parametrize("frequency", [1, 4, 1000])
def test_save_steps_are_the_steps_after_which_the_callback_saves(first_timestep, step_timesteps, frequency) -> None:
    trigger, copied = TimestepTrigger(frequency), TimestepTrigger(frequency)
    trigger.restart(first_timestep)
    copied.restart(first_timestep)  # what the callback hands the workers
    save_steps = SaveSteps(first_timestep, step_timesteps, copied)
    for step in range(1, 600):
        assert save_steps.follows(step) == trigger.is_due(first_timestep + step * step_timesteps), step


class CopiedGo1(Go1MujocoEnv):
    """The Go1 env without its promise of fresh results: the reader copies them."""

    rtsave_results_are_fresh = False


def test_an_env_promising_fresh_results_is_read_without_a_copy_and_gives_the_same_records() -> None:
    fields = EPISODE_READINGS + ENVIRONMENT_READINGS
    fresh_envs = DummyVecEnv([lambda: gym.make(f"rtsave_async.envs:{GO1_ENV_ID}")] * 2)
    copied_envs = DummyVecEnv([lambda: CopiedGo1()] * 2)
    try:
        for vec_env in (fresh_envs, copied_envs):
            vec_env.seed(0)
            vec_env.reset()
            vec_env.step(np.full((2, 12), 0.2, dtype=np.float32))
        fresh, copied = EnvStateReader(fresh_envs), EnvStateReader(copied_envs)
        assert fresh.fresh_results is True and copied.fresh_results is False
        assert EnvStateReader(make_vec_env("CartPole-v1", n_envs=1)).fresh_results is False
        first, again = fresh.read(fields), fresh.read(fields)
        assert first.detailed_episode_info == again.detailed_episode_info
        assert first.detailed_episode_info[0] is not again.detailed_episode_info[0]  # a new dict per call
        expected = copied.read(fields)
        for readings in (first, expected):
            for key in ("environment_class", "env_name"):  # Go1MujocoEnv / CopiedGo1, made without gym.make
                readings.environment_summary.pop(key)
        assert first == expected
    finally:
        fresh_envs.close()
        copied_envs.close()


def test_reading_an_unknown_field_names_it() -> None:
    with pytest.raises(ValueError, match="'rand_powr'; known fields: detailed_episode_info"):
        EnvStateReader(make_vec_env("CartPole-v1", n_envs=1)).read(["rand_powr"])


def test_curriculum_progress_averages_only_the_envs_that_report_a_number() -> None:
    env = make_vec_env(UserTrainerEnv, n_envs=3)
    env.envs[0].unwrapped.curriculum_factor = None  # not started yet
    env.envs[1].unwrapped.curriculum_factor = 0.5
    assert EnvStateReader(env).read(["curriculum_progress"]).curriculum_progress == 0.25


def test_describe_space_handles_nested_spaces() -> None:
    space = gym.spaces.Dict({"a": gym.spaces.Discrete(3), "b": gym.spaces.Box(0, 1, (2,))})
    description = describe_space(space)
    assert description["type"] == "Dict"
    assert description["spaces"]["a"]["n"] == 3
    assert description["spaces"]["b"]["shape"] == [2]


def test_config_value_converts_schedules_classes_and_skips_live_objects() -> None:
    assert config_value(LinearSchedule(1.0, 0.0, 0.5)) == {
        "schedule": "LinearSchedule(start=1.0, end=0.0, end_fraction=0.5)", "value_at_start": 1.0, "value_at_end": 0.0}
    assert config_value(lambda progress: 2 * progress)["value_at_start"] == 2.0
    assert config_value(FloatSchedule(0.2)) == 0.2  # a constant reads as its value
    assert config_value(lambda: 3).endswith(".<lambda>")  # a function, not a schedule
    assert config_value(th.nn.ReLU) == "torch.nn.modules.activation.ReLU"
    assert config_value({"net_arch": [64, 64], "activation_fn": th.nn.Tanh}) == {
        "net_arch": [64, 64], "activation_fn": "torch.nn.modules.activation.Tanh"}
    assert config_value(th.device("cpu")) == "cpu"
    assert config_value(np.zeros(3)) is NotImplemented


def test_callable_object_schedule_is_recorded_with_its_values_at_both_ends() -> None:
    """rl_zoo3's ``lin_0.001`` is a callable object, neither a function nor an SB3 schedule."""
    model = SAC("MlpPolicy", "Pendulum-v1", learning_rate=linear_schedule(0.001), buffer_size=100,
                policy_kwargs={"net_arch": [8]})
    recorded = collect_hyperparameters(model, 0, 100, None)["algorithm_hyperparameters"]["learning_rate"]
    assert recorded == {"schedule": "SimpleLinearSchedule(initial_value=0.001)",
                        "value_at_start": 0.001, "value_at_end": 0.0}


def test_collect_hyperparameters_for_sac(tmp_path: Path) -> None:
    model = SAC("MlpPolicy", "Pendulum-v1", learning_rate=LinearSchedule(1e-3, 1e-4, 1.0), buffer_size=500,
                policy_kwargs={"net_arch": [8]}, seed=3)
    record = collect_hyperparameters(model, 0, 1000, {"environment_class": "PendulumEnv"})
    hyperparameters = record["algorithm_hyperparameters"]
    assert (record["model_type"], record["policy_type"], record["seed"]) == ("SAC", "SACPolicy", 3)
    assert hyperparameters["learning_rate"]["value_at_start"] == pytest.approx(1e-3)
    assert hyperparameters["learning_rate"]["value_at_end"] == pytest.approx(1e-4)
    assert hyperparameters["buffer_size"] == 500
    assert "replay_buffer" not in hyperparameters and "num_timesteps" not in hyperparameters
    assert record["policy_architecture"]["net_arch"] == [8]
    assert record["policy_architecture"]["num_parameters"] == sum(p.numel() for p in model.policy.parameters())
    assert record["environment"]["environment_class"] == "PendulumEnv"
    assert record["environment"]["num_envs"] == 1
    assert set(record["versions"]) >= {"python", "torch", "stable_baselines3", "gymnasium", "mujoco", "numpy"}
    assert record["versions"]["rtsave_async"] == rtsave_async.__version__
    assert record["host"]


def test_git_revision_is_none_outside_a_checkout(tmp_path: Path) -> None:
    assert git_revision(tmp_path) is None


def test_git_revision_is_filled_in_when_the_writer_calls_the_payload(tmp_path: Path, monkeypatch) -> None:
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "x"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    payload = with_git_revision({"git_revision": None, "host": "h"})
    monkeypatch.chdir(tmp_path)
    assert payload({}) == {"git_revision": head, "host": "h"}  # one JSON object per file


class _NamedWrapper(gym.Wrapper):
    label = "wrapper"


def test_attribute_owner_is_where_get_wrapper_attr_finds_the_attribute() -> None:
    env = _NamedWrapper(gym.make("CartPole-v1"))
    env.unwrapped.label = "inner"
    assert attribute_owner(env, "label") is env  # the outermost holder wins, as in get_wrapper_attr
    assert attribute_owner(env, "theta_threshold_radians") is env.unwrapped
    assert getattr(attribute_owner(env, "spec"), "spec") is env.get_wrapper_attr("spec")
    assert attribute_owner(env, "no_such_attribute") is None
