"""A small reader of ONNX's protobuf encoding: the parts of ``ModelProto`` codesign uses.

Reading a model needs no ``onnx`` import (0.8 s, most of it ml_dtypes) and no generated protobuf
classes: the wire format is decoded here (varints, length-delimited fields, packed repeated
numbers) for the fields of ``onnx.proto`` listed below, and everything else is skipped. Tensors
keep a view of their bytes until :meth:`Tensor.array` is asked for; sizes are checked first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..errors import CodesignError
from .tensors import check_size

#: ONNX TensorProto.DataType → numpy dtype (BFLOAT16 is widened to float32 by :meth:`Tensor.array`).
DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32, 7: np.int64,
          9: np.bool_, 10: np.float16, 11: np.float64, 12: np.uint32, 13: np.uint64, 16: np.uint16}


class ProtobufError(ValueError):
    """The bytes are not a well-formed protobuf message."""


def _fields(data: memoryview) -> list[tuple[int, int, Any]]:
    """``(field number, wire type, value)`` of every field of one message, in order."""
    out = []
    position, end = 0, len(data)
    while position < end:
        key, position = _varint(data, position)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, position = _varint(data, position)
        elif wire == 1:
            value, position = data[position:position + 8], position + 8
        elif wire == 2:
            length, position = _varint(data, position)
            if position + length > end:
                raise ProtobufError("a field runs past the end of its message")
            value, position = data[position:position + length], position + length
        elif wire == 5:
            value, position = data[position:position + 4], position + 4
        else:
            raise ProtobufError(f"wire type {wire}")
        if position > end:
            raise ProtobufError("truncated field")
        out.append((number, wire, value))
    return out


def _varint(data: memoryview, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if position >= len(data) or shift > 63:
            raise ProtobufError("truncated varint")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _string(value: Any) -> str:
    return bytes(value).decode("utf-8", errors="replace")


def _ints(values: list[tuple[int, Any]]) -> list[int]:
    """A repeated int64 field, packed or not."""
    out = []
    for wire, value in values:
        if wire == 0:
            out.append(_signed(value))
        else:
            position = 0
            while position < len(value):
                number, position = _varint(value, position)
                out.append(_signed(number))
    return out


def _numbers(values: list[tuple[int, Any]], dtype: str) -> list:
    """A repeated float/double field, packed or not."""
    return [x for _, value in values for x in np.frombuffer(bytes(value), dtype=dtype).tolist()]


@dataclass
class Tensor:
    """An ONNX ``TensorProto``: its name, shape, element type and data (raw bytes or typed values)."""

    name: str
    dims: tuple[int, ...]
    data_type: int
    raw: Optional[memoryview] = None
    typed: Optional[list] = None
    external: Optional[dict[str, str]] = None    #: ``location``, ``offset``, ``length`` of external data

    def array(self, folder: Path) -> np.ndarray:
        """The tensor's values; external data is read from ``folder`` (the model file's)."""
        what = f"ONNX tensor '{self.name}'"
        if self.data_type not in DTYPES:
            raise CodesignError(f"{what} has ONNX data type {self.data_type}, which codesign does not read")
        count = check_size(self.dims, what)
        dtype = np.dtype(DTYPES[self.data_type]).newbyteorder("<")
        if self.external is not None:
            self.raw = _external(self.external, folder, count * dtype.itemsize, what)
        if self.raw is not None:
            if len(self.raw) != count * dtype.itemsize:
                raise CodesignError(f"{what} holds {len(self.raw)} bytes for {count} values of {dtype}: the file is corrupt")
            array = np.frombuffer(self.raw, dtype=dtype)
        else:
            values = self.typed or []
            if len(values) != count:
                raise CodesignError(f"{what} holds {len(values)} values for a shape of {count}: the file is corrupt")
            if self.data_type in (10, 16):       # float16/bfloat16 bit patterns in int32_data
                array = np.array(values, dtype=np.uint16).view(DTYPES[self.data_type])
            else:
                array = np.array(values).astype(DTYPES[self.data_type])
        if self.data_type == 16:
            array = (array.astype(np.uint32) << 16).view(np.float32)
        return array.reshape(self.dims)


def _tensor(data: memoryview) -> Tensor:
    fields = _fields(data)
    get = lambda n: [(w, v) for number, w, v in fields if number == n]    # noqa: E731
    dims = tuple(_ints(get(1)))
    data_type = next((v for n, w, v in fields if n == 2), 0)
    name = next((_string(v) for n, w, v in fields if n == 8), "")
    raw = next((v for n, w, v in fields if n == 9), None)
    external = None
    if next((v for n, w, v in fields if n == 14), 0) == 1:
        external = {}
        for _, entry in get(13):
            pairs = {m: _string(x) for m, _, x in _fields(entry)}
            external[pairs.get(1, "")] = pairs.get(2, "")
    typed = None
    if raw is None:
        if data_type == 1:
            typed = _numbers(get(4), "<f4")
        elif data_type == 11:
            typed = _numbers(get(10), "<f8")
        elif data_type == 7:
            typed = _ints(get(7))
        elif data_type in (12, 13):
            typed = [v & ((1 << 64) - 1) for v in _ints(get(11))]
        else:
            typed = _ints(get(5))
    return Tensor(name, dims, int(data_type), raw, typed, external)


def _external(entry: dict[str, str], folder: Path, size: int, what: str) -> memoryview:
    """``size`` bytes of external data: a file inside the model's folder, at the stated offset."""
    location = entry.get("location", "")
    parts = Path(location).parts
    if not location or Path(location).is_absolute() or ".." in parts:
        raise CodesignError(f"{what} names external data '{location}' outside the model's folder; keep the data "
                            f"file next to the model")
    path = folder / location
    try:
        offset, length = int(entry.get("offset", 0)), int(entry.get("length", size))
        total = path.stat().st_size
    except (ValueError, OSError) as exc:
        raise CodesignError(f"{what}: its external data file '{location}' is missing or unreadable ({exc}); keep it "
                            f"next to the model") from None
    if length != size or offset < 0 or offset + length > total:
        raise CodesignError(f"{what}: external data '{location}' [{offset}, {offset + length}) does not hold its "
                            f"{size} bytes (file of {total}): the files do not belong together")
    with path.open("rb") as handle:
        handle.seek(offset)
        return memoryview(handle.read(length))


@dataclass
class Node:
    """An ONNX ``NodeProto`` with its attributes decoded."""

    op_type: str
    input: list[str]
    output: list[str]
    name: str = ""
    domain: str = ""
    attrs: dict[str, Any] = field(default_factory=dict)


def _attribute(data: memoryview) -> tuple[str, Any]:
    fields = _fields(data)
    get = lambda n: [(w, v) for number, w, v in fields if number == n]    # noqa: E731
    name = next((_string(v) for n, w, v in fields if n == 1), "")
    kind = next((v for n, w, v in fields if n == 20), 0)
    values = {1: lambda: float(np.frombuffer(bytes(get(2)[0][1]), "<f4")[0]) if get(2) else 0.0,
              2: lambda: _signed(get(3)[0][1]) if get(3) else 0,
              3: lambda: bytes(get(4)[0][1]) if get(4) else b"",
              4: lambda: _tensor(get(5)[0][1]) if get(5) else None,
              6: lambda: _numbers(get(7), "<f4"),
              7: lambda: _ints(get(8)),
              8: lambda: [bytes(v) for _, v in get(9)]}
    return name, values[kind]() if kind in values else None


def _node(data: memoryview) -> Node:
    fields = _fields(data)
    strings = lambda n: [_string(v) for number, w, v in fields if number == n]    # noqa: E731
    node = Node(op_type=next(iter(strings(4)), ""), input=strings(1), output=strings(2),
                name=next(iter(strings(3)), ""), domain=next(iter(strings(7)), ""))
    node.attrs = dict(_attribute(v) for n, w, v in fields if n == 5)
    return node


@dataclass
class ValueInfo:
    """A graph input, output or value: its name and shape (``None`` for a symbolic dimension)."""

    name: str
    dims: Optional[list[Optional[int]]] = None


def _value_info(data: memoryview) -> ValueInfo:
    fields = _fields(data)
    name = next((_string(v) for n, w, v in fields if n == 1), "")
    info = ValueInfo(name)
    for number, _, type_proto in fields:
        if number != 2:
            continue
        for n1, _, tensor_type in _fields(type_proto):
            if n1 != 1:
                continue
            for n2, _, shape in _fields(tensor_type):
                if n2 == 2:
                    info.dims = []
                    for n3, _, dim in _fields(shape):
                        if n3 == 1:
                            value = next((v for n, w, v in _fields(dim) if n == 1 and w == 0), None)
                            info.dims.append(_signed(value) if value is not None else None)
    return info


@dataclass
class Graph:
    node: list[Node]
    initializer: list[Tensor]
    input: list[ValueInfo]
    output: list[ValueInfo]
    value_info: list[ValueInfo]


@dataclass
class Model:
    graph: Graph
    functions: list[str]          #: names of local functions (codesign refuses them)
    opset: dict[str, int]


def parse_model(data: bytes) -> Model:
    """A ``ModelProto`` from its bytes; :class:`ProtobufError` if they are not one."""
    view = memoryview(data)
    fields = _fields(view)
    graphs = [v for n, w, v in fields if n == 7 and w == 2]
    if not graphs:
        raise ProtobufError("no graph")
    functions = []
    for n, w, v in fields:
        if n == 25 and w == 2:
            functions.append(next((_string(x) for m, _, x in _fields(v) if m == 1), "?"))
    opset = {}
    for n, w, v in fields:
        if n == 8 and w == 2:
            entry = _fields(v)
            domain = next((_string(x) for m, _, x in entry if m == 1), "")
            opset[domain] = next((x for m, _, x in entry if m == 2), 0)
    graph = _fields(graphs[-1])
    pick = lambda n, reader: [reader(v) for number, w, v in graph if number == n and w == 2]    # noqa: E731
    return Model(Graph(pick(1, _node), pick(5, _tensor), pick(11, _value_info), pick(12, _value_info),
                       pick(13, _value_info)), functions, opset)
