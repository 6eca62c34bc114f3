"""Whole-model emulation: every Conv2d/Linear of a model runs on its crossbars (docs/design.md §3, §6).

The model's float ``nn.Module`` is copied and each Conv2d/Linear is replaced by a module that

1. quantizes its float input ``x`` to ``a``-bit integers with a scale ``s`` calibrated from data
   (:func:`calibrate_inputs`; ``a`` = the layer's input bits):

   * **unsigned** (every calibration input ≥ 0, e.g. after a ReLU):
     ``u = clamp(round(x / s), 0, 2^a − 1)`` with ``s = max x / (2^a − 1)``;
   * **signed** (some calibration input < 0, e.g. a normalized image entering the first layer):
     ``x_q = clamp(round(x / s), −(2^(a−1) − 1), 2^(a−1) − 1)`` with ``s = max|x| / (2^(a−1) − 1)``.
     The crossbar only takes unsigned inputs (docs/design.md §3.6), so it is driven with the offset value
     ``u = x_q + 2^(a−1)`` (``1 … 2^a − 1``) and the digital periphery subtracts the constant
     ``2^(a−1) · Σ_r Q[r, j]`` from output ``j``. With a lossless crossbar this is exactly
     ``x_q @ Q``; a lossy ADC sees the offset inputs, as the hardware would;

2. builds the layer matrix's input vectors: a Conv2d is unfolded (im2col, honouring stride,
   padding, dilation and groups; rows in PyTorch flatten order (cin, kh, kw), docs/design.md §3.1; zero
   padding is applied to ``x_q`` before the offset), a Linear takes ``x`` as is;
3. runs each group's matrix: ``ideal`` mode computes ``u @ Q`` exactly; ``crossbar`` mode runs
   :class:`codesign.golden.CrossbarLayer` under the layer's ``LayerConfig`` (and optional
   non-idealities);
4. rescales the integer outputs to float: ``y · s · scale_w[j] + bias[j]``.

``float`` mode is the model's own module: float activations, the weights as stored in the file.
"""

from __future__ import annotations

import copy
import itertools
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

import numpy as np

from .config import HardwareConfig
from .errors import CodesignError
from .golden import CrossbarLayer, NonIdeality, exact_product, product_bound
from .ingest import LayerSpec, ModelSpec
from .ingest.graph import LayerGraph
from .ingest.tensors import ActivationQuant

MODES = ("float", "ideal", "crossbar")
BATCH = 256  #: Images per forward pass.

Observer = Callable[[str, np.ndarray], None]   #: Called with (layer key, integer inputs u[M, K]).


@dataclass(frozen=True)
class InputQuant:
    """How one layer's float input becomes integers (module docstring, step 1):
    ``x_q = clamp(round(x / scale), low, high)``, driven on the wordlines as ``u = x_q + offset``
    (``0 … 2^a − 1``); the periphery subtracts ``offset · Σ_r Q[r, j]``."""

    scale: float    #: Float value of one integer input step.
    offset: int     #: Added to ``x_q`` on the wordlines (a zero point, or ``2^(a−1)`` for signed inputs).
    low: int        #: Smallest ``x_q``.
    high: int       #: Largest ``x_q``.
    source: str = "train"   #: ``"train"`` (calibrated on the train split) or ``"model"`` (the model's own).

    @classmethod
    def calibrated(cls, low: float, high: float, bits: int, name: str) -> "InputQuant":
        """Unsigned (every input ≥ 0) or signed-with-offset (module docstring) from the range seen."""
        if low < 0 and bits < 2:
            raise CodesignError(f"layer '{name}' gets negative inputs, which need at least 2 input bits "
                                f"(one for the offset, docs/design.md §3.6); raise --input-bits")
        peak = max(-low, high)
        if low < 0:
            levels = (1 << (bits - 1)) - 1
            return cls(peak / levels if peak > 0 else 1.0, 1 << (bits - 1), -levels, levels)
        levels = (1 << bits) - 1
        return cls(peak / levels if peak > 0 else 1.0, 0, 0, levels)

    @classmethod
    def from_model(cls, own: ActivationQuant) -> "InputQuant":
        """A quantized model's ``q = clamp(round(x/s) + z, qmin, qmax)``: ``x_q = q − z``, ``u = q − qmin``."""
        return cls(own.scale, own.zero_point - own.qmin, own.qmin - own.zero_point, own.qmax - own.zero_point, "model")

    @property
    def signed(self) -> bool:
        return self.low < 0

    def limits(self) -> tuple[int, int]:
        """Range of ``x_q``."""
        return self.low, self.high


def float_module(model: ModelSpec) -> Any:
    """The model's ``nn.Module``, or a one-line error when the file has no architecture."""
    import torch

    model.graph_module()
    if not isinstance(model.module, torch.nn.Module) or isinstance(model.module, torch.jit.ScriptModule):
        raise CodesignError(f"{model.info.path} is a {model.info.format.replace('_', ' ')} file: whole-model "
                            f"emulation needs a model file that carries its architecture (see README 'How a model is "
                            f"read'), such as a codesign checkpoint, TorchScript, torch.export .pt2 or ONNX; this one "
                            f"supports 'codesign emulate --layer'")
    return model.module


def check_images(model: ModelSpec, images: np.ndarray, source: str) -> None:
    """Raise if the dataset's image shape differs from the one the architecture expects."""
    if model.input_shape is not None and tuple(images.shape[1:]) != tuple(model.input_shape):
        raise CodesignError(f"{source} has images of shape {'×'.join(map(str, images.shape[1:]))}, the model "
                            f"expects {'×'.join(map(str, model.input_shape))}: use the dataset it was trained on")


def _mapped_modules(module: Any) -> dict[str, Any]:
    import torch

    return {name: sub for name, sub in module.named_modules() if isinstance(sub, (torch.nn.Conv2d, torch.nn.Linear))}


def calibrate_inputs(model: ModelSpec, images: np.ndarray, batch_size: int = BATCH) -> dict[str, InputQuant]:
    """Input quantization of every mapped layer: a quantized model's own activation parameters
    where it has them (and they fit the layer's input bits), else a scale calibrated from the
    float model's inputs on ``images``."""
    module = float_module(model)
    seen: dict[str, list[float]] = {}

    def record(name: str) -> Callable:
        def hook(_module: Any, inputs: tuple) -> None:
            low, high = seen.setdefault(name, [0.0, 0.0])
            seen[name] = [min(low, float(inputs[0].min())), max(high, float(inputs[0].max()))]
        return hook

    handles = [sub.register_forward_pre_hook(record(name)) for name, sub in _mapped_modules(module).items()]
    try:
        predict(module, images, batch_size)
    finally:
        for handle in handles:
            handle.remove()
    bits = {spec.name: spec.input_bits for spec in model.layers}
    own = module.activation_quant(images) if isinstance(module, LayerGraph) else {}
    quant = {}
    for name, (low, high) in seen.items():
        if name in own and own[name].bits <= bits[name]:
            quant[name] = InputQuant.from_model(own[name])
        else:
            quant[name] = InputQuant.calibrated(low, high, bits[name], name)
    return quant


def ideal_layer(q: np.ndarray, input_bits: int) -> Callable[[np.ndarray], np.ndarray]:
    """Exact ``u @ Q`` (int64) for unsigned ``input_bits``-bit inputs: the ideal integer layer."""
    bound = product_bound((1 << input_bits) - 1, q)
    return lambda u: exact_product(u, q, bound).astype(np.int64)


def _crossbar_module(module: Any, specs: list[LayerSpec], quant: InputQuant,
                     runners: list[Callable[[np.ndarray], np.ndarray]], observer: Optional[Observer]) -> Any:
    """An ``nn.Module`` computing ``module`` (a Conv2d or Linear) through integer layer runners."""
    import torch
    import torch.nn.functional as F

    offset = quant.offset
    low, high = quant.limits()
    corrections = [offset * spec.q.sum(axis=0, dtype=np.int64) for spec in specs]
    out_scale = torch.from_numpy(np.concatenate([spec.scale for spec in specs]) * quant.scale)
    K = specs[0].q.shape[0]
    conv = isinstance(module, torch.nn.Conv2d)

    class Crossbar(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            # integers of at most 16 bits: exact in float32, whose unfold is much faster than float64's
            x_q = torch.clamp(torch.round(x.double() / quant.scale), low, high).float()
            if conv:
                cols = F.unfold(x_q, module.kernel_size, module.dilation, module.padding, module.stride)
                matrix = cols.transpose(1, 2).reshape(-1, cols.shape[1])          # [B·L, Cin·kh·kw]
            else:
                matrix = x_q.reshape(-1, x_q.shape[-1])
            u = matrix.to(torch.int64).cpu().numpy() + offset      # the crossbar's integers: NumPy, int64
            outputs = []
            for g, (spec, run, correction) in enumerate(zip(specs, runners, corrections)):
                part = np.ascontiguousarray(u[:, g * K:(g + 1) * K])
                if observer is not None:
                    observer(spec.key, part)
                outputs.append(run(part) - correction)
            y = torch.from_numpy(np.concatenate(outputs, axis=1)).to(x.device).double() * out_scale.to(x.device)
            if module.bias is not None:
                y = y + module.bias.detach().to(x.device).double()
            if conv:
                B, _, H, W = x.shape
                Ho, Wo = (_out_size(size, k, s, p, d) for size, k, s, p, d in
                          zip((H, W), module.kernel_size, module.stride, module.padding, module.dilation))
                return y.reshape(B, Ho, Wo, -1).permute(0, 3, 1, 2).to(x.dtype).contiguous()
            return y.reshape(*x.shape[:-1], -1).to(x.dtype)

    return Crossbar()


def _out_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def emulated_module(model: ModelSpec, quant: dict[str, InputQuant], mode: str,
                    config: Optional[HardwareConfig] = None, nonideal: Optional[NonIdeality] = None,
                    observer: Optional[Observer] = None) -> Any:
    """A copy of the model's module with every Conv2d/Linear running in ``mode``.

    ``mode`` is ``"float"`` (the module itself), ``"ideal"`` (exact integer ``u @ Q``) or
    ``"crossbar"`` (docs/design.md §3 under ``config``, with ``nonideal`` if given). ``observer``
    sees every group's integer inputs ``u[M, K]`` as they are computed.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    module = float_module(model)
    if mode == "float":
        return module
    if mode == "crossbar" and config is None:
        raise ValueError("crossbar mode needs a HardwareConfig")
    module = copy.deepcopy(module)
    if isinstance(module, LayerGraph):
        module.quantize_activations = True
    groups: dict[str, list[LayerSpec]] = {}
    for spec in model.layers:
        groups.setdefault(spec.name, []).append(spec)
    for name, sub in _mapped_modules(module).items():
        specs = groups[name]
        if name not in quant:
            raise CodesignError(f"layer '{name}' saw no input while the activation scales were calibrated: "
                                f"whole-model emulation needs every Conv2d/Linear on the forward path")
        if getattr(sub, "padding_mode", "zeros") != "zeros":
            raise CodesignError(f"layer '{name}' pads with '{sub.padding_mode}'; whole-model emulation supports "
                                f"zero padding only (padding_mode='zeros')")
        if mode == "ideal":
            runners = [ideal_layer(spec.q, spec.input_bits) for spec in specs]
        else:
            runners = [CrossbarLayer(spec.q, config, config.layer(spec.key), nonideal) for spec in specs]
        parent_name, _, child = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, child, _crossbar_module(sub, specs, quant[name], runners, observer))
    return module


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run PyTorch on one thread, then restore its setting. Its share of emulation is small
    (elementwise ops, unfold, pooling); with more threads on a busy shared machine its OpenMP
    workers spin against each other (an 8×8 unfold measured 700× slower on 2 oversubscribed cores)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def module_device(module: Any) -> Any:
    """The :class:`torch.device` of the module's first parameter or buffer (the CPU if it has none)."""
    import torch

    for tensor in itertools.chain(module.parameters(), module.buffers()):
        return tensor.device
    return torch.device("cpu")


def predict(module: Any, images: np.ndarray, batch_size: int = BATCH, progress: Optional[str] = None) -> np.ndarray:
    """Class predictions (argmax of the outputs) for ``images``, run on the module's device
    (:func:`codesign.device.model_to`); progress shown if ``progress`` names it."""
    import torch

    from .progress import Progress

    device = module_device(module)
    starts = range(0, len(images), batch_size)
    predictions = []
    with torch.no_grad(), one_torch_thread():
        for start in Progress(starts, progress or "", unit="batch", enabled=progress is not None):
            batch = torch.from_numpy(images[start:start + batch_size]).to(device)
            predictions.append(module(batch).argmax(1).cpu().numpy())
    return np.concatenate(predictions) if predictions else np.zeros(0, dtype=np.int64)


def accuracy(module: Any, images: np.ndarray, labels: np.ndarray, progress: Optional[str] = None) -> float:
    """Top-1 accuracy in percent."""
    return float((predict(module, images, progress=progress) == labels).mean() * 100) if len(labels) else 0.0


def accuracies(model: ModelSpec, config: HardwareConfig, images: np.ndarray, labels: np.ndarray,
               quant: dict[str, InputQuant], nonideal: Optional[NonIdeality] = None,
               progress: bool = False) -> dict[str, float]:
    """Top-1 accuracy (percent) three ways: ``float``, ``ideal`` integer-quantized, ``crossbar``."""
    return {mode: accuracy(emulated_module(model, quant, mode, config, nonideal), images, labels,
                           progress=f"{mode:>8}" if progress else None)
            for mode in MODES}


def load_layer_inputs(path: str, key: str, rows: int, input_bits: int) -> np.ndarray:
    """Integer activations ``X[B, K]`` (or one vector ``[K]``) from a ``.npy`` file, checked against
    the layer: ``K`` columns, integers in ``0 … 2^a − 1``. Errors name the file, problem and fix."""
    try:
        with open(path, "rb") as handle:
            magic = handle.read(6)
        if magic.startswith(b"PK"):
            raise CodesignError(f"{path} is a .npz archive; give one array saved with numpy.save (.npy)")
        if magic != b"\x93NUMPY":
            raise CodesignError(f"{path} is not a .npy file (it lacks the NumPy header"
                                f"{', it is empty' if not magic else ''}); save the inputs with numpy.save")
        x = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise CodesignError(f"inputs file not found: {path}") from None
    except IsADirectoryError:
        raise CodesignError(f"{path} is a folder, not a .npy file") from None
    except (OSError, ValueError, EOFError) as exc:
        if "allow_pickle" in str(exc):
            raise CodesignError(f"{path} holds Python objects, not integers; save an integer array with "
                                f"numpy.save") from None
        raise CodesignError(f"{path} is a damaged .npy file ({str(exc).splitlines()[0][:120]}); save the inputs "
                            f"again with numpy.save") from None
    peak = (1 << input_bits) - 1
    if not np.issubdtype(x.dtype, np.integer):
        raise CodesignError(f"{path} holds {x.dtype} values; layer '{key}' takes integer activations 0..{peak} "
                            f"({input_bits}-bit unsigned, docs/design.md §3.6): quantize them first")
    if x.ndim not in (1, 2) or x.shape[-1] != rows:
        raise CodesignError(f"{path} has shape {list(x.shape)}; layer '{key}' takes [B, {rows}] "
                            f"(one row of K = {rows} inputs per vector)")
    if x.size and (x.min() < 0 or x.max() > peak):
        raise CodesignError(f"{path} holds values {int(x.min())}..{int(x.max())}; layer '{key}' takes "
                            f"{input_bits}-bit unsigned inputs 0..{peak} (docs/design.md §3.6)")
    return x


def emulate_layer(model: ModelSpec, config: HardwareConfig, key: str, x: np.ndarray,
                  nonideal: Optional[NonIdeality] = None) -> np.ndarray:
    """Integer outputs ``Y[B, N]`` (int64) of layer ``key`` for ``X[B, K]`` under ``config`` (docs/design.md §6);
    a 1-D ``x`` gives a 1-D result."""
    layer = config.layer(key)
    spec = model.layer(layer.key)
    y = CrossbarLayer(spec.q, config, layer, nonideal)(np.atleast_2d(x))
    return y[0] if x.ndim == 1 else y


def accuracy_report(model: ModelSpec, config: HardwareConfig, data: str, split: str = "test",
                    nonideal: Optional[NonIdeality] = None, progress: bool = False) -> dict[str, Any]:
    """Accuracy three ways on ``split`` of dataset ``data``; activation scales from its train split."""
    from .data import load_dataset

    calibration, _ = load_dataset(data, "train")
    images, labels = load_dataset(data, split)
    check_images(model, images, data)
    quant = calibrate_inputs(model, calibration)
    sources = sorted({q.source for q in quant.values()})
    report = {
        "data": data, "split": split, "images": int(len(labels)),
        "activation_scales_from": "+".join(sources),
        "weight_bits": sorted({spec.weight_bits for spec in model.layers}),
        "input_bits": sorted({spec.input_bits for spec in model.layers}),
        "nonideal": vars(nonideal).copy() if nonideal is not None and nonideal.active else None,
        "accuracy": accuracies(model, config, images, labels, quant, nonideal, progress),
    }
    native = native_module(model, images[:1])
    if native is not None:
        report["accuracy"]["native"] = accuracy(native, images, labels, progress=" native" if progress else None)
        report["native_runtime"] = model.module.runtime
    return report


def native_module(model: ModelSpec, sample: np.ndarray) -> Any:
    """A module running a graph model in its own framework (torch.ao's quantized kernels,
    onnxruntime), or None when there is none."""
    import torch

    graph = model.graph_module()
    if not isinstance(graph, LayerGraph) or graph.native(torch.from_numpy(sample)) is None:
        return None

    class Native(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return graph.native(x)

    return Native()


def format_accuracy_report(report: dict[str, Any]) -> str:
    """The report of :func:`accuracy_report` as a few readable lines."""
    bits = lambda values: "/".join(map(str, values))     # noqa: E731 - a one-line formatter
    acc = report["accuracy"]
    scales = {"train": "activation scales from the train split", "model": "the model's own activation quantization",
              "model+train": "the model's own activation quantization, the train split where it has none"}
    lines = [f"{report['data']}, {report['split']} split ({report['images']} images); "
             f"{scales[report['activation_scales_from']]}",
             f"  float     {acc['float']:6.2f} %   float activations, the model file's weights",
             f"  ideal     {acc['ideal']:6.2f} %   {bits(report['input_bits'])}-bit activations, "
             f"{bits(report['weight_bits'])}-bit weights, exact integer products",
             f"  crossbar  {acc['crossbar']:6.2f} %   docs/design.md §3 under the config"]
    if "native" in acc:
        lines.append(f"  native    {acc['native']:6.2f} %   the model run by {report['native_runtime']}")
    if report["nonideal"]:
        noise = report["nonideal"]
        lines.append(f"            non-idealities: conductance σ = {noise['conductance_sigma']}, "
                     f"ADC noise σ = {noise['adc_noise']} (levels), seed {noise['seed']}")
    return "\n".join(lines)
