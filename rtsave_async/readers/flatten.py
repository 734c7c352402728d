"""Records (nested dicts) -> a pandas DataFrame with dotted column names.

``{"detailed_info": {"robot_state": {"position": {"x": 1.0}}}}`` becomes the column
``detailed_info.robot_state.position.x``; lists stay list values in one column; an
empty dict stays a value. Records of one category nearly always share one shape, so
the flattening code for a shape is generated once (a function returning a row tuple)
and applied to every record of that shape; a record of another shape starts a new
block, and blocks are concatenated (columns a block lacks are missing values there).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

_NUMERIC_TYPES = (int, float, bool)
Row = Callable[[Any], tuple[Any, ...]]


def import_pandas() -> Any:
    """pandas, or an ImportError saying how to install it."""
    try:
        import pandas
    except ImportError:
        raise ImportError('Run.to_pandas needs pandas: pip install "rtsave_async[export]"') from None
    return pandas


def records_to_frame(records: Sequence[Any]) -> pd.DataFrame:
    """One row per record, nested dict fields as dotted columns (see the module docstring)."""
    pandas = import_pandas()
    blocks = []
    start = 0
    while start < len(records):
        columns, row = _row_function(records[start])
        rows = []
        for record in itertools.islice(records, start, None):
            try:
                values = row(record)
            except (KeyError, TypeError, IndexError):
                break
            if values is None:
                break
            rows.append(values)
        if not rows:  # not a dict (or another shape) at ``start``: a block of its own
            columns, rows = ["value"], [(records[start],)]
        blocks.append(_block_frame(pandas, columns, rows))
        start += len(rows)
    if not blocks:
        return pandas.DataFrame()
    if len(blocks) == 1:
        return blocks[0]
    return pandas.concat(blocks, ignore_index=True, sort=False)


def _block_frame(pandas: Any, columns: list[str], rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    import numpy as np

    data: dict[str, Any] = {}
    for column, values in zip(columns, zip(*rows)):
        if type(values[0]) in _NUMERIC_TYPES:
            array = np.array(values)
            if array.dtype.kind in "ifb":  # all plain numbers: skip pandas' per-value inference
                data[column] = array
                continue
        data.update(_expand_dicts(column, list(values)))
    return pandas.DataFrame(data, index=pandas.RangeIndex(len(rows)))


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


def _row_function(record: Any) -> tuple[list[str], Row]:
    """Dotted column names and a function giving a record of this shape as a row tuple
    (None, KeyError or TypeError for a record of another shape)."""
    if type(record) is not dict:
        return [], _no_row
    paths: list[tuple[str, ...]] = []
    _leaf_paths(record, (), paths)
    names: dict[tuple[str, ...], str] = {(): "r"}
    lines = ["def row(r):"]
    checks = []

    def node(path: tuple[str, ...]) -> str:
        if path not in names:
            parent = node(path[:-1])
            names[path] = f"d{len(names)}"
            lines.append(f"    {names[path]} = {parent}[{path[-1]!r}]")
        return names[path]

    values = [f"{node(path[:-1])}[{path[-1]!r}]" for path in paths]
    # Same key count at every level, and the keys exist: the same shape.
    for path, variable in names.items():
        checks.append(f"len({variable}) != {len(_at(record, path))}")
    lines.append(f"    if {' or '.join(checks)}:\n        return None")
    lines.append(f"    return ({''.join(value + ', ' for value in values)})")
    namespace: dict[str, Any] = {}
    exec("\n".join(lines), namespace)  # generated from the record's own keys (repr-quoted)
    return [".".join(path) for path in paths], namespace["row"]


def _at(record: dict[str, Any], path: Iterable[str]) -> dict[str, Any]:
    for name in path:
        record = record[name]
    return record


def _no_row(record: Any) -> None:
    return None
