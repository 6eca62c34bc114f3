"""What every pruning method provides: hyperparameters (pydantic), phases, state for resume."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from ..errors import CodesignError
from .core import Target
from .train import Phase, Run


class MethodParams(BaseModel):
    """Hyperparameters shared by every method (each method adds its own)."""

    model_config = ConfigDict(extra="forbid")

    exclude: list[str] = Field(default_factory=list,
                               description="Layers left unpruned (still quantized), e.g. ['features.0'].")
    prune_output_layer: bool = Field(True, description="Prune the model's last Conv2d/Linear (its columns are "
                                                       "the class scores) too.")


class Method:
    """Base class: subclasses set the class variables and implement :meth:`phases`.

    ``prepare`` runs once before training on a fresh run (not on resume), so anything it changes
    must live in the model, the masks or :meth:`state_dict`.
    """

    name: ClassVar[str]
    Params: ClassVar[type[MethodParams]] = MethodParams
    pow2_scales: ClassVar[bool] = False    #: power-of-two quantization steps (a shift in hardware)

    def __init__(self, run: Run, params: MethodParams) -> None:
        self.run = run
        self.params = params
        names = [t.name for t in run.targets]
        unknown = [n for n in params.exclude if n not in names]
        if unknown:
            raise CodesignError(f"exclude: no crossbar layer '{unknown[0]}'; layers are: {', '.join(names)}")
        self.targets: list[Target] = [t for t in run.targets if t.name not in params.exclude]
        if not params.prune_output_layer:
            self.targets = [t for t in self.targets if t is not run.targets[-1]]

    def prepare(self) -> None:
        """Work before the first phase (a fresh run only)."""

    def phases(self) -> list[Phase]:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """The method's own tensors and values that a resumed run needs."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`."""

    def summary(self) -> dict[str, Any]:
        """Extra facts for the checkpoint's ``meta`` (lists, numbers and strings only)."""
        return {}
