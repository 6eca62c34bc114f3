"""Bit-exact integer model of crossbar, ADC and shift-add (DESIGN.md 3.6–3.9).

For a tile with cell levels ``d[r, p]`` and an unsigned input vector ``x``:

* input cycle ``t`` applies ``x_t = (x >> v·t) & (2^v − 1)`` on the wordlines (3.6);
* physical column ``p`` carries ``y[t, p] = Σ_r x_t[r]·d[r, p]`` (3.7);
* its ADC returns ``code = min(y >> k, 2^b − 1)``, worth ``code << k``; ``b = 0`` is 0 (3.8);
* shift-add gives ``out[j] = Σ_t Σ_s 2^(v·t + c·s)·(value[j,s,+] − value[j,s,−])`` (3.9).

Two implementations compute the same integers. :func:`tile_outputs_reference` follows the
definition cycle by cycle and column by column. :func:`layer_outputs` is the fast path: a column
whose ADC can never clip or truncate (``k = 0`` and ``2^b − 1 ≥`` its largest possible ``y``) adds
exactly ``x · d``, so all such columns of a layer collapse into one matrix product; only the other
columns are emulated per cycle. Products run in float64, exact while every partial sum stays below
2^53 (checked).
"""

from __future__ import annotations

import numpy as np

from .config import HardwareConfig, LayerConfig, TileConfig
from .mapping import Geometry, tile_digits

EXACT_FLOAT = 2 ** 53


def check_inputs(x: np.ndarray, geometry: Geometry, rows: int) -> np.ndarray:
    """Return ``x`` as int64 ``[B, rows]``; raise ``ValueError`` if it has the wrong width or range."""
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != rows:
        raise ValueError(f"inputs must have shape [B, {rows}], not {list(x.shape)}")
    if not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"inputs must be integers, not {x.dtype}")
    peak = (1 << geometry.input_bits) - 1
    if x.size and (x.min() < 0 or x.max() > peak):
        raise ValueError(f"inputs must lie in 0..{peak} ({geometry.input_bits}-bit unsigned), "
                         f"found {int(x.min())}..{int(x.max())}")
    return x.astype(np.int64)


def input_cycles(x: np.ndarray, geometry: Geometry) -> np.ndarray:
    """``x_t`` for every cycle: int64 ``[T, B, rows]`` (3.6)."""
    v = geometry.dac_bits
    mask = geometry.input_digit_max
    return np.stack([(x >> (v * t)) & mask for t in range(geometry.input_cycles)])


def adc(y: np.ndarray, bits: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Digital value ``min(y >> k, 2^b − 1) << k`` of each column (3.8); ``b = 0`` gives 0."""
    bits = np.asarray(bits, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    code = np.minimum(y >> shift, (np.int64(1) << bits) - 1)
    return code << shift


def column_weights(geometry: Geometry, col_count: int) -> np.ndarray:
    """Signed significance ``±2^(c·s)`` of each physical column of a tile: int64 ``[col_count·2S]``."""
    S, c = geometry.slices, geometry.cell_bits
    per_logical = np.array([(1 << (c * s)) * (1 - 2 * pol) for s in range(S) for pol in (0, 1)], dtype=np.int64)
    return np.tile(per_logical, col_count)


def column_values(q: np.ndarray, geometry: Geometry, tile: TileConfig, x: np.ndarray) -> np.ndarray:
    """Per-cycle column values ``y[B, T, C]`` of a tile for layer inputs ``x[B, K]`` (3.7).

    All ``C`` physical columns are included; columns beyond ``col_count·2S`` hold no weights and
    read 0. These are the values a crossbar model answers the RTL's comparator from.
    """
    x = check_inputs(x, geometry, q.shape[0])
    digits = tile_digits(q, geometry, tile.range).astype(np.int64)
    cycles = input_cycles(x[:, tile.row_start:tile.row_start + tile.row_count], geometry)
    y = np.zeros((x.shape[0], geometry.input_cycles, geometry.cols), dtype=np.int64)
    y[:, :, :digits.shape[1]] = np.einsum("tbr,rp->btp", cycles, digits)
    return y


def tile_outputs_reference(q: np.ndarray, geometry: Geometry, tile: TileConfig, x: np.ndarray) -> np.ndarray:
    """DESIGN 3.6–3.9 written out literally: int64 ``[B, col_count]`` partial outputs of one tile."""
    x = check_inputs(x, geometry, q.shape[0])
    digits = tile_digits(q, geometry, tile.range)
    S, c, v = geometry.slices, geometry.cell_bits, geometry.dac_bits
    out = np.zeros((x.shape[0], tile.col_count), dtype=np.int64)
    for b in range(x.shape[0]):
        for t in range(geometry.input_cycles):
            x_t = [(int(x[b, tile.row_start + r]) >> (v * t)) & ((1 << v) - 1) for r in range(tile.row_count)]
            for j in range(tile.col_count):
                for s in range(S):
                    for pol in (0, 1):
                        p = (j * S + s) * 2 + pol
                        bits, shift = tile.adc_bits[p], tile.adc_shift[p]
                        if bits == 0:
                            continue
                        y = sum(x_t[r] * int(digits[r, p]) for r in range(tile.row_count))
                        value = min(y >> shift, (1 << bits) - 1) << shift
                        out[b, j] += (1 << (v * t + c * s)) * (value if pol == 0 else -value)
    return out


def layer_outputs_reference(q: np.ndarray, config: HardwareConfig, layer: LayerConfig, x: np.ndarray) -> np.ndarray:
    """Sum of :func:`tile_outputs_reference` over the layer's tiles: int64 ``[B, N]``."""
    geometry = config.geometry(layer)
    x = check_inputs(x, geometry, q.shape[0])
    out = np.zeros((x.shape[0], q.shape[1]), dtype=np.int64)
    for tile in layer.tiles:
        out[:, tile.col_start:tile.col_start + tile.col_count] += tile_outputs_reference(q, geometry, tile, x)
    return out


def _matmul(a: np.ndarray, b: np.ndarray, bound: int) -> np.ndarray:
    """Exact integer product via float64 BLAS when ``bound`` (max |entry|) allows, else int64."""
    if bound < EXACT_FLOAT:
        return np.rint(a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)
    return a.astype(np.int64) @ b.astype(np.int64)


def lossless_mask(digits: np.ndarray, tile: TileConfig, geometry: Geometry) -> np.ndarray:
    """Columns whose ADC never clips or truncates: ``k = 0`` and ``2^b − 1 ≥ (2^v − 1)·Σ d``."""
    peak = digits.sum(axis=0, dtype=np.int64) * geometry.input_digit_max
    bits = np.asarray(tile.adc_bits, dtype=np.int64)
    shift = np.asarray(tile.adc_shift, dtype=np.int64)
    return (shift == 0) & (((np.int64(1) << bits) - 1) >= peak)


def layer_outputs(q: np.ndarray, config: HardwareConfig, layer: LayerConfig, x: np.ndarray) -> np.ndarray:
    """Fast, exact layer output ``[B, N]`` (int64) under ``layer``'s tiles and ADC settings.

    Equal to :func:`layer_outputs_reference` for every input; equal to ``x @ q`` when every
    column is lossless.
    """
    geometry = config.geometry(layer)
    x = check_inputs(x, geometry, q.shape[0])
    K, N = q.shape
    S, c, v = geometry.slices, geometry.cell_bits, geometry.dac_bits
    exact = np.zeros((K, N), dtype=np.int64)       # the lossless columns' weights, recombined
    out = np.zeros((x.shape[0], N), dtype=np.int64)
    x_peak = (1 << geometry.input_bits) - 1
    cycle_scale = np.array([1 << (v * t) for t in range(geometry.input_cycles)], dtype=np.int64)
    for tile in layer.tiles:
        digits = tile_digits(q, geometry, tile.range)
        keep = lossless_mask(digits, tile, geometry)
        weights = column_weights(geometry, tile.col_count)
        rows = slice(tile.row_start, tile.row_start + tile.row_count)
        cols = slice(tile.col_start, tile.col_start + tile.col_count)
        exact[rows, cols] += (digits.astype(np.int64) * np.where(keep, weights, 0)).reshape(
            tile.row_count, tile.col_count, 2 * S).sum(axis=2)
        lossy = np.flatnonzero(~keep & (np.asarray(tile.adc_bits) > 0))
        if lossy.size == 0:
            continue
        cycles = input_cycles(x[:, rows], geometry)                     # [T, B, rows]
        T, B = cycles.shape[:2]
        bound = tile.row_count * geometry.input_digit_max * geometry.digit_max
        y = _matmul(cycles.reshape(T * B, -1), digits[:, lossy], bound).reshape(T, B, lossy.size)
        values = adc(y, np.asarray(tile.adc_bits)[lossy], np.asarray(tile.adc_shift)[lossy])
        per_column = np.tensordot(cycle_scale, values, axes=1) * weights[lossy]   # [B, lossy]
        np.add.at(out, (slice(None), tile.col_start + lossy // (2 * S)), per_column)
    bound = K * x_peak * int(np.abs(exact).max(initial=0))
    return out + _matmul(x, exact, bound)
