"""Crossbar-aware pruning (Liang et al., IEEE Access 2018): crossbar grain and column grain.

No code is public; this follows docs/design.md §8.2 (the formalisation is tagged [I] there). Groups
are whole tiles (``crossbar``) or column segments — one column within one row block — (``column``).
Per layer the ``ceil((1 − sparsity) · groups)`` groups of largest L2 norm are kept:

* **LGD with RPP**: after every SGD step the weights are projected onto that L0 set (the other
  groups set to zero) with probability ``p``, rising linearly from ``p_start`` in the first epoch
  to 1 in the last, so pruned groups can revive while the choice settles;
* the final projection fixes the mask; masked fine-tuning follows.

Column grain comes with **output recombination**: in each row block the surviving columns are packed
into as few crossbars as possible. ``recombination[layer][group][row block]`` is a permutation of the
``N`` output columns: packed position ``i`` holds original column ``perm[i]`` (survivors first, in
order, then the pruned), so crossbar ``k`` of the row block holds ``perm[k·L:(k+1)·L]`` and its partial
sums are routed back to those outputs. Optional **input feature-map reorder** (:mod:`.reorder`)
first sorts each layer's input channels by importance, so channels of similar importance share
row blocks.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import Field
from torch import Tensor

from .core import Target, keep_groups
from .method import Method, MethodParams
from .reorder import reorder_inputs
from .train import Phase, Run, Schedule


class LgdParams(MethodParams):
    """Defaults: the paper's CIFAR fine-tuning length (60 epochs [S]); the rest is ours ([I])."""

    prune_output_layer: bool = Field(False, description="Removing whole tiles or columns of the output layer "
                                                        "removes class scores: it is left dense by default.")

    sparsity: float = Field(0.5, ge=0, lt=1, description="Fraction of each layer's groups pruned.")
    p_start: float = Field(0.5, ge=0, le=1, description="RPP: projection probability in the first epoch.")
    reorder: bool = Field(False, description="Sort each layer's input channels by importance first.")
    lgd: Schedule = Field(
        default_factory=lambda: Schedule(epochs=30, lr=0.01, momentum=0.9, weight_decay=1e-4, milestones=[0.5]),
        description="Projected gradient descent with the relaxed probabilistic projection.")
    finetune: Schedule = Field(
        default_factory=lambda: Schedule(epochs=60, lr=0.01, momentum=0.9, milestones=[0.5, 0.75]),
        description="Masked fine-tuning (the paper: 60 epochs on CIFAR-10).")


def group_norms(target: Target, grain: str) -> Tensor:
    """L2 norm of each tile ``[G, RB, CB]`` or each column segment ``[G, RB, N]``."""
    mat = target.matrix().detach()
    if grain == "crossbar":
        return target.grid.tiles(mat).pow(2).sum((3, 4)).sqrt()
    return target.grid.segments(mat).pow(2).sum(2).sqrt()


def group_mask(target: Target, grain: str, sparsity: float) -> Tensor:
    """Weight-shaped mask keeping the groups of largest norm."""
    grid = target.grid
    keep = keep_groups(group_norms(target, grain), sparsity)
    if grain == "crossbar":
        full = keep[..., None, None].expand(*keep.shape, grid.R, grid.L)
        return target.unmatrix(grid.from_tiles(full))
    full = keep[:, :, None, :].expand(keep.shape[0], keep.shape[1], grid.R, grid.N)
    return target.unmatrix(grid.from_segments(full))


def recombination(target: Target, mask: Tensor) -> list[list[list[int]]]:
    """Per group and row block, the packing permutation of the output columns (module docstring)."""
    live = target.grid.segments(target.matrix(mask)).any(2)           # [G, RB, N]
    order = torch.argsort((~live).int(), dim=-1, stable=True)
    return order.tolist()


class Lgd(Method):
    """Shared by the two grains."""

    Params = LgdParams
    grain: ClassVar[str]

    def __init__(self, run: Run, params: LgdParams) -> None:
        super().__init__(run, params)
        self.orders: dict[str, list[int]] = {}      #: input-channel order applied by the reorder
        self.probability = params.p_start          #: RPP projection probability of the current epoch

    def prepare(self) -> None:
        if self.params.reorder:
            self.orders = reorder_inputs(self.run.model, self.run.targets, self.name)

    def phases(self) -> list[Phase]:
        p = self.params
        return [Phase("lgd", p.lgd, epoch_start=self.start, after_step=self.step, end=self.fix),
                Phase("finetune", p.finetune)]

    def start(self, epoch: int) -> None:
        last = max(self.params.lgd.epochs - 1, 1)
        self.probability = self.params.p_start + (1 - self.params.p_start) * epoch / last

    @torch.no_grad()
    def step(self) -> None:
        if torch.rand(()) < self.probability:
            for t in self.targets:
                t.weight.mul_(group_mask(t, self.grain, self.params.sparsity))

    def fix(self) -> None:
        for t in self.targets:
            self.run.masks[t.name] = group_mask(t, self.grain, self.params.sparsity)

    def state_dict(self) -> dict[str, Any]:
        return {"input_orders": self.orders}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.orders = dict(state["input_orders"])

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"input_orders": self.orders}
        if self.grain == "column":
            out["recombination"] = {t.name: recombination(t, self.run.masks[t.name]) for t in self.targets}
        return out


class CrossbarLgd(Lgd):
    name = "crossbar"
    grain = "crossbar"


class ColumnLgd(Lgd):
    name = "column"
    grain = "column"
