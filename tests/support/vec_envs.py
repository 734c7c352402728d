"""VecEnvs that count what the callback asks of them."""

from __future__ import annotations

from stable_baselines3.common.vec_env import SubprocVecEnv


class CountingSubprocVecEnv(SubprocVecEnv):
    """A SubprocVecEnv that counts its ``env_method`` calls (each is a round trip to every
    worker), and keeps the name of the method of each."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.env_methods_called: list[str] = []

    @property
    def env_method_calls(self) -> int:
        return len(self.env_methods_called)

    def env_method(self, method_name: str, *args, **kwargs):
        self.env_methods_called.append(method_name)
        return super().env_method(method_name, *args, **kwargs)
