"""Crossbar views of a model's weights, quantization with a straight-through estimator, masks.

Every pruning method sees a Conv2d/Linear weight the way :mod:`codesign.mapping` maps it
(docs/design.md §3): per convolution group a matrix ``Q[K, N]`` with rows in PyTorch flatten order
(cin, kh, kw) and one column per output channel; rows split into blocks of ``R`` (the last may be
shorter) and columns into tiles of ``L = floor(C / 2S)`` logical columns. A *column segment* is one
column inside one row block (what one ADC sees); a *tile* is one crossbar.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..errors import CodesignError
from ..mapping import Geometry, ceil_div


@dataclass(frozen=True)
class Grid:
    """Tiling of a ``K × N`` matrix into crossbars of ``R`` rows and ``L`` logical columns.

    Views pad the matrix with zeros to whole tiles; :meth:`valid` marks the real entries.
    """

    K: int
    N: int
    R: int
    L: int

    @property
    def row_blocks(self) -> int:
        return ceil_div(self.K, self.R)

    @property
    def col_blocks(self) -> int:
        return ceil_div(self.N, self.L)

    def block_rows(self) -> Tensor:
        """Rows of each row block (``R`` except the last): int64 ``[RB]``."""
        return torch.tensor([min(self.R, self.K - b * self.R) for b in range(self.row_blocks)])

    def segments(self, mat: Tensor, fill: float = 0.0) -> Tensor:
        """``[G, K, N]`` → column segments ``[G, RB, R, N]`` (padded rows hold ``fill``)."""
        G = mat.shape[0]
        pad = self.row_blocks * self.R - self.K
        mat = nn.functional.pad(mat, (0, 0, 0, pad), value=fill)
        return mat.reshape(G, self.row_blocks, self.R, self.N)

    def from_segments(self, seg: Tensor) -> Tensor:
        return seg.reshape(seg.shape[0], -1, self.N)[:, :self.K]

    def tiles(self, mat: Tensor, fill: float = 0.0) -> Tensor:
        """``[G, K, N]`` → tiles ``[G, RB, CB, R, L]``: tile (rb, cb) holds rows ``rb·R…`` and
        logical columns ``cb·L…`` exactly as :func:`codesign.mapping.default_tiles`."""
        G = mat.shape[0]
        pad_rows = self.row_blocks * self.R - self.K
        pad_cols = self.col_blocks * self.L - self.N
        mat = nn.functional.pad(mat, (0, pad_cols, 0, pad_rows), value=fill)
        return mat.reshape(G, self.row_blocks, self.R, self.col_blocks, self.L).transpose(2, 3)

    def from_tiles(self, tiles: Tensor) -> Tensor:
        G = tiles.shape[0]
        mat = tiles.transpose(2, 3).reshape(G, self.row_blocks * self.R, self.col_blocks * self.L)
        return mat[:, :self.K, :self.N]

    def valid(self) -> Tensor:
        """Bool ``[1, RB, CB, R, L]``: True for entries inside the matrix."""
        return self.tiles(torch.ones(1, self.K, self.N, dtype=torch.bool), fill=False)


@dataclass
class Target:
    """One crossbar-mapped layer of the model being pruned."""

    name: str
    module: nn.Conv2d | nn.Linear
    grid: Grid

    @property
    def weight(self) -> nn.Parameter:
        return self.module.weight

    @property
    def groups(self) -> int:
        return getattr(self.module, "groups", 1)

    @property
    def kernel(self) -> int:
        """Matrix rows per input channel: ``kh·kw`` for a convolution, 1 for a linear layer."""
        return math.prod(self.module.kernel_size) if isinstance(self.module, nn.Conv2d) else 1

    def matrix(self, weight: Tensor | None = None) -> Tensor:
        """The weight (or a tensor shaped like it) as ``[G, K, N]`` matrices (docs/design.md §3.1)."""
        w = self.weight if weight is None else weight
        G = self.groups
        return w.reshape(G, w.shape[0] // G, -1).transpose(1, 2)

    def unmatrix(self, mat: Tensor) -> Tensor:
        """Inverse of :meth:`matrix`: ``[G, K, N]`` → the weight's shape."""
        return mat.transpose(1, 2).reshape(self.weight.shape)


def find_targets(model: nn.Module, geometry: Geometry, method: str) -> list[Target]:
    """Every Conv2d and Linear of ``model`` in module order, with its crossbar grid.

    Any other module holding a weight of two or more dimensions cannot be mapped onto crossbars:
    it is refused with its name, as is a convolution with ``padding='same'``.
    """
    targets = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            if isinstance(module, nn.Conv2d) and isinstance(module.padding, str):
                raise CodesignError(f"layer '{name}' uses padding='{module.padding}', which the crossbar mapping "
                                    f"does not support: use explicit padding")
            K = module.weight[0].numel()                            # Cin/groups · kh · kw, or in_features
            N = module.weight.shape[0] // getattr(module, "groups", 1)
            targets.append(Target(name, module, Grid(K, N, geometry.rows, geometry.logical_cols)))
        elif any(p.dim() >= 2 for p in module.parameters(recurse=False)):
            raise CodesignError(f"method '{method}' cannot prune layer '{name}' ({type(module).__name__}): only "
                                f"Conv2d and Linear map onto crossbars; replace it or prune another model")
    if not targets:
        raise CodesignError("the model has no Conv2d or Linear layer to prune")
    return targets


def keep_top(scores: Tensor, keep: Tensor | int, dim: int) -> Tensor:
    """Bool mask of the ``keep`` largest ``scores`` along ``dim`` (ties: the lower index wins).

    ``keep`` broadcasts against ``scores`` with ``dim`` kept as size 1.
    """
    order = scores.argsort(dim=dim, descending=True, stable=True)
    rank = order.argsort(dim=dim)
    return rank < keep


def keep_groups(scores: Tensor, fraction_pruned: float) -> Tensor:
    """Keep the ``ceil((1 − fraction) · n)`` highest-scoring of the ``n`` entries of ``scores``."""
    flat = scores.flatten()
    keep = math.ceil((1.0 - fraction_pruned) * flat.numel() - 1e-9)
    return keep_top(flat, keep, 0).reshape(scores.shape)


@dataclass(frozen=True)
class Quantizer:
    """Symmetric weight quantization to ``±(2^(bits−1) − 1)`` (docs/design.md §3.2).

    The step is ``max|w| / (2^(bits−1) − 1)`` per layer or per output channel; with ``pow2`` it is
    the smallest power of two ``2^e`` with ``max|w| ≤ 2^e · (2^(bits−1) − 1)`` (a shift in hardware,
    never a clipped weight). An all-zero layer or channel gets step 1.
    """

    bits: int
    per_channel: bool = False
    pow2: bool = False

    @property
    def limit(self) -> int:
        return (1 << (self.bits - 1)) - 1

    def step(self, weight: Tensor) -> Tensor:
        """Quantization step, float64, shaped to broadcast against ``weight`` (0-d per layer)."""
        w = weight.detach().double()
        peak = w.abs().flatten(1).amax(1) if self.per_channel else w.abs().max()
        step = peak / self.limit
        if self.pow2:
            step = torch.exp2(torch.ceil(torch.log2(step)))
            step = torch.where(peak / step > self.limit, step * 2, step)    # guard against log2 rounding
        step = torch.where(peak > 0, step, torch.ones_like(step))
        return step.reshape(-1, *[1] * (w.dim() - 1)) if self.per_channel else step

    def integers(self, weight: Tensor) -> Tensor:
        """Integer weights ``clamp(round(w / step))`` (int64, shaped like ``weight``)."""
        q = torch.round(weight.detach().double() / self.step(weight))
        return q.clamp(-self.limit, self.limit).long()

    def fake(self, weight: Tensor) -> Tensor:
        """Quantize in the forward pass, identity in the backward pass (straight-through)."""
        step = self.step(weight).to(weight.dtype)
        q = torch.clamp(torch.round(weight / step), -self.limit, self.limit) * step
        return weight + (q - weight).detach()

    def snap(self, weight: Tensor) -> tuple[Tensor, Tensor]:
        """(weight on its integer grid, step as the checkpoint stores it: 0-d or ``[Cout]``)."""
        step = self.step(weight)
        snapped = (self.integers(weight).double() * step).to(weight.dtype)
        return snapped, step.reshape(-1) if self.per_channel else step
