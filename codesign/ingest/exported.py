"""``torch.export`` programs (``.pt2``, written by ``torch.export.save``).

The exported program's graph gives the architecture: every ``aten.conv2d``/``aten.convolution``/
``aten.linear`` call whose weight is a parameter of the program becomes a layer named by the
parameter's path (``features.0.weight`` → ``features.0``). The graph is run by an
``torch.fx.Interpreter`` that calls the :class:`~codesign.ingest.graph.LayerGraph`'s layers at those
nodes. (Quantized PT2E programs need torchao's operators, which this install does not have: they
are refused when loading.)
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from ..errors import CodesignError
from .archive import first_line
from .graph import LayerGraph, in_batches
from .tensors import ActivationQuant, ConvInfo, Found, weight_array

ATEN = torch.ops.aten
CONVOLUTIONS = {ATEN.conv2d.default, ATEN.convolution.default, ATEN._convolution.default}
UNSUPPORTED = {ATEN.conv1d.default: "Conv1d", ATEN.conv3d.default: "Conv3d",
               ATEN.conv_transpose1d.default: "ConvTranspose1d", ATEN.conv_transpose2d.input: "ConvTranspose2d",
               ATEN.conv_transpose3d.input: "ConvTranspose3d"}


def read_exported(file: Path, shown: str) -> Any:
    """The :class:`codesign.ingest.Source` of a ``.pt2`` file."""
    from . import Source

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.load(str(file))
    except Exception as exc:  # noqa: BLE001 - any failure of the deserializer is a property of the file
        raise CodesignError(f"cannot load the torch.export program {shown} ({first_line(exc)}): re-export it with "
                            f"torch.export.save, or export the model to ONNX") from None
    module = program.module()
    state = dict(module.named_parameters()) | dict(module.named_buffers())
    found: list[Found] = []
    layer_of: dict[str, str] = {}
    unsupported: list[str] = []
    used: set[str] = set()
    for node in module.graph.nodes:
        if node.op != "call_function":
            continue
        if node.target in UNSUPPORTED:
            unsupported.append(f"'{_weight_path(node) or node.name}' ({UNSUPPORTED[node.target]})")
            continue
        if node.target not in CONVOLUTIONS and node.target != ATEN.linear.default:
            continue
        path = _weight_path(node)
        if path is None:
            unsupported.append(f"'{node.name}' (a convolution or linear whose weight is computed: only parameters "
                               f"map onto crossbars)")
            continue
        name = path.removesuffix(".weight") or path
        layer = _layer(node, name, state[path], _bias(node, state), shown)
        if isinstance(layer, str):
            unsupported.append(layer)
            continue
        layer_of[node.name] = name
        used.update({path, f"{name}.bias"})
        if all(f.name != name for f in found):
            found.append(layer)
    ignored = [f"{key} (digital)" for key in state if key not in used]
    placeholders = [n for n in module.graph.nodes if n.op == "placeholder"]
    shape = None
    if len(placeholders) == 1 and isinstance(placeholders[0].meta.get("val"), torch.Tensor):
        shape = tuple(int(n) for n in placeholders[0].meta["val"].shape[1:])
    batch = None
    if len(placeholders) == 1 and isinstance(placeholders[0].meta.get("val"), torch.Tensor):
        size = placeholders[0].meta["val"].shape[0]
        batch = size if isinstance(size, int) else None
    graph = LayerGraph(ExportedRunner(module, layer_of, batch), found)
    return Source("pt2", found, ignored, unsupported, module=graph, input_shape=shape)


def _weight_path(node: Any) -> Optional[str]:
    weight = node.args[1] if len(node.args) > 1 else None
    if getattr(weight, "op", None) == "get_attr":
        return str(weight.target)
    return None


def _bias(node: Any, state: dict[str, Any]) -> Any:
    bias = node.args[2] if len(node.args) > 2 else None
    return state.get(str(bias.target)) if getattr(bias, "op", None) == "get_attr" else None


def _pair(value: Any) -> tuple[int, int]:
    value = list(value) if isinstance(value, (list, tuple)) else [value]
    return int(value[0]), int(value[-1])


def _layer(node: Any, name: str, weight: Any, bias: Any, shown: str) -> Any:
    values, scale = weight_array(weight, f"layer '{name}'")
    bias_values = weight_array(bias, f"the bias of '{name}'")[0] if bias is not None else None
    if node.target == ATEN.linear.default:
        if values.ndim != 2:
            return f"'{name}' ({values.ndim}-D linear weight)"
        return Found(name, "linear", values, None, scale, bias_values)
    args = list(node.args) + [None] * 9
    if node.target == ATEN.conv2d.default:
        stride, padding, dilation, groups = (args[3] or 1), (args[4] or 0), (args[5] or 1), (args[6] or 1)
    else:   # convolution(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups)
        stride, padding, dilation, transposed, groups = args[3], args[4], args[5], args[6], args[8]
        if transposed:
            return f"'{name}' (ConvTranspose2d)"
    if values.ndim != 4:
        return f"'{name}' ({values.ndim - 2}-D convolution: Conv1d/Conv3d)"
    if isinstance(padding, str):
        raise CodesignError(f"layer '{name}' of {shown}: padding='{padding}' is not supported; export with explicit "
                            f"padding")
    conv = ConvInfo(int(values.shape[1]) * int(groups), int(values.shape[0]), (int(values.shape[2]), int(values.shape[3])),
                    _pair(stride), _pair(padding), _pair(dilation), int(groups))
    return Found(name, "conv2d", values, conv, scale, bias_values)


class ExportedRunner:
    """Runs the exported graph; layer nodes call the LayerGraph's layers."""

    runtime = "torch.export"

    def __init__(self, module: Any, layer_of: dict[str, str], batch: Optional[int]) -> None:
        self.module, self.layer_of, self.batch = module, layer_of, batch   # batch: the program's static batch size

    def run(self, root: LayerGraph, x: torch.Tensor) -> torch.Tensor:
        return in_batches(lambda chunk: self._run(root, chunk), x, self.batch)

    def _run(self, root: LayerGraph, x: torch.Tensor) -> torch.Tensor:
        layer_of = self.layer_of

        class Run(torch.fx.Interpreter):
            def run_node(self, node: Any) -> Any:
                if node.name in layer_of:
                    args, _ = self.fetch_args_kwargs_from_env(node)
                    return root.layer(layer_of[node.name], args[0])
                return super().run_node(node)

        out = Run(self.module).run(x)
        return out[0] if isinstance(out, (tuple, list)) else out

    def native(self, x: torch.Tensor) -> Optional[torch.Tensor]:
        return None    # a float program: its native run is the float mode

    def activation_quant(self, images: np.ndarray) -> dict[str, ActivationQuant]:
        return {}
