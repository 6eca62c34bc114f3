"""ONNX models: float, QDQ, QOperator and QONNX graphs.

Every ``Conv`` (any group), ``Gemm`` and ``MatMul`` whose weight is a constant becomes a layer, and
so do the quantized forms onnxruntime's quantization tools write:

* **QDQ**: the weight is ``DequantizeLinear(q, scale, zero_point)`` of an integer initializer —
  read exactly as ``q − zero_point``; the layer input's ``DequantizeLinear(QuantizeLinear(x))``
  gives the activation quantization;
* **QOperator**: ``QLinearConv``, ``QLinearMatMul``, ``QGemm`` (integer weight, scales and zero
  points as inputs), and dynamic ``ConvInteger``/``MatMulInteger`` (the weight scale from the
  ``Mul`` that rescales their output);
* **QONNX** (Brevitas' export): ``Quant(x, scale, zero_point, bitwidth)`` with ``signed`` and
  ``narrow`` attributes, on weights (read as integers) and on activations.

A ``MatMul``/``Gemm`` of two activations is digital (ignored); ``ConvTranspose`` and 1-D/3-D
convolutions are refused by name. The file is decoded by :mod:`.onnxproto` (no onnx import, no
torch). Whole-model emulation interprets the graph with PyTorch operations (:class:`OnnxProgram`);
onnxruntime runs the original graph for the native accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from ..errors import CodesignError
from .archive import first_line
from .tensors import ActivationQuant, ConvInfo, Found, dtype_range, integers, weight_array

QONNX_DOMAINS = ("qonnx.custom_op.general", "finn.custom_op.general", "onnx.brevitas")
LAYER_OPS = {"Conv", "Gemm", "MatMul", "QLinearConv", "QLinearMatMul", "QGemm", "ConvInteger", "MatMulInteger"}
OUTPUT_QUANT = {"QLinearConv": (6, 7), "QLinearMatMul": (6, 7), "QGemm": (7, 8)}   #: (y_scale, y_zero_point) inputs
#: Operations that keep a quantized tensor on its grid: a layer input behind them has the grid's parameters.
GRID_PRESERVING = {"Reshape", "Flatten", "Identity", "MaxPool", "Squeeze", "Unsqueeze", "Transpose"}
WEIGHT_INPUT = {"Conv": 1, "Gemm": 1, "MatMul": 1, "QLinearConv": 3, "QLinearMatMul": 3, "QGemm": 3,
                "ConvInteger": 1, "MatMulInteger": 1}


@dataclass
class OnnxLayer:
    """How the interpreter runs one layer node."""

    name: str
    node: Any
    pads: Optional[tuple[int, int, int, int]] = None   #: explicit (left, right, top, bottom) zero padding
    rescale: Optional[np.ndarray] = None               #: ConvInteger/MatMulInteger: divide by the weight scale
    input_quant: Optional[ActivationQuant] = None


@dataclass
class Parsed:
    """An ONNX graph's constants and producers."""

    model: Any
    constants: dict[str, Any]
    producer: dict[str, Any]
    consumers: dict[str, list] = field(default_factory=dict)
    folder: Path = Path(".")          #: where external tensor data lives: the model file's folder

    def array(self, name: str) -> Optional[np.ndarray]:
        tensor = self.constants.get(name)
        if tensor is None:
            return None
        if not isinstance(tensor, np.ndarray):
            tensor = tensor.array(self.folder)
            self.constants[name] = tensor
        return tensor


def read_onnx(file: Path, shown: str) -> Any:
    """The :class:`codesign.ingest.Source` of an ONNX file."""
    from . import Source

    parsed = _parse(file, shown)
    found: list[Found] = []
    layers: dict[str, OnnxLayer] = {}
    ignored: list[str] = []
    unsupported: list[str] = []
    names: dict[str, str] = {}
    for index, node in enumerate(parsed.model.graph.node):
        op = node.op_type
        if op in ("ConvTranspose", "QLinearConvTranspose"):
            unsupported.append(f"'{node.name or node.output[0]}' (ConvTranspose)")
            continue
        if op not in LAYER_OPS:
            continue
        weight_name = node.input[WEIGHT_INPUT[op]] if len(node.input) > WEIGHT_INPUT[op] else ""
        weight = _weight(parsed, node, weight_name, shown)
        if weight is None:
            ignored.append(f"{node.name or op} ({op} of two activations: digital)")
            continue
        name = names.get(weight_name) or _layer_name(node, _named_by(parsed, node, weight_name), index, names)
        names[weight_name] = name
        result = _layer(parsed, node, name, weight, shown)
        if isinstance(result, str):
            unsupported.append(result)
            continue
        layer, spec = result
        layers[node.output[0]] = spec
        if all(f.name != name for f in found):
            found.append(layer)
    kernels = {out: found_layer.conv.kernel for out, spec in layers.items()
               for found_layer in found if found_layer.name == spec.name and found_layer.conv}
    positions = _positions(parsed, layers, kernels)
    bits = [spec.input_quant.bits for spec in layers.values() if spec.input_quant is not None]
    graph_inputs = [i for i in parsed.model.graph.input if i.name not in parsed.constants]
    shape = tuple(graph_inputs[0].dims[1:]) if len(graph_inputs) == 1 and graph_inputs[0].dims and all(
        d and d > 0 for d in graph_inputs[0].dims[1:]) else None
    return Source("onnx", found, ignored, unsupported, input_shape=shape, input_bits=max(bits) if bits else None,
                  positions=positions, build_module=lambda: _build((parsed, layers, file, shown), found))


def _parse(file: Path, shown: str) -> Parsed:
    from .onnxproto import ProtobufError, parse_model

    try:
        model = parse_model(file.read_bytes())
    except (ProtobufError, IndexError, ValueError, UnicodeDecodeError) as exc:
        raise CodesignError(f"{shown} is not a readable ONNX model ({first_line(exc)}): re-export it") from None
    graph = model.graph
    if not graph.node:
        raise CodesignError(f"{shown} is not a model file codesign reads (no ONNX graph in it; formats: a state_dict "
                            f"or codesign checkpoint, TorchScript, .pt2, ONNX or safetensors)")
    for function in model.functions:
        raise CodesignError(f"{shown} uses ONNX local function '{function}': inline it first "
                            f"(onnx.inliner.inline_local_functions)")
    constants: dict[str, Any] = {t.name: t for t in graph.initializer}
    producer: dict[str, Any] = {}
    consumers: dict[str, list] = {}
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and node.attrs.get("value") is not None:
            constants[node.output[0]] = node.attrs["value"]
        for out in node.output:
            producer[out] = node
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    return Parsed(model, constants, producer, consumers, file.parent)


def _attrs(node: Any) -> dict[str, Any]:
    return node.attrs


def _named_by(parsed: Parsed, node: Any, weight_name: str) -> list[str]:
    """Tensor names that may carry the layer's PyTorch name: the weight's initializer (through
    DequantizeLinear, QONNX Quant and Identity), their parameters (Brevitas: ``c1.weight_quant…``), the bias."""
    names = []
    name, source = weight_name, parsed.producer.get(weight_name)
    while source is not None and source.op_type in ("DequantizeLinear", "Quant", "Identity"):
        names += list(source.input[1:2])
        name = source.input[0]
        source = parsed.producer.get(name)
    bias = {"Conv": 2, "Gemm": 2, "QLinearConv": 8, "QGemm": 6}.get(node.op_type)
    return [name, *names] + ([node.input[bias]] if bias is not None and len(node.input) > bias else [])


def _layer_name(node: Any, candidates: list[str], index: int, names: dict[str, str]) -> str:
    """The PyTorch module name in the first of ``candidates`` that has one (``features.0.weight``,
    ``features.0.weight_quantized``, ``features.0.bias``), else the node's name."""
    name = ""
    for candidate in candidates:
        base, dot, _ = candidate.partition(".weight")
        if dot and base:
            name = base
            break
        if candidate.endswith(".bias"):
            name = candidate[:-len(".bias")]
            break
    if not name:
        name = node.name.strip("/").replace("/", "_") or f"{node.op_type.lower()}_{index}"
    name = name.replace("..", ".").strip(".") or f"{node.op_type.lower()}_{index}"
    taken = set(names.values())
    base, n = name, 1
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    return name


def _quant_range(attrs: dict[str, Any], bits: float, name: str) -> tuple[int, int]:
    """(qmin, qmax) of a QONNX ``Quant`` node."""
    if bits != int(bits) or not 1 <= bits <= 16:
        raise CodesignError(f"QONNX Quant '{name}' has bit width {bits}; codesign reads integer widths 1–16")
    bits = int(bits)
    signed, narrow = int(attrs.get("signed", 1)), int(attrs.get("narrow", 0))
    if signed:
        return -(1 << (bits - 1)) + narrow, (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1 - narrow


@dataclass
class Weight:
    """A layer node's constant weight in the file's layout: float ``values``, or integers ``q`` with
    ``w = (q − zero) · scale``, the parameters per tensor or along the layer's output axis."""

    values: np.ndarray
    scale: Optional[np.ndarray] = None
    zero: Optional[np.ndarray] = None


def _weight(parsed: Parsed, node: Any, name: str, shown: str) -> Optional[Weight]:
    """The constant weight feeding ``node`` (directly, through Identity, DequantizeLinear or QONNX
    Quant, or as a QOperator node's integer input), or None when it is an activation."""
    op = node.op_type
    if op in ("QLinearConv", "QLinearMatMul", "QGemm", "ConvInteger", "MatMulInteger"):
        q = parsed.array(name)
        if q is None:
            return None
        if op in ("QLinearConv", "QLinearMatMul", "QGemm"):
            scale = parsed.array(node.input[4])
            zero = parsed.array(node.input[5]) if len(node.input) > 5 and node.input[5] else np.zeros(1, np.int64)
        else:
            zero = parsed.array(node.input[3]) if len(node.input) > 3 and node.input[3] else np.zeros(1, np.int64)
            scale = _integer_op_scale(parsed, node)
        if scale is None or zero is None:
            raise CodesignError(f"{shown}: the scale or zero point of '{node.name or op}' is not a constant")
        return _quantized(q, scale, zero, _output_axis(node, q.ndim), node, node.name or op)
    if name in parsed.constants:
        return Weight(weight_array(parsed.array(name), f"ONNX weight '{name}'")[0])
    source = parsed.producer.get(name)
    if source is None:
        return None
    if source.op_type == "Identity":
        return _weight(parsed, node, source.input[0], shown)
    if source.op_type == "DequantizeLinear":
        q = parsed.array(source.input[0])
        if q is None:
            return None
        scale = parsed.array(source.input[1])
        zero = parsed.array(source.input[2]) if len(source.input) > 2 and source.input[2] else np.zeros(1, np.int64)
        return _quantized(q, scale, zero, int(_attrs(source).get("axis", 1)), node, source.name or name)
    if source.op_type == "Quant" and source.domain in QONNX_DOMAINS:
        x = parsed.array(source.input[0])
        if x is None:
            return None
        scale, zero, bits = (parsed.array(i) for i in source.input[1:4])
        if scale is None or zero is None or bits is None:
            raise CodesignError(f"{shown}: QONNX Quant '{source.name}' has non-constant parameters")
        qmin, qmax = _quant_range(_attrs(source), float(bits), source.name)
        mode = _attrs(source).get("rounding_mode", b"ROUND")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if mode != "ROUND":
            raise CodesignError(f"QONNX Quant '{source.name}' rounds with {mode}; codesign reads ROUND (half to even)")
        q = np.clip(np.rint(x / scale + zero), qmin, qmax).astype(np.int64)     # scale broadcasts as in ONNX
        return _quantized(q, scale, zero, _output_axis(node, x.ndim), node, source.name)
    return None


def _integer_op_scale(parsed: Parsed, node: Any) -> np.ndarray:
    """ConvInteger/MatMulInteger: the constant weight scale of ``Mul(Cast(out), Mul(x_scale, w_scale))``,
    else 1 (the integers are exact either way; the graph's own Mul rescales the output)."""
    for cast in parsed.consumers.get(node.output[0], []):
        if cast.op_type != "Cast":
            continue
        for mul in parsed.consumers.get(cast.output[0], []):
            if mul.op_type != "Mul":
                continue
            other = mul.input[1] if mul.input[0] == cast.output[0] else mul.input[0]
            factor = parsed.producer.get(other)
            if factor is not None and factor.op_type == "Mul":
                for candidate in factor.input:
                    if candidate in parsed.constants:
                        return parsed.array(candidate)
    return np.ones(1)


def _output_axis(node: Any, ndim: int) -> int:
    """The axis of a layer node's weight that indexes its outputs."""
    if node.op_type in ("Conv", "QLinearConv", "ConvInteger"):
        return 0
    if node.op_type in ("Gemm", "QGemm"):
        return 0 if int(_attrs(node).get("transB", 0)) else 1
    return ndim - 1


def _quantized(q: np.ndarray, scale: np.ndarray, zero: np.ndarray, axis: int, node: Any, name: str) -> Weight:
    """A quantized weight, checked: integers, parameters per tensor or along the output axis."""
    if not np.issubdtype(q.dtype, np.integer):
        raise CodesignError(f"ONNX weight '{name}' is dequantized from {q.dtype} values, not integers")
    scale, zero = np.asarray(scale, np.float64).reshape(-1), np.asarray(zero).reshape(-1)
    if max(scale.size, zero.size) > 1 and axis % q.ndim != _output_axis(node, q.ndim):
        raise CodesignError(f"ONNX weight '{name}' is quantized per channel along axis {axis}, not along its output "
                            f"channels: codesign needs one scale per output")
    return Weight(q.astype(np.int64), scale, zero)


def _layer(parsed: Parsed, node: Any, name: str, weight: Weight, shown: str) -> Any:
    """``(Found, OnnxLayer)`` for a layer node, or a string naming why it is unsupported. The weight is
    laid out output-first like PyTorch's (``[Cout, Cin/g, kh, kw]``, ``[out, in]``)."""
    op = node.op_type
    attrs = _attrs(node)
    values = weight.values
    conv_op = op in ("Conv", "QLinearConv", "ConvInteger")
    if not conv_op:
        if values.ndim != 2:
            return f"'{name}' ({op} with a {values.ndim}-D weight)"
        if op in ("Gemm", "QGemm") and int(attrs.get("transA", 0)):
            return f"'{name}' (Gemm with transA=1)"
        if not (op in ("Gemm", "QGemm") and int(attrs.get("transB", 0))):
            values = values.T                                    # [in, out] → [out, in]
    scale = None
    if weight.scale is not None:
        values, scale = integers(np.ascontiguousarray(values), weight.scale, weight.zero, f"ONNX weight '{name}'")
    alpha = float(attrs.get("alpha", 1.0)) if op in ("Gemm", "QGemm") else 1.0
    if alpha != 1.0:
        scale, values = (scale * alpha, values) if scale is not None else (None, values * alpha)
    spec = OnnxLayer(name, node, input_quant=_input_quant(parsed, node))
    bias = _bias(parsed, node, scale, spec)
    if conv_op:
        if values.ndim != 4:
            return f"'{name}' ({values.ndim - 2}-D convolution: Conv1d/Conv3d)"
        groups = int(attrs.get("group", 1))
        kernel = tuple(int(k) for k in values.shape[2:])
        strides = tuple(attrs.get("strides", (1, 1)))
        dilations = tuple(attrs.get("dilations", (1, 1)))
        top, left, bottom, right = _pads(attrs, kernel, dilations, strides, name)
        symmetric = (top, left) == (bottom, right)
        if not symmetric:
            spec.pads = (left, right, top, bottom)
        conv = ConvInfo(int(values.shape[1]) * groups, int(values.shape[0]), kernel, (int(strides[0]), int(strides[1])),
                        (top, left) if symmetric else (0, 0), (int(dilations[0]), int(dilations[1])), groups)
        found = Found(name, "conv2d", values, conv, scale, bias)
    else:
        found = Found(name, "linear", np.ascontiguousarray(values), None, scale, bias)
    if op in ("ConvInteger", "MatMulInteger"):
        spec.rescale = scale
    return found, spec


def _pads(attrs: dict[str, Any], kernel: tuple, dilations: tuple, strides: tuple, name: str) -> tuple[int, ...]:
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("NOTSET", ""):
        pads = tuple(int(p) for p in attrs.get("pads", (0, 0, 0, 0)))
        return pads if len(pads) == 4 else (0, 0, 0, 0)
    if auto == "VALID":
        return (0, 0, 0, 0)
    if any(int(s) != 1 for s in strides):
        raise CodesignError(f"ONNX Conv '{name}' uses auto_pad={auto} with stride > 1; export with explicit pads")
    total = [int(d) * (int(k) - 1) for d, k in zip(dilations, kernel)]
    low = [t // 2 if auto == "SAME_UPPER" else t - t // 2 for t in total]
    return (low[0], low[1], total[0] - low[0], total[1] - low[1])


def _bias(parsed: Parsed, node: Any, scale: Optional[np.ndarray], spec: OnnxLayer) -> Optional[np.ndarray]:
    """The float bias of a layer node (an int32 QOperator bias is ``B · x_scale · w_scale``)."""
    op = node.op_type
    index = {"Conv": 2, "Gemm": 2, "QLinearConv": 8, "QGemm": 6}.get(op)
    if index is None or len(node.input) <= index or not node.input[index]:
        return None   # a MatMul's bias is a separate Add node, which the interpreter runs digitally
    name = node.input[index]
    if op in ("QLinearConv", "QGemm"):
        b = parsed.array(name)
        x_scale = parsed.array(node.input[1])
        return None if b is None or x_scale is None else b.astype(np.float64) * float(x_scale.reshape(-1)[0]) * scale
    source = parsed.producer.get(name)
    if name in parsed.constants:
        b = parsed.array(name).astype(np.float64)
    elif source is not None and source.op_type == "DequantizeLinear" and source.input[0] in parsed.constants:
        q = parsed.array(source.input[0]).astype(np.float64)
        s = parsed.array(source.input[1]).astype(np.float64)
        z = parsed.array(source.input[2]).astype(np.float64) if len(source.input) > 2 and source.input[2] else 0.0
        b = (q - z) * s
    else:
        return None
    if op == "Gemm":
        beta = float(_attrs(node).get("beta", 1.0))
        b = b * beta
    return b.reshape(-1)


def _input_quant(parsed: Parsed, node: Any) -> Optional[ActivationQuant]:
    """The activation quantization of a layer's input, when the graph states it."""
    op = node.op_type
    if op in ("QLinearConv", "QLinearMatMul", "QGemm"):
        scale, zero = parsed.array(node.input[1]), parsed.array(node.input[2])
        if scale is None or zero is None:
            return None
        return ActivationQuant(float(scale.reshape(-1)[0]), int(zero.reshape(-1)[0]), *dtype_range(zero.dtype))
    source = parsed.producer.get(node.input[0])
    while source is not None and source.op_type in GRID_PRESERVING:     # e.g. Brevitas: Quant → Reshape → Gemm
        source = parsed.producer.get(source.input[0])
    if source is None:
        return None
    if source.op_type == "DequantizeLinear":
        scale = parsed.array(source.input[1])
        zero = parsed.array(source.input[2]) if len(source.input) > 2 and source.input[2] else np.zeros(1, np.uint8)
        if scale is None or zero is None or scale.size != 1:
            return None
        return ActivationQuant(float(scale.reshape(-1)[0]), int(zero.reshape(-1)[0]), *dtype_range(zero.dtype))
    if source.op_type == "Quant" and source.domain in QONNX_DOMAINS:
        scale, zero, bits = (parsed.array(i) for i in source.input[1:4])
        if scale is None or zero is None or bits is None or scale.size != 1:
            return None
        qmin, qmax = _quant_range(_attrs(source), float(bits), source.name)
        return ActivationQuant(float(scale.reshape(-1)[0]), int(np.rint(zero.reshape(-1)[0])), qmin, qmax)
    return None


ELEMENTWISE = {"Relu", "Clip", "QuantizeLinear", "DequantizeLinear", "Quant", "BatchNormalization", "Identity",
               "Dropout", "LeakyRelu", "Sigmoid", "Tanh", "Add", "Sub", "Mul", "Div", "Cast", "HardSwish",
               "DynamicQuantizeLinear"}


def _positions(parsed: Parsed, layers: dict[str, OnnxLayer], kernels: dict[str, tuple]) -> dict[str, int]:
    """Output pixels per image of each convolution (1 for a Gemm/MatMul), from the graph's shapes:
    the file's value_info where it has them, else propagated from the input through convolutions,
    pools and elementwise operations."""
    graph = parsed.model.graph
    shapes: dict[str, list] = {info.name: info.dims for info in list(graph.input) + list(graph.value_info) if info.dims}
    for node in graph.node:
        x = shapes.get(node.input[0]) if node.input else None
        if not node.output or node.output[0] in shapes or x is None or len(x) != 4:
            continue
        attrs = node.attrs
        if node.op_type in ("Conv", "QLinearConv", "ConvInteger", "MaxPool", "AveragePool"):
            conv = node.op_type not in ("MaxPool", "AveragePool")
            kernel = kernels.get(node.output[0], ()) if conv else tuple(attrs.get("kernel_shape", ()))
            if len(kernel) != 2:
                continue
            strides, dilations = tuple(attrs.get("strides", (1, 1))), tuple(attrs.get("dilations", (1, 1)))
            top, left, bottom, right = _pads(attrs, kernel, dilations, strides, node.name)
            size = [(n + a + b - d * (k - 1) - 1) for n, a, b, d, k in
                    zip(x[2:], (top, left), (bottom, right), dilations, kernel)] if all(x[2:]) else [None, None]
            ceil = bool(attrs.get("ceil_mode", 0)) and not conv
            size = [None if v is None else (-(-v // s) if ceil else v // s) + 1 for v, s in zip(size, strides)]
            shapes[node.output[0]] = [x[0], None, *size]
        elif node.op_type in ("GlobalAveragePool", "GlobalMaxPool"):
            shapes[node.output[0]] = [x[0], x[1], 1, 1]
        elif node.op_type in ELEMENTWISE:
            shapes[node.output[0]] = x
    positions = {}
    for out, spec in layers.items():
        if spec.node.op_type in ("Conv", "QLinearConv", "ConvInteger"):
            shape = shapes.get(out)
            if shape and len(shape) == 4 and shape[2] and shape[3]:
                positions[spec.name] = int(shape[2] * shape[3])
        else:
            positions[spec.name] = 1
    return positions


def _build(program_inputs: tuple, found: list[Found]) -> Any:
    from .graph import LayerGraph

    parsed, layers, file, shown = program_inputs
    return LayerGraph(OnnxProgram(parsed, layers, file, shown), found)


class OnnxProgram:
    """Runs an ONNX graph with PyTorch operations; layer nodes call the LayerGraph's layers."""

    runtime = "onnxruntime (the ONNX file itself)"

    def __init__(self, parsed: Parsed, layers: dict[str, OnnxLayer], file: Path, shown: str) -> None:
        import torch

        self.parsed, self.layers, self.file, self.shown = parsed, layers, file, shown
        graph = parsed.model.graph
        self.constants = {name: _tensor(parsed.array(name)) for name in parsed.constants}
        inputs = [i for i in graph.input if i.name not in parsed.constants]
        self.inputs = [i.name for i in inputs]
        dims = (inputs[0].dims or []) if len(inputs) == 1 else []
        self.batch = int(dims[0]) if dims and dims[0] else None   # a fixed batch size
        self.outputs = [o.name for o in graph.output]
        self.torch = torch
        self.session: Any = None
        self.qonnx = any(node.domain in QONNX_DOMAINS for node in graph.node)

    def run(self, root: Any, x: Any) -> Any:
        from .graph import in_batches

        if len(self.inputs) != 1:
            raise CodesignError(f"{self.shown} takes {len(self.inputs)} inputs; whole-model emulation feeds one image batch")
        return in_batches(lambda chunk: self._run(root, chunk), x, self.batch)

    def _run(self, root: Any, x: Any) -> Any:
        from .graph import fake_quant

        env = dict(self.constants)
        env[self.inputs[0]] = x
        for node in self.parsed.model.graph.node:
            args = [env.get(name) if name else None for name in node.input]
            spec = self.layers.get(node.output[0]) if node.output else None
            if spec is not None:
                outs = [self._layer(root, spec, args[0])]
                requantize = OUTPUT_QUANT.get(node.op_type)
                if requantize and len(args) > requantize[1] and args[requantize[1]] is not None:
                    scale_index, zero_index = requantize
                    qmin, qmax = dtype_range(self.parsed.array(node.input[zero_index]).dtype)
                    outs = [fake_quant(outs[0], args[scale_index].reshape(()), args[zero_index].reshape(()).double(),
                                       qmin, qmax, root.quantize_activations)]
            elif node.op_type in ("QuantizeLinear", "Quant"):
                outs = [self._quantize(node, args, root.quantize_activations)]
            else:
                outs = _run_op(node, args, self.shown)
            for name, value in zip(node.output, outs):
                env[name] = value
        return env[self.outputs[0]]

    def _layer(self, root: Any, spec: OnnxLayer, x: Any) -> Any:
        torch = self.torch
        x = x.float()
        if spec.pads is not None:
            x = torch.nn.functional.pad(x, spec.pads)
        shape = x.shape
        if spec.node.op_type in ("MatMul", "QLinearMatMul", "MatMulInteger") and x.dim() != 2:
            x = x.reshape(-1, shape[-1])
        y = root.layer(spec.name, x)
        if spec.node.op_type in ("MatMul", "QLinearMatMul", "MatMulInteger") and len(shape) != 2:
            y = y.reshape(*shape[:-1], y.shape[-1])
        if spec.rescale is not None:
            view = (1, -1, 1, 1) if y.dim() == 4 else (-1,)
            y = y / torch.from_numpy(spec.rescale).to(y.dtype).reshape(view)
        return y

    def _quantize(self, node: Any, args: list, rounding: bool) -> Any:
        """A QuantizeLinear (its DequantizeLinear is then the identity) or QONNX Quant as fake quantization
        (without ``rounding``: its clipping only)."""
        from .graph import fake_quant

        x, scale = args[0], args[1]
        zero = args[2] if len(args) > 2 and args[2] is not None else None
        if scale.numel() != 1 or not x.is_floating_point():
            return x
        if node.op_type == "Quant":
            qmin, qmax = _quant_range(_attrs(node), float(args[3]), node.name)
            return fake_quant(x, scale.reshape(()), zero.reshape(()), qmin, qmax, rounding)
        dtype = self.parsed.array(node.input[2]).dtype if zero is not None and node.input[2] in self.parsed.constants \
            else np.dtype(np.uint8)
        qmin, qmax = dtype_range(dtype)
        return fake_quant(x, scale.reshape(()), 0 if zero is None else zero.reshape(()).double(), qmin, qmax, rounding)

    def native(self, x: Any) -> Any:
        if self.qonnx:
            return None
        import onnxruntime

        if self.session is None:
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = 1
            options.log_severity_level = 3
            try:
                self.session = onnxruntime.InferenceSession(str(self.file), options, providers=["CPUExecutionProvider"])
            except Exception as exc:  # noqa: BLE001
                raise CodesignError(f"onnxruntime cannot run {self.shown}: {first_line(exc)}") from None
        def run(chunk: Any) -> Any:
            out = self.session.run([self.outputs[0]], {self.inputs[0]: chunk.numpy().astype(np.float32)})[0]
            return self.torch.from_numpy(out)

        from .graph import in_batches

        return in_batches(run, x, self.batch)

    def activation_quant(self, images: np.ndarray) -> dict[str, ActivationQuant]:
        return {spec.name: spec.input_quant for spec in self.layers.values() if spec.input_quant is not None}


def _tensor(array: np.ndarray) -> Any:
    import torch

    if array.dtype == np.float64 or array.dtype == np.float16:
        array = array.astype(np.float32)
    if array.dtype == np.uint16 or array.dtype == np.uint32 or array.dtype == np.uint64:
        array = array.astype(np.int64)
    return torch.from_numpy(np.array(array))


def _run_op(node: Any, args: list, shown: str) -> list:
    """One ONNX node with PyTorch (quantize/dequantize are the identity on float values)."""
    op = OPS.get(node.op_type)
    if op is None or (node.domain not in ("", "ai.onnx", "com.microsoft") and node.op_type != "Quant"):
        raise CodesignError(f"whole-model emulation cannot run ONNX operator {node.op_type} (node "
                            f"'{node.name or node.output[0]}' of {shown}); 'codesign analyze' reads the model")
    result = op(args, _attrs(node))
    return list(result) if isinstance(result, (tuple, list)) else [result]


def _dequantize(args: list, attrs: dict) -> Any:
    import torch

    x = args[0]
    if x.is_floating_point():
        return x
    scale = args[1]
    zero = args[2] if len(args) > 2 and args[2] is not None else torch.zeros(1)
    if scale.numel() > 1:
        axis = int(attrs.get("axis", 1)) % x.dim()
        view = [1] * x.dim()
        view[axis] = -1
        scale, zero = scale.reshape(view), zero.reshape(view)
    return (x.double() - zero.double()) * scale.double()


def _pool(kind: str) -> Callable:
    def run(args: list, attrs: dict) -> Any:
        import torch.nn.functional as F

        kernel = tuple(attrs["kernel_shape"])
        strides = tuple(attrs.get("strides", kernel))
        pads = tuple(attrs.get("pads", (0,) * 2 * len(kernel)))
        x = args[0]
        half = len(kernel)
        if pads[:half] != pads[half:]:
            x = F.pad(x, (pads[1], pads[3], pads[0], pads[2]), value=float("-inf") if kind == "max" else 0.0)
            pads = (0,) * 2 * half
        ceil = bool(attrs.get("ceil_mode", 0))
        if kind == "max":
            return F.max_pool2d(x, kernel, strides, pads[:half], tuple(attrs.get("dilations", (1,) * half)), ceil)
        return F.avg_pool2d(x, kernel, strides, pads[:half], ceil, bool(attrs.get("count_include_pad", 0)))
    return run


def _reshape(args: list, attrs: dict) -> Any:
    shape = [int(s) for s in args[1].tolist()]
    if not attrs.get("allowzero", 0):
        shape = [args[0].shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return args[0].reshape(shape)


def _axes(args: list, attrs: dict) -> list[int]:
    if len(args) > 1 and args[1] is not None:
        return [int(a) for a in args[1].tolist()]
    return list(attrs.get("axes", []))


def _unsqueeze(args: list, attrs: dict) -> Any:
    x = args[0]
    for axis in sorted(a % (x.dim() + len(_axes(args, attrs))) for a in _axes(args, attrs)):
        x = x.unsqueeze(axis)
    return x


def _squeeze(args: list, attrs: dict) -> Any:
    axes = _axes(args, attrs)
    x = args[0]
    if not axes:
        return x.squeeze()
    for axis in sorted((a % x.dim() for a in axes), reverse=True):
        x = x.squeeze(axis)
    return x


def _slice(args: list, attrs: dict) -> Any:
    x = args[0]
    starts, ends = args[1].tolist(), args[2].tolist()
    axes = args[3].tolist() if len(args) > 3 and args[3] is not None else list(range(len(starts)))
    steps = args[4].tolist() if len(args) > 4 and args[4] is not None else [1] * len(starts)
    index = [slice(None)] * x.dim()
    for start, end, axis, step in zip(starts, ends, axes, steps):
        size = x.shape[axis]
        start = max(min(start + size if start < 0 else start, size), 0)
        end = max(min(end + size if end < 0 else end, size), 0)
        if step < 0:
            raise CodesignError("ONNX Slice with a negative step is not supported by whole-model emulation")
        index[axis] = slice(start, end, step)
    return x[tuple(index)]


def _gemm(args: list, attrs: dict) -> Any:
    a, b = args[0], args[1]
    a = a.T if attrs.get("transA", 0) else a
    b = b.T if attrs.get("transB", 0) else b
    y = attrs.get("alpha", 1.0) * (a.float() @ b.float())
    return y + attrs.get("beta", 1.0) * args[2] if len(args) > 2 and args[2] is not None else y


def _cast(args: list, attrs: dict) -> Any:
    import torch

    to = int(attrs["to"])
    return args[0].to({1: torch.float32, 11: torch.float64, 7: torch.int64, 6: torch.int32, 9: torch.bool,
                       10: torch.float16}.get(to, torch.float32))


def _batch_norm(args: list, attrs: dict) -> Any:
    import torch.nn.functional as F

    x, scale, bias, mean, var = args[:5]
    return F.batch_norm(x, mean, var, scale, bias, False, 0.0, float(attrs.get("epsilon", 1e-5)))


def _clip(args: list, attrs: dict) -> Any:
    low = args[1] if len(args) > 1 and args[1] is not None else attrs.get("min")
    high = args[2] if len(args) > 2 and args[2] is not None else attrs.get("max")
    return args[0].clamp(None if low is None else float(low), None if high is None else float(high))


def _torch(name: str) -> Callable:
    def run(args: list, attrs: dict) -> Any:
        import torch

        return getattr(torch, name)(*[a for a in args if a is not None])
    return run


def _reduce_mean(args: list, attrs: dict) -> Any:
    axes = _axes(args, attrs) or list(range(args[0].dim()))
    return args[0].mean(dim=axes, keepdim=bool(attrs.get("keepdims", 1)))


def _global_pool(kind: str) -> Callable:
    def run(args: list, attrs: dict) -> Any:
        x = args[0]
        return x.mean((2, 3), keepdim=True) if kind == "avg" else x.amax((2, 3), keepdim=True)
    return run


def _identity(args: list, attrs: dict) -> Any:
    return args[0]


def _dynamic_quantize(args: list, attrs: dict) -> Any:
    import torch

    return args[0], torch.ones(()), torch.zeros((), dtype=torch.uint8)


def _constant(args: list, attrs: dict) -> Any:
    return _tensor(attrs["value"].array(Path(".")))


def _integer_matmul(args: list, attrs: dict) -> Any:
    raise CodesignError("ONNX MatMulInteger/ConvInteger of two activations is not supported by whole-model emulation")


def _shape(args: list, attrs: dict) -> Any:
    import torch

    return torch.tensor(list(args[0].shape), dtype=torch.int64)


def _gather(args: list, attrs: dict) -> Any:
    import torch

    return torch.index_select(args[0], int(attrs.get("axis", 0)) % args[0].dim(),
                              args[1].reshape(-1).long()).reshape(
        list(args[0].shape[:int(attrs.get("axis", 0)) % args[0].dim()]) + list(args[1].shape)
        + list(args[0].shape[int(attrs.get("axis", 0)) % args[0].dim() + 1:]))


def _concat(args: list, attrs: dict) -> Any:
    import torch

    return torch.cat([a for a in args if a is not None], int(attrs["axis"]))


def _flatten(args: list, attrs: dict) -> Any:
    axis = int(attrs.get("axis", 1)) % max(args[0].dim(), 1)
    return args[0].reshape(int(np.prod(args[0].shape[:axis])), -1)


def _pad(args: list, attrs: dict) -> Any:
    import torch.nn.functional as F

    pads = args[1].tolist() if len(args) > 1 and args[1] is not None else list(attrs.get("pads", []))
    mode = attrs.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    value = float(args[2]) if len(args) > 2 and args[2] is not None else 0.0
    half = len(pads) // 2
    torch_pads = []
    for axis in reversed(range(half)):
        torch_pads += [pads[axis], pads[axis + half]]
    return F.pad(args[0], torch_pads, mode=mode, value=value if mode == "constant" else None)


OPS: dict[str, Callable[[list, dict], Any]] = {
    "QuantizeLinear": _identity, "DequantizeLinear": _dequantize, "Quant": _identity, "Identity": _identity,
    "Dropout": _identity, "DynamicQuantizeLinear": _dynamic_quantize, "Constant": _constant,
    "Relu": lambda a, k: a[0].relu(), "Sigmoid": lambda a, k: a[0].sigmoid(), "Tanh": lambda a, k: a[0].tanh(),
    "LeakyRelu": lambda a, k: __import__("torch").nn.functional.leaky_relu(a[0], k.get("alpha", 0.01)),
    "Clip": _clip, "Add": lambda a, k: a[0] + a[1], "Sub": lambda a, k: a[0] - a[1], "Mul": lambda a, k: a[0] * a[1],
    "Div": lambda a, k: a[0] / a[1], "Neg": lambda a, k: -a[0], "Sqrt": lambda a, k: a[0].sqrt(),
    "Exp": lambda a, k: a[0].exp(), "Erf": lambda a, k: a[0].erf(), "Pow": lambda a, k: a[0] ** a[1],
    "MaxPool": _pool("max"), "AveragePool": _pool("avg"), "GlobalAveragePool": _global_pool("avg"),
    "GlobalMaxPool": _global_pool("max"), "Flatten": _flatten, "Reshape": _reshape,
    "Transpose": lambda a, k: a[0].permute(*k["perm"]) if "perm" in k else a[0].permute(*reversed(range(a[0].dim()))),
    "Concat": _concat, "BatchNormalization": _batch_norm, "Squeeze": _squeeze, "Unsqueeze": _unsqueeze,
    "Softmax": lambda a, k: a[0].softmax(int(k.get("axis", -1))),
    "LogSoftmax": lambda a, k: a[0].log_softmax(int(k.get("axis", -1))),
    "Shape": _shape, "Gather": _gather, "Cast": _cast, "Slice": _slice, "Pad": _pad, "ReduceMean": _reduce_mean,
    "MatMul": lambda a, k: a[0].float() @ a[1].float(), "Gemm": _gemm, "Sum": lambda a, k: sum(a),
    "Max": _torch("maximum"), "Min": _torch("minimum"), "HardSwish": lambda a, k: __import__("torch").nn.functional.hardswish(a[0]),
    "MatMulInteger": _integer_matmul, "ConvInteger": _integer_matmul,
}
