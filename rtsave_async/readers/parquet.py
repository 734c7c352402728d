"""Parquet data files (``<category>/<prefix>_<stamp>_<seq>_<tag>.parquet``, written by ``rtsave archive``).

One row per record, in the run's order. Columns:

- ``_rtsave.save`` (int): which save of the file the record belongs to (rows of one
  save are adjacent); ``_rtsave.writer``, ``_rtsave.seq``, ``_rtsave.time``: the save's
  metadata (null where the record had none); ``_rtsave.object`` (bool): the save was one
  object, not an array of records;
- ``_rtsave.shape`` (int): the index of the record's template in the schema metadata
  ``rtsave.templates``, or ``-1``: the record is in ``_rtsave.json`` (orjson bytes; for
  shapes Arrow cannot hold exactly), ``-2``: the save was an empty array (no record);
- the records' leaves as dotted columns (``detailed_info.robot_state.position.x``),
  lists as list columns, null where a row's template has no such leaf.

A template is the record's key tree with each leaf replaced by its column's name (a
plain column name for records that are not dicts), so a record comes back with its
keys in their order and its values as written: the archiver checks that before it
publishes a file (:mod:`rtsave_async.formats.parquet`).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from rtsave_async.readers.run import METADATA_KEY, Save

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from rtsave_async.readers.run import Branches, DataFile, Run

SAVE_COLUMN = f"{METADATA_KEY}.save"
WRITER_COLUMN = f"{METADATA_KEY}.writer"
SEQ_COLUMN = f"{METADATA_KEY}.seq"
TIME_COLUMN = f"{METADATA_KEY}.time"
OBJECT_COLUMN = f"{METADATA_KEY}.object"
SHAPE_COLUMN = f"{METADATA_KEY}.shape"
JSON_COLUMN = f"{METADATA_KEY}.json"
#: The metadata columns, in file order.
METADATA_COLUMNS = (SAVE_COLUMN, WRITER_COLUMN, SEQ_COLUMN, TIME_COLUMN, OBJECT_COLUMN, SHAPE_COLUMN, JSON_COLUMN)
TEMPLATES_KEY = b"rtsave.templates"
JSON_SHAPE = -1
EMPTY_SAVE_SHAPE = -2
EXTRA_HINT = 'pip install "rtsave_async[export]"'


def import_pyarrow() -> Any:
    """pyarrow (with pyarrow.parquet), or an ImportError naming the extra that brings it."""
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise ImportError(f"Parquet needs pyarrow: {EXTRA_HINT}") from None
    return pyarrow


def read_table(data: bytes) -> pa.Table:
    """The table in Parquet file bytes ``data`` (``ValueError`` if they are not one of ours)."""
    pyarrow = import_pyarrow()
    try:
        table = pyarrow.parquet.ParquetFile(io.BytesIO(data)).read()  # read_table would import pyarrow.dataset
    except (pyarrow.ArrowException, OSError) as exc:
        raise ValueError(f"not a valid Parquet file ({exc})") from None
    metadata = table.schema.metadata or {}
    if TEMPLATES_KEY not in metadata or any(name not in table.column_names for name in METADATA_COLUMNS):
        raise ValueError("a Parquet file without the rtsave columns")
    return table


def table_saves(table: pa.Table, category: str, key: str) -> list[Save]:
    """The saves a table holds, in order, as :class:`~rtsave_async.readers.run.Save` objects."""
    rows = decode_rows(table)
    saves: list[Save] = []
    columns = [table.column(name).to_pylist() for name in (SAVE_COLUMN, WRITER_COLUMN, SEQ_COLUMN, TIME_COLUMN,
                                                           OBJECT_COLUMN, SHAPE_COLUMN)]
    current = None
    for (save_index, writer, seq, time, single, shape), record in zip(zip(*columns), rows):
        if current is None or save_index != current[0]:
            current = (save_index, Save(category, None if single else [], key, writer, seq, time))
            saves.append(current[1])
        if shape == EMPTY_SAVE_SHAPE:
            continue
        if single:
            current[1].data = record
        else:
            current[1].data.append(record)
    return saves


def decode_rows(table: pa.Table) -> list[Any]:
    """Each row's record (None for an empty save's row), rebuilt from its template or JSON."""
    templates = orjson.loads(table.schema.metadata[TEMPLATES_KEY])
    shapes = table.column(SHAPE_COLUMN).to_pylist()
    values: dict[str, list[Any]] = {}

    def column(name: str) -> list[Any]:
        if name not in values:
            values[name] = table.column(name).to_pylist()
        return values[name]

    builders = [_record_builder(template, column) for template in templates]
    texts = column(JSON_COLUMN) if JSON_SHAPE in shapes else None
    loads = orjson.loads
    return [builders[shape](index) if shape >= 0 else (loads(texts[index]) if shape == JSON_SHAPE else None)
            for index, shape in enumerate(shapes)]


def _record_builder(template: Any, column: Any) -> Any:
    """``build(row) -> record`` for ``template``: generated once per template (one dict
    display per record), reading the leaf columns by name through ``column``."""
    variables: dict[str, str] = {}

    def expression(node: Any) -> str:
        if isinstance(node, str):
            variable = variables.setdefault(node, f"c{len(variables)}")
            return f"{variable}[i]"
        return "{" + ", ".join(f"{name!r}: {expression(child)}" for name, child in node.items()) + "}"

    body = expression(template)
    namespace = {variable: column(name) for name, variable in variables.items()}
    exec(f"def build(i):\n    return {body}", namespace)  # keys written as repr() literals
    return namespace["build"]


def parquet_frame(run: Run, category: str, data_files: Sequence[DataFile], with_metadata: bool,
                  branches: Branches) -> pd.DataFrame | None:
    """``Run.to_pandas`` straight from the Parquet columns when ``category`` is all
    Parquet and every record is in leaf columns; None otherwise (the caller decodes)."""
    from rtsave_async.readers.flatten import import_pandas

    pyarrow = import_pyarrow()
    pandas = import_pandas()
    tables = []
    for data_file in data_files:
        try:
            table = read_table(run.store.read(data_file.key))
        except (ValueError, FileNotFoundError):
            return None  # the record-by-record path reports it
        if JSON_SHAPE in table.column(SHAPE_COLUMN).to_pylist():
            return None
        tables.append(table)
    table = pyarrow.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]
    if len(tables) > 1:
        compute = pyarrow.compute
        keys = pyarrow.table({  # Save.order: no time, writer or seq sorts as "", "" and 0 (stable sort)
            "time": compute.fill_null(table.column(TIME_COLUMN), ""),
            "writer": compute.fill_null(table.column(WRITER_COLUMN), ""),
            "seq": compute.fill_null(table.column(SEQ_COLUMN), 0)})
        table = table.take(compute.sort_indices(keys, sort_keys=[("time", "ascending"), ("writer", "ascending"),
                                                                 ("seq", "ascending")]))
    table = table.filter(pyarrow.compute.not_equal(table.column(SHAPE_COLUMN), EMPTY_SAVE_SHAPE))
    if branches == "current":
        keep = run.current_branch_mask(category, _lineage_columns(table))
        if keep is not None:
            table = table.filter(pyarrow.array(keep))
    data_names = [name for name in table.column_names if not name.startswith(f"{METADATA_KEY}.")]
    if with_metadata:
        data_names += [WRITER_COLUMN, SEQ_COLUMN, TIME_COLUMN]
    table = table.select(data_names)
    frame = table.to_pandas()
    for name, kind in zip(table.column_names, table.schema.types):
        if pyarrow.types.is_list(kind) or pyarrow.types.is_large_list(kind) or pyarrow.types.is_struct(kind):
            frame[name] = pandas.Series(table.column(name).to_pylist(), dtype=object)
    return frame


def _lineage_columns(table: pa.Table) -> list[tuple[Any, ...]]:
    """(save id, time, writer, record timestep) per row, for the lineage of ``Run``."""
    timesteps = table.column("timestep").to_pylist() if "timestep" in table.column_names else [None] * len(table)
    saves = table.column(SAVE_COLUMN).to_pylist()
    seqs = table.column(SEQ_COLUMN).to_pylist()
    writers = table.column(WRITER_COLUMN).to_pylist()
    times = table.column(TIME_COLUMN).to_pylist()
    return [((writer, seq, time, save), time, writer, timestep)
            for save, seq, writer, time, timestep in zip(saves, seqs, writers, times, timesteps)]
