"""``rtsave checkpoint export``: SB3's own loaders and rl_zoo3 read the exported files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from stable_baselines3 import SAC
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

from cli_support import child_env, rtsave
from rtsave_async import RealTimeSavingCallback, list_snapshot_files
from rtsave_async.checkpoints import load_checkpoint
from rtsave_async.checkpoints.format import read_checkpoint_metadata

ENV_ID = "Pendulum-v1"


def sac_checkpoint(save_dir: Path) -> Path:
    """A SAC checkpoint with VecNormalize statistics and a replay buffer (one env, as rl_zoo3 trains it)."""
    env = VecNormalize(make_vec_env(ENV_ID, n_envs=1, seed=0))
    model = SAC("MlpPolicy", env, buffer_size=1000, learning_starts=50, batch_size=32, seed=0, device="cpu",
                policy_kwargs={"net_arch": [16]})
    model.learn(150, callback=RealTimeSavingCallback(save_dir, save_frequency=10_000, checkpoint_frequency=10_000,
                                                     save_hyperparameters=False))
    return list_snapshot_files(save_dir, "checkpoints")[-1]


def test_export_sb3_layout_loads_with_sb3_itself(tmp_path: Path) -> None:
    checkpoint = sac_checkpoint(tmp_path / "run")
    result = rtsave("checkpoint", "export", str(checkpoint), "out", "--layout", "sb3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    assert sorted(path.name for path in out.iterdir()) == ["model.zip", "replay_buffer.pkl", "vecnormalize.pkl"]
    expected = load_checkpoint(checkpoint, make_vec_env(ENV_ID, n_envs=1), device="cpu", restore_rng=False).model

    model = SAC.load(out / "model.zip", device="cpu")
    model.load_replay_buffer(out / "replay_buffer.pkl")
    vec_normalize = VecNormalize.load(str(out / "vecnormalize.pkl"), make_vec_env(ENV_ID, n_envs=1))

    assert model.num_timesteps == expected.num_timesteps == 150
    buffer, saved = model.replay_buffer, expected.replay_buffer
    assert (buffer.pos, buffer.full) == (saved.pos, saved.full) == (150, False)
    for name in ("observations", "next_observations", "actions", "rewards", "dones"):
        np.testing.assert_array_equal(getattr(buffer, name)[:150], getattr(saved, name)[:150])
    np.testing.assert_array_equal(vec_normalize.obs_rms.mean, expected.get_vec_normalize_env().obs_rms.mean)
    assert vec_normalize.obs_rms.count == expected.get_vec_normalize_env().obs_rms.count > 1


def test_export_zoo_layout_is_found_by_rl_zoo3_train(tmp_path: Path) -> None:
    checkpoint = sac_checkpoint(tmp_path / "run")
    result = rtsave("checkpoint", "export", str(checkpoint), "zoo", "--layout", "zoo", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert {path.relative_to(tmp_path / "zoo").as_posix() for path in (tmp_path / "zoo").rglob("*.*")} == {
        f"{ENV_ID}.zip", f"{ENV_ID}/vecnormalize.pkl", "replay_buffer.pkl"}
    zoo = subprocess.run([sys.executable, "-m", "rl_zoo3.train", "--algo", "sac", "--env", ENV_ID,
                          "-i", f"zoo/{ENV_ID}.zip", "-n", "64", "--log-folder", "logs", "--seed", "0"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600, env=child_env())
    assert zoo.returncode == 0, zoo.stderr[-2000:]
    assert "Loading saved VecNormalize stats" in zoo.stdout and "Loading replay buffer" in zoo.stdout


def test_export_zoo_layout_needs_an_env_id(tmp_path: Path) -> None:
    bare = tmp_path / "bare.zip"
    bare.write_bytes(b"")
    result = rtsave("checkpoint", "export", str(bare), "out", "--layout", "zoo", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == ("rtsave: error: --layout zoo needs the env id, and this checkpoint records "
                                     "none; use --layout sb3")


def test_checkpoints_record_env_name_and_older_ones_with_env_id_still_export(tmp_path: Path) -> None:
    checkpoint = sac_checkpoint(tmp_path / "run")
    metadata = read_checkpoint_metadata(checkpoint)
    assert metadata["env_name"] == ENV_ID and "env_id" not in metadata  # env_id means an env index elsewhere
    metadata["env_id"] = metadata.pop("env_name")  # as checkpoints written before env_name recorded it
    checkpoint.write_text(json.dumps(metadata))
    result = rtsave("checkpoint", "export", str(checkpoint), "zoo", "--layout", "zoo", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "zoo" / f"{ENV_ID}.zip").is_file() and (tmp_path / "zoo" / ENV_ID / "vecnormalize.pkl").is_file()
    assert f"--env {ENV_ID} -i" in result.stdout
