"""What pruning achieved, measured on the integer weights the crossbars will hold.

All figures come from integer matrices ``Q[G, K, N]`` (DESIGN 3.1–3.2) through
:mod:`codesign.mapping`, so they agree with ``codesign analyze``.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch

from ..mapping import Geometry, ceil_div, layer_column_sums, lossless_bits
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
    """Lossless ADC bits (DESIGN 3.10) of one matrix ``[K, N]``: ``[row blocks, N·2S]``."""
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


def tile_levels(q: np.ndarray, geometry: Geometry) -> list[int | None]:
    """D.U.B. level of every tile of one matrix ``[K, N]``, row-major (``None`` = empty tile).

    A tile's sparsity is that of its least sparse column, measured against the tile's own rows
    ``r``; level ``k`` holds sparsities in ``[1 − 2^−k, 1 − 2^−(k+1))``, i.e. the densest column has
    at most ``r / 2^k`` and more than ``r / 2^(k+1)`` non-zero weights.
    """
    K, N = q.shape
    R, L = geometry.rows, geometry.logical_cols
    levels: list[int | None] = []
    for r0 in range(0, K, R):
        r = min(R, K - r0)
        nnz = (q[r0:r0 + r] != 0).sum(axis=0)
        for j0 in range(0, N, L):
            densest = int(nnz[j0:j0 + L].max())
            levels.append(None if densest == 0 else (r // densest).bit_length() - 1)
    return levels


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


def adc_energy(bits: np.ndarray, geometry: Geometry, positions: int, mode: str) -> float:
    """ADC conversion energy of one matrix per inference, in units of one 1-bit conversion,
    under the 2^N model (a ``b``-bit conversion costs ``2^b``; a skipped column costs nothing).

    ``bits`` is :func:`column_bits` of the matrix. ``mode``: ``"column"`` — every physical column
    at its own lossless bits; ``"crossbar"`` — every column of a non-empty tile at the tile's
    largest bits (D.U.B.'s shared-ADC assumption); ``"uniform"`` — every column of every tile at
    the full resolution ``ceil(log2(R·(2^v−1)·(2^c−1) + 1))`` (the dense baseline).
    """
    width = geometry.logical_cols * geometry.phys_per_logical
    blocks = ceil_div(bits.shape[1], width)
    padded = np.full((bits.shape[0], blocks * width), -1, dtype=np.int64)
    padded[:, :bits.shape[1]] = bits
    tiles = padded.reshape(bits.shape[0], blocks, width)
    used = tiles >= 0
    if mode == "column":
        per_column = np.where(tiles > 0, np.exp2(tiles), 0.0)
    elif mode == "crossbar":
        peak = tiles.max(axis=2, keepdims=True)
        per_column = np.where(used & (peak > 0), np.exp2(peak), 0.0)
    elif mode == "uniform":
        per_column = np.where(used, 2.0 ** geometry.uniform_bits, 0.0)
    else:
        raise ValueError(f"mode must be 'column', 'crossbar' or 'uniform', not {mode!r}")
    return float(per_column.sum()) * geometry.input_cycles * positions


def level_energy(q: np.ndarray, geometry: Geometry, positions: int) -> float:
    """ADC energy of one matrix under D.U.B.'s own accounting (2^N model, same units as
    :func:`adc_energy`): every physical column of a tile at level ``k`` converts at
    ``uniform bits − k``; empty tiles cost nothing."""
    K, N = q.shape
    width = geometry.phys_per_logical
    levels = iter(tile_levels(q, geometry))
    total = 0.0
    for _ in range(0, K, geometry.rows):
        for j0 in range(0, N, geometry.logical_cols):
            level = next(levels)
            if level is not None:
                columns = min(geometry.logical_cols, N - j0) * width
                total += columns * 2.0 ** (geometry.uniform_bits - level)
    return total * geometry.input_cycles * positions
