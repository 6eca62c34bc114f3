"""What pruning achieved, measured on the integer weights the crossbars will hold.

All figures come from integer matrices ``Q[G, K, N]`` (docs/design.md §3.1–3.2) through
:mod:`codesign.mapping`, so they agree with ``codesign analyze``.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch

from ..config import HardwareConfig
from ..mapping import Geometry, layer_column_sums, lossless_bits
from .core import Quantizer, Target


def integer_matrices(targets: Iterable[Target], quantizer: Quantizer,
                     masks: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Integer weights of every target as int32 ``[G, K, N]`` (pruned weights are 0)."""
    out = {}
    for t in targets:
        q = quantizer.integers(t.weight.detach() * masks[t.name])
        out[t.name] = t.matrix(q).numpy().astype(np.int32)
    return out


def sparsity(mats: dict[str, np.ndarray]) -> float:
    """Fraction of integer weights that are zero."""
    total = sum(m.size for m in mats.values())
    return sum(int((m == 0).sum()) for m in mats.values()) / total if total else 0.0


def column_bits(q: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Lossless ADC bits (docs/design.md §3.10) of one matrix ``[K, N]``: ``[row blocks, N·2S]``."""
    return lossless_bits(layer_column_sums(np.ascontiguousarray(q), geometry), geometry)


def mean_adc_bits(mats: dict[str, np.ndarray], geometry: Geometry) -> float:
    """Mean lossless ADC bits over every physical column of every tile (a skipped column counts 0)."""
    total, count = 0, 0
    for groups in mats.values():
        for q in groups:
            bits = column_bits(q, geometry)
            total += int(bits.sum(dtype=np.int64))
            count += bits.size
    return total / count if count else 0.0


def slice_sparsity(mats: dict[str, np.ndarray], geometry: Geometry) -> float:
    """Fraction of zero cell digits ``d_s = (|q| >> c·s) & (2^c − 1)`` over all weights and slices."""
    zeros, total = 0, 0
    c = geometry.cell_bits
    for m in mats.values():
        mag = np.abs(m.astype(np.int64))
        for s in range(geometry.slices):
            zeros += int((((mag >> (c * s)) & geometry.digit_max) == 0).sum())
            total += mag.size
    return zeros / total if total else 0.0


def tile_level(block: np.ndarray) -> int | None:
    """D.U.B. level of one tile's weights ``[r, n]`` (``None`` = empty tile).

    A tile's sparsity is that of its least sparse column, measured against the tile's own rows
    ``r``; level ``k`` holds sparsities in ``[1 − 2^−k, 1 − 2^−(k+1))``, i.e. the densest column has
    at most ``r / 2^k`` and more than ``r / 2^(k+1)`` non-zero weights.
    """
    densest = int((block != 0).sum(axis=0).max(initial=0))
    return None if densest == 0 else (len(block) // densest).bit_length() - 1


def tile_levels(q: np.ndarray, geometry: Geometry) -> list[int | None]:
    """:func:`tile_level` of every tile of one matrix ``[K, N]``, row-major."""
    K, N = q.shape
    R, L = geometry.rows, geometry.logical_cols
    return [tile_level(q[r0:r0 + R, j0:j0 + L]) for r0 in range(0, K, R) for j0 in range(0, N, L)]


def level_histogram(mats: dict[str, np.ndarray], geometry: Geometry) -> dict[str, int]:
    """Tiles per D.U.B. level over all matrices: ``{"0": n, "1": n, …, "empty": n}``."""
    counts: dict[int | None, int] = {}
    for groups in mats.values():
        for q in groups:
            for level in tile_levels(q, geometry):
                counts[level] = counts.get(level, 0) + 1
    top = max((k for k in counts if k is not None), default=-1)
    hist = {str(k): counts.get(k, 0) for k in range(top + 1)}
    hist["empty"] = counts.get(None, 0)
    return hist


def level_config(config: HardwareConfig, matrices: dict[str, np.ndarray]) -> HardwareConfig:
    """D.U.B.'s own ADC accounting as a config that :mod:`codesign.cost` prices as its per-column
    design: every physical column of a tile at level ``k`` converts at the layer's uniform bits − k
    (whatever its own weights need), an empty tile at 0. ``matrices`` maps layer keys to ``Q[K, N]``."""
    levels = config.model_copy(deep=True)
    for layer in levels.layers:
        q, uniform = matrices[layer.key], levels.geometry(layer).uniform_bits
        for tile in layer.tiles:
            level = tile_level(q[tile.row_start:tile.row_start + tile.row_count,
                                 tile.col_start:tile.col_start + tile.col_count])
            tile.adc_bits = [0 if level is None else uniform - level] * len(tile.adc_bits)
    return levels
