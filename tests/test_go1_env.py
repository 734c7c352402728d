"""Go1 MuJoCo environment: Gymnasium API, physics sanity, reward bookkeeping, randomization,
the state protocol used by the saving callback, vectorized use and the curriculum callback."""

from __future__ import annotations

import json
import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

from rtsave_async.callbacks.curriculum import CurriculumCallback
from rtsave_async.envs import GO1_ENV_ID, Go1MujocoEnv
from rtsave_async.envs.go1 import QUADRUPED_HEALTHY_Z, STABILITY_RATE_SCALE

LEGS = ["FR", "FL", "RR", "RL"]
MODES = [
    pytest.param({}, id="position"),
    pytest.param({"ctrl_type": "torque"}, id="torque"),
    pytest.param({"biped": True}, id="biped"),
]


def _run_random_steps(env: Go1MujocoEnv, steps: int, seed: int, amplitude: float = 1.0):
    """Yield (reward, info) for uniform random actions in [-amplitude, amplitude], resetting on episode end."""
    env.reset(seed=seed)
    env.action_space.seed(seed)
    for _ in range(steps):
        _, reward, terminated, truncated, info = env.step(amplitude * env.action_space.sample())
        yield reward, info
        if terminated or truncated:
            env.reset()


@pytest.mark.parametrize("kwargs", MODES)
def test_check_env_passes(kwargs: dict) -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*infinity.*")  # unbounded Box is intended
        check_env(Go1MujocoEnv(**kwargs), skip_render_check=True)


def test_registered_id_makes_the_env_and_registration_is_idempotent() -> None:
    import importlib

    import rtsave_async.envs

    importlib.reload(rtsave_async.envs)
    env = gym.make(GO1_ENV_ID, ctrl_type="torque")
    assert isinstance(env.unwrapped, Go1MujocoEnv)
    assert env.unwrapped.ctrl_type == "torque"
    env.close()


def test_zero_action_stands_for_one_second() -> None:
    env = Go1MujocoEnv()
    env.reset(seed=0)
    for _ in range(50):
        _, _, terminated, truncated, _ = env.step(np.zeros(12))
        assert not terminated and not truncated
        assert QUADRUPED_HEALTHY_Z[0] + 0.03 < env.data.qpos[2] < 0.32
    assert env.get_performance_metrics()["stability_score"] > 0.9
    assert all(env.get_detailed_episode_info()["foot_contacts"].values())


def test_torque_mode_random_actions_stay_finite() -> None:
    env = Go1MujocoEnv(ctrl_type="torque")
    for _ in _run_random_steps(env, 300, seed=1):
        assert np.all(np.isfinite(env.data.qpos)) and np.all(np.isfinite(env.data.qvel))
        assert np.max(np.abs(env.data.qvel)) < 200.0


@pytest.mark.parametrize("kwargs", MODES)
def test_reward_is_the_clipped_sum_of_weighted_components(kwargs: dict) -> None:
    env = Go1MujocoEnv(**kwargs)
    positive_seen = False
    for reward, info in _run_random_steps(env, 200, seed=2, amplitude=0.3):  # mild enough to score
        rewards, costs = info["reward_components"], info["cost_components"]
        assert all(isinstance(v, float) for v in [*rewards.values(), *costs.values()])
        assert reward == max(0.0, sum(rewards.values()) - sum(costs.values()))
        positive_seen |= reward > 0
    assert positive_seen
    assert set(rewards) == {"tracking_lin_vel", "tracking_ang_vel", "feet_air_time"}
    expected_costs = {"torque", "vertical_velocity", "roll_pitch_rate", "action_rate", "joint_limit",
                      "joint_acceleration", "orientation", "default_pose"}
    assert set(costs) == expected_costs | ({"front_feet_contact"} if kwargs.get("biped") else set())


def test_episode_end_reports_success() -> None:
    standing_still = ((0.0, 0.0), (0.0, 0.0), (0.0, 0.0))
    quadruped = Go1MujocoEnv(max_episode_seconds=0.2, command_range=standing_still)
    quadruped.reset(seed=0)
    infos = [quadruped.step(np.zeros(12)) for _ in range(10)]
    assert [truncated for *_, truncated, _ in infos] == [False] * 9 + [True]
    assert "is_success" not in infos[0][-1] and infos[-1][-1]["is_success"] is True
    assert quadruped.finished_episodes == 1

    run_forward = ((0.8, 0.8), (0.0, 0.0), (0.0, 0.0))  # standing still misses the commanded speed
    quadruped = Go1MujocoEnv(max_episode_seconds=0.2, command_range=run_forward)
    quadruped.reset(seed=0)
    assert [quadruped.step(np.zeros(12))[-1].get("is_success") for _ in range(10)][-1] is False

    biped = Go1MujocoEnv(biped=True, max_episode_seconds=2.5)  # stays on four legs: failure
    biped.reset(seed=0)
    for _ in range(biped.max_episode_steps):
        _, _, terminated, truncated, info = biped.step(np.zeros(12))
        if terminated or truncated:
            break
    assert truncated and info["is_success"] is False


def _reset_joint_positions(rand_power: float, seeds: range) -> np.ndarray:
    env = Go1MujocoEnv(rand_power=rand_power, curriculum_episodes=0)
    return np.array([env.reset(seed=seed)[0][12:24] for seed in seeds])


def test_rand_power_widens_reset_distribution_and_seed_reproduces_it() -> None:
    calm, randomized = _reset_joint_positions(0.0, range(8)), _reset_joint_positions(1.0, range(8))
    assert calm.std(axis=0).max() < 1e-6
    assert randomized.std(axis=0).min() > 0.02
    np.testing.assert_array_equal(randomized, _reset_joint_positions(1.0, range(8)))

    env = Go1MujocoEnv(rand_power=1.0)
    frictions = set()
    for seed in range(3):
        env.reset(seed=seed)
        frictions.add(float(env.model.geom_friction[env.model.geom("FR_foot").id, 0]))
    assert len(frictions) == 3


def test_curriculum_factor_scales_joint_noise() -> None:
    env = Go1MujocoEnv(rand_power=1.0, curriculum_episodes=1000)
    assert env.curriculum_progress == 0.0
    first = env.reset(seed=3)[0][12:24]
    env.finished_episodes = 500
    assert env.curriculum_progress == 0.5
    half = env.reset(seed=3)[0][12:24]
    assert np.abs(first).max() < 1e-6 < np.abs(half).max()
    with pytest.raises(ValueError):
        env.set_rand_power(-0.1)


def _assert_no_nulls(value) -> None:
    if isinstance(value, dict):
        for item in value.values():
            _assert_no_nulls(item)
    elif isinstance(value, list):
        for item in value:
            _assert_no_nulls(item)
    else:
        assert value is not None


def _assert_protocol(summary: dict, detailed: dict, metrics: dict) -> None:
    for payload in (summary, detailed, metrics):
        _assert_no_nulls(json.loads(json.dumps(payload, allow_nan=False)))
    assert set(summary) == {"environment_class", "ctrl_type", "biped", "frame_skip", "dt", "physics_timestep_s",
                            "max_episode_seconds", "rand_power"}
    assert summary["environment_class"] == "Go1MujocoEnv"
    assert summary["dt"] == pytest.approx(summary["physics_timestep_s"] * summary["frame_skip"])
    assert set(detailed) == {"episode_info", "robot_state", "foot_contacts"}
    assert set(detailed["episode_info"]) == {"current_step", "time_remaining"}
    state = detailed["robot_state"]
    assert set(state) == {"position", "orientation", "velocity", "joint_positions", "joint_velocities"}
    assert set(state["position"]) == {"x", "y", "z"}
    assert set(state["orientation"]) == {"w", "x", "y", "z", "roll", "pitch", "yaw"}
    assert len(state["velocity"]["linear"]) == len(state["velocity"]["angular"]) == 3
    assert len(state["joint_positions"]) == len(state["joint_velocities"]) == 12
    assert list(detailed["foot_contacts"]) == LEGS
    assert all(isinstance(v, bool) for v in detailed["foot_contacts"].values())
    assert set(metrics) == {"episode_progress", "stability_score"}
    assert 0.0 <= metrics["episode_progress"] <= 1.0 and 0.0 <= metrics["stability_score"] <= 1.0


def test_protocol_reflects_simulation_state() -> None:
    env = Go1MujocoEnv(rand_power=0.3)
    env.reset(seed=0)
    for _ in range(25):
        env.step(np.zeros(12))
    summary, detailed, metrics = (env.get_environment_summary(), env.get_detailed_episode_info(),
                                  env.get_performance_metrics())
    _assert_protocol(summary, detailed, metrics)
    assert summary["rand_power"] == 0.3 and summary["ctrl_type"] == "position" and summary["biped"] is False
    assert detailed["episode_info"] == {"current_step": 25,
                                        "time_remaining": pytest.approx(env.max_episode_seconds - 0.5)}
    assert detailed["robot_state"]["position"]["z"] == pytest.approx(float(env.data.qpos[2]))
    assert detailed["robot_state"]["joint_positions"] == env.data.qpos[7:].tolist()
    assert metrics["episode_progress"] == pytest.approx(25 / env.max_episode_steps)


@pytest.mark.parametrize("kwargs", MODES)
def test_reported_state_matches_the_numpy_formulas(kwargs) -> None:
    """The reporting methods' plain-float math gives the values of the numpy helpers step() uses."""
    env = Go1MujocoEnv(rand_power=1.0, **kwargs)
    for step, _ in enumerate(_run_random_steps(env, 60, seed=3)):
        detailed, metrics = env.get_detailed_episode_info(), env.get_performance_metrics()
        assert detailed["robot_state"]["velocity"]["angular"] == pytest.approx(
            env._world_angular_velocity().tolist(), rel=1e-12, abs=1e-12)
        assert list(detailed["foot_contacts"].values()) == env._foot_contacts().tolist()
        world_angular = env._world_angular_velocity()
        expected = (max(0.0, float(env._projected_gravity() @ env._upright_gravity))
                    * np.exp(-float(np.sum(world_angular[:2] ** 2)) / STABILITY_RATE_SCALE**2))
        assert metrics["stability_score"] == pytest.approx(expected, rel=1e-12, abs=1e-15), step


@pytest.mark.parametrize("vec_env_class", [DummyVecEnv, SubprocVecEnv])
def test_protocol_through_vec_env(vec_env_class) -> None:
    # "module:id" makes worker processes import (and so register) the env before making it
    vec_env = vec_env_class([lambda: gym.make(f"rtsave_async.envs:{GO1_ENV_ID}", biped=True)] * 2)
    try:
        vec_env.seed(0)
        vec_env.reset()
        vec_env.step(np.zeros((2, 12), dtype=np.float32))
        for summary, detailed, metrics in zip(vec_env.env_method("get_environment_summary"),
                                              vec_env.env_method("get_detailed_episode_info"),
                                              vec_env.env_method("get_performance_metrics")):
            _assert_protocol(summary, detailed, metrics)
            assert summary["biped"] is True and detailed["episode_info"]["current_step"] == 1
        vec_env.env_method("set_rand_power", 0.25)
        assert vec_env.get_attr("rand_power") == [0.25, 0.25]
        assert vec_env.get_attr("curriculum_progress") == [0.0, 0.0]
    finally:
        vec_env.close()


class _CountingGo1(Go1MujocoEnv):
    """Go1 env that records every rand_power it is given."""

    def __init__(self, **kwargs) -> None:
        self.rand_power_history: list[float] = []
        super().__init__(**kwargs)
        self.rand_power_history.clear()  # keep only values set after construction

    def set_rand_power(self, value: float) -> None:
        super().set_rand_power(value)
        self.rand_power_history.append(value)


def test_curriculum_callback_lowers_rand_power_during_ppo() -> None:
    vec_env = DummyVecEnv([lambda: _CountingGo1(rand_power=1.0, max_episode_seconds=1.0)])
    callback = CurriculumCallback(initial_rand_power=1.0, final_rand_power=0.0,
                                  start_timestep=0, end_timestep=200, min_change=0.1)
    model = PPO("MlpPolicy", vec_env, n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=256, callback=callback)

    history = vec_env.envs[0].rand_power_history
    assert vec_env.get_attr("rand_power") == [0.0]
    assert history[0] == 1.0 and history[-1] == 0.0
    assert all(later < earlier for earlier, later in zip(history, history[1:]))
    assert len(history) <= 12  # sent on meaningful changes only, not every step


def test_curriculum_callback_warns_once_for_envs_without_rand_power() -> None:
    model = PPO("MlpPolicy", DummyVecEnv([lambda: gym.make("Pendulum-v1")]), n_steps=32, batch_size=32,
                n_epochs=1, device="cpu")
    with pytest.warns(UserWarning, match="set_rand_power") as record:
        model.learn(total_timesteps=64, callback=CurriculumCallback(end_timestep=32))
    assert len([w for w in record if "set_rand_power" in str(w.message)]) == 1


def test_rgb_array_construction_needs_no_gl() -> None:
    env = Go1MujocoEnv(render_mode="rgb_array")
    env.reset(seed=0)
    env.step(np.zeros(12))
    env.close()


@pytest.mark.parametrize("ctrl_type", ["position", "torque"])
def test_env_state_round_trip_continues_identically(ctrl_type: str) -> None:
    """get_env_state/set_env_state: a fresh env continues exactly like the original."""
    original = Go1MujocoEnv(ctrl_type=ctrl_type, rand_power=1.0, curriculum_episodes=0)
    original.reset(seed=5)
    actions = np.random.default_rng(0).uniform(-1, 1, (120, original.action_space.shape[0]))
    for action in actions[:40]:
        if any(original.step(action)[2:4]):
            original.reset()
    state = pickle.loads(pickle.dumps(original.get_env_state()))
    copy = Go1MujocoEnv(ctrl_type=ctrl_type, rand_power=0.2, curriculum_episodes=0)  # rand_power: set at run time
    copy.reset(seed=99)
    copy.set_env_state(state)
    for action in actions[40:]:
        expected, got = original.step(action), copy.step(action)
        np.testing.assert_array_equal(expected[0], got[0])
        assert expected[1:4] == got[1:4]
        if expected[2] or expected[3]:
            np.testing.assert_array_equal(original.reset()[0], copy.reset()[0])
