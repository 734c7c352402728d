"""Parquet data files: every save comes back as written (values, key order, metadata), whatever its shape."""

from __future__ import annotations

import orjson
import pytest

from rtsave_async import open_run
from rtsave_async.formats.archive import archive_run
from rtsave_async.readers.flatten import records_to_frame
from rtsave_async.readers.run import Save
from support.runs import finished_run

pytest.importorskip("pyarrow")
pandas = pytest.importorskip("pandas")


def fingerprint(saves: list[Save]) -> bytes:
    return orjson.dumps([(save.writer, save.seq, save.time, save.data) for save in saves])


def test_odd_shapes_come_back_exactly():
    from rtsave_async.formats.parquet import encode_saves
    from rtsave_async.readers.parquet import SHAPE_COLUMN, read_table, table_saves

    saves = [
        Save("x", [{"a": 1, "b": {"c": [1.5, 2.5]}}, {"a": 2, "b": {"c": []}}], "k", "w", 1, "2026-12-01T00:00:01Z"),
        Save("x", [{"a": 2.5, "b": {"c": [1]}}], "k", "w", 2, "2026-12-01T00:00:02Z"),  # int column turns float
        Save("x", [], "k", "w", 3, "2026-12-01T00:00:03Z"),  # an empty save
        Save("x", {"logger": {}}, "k", None, 4, None),  # one object, an empty dict leaf
        Save("x", [{"logger": {"train/loss": 0.5}}], "k", "w", 5, "2026-12-01T00:00:05Z"),
        Save("x", [1, "text", None, [1, 2]], "k", "w", 6, "2026-12-01T00:00:06Z"),  # not dicts
        Save("x", [{"l": [{"p": 1}, {"q": 2}]}], "k", "w", 7, "2026-12-01T00:00:07Z"),  # elements of other keys
        Save("x", [{"a.b": 1, "a": {"b": 2}}], "k", "w", 8, "2026-12-01T00:00:08Z"),  # clashing dotted names
        Save("x", [{"b": 1, "a": 2}], "k", "w", 9, "2026-12-01T00:00:09Z"),  # key order
    ]
    table = read_table(encode_saves(saves))
    assert fingerprint(table_saves(table, "x", "k")) == fingerprint(saves)
    assert 0 in table.column(SHAPE_COLUMN).to_pylist()  # the plain shapes are columns, not JSON


def test_to_pandas_from_parquet_columns_equals_the_record_path(tmp_path):
    finished_run(tmp_path, saves=30)
    archive_run(str(tmp_path), "parquet", records_per_file=7)  # several files, merged in order
    run = open_run(tmp_path)
    assert len(run.data_files("episodes")) > 1
    from_columns = run.to_pandas("episodes", with_metadata=True)
    from_records = records_to_frame([{**record.data, "_rtsave": {"writer": record.writer, "seq": record.seq,
                                                                 "time": record.time}}
                                     for record in run.records("episodes", with_metadata=True)])
    pandas.testing.assert_frame_equal(from_columns, from_records, check_dtype=False)


def test_a_damaged_parquet_file_is_reported_by_name(tmp_path):
    finished_run(tmp_path, saves=3)
    archive_run(str(tmp_path), "parquet")
    (victim,) = (tmp_path / "episodes").iterdir()
    victim.write_bytes(victim.read_bytes()[:100])
    with pytest.raises(ValueError, match=victim.name):
        list(open_run(tmp_path, errors="raise").records("episodes"))


def test_an_archive_that_fails_leaves_the_run_as_it_was(tmp_path):
    finished_run(tmp_path, saves=6)
    before = sorted(path.relative_to(tmp_path) for path in tmp_path.rglob("*") if path.is_file())
    victim = sorted((tmp_path / "learning_metrics").iterdir())[0]  # archived after episodes were written
    victim.write_text("not json")
    with pytest.raises(ValueError, match=victim.name):
        archive_run(str(tmp_path), "parquet")
    assert sorted(path.relative_to(tmp_path) for path in tmp_path.rglob("*") if path.is_file()) == before
