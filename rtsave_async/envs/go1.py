"""Go1-style quadruped velocity-tracking task on our own primitive-geom MuJoCo model.

Units: metres, kilograms, seconds, radians; velocities in m/s and rad/s; torques in N*m.
Leg order everywhere: FR, FL, RR, RL; joints per leg: hip (abduction), thigh, calf (knee).

Observation (48 values, float32):
    base linear velocity in the trunk frame x2, base angular velocity in the trunk frame x0.25,
    gravity direction in the trunk frame (unit vector), commanded (vx, vy, wz) scaled like the
    measured velocities (x2, x2, x0.25), joint positions minus the home pose, joint
    velocities x0.05, previous action.

Action (12 values in [-1, 1]):
    * ``ctrl_type="position"``: joint target = home pose + ``action_scale`` * action [rad],
      clipped to the joint range; zero action holds the standing pose. The default scale is
      ``QUADRUPED_ACTION_SCALE`` (0.3 rad) or ``BIPED_ACTION_SCALE`` (1.6 rad: the hind thighs
      must swing about pi/2 to carry a vertical trunk).
    * ``ctrl_type="torque"``: motor command; joint torque = action * gear (23 N*m for hip and
      thigh, 35 N*m for the knee).

Reward: ``max(0, sum(reward_components) - sum(cost_components))`` with the weighted terms
reported every step in ``info["reward_components"]`` and ``info["cost_components"]``.
Velocity tracking is measured in the heading frame (world frame turned by the robot's yaw),
so it also makes sense for the biped, whose trunk points up.

Success (``info["is_success"]`` on the final step of every episode):
    * quadruped: the episode reached the time limit without termination and the mean planar
      velocity tracking error ||command_xy - v_xy|| over the episode is at most
      ``SUCCESS_MAX_TRACKING_ERROR`` (0.25 m/s);
    * biped: the episode reached the time limit and no front foot touched the ground after
      the first ``BIPED_LIFTOFF_SECONDS`` (the robot starts on four legs and needs time to rear).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import mujoco
import numpy as np
from gymnasium import spaces
from gymnasium.envs.mujoco import MujocoEnv
from gymnasium.utils import EzPickle

_INTEGRATION_STATE = mujoco.mjtState.mjSTATE_INTEGRATION
MODEL_PATH = os.path.join(os.path.dirname(__file__), "assets", "go1.xml")

#: Leg order of contacts and of the actuators (hip, thigh, calf per leg, e.g. "FR_hip", "FR_thigh", ...).
LEG_NAMES = ("FR", "FL", "RR", "RL")
FRONT_LEGS = ("FR", "FL")
HIND_LEGS = ("RR", "RL")

#: Motor gear per joint kind (actuator name suffix) in torque control [N*m per unit ctrl].
MOTOR_GEARS = {"hip": 23.0, "thigh": 23.0, "calf": 35.0}
#: Default joint-target offset per unit action in position control [rad].
QUADRUPED_ACTION_SCALE = 0.3
BIPED_ACTION_SCALE = 1.6

#: Observation scales (dimensionless multipliers).
LINEAR_VELOCITY_SCALE = 2.0
ANGULAR_VELOCITY_SCALE = 0.25
JOINT_VELOCITY_SCALE = 0.05
OBSERVATION_SIZE = 48

#: Reward and cost weights (the public trainer's values).
REWARD_WEIGHTS = {
    "tracking_lin_vel": 2.0,
    "tracking_ang_vel": 1.0,
    "feet_air_time": 1.0,
}
COST_WEIGHTS = {
    "torque": 2e-4,
    "vertical_velocity": 2.0,
    "roll_pitch_rate": 0.05,
    "action_rate": 0.01,
    "joint_limit": 10.0,
    "joint_acceleration": 2.5e-7,
    "orientation": 1.0,
    "default_pose": 0.1,
}
#: Extra cost in biped mode: per front foot touching the ground.
BIPED_COST_WEIGHTS = {"front_feet_contact": 0.5}

#: Tracking kernel width: reward = exp(-error^2 / TRACKING_SIGMA) [(m/s)^2 or (rad/s)^2].
TRACKING_SIGMA = 0.25
#: Air time [s] a swing must exceed to earn a positive feet_air_time reward on touchdown.
FEET_AIR_TIME_TARGET = 0.5
#: Commanded planar speed [m/s] below which the feet_air_time reward is off (standing still).
AIR_TIME_MIN_COMMAND = 0.1
#: Soft joint limits are this fraction of the joint range, centred in it.
SOFT_JOINT_LIMIT_FRACTION = 0.9
#: External contact force [N] on a calf (including its foot) that counts as ground contact.
CONTACT_FORCE_THRESHOLD = 1.0

#: Default commanded-velocity ranges ((vx_min, vx_max), (vy_min, vy_max), (wz_min, wz_max)).
QUADRUPED_COMMAND_RANGE = ((0.0, 0.8), (-0.3, 0.3), (-0.5, 0.5))
#: The biped's default task is to stand still on its hind legs.
BIPED_COMMAND_RANGE = ((0.0, 0.0), (0.0, 0.0), (0.0, 0.0))

#: Healthy base height ranges (min, max) [m].
QUADRUPED_HEALTHY_Z = (0.22, 0.65)
BIPED_HEALTHY_Z = (0.15, 0.8)
#: Quadruped terminates when the trunk's up axis tilts more than this from vertical [rad].
QUADRUPED_MAX_TILT = math.radians(60.0)
#: Biped terminates when the trunk rolls more than this [rad] ...
BIPED_MAX_ROLL = math.radians(45.0)
#: ... or when the trunk's back faces more than this below the horizon (fell over backwards) [rad].
BIPED_MAX_BACKWARD_FALL = math.radians(30.0)
#: Biped success ignores front-foot contacts during this initial rearing phase [s].
BIPED_LIFTOFF_SECONDS = 2.0
#: Quadruped success needs a mean planar velocity tracking error at most this [m/s].
SUCCESS_MAX_TRACKING_ERROR = 0.25

#: Domain randomization at rand_power = 1 (larger rand_power extrapolates):
#: joint position noise [rad] and joint velocity noise [rad/s], uniform, scaled by rand_power * curriculum,
JOINT_POSITION_NOISE = 0.2
JOINT_VELOCITY_NOISE = 0.5
#: foot friction multiplier FOOT_FRICTION_MAX_FACTOR ** (rand_power * uniform(-1, 1)) (always positive),
FOOT_FRICTION_MAX_FACTOR = 1.3
#: payload added to the trunk [kg], uniform in [0, rand_power * MAX_ADDED_TRUNK_MASS].
MAX_ADDED_TRUNK_MASS = 1.5

WORLD_DOWN = np.array([0.0, 0.0, -1.0])
#: Gravity direction in the trunk frame for the target posture of each mode: level trunk for
#: the quadruped, trunk pitched 90 degrees nose-up for the biped.
QUADRUPED_UPRIGHT_GRAVITY = np.array([0.0, 0.0, -1.0])
BIPED_UPRIGHT_GRAVITY = np.array([-1.0, 0.0, 0.0])
#: Trunk axis that points where the robot walks: +x for the quadruped, the belly (-z) for the biped.
QUADRUPED_FORWARD_AXIS = np.array([1.0, 0.0, 0.0])
BIPED_FORWARD_AXIS = np.array([0.0, 0.0, -1.0])
#: Angular-rate scale of the stability score [rad/s].
STABILITY_RATE_SCALE = 2.0

CommandRange = tuple[tuple[float, float], tuple[float, float], tuple[float, float]]


def _build_model(ctrl_type: str) -> mujoco.MjModel:
    """Compile go1.xml, turning the position servos into unit-ctrl motors for torque control."""
    spec = mujoco.MjSpec.from_file(MODEL_PATH)
    if ctrl_type == "torque":
        for actuator in spec.actuators:
            actuator.set_to_motor()
            actuator.inheritrange = 0.0
            actuator.ctrlrange = [-1.0, 1.0]
            actuator.forcelimited = mujoco.mjtLimited.mjLIMITED_FALSE
            actuator.gear[0] = MOTOR_GEARS[actuator.name.split("_", 1)[1]]
        for key in spec.keys:
            key.ctrl = np.zeros(len(spec.actuators))
    return spec.compile()


def _quaternion_to_euler(w: float, x: float, y: float, z: float) -> tuple[float, float, float]:
    """Roll, pitch, yaw [rad] (intrinsic Z-Y-X convention) of a unit quaternion."""
    roll = math.atan2(2.0 * (w * x + y * z), 1.0 - 2.0 * (x * x + y * y))
    pitch = math.asin(max(-1.0, min(1.0, 2.0 * (w * y - z * x))))
    yaw = math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))
    return roll, pitch, yaw


class Go1MujocoEnv(MujocoEnv, EzPickle):
    """Go1-style quadruped (or hind-leg biped) tracking a commanded planar velocity.

    Args:
        ctrl_type: "position" (servo targets around the home pose) or "torque" (motors).
        biped: stand (and walk, given commands) on the hind legs instead of four legs.
        frame_skip: physics steps (0.002 s each) per control step.
        rand_power: domain-randomization strength >= 0 (1 = nominal full strength); see ``set_rand_power``.
        max_episode_seconds: episode length [s]; the env returns ``truncated=True`` there.
        command_range: (min, max) of commanded vx [m/s], vy [m/s] and wz [rad/s], sampled once
            per episode; defaults to ``QUADRUPED_COMMAND_RANGE`` / ``BIPED_COMMAND_RANGE``.
        curriculum_episodes: finished episodes over which the curriculum factor ramps from 0
            to 1; 0 applies the full joint noise from the first episode.
        action_scale: position control only, joint-target offset per unit action [rad];
            defaults to ``QUADRUPED_ACTION_SCALE`` / ``BIPED_ACTION_SCALE``.
        render_mode: Gymnasium render mode; rendering needs an OpenGL backend only when used.
        width, height: rendered image size [pixels].
    """

    metadata = {"render_modes": ["human", "rgb_array", "depth_array", "rgbd_tuple"]}

    def __init__(
        self,
        ctrl_type: str = "position",
        biped: bool = False,
        frame_skip: int = 10,
        rand_power: float = 0.0,
        max_episode_seconds: float = 15.0,
        command_range: CommandRange | None = None,
        curriculum_episodes: int = 1000,
        action_scale: float | None = None,
        render_mode: str | None = None,
        width: int = 480,
        height: int = 480,
    ) -> None:
        if ctrl_type not in ("position", "torque"):
            raise ValueError(f"ctrl_type must be 'position' or 'torque', got {ctrl_type!r}")
        if max_episode_seconds <= 0:
            raise ValueError(f"max_episode_seconds must be positive, got {max_episode_seconds}")
        if curriculum_episodes < 0:
            raise ValueError(f"curriculum_episodes must be >= 0, got {curriculum_episodes}")
        EzPickle.__init__(
            self, ctrl_type, biped, frame_skip, rand_power, max_episode_seconds,
            command_range, curriculum_episodes, action_scale, render_mode, width, height,
        )
        self.ctrl_type = ctrl_type
        self.biped = bool(biped)
        self.max_episode_seconds = float(max_episode_seconds)
        self.curriculum_episodes = int(curriculum_episodes)
        default_scale = BIPED_ACTION_SCALE if self.biped else QUADRUPED_ACTION_SCALE
        self.action_scale = float(action_scale if action_scale is not None else default_scale)
        default_range = BIPED_COMMAND_RANGE if self.biped else QUADRUPED_COMMAND_RANGE
        self._command_low, self._command_high = np.array(
            command_range if command_range is not None else default_range, dtype=np.float64
        ).T
        self.rand_power = 0.0
        self.set_rand_power(rand_power)

        observation_space = spaces.Box(-np.inf, np.inf, shape=(OBSERVATION_SIZE,), dtype=np.float32)
        MujocoEnv.__init__(
            self,
            MODEL_PATH,
            frame_skip,
            observation_space,
            render_mode=render_mode,
            width=width,
            height=height,
            default_camera_config={"trackbodyid": 1, "distance": 1.5, "elevation": -20.0},
        )
        self.metadata = {**self.metadata, "render_fps": int(np.round(1.0 / self.dt))}
        self.max_episode_steps = int(round(self.max_episode_seconds / self.dt))
        self._plain_dt = float(self.dt)  # fixed (the timestep is never randomized): reports skip MuJoCo's struct

        home = self.model.key("home")
        self._home_qpos = home.qpos.copy()
        self._home_joint_pos = home.qpos[7:].copy()
        joint_range = self.model.jnt_range[1:].copy()
        self._joint_low, self._joint_high = joint_range.T
        centre, half = joint_range.mean(axis=1), 0.5 * (joint_range[:, 1] - joint_range[:, 0])
        self._soft_low = centre - SOFT_JOINT_LIMIT_FRACTION * half
        self._soft_high = centre + SOFT_JOINT_LIMIT_FRACTION * half

        self._trunk_id = self.model.body("trunk").id
        self._calf_ids = np.array([self.model.body(f"{leg}_calf").id for leg in LEG_NAMES])
        # Flat positions in cfrc_ext (nbody x 6) of each calf's force, for one cheap take() per report.
        self._calf_force_positions = (self._calf_ids[:, None] * 6 + np.arange(3, 6)).ravel()
        self._foot_geom_ids = np.array([self.model.geom(f"{leg}_foot").id for leg in LEG_NAMES])
        self._nominal_foot_friction = self.model.geom_friction[self._foot_geom_ids, 0].copy()
        self._nominal_trunk_mass = float(self.model.body_mass[self._trunk_id])
        self._nominal_trunk_inertia = self.model.body_inertia[self._trunk_id].copy()

        self._upright_gravity = BIPED_UPRIGHT_GRAVITY if self.biped else QUADRUPED_UPRIGHT_GRAVITY
        self._plain_upright_gravity = self._upright_gravity.tolist()
        self._forward_axis = BIPED_FORWARD_AXIS if self.biped else QUADRUPED_FORWARD_AXIS
        self._healthy_z = BIPED_HEALTHY_Z if self.biped else QUADRUPED_HEALTHY_Z
        legs_in_air_time = HIND_LEGS if self.biped else LEG_NAMES
        self._air_time_feet = np.array([leg in legs_in_air_time for leg in LEG_NAMES])
        self._front_feet = np.array([leg in FRONT_LEGS for leg in LEG_NAMES])
        self._cost_weights = {**COST_WEIGHTS, **BIPED_COST_WEIGHTS} if self.biped else COST_WEIGHTS

        self.finished_episodes = 0
        self.command = np.zeros(3)
        self._clear_episode_state()

    # ------------------------------------------------------------------ Gymnasium API

    def _initialize_simulation(self) -> tuple[mujoco.MjModel, mujoco.MjData]:
        model = _build_model(self.ctrl_type)
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, self.width)
        model.vis.global_.offheight = max(model.vis.global_.offheight, self.height)
        return model, mujoco.MjData(model)

    def _set_action_space(self) -> spaces.Box:
        self.action_space = spaces.Box(-1.0, 1.0, shape=(self.model.nu,), dtype=np.float32)
        return self.action_space

    def reset_model(self) -> np.ndarray:
        """Randomize physics and the initial joint state, sample a command, return the observation."""
        self._randomize_physics()
        noise = self.rand_power * self.curriculum_progress
        joint_pos = self._home_joint_pos + noise * JOINT_POSITION_NOISE * self.np_random.uniform(-1, 1, self.model.nu)
        joint_vel = noise * JOINT_VELOCITY_NOISE * self.np_random.uniform(-1, 1, self.model.nu)
        qpos = self._home_qpos.copy()
        qpos[7:] = np.clip(joint_pos, self._joint_low, self._joint_high)
        qvel = np.zeros(self.model.nv)
        qvel[6:] = joint_vel
        self.set_state(qpos, qvel)
        mujoco.mj_rnePostConstraint(self.model, self.data)  # contact forces for the first observation

        self.command = self.np_random.uniform(self._command_low, self._command_high)
        self._clear_episode_state()
        return self._get_obs()

    def _clear_episode_state(self) -> None:
        """Zero the per-episode bookkeeping (step counter, previous action, air times, success trackers)."""
        self._step_count = 0
        self._last_action = np.zeros(self.model.nu)
        self._feet_air_time = np.zeros(len(LEG_NAMES))
        self._front_feet_touched_after_liftoff = False
        self._tracking_error_sum = 0.0
        self._bad_qacc_warnings = self.data.warning[mujoco.mjtWarning.mjWARN_BADQACC].number

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        joint_vel_before = self.data.qvel[6:].copy()
        self.do_simulation(self._action_to_ctrl(action), self.frame_skip)
        self._step_count += 1

        contacts = self._foot_contacts()
        touchdown_air_time = self._update_air_time(contacts)
        if self.biped and self._step_count * self.dt > BIPED_LIFTOFF_SECONDS:
            self._front_feet_touched_after_liftoff |= bool(np.any(contacts & self._front_feet))

        healthy = self._state_is_healthy()
        if healthy:
            planar_velocity, yaw_rate = self._heading_velocities()
            self._tracking_error_sum += float(np.linalg.norm(self.command[:2] - planar_velocity))
            reward_components = self._reward_components(planar_velocity, yaw_rate, touchdown_air_time)
            cost_components = self._cost_components(action, joint_vel_before, contacts)
        else:  # diverged physics: no meaningful terms to score
            reward_components = dict.fromkeys(REWARD_WEIGHTS, 0.0)
            cost_components = dict.fromkeys(self._cost_weights, 0.0)
        reward = max(0.0, sum(reward_components.values()) - sum(cost_components.values()))
        self._last_action = action

        terminated = not (healthy and self._posture_is_healthy())
        truncated = not terminated and self._step_count >= self.max_episode_steps
        info: dict[str, Any] = {
            "reward_components": reward_components,
            "cost_components": cost_components,
        }
        if terminated or truncated:
            self.finished_episodes += 1
            info["is_success"] = truncated and self._goal_met()
        if self.render_mode == "human":
            self.render()
        return self._get_obs(), reward, terminated, truncated, info

    # ------------------------------------------------------------------ randomization

    @property
    def curriculum_progress(self) -> float:
        """Curriculum factor in [0, 1]: finished episodes / curriculum_episodes, capped at 1."""
        if self.curriculum_episodes == 0:
            return 1.0
        return min(1.0, self.finished_episodes / self.curriculum_episodes)

    def set_rand_power(self, value: float) -> None:
        """Set the domain-randomization strength (>= 0, 1 = nominal full strength) from the next reset.

        Joint position/velocity reset noise scales with ``rand_power * curriculum_progress``;
        foot friction and added trunk mass scale with ``rand_power``.
        """
        value = float(value)
        if not (math.isfinite(value) and value >= 0.0):
            raise ValueError(f"rand_power must be a finite value >= 0, got {value}")
        self.rand_power = value

    def _randomize_physics(self) -> None:
        """Draw foot friction and trunk payload for this episode (always draws, for a stable RNG stream)."""
        friction_exponent = self.rand_power * self.np_random.uniform(-1, 1, len(LEG_NAMES))
        friction_scale = FOOT_FRICTION_MAX_FACTOR**friction_exponent
        self.model.geom_friction[self._foot_geom_ids, 0] = self._nominal_foot_friction * friction_scale
        added_mass = self.rand_power * MAX_ADDED_TRUNK_MASS * self.np_random.uniform()
        mass_ratio = (self._nominal_trunk_mass + added_mass) / self._nominal_trunk_mass
        self.model.body_mass[self._trunk_id] = self._nominal_trunk_mass * mass_ratio
        self.model.body_inertia[self._trunk_id] = self._nominal_trunk_inertia * mass_ratio

    # ------------------------------------------------------------------ state helpers

    def _action_to_ctrl(self, action: np.ndarray) -> np.ndarray:
        if self.ctrl_type == "torque":
            return action
        return np.clip(self._home_joint_pos + self.action_scale * action, self._joint_low, self._joint_high)

    def _trunk_rotation(self) -> np.ndarray:
        """World-from-trunk rotation matrix (3x3)."""
        return self.data.xmat[self._trunk_id].reshape(3, 3)

    def _projected_gravity(self) -> np.ndarray:
        """Unit gravity direction expressed in the trunk frame."""
        return self._trunk_rotation().T @ WORLD_DOWN

    def _world_angular_velocity(self) -> np.ndarray:
        """Trunk angular velocity [rad/s] in the world frame (free-joint qvel holds it in the trunk frame)."""
        return self._trunk_rotation() @ self.data.qvel[3:6]

    def _heading_velocities(self) -> tuple[np.ndarray, float]:
        """Planar base velocity [m/s] in the heading frame and yaw rate [rad/s]."""
        forward = self._trunk_rotation() @ self._forward_axis
        heading = math.atan2(forward[1], forward[0])
        cos_h, sin_h = math.cos(heading), math.sin(heading)
        vx, vy = self.data.qvel[0], self.data.qvel[1]
        planar = np.array([cos_h * vx + sin_h * vy, -sin_h * vx + cos_h * vy])
        return planar, float(self._world_angular_velocity()[2])

    def _plain_trunk_rotation(self) -> list[float]:
        """:meth:`_trunk_rotation` as 9 plain floats, row-major (the reporting methods: no tiny numpy ops)."""
        return self.data.xmat[self._trunk_id].tolist()

    def _plain_world_angular_velocity(self, rotation: list[float], trunk_rates: Sequence[float] | None = None
                                      ) -> list[float]:
        """:meth:`_world_angular_velocity` in plain floats, from :meth:`_plain_trunk_rotation`
        and the free joint's angular velocity (``qvel[3:6]``, read here unless given)."""
        wx, wy, wz = self.data.qvel[3:6].tolist() if trunk_rates is None else trunk_rates
        r = rotation
        return [r[0] * wx + r[1] * wy + r[2] * wz, r[3] * wx + r[4] * wy + r[5] * wz, r[6] * wx + r[7] * wy + r[8] * wz]

    def _plain_foot_contacts(self) -> dict[str, bool]:
        """:meth:`_foot_contacts` as plain bools, by leg name."""
        forces = iter(self.data.cfrc_ext.take(self._calf_force_positions).tolist())  # x, y, z per leg
        hypot = math.hypot
        return {leg: hypot(next(forces), next(forces), next(forces)) > CONTACT_FORCE_THRESHOLD for leg in LEG_NAMES}

    def _foot_contacts(self) -> np.ndarray:
        """Boolean ground contact per leg (FR, FL, RR, RL) from the external force on each calf."""
        contact_forces = np.linalg.norm(self.data.cfrc_ext[self._calf_ids, 3:], axis=1)
        return contact_forces > CONTACT_FORCE_THRESHOLD

    def _update_air_time(self, contacts: np.ndarray) -> np.ndarray:
        """Advance per-foot air time; return the air time [s] of feet touching down this step, else 0."""
        was_airborne = self._feet_air_time > 0.0
        self._feet_air_time += self.dt
        touchdown_air_time = np.where(contacts & was_airborne, self._feet_air_time, 0.0)
        self._feet_air_time[contacts] = 0.0
        return touchdown_air_time

    def _state_is_healthy(self) -> bool:
        """True when the simulation state is finite and MuJoCo did not reset a diverged step."""
        finite = bool(np.all(np.isfinite(self.data.qpos)) and np.all(np.isfinite(self.data.qvel)))
        return finite and self.data.warning[mujoco.mjtWarning.mjWARN_BADQACC].number == self._bad_qacc_warnings

    def _posture_is_healthy(self) -> bool:
        """Base height inside the healthy range and trunk tilt within the mode's limits."""
        z_low, z_high = self._healthy_z
        if not z_low < self.data.qpos[2] < z_high:
            return False
        gravity = self._projected_gravity()
        trunk_up_z = -gravity[2]  # world-z component of the trunk's up axis
        if self.biped:
            return abs(gravity[1]) < math.sin(BIPED_MAX_ROLL) and trunk_up_z > -math.sin(BIPED_MAX_BACKWARD_FALL)
        return trunk_up_z > math.cos(QUADRUPED_MAX_TILT)

    # ------------------------------------------------------------------ reward

    def _goal_met(self) -> bool:
        """Biped: no front-foot touchdown after lift-off; quadruped: mean tracking error small enough."""
        if self.biped:
            return not self._front_feet_touched_after_liftoff
        return self._tracking_error_sum / self._step_count <= SUCCESS_MAX_TRACKING_ERROR

    def _reward_components(
        self, planar_velocity: np.ndarray, yaw_rate: float, touchdown_air_time: np.ndarray
    ) -> dict[str, float]:
        lin_error = float(np.sum((self.command[:2] - planar_velocity) ** 2))
        ang_error = (self.command[2] - yaw_rate) ** 2
        air_time_gain = 0.0
        if np.linalg.norm(self.command[:2]) > AIR_TIME_MIN_COMMAND:
            touchdowns = (touchdown_air_time > 0) & self._air_time_feet
            air_time_gain = float(np.sum((touchdown_air_time - FEET_AIR_TIME_TARGET)[touchdowns]))
        raw = {
            "tracking_lin_vel": math.exp(-lin_error / TRACKING_SIGMA),
            "tracking_ang_vel": math.exp(-ang_error / TRACKING_SIGMA),
            "feet_air_time": air_time_gain,
        }
        return {name: REWARD_WEIGHTS[name] * value for name, value in raw.items()}

    def _cost_components(
        self, action: np.ndarray, joint_vel_before: np.ndarray, contacts: np.ndarray
    ) -> dict[str, float]:
        joint_pos, joint_vel = self.data.qpos[7:], self.data.qvel[6:]
        gravity = self._projected_gravity()
        world_angular = self._world_angular_velocity()
        limit_violation = np.clip(self._soft_low - joint_pos, 0, None) + np.clip(joint_pos - self._soft_high, 0, None)
        raw = {
            "torque": np.sum(self.data.qfrc_actuator[6:] ** 2),
            "vertical_velocity": self.data.qvel[2] ** 2,
            "roll_pitch_rate": np.sum(world_angular[:2] ** 2),
            "action_rate": np.sum((action - self._last_action) ** 2),
            "joint_limit": np.sum(limit_violation),
            "joint_acceleration": np.sum(((joint_vel - joint_vel_before) / self.dt) ** 2),
            # squared tilt away from the mode's upright posture: |g|^2 - (g . g_upright)^2
            "orientation": 1.0 - float(gravity @ self._upright_gravity) ** 2,
            "default_pose": np.sum(np.abs(joint_pos - self._home_joint_pos)),
        }
        if self.biped:
            raw["front_feet_contact"] = np.sum(contacts & self._front_feet)
        return {name: float(self._cost_weights[name] * value) for name, value in raw.items()}

    def _get_obs(self) -> np.ndarray:
        rotation = self._trunk_rotation()
        command_scale = np.array([LINEAR_VELOCITY_SCALE, LINEAR_VELOCITY_SCALE, ANGULAR_VELOCITY_SCALE])
        obs = np.concatenate(
            [
                LINEAR_VELOCITY_SCALE * (rotation.T @ self.data.qvel[:3]),
                ANGULAR_VELOCITY_SCALE * self.data.qvel[3:6],
                rotation.T @ WORLD_DOWN,
                command_scale * self.command,
                self.data.qpos[7:] - self._home_joint_pos,
                JOINT_VELOCITY_SCALE * self.data.qvel[6:],
                self._last_action,
            ]
        )
        return np.nan_to_num(obs, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)

    # ------------------------------------------------------------------ state protocol (plain Python values)

    #: The three methods below build new plain values on every call: the callback need not copy them.
    rtsave_results_are_fresh = True

    def get_environment_summary(self) -> dict[str, Any]:
        """Static configuration: class, control type, mode, timing [s] and randomization strength."""
        return {
            "environment_class": type(self).__name__,
            "ctrl_type": self.ctrl_type,
            "biped": self.biped,
            "frame_skip": int(self.frame_skip),
            "dt": self._plain_dt,
            "physics_timestep_s": float(self.model.opt.timestep),
            "max_episode_seconds": self.max_episode_seconds,
            "rand_power": self.rand_power,
        }

    def get_detailed_episode_info(self) -> dict[str, Any]:
        """Current step, time left [s], robot pose/velocities (world frame) and foot contacts."""
        qpos, qvel = self.data.qpos.tolist(), self.data.qvel.tolist()  # plain floats: cheap to read and copy
        x, y, z, w, qx, qy, qz = qpos[:7]
        norm = math.hypot(w, qx, qy, qz)
        w, qx, qy, qz = w / norm, qx / norm, qy / norm, qz / norm
        roll, pitch, yaw = _quaternion_to_euler(w, qx, qy, qz)
        step = self._step_count
        return {
            "episode_info": {
                "current_step": step,
                "time_remaining": max(0.0, self.max_episode_seconds - step * self._plain_dt),
            },
            "robot_state": {
                "position": {"x": x, "y": y, "z": z},
                "orientation": {"w": w, "x": qx, "y": qy, "z": qz, "roll": roll, "pitch": pitch, "yaw": yaw},
                "velocity": {"linear": qvel[:3],
                             "angular": self._plain_world_angular_velocity(self._plain_trunk_rotation(), qvel[3:6])},
                "joint_positions": qpos[7:],
                "joint_velocities": qvel[6:],
            },
            "foot_contacts": self._plain_foot_contacts(),
        }

    def get_performance_metrics(self) -> dict[str, float]:
        """Episode progress (elapsed / max time) and stability score, both in [0, 1].

        stability_score = max(0, cos(tilt from the mode's upright posture))
                          * exp(-(roll rate^2 + pitch rate^2) / STABILITY_RATE_SCALE^2),
        with the rates about the world's horizontal axes in rad/s.
        """
        rotation = self._plain_trunk_rotation()
        # Projected gravity is the trunk frame's view of WORLD_DOWN (0, 0, -1): minus the rotation's last row.
        up_x, up_y, up_z = self._plain_upright_gravity
        alignment = max(0.0, -(rotation[6] * up_x + rotation[7] * up_y + rotation[8] * up_z))
        roll_rate, pitch_rate, _ = self._plain_world_angular_velocity(rotation)
        rate_penalty = (roll_rate**2 + pitch_rate**2) / STABILITY_RATE_SCALE**2
        return {
            "episode_progress": min(1.0, self._step_count / self.max_episode_steps),
            "stability_score": alignment * math.exp(-rate_penalty),
        }

    # ------------------------------------------------------------------ exact-resume protocol

    def get_env_state(self) -> dict[str, Any]:
        """Everything the next steps depend on, for a checkpoint (picklable copies).

        The full MuJoCo integration state (positions, velocities, controls, solver warm
        start, time), this episode's randomized physics, the episode bookkeeping and
        the env's RNG state.
        """
        physics = np.empty(mujoco.mj_stateSize(self.model, _INTEGRATION_STATE))
        mujoco.mj_getState(self.model, self.data, physics, _INTEGRATION_STATE)
        return {
            "physics": physics,
            "foot_friction": self.model.geom_friction[self._foot_geom_ids, 0].copy(),
            "trunk_mass": float(self.model.body_mass[self._trunk_id]),
            "trunk_inertia": self.model.body_inertia[self._trunk_id].copy(),
            "command": self.command.copy(),
            "rand_power": self.rand_power,
            "finished_episodes": self.finished_episodes,
            "step_count": self._step_count,
            "last_action": self._last_action.copy(),
            "feet_air_time": self._feet_air_time.copy(),
            "front_feet_touched_after_liftoff": self._front_feet_touched_after_liftoff,
            "tracking_error_sum": self._tracking_error_sum,
            "bad_qacc_warnings": self._bad_qacc_warnings,
            "rng": self.np_random.bit_generator.state,
        }

    def set_env_state(self, state: dict[str, Any]) -> None:
        """Continue exactly from a :meth:`get_env_state` of an env built with the same arguments."""
        mujoco.mj_setState(self.model, self.data, np.asarray(state["physics"], dtype=np.float64), _INTEGRATION_STATE)
        self.model.geom_friction[self._foot_geom_ids, 0] = state["foot_friction"]
        self.model.body_mass[self._trunk_id] = state["trunk_mass"]
        self.model.body_inertia[self._trunk_id] = state["trunk_inertia"]
        mujoco.mj_forward(self.model, self.data)  # derived quantities (contacts) for the protocol readers
        self.command = np.array(state["command"], dtype=np.float64)
        self.rand_power = float(state["rand_power"])
        self.finished_episodes = int(state["finished_episodes"])
        self._step_count = int(state["step_count"])
        self._last_action = np.array(state["last_action"], dtype=np.float64)
        self._feet_air_time = np.array(state["feet_air_time"], dtype=np.float64)
        self._front_feet_touched_after_liftoff = bool(state["front_feet_touched_after_liftoff"])
        self._tracking_error_sum = float(state["tracking_error_sum"])
        self._bad_qacc_warnings = int(state["bad_qacc_warnings"])
        self.np_random.bit_generator.state = state["rng"]
