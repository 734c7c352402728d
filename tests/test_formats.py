"""Both storage formats through the real writer: metadata, segments, manifests, bad input."""

from __future__ import annotations

import asyncio
import datetime
import math
import os
import random
import re
import time
from pathlib import Path

import numpy as np
import orjson
import pytest

from support.disk import fill_filesystem
from support.segments import decode_segment
from support.sinks import GatedSink, SlowSink, StaleListingSink
from rtsave_async import SnapshotWriter, list_snapshot_files, load_records
from rtsave_async.names import (
    EPISODES,
    RUN_MANIFEST_KEY,
    STANDARD_CATEGORIES,
    STATS_KEY,
    file_prefix,
    parse_name,
    utc_iso,
    writer_manifest_key,
    writer_tag,
)
from rtsave_async.formats.metadata import segment_line, segment_line_bytes, snapshot_metadata
from rtsave_async.formats.segments import FRAME_BYTES, pieces_of_lines
from rtsave_async.formats.serialize import PIECE_BYTES
from rtsave_async.readers.segments import scan_frames
from rtsave_async.sinks import LocalSink, MemorySink

ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def segment_lines(folder: Path) -> list[dict]:
    """Every line of every segment in ``folder``, in name order (seq)."""
    lines = []
    for path in sorted(folder.iterdir(), key=lambda path: parse_name(path.name).seq):
        decoded = decode_segment(path.read_bytes())
        assert not decoded.torn_tail and decoded.bad_frame_at is None, path
        lines += [orjson.loads(line) for line in decoded.lines]
    return lines


def test_json_records_carry_metadata_and_names_carry_the_writer_tag(tmp_path: Path) -> None:
    with SnapshotWriter(tmp_path, writer_name="trainer-a") as writer:
        for index in range(3):
            writer.submit("episodes", [{"env_id": 0, "index": index}, {"env_id": 1, "index": index}])
        writer.submit("hyperparameters", {"learning_rate": 3e-4})
    files = list_snapshot_files(tmp_path, "episodes")
    assert [parse_name(path.name).tag for path in files] == [writer_tag("trainer-a")] * 3
    for seq, records in enumerate((orjson.loads(path.read_bytes()) for path in files), start=1):
        assert [record["env_id"] for record in records] == [0, 1]  # the array our users read, unchanged
        for record in records:
            metadata = record["_rtsave"]
            assert (metadata["writer"], metadata["seq"], metadata["category"]) == ("trainer-a", seq, "episodes")
            assert ISO_UTC.fullmatch(metadata["time"])
    (hyperparameters_file,) = list_snapshot_files(tmp_path, "hyperparameters")
    assert orjson.loads(hyperparameters_file.read_bytes())[0]["_rtsave"]["seq"] == 1  # one record: a list of one


@pytest.mark.parametrize("category", [*STANDARD_CATEGORIES, "custom_metrics"])
def test_segments_round_trip_every_category_and_checkpoints_stay_files(tmp_path: Path, category: str) -> None:
    with SnapshotWriter(tmp_path, format="jsonl.zst") as writer:
        for index in range(5):
            writer.submit(category, [{"index": index}])
        writer.submit("checkpoints", lambda files: [{"files": files}], attachments={".zip": lambda: b"model"})
    folder = tmp_path / category
    names = [parse_name(path.name) for path in folder.iterdir()]
    if category == "checkpoints":
        assert sorted(name.kind for name in names) == ["attachment", "json"] * 1 + ["json"] * 5
        return
    assert [name.kind for name in names] == ["segment"]  # published at close: no .open left
    lines = segment_lines(folder)
    assert [line["data"] for line in lines] == [[{"index": index}] for index in range(5)]
    assert [line["_rtsave"]["seq"] for line in lines] == [1, 2, 3, 4, 5]
    assert {line["_rtsave"]["category"] for line in lines} == {category}
    assert len(list_snapshot_files(tmp_path, "checkpoints")) == 1


def test_segments_rotate_by_size_and_continue_in_order(tmp_path: Path) -> None:
    payload = os.urandom(300_000).hex()  # incompressible: 600 kB a save
    with SnapshotWriter(tmp_path, format="jsonl.zst", segment_bytes=1024 * 1024, batch_size=1) as writer:
        for index in range(6):  # flushed one by one: a backlog would be coalesced into one frame
            writer.submit("episodes", [{"index": index, "payload": payload}])
            writer.flush()
    segments = sorted(parse_name(path.name) for path in (tmp_path / "episodes").iterdir())
    assert len(segments) >= 2 and all(segment.kind == "segment" for segment in segments)
    assert [segment.seq for segment in segments] == list(range(1, len(segments) + 1))
    assert [line["data"][0]["index"] for line in segment_lines(tmp_path / "episodes")] == list(range(6))


def test_a_backlog_is_appended_as_frames_of_about_frame_bytes_in_order(tmp_path: Path) -> None:
    gate = GatedSink(LocalSink(tmp_path), only="episodes/")
    payload = os.urandom(20_000).hex()  # 40 kB a save
    writer = SnapshotWriter(tmp_path, format="jsonl.zst", sink=gate)
    writer.submit("episodes", [{"index": 0, "payload": payload}])
    assert gate.entered.wait(30)
    for index in range(1, 80):  # 3.2 MB behind the stalled store: one append when it answers
        writer.submit("episodes", [{"index": index, "payload": payload}])
    gate.open()
    writer.close()
    (segment,) = (tmp_path / "episodes").iterdir()
    scan = scan_frames(segment.read_bytes())
    line_bytes = len(payload) + 200
    assert not scan.damage and len(scan.frames) >= 4
    assert max(len(decoded) for _, decoded in scan.frames) <= FRAME_BYTES + line_bytes
    assert [line["data"][0]["index"] for line in segment_lines(tmp_path / "episodes")] == list(range(80))


def test_an_open_segment_is_published_when_it_gets_old(tmp_path: Path) -> None:
    with SnapshotWriter(tmp_path, format="jsonl.zst", segment_age=1) as writer:
        writer.submit("episodes", [{"index": 0}])
        assert writer.flush(10)
        (open_segment,) = (tmp_path / "episodes").iterdir()
        assert parse_name(open_segment.name).kind == "segment_open"
        deadline = time.monotonic() + 30
        while open_segment.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not open_segment.exists()
        writer.submit("episodes", [{"index": 1}])
    kinds = sorted((parse_name(path.name).seq, parse_name(path.name).kind) for path in (tmp_path / "episodes").iterdir())
    assert kinds == [(1, "segment"), (2, "segment")]


def test_a_kill_while_appending_tears_at_most_the_last_frame(tmp_path: Path) -> None:
    with SnapshotWriter(tmp_path, format="jsonl.zst", batch_size=1, drain_interval=0) as writer:
        for index in range(4):
            writer.submit("episodes", [{"index": index}])
            assert writer.flush(10)
        (segment,) = (tmp_path / "episodes").iterdir()
        data = segment.read_bytes()
        torn = decode_segment(data[:-3])  # what a SIGKILL inside the last os.write leaves
        assert torn.torn_tail and [orjson.loads(line)["data"][0]["index"] for line in torn.lines] == [0, 1, 2]


@pytest.mark.parametrize(("options", "message"), [
    ({"format": "parquet"}, "format must be one of 'json', 'jsonl.zst', got 'parquet'"),
    ({"format": "jsonl.zst", "segment_bytes": 1000}, "segment_bytes must be at least 1048576"),
    ({"format": "jsonl.zst", "segment_age": 0}, "segment_age must be a number >= 1 seconds"),
    ({"writer_name": "../x"}, "writer_name must be"),
    ({"max_in_flight": 0}, "max_in_flight must be a positive integer"),
])
def test_bad_format_options_are_named(tmp_path: Path, options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        SnapshotWriter(tmp_path, **options)


def test_a_save_dir_keeps_the_format_of_its_run(tmp_path: Path) -> None:
    SnapshotWriter(tmp_path / "segments", format="jsonl.zst").close()
    with pytest.raises(ValueError, match="format 'json' differs from the run's format 'jsonl.zst'"):
        SnapshotWriter(tmp_path / "segments")
    old_run = tmp_path / "old" / "episodes"  # written before run.json existed
    old_run.mkdir(parents=True)
    (old_run / "episodes_20250101_120000_00000001.json").write_bytes(b"[{}]")
    with pytest.raises(ValueError, match="format 'jsonl.zst' differs from the run's format 'json'"):
        SnapshotWriter(tmp_path / "old", format="jsonl.zst")
    with SnapshotWriter(tmp_path / "old") as writer:
        writer.submit("episodes", [{}])
    assert [parse_name(path.name).seq for path in list_snapshot_files(tmp_path / "old", "episodes")] == [1, 2]


def test_two_writers_in_one_folder_never_share_a_name_and_stats_add_up(tmp_path: Path) -> None:
    writers = [SnapshotWriter(tmp_path) for _ in range(2)]
    assert writers[0].writer_id != writers[1].writer_id
    for index in range(24):
        for writer in writers:
            writer.submit("episodes", {"index": index})
    first, second = (writer.close() for writer in writers)
    names = [path.name for path in (tmp_path / "episodes").iterdir()]
    assert len(names) == len(set(names)) == 48
    manifest = orjson.loads((tmp_path / RUN_MANIFEST_KEY).read_bytes())
    assert manifest["format"] == "json" and manifest["writers"] == [writer.writer_id for writer in writers]
    for writer in writers:
        own = orjson.loads((tmp_path / writer_manifest_key(writer.writer_id)).read_bytes())
        assert own["closed"] is True and own["stats"]["written"] == 24 and own["pid"] == os.getpid()
    total = orjson.loads((tmp_path / STATS_KEY).read_bytes())
    assert total["written"] == total["submitted"] == first["written"] + second["written"] == 48
    assert total["written_by_category"] == {"episodes": 48}


def test_the_writer_manifest_is_refreshed_while_writing(tmp_path: Path) -> None:
    writer = SnapshotWriter(tmp_path)
    manifest_path = tmp_path / writer_manifest_key(writer.writer_id)
    assert orjson.loads(manifest_path.read_bytes())["closed"] is False
    writer.submit("episodes", {"index": 0})
    deadline = time.monotonic() + 30
    while orjson.loads(manifest_path.read_bytes())["stats"]["written"] == 0 and time.monotonic() < deadline:
        writer.submit("episodes", {"index": 1})  # keeps the writer busy, as training does
        time.sleep(0.2)
    assert orjson.loads(manifest_path.read_bytes())["stats"]["written"] > 0
    writer.close()


def test_several_stores_in_flight_on_a_slow_sink(tmp_path: Path) -> None:
    sink = SlowSink(LocalSink(tmp_path), 0.05, blocking=False)
    with SnapshotWriter(tmp_path, sink=sink, max_in_flight=4) as writer:
        for index in range(12):
            writer.submit("episodes", {"index": index})
        assert writer.flush(30)
    assert sink.peak_concurrent == 4
    assert [records[0]["index"] for records in load_records(tmp_path, "episodes")] == list(range(12))


def test_flush_waits_for_a_slow_early_store_even_when_later_ones_are_done(tmp_path: Path) -> None:
    gate = GatedSink(LocalSink(tmp_path), only="_00000001_", blocking=False)
    writer = SnapshotWriter(tmp_path, sink=gate)
    for index in range(3):
        writer.submit("episodes", {"index": index})
    deadline = time.monotonic() + 30
    while len(list_snapshot_files(tmp_path, "episodes")) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(list_snapshot_files(tmp_path, "episodes")) == 2  # the 2nd and 3rd are stored
    assert writer.flush(timeout=0.2) is False  # ... but the 1st is not: flush must not report done
    gate.open()
    assert writer.flush(timeout=30) is True
    writer.close()
    assert [records[0]["index"] for records in load_records(tmp_path, "episodes")] == [0, 1, 2]


def test_a_memory_sink_holds_a_whole_segment_run(tmp_path: Path) -> None:
    sink = MemorySink()
    with SnapshotWriter(tmp_path / "unused", sink=sink, format="jsonl.zst") as writer:
        writer.submit("episodes", [{"index": 0}])
    assert not (tmp_path / "unused").exists()
    (segment_key,) = [key for key in sink.objects if key.startswith("episodes/")]
    assert parse_name(segment_key.split("/")[1]).prefix == file_prefix("episodes")
    (line,) = decode_segment(sink.objects[segment_key]).lines
    assert orjson.loads(line)["data"] == [{"index": 0}]
    assert orjson.loads(sink.objects[RUN_MANIFEST_KEY])["format"] == "jsonl.zst"


@pytest.mark.parametrize("durable", [False, True])
def test_a_full_disk_leaves_no_half_frame_in_a_segment(mount_tmpfs, durable: bool) -> None:
    save_dir = mount_tmpfs("size=256k")
    ballast = save_dir / "ballast"
    writer = SnapshotWriter(save_dir / "run", format="jsonl.zst", durable=durable)
    writer.submit("episodes", [{"index": 0}])
    assert writer.flush(10)
    fill_filesystem(ballast)
    writer.submit("episodes", [{"payload": os.urandom(64_000).hex()}])  # does not fit
    assert writer.flush(10) is False
    ballast.unlink()
    writer.submit("episodes", [{"index": 1}])
    assert writer.flush(10) is True
    stats = writer.close()
    assert stats["failed"] == 1 and stats["written"] == 2
    assert [line["data"] for line in segment_lines(save_dir / "run" / "episodes")] == [[{"index": 0}], [{"index": 1}]]


def test_retention_through_any_sink_tells_writers_apart() -> None:
    from rtsave_async.checkpoints import prune_checkpoints

    sink = MemorySink()
    for tag in ("aaaaaa", "bbbbbb"):  # two writers, the same sequence numbers
        for sequence in (1, 2, 3):
            stem = f"checkpoints/checkpoint_20250101_120000_{sequence:08d}_{tag}"
            sink.objects[stem + ".zip"] = sink.objects[stem + ".json"] = b"x"
    removed = asyncio.run(prune_checkpoints(sink, keep_last=2))
    assert sorted(removed) == sorted(f"checkpoints/checkpoint_20250101_120000_{sequence:08d}_{tag}.{ext}"
                                     for sequence, tag in ((1, "aaaaaa"), (1, "bbbbbb"), (2, "aaaaaa"), (2, "bbbbbb"))
                                     for ext in ("json", "zip"))


def test_two_segment_writers_with_one_name_never_share_a_segment(tmp_path: Path) -> None:
    first = SnapshotWriter(tmp_path, format="jsonl.zst", writer_name="same")
    first.submit("episodes", [{"writer": 0, "index": -1}])
    assert first.flush(10)  # its segment exists; the second writer's first listing misses it
    writers = [first, SnapshotWriter(tmp_path, format="jsonl.zst", writer_name="same",
                                     sink=StaleListingSink(LocalSink(tmp_path)))]
    for index in range(10):
        for number, writer in enumerate(writers):
            writer.submit("episodes", [{"writer": number, "index": index}])
            writer.flush(10)
    for writer in writers:
        writer.close()
    segments = list((tmp_path / "episodes").iterdir())
    assert len(segments) == 2
    for path in segments:  # each segment holds one writer's lines only, all of them
        writers_in = {orjson.loads(line)["data"][0]["writer"] for line in decode_segment(path.read_bytes()).lines}
        assert len(writers_in) == 1
    assert sorted(len(decode_segment(path.read_bytes()).lines) for path in segments) == [10, 11]


def test_a_big_frame_is_compressed_a_mebibyte_at_a_time_not_a_line_at_a_time() -> None:
    short = [orjson.dumps({"timestep": step, "value": step / 7}) for step in range(300_000)]
    long = b"[" + b"1," * PIECE_BYTES + b"1]"
    lines = short[:1000] + [long] + short[1000:]
    pieces = [bytes(piece) for piece in pieces_of_lines(lines)]

    assert b"".join(pieces) == b"".join(line + b"\n" for line in lines)
    total = sum(len(line) + 1 for line in lines)
    # One GIL hand-over per piece: about one per PIECE_BYTES, not one per line.
    assert len(pieces) <= total // PIECE_BYTES + 4
    assert max(map(len, pieces)) <= PIECE_BYTES + max(map(len, short)) + 1


def test_utc_iso_is_datetime_s_text_to_the_microsecond_across_second_boundaries() -> None:
    rng = random.Random(7)
    moments = [1764633600 + rng.uniform(0, 1e7) for _ in range(5000)]
    # Fractions that round up into the next second, or sit on a half microsecond.
    moments += [float(second) + fraction for second in range(1764633600, 1764633700)
                for fraction in (0.0, 0.9999995, 0.99999949, 0.0000005, 0.0000015, 0.9999999999)]
    for moment in moments:
        expected = datetime.datetime.fromtimestamp(moment, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert utc_iso(moment) == expected, moment


@pytest.mark.parametrize("payload", [
    [{"timestep": 4, "x": 0.5, "name": "Go1 \u00e9\u4e2d", "nested": {"list": [1, None, True]}}],
    {"one": "object"},
    [],
])
def test_a_line_around_a_payload_encoded_on_submit_is_the_line_encoded_whole(payload) -> None:
    metadata = snapshot_metadata("host-1-20261202T000000Z", 7, 1764633600.25, "episodes")
    assert segment_line_bytes(metadata, orjson.dumps(payload)) == orjson.dumps(segment_line(payload, metadata))


def test_saves_encoded_on_submit_and_by_the_writer_read_back_alike_and_count_their_nonfinite_values(
        tmp_path: Path) -> None:
    big_plain = [{"values": [step * 0.25 for step in range(20_000)]}]  # above ENCODE_AT_SUBMIT_BYTES
    saves = [
        [{"timestep": 1, "reward": math.nan, "cost": -math.inf, "info": None}],  # small and plain: on submit
        [{"timestep": 2, "observation": np.array([1.5, np.nan])}],  # numpy: by the writer
        big_plain,
        [{"timestep": 4, "tags": {"a"}}],  # a set: by the writer, repaired
        [{"timestep": 5, "reward": 1.0}],
    ]
    with SnapshotWriter(tmp_path, format="jsonl.zst") as writer:
        for records in saves:
            writer.submit(EPISODES, records)
    stats = writer.stats()

    assert stats["written"] == 5 and stats["nonfinite_values"] == 3
    lines = segment_lines(tmp_path / EPISODES)
    assert [line["_rtsave"]["seq"] for line in lines] == [1, 2, 3, 4, 5]
    assert lines[0]["data"] == [{"timestep": 1, "reward": None, "cost": None, "info": None}]
    assert lines[1]["data"] == [{"timestep": 2, "observation": [1.5, None]}]
    assert lines[2]["data"] == big_plain
    assert lines[3]["data"] == [{"timestep": 4, "tags": ["a"]}]
    assert lines[4]["data"] == [{"timestep": 5, "reward": 1.0}]


def test_a_save_bigger_than_its_category_s_last_one_is_encoded_on_submit_once_then_sized_first(
        tmp_path: Path) -> None:
    small = [{"timestep": 1, "reward": 0.5}]
    big = [{"values": [step * 0.25 for step in range(20_000)]}]  # above ENCODE_AT_SUBMIT_BYTES
    # small: estimated, encoded; big: unestimated after a small one, encoded; big: estimated, left
    # to the writer; small: estimated, encoded; small: unestimated, encoded, NaN still counted.
    saves = [small, big, big, small, [{"timestep": 5, "reward": math.nan}]]
    with SnapshotWriter(tmp_path, format="jsonl.zst") as writer:
        for records in saves:
            writer.submit(EPISODES, records)
    stats = writer.stats()

    assert stats["written"] == 5 and stats["encoded_on_submit"] == 4 and stats["nonfinite_values"] == 1
    assert [line["data"] for line in segment_lines(tmp_path / EPISODES)] == saves[:4] + [[{"timestep": 5,
                                                                                         "reward": None}]]
