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
from collections.abc import Callable, Sequence
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


def open_parquet(data: bytes) -> Any:
    """A ``pyarrow.parquet.ParquetFile`` over file bytes ``data`` (``ValueError`` if they are not one of ours)."""
    pyarrow = import_pyarrow()
    try:
        file = pyarrow.parquet.ParquetFile(io.BytesIO(data))  # read_table would import pyarrow.dataset
    except (pyarrow.ArrowException, OSError) as exc:
        raise ValueError(f"not a valid Parquet file ({exc})") from None
    names = file.schema_arrow.names
    if TEMPLATES_KEY not in (file.schema_arrow.metadata or {}) or any(name not in names for name in METADATA_COLUMNS):
        raise ValueError("a Parquet file without the rtsave columns")
    return file


def read_table(data: bytes, columns: Callable[[list[str]], list[str]] | None = None,
               first_row_group: int = 0) -> pa.Table:
    """The table in Parquet file bytes ``data`` (``ValueError`` if they are not one of ours);
    ``columns(all names)`` picks the columns to decode (default all); ``first_row_group``:
    only the row groups from this one on (the file's newest rows)."""
    pyarrow = import_pyarrow()
    file = open_parquet(data)
    names = None if columns is None else columns(file.schema_arrow.names)
    try:
        if first_row_group:
            return file.read_row_groups(range(first_row_group, file.num_row_groups), columns=names)
        return file.read(columns=names)
    except (pyarrow.ArrowException, OSError) as exc:
        raise ValueError(f"not a valid Parquet file ({exc})") from None


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
    compute = pyarrow.compute
    resumed = branches == "current" and run.resumed()
    # Files of one archive are in order; a category's Parquet files are of one archive
    # unless a store was assembled by hand: then they are merged by Save.order.
    merge = len({data_file.name.tag for data_file in data_files}) > 1
    wanted = {SHAPE_COLUMN, *((SAVE_COLUMN, WRITER_COLUMN, SEQ_COLUMN, TIME_COLUMN)
                              if with_metadata or resumed or merge else ())}

    def columns(names: list[str]) -> list[str]:
        return [name for name in names if name in wanted or not name.startswith(f"{METADATA_KEY}.")]

    tables = []
    for data_file in data_files:
        try:
            table = read_table(run.store.read(data_file.key), columns)
        except (ValueError, FileNotFoundError):
            return None  # the record-by-record path reports it
        if compute.any(compute.equal(table.column(SHAPE_COLUMN), JSON_SHAPE)).as_py():
            return None
        tables.append(table)
    table = pyarrow.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]
    if merge:
        keys = pyarrow.table({  # Save.order: no time, writer or seq sorts as "", "" and 0 (stable sort)
            "time": compute.fill_null(table.column(TIME_COLUMN), ""),
            "writer": compute.fill_null(table.column(WRITER_COLUMN), ""),
            "seq": compute.fill_null(table.column(SEQ_COLUMN), 0)})
        table = table.take(compute.sort_indices(keys, sort_keys=[("time", "ascending"), ("writer", "ascending"),
                                                                 ("seq", "ascending")]))
    table = table.filter(compute.not_equal(table.column(SHAPE_COLUMN), EMPTY_SAVE_SHAPE))
    if resumed:
        keep = run.current_branch_mask(category, _lineage_columns(table))
        if keep is not None:
            table = table.filter(pyarrow.array(keep))
    data_names = [name for name in table.column_names if not name.startswith(f"{METADATA_KEY}.")]
    if with_metadata:
        data_names += [WRITER_COLUMN, SEQ_COLUMN, TIME_COLUMN]
    table = table.select(data_names)
    nested = {name for name, kind in zip(table.column_names, table.schema.types) if _is_nested(pyarrow, kind)}
    frame = table.select([name for name in data_names if name not in nested]).to_pandas()
    for position, name in enumerate(data_names):
        if name in nested:  # lists of Python values, as the record-by-record path gives
            frame.insert(position, name, pandas.Series(python_values(pyarrow, table.column(name).combine_chunks()),
                                                       dtype=object))
    return frame


def _is_nested(pyarrow: Any, kind: Any) -> bool:
    return pyarrow.types.is_list(kind) or pyarrow.types.is_large_list(kind) or pyarrow.types.is_struct(kind)


def python_values(pyarrow: Any, array: pa.Array) -> list[Any]:
    """``array.to_pylist()``, several times faster for lists and structs without nulls:
    the leaves are converted in bulk (numpy), then sliced and zipped back into rows."""
    if array.null_count:
        return array.to_pylist()
    kind = array.type
    if pyarrow.types.is_list(kind) or pyarrow.types.is_large_list(kind):
        import numpy

        offsets = array.offsets.to_numpy()
        values = array.values.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
        lengths = numpy.diff(offsets)
        if len(lengths) and (lengths == lengths[0]).all() and _is_number(pyarrow, values.type) and not values.null_count:
            return values.to_numpy(zero_copy_only=False).reshape(len(lengths), int(lengths[0])).tolist()
        flat = python_values(pyarrow, values)
        bounds = (offsets - offsets[0]).tolist()
        return [flat[start:end] for start, end in zip(bounds, bounds[1:])]
    if pyarrow.types.is_struct(kind):
        names = [kind.field(index).name for index in range(kind.num_fields)]
        fields = [python_values(pyarrow, array.field(index)) for index in range(kind.num_fields)]
        return [dict(zip(names, row)) for row in zip(*fields)]
    if _is_number(pyarrow, kind):
        return array.to_numpy(zero_copy_only=False).tolist()
    return array.to_pylist()


def _is_number(pyarrow: Any, kind: Any) -> bool:
    return pyarrow.types.is_integer(kind) or pyarrow.types.is_floating(kind) or pyarrow.types.is_boolean(kind)


def _lineage_columns(table: pa.Table) -> list[tuple[Any, ...]]:
    """(save id, time, writer, record timestep) per row, for the lineage of ``Run``."""
    timesteps = table.column("timestep").to_pylist() if "timestep" in table.column_names else [None] * len(table)
    saves = table.column(SAVE_COLUMN).to_pylist()
    seqs = table.column(SEQ_COLUMN).to_pylist()
    writers = table.column(WRITER_COLUMN).to_pylist()
    times = table.column(TIME_COLUMN).to_pylist()
    return [((writer, seq, time, save), time, writer, timestep)
            for save, seq, writer, time, timestep in zip(saves, seqs, writers, times, timesteps)]
