"""Crossbar mapping: docs/design.md §3.1 and §3.3–3.5.

A layer's integer weight matrix ``Q[K, N]`` (rows = wordlines = inputs, columns = outputs) is
split into positive and negative parts (differential encoding), bit-sliced into ``S`` digits of
``c`` bits each, and tiled into crossbars of ``R`` rows by ``C`` physical columns. Within a tile,
logical column ``j`` (local index), slice ``s`` and polarity ``pol`` sit on physical column
``p = (j·S + s)·2 + pol``. Across a whole layer the same formula with the *global* logical column
index gives a layer-wide physical index, so the physical columns of the tile whose logical
columns start at ``j0`` are the contiguous range ``[j0·2S, (j0 + nc)·2S)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class Geometry:
    """Crossbar geometry and number formats of one layer.

    Parameters
    ----------
    rows, cols:
        Crossbar size ``R`` (wordlines) × ``C`` (physical bitlines).
    cell_bits:
        Bits per cell ``c`` (1–4).
    dac_bits:
        Input bits applied per cycle ``v``.
    weight_bits:
        Two's-complement weight width ``wb``; magnitudes are at most ``2^(wb−1) − 1``.
    input_bits:
        Unsigned activation width ``a``.
    adcs:
        SAR ADCs per crossbar (columns are shared among them).
    """

    rows: int
    cols: int
    cell_bits: int
    dac_bits: int
    weight_bits: int
    input_bits: int
    adcs: int = 1

    def __post_init__(self) -> None:
        for name in ("rows", "cols", "cell_bits", "dac_bits", "weight_bits", "input_bits", "adcs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)}")
        if self.weight_bits < 2:
            raise ValueError(f"weight_bits must be at least 2, not {self.weight_bits}")
        if self.cols < 2 * self.slices:
            raise ValueError(
                f"cols={self.cols} cannot hold one weight: {self.weight_bits}-bit weights on "
                f"{self.cell_bits}-bit cells need 2·S = {2 * self.slices} physical columns")
        if self.dac_bits > self.input_bits:
            raise ValueError(f"dac_bits={self.dac_bits} exceeds input_bits={self.input_bits}")

    @property
    def slices(self) -> int:
        """``S = ceil((wb − 1) / c)`` digit slices per weight magnitude."""
        return ceil_div(self.weight_bits - 1, self.cell_bits)

    @property
    def logical_cols(self) -> int:
        """``L = floor(C / 2S)`` logical (output) columns per crossbar."""
        return self.cols // (2 * self.slices)

    @property
    def phys_per_logical(self) -> int:
        """``2S`` physical columns per logical column."""
        return 2 * self.slices

    @property
    def input_cycles(self) -> int:
        """``T = ceil(a / v)`` bit-serial input cycles per input vector."""
        return ceil_div(self.input_bits, self.dac_bits)

    @property
    def digit_max(self) -> int:
        """Largest cell level ``2^c − 1``."""
        return (1 << self.cell_bits) - 1

    @property
    def input_digit_max(self) -> int:
        """Largest per-cycle input value ``2^v − 1``."""
        return (1 << self.dac_bits) - 1

    @property
    def uniform_bits(self) -> int:
        """Full-resolution ADC bits of a dense column: ``ceil(log2(R·(2^v−1)·(2^c−1) + 1))``."""
        return (self.rows * self.input_digit_max * self.digit_max).bit_length()

    def physical_index(self, j: int, s: int, pol: int) -> int:
        """Physical column of logical column ``j``, slice ``s``, polarity ``pol`` (3.5)."""
        return (j * self.slices + s) * 2 + pol


def max_adcs(cols: int) -> int:
    """Most ADCs a crossbar of ``cols`` physical columns may have: one per physical column (the
    converted columns are dealt to the ADCs, docs/periphery.md). The one rule for ``--adcs`` and the
    configs; the CLI, analysis, configs and the periphery all ask here."""
    return cols


def adcs_problem(geometry: Geometry) -> str | None:
    """Why ``geometry`` has too many ADCs (:func:`max_adcs`), or None."""
    if geometry.adcs <= max_adcs(geometry.cols):
        return None
    return (f"{geometry.adcs} ADCs exceed the {geometry.cols} physical columns of the crossbar: at most one ADC "
            f"per column")


@dataclass(frozen=True)
class TileRange:
    """The part of a layer matrix held by one crossbar: rows ``[r0, r0+nr)``, columns ``[j0, j0+nc)``."""

    row_start: int
    row_count: int
    col_start: int
    col_count: int


def default_tiles(matrix_rows: int, matrix_cols: int, geometry: Geometry) -> list[TileRange]:
    """Row-major tiling into blocks of ``R`` rows and ``L`` logical columns; the last block of
    each dimension may be shorter."""
    R, L = geometry.rows, geometry.logical_cols
    return [TileRange(r0, min(R, matrix_rows - r0), j0, min(L, matrix_cols - j0))
            for r0 in range(0, matrix_rows, R)
            for j0 in range(0, matrix_cols, L)]


def tile_index_grid(matrix_rows: int, matrix_cols: int, geometry: Geometry) -> tuple[int, int]:
    """(row blocks, column blocks) of the default tiling."""
    return ceil_div(matrix_rows, geometry.rows), ceil_div(matrix_cols, geometry.logical_cols)


def check_weights(q: np.ndarray, weight_bits: int) -> None:
    """Raise ``ValueError`` unless ``q`` is an integer matrix inside ±(2^(wb−1) − 1)."""
    if q.ndim != 2 or not np.issubdtype(q.dtype, np.integer):
        raise ValueError(f"weights must be a 2-D integer matrix, not {q.dtype} with shape {q.shape}")
    limit = (1 << (weight_bits - 1)) - 1
    if q.size and int(np.abs(q).max()) > limit:
        raise ValueError(f"weights exceed ±{limit}, the symmetric range of {weight_bits} bits")


def tile_digits(q: np.ndarray, geometry: Geometry, tile: TileRange) -> np.ndarray:
    """Cell levels ``d[r, p]`` of one crossbar (3.3–3.5).

    Returns an ``uint8`` array ``[row_count, col_count·2S]``: row ``r`` is matrix row
    ``row_start + r``; column ``p`` is the tile-local physical column.
    """
    block = q[tile.row_start:tile.row_start + tile.row_count,
              tile.col_start:tile.col_start + tile.col_count].astype(np.int32)
    return _physical_digits(block, geometry)


def _physical_digits(block: np.ndarray, geometry: Geometry) -> np.ndarray:
    S, c = geometry.slices, geometry.cell_bits
    mag = np.abs(block)
    negative = block < 0
    out = np.empty(block.shape + (S, 2), dtype=np.uint8)
    for s in range(S):
        digit = ((mag >> (c * s)) & geometry.digit_max).astype(np.uint8)
        out[..., s, 0] = np.where(negative, 0, digit)
        out[..., s, 1] = np.where(negative, digit, 0)
    return out.reshape(block.shape[0], -1)


def layer_column_sums(q: np.ndarray, geometry: Geometry) -> np.ndarray:
    """``Σ_rows d[r, p]`` for every row block of the default tiling and every physical column.

    Returns an ``int32`` array ``[row_blocks, N·2S]`` indexed by the layer-wide physical index
    ``(j·S + s)·2 + pol``. The sums do not depend on the column tiling, only on ``R``.
    """
    return _block_sums(q, geometry, geometry.rows)


def _block_sums(q: np.ndarray, geometry: Geometry, rows: int) -> np.ndarray:
    K, N = q.shape
    S, c = geometry.slices, geometry.cell_bits
    blocks = ceil_div(K, rows)
    mag = np.abs(q).astype(np.uint16)
    positive = q > 0
    if blocks * rows != K:
        pad = blocks * rows - K
        mag = np.concatenate([mag, np.zeros((pad, N), np.uint16)])
        positive = np.concatenate([positive, np.zeros((pad, N), bool)])
    out = np.empty((blocks, N, S, 2), dtype=np.int32)
    mask = np.uint16(geometry.digit_max)
    for s in range(S):
        digit = (mag >> np.uint16(c * s)) & mask if s else mag & mask
        total = digit.reshape(blocks, rows, N).sum(axis=1, dtype=np.int32)
        plus = np.where(positive, digit, 0).reshape(blocks, rows, N).sum(axis=1, dtype=np.int32)
        out[:, :, s, 0] = plus
        out[:, :, s, 1] = total - plus
    return out.reshape(blocks, N * S * 2)


def tile_column_sums(q: np.ndarray, geometry: Geometry, tile: TileRange) -> np.ndarray:
    """``Σ_rows d[r, p]`` of one tile, any alignment: ``int64`` array of ``col_count·2S`` entries."""
    return tile_digits(q, geometry, tile).sum(axis=0, dtype=np.int64)


def lossless_bits(column_sums: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Lossless ADC bits (3.10): ``bit_length((2^v − 1)·Σ d)``; 0 for an all-zero column."""
    peak = np.asarray(column_sums, dtype=np.int64) * geometry.input_digit_max
    return np.frexp(peak.astype(np.float64))[1].astype(np.uint8)


def iter_tile_columns(tiles: list[TileRange], geometry: Geometry) -> Iterator[tuple[TileRange, slice]]:
    """For each tile, the slice of layer-wide physical columns it holds."""
    width = geometry.phys_per_logical
    for tile in tiles:
        yield tile, slice(tile.col_start * width, (tile.col_start + tile.col_count) * width)
