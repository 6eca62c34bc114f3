"""A model graph as an ``nn.Module`` whose crossbar layers are real ``nn.Conv2d``/``nn.Linear``.

TorchScript, ``torch.export`` programs and ONNX graphs are run by small interpreters
(:mod:`.torchscript`, :mod:`.exported`, :mod:`.onnxgraph`). Each wraps its graph in a
:class:`LayerGraph`: at every Conv2d/Linear node the interpreter calls the submodule registered at
the layer's name (float, dequantized weights), so whole-model emulation
(:func:`codesign.emulate.emulated_module`) swaps those submodules for crossbar emulations exactly
as it does in a plain ``nn.Module``. Quantize/dequantize operations are the identity there: each
crossbar layer quantizes its own input with the model's activation parameters
(:meth:`LayerGraph.activation_quant`).
"""

from __future__ import annotations

from typing import Any, Optional, Protocol

import numpy as np
import torch

from ..errors import CodesignError
from .tensors import ActivationQuant, Found


class Program(Protocol):
    """What an interpreter provides to :class:`LayerGraph`."""

    runtime: str

    def run(self, root: "LayerGraph", x: torch.Tensor) -> torch.Tensor: ...

    def native(self, x: torch.Tensor) -> Optional[torch.Tensor]: ...

    def activation_quant(self, images: np.ndarray) -> dict[str, ActivationQuant]: ...


class _Shared:
    """Holds the program; a deep copy of the module shares it (graphs are read-only)."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __deepcopy__(self, memo: dict) -> "_Shared":
        return self


class LayerGraph(torch.nn.Module):
    """Runs a model graph; its Conv2d/Linear layers are submodules at their layer names."""

    def __init__(self, program: Program, found: list[Found]) -> None:
        super().__init__()
        self._program = _Shared(program)
        #: Round activations to the model's own quantization between layers (QuantizeLinear, requantized
        #: outputs) as the quantized model does; whole-model emulation sets it in its integer modes.
        #: Without it only their range is applied (float activations).
        self.quantize_activations = False
        for layer in found:
            attach(self, layer.name, float_layer(layer))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        try:
            return self._program.value.run(self, x)
        except RuntimeError as exc:     # the graph's own shape checks: the images do not fit the model
            message = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            raise CodesignError(f"the model does not run on images of shape {'×'.join(map(str, x.shape[1:]))}: "
                                f"{message}; use the dataset it was made for") from None

    def native(self, x: torch.Tensor) -> Optional[torch.Tensor]:
        """The model run by its own framework (quantized kernels, onnxruntime), or None."""
        return self._program.value.native(x)

    @property
    def runtime(self) -> str:
        """What :meth:`native` runs the model with."""
        return self._program.value.runtime

    def activation_quant(self, images: np.ndarray) -> dict[str, ActivationQuant]:
        """The model's own quantization of each layer's input (its quantized activations), per layer name."""
        return self._program.value.activation_quant(images)

    def layer(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """Run layer ``name`` (the float layer, or its crossbar emulation) on float ``x``."""
        return self.get_submodule(name)(x)


def fake_quant(x: torch.Tensor, scale: Any, zero_point: Any, qmin: int, qmax: int, rounding: bool = True) -> torch.Tensor:
    """``(clamp(round(x / s) + z, qmin, qmax) − z) · s`` in float: a quantize-dequantize pair. Without
    ``rounding`` only the clipping (float mode: a quantizer's range can stand for a removed ReLU)."""
    scale, zero = torch.as_tensor(scale, dtype=torch.float64), torch.as_tensor(zero_point, dtype=torch.float64)
    q = x.double() / scale
    q = torch.clamp((torch.round(q) if rounding else q) + zero, qmin, qmax)
    return ((q - zero) * scale).to(x.dtype if x.is_floating_point() else torch.float32)


def in_batches(run: Any, x: torch.Tensor, batch: Optional[int]) -> torch.Tensor:
    """``run(x)``, in chunks of ``batch`` images (zero-padded at the end) for a graph exported with a
    fixed batch size; ``batch=None`` runs ``x`` at once."""
    if batch is None or x.shape[0] == batch:
        return run(x)
    outputs = []
    for start in range(0, x.shape[0], batch):
        chunk = x[start:start + batch]
        short = batch - chunk.shape[0]
        if short:
            chunk = torch.cat([chunk, chunk.new_zeros((short, *chunk.shape[1:]))])
        outputs.append(run(chunk)[:batch - short])
    return torch.cat(outputs)


def attach(root: torch.nn.Module, name: str, module: torch.nn.Module) -> None:
    """Register ``module`` at dotted path ``name`` below ``root``, creating containers on the way."""
    parts = name.split(".")
    parent = root
    for part in parts[:-1]:
        child = parent._modules.get(part)
        if child is None:
            _check_free(parent, part, name)
            child = torch.nn.Module()
            parent.add_module(part, child)
        parent = child
    _check_free(parent, parts[-1], name)
    parent.add_module(parts[-1], module)


def _check_free(parent: torch.nn.Module, part: str, name: str) -> None:
    if not part or part in parent._modules or hasattr(parent, part):
        raise CodesignError(f"layer name '{name}' cannot be used as a module path (empty part or a clash with "
                            f"another layer or an nn.Module attribute); rename the layer in the model")


def float_layer(found: Found) -> torch.nn.Module:
    """``nn.Conv2d``/``nn.Linear`` holding the layer's float (dequantized) weight and bias."""
    weight = found.weight if found.scale is None else found.weight * found.scale.reshape(
        (-1,) + (1,) * (found.weight.ndim - 1))
    bias = found.bias is not None
    with torch.device("meta"):
        if found.kind == "conv2d":
            c = found.conv
            layer = torch.nn.Conv2d(c.in_channels, c.out_channels, c.kernel, c.stride, c.padding, c.dilation,
                                    c.groups, bias=bias)
        else:
            layer = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias)
    layer.weight = torch.nn.Parameter(torch.from_numpy(weight.astype(np.float32)), requires_grad=False)
    if bias:
        layer.bias = torch.nn.Parameter(torch.from_numpy(found.bias.astype(np.float32).reshape(-1)),
                                        requires_grad=False)
    return layer.eval()
