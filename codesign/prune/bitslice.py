"""Bit-slice L1 (Zhang et al., arXiv 1909.08496): sparsity of the cell digits, not just the weights.

Follows the released code (zjysteven/bitslice_sparsity, ``finetune_bitslice.py``): magnitude-prune
``|w| < threshold`` once (the masks are kept), then fine-tune with

    ``loss = CE + α · Σ_layers Σ_slices Σ b_s / (number of weights · slices)``

where ``x = round(|w| / step)`` and the slices ``b_s`` are taken from the most significant down,
``b_s = floor((x − Σ_higher b_h·2^(c·h)) / 2^(c·s))`` with the higher slices detached and the
least significant slice the remainder; ``round`` and ``floor`` have straight-through gradients.
Slices here are those of docs/design.md §3.4: ``S = ceil((wb − 1) / c)`` digits of ``c`` bits (the code: four 2-bit
slices of an 8-bit magnitude). Steps are powers of two, as the code's dynamic fixed point.
"""

from __future__ import annotations

from typing import Callable

import torch
from pydantic import Field
from torch import Tensor

from .method import Method, MethodParams
from .train import Phase, Schedule


class BitsliceParams(MethodParams):
    """Defaults: the released code's MNIST settings (CIFAR: 150 epochs, lr 0.05 halved every 30)."""

    alpha: float = Field(0.5, ge=0, description="α: weight of the bit-slice L1 term.")
    threshold: float = Field(0.01, ge=0, description="Weights with |w| below this are pruned before fine-tuning.")
    finetune: Schedule = Field(
        default_factory=lambda: Schedule(epochs=50, lr=0.01, momentum=0.9, milestones=[0.6], gamma=0.5),
        description="Fine-tuning with the regularizer: 50 epochs, SGD lr 0.01 momentum 0.9, halved at epoch 30.")


def _straight_through(x: Tensor, op: Callable[[Tensor], Tensor]) -> Tensor:
    """``op(x)`` in the forward pass, the identity in the backward pass."""
    return x + (op(x) - x).detach()


def slice_l1(weight: Tensor, step: Tensor, slices: int, cell_bits: int) -> Tensor:
    """``Σ_s Σ b_s`` of one weight tensor (differentiable through the straight-through estimators)."""
    x = _straight_through(weight.abs() / step, torch.round)
    total = x.new_zeros(())
    for s in reversed(range(1, slices)):
        digit = _straight_through(x / (1 << (cell_bits * s)), torch.floor)
        total = total + digit.sum()
        x = x - digit.detach() * (1 << (cell_bits * s))
    return total + x.sum()


class Bitslice(Method):
    name = "bitslice"
    Params = BitsliceParams
    pow2_scales = True

    def prepare(self) -> None:
        for t in self.targets:
            self.run.masks[t.name] = t.weight.detach().abs() >= self.params.threshold
        self.run.apply_masks()

    def phases(self) -> list[Phase]:
        return [Phase("finetune", self.params.finetune, regularizer=self.regularizer)]

    def regularizer(self) -> Tensor:
        geo, quantizer = self.run.geometry, self.run.quantizer
        digits = geo.slices * sum(t.weight.numel() for t in self.targets)
        total = 0
        for t in self.targets:
            w = t.weight * self.run.masks[t.name]
            total = total + slice_l1(w, quantizer.step(w).to(w.dtype), geo.slices, geo.cell_bits)
        return self.params.alpha * total / digits
