"""Odd values from the env never stop training (issue 12, item 8).

Each kind trains fine without our callback; with it, PPO's ``learn()`` must complete,
the record must hold a placeholder (or null, or the documented mean) for that field,
and the problem must be counted with one warning, however many steps reported it.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv
from user_envs import ODD_VALUES, OddValueEnv

from rtsave_async import names
from rtsave_async.callbacks.realtime import RealTimeSavingCallback
from rtsave_async.formats.serialize import PLACEHOLDER_KEY
from rtsave_async.readers.run import open_run

TOTAL_TIMESTEPS = 256
SAVE_FREQUENCY = 64


def train(save_dir: Path, kind: str, vec_env_cls: type = DummyVecEnv) -> tuple[RealTimeSavingCallback, list[str]]:
    """PPO on :class:`OddValueEnv` with the callback; returns it and the warnings it gave."""
    env = make_vec_env(lambda: OddValueEnv(kind), n_envs=2, seed=0, vec_env_cls=vec_env_cls)
    callback = RealTimeSavingCallback(save_dir, save_frequency=SAVE_FREQUENCY, save_checkpoints=False,
                                      save_hyperparameters=False)
    model = PPO("MlpPolicy", env, n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.learn(TOTAL_TIMESTEPS, callback=callback)
    finally:
        env.close()
    assert model.num_timesteps >= TOTAL_TIMESTEPS
    messages = [str(warning.message) for warning in caught if "RealTimeSavingCallback" in str(warning.message)]
    return callback, messages


def last_record(save_dir: Path, category: str) -> dict[str, Any]:
    return list(open_run(save_dir).records(category))[-1]


def assert_counted_once(callback: RealTimeSavingCallback, messages: list[str], kind: str) -> None:
    """Problem ``kind`` counted at every save (or step) and warned about exactly once."""
    counts = callback.value_problems.counts
    assert counts.get(kind, 0) > 1, counts
    assert sum(callback.value_problems.first_messages[kind] in message for message in messages) == 1, messages


def is_placeholder(value: Any, type_name: str) -> bool:
    return isinstance(value, dict) and value.get(PLACEHOLDER_KEY) == type_name and value.get("reason")


@pytest.mark.parametrize(("kind", "type_name"), [("none_reward", "NoneType"), ("string_reward", "str")])
def test_a_term_that_is_not_a_number_is_a_placeholder(tmp_path: Path, kind: str, type_name: str) -> None:
    callback, messages = train(tmp_path, kind)
    rewards = last_record(tmp_path, names.LEARNING_METRICS)["reward_components"]
    assert rewards["alive"] == 1.0
    assert is_placeholder(rewards["odd"], type_name), rewards
    assert_counted_once(callback, messages, "reward_components not numeric")


@pytest.mark.parametrize(("kind", "field", "mean"), [
    ("per_foot_vector", "reward_components", [0.1, 0.2, 0.3, 0.4]),
    ("two_element_tensor_cost", "cost_components", [0.5, 0.25]),
])
def test_a_vector_term_is_averaged_element_wise(tmp_path: Path, kind: str, field: str, mean: list[float]) -> None:
    callback, messages = train(tmp_path, kind)
    assert last_record(tmp_path, names.LEARNING_METRICS)[field]["odd"] == pytest.approx(mean)
    assert callback.value_problems.counts == {} and messages == []


@pytest.mark.parametrize(("kind", "type_name"), [("ndarray_components", "ndarray"), ("list_components", "list")])
def test_components_that_are_not_a_mapping_are_a_placeholder(tmp_path: Path, kind: str, type_name: str) -> None:
    callback, messages = train(tmp_path, kind)
    assert is_placeholder(last_record(tmp_path, names.LEARNING_METRICS)["reward_components"], type_name)
    assert_counted_once(callback, messages, "reward_components not a mapping")


@pytest.mark.parametrize(("kind", "problem", "where"), [
    ("meta_tensor", "Tensor not readable", ()),
    ("str_raises", "StrRaises not readable", ()),
    ("cyclic_list", "reference cycle", (1,)),
    ("deep_dict", "nested deeper than 100", ("child",) * 99),
])
def test_an_uncopyable_detailed_value_is_a_placeholder(tmp_path: Path, kind: str, problem: str,
                                                       where: tuple) -> None:
    callback, messages = train(tmp_path, kind)
    value = last_record(tmp_path, names.EPISODES)["detailed_info"]["robot_state"]
    for step in where:
        value = value[step]
    assert value[PLACEHOLDER_KEY] and value["reason"].startswith(problem), value
    assert_counted_once(callback, messages, problem)


@pytest.mark.parametrize("vec_env_cls", [DummyVecEnv, SubprocVecEnv])
def test_a_raising_protocol_method_gives_null_fields(tmp_path: Path, vec_env_cls: type) -> None:
    callback, messages = train(tmp_path, "detailed_info_raises", vec_env_cls)
    detailed = last_record(tmp_path, names.EPISODES)["detailed_info"]
    assert detailed["robot_state"] is None and detailed["foot_contacts"] is None
    assert detailed["episode_info"]["current_step"] is not None  # the tracker's own count
    assert_counted_once(callback, messages, "get_detailed_episode_info raised")


def test_an_unpicklable_value_does_not_kill_a_subproc_worker(tmp_path: Path) -> None:
    callback, _ = train(tmp_path, "unpicklable", SubprocVecEnv)
    robot_state = last_record(tmp_path, names.EPISODES)["detailed_info"]["robot_state"]
    assert "lock" in robot_state  # copied as its text in the worker, as any other object
    assert callback.value_problems.counts == {}


def test_every_odd_value_kind_has_a_test() -> None:
    tested = {"none_reward", "string_reward", "per_foot_vector", "two_element_tensor_cost", "ndarray_components",
              "list_components", "meta_tensor", "str_raises", "cyclic_list", "deep_dict", "detailed_info_raises",
              "unpicklable"}
    assert tested == set(ODD_VALUES)
