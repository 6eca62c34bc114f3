"""CRIMP: crossbar-aligned kernel-group and crossbar pruning (Huai et al., ACM TECS 2023).

No code is public; this follows docs/design.md §8.4 (tagged [I] there):

* a **kernel group** is the ``kh·kw`` rows of one input channel across the columns of one tile
  (the part of those rows inside one row block when they straddle two): pruning it drops rows of a
  crossbar without moving any column, so no alignment hardware is needed; **crossbar pruning**
  removes whole tiles;
* **zerorize–recover**: at the start of every epoch of the first phase the lowest-norm tiles and
  then the lowest-norm kernel groups of the remaining tiles are set to zero, but stay trainable and
  may recover before the next ranking; the ranking after the last epoch fixes the mask, and masked
  fine-tuning follows;
* **power-of-two scales**: every quantization step is ``2^e`` (a shift after shift-and-add);
* optional **write variation**: training multiplies every weight by ``e^θ``, ``θ ~ N(0, σ²)``,
  fresh at every step (the paper's self-compensation mechanism is not public and not reproduced).
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor

from .core import Target, keep_groups
from .method import Method, MethodParams
from .train import Phase, Run, Schedule


class CrimpParams(MethodParams):
    """Defaults are ours ([I]): the paper's values were not retrievable."""

    prune_output_layer: bool = Field(False, description="Removing whole tiles or columns of the output layer "
                                                        "removes class scores: it is left dense by default.")

    crossbar_sparsity: float = Field(0.25, ge=0, lt=1, description="Fraction of each layer's tiles pruned.")
    kernel_sparsity: float = Field(0.5, ge=0, lt=1,
                                   description="Fraction of the kernel groups of the remaining tiles pruned.")
    variation: float = Field(0.0, ge=0, le=1, description="σ of the log-normal write variation injected in training.")
    zerorize: Schedule = Field(
        default_factory=lambda: Schedule(epochs=30, lr=0.01, momentum=0.9, weight_decay=1e-4, milestones=[0.5]),
        description="Zerorize–recover phase.")
    finetune: Schedule = Field(
        default_factory=lambda: Schedule(epochs=30, lr=0.01, momentum=0.9, milestones=[0.5]),
        description="Masked fine-tuning.")


def kernel_groups(target: Target) -> tuple[Tensor, Tensor]:
    """(kernel group of every matrix row ``[K]``, row block of every kernel group), groups numbered
    in row order: a group is one input channel's rows within one row block."""
    rows = torch.arange(target.grid.K)
    block = rows // target.grid.R
    key = block * target.grid.K + rows // target.kernel
    _, ids = torch.unique_consecutive(key, return_inverse=True)
    group_block = torch.zeros(int(ids.max()) + 1, dtype=torch.long).index_copy_(0, ids, block)
    return ids, group_block


def crimp_mask(target: Target, crossbar_sparsity: float, kernel_sparsity: float) -> Tensor:
    """Mask keeping the strongest tiles, then the strongest kernel groups inside them."""
    grid = target.grid
    squares = target.matrix().detach().pow(2)                                         # [G, K, N]
    tiles = keep_groups(grid.tiles(squares).sum((3, 4)), crossbar_sparsity)            # [G, RB, CB]
    ids, group_block = kernel_groups(target)
    per_row = torch.nn.functional.pad(squares, (0, grid.col_blocks * grid.L - grid.N))
    per_row = per_row.reshape(*squares.shape[:2], grid.col_blocks, grid.L).sum(3)     # [G, K, CB]
    group = torch.zeros(squares.shape[0], len(group_block), grid.col_blocks).index_add_(1, ids, per_row)
    candidate = tiles[:, group_block]                                                  # [G, groups, CB]
    keep = torch.zeros_like(candidate)
    keep[candidate] = keep_groups(group[candidate], kernel_sparsity)
    col_block = torch.arange(grid.N) // grid.L
    return target.unmatrix(keep[:, ids][:, :, col_block])


class Crimp(Method):
    name = "crimp"
    Params = CrimpParams
    pow2_scales = True

    def __init__(self, run: Run, params: CrimpParams) -> None:
        super().__init__(run, params)
        run.variation = params.variation

    def phases(self) -> list[Phase]:
        p = self.params
        return [Phase("zerorize", p.zerorize, epoch_start=self.zerorize, end=self.fix),
                Phase("finetune", p.finetune)]

    @torch.no_grad()
    def zerorize(self, epoch: int) -> None:
        for t in self.targets:
            t.weight.mul_(self.mask(t))

    def fix(self) -> None:
        for t in self.targets:
            self.run.masks[t.name] = self.mask(t)

    def mask(self, target: Target) -> Tensor:
        return crimp_mask(target, self.params.crossbar_sparsity, self.params.kernel_sparsity)
