"""Smoke test of the checkpoint benchmark: both savers, both algorithms, and our checkpoints load back."""

from __future__ import annotations

import json
from pathlib import Path

from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

from benchmarks import bench_checkpoint
from rtsave_async.checkpoints import load_checkpoint

N_ENVS = {"SAC": 1, "PPO": bench_checkpoint.QUICK_SCALE.ppo_n_envs}


def test_quick_run_reports_both_savers_and_our_checkpoints_load_back(tmp_path: Path, capsys) -> None:
    out, results = tmp_path / "out", tmp_path / "RESULTS.md"

    assert bench_checkpoint.main(["--quick", "--no-append", "--out", str(out), "--results", str(results)]) == 0

    section = capsys.readouterr().out
    assert section.startswith(bench_checkpoint.SECTION_HEADING)
    assert not results.exists()
    report = json.loads((out / bench_checkpoint.REPORT_FILE_NAME).read_text())
    assert set(report["algorithms"]) == set(N_ENVS)
    resumed_models = {}
    for algorithm, result in report["algorithms"].items():
        assert set(result["measurements"]) == set(bench_checkpoint.SAVERS)
        for saver, measurements in result["measurements"].items():
            assert len(measurements) == bench_checkpoint.QUICK_SCALE.repeats
            assert all(measurement["total_bytes"] > 0 for measurement in measurements)
            assert f"| {algorithm} | {saver} |" in section

        checkpoint = result["measurements"][bench_checkpoint.OUR_SAVER][-1]["checkpoint_path"]
        resumed = load_checkpoint(checkpoint, VecNormalize(make_vec_env("Ant-v5", n_envs=N_ENVS[algorithm])))
        assert type(resumed.model).__name__ == algorithm
        assert resumed.model.num_timesteps == result["timesteps"]
        assert resumed.model.get_vec_normalize_env() is not None
        resumed_models[algorithm] = resumed.model

    sac = report["algorithms"]["SAC"]
    assert sac["replay_buffer_raw_bytes"] > 0
    assert all(measurement["replay_buffer_bytes"] > 0
               for measurements in sac["measurements"].values() for measurement in measurements)
    assert resumed_models["SAC"].replay_buffer.pos == sac["timesteps"]

