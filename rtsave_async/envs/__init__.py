"""Gymnasium environments shipped with rtsave_async; importing this registers ``rtsave/Go1-v0``."""

from gymnasium.envs.registration import register, registry

from rtsave_async.envs.go1 import Go1MujocoEnv

GO1_ENV_ID = "rtsave/Go1-v0"

if GO1_ENV_ID not in registry:
    # No max_episode_steps: the env truncates itself at max_episode_seconds.
    register(id=GO1_ENV_ID, entry_point="rtsave_async.envs.go1:Go1MujocoEnv")

__all__ = ["GO1_ENV_ID", "Go1MujocoEnv"]
