"""Resume mid-episode under SubprocVecEnv: episode records, SB3's Monitor and recent episodes go on exactly.

(The DummyVecEnv runs of ``test_checkpoints`` check the same.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch as th

from resume_harness import finished_episodes_after
from rtsave_async import list_snapshot_files
from rtsave_async.checkpoints.format import read_checkpoint_metadata
from test_checkpoints import assert_same, run_harness


@pytest.mark.parametrize("algorithm, half", [("ppo", 128), ("sac", 150)])
def test_episode_records_after_a_resume_in_subprocesses_equal_the_uninterrupted_runs(
        tmp_path: Path, algorithm: str, half: int) -> None:
    for mode, folder in (("full", "full"), ("first", "split"), ("resume", "split")):
        run_harness(mode, algorithm, str(tmp_path / folder), str(half), str(tmp_path / f"{mode}.pt"), "subproc")
    checkpoints = [read_checkpoint_metadata(path) for path in list_snapshot_files(tmp_path / "split", "checkpoints")]
    (at_half,) = [checkpoint for checkpoint in checkpoints if checkpoint["timestep"] == half]
    assert any(at_half["callback_state"]["episodes"]["current_steps"])  # an episode was in progress
    full = finished_episodes_after(str(tmp_path / "full"), half)
    assert all(full) and finished_episodes_after(str(tmp_path / "split"), half) == full
    assert_same(th.load(tmp_path / "full.pt", weights_only=False), th.load(tmp_path / "resume.pt", weights_only=False))
