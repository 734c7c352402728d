"""Values stored without pickle: a JSON tree plus numpy arrays in one ``.npz``.

The state a checkpoint keeps besides the SB3 zip (RNG states, counters, env and
Monitor states, VecNormalize statistics, HER infos) is a tree of ``None``, ``bool``,
``int``, ``float``, ``str``, ``bytes``, lists, tuples, dicts, numpy arrays and scalars
(no object dtype), torch tensors and ``OrderedDict``. :func:`flatten` turns it into JSON-ready data in
which every array is a reference into a list of copied arrays; :func:`pack` puts both
into ``.npz`` entries. Reading back uses ``json.loads`` and
``np.load(allow_pickle=False)`` only, so loading a checkpoint's state runs no code.
Types round-trip exactly (a tuple stays a tuple, an ``np.float32`` stays one); anything
else raises :class:`UnsafeStateError` naming where it is.
"""

from __future__ import annotations

import io
import json
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch as th

_ARRAY = "__ndarray__"
_SCALAR = "__npscalar__"
_TENSOR = "__tensor__"
_TUPLE = "__tuple__"
_BYTES = "__bytes__"
_DICT = "__dict__"  # a dict whose keys are not all plain strings, as [key, value] pairs
_ORDERED_DICT = "__ordereddict__"  # as [key, value] pairs (gymnasium's Dict spaces return them)
_TAGS = frozenset((_ARRAY, _SCALAR, _TENSOR, _TUPLE, _BYTES, _DICT, _ORDERED_DICT))
_PLAIN = (type(None), bool, int, float, str)
_TREE_ENTRY = "tree"
_VALUE = "value"  # the prefix of a whole-file value (encode_npz)


class UnsafeStateError(ValueError):
    """A value the pickle-free state format cannot hold; the message says where it is."""


def flatten(value: Any, where: str = "state") -> tuple[Any, list[np.ndarray]]:
    """``value`` as JSON-ready data plus the arrays it references (copies).

    :param where: the value's name, used in error messages
    :raises UnsafeStateError: for an object of any other type, an object array, or a
        structure nested too deeply (or cyclic)
    """
    arrays: list[np.ndarray] = []
    try:
        return _flatten(value, where, arrays), arrays
    except RecursionError:
        raise UnsafeStateError(f"{where}: nested too deeply (or refers to itself) to be stored") from None


def unflatten(tree: Any, arrays: list[np.ndarray]) -> Any:
    """Inverse of :func:`flatten`; raises ``ValueError`` for data it did not write."""
    try:
        return _unflatten(tree, arrays)
    except (IndexError, KeyError, TypeError) as exc:
        raise ValueError(f"malformed state tree ({type(exc).__name__}: {exc})") from exc


def pack(prefix: str, value: Any, where: str | None = None) -> dict[str, np.ndarray]:
    """``.npz`` entries ``<prefix>.tree`` (JSON as bytes) and ``<prefix>.<n>`` (the arrays)."""
    tree, arrays = flatten(value, where or prefix)
    text = json.dumps(tree, allow_nan=True, separators=(",", ":")).encode()
    entries = {f"{prefix}.{index}": array for index, array in enumerate(arrays)}
    entries[f"{prefix}.{_TREE_ENTRY}"] = np.frombuffer(text, dtype=np.uint8)
    return entries


def unpack(prefix: str, entries: Mapping[str, np.ndarray]) -> Any:
    """Inverse of :func:`pack`, reading from an opened ``.npz`` (or a dict of arrays)."""
    tree_name = f"{prefix}.{_TREE_ENTRY}"
    if tree_name not in entries:
        raise ValueError(f"no {tree_name!r} entry")
    tree = json.loads(bytes(entries[tree_name]))
    count = sum(1 for name in entries if name.startswith(prefix + ".")) - 1
    return unflatten(tree, [entries[f"{prefix}.{index}"] for index in range(count)])


def is_packed(name: str, prefix: str) -> bool:
    """Whether the ``.npz`` entry ``name`` belongs to what :func:`pack` wrote under ``prefix``."""
    return name.startswith(prefix + ".")


def prepare_npz(value: Any, where: str = "state") -> dict[str, np.ndarray]:
    """The entries of the ``.npz`` file holding ``value`` (copies, for :func:`to_npz` later)."""
    return pack(_VALUE, value, where)


def to_npz(entries: Mapping[str, np.ndarray]) -> bytes:
    """An uncompressed ``.npz`` file of ``entries`` (the arrays are small)."""
    buffer = io.BytesIO()
    np.savez(buffer, **entries)
    return buffer.getvalue()


def encode_npz(value: Any, where: str = "state") -> bytes:
    """``value`` as an ``.npz`` file: :func:`prepare_npz` then :func:`to_npz`."""
    return to_npz(prepare_npz(value, where))


def decode_npz(blob: bytes) -> Any:
    """Inverse of :func:`encode_npz`; never unpickles (an object array is an error)."""
    with np.load(io.BytesIO(blob), allow_pickle=False) as archive:
        return unpack(_VALUE, {name: archive[name] for name in archive.files})


def _flatten(value: Any, where: str, arrays: list[np.ndarray]) -> Any:
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is list:
        return [_flatten(item, f"{where}[{index}]", arrays) for index, item in enumerate(value)]
    if kind is tuple:
        return {_TUPLE: [_flatten(item, f"{where}[{index}]", arrays) for index, item in enumerate(value)]}
    if kind is dict:
        if all(type(key) is str and key not in _TAGS for key in value):
            return {key: _flatten(item, f"{where}[{key!r}]", arrays) for key, item in value.items()}
        return {_DICT: _flatten_items(value, where, arrays)}
    if kind is OrderedDict:
        return {_ORDERED_DICT: _flatten_items(value, where, arrays)}
    if kind is bytes:
        return {_BYTES: value.hex()}
    if kind is np.ndarray or isinstance(value, np.generic):
        if value.dtype.hasobject:
            raise UnsafeStateError(f"{where}: a numpy array of Python objects cannot be stored without pickle")
        arrays.append(np.array(value, copy=True))
        return {_ARRAY if kind is np.ndarray else _SCALAR: len(arrays) - 1}
    if kind is th.Tensor:
        try:
            array = value.detach().cpu().numpy().copy()
        except (TypeError, RuntimeError) as exc:
            raise UnsafeStateError(f"{where}: a {value.dtype} tensor has no numpy equivalent ({exc})") from None
        arrays.append(array)
        return {_TENSOR: len(arrays) - 1}
    raise UnsafeStateError(
        f"{where}: a {kind.__module__}.{kind.__qualname__} cannot be stored without pickle; a checkpoint's "
        "state may hold only None, bool, int, float, str, bytes, lists, tuples, dicts, numpy arrays and tensors")


def _flatten_items(value: dict[Any, Any], where: str, arrays: list[np.ndarray]) -> list[list[Any]]:
    return [[_flatten(key, f"{where} key {key!r}", arrays), _flatten(item, f"{where}[{key!r}]", arrays)]
            for key, item in value.items()]


def _unflatten(tree: Any, arrays: list[np.ndarray]) -> Any:
    if isinstance(tree, list):
        return [_unflatten(item, arrays) for item in tree]
    if not isinstance(tree, dict):
        return tree
    if len(tree) == 1:
        ((tag, payload),) = tree.items()
        if tag == _ARRAY:
            return arrays[payload]
        if tag == _SCALAR:
            return arrays[payload][()]
        if tag == _TENSOR:
            return th.from_numpy(arrays[payload])
        if tag == _TUPLE:
            return tuple(_unflatten(item, arrays) for item in payload)
        if tag == _BYTES:
            return bytes.fromhex(payload)
        if tag in (_DICT, _ORDERED_DICT):
            items = [(_unflatten(key, arrays), _unflatten(item, arrays)) for key, item in payload]
            return dict(items) if tag == _DICT else OrderedDict(items)
    return {key: _unflatten(item, arrays) for key, item in tree.items()}
