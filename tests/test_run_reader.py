"""open_run / Run over both layouts: order, merge, cursor, damage, lineage, bad input."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from support.segment_builder import SegmentRunWriter, encode_frame, frame_offsets
from support.stores import CountingRunStore, StaleListingRunStore

from rtsave_async import SnapshotWriter, iter_records, list_snapshot_files, load_records, open_run
from rtsave_async.readers import RunDamageWarning
from rtsave_async.readers.segments import scan_frames

EPISODE = {"timestep": 8, "env_id": 0, "detailed_info": {"robot_state": {"position": {"x": 1.5, "y": -2.0},
                                                                          "joint_positions": [0.1, 0.2]}}}


def episodes(timestep: int, envs: int = 2) -> list[dict]:
    return [{"timestep": timestep, "env_id": env, "return": float(timestep + env)} for env in range(envs)]


def test_json_run_from_the_real_writer_reads_back_in_order(tmp_path: Path) -> None:
    with SnapshotWriter(tmp_path) as writer:
        for timestep in range(1, 6):
            writer.submit("episodes", episodes(timestep))
            writer.submit("learning_metrics", {"timestep": timestep, "loss": 1.0 / timestep})
        writer.submit("hyperparameters", {"timestep": 0, "model_type": "PPO"})
    run = open_run(tmp_path)
    assert run.categories() == ["episodes", "learning_metrics", "hyperparameters"]
    assert list(run.records("episodes")) == [record for t in range(1, 6) for record in episodes(t)]
    assert [record["loss"] for record in run.records("learning_metrics")] == [1.0 / t for t in range(1, 6)]
    assert run.hyperparameters() == [{"timestep": 0, "model_type": "PPO"}]
    assert run.writer_stats()["total"]["written_by_category"]["episodes"] == 5
    assert list(iter_records(tmp_path, "episodes")) == list(run.records("episodes"))
    assert run.problems == []


def test_segment_run_reads_back_every_save_with_its_metadata(tmp_path: Path) -> None:
    writer = SegmentRunWriter(tmp_path, "host-1-20261201T120000Z")
    written = [writer.save("episodes", episodes(t)) for t in range(1, 4)]
    writer.flush()
    writer.save("episodes", episodes(4))
    writer.save("hyperparameters", {"timestep": 0, "model_type": "PPO"})
    writer.close(stats={"written": {"episodes": 4}})
    run = open_run(tmp_path)
    assert run.manifest()["format"] == "jsonl.zst"
    records = list(run.records("episodes", with_metadata=True))
    assert [record.data for record in records] == [r for t in range(1, 5) for r in episodes(t)]
    assert [(record.writer, record.seq, record.time) for record in records[:6:2]] == [
        (meta["writer"], meta["seq"], meta["time"]) for meta in written]
    assert run.hyperparameters() == [{"timestep": 0, "model_type": "PPO"}]
    assert run.writer_stats()["writers"]["host-1-20261201T120000Z"]["closed"] is True
    assert [path.name.endswith(".jsonl.zst") for path in list_snapshot_files(tmp_path, "episodes")] == [True]
    assert load_records(tmp_path, "episodes")[0] == episodes(1)


def test_since_returns_only_what_was_written_after(tmp_path: Path) -> None:
    writer = SegmentRunWriter(tmp_path, "w")
    times = [writer.save("episodes", episodes(t))["time"] for t in range(1, 5)]
    writer.close()
    assert [r["timestep"] for r in open_run(tmp_path).records("episodes", since=times[1])] == [3, 3, 4, 4]


def test_to_pandas_flattens_nested_fields_to_dotted_columns(tmp_path: Path) -> None:
    pytest.importorskip("pandas")
    writer = SegmentRunWriter(tmp_path, "w")
    writer.save("episodes", [EPISODE, {**EPISODE, "env_id": 1, "extra": {"a": 1}}])
    writer.close()
    frame = open_run(tmp_path).to_pandas("episodes", with_metadata=True)
    assert frame["detailed_info.robot_state.position.x"].tolist() == [1.5, 1.5]
    assert frame["detailed_info.robot_state.joint_positions"].tolist() == [[0.1, 0.2], [0.1, 0.2]]
    assert frame["env_id"].tolist() == [0, 1]
    assert frame["extra.a"].isna().tolist() == [True, False]
    assert frame["_rtsave.writer"].tolist() == ["w", "w"]


def test_two_writers_on_one_run_are_merged_in_time_order(tmp_path: Path) -> None:
    first = SegmentRunWriter(tmp_path, "first", start=1000.0, tick=2.0)   # saves at 1002, 1004, ...
    second = SegmentRunWriter(tmp_path, "second", start=1001.0, tick=2.0)  # saves at 1003, 1005, ...
    for index in range(4):
        first.save("learning_metrics", {"timestep": index, "writer": "first"})
        second.save("learning_metrics", {"timestep": index, "writer": "second"})
    second.close()
    first.close()
    run = open_run(tmp_path)
    merged = [(record["writer"], record["timestep"]) for record in run.records("learning_metrics")]
    assert merged == [(writer, index) for index in range(4) for writer in ("first", "second")]
    assert sorted(run.writer_stats()["writers"]) == ["first", "second"]
    assert run.manifest()["writers"] == ["first", "second"]


def test_poll_returns_each_record_once_across_rotations_new_writers_and_categories(tmp_path: Path) -> None:
    store = CountingRunStore(tmp_path)
    first = SegmentRunWriter(tmp_path, "first")
    cursor = open_run(store).cursor()
    saved, polled = [], []

    def save(writer: SegmentRunWriter, category: str, timestep: int) -> None:
        writer.save(category, {"timestep": timestep})
        saved.append((category, timestep))

    for step in range(30):
        save(first, "episodes", step)
        if step % 3 == 0:
            first.flush()
            polled.extend(cursor.poll())
        if step % 7 == 6:
            first.rotate("episodes")  # .open -> final; the next save opens a new segment
        if step == 12:
            second = SegmentRunWriter(tmp_path, "second")
        if step > 12:
            save(second, "custom_metrics", step)
            second.flush()
    first.close()
    second.close()
    polled.extend(cursor.poll())
    polled.extend(cursor.poll())  # nothing new
    assert sorted((record.category, record.data["timestep"]) for record in polled) == sorted(saved)
    # No file was read twice: every byte of every segment read once.
    sizes = {str(path.relative_to(tmp_path)): path.stat().st_size for path in tmp_path.glob("*/*.jsonl.zst")}
    assert {key: count for key, count in store.bytes_read.items() if key in sizes} == sizes


def test_poll_sees_new_json_files_once(tmp_path: Path) -> None:
    store = CountingRunStore(tmp_path)
    with SnapshotWriter(tmp_path) as writer:
        writer.submit("episodes", episodes(1))
        writer.flush(10)
        cursor = open_run(store).cursor("episodes")
        first = cursor.poll()
        writer.submit("episodes", episodes(2))
        writer.flush(10)
        second = cursor.poll()
    assert [r.data for r in first] == episodes(1) and [r.data for r in second] == episodes(2)
    assert cursor.poll() == []
    files = list_snapshot_files(tmp_path, "episodes")
    assert {key: count for key, count in store.bytes_read.items() if key.startswith("episodes/")} == {
        f"episodes/{path.name}": path.stat().st_size for path in files}  # each file read once


def test_a_poll_out_of_budget_reads_a_file_per_category_and_the_next_goes_on(tmp_path: Path) -> None:
    store = CountingRunStore(tmp_path)
    with SnapshotWriter(tmp_path) as writer:
        for timestep in range(1, 5):
            writer.submit("episodes", episodes(timestep))
            writer.submit("learning_metrics", {"timestep": timestep})
    cursor = open_run(store).cursor()
    polls = []
    while not polls or not cursor.caught_up:
        polls.append(cursor.poll(budget=0.0))  # no time at all: one file, then the next category's turn
    assert [sorted({(r.category, r.data["timestep"]) for r in poll}) for poll in polls[:2]] == [
        [("episodes", 1)], [("learning_metrics", 1)]]
    read = [(r.category, r.data["timestep"], r.data.get("env_id")) for poll in polls for r in poll]
    assert sorted(read) == sorted([("episodes", t, env) for t in range(1, 5) for env in (0, 1)]
                                  + [("learning_metrics", t, None) for t in range(1, 5)])
    assert len(polls) >= 8 and cursor.poll() == []
    files = [path for category in ("episodes", "learning_metrics") for path in list_snapshot_files(tmp_path, category)]
    assert all(store.bytes_read[f"{path.parent.name}/{path.name}"] == path.stat().st_size for path in files)


def test_a_poll_out_of_budget_reads_a_big_segment_a_few_frames_at_a_time_in_order(tmp_path: Path) -> None:
    writer = SegmentRunWriter(tmp_path, "w")
    for timestep in range(40):
        writer.save("episodes", episodes(timestep))
        writer.flush()  # a frame per save
        if timestep == 29:
            writer.rotate("episodes")  # 30 saves published, the last 10 in the open segment
    cursor = open_run(tmp_path).cursor()
    frames = scan_frames(next(tmp_path.glob("episodes/*.jsonl.zst")).read_bytes()).frames
    cursor.segment_bytes_per_read = 3 * len(frames[0][1]) - 1  # 3 of its 30 frames (one save each) per read
    polls = []
    while not polls or not cursor.caught_up:
        polls.append([record.data["timestep"] for record in cursor.poll(budget=0.0)])
    read = [timestep for poll in polls for timestep in poll]
    assert read == sorted(read) and sorted(set(read)) == list(range(40)) and len(read) == 80
    assert max(len(poll) for poll in polls) == 2 * 3  # a read's worth of frames (saves) per poll
    writer.save("episodes", episodes(40))
    writer.close()
    assert [record.data["timestep"] for record in cursor.poll()] == [40, 40]


def test_a_budgeted_poll_reads_a_segment_s_bytes_little_more_than_once(tmp_path: Path) -> None:
    writer = SegmentRunWriter(tmp_path, "w")
    for timestep in range(300):
        writer.save("episodes", episodes(timestep, envs=32))
        writer.flush()  # a frame per save; their JSON compresses several times over
    writer.close()
    segment = next(tmp_path.glob("episodes/*.jsonl.zst"))
    frames = scan_frames(segment.read_bytes()).frames
    decoded = sum(len(payload) for _, payload in frames)
    assert decoded > 3 * segment.stat().st_size
    store = CountingRunStore(tmp_path)
    cursor = open_run(store).cursor("episodes")
    cursor.segment_bytes_per_read = 10 * len(frames[0][1])  # about 10 of its 300 frames per read
    read = []
    while not read or not cursor.caught_up:
        read.extend(record.data["timestep"] for record in cursor.poll(budget=0.0))
    assert read == [timestep for timestep in range(300) for _ in range(32)]
    # A window as large as the budget (the first read's) would read it about ratio times over.
    assert store.bytes_read[f"episodes/{segment.name}"] < 1.5 * segment.stat().st_size, store.bytes_read


def test_poll_follows_a_segment_published_after_it_was_listed(tmp_path: Path) -> None:
    store = StaleListingRunStore(tmp_path)
    writer = SegmentRunWriter(tmp_path, "w")
    writer.save("episodes", episodes(1))
    writer.flush()
    cursor = open_run(store).cursor("episodes")
    assert [r.data["timestep"] for r in cursor.poll()] == [1, 1]
    store.freeze()  # still lists the .open name
    writer.save("episodes", episodes(2))
    writer.rotate("episodes")
    assert [r.data["timestep"] for r in cursor.poll()] == [2, 2]
    store.thaw()
    writer.save("episodes", episodes(3))
    writer.close()
    assert [r.data["timestep"] for r in cursor.poll()] == [3, 3]
    assert cursor.poll() == []


def test_a_corrupt_frame_in_the_middle_is_reported_and_the_rest_is_read(tmp_path: Path) -> None:
    writer = SegmentRunWriter(tmp_path, "w")
    for timestep in range(1, 4):
        writer.save("episodes", episodes(timestep))
        writer.flush()
    path = writer.rotate("episodes")
    bad_offset = frame_offsets(path)[1]
    data = bytearray(path.read_bytes())
    data[bad_offset + 12] ^= 0xFF  # inside the second frame's compressed block
    path.write_bytes(bytes(data))
    run = open_run(tmp_path)
    with pytest.warns(RunDamageWarning, match=rf"{path.name} at byte {bad_offset}: corrupt zstd frame"):
        records = list(run.records("episodes"))
    assert [record["timestep"] for record in records] == [1, 1, 3, 3]
    assert [(problem.url, problem.offset) for problem in run.problems] == [(str(path), bad_offset)]
    with pytest.raises(ValueError, match=rf"{path.name} at byte {bad_offset}"):
        list(open_run(tmp_path, errors="raise").records("episodes"))


def test_a_line_that_is_not_json_is_reported_and_the_others_read(tmp_path: Path) -> None:
    writer = SegmentRunWriter(tmp_path, "w")
    writer.save("episodes", episodes(1))
    writer.flush()
    with open(writer.open_segment("episodes"), "ab") as handle:
        later = b'{"_rtsave": {"writer": "w", "seq": 3, "time": "2027-01-01T00:00:00.000000Z"}, "data": [{"timestep": 3}]}'
        handle.write(encode_frame([b'{"_rtsave": {"seq": 2}, "data": [1,\n', later + b"\n"]))
    run = open_run(tmp_path)
    with pytest.warns(RunDamageWarning, match="line 1 of the frame is not a save"):
        assert [record["timestep"] for record in run.records("episodes")] == [1, 1, 3]


def test_a_torn_tail_is_skipped_silently_while_open_and_read_once_completed(tmp_path: Path) -> None:
    writer = SegmentRunWriter(tmp_path, "w")
    writer.save("episodes", episodes(1))
    writer.flush()
    segment = writer.open_segment("episodes")
    frame = encode_frame([json.dumps({"_rtsave": {"writer": "w", "seq": 2, "time": "2026-12-01T12:00:01.000000Z"},
                                      "data": episodes(2)}).encode() + b"\n"])
    with open(segment, "ab") as handle:
        handle.write(frame[: len(frame) // 2])  # a flush in progress (or a crash)
    run = open_run(tmp_path)
    cursor = run.cursor("episodes")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [record["timestep"] for record in run.records("episodes")] == [1, 1]
        assert [record.data["timestep"] for record in cursor.poll()] == [1, 1]
    with open(segment, "ab") as handle:
        handle.write(frame[len(frame) // 2:])
    assert [record.data["timestep"] for record in cursor.poll()] == [2, 2]
    assert cursor.poll() == []


def test_a_torn_tail_in_a_closed_segment_is_reported(tmp_path: Path) -> None:
    writer = SegmentRunWriter(tmp_path, "w")
    for timestep in (1, 2):
        writer.save("episodes", episodes(timestep))
        writer.flush()
    path = writer.rotate("episodes")
    torn_at = frame_offsets(path)[1]
    path.write_bytes(path.read_bytes()[:-5])
    run = open_run(tmp_path)
    with pytest.warns(RunDamageWarning, match=rf"at byte {torn_at}: unfinished last frame"):
        assert [record["timestep"] for record in run.records("episodes")] == [1, 1]


def test_checkpoints_lists_only_complete_ones_in_both_json_shapes(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for seq, shape in ((1, "array"), (2, "object"), (3, "object")):
        stem = f"checkpoint_20261201_120000_{seq:08d}"
        (folder / f"{stem}.zip").write_bytes(b"z" * 10 * seq)
        metadata = {"timestep": 100 * seq, "files": {"zip": {"name": f"{stem}.zip", "bytes": 10 * seq}}}
        (folder / f"{stem}.json").write_text(json.dumps([metadata] if shape == "array" else metadata))
    (folder / "checkpoint_20261201_120000_00000003.zip").write_bytes(b"short")  # not the recorded size
    run = open_run(tmp_path)
    assert [(checkpoint.timestep, checkpoint.bytes) for checkpoint in run.checkpoints()] == [(100, 10), (200, 20)]
    assert run.checkpoints()[-1].path == str(folder / "checkpoint_20261201_120000_00000002.json")


def test_a_run_without_metadata_is_read_in_file_sequence_order(tmp_path: Path) -> None:
    folder = tmp_path / "episodes"
    folder.mkdir()
    for seq, stamp in ((2, "20261201_110000"), (1, "20261201_120000"), (10, "20261201_100000")):
        (folder / f"episodes_{stamp}_{seq:08d}.json").write_text(json.dumps(episodes(seq, envs=1)))
    assert [record["timestep"] for record in open_run(tmp_path).records("episodes")] == [1, 2, 10]


def test_misspelt_category_missing_folder_and_not_a_run_are_clear_errors(tmp_path: Path) -> None:
    with SnapshotWriter(tmp_path / "run") as writer:
        writer.submit("episodes", episodes(1))
    with pytest.raises(ValueError, match=r"no category 'episode' \(did you mean 'episodes'\?\); known categories: "
                                         r"episodes, environment_states"):
        open_run(tmp_path / "run").records("episode")
    with pytest.raises(ValueError, match="no category 'episode'"):
        load_records(tmp_path / "run", "episode")
    with pytest.raises(ValueError, match="no category 'episode'"):
        iter_records(tmp_path / "run", "episode")  # at the call, not at the first next()
    assert list(open_run(tmp_path / "run").records("checkpoints")) == []  # a standard one, none written yet
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'missing'}: no such run folder"):
        open_run(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no such run folder"):
        load_records(tmp_path / "missing", "episodes")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match=f"{tmp_path / 'photos'}: not an rtsave run"):
        open_run(tmp_path / "photos")
    (tmp_path / "crashed" / "episodes").mkdir(parents=True)
    with pytest.raises(ValueError, match=f"{tmp_path / 'crashed'}: an empty run .* episodes/"):
        open_run(tmp_path / "crashed")
    SegmentRunWriter(tmp_path / "started", "w")  # run.json written, nothing saved yet
    assert open_run(tmp_path / "started").categories() == []


def test_lineage_after_a_resume_from_an_earlier_checkpoint(tmp_path: Path) -> None:
    import torch as th
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    from rtsave_async import RealTimeSavingCallback, load_checkpoint

    th.set_num_threads(1)

    def callback() -> RealTimeSavingCallback:
        return RealTimeSavingCallback(tmp_path, save_frequency=64, checkpoint_frequency=256)

    model = PPO("MlpPolicy", make_vec_env("CartPole-v1", n_envs=2, seed=0), n_steps=64, batch_size=64,
                n_epochs=1, seed=0, device="cpu")
    model.learn(768, callback=callback())
    first_branch = open_run(tmp_path)
    first_checkpoint, *later_checkpoints = first_branch.checkpoints()
    resume_at = first_checkpoint.timestep
    assert later_checkpoints and resume_at < max(r["timestep"] for r in first_branch.records("episodes"))

    resumed = load_checkpoint(first_checkpoint.path, make_vec_env("CartPole-v1", n_envs=2, seed=1))
    saving = callback()
    saving.restore_state(resumed.callback_state)
    resumed.model.learn(1024 - resume_at, callback=saving, reset_num_timesteps=False)

    run = open_run(tmp_path)
    every_branch = [record["timestep"] for record in run.records("episodes", branches="all")]
    current = [record["timestep"] for record in run.records("episodes")]
    assert every_branch.count(resume_at + 64) == 2 * 2  # both branches, two envs each
    save_steps = current[::2]
    assert save_steps == sorted(set(save_steps)) and save_steps[-1] == 1024  # one history, no step twice
    assert [t for t in every_branch if t <= resume_at] == [t for t in current if t <= resume_at]
    assert [h["timestep"] for h in run.hyperparameters()] == [0, resume_at]
    checkpoints = [checkpoint.timestep for checkpoint in run.checkpoints()]
    assert checkpoints[0] == resume_at and checkpoints == sorted(set(checkpoints))
    assert len(run.checkpoints(branches="all")) == len(checkpoints) + len(later_checkpoints)
    assert list(iter_records(tmp_path, "episodes")) == list(run.records("episodes"))


def test_lineage_from_write_times_leaves_concurrent_writers_alone(tmp_path: Path) -> None:
    crashed = SegmentRunWriter(tmp_path, "crashed", start=0.0, tick=1.0)
    crashed.save("hyperparameters", {"timestep": 0})
    for timestep in range(1000, 9000, 1000):
        crashed.save("learning_metrics", {"timestep": timestep})
    crashed.flush()  # killed: its segments stay .open
    sweep = SegmentRunWriter(tmp_path, "other-seed", start=95.5, tick=1.0)  # still writing after the resume
    for timestep in range(6000, 18000, 1000):  # past 5000 before the resume, and after it
        sweep.save("learning_metrics", {"timestep": timestep, "seed": 2})
    sweep.close()
    resumed = SegmentRunWriter(tmp_path, "resumed", start=100.0, tick=1.0)
    resumed.save("hyperparameters", {"timestep": 5000})
    for timestep in range(6000, 10000, 1000):
        resumed.save("learning_metrics", {"timestep": timestep})
    resumed.close()
    run = open_run(tmp_path)
    current = [(r.writer, r.data["timestep"]) for r in run.records("learning_metrics", with_metadata=True)]
    assert [t for w, t in current if w == "crashed"] == [1000, 2000, 3000, 4000, 5000]
    assert [t for w, t in current if w == "resumed"] == [6000, 7000, 8000, 9000]
    assert [t for w, t in current if w == "other-seed"] == list(range(6000, 18000, 1000))
    assert len(list(run.records("learning_metrics", branches="all"))) == 8 + 12 + 4


def test_json_files_with_metadata_merge_writers_and_accept_both_object_shapes(tmp_path: Path) -> None:
    """As the json format stores them with writer tags: ``_rtsave`` in each record of an
    array, or in the one object of a hyperparameters/checkpoints file."""
    folder = tmp_path / "hyperparameters"
    folder.mkdir()
    (tmp_path / "run.json").write_text(json.dumps({"format_version": 1, "format": "json", "writers": ["a", "b"]}))
    saves = [("b", 1, "2026-12-01T12:00:02.000000Z", "bbbbbb", {"timestep": 0, "model_type": "SAC"}),
             ("a", 1, "2026-12-01T12:00:01.000000Z", "aaaaaa", [{"timestep": 0, "model_type": "PPO"}])]
    for writer, seq, time, tag, payload in saves:
        metadata = {"writer": writer, "seq": seq, "time": time, "category": "hyperparameters"}
        data = {**payload, "_rtsave": metadata} if isinstance(payload, dict) else [
            {**record, "_rtsave": metadata} for record in payload]
        (folder / f"hyperparameters_20261201_120000_{seq:08d}_{tag}.json").write_text(json.dumps(data))
    run = open_run(tmp_path)
    assert [h["model_type"] for h in run.hyperparameters()] == ["PPO", "SAC"]
    assert [r.writer for r in run.records("hyperparameters", with_metadata=True)] == ["a", "b"]
    assert load_records(tmp_path, "hyperparameters") == [[{"timestep": 0, "model_type": "PPO"}],
                                                         [{"timestep": 0, "model_type": "SAC"}]]


def test_reading_a_run_imports_neither_torch_nor_sb3_nor_pandas(tmp_path: Path) -> None:
    from conftest import python_child

    writer = SegmentRunWriter(tmp_path, "w")
    writer.save("episodes", episodes(1))
    writer.close()
    child = python_child(f"""
        import sys
        from rtsave_async import open_run
        run = open_run({str(tmp_path)!r})
        assert len(list(run.records("episodes"))) == 2 and run.cursor().poll()
        print(sorted(name for name in ("torch", "stable_baselines3", "pandas") if name in sys.modules))
    """)
    stdout, stderr = child.communicate(timeout=60)
    assert stdout.strip() == "[]", stderr


def test_to_pandas_keeps_every_record_when_shapes_change() -> None:
    pytest.importorskip("pandas")
    from rtsave_async.readers.flatten import records_to_frame

    frame = records_to_frame([{"a": 1, "b": {"c": None}}, {"a": 2, "b": {"c": {"d": 4}}}, {"a": 3},
                              7, 8, {"a": {"x": 1}}, {}])
    assert list(frame.columns) == ["a", "b.c.d", "value", "a.x"] and len(frame) == 7
    assert frame.fillna(-1).to_dict("list") == {"a": [1, 2, 3, -1, -1, -1, -1], "b.c.d": [-1, 4, -1, -1, -1, -1, -1],
                                                "value": [-1, -1, -1, 7, 8, -1, -1],
                                                "a.x": [-1, -1, -1, -1, -1, 1, -1]}


def test_lineage_of_a_run_without_write_times_follows_each_resume(tmp_path: Path) -> None:
    """Files as written before ``_rtsave``: trained to 8000, resumed from the final
    checkpoint to 10000, then resumed from the one at 5000."""
    def write(category: str, prefix: str, seq: int, timestep: int) -> None:
        folder = tmp_path / category
        folder.mkdir(exist_ok=True)
        (folder / f"{prefix}_20261201_120000_{seq:08d}.json").write_text(json.dumps([{"timestep": timestep}]))

    for seq, start in enumerate((0, 8000, 5000), start=1):
        write("hyperparameters", "hyperparameters", seq, start)
    steps = [*range(1000, 9000, 1000), 9000, 10000, 6000, 7000]
    for seq, timestep in enumerate(steps, start=1):
        write("learning_metrics", "learning_metrics", seq, timestep)
    run = open_run(tmp_path)
    assert [r["timestep"] for r in run.records("learning_metrics")] == [1000, 2000, 3000, 4000, 5000, 6000, 7000]
    assert [r["timestep"] for r in run.records("learning_metrics", branches="all")] == steps
    assert [h["timestep"] for h in run.hyperparameters()] == [0, 5000]  # the start at 8000 was abandoned too
