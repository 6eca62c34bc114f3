"""Bit-exact integer model of crossbar, ADC and shift-add (docs/design.md §3.6–3.9).

For a tile with cell levels ``d[r, p]`` and an unsigned input vector ``x``:

* input cycle ``t`` applies ``x_t = (x >> v·t) & (2^v − 1)`` on the wordlines (3.6);
* physical column ``p`` carries ``y[t, p] = Σ_r x_t[r]·d[r, p]`` (3.7);
* its ADC returns ``code = min(y >> k, 2^b − 1)``, worth ``code << k``; ``b = 0`` is 0 (3.8);
* shift-add gives ``out[j] = Σ_t Σ_s 2^(v·t + c·s)·(value[j,s,+] − value[j,s,−])`` (3.9).

Two implementations compute the same integers. :func:`tile_outputs_reference` follows the
definition cycle by cycle and column by column. :class:`CrossbarLayer` (and :func:`layer_outputs`)
is the fast path: a column whose ADC can never clip or truncate adds exactly ``x · d``, so all such
columns of a layer collapse into one matrix product with the recombined weights; only the other
columns are emulated per cycle. Products run in float32 or float64 BLAS only where every partial
sum is an integer below 2^24 or 2^53, proven from the operands' largest entries
(:func:`exact_product`), so the float results are the exact integers.

Non-idealities (:class:`NonIdeality`, off by default) are for robustness studies, in the units of
section 3.7 (one cell level at one input LSB):

* **conductance variation** (CRIMP's ``w·e^θ``, applied per cell): each programmed cell level
  ``d`` becomes ``d·e^θ``, ``θ ~ N(0, σ_g²)`` drawn once per cell when the layer is prepared
  (the crossbar is programmed once), seeded by ``(seed, layer key)``; a level-0 cell stays 0
  (off-state conductance is not modelled);
* **ADC input noise**: every conversion sees ``y + n``, ``n ~ N(0, σ_adc²)``, drawn afresh per
  conversion from a generator seeded by ``(seed, layer key)``.

The analog value then meets the SAR comparators at half a level below each code boundary:
``code = clip(floor((y + ½) / 2^k), 0, 2^b − 1)``. For an unperturbed integer ``y`` this is
exactly ``min(y >> k, 2^b − 1)``, so an analog error below half a level changes nothing. With both
σ equal to 0 the exact integer path runs, untouched.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import HardwareConfig, LayerConfig, TileConfig
from .mapping import Geometry, TileRange, check_weights, layer_column_sums, tile_digits

EXACT_FLOAT32 = 2 ** 24  #: Integers below this are exact in float32 (24-bit significand).
EXACT_FLOAT = 2 ** 53    #: Integers below this are exact in float64 (53-bit significand).
CHUNK_CONVERSIONS = 1 << 15  #: Input vectors × cycles emulated per step (bounds memory to tens of MB).


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
    return x.astype(np.int64, copy=False)


def check_matrix(q: np.ndarray, layer: LayerConfig) -> None:
    """Raise ``ValueError`` unless ``q`` is the ``K×N`` integer matrix ``layer`` describes, in range."""
    if q.shape != (layer.matrix.rows, layer.matrix.cols):
        raise ValueError(f"layer '{layer.key}': weight matrix is {'×'.join(map(str, q.shape))}, "
                         f"the config's is {layer.matrix.rows}×{layer.matrix.cols}")
    check_weights(q, layer.weight_bits)


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


def exact_dtype(bound: int) -> type:
    """Narrowest dtype whose arithmetic on integers of magnitude ≤ ``bound`` is exact:
    float32 below 2^24, float64 below 2^53, else int64."""
    if bound < EXACT_FLOAT32:
        return np.float32
    if bound < EXACT_FLOAT:
        return np.float64
    return np.int64


def exact_product(a: np.ndarray, b: np.ndarray, bound: int) -> np.ndarray:
    """``a @ b`` for integer-valued operands, exactly; ``bound`` ≥ every ``Σ_k |a[i,k]·b[k,j]|``.

    Runs in the :func:`exact_dtype` of ``bound`` (float BLAS: every partial sum is then an exactly
    representable integer, in any summation order). The result keeps that dtype and holds integers,
    so ``.astype(np.int64)`` converts it exactly.
    """
    dtype = exact_dtype(bound)
    return a.astype(dtype, copy=False) @ b.astype(dtype, copy=False)


def product_bound(a_peak: int, b: np.ndarray) -> int:
    """Largest ``Σ_k |a[i,k]·b[k,j]|`` when ``|a| ≤ a_peak``: ``a_peak · max_j Σ_k |b[k,j]|``."""
    if b.size == 0:
        return 0
    return int(a_peak) * int(np.abs(b).sum(axis=0, dtype=np.int64).max())


def column_values(q: np.ndarray, geometry: Geometry, tile: TileConfig, x: np.ndarray) -> np.ndarray:
    """Per-cycle column values ``y[B, T, C]`` (int64) of a tile for layer inputs ``x[B, K]`` (3.7).

    All ``C`` physical columns are included; columns beyond ``col_count·2S`` hold no weights and
    read 0. These are the values a crossbar model answers the RTL's comparator from.
    """
    x = check_inputs(x, geometry, q.shape[0])
    digits = tile_digits(q, geometry, tile.range)
    cycles = input_cycles(x[:, tile.row_start:tile.row_start + tile.row_count], geometry)   # [T, B, rows]
    T, B = cycles.shape[:2]
    flat = exact_product(cycles.reshape(T * B, -1), digits, product_bound(geometry.input_digit_max, digits))
    y = np.zeros((B, T, geometry.cols), dtype=np.int64)
    y[:, :, :digits.shape[1]] = flat.reshape(T, B, -1).transpose(1, 0, 2)
    return y


def tile_outputs_reference(q: np.ndarray, geometry: Geometry, tile: TileConfig, x: np.ndarray) -> np.ndarray:
    """docs/design.md §3.6–3.9 written out literally: int64 ``[B, col_count]`` partial outputs of one tile."""
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
    check_matrix(q, layer)
    geometry = config.geometry(layer)
    x = check_inputs(x, geometry, q.shape[0])
    out = np.zeros((x.shape[0], q.shape[1]), dtype=np.int64)
    for tile in layer.tiles:
        out[:, tile.col_start:tile.col_start + tile.col_count] += tile_outputs_reference(q, geometry, tile, x)
    return out


def lossless_mask(digits: np.ndarray, tile: TileConfig, geometry: Geometry) -> np.ndarray:
    """Columns whose ADC never clips or truncates: ``k = 0`` and ``2^b − 1 ≥ (2^v − 1)·Σ d``,
    or no weight at all (``y`` is always 0)."""
    return exact_columns(digits.sum(axis=0, dtype=np.int64), tile, geometry)


def exact_columns(column_sums: np.ndarray, tile: TileConfig, geometry: Geometry) -> np.ndarray:
    """:func:`lossless_mask` from the columns' digit sums ``Σ_rows d[r, p]``."""
    peak = np.asarray(column_sums, dtype=np.int64) * geometry.input_digit_max
    bits = np.asarray(tile.adc_bits, dtype=np.int64)
    shift = np.asarray(tile.adc_shift, dtype=np.int64)
    return (peak == 0) | ((shift == 0) & (((np.int64(1) << bits) - 1) >= peak))


@dataclass(frozen=True)
class NonIdeality:
    """Analog non-idealities of the crossbar (module docstring); both 0 (the default) = bit-exact.

    Parameters
    ----------
    conductance_sigma:
        σ_g of the log-normal cell variation ``d·e^θ``, ``θ ~ N(0, σ_g²)`` (dimensionless; CRIMP
        and Liang et al. study σ ≈ 0.1).
    adc_noise:
        σ_adc of the Gaussian noise added to every ADC input, in units of one cell level at one
        input LSB (the unit of ``y``, docs/design.md §3.7).
    seed:
        Seed of both draws; combined with the layer key so layers draw independently.
    """

    conductance_sigma: float = 0.0
    adc_noise: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("conductance_sigma", "adc_noise"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number ≥ 0, not {value}")

    @property
    def active(self) -> bool:
        return self.conductance_sigma > 0 or self.adc_noise > 0

    def generator(self, key: str, stream: int) -> np.random.Generator:
        """Independent, reproducible generator for one layer and one purpose (0 = cells, 1 = ADC)."""
        return np.random.default_rng([self.seed, zlib.crc32(key.encode()), stream])


@functools.cache
def blas_threads() -> Any:
    """NumPy's BLAS thread pools, found once (``threadpoolctl.ThreadpoolController``).

    The per-cycle path alternates tile-sized products with elementwise steps; there one BLAS
    thread is faster than several, whose workers spin between calls on the cores the elementwise
    work needs (the one-bit-below benchmark layer: 1.8 s instead of 4.5 s on 2 busy cores).
    """
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@dataclass
class _CycleBlock:
    """The columns of one tile that are emulated cycle by cycle."""

    rows: tuple[int, int]     # wordline range [start, stop) of the layer matrix
    cols: slice               # the tile's logical (output) columns
    cells: np.ndarray         # [row_count, P] cell levels d (or perturbed conductances), float
    bits: np.ndarray          # [P] ADC bits b
    shift: np.ndarray         # [P] ADC shifts k
    combine: np.ndarray       # [T·P, col_count] int64: 2^(v·t)·(±2^(c·s)) where cycle t of column p feeds j
    y_bound: int              # largest exact Σ_r x_t[r]·d[r, p] over the block's columns
    out_bound: int            # largest Σ |value · combine| of one output (for exact_product)


class _LayerCells:
    """The cells of a layer's crossbars (3.3–3.5), mapped only as far as a tile needs them."""

    def __init__(self, q: np.ndarray, geometry: Geometry, nonideal: NonIdeality | None, key: str) -> None:
        self.q, self.geometry, self.nonideal, self.key = q, geometry, nonideal, key

    @functools.cached_property
    def digits(self) -> np.ndarray:
        """Cell levels ``d`` of the whole layer: uint8 ``[K, N·2S]``, layer-wide physical columns."""
        K, N = self.q.shape
        return tile_digits(self.q, self.geometry, TileRange(0, K, 0, N))

    @functools.cached_property
    def conductances(self) -> np.ndarray:
        """``d·e^θ`` with ``θ ~ N(0, σ_g²)`` drawn once per cell (σ_g = 0: ``d``), float64."""
        sigma = self.nonideal.conductance_sigma
        theta = self.nonideal.generator(self.key, 0).normal(0.0, sigma, self.digits.shape) if sigma else 0.0
        return self.digits * np.exp(theta)

    @functools.cached_property
    def block_sums(self) -> np.ndarray:
        """``Σ_rows d`` per default row block of ``R`` rows (the analysis's tiling)."""
        return layer_column_sums(self.q, self.geometry)

    def column_sums(self, tile: TileConfig) -> np.ndarray:
        """``Σ_rows d[r, p]`` of a tile's physical columns (from the row-block sums when aligned)."""
        R, K = self.geometry.rows, self.q.shape[0]
        rows, phys = _spans(tile, self.geometry)[::2]
        if tile.row_start % R == 0 and tile.row_count == min(R, K - tile.row_start):
            return self.block_sums[tile.row_start // R, phys]
        return self.digits[rows, phys].sum(axis=0, dtype=np.int64)


def _spans(tile: TileConfig, geometry: Geometry) -> tuple[slice, slice, slice]:
    """A tile's matrix rows, logical columns and layer-wide physical columns."""
    width = geometry.phys_per_logical
    return (slice(tile.row_start, tile.row_start + tile.row_count),
            slice(tile.col_start, tile.col_start + tile.col_count),
            slice(tile.col_start * width, (tile.col_start + tile.col_count) * width))


class CrossbarLayer:
    """One layer matrix under one ``LayerConfig``, prepared once and applied to many batches.

    ``CrossbarLayer(q, config, layer)(x)`` equals :func:`layer_outputs_reference` for every
    ``x[B, K]`` of unsigned ``a``-bit integers; it is ``x @ q`` when every column is lossless.
    With an active :class:`NonIdeality`, every converted column runs the analog path instead.
    """

    def __init__(self, q: np.ndarray, config: HardwareConfig, layer: LayerConfig,
                 nonideal: NonIdeality | None = None) -> None:
        check_matrix(q, layer)
        self.geometry = geometry = config.geometry(layer)
        self.shape = q.shape
        self.analog = nonideal is not None and nonideal.active
        self.nonideal = nonideal
        self.noise = nonideal.generator(layer.key, 1) if self.analog else None
        cells = _LayerCells(q, geometry, nonideal, layer.key)
        width = geometry.phys_per_logical
        exact = np.zeros(q.shape, dtype=np.int64)     # only the tiles' cells count, as in the reference
        self.blocks: list[_CycleBlock] = []
        for tile in sorted(layer.tiles, key=lambda t: (t.row_start, t.col_start)):
            rows, cols, phys = _spans(tile, geometry)
            bits = np.asarray(tile.adc_bits, dtype=np.int64)
            if self.analog:
                cycled = bits > 0
            else:
                kept = exact_columns(cells.column_sums(tile), tile, geometry)
                cycled = ~kept & (bits > 0)
                exact[rows, cols] += q[rows, cols]
                if not kept.all():      # the columns that are not exact leave the matrix product
                    signed = cells.digits[rows, phys] * column_weights(geometry, tile.col_count) * ~kept
                    exact[rows, cols] -= signed.reshape(tile.row_count, tile.col_count, width).sum(axis=2)
            if cycled.any():
                self.blocks.append(self._cycle_block(tile, np.flatnonzero(cycled), cells))
        self.exact_bound = product_bound((1 << geometry.input_bits) - 1, exact)
        self.exact = exact.astype(exact_dtype(self.exact_bound))      # cast once, not per batch

    def _cycle_block(self, tile: TileConfig, local: np.ndarray, cells: _LayerCells) -> _CycleBlock:
        """The per-cycle work for the tile-local physical columns ``local``."""
        geometry = self.geometry
        rows, cols, phys = _spans(tile, geometry)
        width = geometry.phys_per_logical
        combine = np.zeros((local.size, tile.col_count), dtype=np.int64)
        combine[np.arange(local.size), local // width] = column_weights(geometry, 1)[local % width]
        cycle_scale = np.array([1 << (geometry.dac_bits * t) for t in range(geometry.input_cycles)], dtype=np.int64)
        combine = np.kron(cycle_scale[:, None], combine)              # fold in 3.9's 2^(v·t)
        bits = np.asarray(tile.adc_bits, dtype=np.int64)[local]
        shift = np.asarray(tile.adc_shift, dtype=np.int64)[local]
        caps = ((np.int64(1) << bits) - 1) << shift
        digits = cells.digits[rows, phys][:, local]
        y_bound = int(digits.sum(axis=0, dtype=np.int64).max()) * geometry.input_digit_max
        if self.analog:
            analog = cells.conductances[rows, phys][:, local]
            return _CycleBlock((rows.start, rows.stop), cols, analog, bits, shift, combine, y_bound,
                               product_bound(int(caps.max()), combine))
        return _CycleBlock((rows.start, rows.stop), cols, digits.astype(exact_dtype(y_bound)), bits, shift, combine,
                           y_bound, product_bound(min(int(caps.max()), y_bound), combine))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Layer outputs ``[B, N]`` (int64) for inputs ``x[B, K]`` (unsigned ``a``-bit integers)."""
        x = check_inputs(x, self.geometry, self.shape[0])
        out = exact_product(x, self.exact, self.exact_bound).astype(np.int64)
        if self.blocks:
            step = max(1, CHUNK_CONVERSIONS // self.geometry.input_cycles)
            with blas_threads().limit(limits=1, user_api="blas"):
                for start in range(0, x.shape[0], step):
                    self._add_cycled(x[start:start + step], out[start:start + step])
        return out

    def _add_cycled(self, x: np.ndarray, out: np.ndarray) -> None:
        """Add the per-cycle columns' contributions for inputs ``x[B, K]`` to ``out[B, N]``."""
        T = self.geometry.input_cycles
        cycles, cycles_rows = None, None
        for block in self.blocks:
            if block.rows != cycles_rows:       # blocks are sorted by rows: one split per row range
                cycles_rows = block.rows
                split = input_cycles(x[:, slice(*block.rows)], self.geometry)            # [T, B, rows]
                cycles = np.moveaxis(split.astype(np.float64 if self.analog else np.float32), 0, 1)
                cycles = cycles.reshape(x.shape[0] * T, -1)                             # [B·T, rows]
            values = self._convert(block, cycles).reshape(x.shape[0], -1)              # [B, T·P]
            out[:, block.cols] += exact_product(values, block.combine, block.out_bound).astype(np.int64)

    def _convert(self, block: _CycleBlock, cycles: np.ndarray) -> np.ndarray:
        """Per-cycle ADC values ``code << k`` of a block's columns: float ``[T·B, P]``, integer-valued.

        Exact path: ``y`` is an integer below 2^24 (float32) or 2^53 (float64; the config's limits,
        R ≤ 4096, v ≤ 16, c ≤ 4, keep ``y`` below 2^32), so the division by 2^k, the floor and the
        products below are exact and the result equals :func:`adc`.
        """
        if self.analog:
            y = cycles @ block.cells
            if self.nonideal.adc_noise > 0:
                y += self.noise.normal(0.0, self.nonideal.adc_noise, y.shape)
            y += 0.5                    # comparator thresholds half a level below each code boundary
        else:
            y = exact_product(cycles, block.cells, block.y_bound)
        caps = ((np.int64(1) << block.bits) - 1).astype(y.dtype)
        if self.analog or block.shift.any():
            step = np.exp2(block.shift).astype(y.dtype)
            y /= step
            np.floor(y, out=y)
            np.minimum(y, caps, out=y)
            np.maximum(y, 0, out=y)
            y *= step
        else:
            np.minimum(y, caps, out=y)
        return y


def layer_outputs(q: np.ndarray, config: HardwareConfig, layer: LayerConfig, x: np.ndarray,
                  nonideal: NonIdeality | None = None) -> np.ndarray:
    """Fast, exact layer output ``[B, N]`` (int64) under ``layer``'s tiles and ADC settings.

    Equal to :func:`layer_outputs_reference` for every input; equal to ``x @ q`` when every
    column is lossless. For repeated batches build a :class:`CrossbarLayer` once instead.
    """
    return CrossbarLayer(q, config, layer, nonideal)(x)
