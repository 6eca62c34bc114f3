"""TinyADC: a budget of non-zero weights per crossbar column (Yuan et al., DATE 2021).

No code is public; this follows docs/design.md §8.3 (tagged [I] there): every column segment (one
column within one row block: what one ADC sums) may hold at most ``budget = floor(R / 2^level)``
non-zero weights, so its worst-case sum and ADC resolution drop by ``level`` bits. Training is ADMM
(the group's ADMM pruning line, arXiv 1804.03294):

* W-step: SGD on ``CE + ρ/2 · Σ‖W − Z + U‖²`` for one epoch;
* Z-step: ``Z = Proj(W + U)``, the Euclidean projection onto the constraint set — keep the
  ``budget`` largest magnitudes of every column segment;
* U-step: ``U ← U + W − Z``; then ``ρ ← ρ · rho_growth``;

then the hard projection of ``W`` fixes the mask and masked retraining follows.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from torch import Tensor

from .core import Target, keep_top
from .method import Method, MethodParams
from .train import Phase, Run, Schedule


class TinyAdcParams(MethodParams):
    """Defaults are ours ([I]): the paper's values were not retrievable."""

    level: int = Field(2, ge=1, description="ADC bits saved: each column segment keeps floor(R / 2^level) weights.")
    admm: Schedule = Field(
        default_factory=lambda: Schedule(epochs=30, lr=0.01, momentum=0.9, weight_decay=1e-4, milestones=[0.5]),
        description="ADMM phase: one W-step per epoch, then Z- and U-updates.")
    rho: float = Field(1e-3, gt=0, description="Initial ADMM penalty ρ.")
    rho_growth: float = Field(1.3, ge=1, description="ρ is multiplied by this after every epoch.")
    finetune: Schedule = Field(
        default_factory=lambda: Schedule(epochs=30, lr=0.01, momentum=0.9, milestones=[0.5]),
        description="Masked retraining after the hard projection.")


def budget_mask(target: Target, level: int, weight: Tensor | None = None) -> Tensor:
    """Mask keeping the ``floor(R / 2^level)`` largest magnitudes of every column segment."""
    grid = target.grid
    seg = grid.segments(target.matrix(weight).detach().abs(), fill=-1.0)    # [G, RB, R, N]
    keep = keep_top(seg, max(1, grid.R >> level), dim=2) & (seg > 0)
    return target.unmatrix(grid.from_segments(keep))


class TinyAdc(Method):
    name = "tinyadc"
    Params = TinyAdcParams

    def __init__(self, run: Run, params: TinyAdcParams) -> None:
        super().__init__(run, params)
        self.z: dict[str, Tensor] = {}
        self.u: dict[str, Tensor] = {}
        self.rho = self.params.rho

    def phases(self) -> list[Phase]:
        p = self.params
        return [Phase("admm", p.admm, regularizer=self.penalty, epoch_start=self.start, epoch_end=self.update,
                      end=self.project),
                Phase("finetune", p.finetune)]

    def start(self, epoch: int) -> None:
        if not self.z:
            for t in self.targets:
                w = t.weight.detach()
                self.z[t.name] = w * budget_mask(t, self.params.level)
                self.u[t.name] = torch.zeros_like(w)

    def penalty(self) -> Tensor:
        return self.rho / 2 * sum(((t.weight - self.z[t.name] + self.u[t.name]) ** 2).sum() for t in self.targets)

    def update(self, epoch: int) -> None:
        for t in self.targets:
            w = t.weight.detach()
            v = w + self.u[t.name]
            self.z[t.name] = v * budget_mask(t, self.params.level, v)
            self.u[t.name] = v - self.z[t.name]
        self.rho *= self.params.rho_growth

    def project(self) -> None:
        for t in self.targets:
            self.run.masks[t.name] = budget_mask(t, self.params.level)

    def state_dict(self) -> dict[str, Any]:
        return {"z": self.z, "u": self.u, "rho": self.rho}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.z, self.u, self.rho = dict(state["z"]), dict(state["u"]), float(state["rho"])
