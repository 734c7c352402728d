"""Values the serializer must write faithfully, or mark alone without losing the record."""

from __future__ import annotations

import warnings

import numpy as np
import orjson
import pytest
import torch

from rtsave_async.formats.serialize import PLACEHOLDER_KEY, SnapshotSerializer


def dumped(value: object) -> tuple[object, SnapshotSerializer]:
    serializer = SnapshotSerializer()
    record = orjson.loads(serializer.dumps({"value": value, "other": [1, 2.5, "kept"]}))
    assert record["other"] == [1, 2.5, "kept"]  # the rest of the record is never lost
    return record["value"], serializer


def test_masked_entries_are_written_as_null() -> None:
    value, serializer = dumped(np.ma.masked_array([[1, -999, 3]], mask=[[0, 1, 0]]))
    assert value == [[1, None, 3]] and serializer.placeholders == 0


def test_a_masked_nan_is_not_counted_but_an_unmasked_one_is() -> None:
    value, serializer = dumped(np.ma.masked_array([np.nan, np.inf, 2.0], mask=[1, 0, 0]))
    assert value == [None, None, 2.0] and serializer.nonfinite == 1


def test_the_masked_constant_is_null() -> None:
    assert dumped(np.ma.masked)[0] is None


class Meters(float):
    """A float subclass, as unit libraries define."""


@pytest.mark.parametrize(("value", "expected"), [
    (np.longdouble(1.5), 1.5),
    (np.array([0.25, 4.0], dtype=np.longdouble), [0.25, 4.0]),
    (Meters(2.5), 2.5),
    ([Meters(1.0), {"x": Meters(-3.0)}], [1.0, {"x": -3.0}]),
])
def test_representable_numbers_are_never_placeholders(value: object, expected: object) -> None:
    written, serializer = dumped(value)
    assert written == expected and serializer.placeholders == 0


def quantized() -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantized creation functions are deprecated
        return torch.quantize_per_tensor(torch.tensor([1.0, 2.0]), 0.5, 0, torch.quint8)


def nested() -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the nested-tensor API is a prototype
        return torch.nested.nested_tensor([torch.ones(2), torch.zeros(3)])


@pytest.mark.parametrize(("make", "expected"), [
    (lambda: torch.eye(2).to_sparse(), [[1.0, 0.0], [0.0, 1.0]]),
    (lambda: torch.tensor([1.0, -2.0]).to(torch.float8_e4m3fn), [1.0, -2.0]),
    (quantized, [1.0, 2.0]),
    (nested, [[1.0, 1.0], [0.0, 0.0, 0.0]]),
    (lambda: torch.tensor([0.5], dtype=torch.bfloat16), [0.5]),
])
def test_tensors_of_every_layout_are_written_by_value(make, expected) -> None:
    written, serializer = dumped(make())
    assert written == expected and serializer.placeholders == 0


def test_a_meta_tensor_becomes_a_placeholder_for_that_value_only() -> None:
    written, serializer = dumped(torch.empty(3, device="meta"))
    assert written[PLACEHOLDER_KEY] == "Tensor" and "meta" in written["reason"]
    assert serializer.placeholders == 1
