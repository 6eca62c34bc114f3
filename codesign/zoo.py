"""Model architectures known by name, so checkpoints carry ``arch`` instead of pickled code.

Each entry builds an ``nn.Module`` from keyword arguments and knows its input shape (C, H, W),
which lets the toolkit count output positions per layer and run whole-model emulation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch import Tensor, nn

from .errors import CodesignError


class DigitsCNN(nn.Module):
    """The bundled model: a small CNN for scikit-learn's 8×8 digits (input 1×8×8, values 0–1).

    Weight matrices (K×N) for width w: features.0 9×w, features.2 9w×2w, features.5 18w×4w,
    classifier.1 16w×64, classifier.3 64×classes. With w = 16 the 144-, 288- and 256-row layers
    span several 64-row crossbars.
    """

    def __init__(self, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(),                # 8×8
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),                                             # 4×4
            nn.Conv2d(2 * width, 4 * width, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),                                             # 2×2
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * width, 64), nn.ReLU(), nn.Linear(64, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


@dataclass(frozen=True)
class Arch:
    build: Callable[..., nn.Module]
    input_shape: tuple[int, int, int]
    description: str


ARCHS: dict[str, Arch] = {
    "digits_cnn": Arch(DigitsCNN, (1, 8, 8), "small CNN for the 8×8 digits (the bundled model)"),
}


def get_arch(name: str) -> Arch:
    try:
        return ARCHS[name]
    except KeyError:
        raise CodesignError(f"unknown architecture '{name}'; known: {', '.join(sorted(ARCHS))}") from None


def build(name: str, kwargs: dict[str, Any] | None = None) -> nn.Module:
    """Instantiate architecture ``name`` with ``kwargs``; a bad argument is a one-line error."""
    arch = get_arch(name)
    try:
        return arch.build(**(kwargs or {}))
    except TypeError as exc:
        raise CodesignError(f"architecture '{name}' rejects its arguments {kwargs}: {exc}") from None
