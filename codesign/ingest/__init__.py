"""Model ingest: a model file → integer layer matrices (docs/design.md §3.1–3.2).

One reader per format family, each returning the Conv2d/Linear weights it found
(:class:`~codesign.ingest.tensors.Found`) and, when the file carries the graph, an ``nn.Module``
that runs it for whole-model emulation:

* :mod:`.archive` — ``torch.save`` archives (state_dicts, codesign checkpoints, torch.ao quantized
  state_dicts) and safetensors: weights only;
* :mod:`.torchscript` — TorchScript, scripted or traced, float or torch.ao-quantized;
* :mod:`.exported` — ``torch.export`` programs (``.pt2``);
* :mod:`.onnxgraph` — ONNX: float, QDQ, QOperator and QONNX graphs.

Nothing is read by unpickling code (a pickled whole module only with ``trust_pickle``). Every
Conv2d and Linear weight becomes one matrix per convolution group; everything else is listed as
ignored. The README's 'How a model is read' table says what each format gives and refuses.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from ..config import ModelInfo
from ..errors import CodesignError
from .tensors import ConvInfo, Found

__all__ = ["BUNDLED_MODEL", "ConvInfo", "LayerSpec", "ModelSpec", "bundled_model_path", "load_model",
           "quantize", "read_model_file"]

BUNDLED_MODEL = "digits_cnn_pruned.pt"
DEFAULT_WEIGHT_BITS = 8
DEFAULT_INPUT_BITS = 8
FORMATS = "a state_dict or codesign checkpoint (torch.save), TorchScript, torch.export .pt2, ONNX or safetensors"


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
    """What ingest found: the layers, what it ignored and why, and the float module if known.

    ``module`` runs the model in float for whole-model emulation: the architecture's ``nn.Module``
    (codesign checkpoints, trusted pickles) or a :class:`~codesign.ingest.graph.LayerGraph`
    (TorchScript, ``.pt2``, ONNX), whose ``activation_quant`` gives a quantized model's own
    activation parameters and ``native`` runs it in its own framework."""

    layers: list[LayerSpec]
    info: ModelInfo
    ignored: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    module: Any = None
    input_shape: Optional[tuple[int, ...]] = None
    meta: dict = field(default_factory=dict)   #: a codesign checkpoint's ``meta`` (method, crossbar, accuracy…)
    build_module: Optional[Callable[[], Any]] = None   #: builds ``module`` when it is first needed

    def graph_module(self) -> Any:
        """``module``, built first if the reader deferred it (an ONNX graph needs torch only to run)."""
        if self.module is None and self.build_module is not None:
            self.module = self.build_module()
        return self.module

    def layer(self, key: str) -> LayerSpec:
        for spec in self.layers:
            if spec.key == key or spec.name == key:
                return spec
        raise CodesignError(f"no layer '{key}' in the model; layers are: {', '.join(s.key for s in self.layers)}")


@dataclass
class Source:
    """What a reader found in a file, before quantization."""

    fmt: str
    found: list[Found]
    ignored: list[str] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    module: Any = None
    input_shape: Optional[tuple[int, ...]] = None
    arch: Optional[str] = None
    meta: dict = field(default_factory=dict)
    weight_bits: Optional[int] = None      #: a checkpoint's weight bits
    input_bits: Optional[int] = None       #: a checkpoint's, or a quantized model's activation bits
    per_channel: Optional[bool] = None
    scales: dict = field(default_factory=dict)
    masks: dict = field(default_factory=dict)
    positions: dict = field(default_factory=dict)   #: products per inference, when known without running
    build_module: Optional[Callable[[], Any]] = None   #: builds ``module`` on first use (ONNX: torch only then)


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

    ``weight_bits`` defaults to a checkpoint's value, else the bits a quantized model's integer
    weights need, else 8; ``input_bits`` to the checkpoint's or the quantized model's activation
    bits, else 8. ``path=None`` means the bundled model.
    """
    if path is None:
        file, shown = bundled_model_path(), f"bundled:{BUNDLED_MODEL}"
    else:
        file, shown = Path(path), str(path)
    if not file.is_file():
        raise CodesignError(f"model file not found: {shown}")
    for flag, value, low in (("--weight-bits", weight_bits, 2), ("--input-bits", input_bits, 1)):
        if value is not None and not low <= value <= 16:
            raise CodesignError(f"{flag} must be {low}–16, not {value}")
    source = read_source(file, shown, trust_pickle)
    sha = hashlib.sha256(file.read_bytes()).hexdigest()
    notes = list(source.notes)
    if source.unsupported:
        if not ignore_unsupported:
            raise CodesignError(f"unsupported layer {source.unsupported[0]} in {shown}: only Conv2d and Linear map "
                                f"onto crossbars (pass --ignore-unsupported to map the others and skip these)")
        source.ignored += [f"{item} (unsupported, skipped)" for item in source.unsupported]
    if not source.found:
        raise CodesignError(f"no Conv2d or Linear weights in {shown}")
    for layer in source.found:
        if 0 in layer.weight.shape:
            raise CodesignError(f"layer '{layer.name}' of {shown} has an empty weight "
                                f"{list(layer.weight.shape)}: remove the layer or give it its real size")

    scales = source.scales
    needed = max((_integer_bits(layer, shown) for layer in source.found if layer.integer), default=None)
    if weight_bits is not None and source.weight_bits is not None and weight_bits != source.weight_bits:
        notes.append(f"the checkpoint was quantized to {source.weight_bits} bits; re-quantizing to "
                     f"--weight-bits {weight_bits}")
        scales = {}
    if weight_bits is not None and needed is not None and weight_bits < needed:
        notes.append(f"the model's integer weights need {needed} bits; re-quantizing them to --weight-bits {weight_bits}")
    if needed is not None and needed > DEFAULT_WEIGHT_BITS and weight_bits is None:
        peak = max(int(np.abs(layer.weight).max(initial=0)) for layer in source.found if layer.integer)
        notes.append(f"the model's integer weights reach magnitude {peak}, beyond the ±127 of 8-bit weights (the "
                     f"symmetric range ±(2^(wb−1) − 1), docs/design.md §3.2): mapping them exactly as {needed}-bit weights")
    weight_bits = weight_bits or source.weight_bits or needed or DEFAULT_WEIGHT_BITS
    input_bits = input_bits or source.input_bits or DEFAULT_INPUT_BITS
    per_channel = source.per_channel if source.per_channel is not None else per_channel

    layers: list[LayerSpec] = []
    for found in source.found:
        if found.integer and _integer_bits(found, shown) <= weight_bits:
            q, scale = found.weight, found.scale
        else:
            weight = found.weight * found.scale.reshape((-1,) + (1,) * (found.weight.ndim - 1)) \
                if found.integer else _masked(found, source.masks.get(found.name))
            q, scale = quantize(weight, weight_bits, per_channel, scales.get(found.name), found.name)
        groups = found.conv.groups if found.conv else 1
        per_group = q.shape[0] // groups
        for g in range(groups):
            rows = slice(g * per_group, (g + 1) * per_group)
            matrix = np.ascontiguousarray(q[rows].reshape(per_group, -1).T, dtype=np.int32)
            layers.append(LayerSpec(found.name, found.kind, g, matrix, np.asarray(scale[rows], np.float64).copy(),
                                    weight_bits, input_bits, found.conv))
    if source.module is not None and source.input_shape is not None:
        _count_positions(source.module, source.input_shape, layers)
    for spec in layers:
        spec.positions = spec.positions or source.positions.get(spec.name)
    info = ModelInfo(path=shown, sha256=sha, format=source.fmt, arch=source.arch, per_channel=per_channel)
    return ModelSpec(layers, info, source.ignored, notes, source.module, source.input_shape, source.meta,
                     source.build_module)


def _integer_bits(layer: Found, shown: str) -> int:
    """Two's-complement bits whose symmetric range ±(2^(wb−1) − 1) holds the layer's integers."""
    peak = int(np.abs(layer.weight).max(initial=0))
    bits = max(2, peak.bit_length() + 1)
    if bits > 16:
        raise CodesignError(f"layer '{layer.name}' of {shown} has integer weights up to {peak}, more than 16-bit "
                            f"weights hold: re-quantize the model to at most 16 bits")
    return bits


def _masked(found: Found, mask: Any) -> np.ndarray:
    if mask is None:
        return found.weight
    mask = mask.detach().cpu().numpy().astype(bool)
    if mask.shape != found.weight.shape:
        raise CodesignError(f"layer '{found.name}': pruning mask shape {mask.shape} differs from the weight's "
                            f"{found.weight.shape}")
    return np.where(mask, found.weight, 0.0)


def read_model_file(path: str | Path, trust_pickle: bool = False) -> tuple[Any, str]:
    """The object a ``torch.save`` or TorchScript file holds and its format (``checkpoint``,
    ``state_dict``, ``torchscript`` or ``module``), as :func:`load_model` reads it; other formats
    give ``(None, format)``. Errors name the file."""
    file = Path(path)
    if not file.is_file():
        raise CodesignError(f"model file not found: {path}")
    fmt = sniff(file, str(path))
    if fmt == "torch":
        from .archive import read_torch_file

        return read_torch_file(file, str(path), trust_pickle)
    if fmt == "torchscript":
        from .torchscript import load_torchscript

        return load_torchscript(file, str(path)), fmt
    if fmt == "safetensors":
        import torch

        from .archive import read_safetensors

        return {k: torch.from_numpy(v.copy()) for k, v in read_safetensors(file, str(path)).items()}, "state_dict"
    return None, fmt


def sniff(file: Path, shown: str) -> str:
    """The format family of ``file``: ``torch``, ``torchscript``, ``pt2``, ``onnx`` or ``safetensors``."""
    import zipfile

    from .archive import is_safetensors

    with file.open("rb") as handle:
        head = handle.read(16)
    size = file.stat().st_size
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(file) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise CodesignError(f"{shown} is truncated or corrupt (a damaged zip archive: {exc}): "
                                f"re-save the model file") from None
        if any(name.endswith("/archive_format") or name.endswith("/models/model.json") for name in names):
            return "pt2"
        if any("/code/" in name for name in names):
            return "torchscript"
        return "torch"
    if head[:1] == b"\x80":
        return "torch"
    if is_safetensors(head, size):
        return "safetensors"
    if file.suffix.lower() == ".onnx" or head[:1] == b"\x08":
        return "onnx"
    raise CodesignError(f"{shown} is not a model file codesign reads ({FORMATS}"
                        f"{'; it is empty' if not head else ''})")


def read_source(file: Path, shown: str, trust_pickle: bool) -> Source:
    """Dispatch ``file`` to the reader of its format."""
    fmt = sniff(file, shown)
    if fmt == "torch":
        from .archive import read_torch_file, state_dict_arrays

        obj, kind = read_torch_file(file, shown, trust_pickle, arrays=True)
        if kind == "checkpoint":
            return _checkpoint_source(obj, shown)
        if kind == "module":
            return _module_source(obj, shown)
        return _state_dict_source(obj, "state_dict")
    if fmt == "safetensors":
        from .archive import read_safetensors

        return _state_dict_source(read_safetensors(file, shown), "safetensors")
    if fmt == "torchscript":
        from .torchscript import load_torchscript, read_torchscript, traced_shape

        module = load_torchscript(file, shown)
        found, ignored, unsupported, graph = read_torchscript(module, shown)
        return Source("torchscript", found, ignored, unsupported, module=graph, input_shape=traced_shape(module),
                      input_bits=8 if any(f.integer for f in found) else None)
    if fmt == "pt2":
        from .exported import read_exported

        return read_exported(file, shown)
    from .onnxgraph import read_onnx

    return read_onnx(file, shown)


def _state_dict_source(state: dict[str, Any], fmt: str) -> Source:
    from .archive import state_dict_layers

    found, ignored, unsupported, notes = state_dict_layers(state)
    if any(layer.kind == "conv2d" for layer in found):
        notes.append(f"a {'plain state_dict' if fmt == 'state_dict' else fmt + ' file'} does not say which convolutions "
                     f"are grouped or transposed: all are mapped as Conv2d with groups=1 (use a codesign checkpoint, "
                     f"TorchScript, .pt2 or ONNX for grouped convolutions)")
    return Source(fmt, found, ignored, unsupported, notes, input_bits=8 if any(f.integer for f in found) else None)


def _checkpoint_source(obj: dict[str, Any], shown: str) -> Source:
    from .. import zoo
    from .archive import checkpoint_fields, checkpoint_module

    fields = checkpoint_fields(obj, shown)
    module = checkpoint_module(fields, shown)
    source = _module_source(module, shown, "checkpoint")
    source.arch, source.input_shape, source.meta = fields["arch"], zoo.get_arch(fields["arch"]).input_shape, fields["meta"]
    source.weight_bits, source.input_bits, source.per_channel = fields["weight_bits"], fields["input_bits"], fields["per_channel"]
    source.scales, source.masks = fields["scales"], fields["masks"]
    channels = {layer.name: layer.weight.shape[0] for layer in source.found}
    for key in ("scales", "masks"):
        unknown = sorted(set(fields[key]) - set(channels))
        if unknown:
            raise CodesignError(f"{shown}: the checkpoint's {key} name '{unknown[0]}', which is not a Conv2d or "
                                f"Linear layer of '{fields['arch']}'")
    for name, scale in fields["scales"].items():
        if scale.numel() not in (1, channels[name]):
            raise CodesignError(f"{shown}: the checkpoint's scales['{name}'] has {scale.numel()} entries; layer "
                                f"'{name}' has {channels[name]} output channels (give one scale, or one per channel)")
    return source


def _module_source(module: Any, shown: str, fmt: str = "module") -> Source:
    """Conv2d/Linear layers of a (float) ``nn.Module``, in module order."""
    import torch

    from .tensors import weight_array

    found, ignored, unsupported = [], [], []
    for name, sub in module.named_modules():
        kind = type(sub).__name__
        params = dict(sub.named_parameters(recurse=False))
        if isinstance(sub, torch.nn.Conv2d) and not isinstance(sub, torch.nn.modules.conv._ConvTransposeNd):
            if isinstance(sub.padding, str):
                raise CodesignError(f"layer '{name}': padding='{sub.padding}' is not supported; use explicit padding")
            conv = ConvInfo(sub.in_channels, sub.out_channels, tuple(sub.kernel_size), tuple(sub.stride),
                            tuple(sub.padding), tuple(sub.dilation), int(sub.groups))
            found.append(Found(name, "conv2d", weight_array(sub.weight, f"layer '{name}'")[0], conv))
            ignored += [f"{name}.{p} (added digitally)" for p in params if p != "weight"]
        elif type(sub) is torch.nn.Linear or kind == "NonDynamicallyQuantizableLinear":
            found.append(Found(name, "linear", weight_array(sub.weight, f"layer '{name}'")[0]))
            ignored += [f"{name}.{p} (added digitally)" for p in params if p != "weight"]
        elif type(sub).__module__.startswith("torch.ao.nn") and ("Conv" in kind or "Linear" in kind):
            unsupported.append(f"'{name}' ({kind} of torch.ao: save the quantized model with torch.jit.trace or script)")
        elif any(p.dim() >= 2 for p in params.values()):
            unsupported.append(f"'{name}' ({kind})")
        elif params:
            ignored.append(f"{name} ({kind}, digital)")
    return Source(fmt, found, ignored, unsupported, module=module)


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
