"""Where PyTorch runs: ``--device cpu|cuda|auto`` resolved to a :class:`torch.device`.

CUDA runs keep float32 exact (TF32 matmuls and convolutions off) so training and evaluation
compute the same arithmetic as on the CPU, and set the cuBLAS workspace that PyTorch's
deterministic algorithms need on CUDA.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Optional

import torch

from .errors import CodesignError

if TYPE_CHECKING:
    from .ingest import ModelSpec
    from .prune.train import Data

DEVICES = ("cpu", "cuda", "auto")


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` (a :class:`CodesignError` when no GPU is visible) or ``auto`` (cuda when available)."""
    if name not in DEVICES:
        raise CodesignError(f"--device {name!r} is not one of {', '.join(DEVICES)}")
    available = torch.cuda.is_available()
    if name == "cuda" and not available:
        raise CodesignError("--device cuda: PyTorch sees no CUDA GPU (torch.cuda.is_available() is False); "
                            "install a CUDA build of PyTorch on a machine with a GPU, or use --device cpu")
    device = torch.device("cuda" if name == "cuda" or (name == "auto" and available) else "cpu")
    if device.type == "cuda":
        exact_float32()
    return device


def exact_float32() -> None:
    """Full float32 precision on CUDA (no TF32) and the cuBLAS workspace deterministic mode requires."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def data_to(data: "Data", device: torch.device) -> "Data":
    """``data`` with every split's tensors on ``device`` (the same object when already there)."""
    if data.x_train.device == device:
        return data
    moved = {f.name: getattr(data, f.name).to(device) for f in dataclasses.fields(data)
             if isinstance(getattr(data, f.name), torch.Tensor)}
    return dataclasses.replace(data, **moved)


def model_to(model: "ModelSpec", device: torch.device) -> Optional[str]:
    """Move the model's architecture to ``device`` for emulation and calibration; a note when it stays
    on the CPU (a graph read from ONNX, QONNX, torch.export or torch.ao runs in a CPU-only interpreter,
    TorchScript is moved as a whole). The crossbar arithmetic itself is exact int64 NumPy on the CPU."""
    from .ingest.graph import LayerGraph

    if device.type == "cpu":
        return None
    module = model.graph_module()
    if not isinstance(module, torch.nn.Module):
        return None
    if isinstance(module, LayerGraph):
        return f"{model.info.path} is a {model.info.format.replace('_', ' ')} graph: it runs on the CPU"
    module.to(device)
    return None
