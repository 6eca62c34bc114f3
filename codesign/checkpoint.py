"""The codesign checkpoint: a model file that carries what a state_dict lacks.

A plain ``dict`` saved with ``torch.save`` and loadable with ``torch.load(weights_only=True)``
(only tensors, strings, numbers, booleans, lists and dicts):

``format``        ``"codesign-checkpoint"``
``version``       ``1``
``arch``          ``{"name": <zoo name>, "kwargs": {...}}`` — the architecture (``codesign.zoo``)
``state_dict``    float weights of that architecture (pruned weights already zero)
``weight_bits``   weight width the scales refer to
``input_bits``    activation width
``per_channel``   whether ``scales`` are per output channel
``scales``        ``{layer name: tensor}``, 0-d (per layer) or 1-D of ``out_channels``:
                  integer weights are ``q = round(w / scale)``, exactly, with ``|q| ≤ 2^(wb−1) − 1``
``masks``         ``{layer name: bool tensor shaped like the weight}``: ``False`` = pruned
``meta``          free-form: pruning method, hyperparameters, accuracy before and after, dataset
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

FORMAT = "codesign-checkpoint"
VERSION = 1


def is_checkpoint(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def make_checkpoint(arch: str, arch_kwargs: dict[str, Any], state_dict: dict[str, Any], *,
                    weight_bits: int, input_bits: int, per_channel: bool = False,
                    scales: dict[str, Any] | None = None, masks: dict[str, Any] | None = None,
                    meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Assemble a checkpoint dict (tensors are detached and moved to the CPU)."""
    def cpu(tensors: dict[str, Any] | None) -> dict[str, Any]:
        return {k: v.detach().cpu().clone() for k, v in (tensors or {}).items()}

    return {
        "format": FORMAT, "version": VERSION,
        "arch": {"name": arch, "kwargs": dict(arch_kwargs)},
        "state_dict": cpu(state_dict),
        "weight_bits": int(weight_bits), "input_bits": int(input_bits), "per_channel": bool(per_channel),
        "scales": cpu(scales), "masks": cpu(masks),
        "meta": dict(meta or {}),
    }


def save_checkpoint(checkpoint: dict[str, Any], path: str | Path) -> None:
    """Write atomically: a failure never leaves a half-written file at ``path``."""
    import torch

    from .files import write_file

    write_file(path, lambda file: torch.save(checkpoint, file), force=True)
