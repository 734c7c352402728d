"""Loading a checkpoint never unpickles our own files; the pickle-free state format round-trips exactly."""

from __future__ import annotations

import hashlib
import io
import json
import math
import pickle
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

from conftest import PROJECT_ROOT
from resume_harness import NoisyPointEnv, OpaqueStateEnv
from rtsave_async import RealTimeSavingCallback, list_snapshot_files
from rtsave_async.checkpoints import CheckpointError, load_checkpoint
from rtsave_async.checkpoints.state_format import UnsafeStateError, decode_npz, encode_npz


class CreatesFile:
    """Unpickling this creates ``path``: what a hostile pickle could do instead."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return Path.touch, (self.path,)


def train_checkpoint(save_dir: Path, env_class: type = NoisyPointEnv) -> Path:
    """A PPO + VecNormalize checkpoint at timestep 128; its JSON."""
    model = PPO("MlpPolicy", VecNormalize(make_vec_env(env_class, n_envs=2, seed=0)), n_steps=64, batch_size=64,
                n_epochs=1, seed=0, device="cpu")
    model.learn(128, callback=RealTimeSavingCallback(save_dir, save_frequency=10_000, checkpoint_frequency=10_000,
                                                     save_hyperparameters=False))
    return list_snapshot_files(save_dir, "checkpoints")[-1]


def replace_attachment(json_path: Path, key: str, new_key: str, data: bytes) -> None:
    """Swap an attachment for ``data`` and list it in the JSON, as someone writing both files could."""
    document = json.loads(json_path.read_bytes())
    metadata = document[0] if isinstance(document, list) else document
    old = metadata["files"].pop(key)
    Path(old["path"]).unlink()
    name = old["name"].rsplit("." + key, 1)[0] + "." + new_key
    path = json_path.with_name(name)
    path.write_bytes(data)
    metadata["files"][new_key] = {"name": name, "path": str(path), "bytes": len(data),
                                  "sha256": hashlib.sha256(data).hexdigest()}
    json_path.write_text(json.dumps(document))


def env() -> VecNormalize:
    return VecNormalize(make_vec_env(NoisyPointEnv, n_envs=2, seed=0))


@pytest.fixture
def hostile_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    """A checkpoint whose state and VecNormalize files are pickles that create a marker file."""
    json_path = train_checkpoint(tmp_path / "run")
    marker = tmp_path / "payload_ran"
    payload = pickle.dumps(CreatesFile(marker))
    replace_attachment(json_path, "state.npz", "state.pkl", payload)
    replace_attachment(json_path, "vecnormalize.npz", "vecnormalize.pkl", payload)
    return json_path, marker


def test_load_checkpoint_refuses_a_pickled_state_file_without_running_it(hostile_checkpoint) -> None:
    json_path, marker = hostile_checkpoint
    with pytest.raises(CheckpointError, match=r"state\.pkl: a pickle .* load_checkpoint\(\.\.\., allow_pickle=True\)"):
        load_checkpoint(json_path, env())
    assert not marker.exists()


def test_rtsave_test_does_not_run_a_pickled_state_file(hostile_checkpoint) -> None:
    json_path, marker = hostile_checkpoint
    tested = subprocess.run([sys.executable, "-m", "rtsave_async", "test", "--model_path", str(json_path),
                             "--episodes", "1", "--algo", "ppo"], capture_output=True, text=True, timeout=600,
                            env={"PYTHONPATH": str(PROJECT_ROOT), "PATH": "/usr/bin:/bin"}, cwd=json_path.parent)
    assert not marker.exists()
    assert tested.returncode == 0 or "--allow_pickle" in tested.stderr, tested.stderr


def test_an_object_array_in_a_state_npz_is_refused_without_running_it(tmp_path: Path) -> None:
    json_path = train_checkpoint(tmp_path / "run")
    marker = tmp_path / "payload_ran"
    blob = io.BytesIO()
    np.savez(blob, **{"value.tree": np.frombuffer(b'{"__ndarray__":0}', np.uint8),
                      "value.0": np.array([CreatesFile(marker)], dtype=object)})
    replace_attachment(json_path, "state.npz", "state.npz", blob.getvalue())
    with pytest.raises(CheckpointError, match=r"state\.npz: unreadable .*allow_pickle=False"):
        load_checkpoint(json_path, env())
    assert not marker.exists()


@pytest.mark.parametrize("state", [[1, 2], {"rng": 5}, {"rng": {"python": (3, (1, 2), None)}}])
def test_a_state_file_of_the_wrong_shape_gives_a_clear_error(tmp_path: Path, state) -> None:
    json_path = train_checkpoint(tmp_path / "run")
    replace_attachment(json_path, "state.npz", "state.npz", encode_npz(state))
    with pytest.raises(CheckpointError, match=r"state\.npz: does not hold a checkpoint state"):
        load_checkpoint(json_path, env())


def test_a_trusted_old_checkpoint_loads_with_allow_pickle(tmp_path: Path) -> None:
    json_path = train_checkpoint(tmp_path / "run")
    statistics = env()
    statistics.obs_rms.mean[:] = 0.25
    state = {"rng": {"python": __import__("random").getstate(), "numpy": np.random.get_state(),
                     "torch": th.get_rng_state()}, "env_states": None, "vec_normalize_returns": np.ones(2),
             "callback_state": {"episodes": None}}
    replace_attachment(json_path, "state.npz", "state.pkl", pickle.dumps(state))
    replace_attachment(json_path, "vecnormalize.npz", "vecnormalize.pkl", pickle.dumps(statistics))
    resumed = load_checkpoint(json_path, env(), allow_pickle=True)
    vec_normalize = resumed.model.get_vec_normalize_env()
    assert (vec_normalize.obs_rms.mean == 0.25).all() and (vec_normalize.returns == 1).all()


def test_vec_normalize_statistics_and_settings_come_back_from_the_npz(tmp_path: Path) -> None:
    model = PPO("MlpPolicy", VecNormalize(make_vec_env(NoisyPointEnv, n_envs=2, seed=0), clip_obs=5.0, gamma=0.9),
                n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.learn(128, callback=RealTimeSavingCallback(tmp_path, save_frequency=10_000, checkpoint_frequency=10_000,
                                                     save_hyperparameters=False))
    saved = model.get_vec_normalize_env()
    restored = load_checkpoint(list_snapshot_files(tmp_path, "checkpoints")[-1], env()).model.get_vec_normalize_env()
    for name in ("clip_obs", "gamma", "epsilon", "training", "norm_obs", "norm_reward"):
        assert getattr(restored, name) == getattr(saved, name), name
    for field in ("mean", "var", "count"):
        np.testing.assert_array_equal(getattr(restored.obs_rms, field), getattr(saved.obs_rms, field))
        np.testing.assert_array_equal(getattr(restored.ret_rms, field), getattr(saved.ret_rms, field))
    np.testing.assert_array_equal(restored.returns, saved.returns)


def test_an_env_state_the_format_cannot_hold_gives_a_checkpoint_without_env_states(tmp_path: Path) -> None:
    unsafe = r"keeps no env states, .*\['env_states'\]\[0\]\['solver'\]: a builtins\.object"
    with pytest.warns(UserWarning, match=unsafe):
        json_path = train_checkpoint(tmp_path, OpaqueStateEnv)
    document = json.loads(json_path.read_bytes())
    metadata = document[0] if isinstance(document, list) else document
    assert metadata["contents"]["env_states"] is False
    assert not load_checkpoint(json_path, env()).exact


STATES = [
    {"python": __import__("random").getstate(), "numpy": np.random.get_state(), "torch": th.get_rng_state()},
    {"pcg": np.random.default_rng(7).bit_generator.state, "big": 2**200, "neg0": -0.0, "nan": math.nan,
     "inf": -math.inf, "bytes": b"\x00\xff", "none": None},
    {1: "int key", (2, "x"): [np.float32(1.5), np.int8(-3), np.bool_(True)], "__tuple__": "a tag-like key"},
    OrderedDict(b=np.arange(6, dtype=np.uint16).reshape(2, 3), a=np.zeros(0)),
    [th.arange(4, dtype=th.float64), np.array([(1, 2.0)], dtype=[("i", "i4"), ("f", "f8")])],
]


@pytest.mark.parametrize("value", STATES, ids=range(len(STATES)))
def test_state_format_round_trips_types_and_values_exactly(value) -> None:
    restored = decode_npz(encode_npz(value))
    assert type(restored) is type(value)
    assert repr(restored) == repr(value)  # same types all the way down (a tuple stays a tuple, float32 stays one)


@pytest.mark.parametrize("value, where", [
    ({"a": [1, object()]}, r"state\['a'\]\[1\]: a builtins\.object"),
    ({"x": np.array([{}], dtype=object)}, r"state\['x'\]: a numpy array of Python objects"),
    ({"t": th.zeros(2, dtype=th.bfloat16)}, r"state\['t'\]: a torch\.bfloat16 tensor"),
    ({"set": {1, 2}}, r"state\['set'\]: a builtins\.set"),
])
def test_state_format_names_what_it_cannot_hold(value, where: str) -> None:
    with pytest.raises(UnsafeStateError, match=where):
        encode_npz(value)
    cyclic: list = []
    cyclic.append(cyclic)
    with pytest.raises(UnsafeStateError, match="nested too deeply"):
        encode_npz(cyclic)
