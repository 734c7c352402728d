"""HeldSaves: saves in quick succession reach the writer together, in order; none waits long."""

from __future__ import annotations

from pathlib import Path

import pytest

from rtsave_async.writer.held_saves import HeldSaves
from support.writers import RecordingWriter


class ManualClock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def save(index: int) -> list[tuple[str, list[dict]]]:
    return [("learning_metrics", [{"index": index}]), ("episodes", [{"index": index}, {"index": index}])]


def submitted_indexes(writer: RecordingWriter) -> list[tuple[str, int]]:
    return [(category, records[0]["index"]) for category, records, _ in writer.submitted]


def test_saves_close_together_are_held_then_submitted_together_in_order(tmp_path: Path) -> None:
    writer, clock = RecordingWriter(tmp_path, drain_interval=0.05), ManualClock()
    held = HeldSaves(writer, max_saves=4, clock=clock)
    held.add(save(0))  # nothing came before it: submitted at once
    assert submitted_indexes(writer) == [("learning_metrics", 0), ("episodes", 0)] and len(held) == 0
    for index in range(1, 4):
        clock.now += 0.001
        held.add(save(index))
    assert len(held) == 3 and len(writer.submitted) == 2
    clock.now += 0.001
    held.add(save(4))  # the fourth held save fills the batch
    assert len(held) == 0
    assert submitted_indexes(writer) == [(category, index) for index in range(5)
                                         for category in ("learning_metrics", "episodes")]


def test_a_save_after_a_pause_goes_at_once_after_the_held_ones(tmp_path: Path) -> None:
    writer, clock = RecordingWriter(tmp_path, drain_interval=0.05), ManualClock()
    held = HeldSaves(writer, clock=clock)
    held.add(save(0))
    clock.now += 0.01
    held.add(save(1))
    assert len(held) == 1
    clock.now += 5.0
    held.add(save(2))
    assert len(held) == 0 and [index for _, index in submitted_indexes(writer)] == [0, 0, 1, 1, 2, 2]


def test_held_saves_go_at_the_first_save_a_window_after_the_oldest(tmp_path: Path) -> None:
    writer, clock = RecordingWriter(tmp_path, drain_interval=1 / 16), ManualClock()  # binary fractions: exact sums
    held = HeldSaves(writer, clock=clock)
    held.add(save(0))
    sizes = []
    for index in range(1, 8):
        clock.now += 1 / 64  # each save follows closely, the batch grows old
        held.add(save(index))
        sizes.append(len(held))
    assert sizes == [1, 2, 3, 4, 0, 1, 2]  # released once the oldest held save is 1/16 s old
    held.release(deadline=123.0)
    assert len(held) == 0 and [index for _, index in submitted_indexes(writer)][::2] == list(range(8))
    assert writer.deadlines[-4:] == [123.0] * 4 and set(writer.deadlines[:-4]) == {None}


def test_a_writer_without_a_drain_interval_has_nothing_held(tmp_path: Path) -> None:
    writer, clock = RecordingWriter(tmp_path, drain_interval=0.0), ManualClock()
    held = HeldSaves(writer, clock=clock)
    for index in range(3):
        held.add(save(index))
        assert len(held) == 0
    assert len(writer.submitted) == 6


@pytest.mark.parametrize("option, value", [("window", -1.0), ("window", float("nan")), ("max_saves", 0)])
def test_bad_options_are_refused_naming_them(tmp_path: Path, option: str, value: float) -> None:
    with pytest.raises(ValueError, match=option):
        HeldSaves(RecordingWriter(tmp_path), **{option: value})
