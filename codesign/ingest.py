"""Model ingest: a model file → integer layer matrices (docs/design.md §3.1–3.2).

Accepted files: a plain ``state_dict``, a codesign checkpoint (:mod:`codesign.checkpoint`), or a
TorchScript archive. ``torch.load`` always runs with ``weights_only=True``; a pickled full module
is loaded only with ``trust_pickle=True``. Every Conv2d and Linear weight becomes one matrix per
convolution group; everything else is listed as ignored.
"""

from __future__ import annotations

import collections
import hashlib
import io
import pickle
import warnings
import zipfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .config import ModelInfo
from .errors import CodesignError

BUNDLED_MODEL = "digits_cnn_pruned.pt"
DEFAULT_WEIGHT_BITS = 8
DEFAULT_INPUT_BITS = 8


@dataclass(frozen=True)
class ConvInfo:
    """Convolution geometry (known when the architecture is known)."""

    in_channels: int
    out_channels: int
    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1


@dataclass
class LayerSpec:
    """One crossbar-mapped matrix: a Linear layer, or one group of a Conv2d.

    ``q`` is the integer matrix ``Q[K, N]`` (int32, rows = inputs in PyTorch flatten order
    (cin, kh, kw), columns = outputs); the float weight is ``q · scale`` with ``scale[N]``.
    """

    name: str
    kind: str
    group: int
    q: np.ndarray
    scale: np.ndarray
    weight_bits: int
    input_bits: int
    conv: Optional[ConvInfo] = None
    positions: Optional[int] = None

    @property
    def key(self) -> str:
        return self.name if self.group == 0 else f"{self.name}#{self.group}"


@dataclass
class ModelSpec:
    """What ingest found: the layers, what it ignored and why, and the float module if known."""

    layers: list[LayerSpec]
    info: ModelInfo
    ignored: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    module: Any = None
    input_shape: Optional[tuple[int, ...]] = None
    meta: dict = field(default_factory=dict)   #: a codesign checkpoint's ``meta`` (method, crossbar, accuracy…)

    def layer(self, key: str) -> LayerSpec:
        for spec in self.layers:
            if spec.key == key or spec.name == key:
                return spec
        raise CodesignError(f"no layer '{key}' in the model; layers are: {', '.join(s.key for s in self.layers)}")


def bundled_model_path() -> Path:
    path = Path(str(resources.files("codesign.examples").joinpath(BUNDLED_MODEL)))
    if not path.is_file():
        raise CodesignError(f"the bundled model {BUNDLED_MODEL} is missing from the installation; "
                            f"run 'python examples/make_default_model.py' in the repository")
    return path


def load_model(path: str | Path | None = None, *, weight_bits: int | None = None, input_bits: int | None = None,
               per_channel: bool = False, trust_pickle: bool = False,
               ignore_unsupported: bool = False) -> ModelSpec:
    """Read a model file and quantize its Conv2d/Linear weights.

    ``weight_bits``/``input_bits`` default to the checkpoint's values, else 8. ``path=None``
    means the bundled model.
    """
    if path is None:
        file, shown = bundled_model_path(), f"bundled:{BUNDLED_MODEL}"
    else:
        file, shown = Path(path), str(path)
    if not file.is_file():
        raise CodesignError(f"model file not found: {shown}")
    obj, fmt = _read(file, shown, trust_pickle, arrays=True)
    sha = hashlib.sha256(file.read_bytes()).hexdigest()

    scales: dict[str, Any] = {}
    masks: dict[str, Any] = {}
    arch = None
    module = None
    input_shape = None
    notes: list[str] = []
    saved_bits = None
    if fmt == "checkpoint":
        module, arch, input_shape = _checkpoint_module(obj, shown)
        scales, masks = dict(obj.get("scales") or {}), dict(obj.get("masks") or {})
        saved_bits = obj.get("weight_bits")
        input_bits = input_bits or obj.get("input_bits")
        per_channel = bool(obj.get("per_channel", per_channel))
        if weight_bits is not None and saved_bits is not None and weight_bits != saved_bits:
            notes.append(f"the checkpoint was quantized to {saved_bits} bits; re-quantizing to --weight-bits {weight_bits}")
            scales = {}
    elif fmt in ("torchscript", "module"):
        module = obj
    weight_bits = weight_bits or saved_bits or DEFAULT_WEIGHT_BITS
    input_bits = input_bits or DEFAULT_INPUT_BITS
    if not 2 <= weight_bits <= 16:
        raise CodesignError(f"--weight-bits must be 2–16, not {weight_bits}")
    if not 1 <= input_bits <= 16:
        raise CodesignError(f"--input-bits must be 1–16, not {input_bits}")

    if module is not None:
        found, ignored, unsupported = _layers_of_module(module)
    else:
        found, ignored, unsupported = _layers_of_state_dict(obj, shown)
        if any(kind == "conv2d" for _, kind, _, _ in found):
            notes.append("a plain state_dict does not say which convolutions are grouped: all are mapped "
                         "with groups=1 (use a codesign checkpoint or TorchScript for grouped convolutions)")
    if unsupported:
        if not ignore_unsupported:
            raise CodesignError(f"unsupported layer {unsupported[0]} in {shown}: only Conv2d and Linear map onto "
                                f"crossbars (pass --ignore-unsupported to map the others and skip these)")
        ignored += [f"{item} (unsupported, skipped)" for item in unsupported]
    if not found:
        raise CodesignError(f"no Conv2d or Linear weights in {shown}")

    layers: list[LayerSpec] = []
    for name, kind, weight, conv in found:
        weight = _float_weight(weight, name, masks.get(name))
        q, scale = quantize(weight, weight_bits, per_channel, scales.get(name), name)
        groups = conv.groups if conv else 1
        per_group = q.shape[0] // groups
        for g in range(groups):
            rows = slice(g * per_group, (g + 1) * per_group)
            matrix = np.ascontiguousarray(q[rows].reshape(per_group, -1).T, dtype=np.int32)
            layers.append(LayerSpec(name, kind, g, matrix, scale[rows].copy(), weight_bits, input_bits, conv))
    if module is not None and input_shape is not None:
        _count_positions(module, input_shape, layers)
    info = ModelInfo(path=shown, sha256=sha, format=fmt, arch=arch, per_channel=per_channel)
    meta = dict(obj.get("meta") or {}) if fmt == "checkpoint" else {}
    return ModelSpec(layers, info, ignored, notes, module, input_shape, meta)


def read_model_file(path: str | Path, trust_pickle: bool = False) -> tuple[Any, str]:
    """The object a model file holds and its format (``checkpoint``, ``state_dict``, ``torchscript``
    or ``module``), read as :func:`load_model` reads it; errors name the file."""
    file = Path(path)
    if not file.is_file():
        raise CodesignError(f"model file not found: {path}")
    return _read(file, str(path), trust_pickle)


def _read(file: Path, shown: str, trust_pickle: bool, arrays: bool = False) -> tuple[Any, str]:
    """The object in ``file`` and its format. With ``arrays``, a plain state_dict comes back as numpy
    arrays read without importing torch (saves its 1.4 s import), when :func:`_state_dict_arrays` can."""
    if arrays and (state := _state_dict_arrays(file)) is not None:
        return state, "state_dict"
    import torch

    if _is_torchscript(file):
        try:
            with warnings.catch_warnings():   # TorchScript is deprecated upstream but still a user format
                warnings.simplefilter("ignore", DeprecationWarning)
                return torch.jit.load(str(file), map_location="cpu"), "torchscript"
        except Exception as exc:  # noqa: BLE001 - any failure means an unreadable archive
            raise CodesignError(f"cannot load TorchScript archive {shown}: {_first_line(exc)}") from None
    with file.open("rb") as handle:
        head = handle.read(4)
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
        raise CodesignError(f"{shown} is not a PyTorch model file (it is neither a torch.save archive nor a pickle"
                            f"{', it is empty' if not head else ''})")
    try:
        obj = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        if "Weights only load failed" not in str(exc):
            raise CodesignError(f"{shown} is truncated or corrupt ({_first_line(exc) or type(exc).__name__}): "
                                f"re-save the model file") from None
        if not trust_pickle:
            raise CodesignError(
                f"{shown} holds pickled Python objects (a whole nn.Module?) and unpickling can run code: "
                f"save model.state_dict() instead, or pass --trust-pickle if you trust the file (the module defining "
                f"its class must then be importable)") from None
        try:
            obj = torch.load(file, map_location="cpu", weights_only=False)
        except Exception as exc2:  # noqa: BLE001
            raise CodesignError(f"cannot unpickle {shown}: {_first_line(exc2)}; unpickling a whole module needs "
                                f"its class importable: run codesign where the module defining it is on "
                                f"PYTHONPATH, or save model.state_dict() instead") from None
    from .checkpoint import is_checkpoint

    if is_checkpoint(obj):
        return obj, "checkpoint"
    if isinstance(obj, torch.nn.Module):
        return obj, "module"
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, dict) and any(isinstance(v, torch.Tensor) for v in inner.values()):
                return inner, "state_dict"
        if any(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj, "state_dict"
    raise CodesignError(f"{shown} holds a {type(obj).__name__} without tensors, not a state_dict, "
                        f"codesign checkpoint or TorchScript model")


class _Unsupported(Exception):
    """The archive holds something the torch-free reader does not handle: let torch.load read it."""


_STORAGES = {"FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "LongStorage": "<i8",
             "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1",
             "BoolStorage": "?"}


def _state_dict_arrays(file: Path) -> dict[str, np.ndarray] | None:
    """A ``torch.save`` zip archive of a flat ``{name: tensor}`` dict, as numpy arrays; else ``None``.

    The pickle may name only ``torch._utils._rebuild_tensor_v2``, the typed storages above and
    ``collections.OrderedDict`` (stricter than ``weights_only=True``); tensors are rebuilt from the
    little-endian storage records. Anything else, or any doubt, returns ``None``.
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
            state = _ArrayUnpickler(archive, root).load()
    except (_Unsupported, zipfile.BadZipFile, pickle.UnpicklingError, KeyError, ValueError, TypeError,
            EOFError, OSError, AttributeError, IndexError):
        return None
    if not isinstance(state, dict) or not state or not all(
            isinstance(k, str) and isinstance(v, np.ndarray) for k, v in state.items()):
        return None
    return state


class _ArrayUnpickler(pickle.Unpickler):
    def __init__(self, archive: zipfile.ZipFile, root: str) -> None:
        super().__init__(io.BytesIO(archive.read(f"{root}/data.pkl")))
        self.archive, self.root = archive, root
        self.storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_array
        if module == "torch" and name in _STORAGES:
            return np.dtype(_STORAGES[name])
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        raise _Unsupported(f"{module}.{name}")

    def persistent_load(self, pid: Any) -> np.ndarray:
        kind, dtype, key, _location, numel = pid
        if kind != "storage" or not isinstance(dtype, np.dtype):
            raise _Unsupported(str(kind))
        if key not in self.storages:
            data = np.frombuffer(self.archive.read(f"{self.root}/data/{key}"), dtype=dtype)
            if data.size < numel:
                raise ValueError("storage shorter than declared")
            self.storages[key] = data
        return self.storages[key]


def _rebuild_array(storage: np.ndarray, offset: int, size: tuple, stride: tuple, requires_grad: bool,
                   hooks: Any, metadata: Any = None) -> np.ndarray:
    if any(s < 0 for s in stride) or not isinstance(storage, np.ndarray):
        raise _Unsupported("stride")
    extent = offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1 if all(size) else offset
    if extent > storage.size:
        raise ValueError("tensor outside its storage")
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(size),
                                           strides=tuple(s * storage.itemsize for s in stride))
    return np.array(view)


def _is_torchscript(file: Path) -> bool:
    if not zipfile.is_zipfile(file):
        return False
    try:
        with zipfile.ZipFile(file) as archive:
            return any("/code/" in name for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else ""


def _checkpoint_module(obj: dict[str, Any], shown: str) -> tuple[Any, str, tuple[int, ...]]:
    from . import zoo

    try:
        arch = obj["arch"]["name"]
        kwargs = dict(obj["arch"].get("kwargs") or {})
        state = obj["state_dict"]
    except (KeyError, TypeError):
        raise CodesignError(f"{shown}: codesign checkpoint lacks 'arch' or 'state_dict'") from None
    module = zoo.build(arch, kwargs)
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise CodesignError(f"{shown}: its state_dict does not fit architecture '{arch}': "
                            f"{_first_line(exc)}") from None
    module.eval()
    return module, arch, zoo.get_arch(arch).input_shape


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        return int(value[0]), int(value[-1])
    return int(value), int(value)


def _layers_of_module(module: Any) -> tuple[list, list[str], list[str]]:
    """Conv2d/Linear layers of an ``nn.Module`` or TorchScript module, in module order."""
    found, ignored, unsupported = [], [], []
    for name, sub in module.named_modules():
        kind = getattr(sub, "original_name", None) or type(sub).__name__
        params = dict(sub.named_parameters(recurse=False))
        if kind == "Conv2d":
            padding = sub.padding
            if isinstance(padding, str):
                raise CodesignError(f"layer '{name}': padding='{padding}' is not supported; use explicit padding")
            conv = ConvInfo(sub.in_channels, sub.out_channels, _pair(sub.kernel_size), _pair(sub.stride),
                            _pair(padding), _pair(sub.dilation), int(sub.groups))
            found.append((name, "conv2d", sub.weight, conv))
            ignored += [f"{name}.{p} (added digitally)" for p in params if p != "weight"]
        elif kind == "Linear":
            found.append((name, "linear", sub.weight, None))
            ignored += [f"{name}.{p} (added digitally)" for p in params if p != "weight"]
        elif any(p.dim() >= 2 for p in params.values()):
            unsupported.append(f"'{name}' ({kind})")
        elif params:
            ignored.append(f"{name} ({kind}, digital)")
    return found, ignored, unsupported


def _layers_of_state_dict(state: dict[str, Any], shown: str) -> tuple[list, list[str], list[str]]:
    """Without an architecture: 4-D ``*.weight`` tensors are Conv2d, 2-D ones Linear.

    Values are torch tensors or numpy arrays (:func:`_state_dict_arrays`); anything without a shape
    (a nested dict, a number) is passed over."""
    found, ignored, unsupported = [], [], []
    for key, value in state.items():
        if not hasattr(value, "shape"):
            continue
        name, _, leaf = key.rpartition(".")
        dims = len(value.shape)
        if leaf == "weight" and dims == 4:
            cout, cin, kh, kw = value.shape
            found.append((name, "conv2d", value, ConvInfo(int(cin), int(cout), (int(kh), int(kw)))))
        elif leaf == "weight" and dims == 2:
            found.append((name, "linear", value, None))
        elif leaf == "weight" and dims in (3, 5):
            unsupported.append(f"'{name}' ({dims}-D weight: Conv1d/Conv3d)")
        else:
            ignored.append(f"{key} ({'added digitally' if leaf == 'bias' else 'not a crossbar weight'})")
    return found, ignored, unsupported


def _float_weight(weight: Any, name: str, mask: Any) -> np.ndarray:
    array = (weight.detach().cpu().double().numpy() if hasattr(weight, "detach")
             else np.asarray(weight, dtype=np.float64))
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise CodesignError(f"layer '{name}' has {bad} NaN or inf weights; fix the model before mapping it")
    if mask is not None:
        mask = mask.detach().cpu().numpy().astype(bool)
        if mask.shape != array.shape:
            raise CodesignError(f"layer '{name}': pruning mask shape {mask.shape} differs from the weight's {array.shape}")
        array = np.where(mask, array, 0.0)
    return array


def quantize(weight: np.ndarray, weight_bits: int, per_channel: bool, scale: Any = None,
             name: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Symmetric quantization to ``±(2^(wb−1) − 1)`` (docs/design.md §3.2).

    Returns integer weights shaped like ``weight`` (int32) and the scale per output channel
    (float64, ``weight.shape[0]`` entries). A given ``scale`` (0-d or per channel) is used as is.
    Otherwise each group (the layer, or each output channel) whose values already lie on an integer
    grid ``w = step·n`` with ``|n| ≤ 2^(wb−1) − 1`` keeps that grid exactly (the coarsest such grid);
    any other group gets ``step = max|w| / (2^(wb−1) − 1)``. Zeros stay zero.
    """
    limit = (1 << (weight_bits - 1)) - 1
    channels = weight.shape[0]
    flat = weight.reshape(channels, -1)
    if scale is not None:
        steps = np.broadcast_to(np.asarray(scale.detach().cpu().double().numpy()
                                           if hasattr(scale, "detach") else scale, np.float64).reshape(-1), (channels,))
        if (steps <= 0).any() or not np.isfinite(steps).all():
            raise CodesignError(f"layer '{name}': the checkpoint's scales must be positive and finite")
        q = np.rint(flat / steps[:, None])
        if np.abs(q).max(initial=0) > limit:
            raise CodesignError(f"layer '{name}': weights exceed ±{limit} at the checkpoint's scale "
                                f"({weight_bits}-bit weights)")
        return q.astype(np.int32).reshape(weight.shape), steps.astype(np.float64).copy()
    groups = flat if per_channel else flat.reshape(1, -1)
    steps = np.array([_grid_step(row, limit) for row in groups])
    q = np.clip(np.rint(groups / steps[:, None]), -limit, limit).astype(np.int32)
    return q.reshape(weight.shape), np.broadcast_to(steps, (channels,)).astype(np.float64).copy()


def _grid_step(values: np.ndarray, limit: int) -> float:
    """The coarsest step on which every value is an integer multiple of at most ``limit``,
    or ``max|w| / limit`` if there is none."""
    peak = float(np.abs(values).max(initial=0.0))
    if peak == 0.0:
        return 1.0
    sample = values[:8 * (limit + 1)]
    if np.unique(np.abs(sample[sample != 0])).size > limit:   # cheap reject: too many levels for any grid
        return peak / limit
    ratios = np.unique(np.abs(values[values != 0])) / peak
    if ratios.size <= limit:
        smallest = float(ratios[0])
        for n in range(1, int(limit * smallest + 1e-9) + 1):
            k = round(n / smallest)
            if k > limit:
                break
            if abs(k * smallest - n) > 1e-6 * k:
                continue
            scaled = ratios * k
            if np.abs(scaled - np.rint(scaled)).max() <= 1e-4 + 2.5e-7 * k:
                return peak / k
    return peak / limit


def _count_positions(module: Any, input_shape: tuple[int, ...], layers: list[LayerSpec]) -> None:
    """Matrix-vector products per inference of each layer: output pixels of a conv, 1 for a linear."""
    import torch

    seen: dict[str, int] = {}
    hooks = []
    for name, sub in module.named_modules():
        if isinstance(sub, (torch.nn.Conv2d, torch.nn.Linear)):
            def hook(_m: Any, _i: Any, out: Any, name: str = name) -> None:
                seen[name] = int(np.prod(out.shape[2:])) if out.dim() == 4 else int(np.prod(out.shape[1:-1]))
            hooks.append(sub.register_forward_hook(hook))
    try:
        with torch.no_grad():
            module(torch.zeros((1, *input_shape)))
    finally:
        for handle in hooks:
            handle.remove()
    for spec in layers:
        spec.positions = seen.get(spec.name)
