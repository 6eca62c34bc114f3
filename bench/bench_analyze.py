"""Issue 2: `codesign analyze` on ResNet-18- and ResNet-50-shaped models.

Random weights, 50 % magnitude-pruned, 8-bit weights, 128×128 crossbars, 2-bit cells, 1-bit DAC.
Targets: ≤ 3 s (ResNet-18) and ≤ 8 s (ResNet-50) wall for the command including model loading,
peak memory ≤ 2 GB, and the analysis itself ≤ 3× a bare numpy floor that sums the slice digits of
every physical column once.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from . import best_of, codesign_command, run_command, table
from .models import pruned_resnet

TARGETS = {18: 3.0, 50: 8.0}


def numpy_floor(matrices: list[np.ndarray], rows: int = 128, slices: int = 4, cell_bits: int = 2) -> None:
    """Sum every physical column's slice digits once per 128-row block: the least any analysis must do."""
    for q in matrices:
        K, N = q.shape
        pad = -K % rows
        magnitude = np.pad(np.abs(q), ((0, pad), (0, 0))).astype(np.uint16).reshape(-1, rows, N)
        positive = np.pad(q > 0, ((0, pad), (0, 0))).reshape(-1, rows, N)
        for s in range(slices):
            digit = (magnitude >> (cell_bits * s)) & 3
            digit.sum(axis=1, dtype=np.int32)
            np.where(positive, digit, 0).sum(axis=1, dtype=np.int32)


def run() -> str:
    from codesign.analysis import analyze
    from codesign.config import CrossbarConfig
    from codesign.ingest import load_model

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for depth in (18, 50):
            path = pruned_resnet(depth, Path(tmp) / f"resnet{depth}.pt")
            run_command(codesign_command() + ["analyze", "--model", str(path)])        # warm the page cache
            wall, peak = min((run_command(codesign_command() + ["analyze", "--model", str(path)]) for _ in range(3)),
                             key=lambda r: r[0])
            model = load_model(path)
            crossbar = CrossbarConfig()
            core = best_of(lambda: analyze(model, crossbar), 3)
            floor = best_of(lambda: numpy_floor([layer.q for layer in model.layers]), 3)
            weights = sum(layer.q.size for layer in model.layers)
            rows.append([f"ResNet-{depth}", f"{weights / 1e6:.1f} M", f"{wall:.2f} s", f"≤ {TARGETS[depth]:.0f} s",
                         f"{peak:.0f} MiB", f"{core:.3f} s", f"{floor:.3f} s", f"{core / floor:.2f}×"])
    return "### `codesign analyze` (issue 2)\n\n" + table(
        ["model", "weights", "CLI wall (incl. load)", "target", "peak RSS", "analysis", "numpy floor",
         "analysis / floor (target ≤ 3×)"], rows)
