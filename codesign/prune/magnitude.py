"""Layer-wise unstructured magnitude pruning: the baseline every seed paper compares against.

Every layer loses the same fraction of its weights, the smallest magnitudes first, once; masked,
quantization-aware fine-tuning follows (D.U.B.'s baseline adds a per-layer sensitivity sweep to
choose the fractions; here one fraction serves all layers).
"""

from __future__ import annotations

from pydantic import Field

from .core import keep_groups
from .method import Method, MethodParams
from .train import Phase, Schedule


class MagnitudeParams(MethodParams):
    """Defaults are ours ([I])."""

    sparsity: float = Field(0.75, ge=0, lt=1, description="Fraction of every layer's weights pruned.")
    finetune: Schedule = Field(
        default_factory=lambda: Schedule(epochs=60, lr=0.01, momentum=0.9, milestones=[0.5, 0.75]),
        description="Masked fine-tuning.")


class Magnitude(Method):
    name = "magnitude"
    Params = MagnitudeParams

    def prepare(self) -> None:
        for t in self.targets:
            self.run.masks[t.name] = keep_groups(t.weight.detach().abs(), self.params.sparsity)
        self.run.apply_masks()

    def phases(self) -> list[Phase]:
        return [Phase("finetune", self.params.finetune)]
