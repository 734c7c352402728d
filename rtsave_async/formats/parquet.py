"""Saves -> one Parquet file's bytes (the layout is described in :mod:`rtsave_async.readers.parquet`).

Records of one shape become leaf columns; the table is read back before it is
returned, and a shape whose records do not come back byte for byte (as orjson writes
them: an int that Arrow made a float, list elements of different keys, a leaf column
of mixed types) is stored as orjson bytes in ``_rtsave.json`` instead, so nothing is
ever changed by the columnar form.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from rtsave_async.readers.flatten import ShapeBlock, column_names, shape_blocks
from rtsave_async.readers.parquet import (
    EMPTY_SAVE_SHAPE,
    JSON_COLUMN,
    JSON_SHAPE,
    OBJECT_COLUMN,
    SAVE_COLUMN,
    SEQ_COLUMN,
    SHAPE_COLUMN,
    TEMPLATES_KEY,
    TIME_COLUMN,
    WRITER_COLUMN,
    decode_rows,
    import_pyarrow,
)
from rtsave_async.readers.run import METADATA_KEY, Save

#: zstd level of the Parquet pages: most of the size win of higher levels, at a fraction of their time.
ZSTD_LEVEL = 9
#: Rows per row group: the newest rows of a file (``inspect``) are read without decoding the rest.
ROW_GROUP_ROWS = 16_384
Shape = tuple[tuple[str, ...], ...] | None  # a ShapeBlock's paths (None: records that are not dicts)


def encode_saves(saves: Sequence[Save]) -> bytes:
    """A Parquet file holding ``saves`` (in this order), zstd-compressed."""
    pyarrow = import_pyarrow()
    rows: list[tuple[int, Save]] = []  # (save index, save) per row
    records: list[Any] = []
    record_rows: list[int] = []  # the row of each of records
    for index, save in enumerate(saves):
        items = save.records()
        if not items:
            rows.append((index, save))
        for record in items:
            record_rows.append(len(rows))
            rows.append((index, save))
            records.append(record)
    as_json: set[Shape] = set()
    while True:
        table, failed = _build_table(pyarrow, saves, rows, records, record_rows, as_json)
        if not failed:
            failed = _shapes_not_kept(table, records, record_rows)
        if not failed:
            break
        as_json |= failed
    sink = io.BytesIO()
    pyarrow.parquet.write_table(table, sink, compression="zstd", compression_level=ZSTD_LEVEL,
                                row_group_size=ROW_GROUP_ROWS)
    return sink.getvalue()


def _build_table(pyarrow: Any, saves: Sequence[Save], rows: list[tuple[int, Save]], records: list[Any],
                 record_rows: list[int], as_json: set[Shape]) -> tuple[Any, set[Shape]]:
    """The table, or the shapes whose columns Arrow refused (to be stored as JSON)."""
    count = len(rows)
    shapes = [EMPTY_SAVE_SHAPE] * count
    texts: list[bytes | None] = [None] * count
    templates: list[Any] = []
    template_index: dict[Shape, int] = {}
    columns: dict[str, list[Any]] = {}
    users: dict[str, set[Shape]] = {}  # column -> the shapes that fill it
    for block in leaf_blocks(records):
        shape: Shape = None if block.paths is None else tuple(block.paths)
        block_rows = record_rows[block.start:block.end]
        names = column_names(block.paths)
        if shape in as_json or len(set(names)) < len(names) or any(name.startswith(f"{METADATA_KEY}.") for name in names):
            for row, record in zip(block_rows, records[block.start:block.end]):
                shapes[row], texts[row] = JSON_SHAPE, orjson.dumps(record)
            continue
        if shape not in template_index:
            template_index[shape] = len(templates)
            templates.append(names[0] if shape is None else _template(block.paths, names))
        for row in block_rows:
            shapes[row] = template_index[shape]
        for name, values in zip(names, block.columns):
            column = columns.setdefault(name, [None] * count)
            users.setdefault(name, set()).add(shape)
            for row, value in zip(block_rows, values):
                column[row] = value
    arrays = {
        SAVE_COLUMN: pyarrow.array([index for index, _ in rows], pyarrow.int64()),
        WRITER_COLUMN: pyarrow.array([save.writer for _, save in rows], pyarrow.string()),
        SEQ_COLUMN: pyarrow.array([save.seq for _, save in rows], pyarrow.int64()),
        TIME_COLUMN: pyarrow.array([save.time for _, save in rows], pyarrow.string()),
        OBJECT_COLUMN: pyarrow.array([not isinstance(save.data, list) for _, save in rows], pyarrow.bool_()),
        SHAPE_COLUMN: pyarrow.array(shapes, pyarrow.int32()),
        JSON_COLUMN: pyarrow.array(texts, pyarrow.binary()),
    }
    failed: set[Shape] = set()
    for name, values in columns.items():
        try:
            arrays[name] = pyarrow.array(values)
        except (pyarrow.ArrowException, TypeError, ValueError, OverflowError):
            failed |= users[name]
            continue
        if _has_empty_struct(pyarrow, arrays[name].type):  # Parquet cannot store a struct of no fields
            failed |= users[name]
    if failed:
        return None, failed
    table = pyarrow.table(arrays)
    return table.replace_schema_metadata({TEMPLATES_KEY: orjson.dumps(templates)}), failed


def leaf_blocks(records: Sequence[Any]) -> Iterator[ShapeBlock]:
    """:func:`~rtsave_async.readers.flatten.shape_blocks`, also cut where a leaf of the
    block's first record holds a non-empty dict (``"logger": {}`` first, then keys), so
    every column holds leaves only."""
    start = 0
    while start < len(records):
        block = next(shape_blocks(records, start))
        cut = min((block.start + index for column in block.columns
                   for index, value in enumerate(column) if type(value) is dict and value), default=block.end)
        yield block._replace(end=cut, columns=[column[:cut - block.start] for column in block.columns])
        start = cut


def _has_empty_struct(pyarrow: Any, kind: Any) -> bool:
    if pyarrow.types.is_struct(kind):
        return kind.num_fields == 0 or any(_has_empty_struct(pyarrow, kind.field(index).type)
                                           for index in range(kind.num_fields))
    if pyarrow.types.is_list(kind) or pyarrow.types.is_large_list(kind):
        return _has_empty_struct(pyarrow, kind.value_type)
    return False


def _template(paths: list[tuple[str, ...]], names: list[str]) -> dict[str, Any]:
    """The key tree of ``paths`` with each leaf the name of its column."""
    tree: dict[str, Any] = {}
    for path, name in zip(paths, names):
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = name
    return tree


def _shapes_not_kept(table: Any, records: list[Any], record_rows: list[int]) -> set[Shape]:
    """The shapes of the records that do not read back from ``table`` as they were written."""
    decoded = decode_rows(table)
    failed: set[Shape] = set()
    for block in leaf_blocks(records):
        for row, record in zip(record_rows[block.start:block.end], records[block.start:block.end]):
            if orjson.dumps(decoded[row]) != orjson.dumps(record):
                failed.add(None if block.paths is None else tuple(block.paths))
                break
    return failed
