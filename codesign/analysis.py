"""Per-column ADC analysis (docs/design.md §3.10) and crossbar-size search.

For every physical column of every tile: the lossless resolution
``b = bit_length((2^v − 1)·Σ_rows d[r, p])`` (0 = the column is never converted), and per tile and
layer the statistics an architect reads: tiles, empty tiles, the bits histogram and the
conversions that column skip saves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

import numpy as np

from .config import MAX_ADC_BITS, CrossbarConfig, HardwareConfig, LayerConfig, MatrixShape, TileConfig
from .errors import CodesignError
from .ingest import LayerSpec, ModelSpec
from .mapping import (Geometry, TileRange, _block_sums, adcs_problem, ceil_div, default_tiles, lossless_bits,
                      max_adcs)

SEARCH_SIZES = (32, 64, 128, 256, 512)


def default_adcs(cols: int) -> int:
    """ISAAC's ratio: one SAR ADC per 128 columns (at least one per crossbar)."""
    return max(1, ceil_div(cols, 128))


def make_geometry(spec: LayerSpec, crossbar: CrossbarConfig) -> Geometry:
    """The layer's geometry; refused (one line) if it is inconsistent or needs ADCs above 16 bits."""
    try:
        geometry = Geometry(rows=crossbar.rows, cols=crossbar.cols, cell_bits=crossbar.cell_bits,
                            dac_bits=crossbar.dac_bits, weight_bits=spec.weight_bits,
                            input_bits=spec.input_bits, adcs=crossbar.adcs)
    except ValueError as exc:
        raise CodesignError(f"layer '{spec.key}': {exc}") from None
    if problem := adcs_problem(geometry):
        raise CodesignError(f"layer '{spec.key}': {problem} (choose --adcs {max_adcs(geometry.cols)} or fewer)")
    if geometry.uniform_bits > MAX_ADC_BITS:
        raise CodesignError(
            f"layer '{spec.key}': a dense column of {geometry.rows} rows with {geometry.cell_bits}-bit cells and "
            f"{geometry.dac_bits}-bit DAC needs {geometry.uniform_bits}-bit ADCs, above the {MAX_ADC_BITS} bits "
            f"codesign supports: use fewer rows, cell bits or DAC bits")
    return geometry


@dataclass
class LayerAnalysis:
    """Lossless per-column bits of one layer under the default tiling.

    ``bits[rb, p]`` and ``sums[rb, p]`` are indexed by row block and layer-wide physical column
    ``p = (j·S + s)·2 + pol``; tile (rb, cb) holds columns ``[cb·L·2S, (cb·L + nc)·2S)``.
    """

    spec: LayerSpec
    geometry: Geometry
    crossbar: CrossbarConfig
    sums: np.ndarray
    bits: np.ndarray

    @property
    def tiles(self) -> list[TileRange]:
        K, N = self.spec.q.shape
        return default_tiles(K, N, self.geometry)

    def tile_bits(self, tile: TileRange) -> np.ndarray:
        width = self.geometry.phys_per_logical
        return self.bits[tile.row_start // self.geometry.rows,
                         tile.col_start * width:(tile.col_start + tile.col_count) * width]

    def to_layer_config(self, override: bool = False) -> LayerConfig:
        tiles = []
        for tile in self.tiles:
            bits = self.tile_bits(tile)
            tiles.append(TileConfig(row_start=tile.row_start, row_count=tile.row_count,
                                    col_start=tile.col_start, col_count=tile.col_count,
                                    adc_bits=bits.tolist(), adc_shift=[0] * len(bits)))
        K, N = self.spec.q.shape
        return LayerConfig(name=self.spec.name, kind=self.spec.kind, group=self.spec.group,
                           weight_bits=self.spec.weight_bits, input_bits=self.spec.input_bits,
                           matrix=MatrixShape(rows=K, cols=N), crossbar=self.crossbar if override else None,
                           positions=self.spec.positions, tiles=tiles)


def analyze_layer(spec: LayerSpec, crossbar: CrossbarConfig) -> LayerAnalysis:
    geometry = make_geometry(spec, crossbar)
    sums = _block_sums(spec.q, geometry, geometry.rows)
    return LayerAnalysis(spec, geometry, crossbar, sums, lossless_bits(sums, geometry))


@dataclass
class Analysis:
    model: ModelSpec
    crossbar: CrossbarConfig
    layers: list[LayerAnalysis]

    def to_config(self) -> HardwareConfig:
        return HardwareConfig(
            crossbar=self.crossbar,
            layers=[layer.to_layer_config(override=layer.crossbar != self.crossbar) for layer in self.layers],
            model=self.model.info)


def analyze(model: ModelSpec, crossbar: CrossbarConfig,
            per_layer: Optional[dict[str, CrossbarConfig]] = None) -> Analysis:
    """Lossless per-column analysis of every layer (``per_layer`` overrides the crossbar by key)."""
    per_layer = per_layer or {}
    return Analysis(model, crossbar, [analyze_layer(spec, per_layer.get(spec.key, crossbar)) for spec in model.layers])


def config_bits_histogram(config: HardwareConfig) -> dict[int, int]:
    counts: dict[int, int] = {}
    for layer in config.layers:
        for tile in layer.tiles:
            for b in tile.adc_bits:
                counts[b] = counts.get(b, 0) + 1
    return dict(sorted(counts.items()))


# ---------------------------------------------------------------------------------------------
# Crossbar-size search
#
# Objective (per layer, and summed over layers for the global choice), documented in README.md
# ("Cost models"):  J(R, C) = E(R, C) / E_ref + A(R, C) / A_ref
# E: energy per inference of the per-column lossless design (codesign.cost, default settings: the
#    isaac ADC model at 32 nm plus ISAAC's DAC, sample-and-hold, array, shift-add and registers);
# A: area of the live crossbars (arrays, ADCs sized for the largest bits they convert, DACs, S+H,
#    shift-adds, registers); empty crossbars are removed.
# E_ref, A_ref: the same layer on 128×128 crossbars with every column at the uniform resolution.


def layer_cost(spec: LayerSpec, geometry: Geometry, sums: np.ndarray, uniform: bool = False) -> tuple[float, float]:
    """(energy pJ per inference, area µm²) of one layer from its row-block column sums (see above)."""
    from .cost import LayerTiles, layer_total_cost

    tiles = LayerTiles.from_row_blocks(lossless_bits(sums, geometry), geometry, spec.q.shape[0], spec.positions)
    cost = layer_total_cost(tiles, "uniform" if uniform else "per_column")
    return cost.total_energy_pj, cost.total_area_um2


@dataclass
class SweepPoint:
    rows: int
    cols: int
    energy_pj: float
    area_um2: float
    objective: float
    tiles: int


def search(model: ModelSpec, base: CrossbarConfig, sizes: Iterable[int] = SEARCH_SIZES) -> dict:
    """Sweep rows × cols; return per-layer and global sweeps with the minimum of J marked."""
    sizes = sorted(sizes)
    finest = sizes[0]
    if any(size % finest for size in sizes):
        raise CodesignError(f"search sizes must be multiples of the smallest, {finest}")
    per_layer: dict[str, list[SweepPoint]] = {}
    totals: dict[tuple[int, int], list[float]] = {}
    for spec in model.layers:
        ref_geo = make_geometry(spec, base.model_copy(update={"rows": 128, "cols": 128, "adcs": 1}))
        e_ref, a_ref = layer_cost(spec, ref_geo, _block_sums(spec.q, ref_geo, 128), uniform=True)
        fine = _block_sums(spec.q, ref_geo, finest)
        points = []
        for rows in sizes:
            group = rows // finest
            pad = (-fine.shape[0]) % group
            sums = np.pad(fine, ((0, pad), (0, 0))).reshape(-1, group, fine.shape[1]).sum(axis=1)
            for cols in sizes:
                xbar = base.model_copy(update={"rows": rows, "cols": cols, "adcs": default_adcs(cols)})
                try:
                    geo = make_geometry(spec, xbar)
                except CodesignError:
                    continue
                energy, area = layer_cost(spec, geo, sums)
                tiles = sums.shape[0] * ceil_div(spec.q.shape[1], geo.logical_cols)
                points.append(SweepPoint(rows, cols, energy, area, energy / e_ref + area / a_ref, tiles))
                total = totals.setdefault((rows, cols), [0.0, 0.0, 0.0, 0.0, 0])
                total[0] += energy
                total[1] += area
                total[2] += e_ref
                total[3] += a_ref
                total[4] += tiles
        per_layer[spec.key] = points
    overall = [SweepPoint(r, c, e, a, e / er + a / ar, int(t)) for (r, c), (e, a, er, ar, t) in sorted(totals.items())
               if len([p for pts in per_layer.values() for p in pts if (p.rows, p.cols) == (r, c)]) == len(per_layer)]
    if not overall:
        raise CodesignError("no crossbar size in the sweep fits every layer")
    best = min(overall, key=lambda p: p.objective)
    return {
        "global": overall, "best": best,
        "layers": per_layer,
        "best_per_layer": {key: min(points, key=lambda p: p.objective) for key, points in per_layer.items()},
    }
