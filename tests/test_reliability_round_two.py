"""Reliability, round two (issue 12): what a hostile week of real use broke.

Each test is a scenario that failed before its fix: the writer thread surviving what
hooks and encoders raise, bounded retries, checkpoints that never list a missing file,
publishing that cannot overwrite, prompt exits with the stats file written, deletes that
never leave the save_dir, and two live writers sharing one folder. The scenarios live in
``tests/support/round_two_scenarios.py`` (``bench_reliability`` runs them too); each
returns the promises it found broken.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.reliability_scenarios import trials
from tests.support.round_two_scenarios import (
    HOOK_PLACES,
    HOOK_RAISES,
    RACE_KEYS,
    RACE_SINKS,
    SIGNALS_IN_EXIT_DRAIN,
    VANISHING_BEFORE,
    run_dangling_category,
    run_dying_writer,
    run_hook_raising,
    run_name_race,
    run_retention_after_a_finished_writer,
    run_signal_in_exit_drain,
    run_symlinked_retention,
    run_two_live_writers,
    run_vanishing_save_dir,
)


@pytest.mark.parametrize("raised", HOOK_RAISES)
@pytest.mark.parametrize("where", HOOK_PLACES)
def test_the_writer_thread_survives_whatever_a_hook_or_encoder_raises(tmp_path: Path, raised: str, where: str) -> None:
    assert run_hook_raising(tmp_path, raised, where).problems == []


def test_a_dead_writer_thread_is_reported_at_once(tmp_path: Path) -> None:
    assert run_dying_writer(tmp_path).problems == []


@pytest.mark.parametrize("format_name", ["json", "jsonl.zst"])
def test_a_dangling_symlink_as_a_category_folder_is_one_counted_failure(tmp_path: Path, format_name: str) -> None:
    assert run_dangling_category(tmp_path, format_name).problems == []


@pytest.mark.parametrize("removed_before", VANISHING_BEFORE)
def test_a_save_dir_removed_mid_checkpoint_fails_it_instead_of_listing_missing_files(tmp_path: Path,
                                                                                    removed_before: str) -> None:
    assert run_vanishing_save_dir(tmp_path, removed_before).problems == []


@pytest.mark.parametrize("sink_class", RACE_SINKS)
def test_two_writers_racing_for_the_same_names_never_overwrite(tmp_path: Path, sink_class: str) -> None:
    assert run_name_race(tmp_path, sink_class, trials(*RACE_KEYS)).problems == []


@pytest.mark.parametrize("name", SIGNALS_IN_EXIT_DRAIN)
def test_a_signal_inside_the_exit_drain_still_ends_with_the_stats_written(tmp_path: Path, name: str) -> None:
    assert run_signal_in_exit_drain(tmp_path, name).problems == []


def test_retention_and_temp_cleanup_never_delete_through_a_symlink_leaving_the_save_dir(tmp_path: Path) -> None:
    assert run_symlinked_retention(tmp_path).problems == []


def test_two_live_writers_in_one_folder_never_delete_each_others_checkpoints(tmp_path: Path) -> None:
    assert run_two_live_writers(tmp_path).problems == []


def test_retention_still_removes_what_a_finished_writer_left(tmp_path: Path) -> None:
    assert run_retention_after_a_finished_writer(tmp_path).problems == []
