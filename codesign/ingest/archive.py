"""Weight files without a graph: ``torch.save`` archives (state_dicts, codesign checkpoints, quantized
torch.ao state_dicts) and safetensors.

Nothing here runs code from the file. A plain state_dict archive is read by a restricted unpickler
over the archive's tensor records (no torch import); anything else by
``torch.load(weights_only=True)``; a pickled ``nn.Module`` only with ``trust_pickle``. A
safetensors file is parsed here (an 8-byte header length, a JSON header, raw little-endian data),
every offset and size checked against the file before anything is allocated.
"""

from __future__ import annotations

import collections
import io
import json
import pickle
import struct
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CodesignError
from .tensors import ConvInfo, Found, check_size, weight_array


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


# --- torch.save archives -------------------------------------------------------------------------

def read_torch_file(file: Path, shown: str, trust_pickle: bool, arrays: bool = False) -> tuple[Any, str]:
    """The object in a ``torch.save`` file and its format (``checkpoint``, ``state_dict``, ``module``).
    With ``arrays``, a plain state_dict comes back as numpy arrays read without importing torch
    (saves its 1.4 s import), when :func:`state_dict_arrays` can."""
    if arrays and (state := state_dict_arrays(file, shown)) is not None:
        return state, "state_dict"
    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure of torch.load is a property of the file
        if "Weights only load failed" not in str(exc):
            raise CodesignError(f"{shown} is truncated or corrupt ({first_line(exc)}): re-save the model file") from None
        if not trust_pickle:
            raise CodesignError(
                f"{shown} holds pickled Python objects (a whole nn.Module?) and unpickling can run code: "
                f"save model.state_dict() instead, or pass --trust-pickle if you trust the file (the module defining "
                f"its class must then be importable)") from None
        try:
            obj = torch.load(file, map_location="cpu", weights_only=False)
        except Exception as exc2:  # noqa: BLE001
            raise CodesignError(f"cannot unpickle {shown}: {first_line(exc2)}; unpickling a whole module needs "
                                f"its class importable: run codesign where the module defining it is on "
                                f"PYTHONPATH, or save model.state_dict() instead") from None
    from ..checkpoint import is_checkpoint

    if is_checkpoint(obj):
        return obj, "checkpoint"
    if isinstance(obj, torch.nn.Module):
        return obj, "module"
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, dict) and any(_is_tensorish(v) for v in inner.values()):
                return inner, "state_dict"
        if any(_is_tensorish(v) for v in obj.values()):
            return obj, "state_dict"
    raise CodesignError(f"{shown} holds a {type(obj).__name__} without tensors, not a state_dict, "
                        f"codesign checkpoint or TorchScript model")


def _is_tensorish(value: Any) -> bool:
    """A tensor, or torch.ao's packed-parameter tuple ``(weight, bias)``."""
    import torch

    return isinstance(value, torch.Tensor) or (isinstance(value, tuple) and bool(value)
                                               and isinstance(value[0], torch.Tensor))


class _Unsupported(Exception):
    """The archive holds something the torch-free reader does not handle: let torch.load read it."""


_STORAGES = {"FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "LongStorage": "<i8",
             "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1",
             "BoolStorage": "?"}


def state_dict_arrays(file: Path, shown: str = "") -> dict[str, np.ndarray] | None:
    """A ``torch.save`` zip archive of a flat ``{name: tensor}`` dict, as numpy arrays; else ``None``.

    The pickle may name only ``torch._utils._rebuild_tensor_v2``, the typed storages above and
    ``collections.OrderedDict`` (stricter than ``weights_only=True``); tensors are rebuilt from the
    little-endian storage records. Sizes are checked before anything is allocated (a tensor larger
    than :data:`~codesign.ingest.tensors.MAX_ELEMENTS` is refused); anything else, or any doubt,
    returns ``None``.
    """
    try:
        with zipfile.ZipFile(file) as archive:
            names = archive.namelist()
            pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
            if len(pickles) != 1 or any("/code/" in n for n in names):
                return None
            root = pickles[0].rsplit("/", 1)[0]
            if f"{root}/byteorder" in names and archive.read(f"{root}/byteorder") != b"little":
                return None
            state = _ArrayUnpickler(archive, root, shown).load()
    except (_Unsupported, zipfile.BadZipFile, pickle.UnpicklingError, KeyError, ValueError, TypeError,
            EOFError, OSError, AttributeError, IndexError, OverflowError, struct.error):
        return None
    if not isinstance(state, dict) or not state or not all(
            isinstance(k, str) and isinstance(v, np.ndarray) for k, v in state.items()):
        return None
    return state


class _ArrayUnpickler(pickle.Unpickler):
    def __init__(self, archive: zipfile.ZipFile, root: str, shown: str) -> None:
        info = archive.getinfo(f"{root}/data.pkl")
        if info.file_size > 1 << 26:
            raise _Unsupported("large pickle")
        super().__init__(io.BytesIO(archive.read(info)))
        self.archive, self.root, self.shown = archive, root, shown
        self.storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return self.rebuild
        if module == "torch" and name in _STORAGES:
            return np.dtype(_STORAGES[name])
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        raise _Unsupported(f"{module}.{name}")

    def persistent_load(self, pid: Any) -> np.ndarray:
        kind, dtype, key, _location, numel = pid
        if kind != "storage" or not isinstance(dtype, np.dtype) or not isinstance(numel, int):
            raise _Unsupported(str(kind))
        if key not in self.storages:
            info = self.archive.getinfo(f"{self.root}/data/{key}")
            if info.file_size < numel * dtype.itemsize:
                raise ValueError("storage shorter than declared")
            check_size((info.file_size // dtype.itemsize,), f"a storage of {self.shown}")
            data = np.frombuffer(self.archive.read(info), dtype=dtype)
            self.storages[key] = data
        return self.storages[key]

    def rebuild(self, storage: np.ndarray, offset: int, size: tuple, stride: tuple, requires_grad: bool,
                hooks: Any, metadata: Any = None) -> np.ndarray:
        if not isinstance(storage, np.ndarray) or not all(isinstance(n, int) and n >= 0 for n in (offset, *size)):
            raise _Unsupported("tensor record")
        if any(not isinstance(s, int) or s < 0 for s in stride) or len(stride) != len(size):
            raise _Unsupported("stride")
        check_size(tuple(size), f"a tensor of {self.shown}")
        extent = offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1 if all(size) else offset
        if extent > storage.size:
            raise ValueError("tensor outside its storage")
        view = np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(size),
                                               strides=tuple(s * storage.itemsize for s in stride))
        return np.array(view)


# --- layers of a state_dict --------------------------------------------------------------------

PACKED = "._packed_params._packed_params"   #: torch.ao's quantized Linear: ``(weight, bias)`` under this key.


def state_dict_layers(state: dict[str, Any]) -> tuple[list[Found], list[str], list[str], list[str]]:
    """Without an architecture: 4-D ``*.weight`` tensors are Conv2d, 2-D ones Linear.

    Values are torch tensors (float or quantized), numpy arrays, or torch.ao's packed ``(weight,
    bias)`` tuples. A bias whose length differs from the weight's first dimension shows a layer
    that is not a Conv2d or Linear (a ConvTranspose2d stores ``[Cin, Cout/g, kh, kw]``): refused by
    name. Without a bias the two cannot be told apart (README, 'How a model is read').
    Returns (found, ignored, unsupported, notes)."""
    found: list[Found] = []
    ignored, unsupported, notes = [], [], []
    for key, value in state.items():
        if key.endswith(PACKED) and isinstance(value, tuple) and value:
            name, weight, bias = key[:-len(PACKED)] or key, value[0], value[1] if len(value) > 1 else None
            leaf = "weight"
        else:
            name, _, leaf = key.rpartition(".")
            name, weight = name or key, value
            bias = state.get(key.removesuffix("weight") + "bias")
        shape = getattr(weight, "shape", None)
        if shape is None:
            if not key.endswith("._packed_params.dtype"):
                ignored.append(f"{key} (not a tensor)")
            continue
        dims = len(shape)
        if leaf != "weight" or dims not in (2, 3, 4, 5):
            ignored.append(f"{key} ({'added digitally' if leaf == 'bias' else 'not a crossbar weight'})")
            continue
        if dims in (3, 5):
            unsupported.append(f"'{name}' ({dims}-D weight: Conv1d/Conv3d)")
            continue
        bias_shape = getattr(bias, "shape", None)
        if bias_shape is not None and tuple(bias_shape) != (int(shape[0]),):
            unsupported.append(f"'{name}' (weight {list(map(int, shape))} with a bias of {list(map(int, bias_shape))}: "
                               f"not a Conv2d or Linear — a ConvTranspose2d stores [Cin, Cout, kh, kw])")
            continue
        values, scale = weight_array(weight, f"layer '{name}'")
        bias_values = weight_array(bias, f"the bias of '{name}'")[0] if bias_shape is not None else None
        if dims == 4:
            cout, cin, kh, kw = values.shape
            found.append(Found(name, "conv2d", values, ConvInfo(int(cin), int(cout), (int(kh), int(kw))),
                               scale, bias_values))
        else:
            found.append(Found(name, "linear", values, None, scale, bias_values))
    return found, ignored, unsupported, notes


# --- codesign checkpoints ----------------------------------------------------------------------

def checkpoint_fields(obj: dict[str, Any], shown: str) -> dict[str, Any]:
    """The checkpoint's fields, each checked: a crafted field is a one-line error naming it."""
    import torch

    arch = obj.get("arch")
    state = obj.get("state_dict")
    if not isinstance(arch, dict) or not isinstance(arch.get("name"), str) or not isinstance(state, dict):
        raise CodesignError(f"{shown}: codesign checkpoint lacks 'arch' {{'name', 'kwargs'}} or 'state_dict'")
    kwargs = arch.get("kwargs") or {}
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise CodesignError(f"{shown}: the checkpoint's arch kwargs must be a dict of names to values, "
                            f"not {type(kwargs).__name__}")
    fields = {"arch": arch["name"], "kwargs": kwargs, "state_dict": state}
    for key, low, high in (("weight_bits", 2, 16), ("input_bits", 1, 16)):
        value = obj.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high):
            raise CodesignError(f"{shown}: the checkpoint's {key} is {value!r}, not an integer {low}–{high}; "
                                f"re-save the checkpoint (codesign.checkpoint.make_checkpoint)")
        fields[key] = value
    per_channel = obj.get("per_channel")
    if per_channel is not None and not isinstance(per_channel, bool):
        raise CodesignError(f"{shown}: the checkpoint's per_channel is {per_channel!r}, not true or false")
    fields["per_channel"] = per_channel
    for key in ("scales", "masks", "meta"):
        value = obj.get(key) or {}
        if not isinstance(value, dict):
            raise CodesignError(f"{shown}: the checkpoint's {key} is a {type(value).__name__}, not a dict")
        fields[key] = dict(value)
    for key in ("scales", "masks"):
        for name, tensor in fields[key].items():
            if not isinstance(tensor, torch.Tensor):
                raise CodesignError(f"{shown}: the checkpoint's {key}['{name}'] is a {type(tensor).__name__}, "
                                    f"not a tensor")
    for name, scale in fields["scales"].items():
        if scale.dim() > 1 or not scale.is_floating_point():
            raise CodesignError(f"{shown}: the checkpoint's scales['{name}'] must be a float tensor, 0-d or one "
                                f"per output channel, not {scale.dtype} {list(scale.shape)}")
    return fields


def checkpoint_module(fields: dict[str, Any], shown: str) -> Any:
    """The checkpoint's architecture with its state_dict loaded. The module is built on the meta
    device and checked against the state_dict's shapes first, so absurd kwargs allocate nothing."""
    import torch

    from .. import zoo

    arch, kwargs, state = fields["arch"], fields["kwargs"], fields["state_dict"]
    try:
        with torch.device("meta"):
            module = zoo.build(arch, kwargs)
    except (ValueError, RuntimeError, OverflowError, ZeroDivisionError) as exc:
        raise CodesignError(f"{shown}: architecture '{arch}' rejects its kwargs {kwargs}: {first_line(exc)}") from None
    expected = module.state_dict()
    for key, tensor in expected.items():
        given = state.get(key)
        if not isinstance(given, torch.Tensor) or tuple(given.shape) != tuple(tensor.shape):
            have = "missing" if given is None else f"{list(getattr(given, 'shape', []))}"
            raise CodesignError(f"{shown}: its state_dict does not fit architecture '{arch}': '{key}' should be "
                                f"{list(tensor.shape)}, is {have}")
    extra = sorted(set(state) - set(expected))
    if extra:
        raise CodesignError(f"{shown}: its state_dict does not fit architecture '{arch}': unexpected key '{extra[0]}'")
    module = module.to_empty(device="cpu")
    try:
        module.load_state_dict(state)
    except (RuntimeError, TypeError) as exc:
        raise CodesignError(f"{shown}: its state_dict does not fit architecture '{arch}': {first_line(exc)}") from None
    return module.eval()


# --- safetensors -------------------------------------------------------------------------------

_SAFETENSORS = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
                "I8": "i1", "U8": "u1", "BOOL": "?", "BF16": "<u2"}


def is_safetensors(head: bytes, size: int) -> bool:
    """An 8-byte little-endian header length that fits the file, then ``{``."""
    return len(head) >= 9 and 2 <= struct.unpack("<Q", head[:8])[0] <= size - 8 and head[8:9] == b"{"


def read_safetensors(file: Path, shown: str) -> dict[str, np.ndarray]:
    """A safetensors file as ``{name: array}`` (BF16 widened to float32; no code, no torch)."""
    data = file.read_bytes()
    length = struct.unpack("<Q", data[:8])[0]
    try:
        header = json.loads(data[8:8 + length])
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CodesignError(f"{shown} is a corrupt safetensors file (its header is not JSON: {first_line(exc)})") from None
    if not isinstance(header, dict):
        raise CodesignError(f"{shown} is a corrupt safetensors file (its header is not a JSON object)")
    body = memoryview(data)[8 + length:]
    arrays = {}
    entries = [(key, entry) for key, entry in header.items() if key != "__metadata__"]
    if not all(isinstance(entry, dict) for _, entry in entries):
        raise CodesignError(f"{shown} is a corrupt safetensors file (an entry of its header is not an object)")
    for key, entry in entries:
        try:
            dtype, shape, (start, end) = entry["dtype"], [int(n) for n in entry["shape"]], entry["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise CodesignError(f"{shown}: safetensors entry '{key}' lacks dtype, shape or data_offsets") from None
        if dtype not in _SAFETENSORS:
            raise CodesignError(f"{shown}: tensor '{key}' has dtype {dtype}, which codesign does not read "
                                f"(it reads {', '.join(_SAFETENSORS)})")
        item = np.dtype(_SAFETENSORS[dtype])
        count = check_size(tuple(shape), f"tensor '{key}' of {shown}")
        if min(shape, default=0) < 0 or not (isinstance(start, int) and isinstance(end, int)) \
                or not 0 <= start <= end <= len(body) or end - start != count * item.itemsize:
            raise CodesignError(f"{shown} is truncated or corrupt: tensor '{key}' {shape} {dtype} does not fit "
                                f"its data offsets [{start}, {end}) of {len(body)} bytes")
        array = np.frombuffer(body[start:end], dtype=item).reshape(shape)
        if dtype == "BF16":
            array = (array.astype(np.uint32) << 16).view(np.float32)
        arrays[key] = array
    if not arrays:
        raise CodesignError(f"{shown} is a safetensors file without tensors")
    return arrays
