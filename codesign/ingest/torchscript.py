"""TorchScript archives, scripted or traced, float or torch.ao-quantized.

The layers come from the module's inlined forward graph, so a traced module (whose submodules keep
no stride or padding) reads like a scripted one: every ``aten::conv2d``/``aten::_convolution``/
``aten::linear`` node and every torch.ao ``quantized::conv2d*``/``quantized::linear*`` node whose
weight is a module attribute becomes a layer named by the module path that holds it. Quantized
weights come from the packed parameters exactly (``int_repr()``). The same graph is interpreted for
whole-model emulation (:class:`codesign.ingest.graph.LayerGraph`); the activation quantization of a
quantized model is read by running it once natively and noting each layer input's ``q_scale`` and
``q_zero_point``.
"""

from __future__ import annotations

import functools
import operator
import os
import signal
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from ..errors import CodesignError
from .archive import first_line
from .graph import LayerGraph, fake_quant
from .tensors import ActivationQuant, ConvInfo, Found, dtype_range, weight_array

FLOAT_LAYERS = {"aten::conv2d", "aten::_convolution", "aten::convolution", "aten::linear"}
QUANTIZED_LAYERS = {"quantized::conv2d", "quantized::conv2d_relu", "quantized::linear", "quantized::linear_relu",
                    "quantized::linear_dynamic", "quantized::linear_relu_dynamic"}
UNSUPPORTED = {"aten::conv1d": "Conv1d", "aten::conv3d": "Conv3d", "aten::conv_transpose1d": "ConvTranspose1d",
               "aten::conv_transpose2d": "ConvTranspose2d", "aten::conv_transpose3d": "ConvTranspose3d",
               "quantized::conv1d": "Conv1d", "quantized::conv3d": "Conv3d",
               "quantized::conv_transpose2d": "ConvTranspose2d", "quantized::conv1d_relu": "Conv1d"}
#: torch.ao's quantized elementwise ops and their float meaning (used with quantization as identity).
QUANTIZED_FLOAT: dict[str, Callable[..., Any]] = {
    "quantized::add": lambda a, b, *_: a + b,
    "quantized::add_relu": lambda a, b, *_: torch.relu(a + b),
    "quantized::add_scalar": lambda a, b, *_: a + b,
    "quantized::mul": lambda a, b, *_: a * b,
    "quantized::mul_scalar": lambda a, b, *_: a * b,
    "quantized::cat": lambda xs, dim, *_: torch.cat(xs, dim),
    "quantized::hardswish": lambda x, *_: torch.nn.functional.hardswish(x),
    "quantized::leaky_relu": lambda x, slope, *_: torch.nn.functional.leaky_relu(x, slope),
    "quantized::sigmoid": lambda x, *_: torch.sigmoid(x),
}
IDENTITY = {"aten::quantize_per_tensor", "aten::quantize_per_channel", "aten::dequantize",
            "aten::fake_quantize_per_tensor_affine", "aten::fake_quantize_per_channel_affine"}
#: Operations the TorchScript interpreter runs in Python (they have no callable operator).
PYTHON_OPS: dict[str, Callable[..., Any]] = {
    "aten::__is__": operator.is_, "aten::__isnot__": operator.is_not, "aten::__not__": operator.not_,
    "aten::__getitem__": operator.getitem, "aten::__contains__": operator.contains, "aten::len": len,
    "aten::format": lambda fmt, *args: fmt.replace("{}", "%s") % args if args else fmt,
    "aten::warn": lambda *args: None, "aten::list": list, "aten::append": lambda xs, x: xs.append(x) or xs,
    "prim::unchecked_cast": lambda x: x, "prim::NumToTensor": torch.tensor, "aten::Int": int,
    "aten::Float": float, "aten::Bool": bool, "aten::ScalarImplicit": lambda t: t.item(),
    "prim::dtype": lambda t: t.dtype, "prim::device": lambda t: t.device, "prim::min": min, "prim::max": max,
    "aten::dim": lambda t: t.dim(), "prim::layout": lambda t: t.layout,
}


#: How long (s) the trial load in a child may take before it is given up as inconclusive.
TRIAL_SECONDS = 120.0


def load_torchscript(file: Path, shown: str) -> Any:
    """The module of a TorchScript archive. A corrupted archive can crash TorchScript's native loader
    (a segmentation fault, not an exception), so the archive is first loaded and read in a forked
    child: a child killed by a signal becomes a one-line error instead of killing codesign."""
    killed_by = _trial_in_child(lambda: _read_all(_load(file, shown), shown))
    if killed_by is not None:
        raise CodesignError(f"cannot load TorchScript archive {shown}: it crashed TorchScript's loader "
                            f"({signal.Signals(killed_by).name}), so the file is corrupt: re-save the model")
    return _load(file, shown)


def _load(file: Path, shown: str) -> Any:
    try:
        with warnings.catch_warnings():   # TorchScript is deprecated upstream but still a user format
            warnings.simplefilter("ignore")
            return torch.jit.load(str(file), map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - any failure means an unreadable archive
        raise CodesignError(f"cannot load TorchScript archive {shown}: {first_line(exc)}") from None


def _read_all(module: Any, shown: str) -> None:
    """Everything codesign reads of a loaded module (the trial's work)."""
    read_torchscript(module, shown)
    traced_shape(module)


def _trial_in_child(work: Callable[[], object]) -> Optional[int]:
    """Run ``work`` in a forked child (one thread, output discarded); the number of the signal that
    killed it, or None if it exited, whether ``work`` succeeded, raised or took over
    :data:`TRIAL_SECONDS` (errors are the parent's to report, when it does the same work)."""
    pid = os.fork()
    if pid == 0:    # pragma: no cover - the child's coverage is not collected
        try:
            torch.set_num_threads(1)    # the parent's thread pool does not exist in the child
            quiet = os.open(os.devnull, os.O_WRONLY)
            os.dup2(quiet, 1)
            os.dup2(quiet, 2)
            work()
        finally:
            os._exit(0)
    try:
        deadline, pause = time.monotonic() + TRIAL_SECONDS, 0.001
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
            if time.monotonic() > deadline:
                break
            time.sleep(pause)
            pause = min(2 * pause, 0.05)
    except BaseException:
        _end(pid)
        raise
    _end(pid)
    return None


def _end(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def read_torchscript(module: Any, shown: str) -> tuple[list[Found], list[str], list[str], LayerGraph]:
    """(found, ignored, unsupported, graph module) of a loaded TorchScript module."""
    graph = module.inlined_graph
    found: dict[str, Found] = {}
    layer_of: dict[int, str] = {}   # output value of a layer node → layer name
    unsupported: list[str] = []
    used: set[str] = set()
    for node in _all_nodes(graph.block()):
        kind = node.kind()
        if kind in UNSUPPORTED:
            path = _attr_path(node.inputsAt(1))
            unsupported.append(f"'{_layer_name(path) if path else kind}' ({UNSUPPORTED[kind]})")
        elif kind in FLOAT_LAYERS or kind in QUANTIZED_LAYERS:
            path = _attr_path(node.inputsAt(1))
            if path is None:
                unsupported.append(f"'{kind}' node computing its weight (only module weights map onto crossbars)")
                continue
            name = _layer_name(path)
            if name not in found:
                layer = _layer(module, node, path, name, shown)
                if layer is None:
                    unsupported.append(f"'{name}' (ConvTranspose2d)")
                    continue
                found[name] = layer
            layer_of[node.output().unique()] = name
            used.update({".".join(path), f"{name}.bias"})
    ignored = [f"{key} (digital)" for key, _ in _tensors(module) if key not in used]
    quantized = any(node.kind() in QUANTIZED_LAYERS for node in _all_nodes(graph.block()))
    program = TorchScriptProgram(module, graph, layer_of, quantized)
    return list(found.values()), ignored, unsupported, LayerGraph(program, list(found.values()))


def traced_shape(module: Any) -> Optional[tuple[int, ...]]:
    """The image shape a traced module was traced with, if its graph records it."""
    inputs = list(module.graph.inputs())
    if len(inputs) != 2:
        return None
    try:
        sizes = inputs[1].type().sizes()
    except (RuntimeError, AttributeError):
        return None
    return tuple(int(n) for n in sizes[1:]) if sizes and all(isinstance(n, int) for n in sizes) else None


def _tensors(module: Any) -> list[tuple[str, Any]]:
    return list(module.named_parameters()) + [(k, v) for k, v in module.named_buffers()]


def _all_nodes(block: Any) -> Any:
    for node in block.nodes():
        yield node
        for sub in node.blocks():
            yield from _all_nodes(sub)


def _attr_path(value: Any) -> Optional[list[str]]:
    """Attribute names from ``self`` to ``value`` (a chain of ``prim::GetAttr``), or None."""
    node = value.node()
    if node.kind() == "prim::Param":
        return [] if value.offset() == 0 else None
    if node.kind() != "prim::GetAttr":
        return None
    parent = _attr_path(node.input())
    return None if parent is None else parent + [node.s("name")]


def _layer_name(path: list[str]) -> str:
    parts = [p for p in path if p not in ("weight", "_packed_params")]
    return ".".join(parts) or ".".join(path)


def _constant(value: Any) -> Any:
    """The value of a constant graph input (``prim::Constant`` or a list of them)."""
    node = value.node()
    if node.kind() == "prim::Constant":
        return value.toIValue()
    if node.kind() == "prim::ListConstruct":
        return [_constant(v) for v in node.inputs()]
    raise CodesignError(f"a layer's geometry is computed at run time ({node.kind()}); script or trace the model "
                        f"with constant strides and paddings")


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        return int(value[0]), int(value[-1])
    return int(value), int(value)


def _layer(module: Any, node: Any, path: list[str], name: str, shown: str) -> Optional[Found]:
    """The layer a conv/linear node computes; None for a transposed convolution."""
    kind = node.kind()
    target = functools.reduce(getattr, path, module)
    if kind in QUANTIZED_LAYERS:
        unpack = torch.ops.quantized.conv2d_unpack if "conv" in kind else torch.ops.quantized.linear_unpack
        weight, bias = unpack(target)
        values, scale = weight_array(weight, f"layer '{name}'")
        conv = None
        if "conv" in kind:
            conv = ConvInfo(int(values.shape[1]) * int(target.groups()), int(values.shape[0]),
                            (int(values.shape[2]), int(values.shape[3])), _pair(target.stride()),
                            _pair(target.padding()), _pair(target.dilation()), int(target.groups()))
            if int(target.transpose()):
                return None
    else:
        values, scale = weight_array(target, f"layer '{name}'")
        bias_value = node.inputsAt(2)
        bias_path = _attr_path(bias_value)
        bias = functools.reduce(getattr, bias_path, module) if bias_path else None
        if kind == "aten::linear":
            conv = None
        else:
            args = [_constant(node.inputsAt(i)) for i in range(3, node.inputsSize())]
            if kind == "aten::conv2d":
                stride, padding, dilation, groups = args[:4]
            else:   # aten::_convolution / aten::convolution: stride, padding, dilation, transposed, output_padding, groups
                stride, padding, dilation, transposed, _, groups = args[:6]
                if transposed:
                    return None
            if isinstance(padding, str):
                padding = _string_padding(padding, values.shape, dilation, name)
            conv = ConvInfo(int(values.shape[1]) * int(groups), int(values.shape[0]),
                            (int(values.shape[2]), int(values.shape[3])), _pair(stride), _pair(padding),
                            _pair(dilation), int(groups))
    if values.ndim != (4 if conv else 2):
        raise CodesignError(f"layer '{name}' of {shown} has a {values.ndim}-D weight; only Conv2d and Linear "
                            f"map onto crossbars")
    bias_values = weight_array(bias, f"the bias of '{name}'")[0] if bias is not None else None
    return Found(name, "conv2d" if conv else "linear", values, conv, scale, bias_values)


def _string_padding(padding: str, shape: tuple, dilation: Any, name: str) -> tuple[int, int]:
    if padding == "valid":
        return (0, 0)
    total = [d * (k - 1) for d, k in zip(_pair(dilation), shape[2:])]
    if any(t % 2 for t in total):
        raise CodesignError(f"layer '{name}': padding='same' pads unevenly for this kernel; use explicit padding")
    return (total[0] // 2, total[1] // 2)


class TorchScriptProgram:
    """Interprets the inlined forward graph of a TorchScript module."""

    runtime = "torch.ao's quantized kernels (the TorchScript module itself)"

    def __init__(self, module: Any, graph: Any, layer_of: dict[int, str], quantized: bool) -> None:
        self.module, self.graph, self.layer_of, self.quantized = module, graph, layer_of, quantized

    def run(self, root: LayerGraph, x: torch.Tensor) -> torch.Tensor:
        return self._interpret(x, lambda node, name, args: self._float_layer(root, node, name, args),
                               quantize=root.quantize_activations)

    def native(self, x: torch.Tensor) -> Optional[torch.Tensor]:
        if not self.quantized:
            return None
        with torch.no_grad():
            out = self.module(x)
        return out.dequantize() if out.is_quantized else out

    def activation_quant(self, images: np.ndarray) -> dict[str, ActivationQuant]:
        """Each quantized layer's input qparams, from one native run on the first image."""
        if not self.quantized:
            return {}
        seen: dict[str, ActivationQuant] = {}

        def record(node: Any, name: str, args: list) -> Any:
            x = args[0]
            if x.is_quantized and x.qscheme() == torch.per_tensor_affine:
                seen[name] = ActivationQuant(float(x.q_scale()), int(x.q_zero_point()), *dtype_range(x.dtype))
            return _call(node, args)

        with torch.no_grad():
            self._interpret(torch.from_numpy(np.ascontiguousarray(images[:1])), record, native=True)
        return seen

    @staticmethod
    def _float_layer(root: LayerGraph, node: Any, name: str, args: list) -> torch.Tensor:
        y = root.layer(name, args[0])
        if node.kind().endswith("_relu") or node.kind().endswith("relu_dynamic"):
            y = torch.relu(y)
        if node.kind() in ("quantized::conv2d", "quantized::conv2d_relu", "quantized::linear", "quantized::linear_relu"):
            # the requantized output, as torch.ao computes it
            y = fake_quant(y, args[2], args[3], *dtype_range(torch.quint8), rounding=root.quantize_activations)
        return y

    def _interpret(self, x: torch.Tensor, layer: Callable[[Any, str, list], Any], native: bool = False,
                   quantize: bool = False) -> Any:
        """Run the graph on ``x``: ``layer`` computes the layer nodes; ``native`` runs quantized operations
        as they are, else in float (``quantize``: with the model's activation quantization as fake quantization)."""
        inputs = list(self.graph.inputs())
        if len(inputs) != 2:
            raise CodesignError(f"the TorchScript model takes {len(inputs) - 1} inputs; whole-model emulation "
                                f"feeds it one image batch")
        env = {inputs[0].unique(): self.module, inputs[1].unique(): x}
        mode = "native" if native else "quantize" if quantize else "float"
        outputs = self._block(self.graph.block(), env, layer, mode)
        out = outputs[0] if len(outputs) == 1 else outputs
        if isinstance(out, (tuple, list)):
            out = out[0]
        return out.dequantize() if isinstance(out, torch.Tensor) and out.is_quantized else out

    def _block(self, block: Any, env: dict, layer: Callable, mode: str) -> list:
        for node in block.nodes():
            args = [env[v.unique()] for v in node.inputs()]
            outs = list(node.outputs())
            kind = node.kind()
            key = outs[0].unique() if len(outs) == 1 else None
            if key in self.layer_of:
                result: Any = layer(node, self.layer_of[key], args)
            elif kind == "prim::If":
                branch = list(node.blocks())[0 if args[0] else 1]
                result = self._block(branch, env, layer, mode)
                env.update({o.unique(): r for o, r in zip(outs, result)})
                continue
            elif kind == "prim::Loop":
                self._loop(node, args, env, layer, mode)
                continue
            else:
                result = self._op(node, kind, args, mode)
            if kind in ("prim::TupleUnpack", "prim::ListUnpack"):
                env.update({o.unique(): r for o, r in zip(outs, result)})
            elif len(outs) == 1:
                env[outs[0].unique()] = result
            elif outs:
                env.update({o.unique(): r for o, r in zip(outs, result)})
        return [env[v.unique()] for v in block.returnNode().inputs()]

    def _loop(self, node: Any, args: list, env: dict, layer: Callable, mode: str) -> None:
        trips, condition, carried = args[0], args[1], args[2:]
        body = list(node.blocks())[0]
        params = list(body.inputs())
        i = 0
        while condition and i < trips:
            env.update({p.unique(): v for p, v in zip(params, [i, *carried])})
            result = self._block(body, env, layer, mode)
            condition, carried = result[0], result[1:]
            i += 1
        env.update({o.unique(): v for o, v in zip(node.outputs(), carried)})

    def _op(self, node: Any, kind: str, args: list, mode: str) -> Any:
        if kind == "prim::Constant":
            return node.output().toIValue()
        if kind == "prim::GetAttr":
            return getattr(args[0], node.s("name"))
        if kind in ("prim::ListConstruct",):
            return list(args)
        if kind in ("prim::TupleConstruct",):
            return tuple(args)
        if kind in ("prim::TupleUnpack", "prim::ListUnpack"):
            return list(args[0])
        if kind == "prim::TupleIndex":
            return args[0][args[1]]
        if kind == "prim::RaiseException":
            raise CodesignError(f"the TorchScript model raised an exception while running: {args[0] if args else ''}")
        if kind == "prim::Uninitialized":
            return None
        if mode != "native":
            if kind == "aten::quantize_per_tensor":
                return fake_quant(args[0], args[1], args[2], *dtype_range(args[3]), rounding=mode == "quantize")
            if kind in IDENTITY:
                return args[0]
            if kind in QUANTIZED_FLOAT:
                return QUANTIZED_FLOAT[kind](*args)
            if kind.startswith("quantized::"):
                raise CodesignError(f"whole-model emulation does not know the quantized operation {kind}")
        if kind in PYTHON_OPS:
            return PYTHON_OPS[kind](*args)
        return _call(node, args)


@functools.lru_cache(maxsize=None)
def _operator(schema_text: str) -> tuple[Any, tuple[bool, ...], tuple[str, ...]]:
    schema = torch._C.parse_schema(schema_text)
    namespace, name = schema.name.split("::")
    packet = getattr(getattr(torch.ops, namespace), name)
    op = getattr(packet, schema.overload_name or "default")
    return op, tuple(a.kwarg_only for a in schema.arguments), tuple(a.name for a in schema.arguments)


def _call(node: Any, args: list) -> Any:
    """Call the operator of ``node`` (its exact overload) with positional and keyword-only ``args``."""
    try:
        op, kwarg_only, names = _operator(node.schema())
    except (RuntimeError, AttributeError):
        raise CodesignError(f"whole-model emulation cannot run the TorchScript operation {node.kind()}") from None
    positional = [a for a, kw in zip(args, kwarg_only) if not kw]
    keywords = {n: a for a, kw, n in zip(args, kwarg_only, names) if kw}
    return op(*positional, **keywords)
