"""Records (nested dicts) -> a pandas DataFrame with dotted column names.

``{"detailed_info": {"robot_state": {"position": {"x": 1.0}}}}`` becomes the column
``detailed_info.robot_state.position.x``; lists stay list values in one column; an
empty dict stays a value. Records of one category nearly always share one shape, so
the flattening code for a shape is generated once (a loop appending each leaf to its
column) and run over the records while they keep that shape; a record of another
shape starts a new block, and blocks are concatenated (columns a block lacks are
missing values there).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import pandas as pd

_NUMERIC_TYPES = (int, float, bool)
#: The column of records that are not dicts.
VALUE_COLUMN = "value"
Filler = Callable[[Sequence[Any], int], tuple[int, list[list[Any]]]]


def import_pandas() -> Any:
    """pandas, or an ImportError saying how to install it."""
    try:
        import pandas
    except ImportError:
        raise ImportError('Run.to_pandas needs pandas: pip install "rtsave_async[export]"') from None
    return pandas


class ShapeBlock(NamedTuple):
    """Consecutive records of one shape: ``records[start:end]`` as leaf columns.

    ``paths``: each column's key path (``("detailed_info", "robot_state", "position", "x")``),
    or None for records that are not dicts (one column of the records themselves).
    """

    paths: list[tuple[str, ...]] | None
    start: int
    end: int
    columns: list[list[Any]]


def shape_blocks(records: Sequence[Any], start: int = 0) -> Iterator[ShapeBlock]:
    """``records[start:]`` cut into runs of one shape (same keys at every level), in order.

    A leaf of the block's first record may hold a dict in later records of the block
    (``{}`` first, then keys): :func:`records_to_frame` expands those into sub-columns.
    """
    while start < len(records):
        if type(records[start]) is dict:
            paths, fill = _column_filler(records[start])
            end, columns = fill(records, start)
            yield ShapeBlock(paths, start, end, columns)
        else:
            end = next((index for index in range(start, len(records)) if type(records[index]) is dict), len(records))
            yield ShapeBlock(None, start, end, [list(records[start:end])])
        start = end


def records_to_frame(records: Sequence[Any]) -> pd.DataFrame:
    """One row per record, nested dict fields as dotted columns (see the module docstring)."""
    pandas = import_pandas()
    blocks = [_block_frame(pandas, column_names(block.paths), block.columns, block.end - block.start)
              for block in shape_blocks(records)]
    if not blocks:
        return pandas.DataFrame()
    if len(blocks) == 1:
        return blocks[0]
    return pandas.concat(blocks, ignore_index=True, sort=False)


def column_names(paths: list[tuple[str, ...]] | None) -> list[str]:
    """The dotted column names of a :class:`ShapeBlock`'s ``paths`` (``["value"]`` for None)."""
    return [VALUE_COLUMN] if paths is None else [".".join(path) for path in paths]


def _block_frame(pandas: Any, names: list[str], columns: list[list[Any]], rows: int) -> pd.DataFrame:
    import numpy as np

    data: dict[str, Any] = {}
    for name, values in zip(names, columns):
        if type(values[0]) in _NUMERIC_TYPES:
            array = np.array(values)
            if array.dtype.kind in "ifb":  # all plain numbers: skip pandas' per-value inference
                data[name] = array
                continue
        data.update(_expand_dicts(name, values))
    return pandas.DataFrame(data, index=pandas.RangeIndex(rows))


def _expand_dicts(column: str, values: list[Any]) -> dict[str, Any]:
    """``{column: values}``, or dotted sub-columns where some rows hold a dict (the
    block's first record had none there); rows holding something else keep it in
    ``column``."""
    if not any(type(value) is dict and value for value in values):
        return {column: values}
    inner = records_to_frame([value if type(value) is dict else {} for value in values])
    expanded = {f"{column}.{name}": inner[name] for name in inner.columns}
    if any(value is not None and type(value) is not dict for value in values):
        expanded = {column: [None if type(value) is dict else value for value in values], **expanded}
    return expanded


def _leaf_paths(record: dict[str, Any], path: tuple[str, ...], out: list[tuple[str, ...]]) -> None:
    for name, value in record.items():
        if type(value) is dict and value:
            _leaf_paths(value, path + (name,), out)
        else:
            out.append(path + (name,))


def _column_filler(record: dict[str, Any]) -> tuple[list[tuple[str, ...]], Filler]:
    """The leaf key paths, and ``fill(records, start) -> (end, columns)``: the leaf
    values of ``records[start:end]``, column by column, where ``end`` is the first
    record of another shape (other keys at some level, or not a dict)."""
    paths: list[tuple[str, ...]] = []
    _leaf_paths(record, (), paths)
    variables: dict[tuple[str, ...], str] = {(): "r"}
    reads = []

    def node(path: tuple[str, ...]) -> str:
        if path not in variables:
            parent = node(path[:-1])
            variables[path] = f"d{len(variables)}"
            reads.append(f"{variables[path]} = {parent}[{path[-1]!r}]")
        return variables[path]

    values = [f"{node(path[:-1])}[{path[-1]!r}]" for path in paths]
    reads += [f"v{index} = {value}" for index, value in enumerate(values)]
    same_shape = " and ".join(f"len({variable}) == {len(_at(record, path))}" for path, variable in variables.items())
    columns = range(len(paths))
    source = "\n".join([
        "def fill(records, start):",
        *(f"    c{index} = []; a{index} = c{index}.append" for index in columns),
        "    end = start",
        "    for r in islice(records, start, None):",
        "        if type(r) is not dict:",
        "            break",
        "        try:",
        *(f"            {read}" for read in reads or ["pass"]),
        "        except (KeyError, TypeError, IndexError):",
        "            break",
        f"        if not ({same_shape}):",
        "            break",
        *(f"        a{index}(v{index})" for index in columns),
        "        end += 1",
        f"    return end, [{', '.join(f'c{index}' for index in columns)}]",
    ])
    namespace: dict[str, Any] = {"islice": itertools.islice}
    exec(source, namespace)  # built from the record's own keys, each written as a repr() literal
    return paths, namespace["fill"]


def _at(record: dict[str, Any], path: Iterable[str]) -> dict[str, Any]:
    for name in path:
        record = record[name]
    return record
