"""D.U.B.: Discrete, Unstructured, Balanced sparsity (Ibrayev et al., arXiv 2403.13082).

Follows the released code (TimurIbrayev/DUB_Sparsity_for_XBars, ``c1_Hoyer_and_variance_*``):

1. **Regularized training**: ``loss = CE + λ_var · Σ_layers Σ_tiles Var_j H(w_j)`` with the
   Hoyer-square ``H(w) = (Σ|w|)² / (Σw² + 10⁻⁶)`` of every column segment and the unbiased variance
   over the ``L`` columns of each tile (an edge tile's missing columns count as zero columns, as in
   the code's zero padding). The gradient gate passes only positive ``∂loss/∂H``: only columns
   denser than their tile's mean are pushed sparser. SGD weight decay ``λ_l2``.
2. **Tile pruning**: a tile's sparsity ``s`` is that of its least sparse column counting
   ``|w| ≤ tolerance`` as zero, against the tile's own rows ``r``. With ``s`` in level
   ``k = [1 − 2^−k, 1 − 2^−(k+1))`` the tile is *forced* to level ``k + 1`` if ``s`` is past the
   middle of the level, else *loosened* to ``k``; every column then keeps its ``floor(r / 2^k)``
   largest weights. A tile whose least sparse column keeps at most one weight is emptied.
3. **Masked fine-tuning** without the regularizer.

Deviations (README): every Conv2d *and* Linear layer is regularized (the paper: convolutions only);
quantization-aware (STE) in both phases; no best-epoch selection on the test split; per-column
keep counts are ``floor(r / 2^k)`` (the code's ``np.percentile`` gives the same for power-of-two ``r``).
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor

from .core import Target, keep_top
from .method import Method, MethodParams
from .train import Phase, Schedule

EPS = 1e-6


class DubParams(MethodParams):
    """Defaults: the released CIFAR-10 / VGG11 runs (λ_l2 = λ_var = 10⁻³, tolerance 10⁻³)."""

    regularize: Schedule = Field(
        default_factory=lambda: Schedule(epochs=160, lr=0.01, momentum=0.9, weight_decay=1e-3,
                                         milestones=[50 / 160, 100 / 160, 150 / 160]),
        description="Regularized training: 160 epochs, SGD lr 0.01 momentum 0.9, ×0.1 at epochs 50/100/150.")
    finetune: Schedule = Field(
        default_factory=lambda: Schedule(epochs=200, lr=0.01, momentum=0.0, milestones=[0.25, 0.5, 0.75]),
        description="Masked fine-tuning: 200 epochs, SGD lr 0.01 without momentum, ×0.1 at 50/100/150.")
    lambda_var: float = Field(1e-3, ge=0, description="λ_var: weight of the tile variance of Hoyer-squares.")
    tolerance: float = Field(1e-3, ge=0, description="|w| at or below this counts as zero when levels are chosen.")
    gate: bool = Field(True, description="Gradient gate: only columns denser than their tile's mean are pushed.")


class _Gate(torch.autograd.Function):
    """Identity forward; backward passes only positive gradients."""

    @staticmethod
    def forward(ctx: object, x: Tensor) -> Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: object, grad: Tensor) -> Tensor:
        return grad.clamp(min=0)


def hoyer_variance(target: Target, gate: bool) -> Tensor:
    """Σ over the layer's tiles of the variance of its columns' Hoyer-squares."""
    seg = target.grid.segments(target.matrix())                     # [G, RB, R, N]
    hoyer = seg.abs().sum(2) ** 2 / (seg.pow(2).sum(2) + EPS)       # [G, RB, N]
    if gate:
        hoyer = _Gate.apply(hoyer)
    grid = target.grid
    if grid.L < 2:                                                    # one column per tile: no variance
        return hoyer.new_zeros(())
    padded = torch.nn.functional.pad(hoyer, (0, grid.col_blocks * grid.L - grid.N))
    return padded.reshape(*hoyer.shape[:2], grid.col_blocks, grid.L).var(dim=-1).sum()


def dub_mask(target: Target, tolerance: float) -> Tensor:
    """D.U.B.'s tile pruning (step 2 of the module docstring): the mask shaped like the weight."""
    grid = target.grid
    magnitude = grid.tiles(target.matrix().detach().abs())            # [G, RB, CB, R, L]
    valid = grid.valid()
    densest = ((magnitude > tolerance) & valid).sum(3).amax(-1)       # [G, RB, CB]: least sparse column
    r = grid.block_rows().reshape(1, -1, 1).expand_as(densest)        # the tile's own rows
    level = torch.floor(torch.log2((r // densest.clamp(min=1)).double())).long()  # r/2^(k+1) < densest ≤ r/2^k
    level += (4 * densest * (1 << level) <= 3 * r).long()             # forced when past the level's middle
    keep = (r >> level).clamp(min=1)
    empty = densest <= 1
    ranked = keep_top(torch.where(valid, magnitude, -1.0), keep[..., None, None], dim=3)
    mask = ranked & valid & (magnitude > 0) & ~empty[..., None, None]
    return target.unmatrix(grid.from_tiles(mask))


class Dub(Method):
    name = "dub"
    Params = DubParams

    def phases(self) -> list[Phase]:
        p = self.params
        return [Phase("regularize", p.regularize, regularizer=self.regularizer, end=self.prune),
                Phase("finetune", p.finetune)]

    def regularizer(self) -> Tensor:
        return self.params.lambda_var * sum(hoyer_variance(t, self.params.gate) for t in self.targets)

    def prune(self) -> None:
        for t in self.targets:
            self.run.masks[t.name] = dub_mask(t, self.params.tolerance)
