"""Snapshot payload -> JSON bytes with orjson, never raising on odd values.

orjson handles dicts, lists, str/int/float/bool/None, dataclasses, enums, datetimes and
C-contiguous native-endian numpy arrays and scalars directly. Everything else goes
through :meth:`SnapshotSerializer._default`: values with a faithful JSON form are
converted (non-contiguous or big-endian arrays, masked arrays with their masked entries
as ``null``, torch tensors of any layout, long doubles as float64, float subclasses,
sets, bytes, paths); the rest become a marked placeholder
``{"$unserializable": <type>, "repr": ..., "reason": ...}`` in place of that value only,
and are counted. NaN and +-Inf are written as ``null`` and counted.

orjson holds the GIL for as long as one call runs (about 1 s for a 200 MB array), so
a very large payload's big arrays and long lists are encoded in pieces of about 1 MiB
with a GIL hand-over between them; the bytes are identical to the one-piece encoding.

Most payloads take one orjson walk, each numpy array spliced in from its own numpy-aware
orjson call; one holding values orjson needs help with (tensors, masked or non-contiguous
arrays, float subclasses) takes a second, numpy-aware walk with a converting ``default``.
Payloads the first walk refuses go through a pure-Python repair pass first:
cycles, nesting deeper than 254, integers beyond 64 bits, strings that are not valid
UTF-8, and

- dict keys that are not strings: written as their JSON text (``1`` -> ``"1"``,
  ``None`` -> ``"null"``); one whose text another key of the same dict already has is
  written as ``"<type>:<repr>"`` (``{1: a, "1": b}`` -> ``{"1": b, "int:1": a}``), so
  no value is lost to a duplicate key;
- numpy datetime64 values, which orjson's own numpy path writes wrongly or as invalid
  JSON when they hold NaT or dates outside years 1-9999 (orjson 3.13): written as
  numpy's ISO 8601 text at the value's own unit (``"2020-01-01"``,
  ``"2020-01-01T00:00:00.000000001"``), NaT as ``null``. timedelta64 values are
  written as integer counts of their own unit.
"""

from __future__ import annotations

import base64
import dataclasses
import math
import os
import re
import time
import uuid
from typing import Any

import numpy as np
import orjson

from rtsave_async.snapshot_queue import estimate_bytes

ORJSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
PLACEHOLDER_KEY = "$unserializable"
BYTES_KEY = "$bytes_base64"
_MAX_DEPTH = 200  # below orjson's own limit of 254, leaving room for default() results
_INT_RANGE = (-(2**63), 2**64 - 1)
_REPR_LIMIT = 200
PIECES_ABOVE_BYTES = 8 * 1024 * 1024  # payloads estimated larger have their big values serialized in pieces
PIECE_BYTES = 1024 * 1024  # of a numpy array's data per orjson call (a few ms of GIL)
PIECE_ITEMS = 65536  # of a list of plain values per orjson call
_LEAF_TYPES = frozenset((str, int, float, bool, type(None)))  # exact types: nothing inside to walk
_NUMBER_TYPES = frozenset((float, int, bool))  # all accepted by math.isfinite
_NUMPY_SCALARS_NOT_DATETIME = frozenset(
    scalar for scalar in np.sctypeDict.values() if not issubclass(scalar, np.datetime64))


class SnapshotSerializer:
    """Turns payloads into JSON bytes and counts what it had to change.

    Not thread-safe: one instance per writer thread.
    """

    def __init__(self) -> None:
        self.placeholders = 0  # values replaced by a marked placeholder
        self.nonfinite = 0  # NaN/Inf values written as null
        self._pending_placeholders = 0

    def dumps(self, payload: Any, size: int | None = None) -> bytes | bytearray:
        """Serialize ``payload``; always returns valid JSON bytes.

        A payload estimated above ``PIECES_ABOVE_BYTES`` has its big numpy arrays and
        long lists of plain values serialized ``PIECE_BYTES`` (or ``PIECE_ITEMS``
        items) at a time, handing the GIL to other threads between pieces; the bytes
        are the same as in one piece, returned as a ``bytearray`` (assembled piece by
        piece too).

        :param size: ``payload``'s :func:`estimate_bytes`, if the caller has it; default
            None (estimated here)
        """
        size = estimate_bytes(payload) if size is None else size
        pieced = self._encode_in_pieces(payload) if size > PIECES_ABOVE_BYTES else None
        data, may_hold_nonfinite = pieced if pieced is not None else self._encode(payload)
        if may_hold_nonfinite:
            self.nonfinite += count_nonfinite(payload)
        return data

    def _encode(self, payload: Any) -> tuple[bytes, bool]:
        """``payload`` in one orjson walk where it can be (:func:`_encode_in_one_pass`),
        else in a numpy-aware pass with :meth:`_default`, after a repair pass if it needs
        one; and whether the text may stand for non-finite values (only then are they
        counted)."""
        try:
            encoded = _encode_in_one_pass(payload)
            if encoded is not None:
                return encoded
            data = self._attempt(payload)
        except (TypeError, RecursionError):
            try:
                self._pending_placeholders = 0
                data = self._attempt(self._repair(payload, set(), 0))
            except (TypeError, RecursionError) as exc:
                self._pending_placeholders = 0
                data = self._attempt([self._placeholder(payload, f"whole snapshot: {exc}")])
        return data, b"null" in data

    def _encode_in_pieces(self, payload: Any) -> tuple[bytearray, bool] | None:
        """``payload`` with its big values cut out, encoded, and each big value spliced
        back in where its marker string landed, encoded piece by piece. None when there
        is nothing big to cut out, or the payload's shape (a cycle, deep nesting, a
        marker that did not survive) is left to the one-piece encoding."""
        token = f"$rtsave-piece-{uuid.uuid4().hex}-"
        large: list[Any] = []
        try:
            skeleton = _cut_out_large(payload, token, large, set(), 0)
        except _KeepWhole:
            return None
        if not large:
            return None
        placeholders_before = self.placeholders
        head, has_null = self._encode(skeleton)
        markers = list(re.finditer(b'"' + re.escape(token.encode()) + rb'(\d+)"', head))
        if sorted(int(marker.group(1)) for marker in markers) != list(range(len(large))):
            self.placeholders = placeholders_before  # e.g. the skeleton became one placeholder
            return None
        parts: list[bytes | memoryview] = []
        written = 0
        for marker in markers:
            parts.append(memoryview(head)[written:marker.start()])
            has_null = self._encode_large(large[int(marker.group(1))], parts) or has_null
            written = marker.end()
        parts.append(memoryview(head)[written:])
        return joined(parts), has_null

    def _encode_large(self, value: np.ndarray | list[Any], parts: list[bytes | memoryview]) -> bool:
        """Append ``value``'s JSON array to ``parts`` a piece at a time; whether it holds a null."""
        if isinstance(value, np.ndarray):
            step = max(1, PIECE_BYTES // max(1, value.nbytes // len(value)))
        else:
            step = PIECE_ITEMS
        has_null = False
        parts.append(b"[")
        for start in range(0, len(value), step):
            piece, piece_has_null = self._encode(value[start:start + step])
            has_null = has_null or piece_has_null
            if start:
                parts.append(b",")
            parts.append(memoryview(piece)[1:-1])
            time.sleep(0)  # orjson holds the GIL while it runs: let the training thread in between pieces
        parts.append(b"]")
        return has_null

    def _attempt(self, payload: Any) -> bytes:
        """One orjson pass; placeholders made for it count only if it succeeds."""
        data = orjson.dumps(payload, default=self._default, option=ORJSON_OPTIONS)
        self.placeholders += self._pending_placeholders
        self._pending_placeholders = 0
        return data

    def _placeholder(self, obj: Any, reason: str | None = None) -> dict[str, str]:
        self._pending_placeholders += 1
        return placeholder(obj, reason)

    def _default(self, obj: Any) -> Any:
        """Faithful JSON form for types orjson does not take, else a placeholder."""
        if isinstance(obj, np.ndarray):
            return self._array(obj)
        if isinstance(obj, (np.datetime64, np.timedelta64)):
            return _times(obj)
        if isinstance(obj, np.generic):
            if isinstance(obj, np.complexfloating):
                return self._default(complex(obj))
            return float(obj) if isinstance(obj, np.floating) else obj.item()  # long double: as float64
        if isinstance(obj, float):  # a float subclass, which orjson refuses
            return float(obj)
        if _is_torch_tensor(obj):
            try:
                array = _tensor_to_numpy(obj)
            except Exception as exc:  # a tensor with no data here (meta) or no numpy form
                return self._placeholder(obj, f"tensor not readable: {_safe_repr(exc)}")
            return self._array(array) if isinstance(array, np.ndarray) else array
        if isinstance(obj, (set, frozenset)):
            return list(obj)
        if isinstance(obj, (bytes, bytearray, memoryview)):
            return {BYTES_KEY: base64.b64encode(bytes(obj)).decode("ascii")}
        if isinstance(obj, os.PathLike):
            return os.fspath(obj)
        if isinstance(obj, complex):
            return {"real": obj.real, "imag": obj.imag}
        return self._placeholder(obj)

    def _array(self, array: np.ndarray) -> Any:
        if isinstance(array, np.ma.MaskedArray):
            return _masked_to_lists(array)
        kind = array.dtype.kind
        if kind in "Mm":
            return _times(array)
        if array.ndim == 0:  # a 0-d array is a scalar, not a one-element list
            return self._default(array[()]) if kind in "cfO" else array.item()
        if kind in "fc" and array.dtype.itemsize > (8 if kind == "f" else 16):
            array = array.astype(np.float64 if kind == "f" else np.complex128)  # long double: no JSON form
        if kind in "biuf":
            return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("="))
        if kind == "c":
            return {"real": self._array(array.real), "imag": self._array(array.imag)}
        if kind in "USO":
            return array.tolist()
        return self._placeholder(array)

    def _repair(self, obj: Any, active: set[int], depth: int) -> Any:
        """A copy of ``obj`` that orjson accepts: cycles, depth, huge ints, odd keys and strings fixed."""
        if isinstance(obj, bool) or obj is None or isinstance(obj, float):
            return obj
        if isinstance(obj, str):
            return obj if _is_valid_utf8(obj) else self._repaired_text(obj)
        if isinstance(obj, int):
            return obj if _INT_RANGE[0] <= obj <= _INT_RANGE[1] else self._placeholder(obj, "integer beyond 64 bits")
        if isinstance(obj, np.datetime64) or (isinstance(obj, np.ndarray) and obj.dtype.kind not in "OUS"):
            return self._default(obj)  # element-wise repair for the other arrays
        is_dataclass = dataclasses.is_dataclass(obj) and not isinstance(obj, type)
        if not (is_dataclass or isinstance(obj, (dict, list, tuple, set, frozenset, np.ndarray))):
            return obj  # leaves left to orjson and _default
        if id(obj) in active:
            return self._placeholder(obj, "reference cycle")
        if depth >= _MAX_DEPTH:
            return self._placeholder(obj, f"nested deeper than {_MAX_DEPTH}")
        active.add(id(obj))
        try:
            if is_dataclass:
                obj = {field.name: getattr(obj, field.name) for field in dataclasses.fields(obj)}
            if isinstance(obj, dict):
                return {text: self._repair(obj[key], active, depth + 1) for text, key in _key_texts(obj).items()}
            return [self._repair(item, active, depth + 1) for item in (obj.tolist() if isinstance(obj, np.ndarray) else obj)]
        finally:
            active.discard(id(obj))

    def _repaired_text(self, text: str) -> dict[str, str]:
        """A string UTF-8 cannot hold (lone surrogates) as a marked placeholder; as a
        dict key it is written as its repr instead (see :func:`_key_text`)."""
        return self._placeholder(text.encode("utf-8", "replace").decode("utf-8"), "not valid UTF-8")


def encode_plain(payload: Any) -> tuple[bytes, int] | None:
    """``payload`` in one orjson pass, and how many NaN/+-Inf it held (written as ``null``),
    if it holds only values orjson writes as they are (the callbacks' records: dicts,
    lists, str, int, float, bool, None); else None.

    The same bytes as :meth:`SnapshotSerializer.dumps`. Non-finite floats are counted
    only if the text holds a ``null`` and does not read back equal to ``payload`` (a NaN
    or Inf reads back as None, which equals neither), so a record with None fields is not
    walked. Holds no state: safe from any thread.
    """
    try:
        data = orjson.dumps(payload, default=_refuse)
    except (TypeError, RecursionError):
        return None
    return data, count_nonfinite(payload) if _may_hold_nonfinite(data, payload) else 0


def _may_hold_nonfinite(data: bytes, payload: Any) -> bool:
    """Whether ``data``, the JSON of a payload of plain values, may hold NaN or +-Inf
    written as ``null``: it holds a ``null`` that :func:`_nulls_beyond_nones_in_dicts`
    does not account for, and does not read back equal to ``payload`` (a NaN or Inf
    reads back as None, which equals neither)."""
    return _nulls_beyond_nones_in_dicts(data, payload) and orjson.loads(data) != payload


def _nulls_beyond_nones_in_dicts(data: bytes, payload: Any) -> bool:
    """Whether ``data``, ``payload``'s JSON, has more ``null`` texts than ``payload`` has
    None values in its dicts (the payload itself, its records, the dicts inside them;
    not in lists below the top). Every None and every non-finite float is written as one
    ``null`` (a string may hold more), so False means none of the text's nulls is a NaN
    or Inf: no read-back needed for the usual nulls, a record's ``success_rate`` before
    any success signal or the fields an env does not report. The dicts are looked
    through a level at a time, stopping once every null is accounted for."""
    nulls = data.count(b"null")
    if not nulls:
        return False
    nones = 0
    level = [payload] if type(payload) is dict or type(payload) is list else []  # below the top: dicts only
    while level and nones < nulls:
        deeper = []
        for container in level:
            for value in container.values() if type(container) is dict else container:
                if value is None:
                    nones += 1
                elif type(value) is dict:
                    deeper.append(value)
        level = deeper
    return nones != nulls


def joined(parts: list[bytes | bytearray | memoryview]) -> bytearray:
    """``parts`` end to end, copied a part at a time with a GIL hand-over in between
    (one ``b"".join`` of hundreds of MB would hold the GIL throughout)."""
    data = bytearray()
    for part in parts:
        data += part
        time.sleep(0)
    return data


def placeholder(obj: Any, reason: str | None = None) -> dict[str, str]:
    """The marked stand-in for a value that cannot be written:
    ``{"$unserializable": <type name>, "repr": <repr, at most 200 characters>, "reason": ...}``
    (``reason`` only when given). Never raises, whatever ``obj``'s ``__repr__`` does."""
    marked = {PLACEHOLDER_KEY: type(obj).__name__, "repr": _safe_repr(obj)}
    if reason:
        marked["reason"] = reason
    return marked


def count_nonfinite(obj: Any) -> int:
    """How many NaN/+-Inf floats ``obj`` holds (dicts, lists, numpy arrays and scalars).

    Each container is visited once, so shared and cyclic references are safe. Plain
    dicts, lists and tuples are handled a level at a time (floats checked in bulk, only
    nested containers walked), since records are mostly those.
    """
    count, stack, seen = 0, [obj], set()
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict or kind is list or kind is tuple:
            if id(item) in seen:
                continue
            seen.add(id(item))
            values = list(item.values()) if kind is dict else item
            kinds = set(map(type, values))
            if float in kinds:
                floats = values if kinds <= _NUMBER_TYPES else [value for value in values if type(value) is float]
                count += len(floats) - sum(map(math.isfinite, floats))
            if not kinds <= _LEAF_TYPES:
                stack.extend([value for value in values if type(value) not in _LEAF_TYPES])
        elif kind is float:
            count += not math.isfinite(item)
        elif kind in _LEAF_TYPES:
            continue
        elif isinstance(item, np.ndarray):
            if item.dtype.kind in "fc":
                values = item.compressed() if isinstance(item, np.ma.MaskedArray) else item  # masked: null anyway
                count += int(np.count_nonzero(~np.isfinite(values)))
        elif isinstance(item, np.floating):
            count += not np.isfinite(item)
        elif _is_torch_tensor(item):
            try:
                stack.append(_tensor_to_numpy(item))
            except Exception:  # written as a placeholder: no number to count
                continue
        elif id(item) in seen:
            continue
        elif isinstance(item, (dict, list, tuple, set, frozenset)):  # subclasses, sets
            seen.add(id(item))
            stack.extend(item.values() if isinstance(item, dict) else item)
        elif dataclasses.is_dataclass(item) and not isinstance(item, type):
            seen.add(id(item))
            stack.extend(getattr(item, field.name) for field in dataclasses.fields(item))
    return count


class _KeepWhole(Exception):
    """The payload is left to the one-piece encoding."""


def _is_large(value: Any) -> bool:
    """A value worth encoding in pieces: a plain numeric numpy array of more than
    ``PIECE_BYTES``, or a list of more than ``PIECE_ITEMS`` plain values."""
    if type(value) is np.ndarray:
        return value.dtype.kind in "biuf" and value.ndim >= 1 and len(value) > 1 and value.nbytes > PIECE_BYTES
    return type(value) is list and len(value) > PIECE_ITEMS and set(map(type, value)) <= _LEAF_TYPES


def _cut_out_large(value: Any, token: str, large: list[Any], active: set[int], depth: int) -> Any:
    """A copy of ``value``'s dicts, lists and tuples with every large value replaced by
    the string ``token + <its index in large>``. Raises ``_KeepWhole`` on a cycle or
    nesting the one-piece encoding must judge."""
    if _is_large(value):
        large.append(value)
        return f"{token}{len(large) - 1}"
    kind = type(value)
    if kind is not dict and kind is not list and kind is not tuple:
        return value
    if id(value) in active or depth >= _MAX_DEPTH:
        raise _KeepWhole
    active.add(id(value))
    try:
        if kind is dict:
            return {key: _cut_out_large(item, token, large, active, depth + 1) for key, item in value.items()}
        return [_cut_out_large(item, token, large, active, depth + 1) for item in value]
    finally:
        active.discard(id(value))


def _refuse(obj: Any) -> Any:
    raise TypeError(f"{type(obj).__name__} is not a plain JSON value")


def _encode_in_one_pass(payload: Any) -> tuple[bytes, bool] | None:
    """``payload``'s final JSON in one orjson walk, and whether it may stand for
    non-finite values; None when some value needs the numpy pass's ``default`` (float
    subclasses, tensors, masked, 0-d, non-contiguous or big-endian arrays). Raises
    TypeError where only the repair pass can help: keys that are not str, numpy
    datetime64, cycles, 64-bit overflows.

    Each numpy array or scalar orjson's numpy option takes is encoded by its own call
    with that option and spliced in as an ``orjson.Fragment``: the same bytes as a
    second, numpy-aware walk of the whole payload, without that walk. datetime64 values
    are refused before any call with the numpy option sees them: it writes them at the
    wrong unit, as invalid JSON, or crashes the process (orjson 3.13, a 2-d array of
    NaT years).
    """
    called_default = needs_numpy_pass = False

    def numpy_as_fragments(obj: Any) -> Any:
        nonlocal called_default, needs_numpy_pass
        called_default = True
        if isinstance(obj, np.ndarray):  # the common cases first: arrays, then numpy scalars
            kind = obj.dtype.kind
            if kind == "M":
                raise TypeError("datetime64 values need the repair pass")
            if kind == "O":
                return obj.tolist()
            spliceable = type(obj) is np.ndarray  # subclasses (masked arrays) are converted by the numpy pass
        elif type(obj) in _NUMPY_SCALARS_NOT_DATETIME:
            spliceable = True
        elif isinstance(obj, np.datetime64):
            raise TypeError("datetime64 values need the repair pass")
        elif isinstance(obj, (set, frozenset)):
            return list(obj)
        else:
            spliceable = False
        # Once the numpy pass is needed this walk's text is dropped: it only goes on to
        # look for datetime64, without encoding any more arrays.
        fragment = _numpy_fragment(obj) if spliceable and not needs_numpy_pass else None
        needs_numpy_pass = needs_numpy_pass or fragment is None
        return fragment

    data = orjson.dumps(payload, default=numpy_as_fragments)
    if needs_numpy_pass:
        return None
    # Only a payload of plain values can be compared with its read-back (an array cannot).
    return data, _nulls_beyond_nones_in_dicts(data, payload) if called_default else _may_hold_nonfinite(data, payload)


def _numpy_fragment(value: Any) -> orjson.Fragment | None:
    """A numpy array or scalar's JSON from orjson's numpy option, or None when orjson
    refuses its dtype or layout (the numpy pass's ``default`` converts those)."""
    try:
        return orjson.Fragment(orjson.dumps(value, option=ORJSON_OPTIONS))
    except TypeError:
        return None


def _times(value: np.ndarray | np.datetime64 | np.timedelta64) -> Any:
    """datetime64 values as ISO 8601 text at their own unit, timedelta64 values as integer
    counts of their own unit, NaT as None (nested lists for arrays)."""
    native = value.astype(value.dtype.newbyteorder("="))
    counts = np.datetime_as_string(native) if native.dtype.kind == "M" else native.astype(np.int64)
    converted = np.asarray(counts, dtype=object)
    converted[np.isnat(native)] = None
    return converted.tolist()


def _key_texts(mapping: dict[Any, Any]) -> dict[str, Any]:
    """JSON key text -> original key, for every key of ``mapping``, all texts distinct.

    Valid str keys keep their text; another key whose text is taken becomes
    ``"<type>:<repr>"`` (primes added in the unlikely case that is taken too).
    """
    texts: dict[str, Any] = {key: key for key in mapping if isinstance(key, str) and _is_valid_utf8(key)}
    for key in mapping:
        if isinstance(key, str) and key in texts:
            continue
        text = _key_text(key)
        if text in texts:
            text = f"{type(key).__name__}:{_safe_repr(key)}"
            while text in texts:
                text += "'"
        texts[text] = key
    return texts


def _key_text(key: Any) -> str:
    """The JSON text of a dict key: numbers, booleans and null as JSON writes them
    (NaN -> ``"null"``), anything else (tuples, invalid UTF-8) its repr."""
    if isinstance(key, (bool, float)) or key is None:
        return orjson.dumps(float(key) if isinstance(key, float) else key).decode()
    if isinstance(key, int):
        return int.__repr__(key)
    return _safe_repr(key)


def _is_valid_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _masked_to_lists(array: np.ma.MaskedArray) -> Any:
    """A masked array as nested lists with its masked entries as None."""
    values = np.array(array.data, dtype=object)  # masked_array.filled(None) would use its fill value
    values[np.ma.getmaskarray(array)] = None
    return values.tolist()


def _tensor_to_numpy(tensor: Any) -> Any:
    """A torch tensor's values as numpy (nested lists of arrays for a nested tensor).

    Sparse tensors are made dense, quantized ones dequantized, and dtypes numpy lacks
    (bfloat16, float8) widened to float32; a meta tensor, which holds no data, raises.
    """
    tensor = tensor.detach()
    if tensor.is_nested:
        return [_tensor_to_numpy(part) for part in tensor.unbind()]
    if tensor.is_meta:
        raise ValueError("a meta tensor holds no data")
    tensor = tensor.cpu()
    if tensor.layout != _torch_strided():
        tensor = tensor.to_dense()
    if tensor.is_quantized:
        tensor = tensor.dequantize()
    try:
        return tensor.numpy()
    except TypeError:  # a dtype numpy has no counterpart for
        return tensor.float().numpy()


def _torch_strided() -> Any:
    import torch  # only reached with a tensor in hand, so torch is already imported

    return torch.strided


def _is_torch_tensor(obj: Any) -> bool:
    return type(obj).__module__.startswith("torch") and hasattr(obj, "detach")


def _safe_repr(obj: Any) -> str:
    try:
        text = repr(obj)
    except Exception as exc:  # a broken __repr__ must not break saving
        text = f"<repr failed: {type(exc).__name__}>"
    return text[:_REPR_LIMIT]
