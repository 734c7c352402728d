"""Back-pressure that absorbs a slow store (issue 12, item 12): coalescing, the byte bound,
large payloads serialized in pieces."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import numpy as np
import orjson
import pytest

from rtsave_async.formats.serialize import ORJSON_OPTIONS, PIECE_BYTES, PIECE_ITEMS, SnapshotSerializer
from rtsave_async.readers.run import open_run
from rtsave_async.sinks import LocalSink
from rtsave_async.snapshot_queue import RECORD_BYTES, VALUE_BYTES, estimate_bytes
from rtsave_async.writer import SnapshotWriter
from support.sinks import GatedSink, SlowSink

BACKLOG = 500  # saves submitted while the first store is held: more than a batch (64)


def read_back(save_dir: Path, category: str) -> list[tuple[int, int]]:
    """``(_rtsave.seq, record index)`` of every record of ``category``, in the reader's order."""
    return [(save.seq, record["index"]) for save in open_run(save_dir).saves(category) for record in save.records()]


@pytest.mark.parametrize("policy", ["block", "drop_oldest", "drop_newest"])
def test_a_backlog_behind_a_slow_store_becomes_one_append_per_category(tmp_path: Path, policy: str) -> None:
    gate = GatedSink(LocalSink(tmp_path))
    writer = SnapshotWriter(tmp_path, format="jsonl.zst", sink=gate, policy=policy)
    writer.submit("episodes", [{"index": 0}])
    assert gate.entered.wait(10)  # the writer is inside its first append
    for index in range(1, BACKLOG):
        for category in ("episodes", "learning_metrics"):
            assert writer.submit(category, [{"index": index}])
    gate.open()
    stats = writer.close()
    # The held append, then the whole backlog as one append per category (64 a drain: 16);
    # the sink also saw each category's segment created empty.
    assert stats["stores"] == 3 and gate.data_stores == 3 + 2
    assert stats["written"] == stats["submitted"] == 2 * BACKLOG - 1 and stats["dropped"] == 0
    episodes = read_back(tmp_path, "episodes")
    assert episodes == [(index + 1, index) for index in range(BACKLOG)]
    assert read_back(tmp_path, "learning_metrics") == [(index, index) for index in range(1, BACKLOG)]


def test_on_a_slow_store_training_submits_are_absorbed_without_drops(tmp_path: Path) -> None:
    sink = SlowSink(LocalSink(tmp_path), 0.02)  # 20 ms per store, holding the writer's thread
    saves = 300
    with SnapshotWriter(tmp_path, format="jsonl.zst", sink=sink, queue_size=64, batch_size=8,
                        block_timeout=60) as writer:
        for index in range(saves):
            writer.submit("episodes", [{"index": index}])
    stats = writer.stats()
    assert stats["dropped"] == 0 and stats["written"] == saves
    assert sink.data_stores <= saves // 20  # a drain takes the whole backlog, not a batch of 8
    assert read_back(tmp_path, "episodes") == [(index + 1, index) for index in range(saves)]


def test_json_stores_in_flight_overlap_on_a_slow_sink_within_the_byte_bound(tmp_path: Path) -> None:
    sink = SlowSink(LocalSink(tmp_path), 0.05, blocking=False)
    payload = "x" * 4000
    size = estimate_bytes([{"index": 0, "payload": payload}])
    with SnapshotWriter(tmp_path, sink=sink, queue_bytes=3 * size) as writer:
        for index in range(12):
            writer.submit("episodes", [{"index": index, "payload": payload}])
    assert sink.peak_concurrent == 3  # max_in_flight (32) would allow all 12
    assert [index for _, index in read_back(tmp_path, "episodes")] == list(range(12))


def test_estimate_counts_arrays_strings_and_records() -> None:
    array = np.zeros((100, 10))
    records = [{"obs": array, "name": "abc", "reward": 1.5}] * 16
    per_record = RECORD_BYTES + array.nbytes + 3 + VALUE_BYTES
    assert estimate_bytes(records) == VALUE_BYTES + 16 * per_record
    assert estimate_bytes({"deep": [[[[[array]]]]]}) < array.nbytes  # too deep to look at: cheap, not exact


@pytest.mark.parametrize("policy", ["block", "drop_oldest", "drop_newest"])
def test_queued_bytes_never_exceed_queue_bytes(tmp_path: Path, policy: str) -> None:
    payload = "p" * 1000
    size = estimate_bytes([{"index": 0, "payload": payload}])
    bound = 10 * size + size // 2
    gate = GatedSink(LocalSink(tmp_path))
    writer = SnapshotWriter(tmp_path, sink=gate, policy=policy, block_timeout=0.01, queue_bytes=bound)
    writer.submit("episodes", [{"index": 0, "payload": payload}])
    assert gate.entered.wait(10)
    accepted = [writer.submit("episodes", [{"index": index, "payload": payload}]) for index in range(1, 31)]
    during = writer.stats()
    gate.open()
    stats = writer.close()
    assert during["queue_depth"] == 10 and during["peak_queue_bytes"] <= bound  # the count bound (1024) is far
    assert stats["peak_queue_depth"] == 10
    assert stats["dropped"] == 20 and stats["written"] == 11 and stats["pending"] == 0
    kept = [index for _, index in read_back(tmp_path, "episodes")]
    assert kept == ([0, *range(21, 31)] if policy == "drop_oldest" else list(range(11)))
    assert accepted.count(False) == (0 if policy == "drop_oldest" else 20)


def test_a_payload_larger_than_queue_bytes_waits_for_an_empty_queue(tmp_path: Path) -> None:
    big = [{"index": 1, "payload": "b" * 5000}]
    gate = GatedSink(LocalSink(tmp_path))
    writer = SnapshotWriter(tmp_path, sink=gate, queue_bytes=1000, block_timeout=0.05)
    writer.submit("episodes", [{"index": 0}])
    assert gate.entered.wait(10)
    assert writer.submit("episodes", [{"index": 1}])  # small: queued behind the held store
    assert not writer.submit("episodes", big)  # the queue is not empty within block_timeout: dropped, counted
    gate.open()
    assert not writer.flush(10)  # the drop is reported
    assert writer.submit("episodes", [{"index": 2, "payload": "b" * 5000}])  # empty queue: accepted alone
    stats = writer.close()
    assert stats["dropped"] == 1 and stats["written"] == 3
    assert [index for _, index in read_back(tmp_path, "episodes")] == [0, 1, 2]


def test_a_submit_with_a_deadline_waits_for_room_until_it_and_not_block_timeout(tmp_path: Path) -> None:
    gate = GatedSink(LocalSink(tmp_path))
    writer = SnapshotWriter(tmp_path, sink=gate, queue_size=1, block_timeout=3600)
    writer.submit("episodes", [{"index": 0}])
    assert gate.entered.wait(10)
    assert writer.submit("episodes", [{"index": 1}])  # fills the queue behind the held store
    results: list[bool] = []
    late = threading.Thread(target=lambda: results.append(
        writer.submit("episodes", [{"index": 2}], deadline=time.monotonic() + 0.05)))
    late.start()
    late.join(60)  # without its deadline it would wait the hour of block_timeout
    assert not late.is_alive() and results == [False]
    gate.open()
    stats = writer.close()
    assert stats["dropped"] == 1 and [index for _, index in read_back(tmp_path, "episodes")] == [0, 1]


@pytest.mark.parametrize("value", ["queue_bytes", 0, -1, 1.5, True])
def test_queue_bytes_must_be_a_positive_integer(tmp_path: Path, value: object) -> None:
    with pytest.raises(ValueError, match="queue_bytes must be a positive integer"):
        SnapshotWriter(tmp_path, queue_bytes=value)


def large_payload() -> list[dict]:
    """Arrays and lists well above a piece, odd shapes and a NaN among them."""
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((PIECE_BYTES // 8 * 3 // 7 + 5, 7))
    matrix[4, 2] = np.nan
    floats = [float(value) for value in rng.standard_normal(PIECE_ITEMS * 2 + 3)]
    floats[7] = math.inf
    return [{
        "observations": matrix,
        "actions": np.arange(PIECE_BYTES * 3 + 1, dtype=np.int16),
        "flags": rng.integers(0, 2, PIECE_BYTES * 9, dtype=np.uint8).astype(bool),
        "transposed": np.ascontiguousarray(matrix.T).T,  # not C-contiguous
        "rewards": floats,
        "nested": {"deeper": (np.linspace(0, 1, PIECE_BYTES // 4, dtype=np.float32), "tail")},
        "episode": 3,
    }, {"small": [1, 2, 3]}]


def test_a_large_payload_in_pieces_is_byte_identical_to_one_piece() -> None:
    payload = large_payload()
    serializer = SnapshotSerializer()
    expected = orjson.dumps(payload, default=lambda array: np.ascontiguousarray(array), option=ORJSON_OPTIONS)
    assert len(expected) > 8 * 2**20  # above PIECES_ABOVE_BYTES: the pieces path
    data = serializer.dumps(payload)
    assert isinstance(data, bytearray)  # assembled piece by piece
    assert data == expected
    assert serializer.nonfinite == 3 and serializer.placeholders == 0  # the NaN twice (two arrays), the inf


def test_pieces_keep_the_repairs_of_the_rest_of_the_payload() -> None:
    payload = large_payload()
    payload[1] = {1: "int key", "big": 2**70, "text": "\ud800"}
    decoded = orjson.loads(SnapshotSerializer().dumps(payload))
    assert decoded[0]["rewards"][7] is None and len(decoded[0]["actions"]) == PIECE_BYTES * 3 + 1
    assert decoded[1]["1"] == "int key" and decoded[1]["big"]["$unserializable"] == "int"
    assert decoded[1]["text"]["$unserializable"] == "str"
