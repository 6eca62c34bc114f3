"""Per-column ADC calibration below lossless (docs/design.md §3.11, "per-column calibrated").

Chooses for every physical column a resolution ``b`` at or below its lossless bits ``b_p`` (3.10)
and a shift ``k`` (3.8) from real activation statistics, so that the crossbar-emulated accuracy
stays within a budget of the ideal integer model's. The base config only supplies the crossbar
and the tiling; the candidates are always ``0 ≤ b ≤ b_p`` computed from the weights. Four steps:

1. **Statistics.** The ideal integer model runs on the calibration images; for every layer, tile
   and physical column ``p`` the per-cycle column values ``y`` (3.7) of up to
   :data:`STATS_VECTORS` input vectors per layer are histogrammed, each cycle weighted by its
   significance ``2^(v·t)``: ``G[p, y]``. The layer's mean absolute ideal output ``m`` is recorded.
2. **Error table.** An ADC ``(b, k)`` only ever lowers a value (``code << k ≤ y``), so the mean
   absolute error it adds to the column's logical output is exactly
   ``E_p(b, k) = 2^(c·s) · Σ_y G[p, y]·(y − (min(y >> k, 2^b − 1) << k)) / n_vectors``.
   For each ``b ≤ b_p`` the shift ``k ≤ b_p − b`` with the least error is kept, and
   ``e_p(b) = min_k E_p(b, k) / m`` (relative to the layer's outputs; non-increasing in ``b``).
3. **One knob.** For a tolerance ``τ``, each column takes the fewest bits with ``e_p(b) ≤ τ``.
   ``τ = 0`` keeps every column exact on the calibration statistics (often already below
   lossless: real inputs rarely reach the worst case); a larger ``τ`` trades error for bits.
4. **Accuracy search.** The *flip rate* — the share of search images whose crossbar prediction
   differs from the ideal integer model's, in percent — is measured by whole-model emulation at
   ``τ = 0`` and at ``τ = 2^-14, 2^-12, …, 2^4`` until it exceeds the budget, then bisected in
   ``log2 τ`` (:data:`BISECTIONS` steps) between the last ``τ`` within budget and the first beyond
   it. The largest ``τ`` measured within budget wins; if even ``τ = 0`` is beyond it, the columns
   stay lossless. A changed prediction costs at most one correct answer, so the accuracy drop on
   the search images is at most the flip rate, whatever the labels: the search needs no labels.

Which images: statistics need many vectors and no labels (the training split is fine). The search
images decide the accuracy, and a model's training images are a poor choice: it has memorised them,
their decision margins are wider than on unseen images, and the same ADC error flips far fewer of
them. :func:`run_calibration` therefore searches on the ``val`` split, which the model never trained
on, and re-measures the drop on the ``test`` split, which neither training nor the search has seen:
the budget bounds the drop on the search images by construction, the test drop is the independent
estimate (README, ``codesign calibrate``, has the measurements).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from .config import HardwareConfig, TileConfig
from .emulate import InputQuant, emulated_module, predict
from .errors import CodesignError
from .golden import column_values, column_weights, exact_product, product_bound
from .ingest import ModelSpec
from .mapping import lossless_bits, tile_column_sums

STATS_VECTORS = 20_000          #: Input vectors per layer whose column values are histogrammed.
TOLERANCE_SWEEP = range(-14, 5, 2)  #: log2 τ tried after τ = 0, in order, until the budget breaks.
BISECTIONS = 4                  #: Bisection steps in log2 τ after the sweep.
MAX_HISTOGRAM = 1 << 25         #: Histogram bins (columns × values) per tile: 256 MiB of float64.


@dataclass
class TileStats:
    """One tile's columns: lossless bits, significance and cycle-weighted histograms (step 1)."""

    tile: TileConfig
    lossless: np.ndarray          # [P] lossless bits b_p (3.10)
    significance: np.ndarray      # [P] 2^(c·s) of each physical column
    histogram: np.ndarray         # [P, peak + 1] float64: G[p, y]


@dataclass
class LayerStats:
    """Statistics of one layer matrix over the histogrammed input vectors."""

    tiles: list[TileStats]
    outputs: int                  # N, outputs per vector
    stride: int                   # every stride-th input vector is histogrammed
    vectors: int = 0
    abs_output: float = 0.0       # Σ |ideal output| over the histogrammed vectors and outputs

    @property
    def mean_output(self) -> float:
        """Mean absolute ideal output ``m`` (integer units, at least 1)."""
        return max(self.abs_output / max(self.vectors * self.outputs, 1), 1.0)


def collect_stats(model: ModelSpec, config: HardwareConfig, quant: dict[str, InputQuant],
                  images: np.ndarray, progress: bool = False) -> dict[str, LayerStats]:
    """Step 1: run the ideal integer model on ``images`` and histogram every column's ``y``."""
    stats: dict[str, LayerStats] = {}
    for spec in model.layers:
        geometry = config.geometry(config.layer(spec.key))
        tiles = []
        for tile in config.layer(spec.key).tiles:
            sums = tile_column_sums(spec.q, geometry, tile.range)
            peak = int(sums.max(initial=0)) * geometry.input_digit_max
            if sums.size * (peak + 1) > MAX_HISTOGRAM:
                raise CodesignError(f"layer '{spec.key}': column values reach {peak}, too many histogram bins "
                                    f"for calibration; use fewer rows or DAC bits per crossbar")
            tiles.append(TileStats(tile, lossless_bits(sums, geometry).astype(np.int64),
                                   np.abs(column_weights(geometry, tile.col_count)), np.zeros((sums.size, peak + 1))))
        vectors = len(images) * (spec.positions or 1)
        stats[spec.key] = LayerStats(tiles, spec.q.shape[1], stride=max(1, math.ceil(vectors / STATS_VECTORS)))
    specs = {spec.key: spec for spec in model.layers}

    def observe(key: str, u: np.ndarray) -> None:
        layer, spec = stats[key], specs[key]
        geometry = config.geometry(config.layer(key))
        sample = u[::layer.stride]
        correction = quant[spec.name].offset * spec.q.sum(axis=0, dtype=np.int64)
        ideal = exact_product(sample, spec.q, product_bound((1 << spec.input_bits) - 1, spec.q))
        layer.abs_output += float(np.abs(ideal - correction).sum())
        layer.vectors += len(sample)
        for tile in layer.tiles:
            P, levels = tile.histogram.shape
            y = column_values(spec.q, geometry, tile.tile, sample)[:, :, :P]         # [M, T, P]
            offsets = np.arange(P) * levels
            for t in range(geometry.input_cycles):
                counts = np.bincount((y[:, t, :] + offsets).ravel(), minlength=P * levels)
                tile.histogram += counts.reshape(P, levels) * float(1 << (geometry.dac_bits * t))

    predict(emulated_module(model, quant, "ideal", observer=observe), images,
            progress="statistics" if progress else None)
    return stats


@dataclass
class ErrorTable:
    """Step 2 for one tile: relative error ``e_p(b)`` and best shift of every column and ``b``."""

    tile: TileConfig
    lossless: np.ndarray          # [P] lossless bits b_p
    error: np.ndarray             # [P, max b_p + 1]; inf above a column's lossless bits
    shift: np.ndarray             # [P, max b_p + 1]

    def settings(self, tolerance: Optional[float]) -> tuple[np.ndarray, np.ndarray]:
        """Fewest bits per column with ``e_p(b) ≤ τ`` and their shifts (step 3); lossless for None."""
        if tolerance is None:
            return self.lossless, np.zeros_like(self.lossless)
        bits = (self.error <= tolerance).argmax(axis=1)        # b_p itself always has error 0
        return bits, self.shift[np.arange(len(bits)), bits]


def error_table(tile: TileStats, vectors: int, mean_output: float) -> ErrorTable:
    """Step 2: ``e_p(b) = min_k E_p(b, k) / m`` from the histograms of one tile."""
    P, levels = tile.histogram.shape
    top = int(tile.lossless.max(initial=0))
    y = np.arange(levels, dtype=np.int64)
    error = np.full((P, top + 1), np.inf)
    shift = np.zeros((P, top + 1), dtype=np.int64)
    for b in range(top + 1):
        for k in range(top - b + 1):
            lost = y - (np.minimum(y >> k, (1 << b) - 1) << k)
            candidate = tile.histogram @ lost
            better = (b + k <= tile.lossless) & (candidate < error[:, b])
            error[better, b] = candidate[better]
            shift[better, b] = k
    error *= (tile.significance / (max(vectors, 1) * mean_output))[:, None]
    return ErrorTable(tile.tile, tile.lossless, error, shift)


def configure(base: HardwareConfig, tables: dict[str, list[ErrorTable]], tolerance: Optional[float]) -> HardwareConfig:
    """``base`` with every column at its step-3 setting for tolerance ``τ`` (lossless for None)."""
    config = base.model_copy(deep=True)
    for layer in config.layers:
        layer.tiles = []
        for table in tables[layer.key]:
            bits, shift = table.settings(tolerance)
            layer.tiles.append(table.tile.model_copy(update={"adc_bits": bits.tolist(), "adc_shift": shift.tolist()}))
    return config


def search_tolerance(drop: Callable[[float], float], budget: float) -> tuple[Optional[float], list[tuple[float, float]]]:
    """Step 4: the largest measured ``τ`` with ``drop(τ) ≤ budget`` (None if not even τ = 0),
    and every ``(τ, drop)`` measured, in order."""
    history: list[tuple[float, float]] = []

    def within(exponent: float) -> bool:
        tolerance = 0.0 if exponent == -math.inf else 2.0 ** exponent
        history.append((tolerance, drop(tolerance)))
        return history[-1][1] <= budget

    if not within(-math.inf):
        return None, history
    good, bad = -math.inf, None
    for exponent in TOLERANCE_SWEEP:
        if not within(exponent):
            bad = exponent
            break
        good = exponent
    if bad is not None:
        low = good if good > -math.inf else bad - 2
        for _ in range(BISECTIONS):
            middle = (low + bad) / 2
            if within(middle):
                low = good = middle
            else:
                bad = middle
    return (0.0 if good == -math.inf else 2.0 ** good), history


@dataclass
class Calibration:
    """What :func:`calibrate` chose and measured on the search images."""

    config: HardwareConfig
    lossless: HardwareConfig
    tolerance: Optional[float]             # None: not even τ = 0 met the budget; columns stay lossless
    history: list[tuple[float, float]]     # (τ, flip rate in percent) in the order measured


def calibrate(model: ModelSpec, base: HardwareConfig, quant: dict[str, InputQuant], stats_images: np.ndarray,
              search_images: np.ndarray, budget: float, progress: bool = False) -> Calibration:
    """Steps 1–4: statistics on ``stats_images``, the search on ``search_images``; ``budget`` in
    percent of the search images whose prediction may change (an upper bound on the accuracy drop)."""
    return calibrate_budgets(model, base, quant, stats_images, search_images, [budget], progress)[0]


def calibrate_budgets(model: ModelSpec, base: HardwareConfig, quant: dict[str, InputQuant], stats_images: np.ndarray,
                      search_images: np.ndarray, budgets: list[float], progress: bool = False) -> list[Calibration]:
    """:func:`calibrate` for several budgets at once: the statistics, the error tables and every
    flip rate already measured (the searches try the same ``τ`` first) are shared."""
    from .progress import Progress

    stats = collect_stats(model, base, quant, stats_images, progress)
    tables = {key: [error_table(tile, layer.vectors, layer.mean_output) for tile in layer.tiles]
              for key, layer in stats.items()}
    reference = predict(emulated_module(model, quant, "ideal"), search_images)
    measured: dict[float, float] = {}
    bar = Progress(desc="calibrate: search τ", unit="evaluation", enabled=progress)

    def flips(tolerance: float) -> float:
        if tolerance not in measured:
            emulated = emulated_module(model, quant, "crossbar", configure(base, tables, tolerance))
            measured[tolerance] = float((predict(emulated, search_images) != reference).mean() * 100)
            bar.update()
            bar.set_postfix(tau=f"{tolerance:.2g}", flips=f"{measured[tolerance]:.2f}%")
        return measured[tolerance]

    lossless = configure(base, tables, None)
    results = []
    for budget in budgets:
        tolerance, history = search_tolerance(flips, budget)
        results.append(Calibration(configure(base, tables, tolerance), lossless, tolerance, history))
    bar.close()
    return results


def total_bits(config: HardwareConfig) -> int:
    """Σ of ``adc_bits`` over every physical column of every tile."""
    return sum(sum(tile.adc_bits) for layer in config.layers for tile in layer.tiles)


def run_calibration(model: ModelSpec, base: HardwareConfig, data: str, budget: float, search_split: str = "val",
                    progress: bool = False) -> tuple[HardwareConfig, dict]:
    """``codesign calibrate``: calibrate on dataset ``data`` and re-measure on each of its splits.

    Statistics and activation scales come from the train split, the search from ``search_split``;
    the test split, which nothing was tuned on, gives the accuracy drop to report.
    Returns the calibrated config and a JSON-ready report (bits, search, accuracies per split).
    """
    return run_calibrations(model, base, data, [budget], search_split, progress)[0]


def run_calibrations(model: ModelSpec, base: HardwareConfig, data: str, budgets: list[float],
                     search_split: str = "val", progress: bool = False) -> list[tuple[HardwareConfig, dict]]:
    """:func:`run_calibration` for each of ``budgets`` (``codesign calibrate --budgets``), sharing
    the statistics, the search's measurements and the float and ideal accuracies. Each config
    records what calibrate measured for it (``calibration``, docs/design.md §4)."""
    from .config import CalibrationRecord
    from .data import SPLITS, load_dataset
    from .emulate import calibrate_inputs, check_images

    splits = {split: load_dataset(data, split) for split in SPLITS}
    check_images(model, splits["train"][0], data)
    quant = calibrate_inputs(model, splits["train"][0])
    results = calibrate_budgets(model, base, quant, splits["train"][0], splits[search_split][0], budgets, progress)
    reference = {split: {mode: predict(emulated_module(model, quant, mode), images,
                                       progress=f"{split} {mode}" if progress else None)
                         for mode in ("float", "ideal")} for split, (images, _) in splits.items()}
    outputs = []
    for budget, result in zip(budgets, results):
        measured = {}
        for split, (images, labels) in splits.items():
            predictions = {**reference[split], "crossbar": predict(
                emulated_module(model, quant, "crossbar", result.config), images,
                progress=f"{split} crossbar" if progress else None)}
            accuracy = {mode: float((p == labels).mean() * 100) for mode, p in predictions.items()}
            measured[split] = {
                "images": int(len(labels)), "searched": split == search_split, **accuracy,
                "drop": accuracy["ideal"] - accuracy["crossbar"],
                "flip_rate": float((predictions["crossbar"] != predictions["ideal"]).mean() * 100)}
        lossless, calibrated = total_bits(result.lossless), total_bits(result.config)
        report = {
            "data": data, "budget": budget, "statistics_split": "train", "search_split": search_split,
            "tolerance": result.tolerance,
            "search": [{"tau": tau, "flip_rate": rate} for tau, rate in result.history],
            "bits": {"lossless": lossless, "calibrated": calibrated, "saved": lossless - calibrated,
                     "saved_percent": 100 * (lossless - calibrated) / lossless if lossless else 0.0},
            "layers": [layer_bits(before, after) for before, after in zip(result.lossless.layers, result.config.layers)],
            "accuracy": measured,
        }
        record = CalibrationRecord(data=data, budget=budget, search_split=search_split, tolerance=result.tolerance,
                                   accuracy=measured)
        outputs.append((result.config.model_copy(update={"calibration": record}), report))
    return outputs


def budget_file(out: Path, budget: float) -> Path:
    """Where ``codesign calibrate --budgets`` writes the config of ``budget``: ``OUT-stem-budget<B>.json``."""
    return out.with_name(f"{out.stem}-budget{budget:g}{out.suffix or '.json'}")


def format_budget_sweep(reports: list[dict], folder: Optional[Path] = None) -> str:
    """One line per budget of :func:`run_calibrations`: bits, τ and the accuracy drop on test;
    ``folder``, the generated folder the configs are for (if known), goes into the suggested next command."""
    first = reports[0]
    lines = [f"calibrated {len(reports)} configs on {first['data']} (search on the {first['search_split']} split; "
             f"drop and flips on the untouched test split, percent and points)", "",
             f"  {'budget':>6} {'τ':>8} {'ADC bits':>17} {'saved':>7} {'test drop':>9} {'flips':>6}  config"]
    for report in reports:
        bits, test = report["bits"], report["accuracy"]["test"]
        tau = "lossless" if report["tolerance"] is None else f"{report['tolerance']:.3g}"
        lines.append(f"  {report['budget']:>6g} {tau:>8} {bits['lossless']:>7} → {bits['calibrated']:<7} "
                     f"{bits['saved_percent']:>6.1f}% {test['drop']:>9.2f} {test['flip_rate']:>6.2f}  {report['config']}")
    lines += ["", f"next: codesign report {folder or 'DIR'} --calibrated " + " ".join(r["config"] for r in reports)
              + " (accuracy against ADC energy, one point per budget)"]
    return "\n".join(lines)


def layer_bits(lossless: Any, calibrated: Any) -> dict:
    """Bits, skipped columns and shifted columns of one layer, lossless against calibrated."""
    def count(layer: Any, test: Callable[[int, int], bool]) -> int:
        return sum(test(b, k) for tile in layer.tiles for b, k in zip(tile.adc_bits, tile.adc_shift))

    return {"name": lossless.key,
            "columns": count(lossless, lambda b, k: True),
            "lossless_bits": count(lossless, lambda b, k: b),
            "calibrated_bits": count(calibrated, lambda b, k: b),
            "skipped_lossless": count(lossless, lambda b, k: b == 0),
            "skipped_calibrated": count(calibrated, lambda b, k: b == 0),
            "shifted": count(calibrated, lambda b, k: k > 0)}


def format_calibration_report(report: dict) -> str:
    """The report of :func:`run_calibration` as a readable summary."""
    bits = report["bits"]
    tau = "none (stays lossless)" if report["tolerance"] is None else f"{report['tolerance']:.3g}"
    lines = [f"calibrated ADC config written to {report.get('config', '?')}: per-column tolerance τ = {tau}",
             f"ADC bits over all physical columns: lossless {bits['lossless']} → calibrated {bits['calibrated']} "
             f"(saved {bits['saved']}, {bits['saved_percent']:.1f}%)", "",
             f"  {'layer':<14} {'columns':>7} {'lossless b':>10} {'calibrated b':>12} {'skipped':>9} {'shifted':>7}"]
    for row in report["layers"]:
        lines.append(f"  {row['name']:<14} {row['columns']:>7} {row['lossless_bits']:>10} {row['calibrated_bits']:>12} "
                     f"{row['skipped_lossless']:>4}→{row['skipped_calibrated']:<4} {row['shifted']:>7}")
    steps = ", ".join(f"τ={step['tau']:.3g}: {step['flip_rate']:.2f}%" for step in report["search"])
    lines += ["", f"search on the {report['search_split']} split (flip rate vs the ideal model, budget "
                  f"{report['budget']}%): {steps}",
              f"statistics and activation scales: {report['statistics_split']} split", "",
              f"  {'split':<6} {'images':>6} {'float':>7} {'ideal':>7} {'crossbar':>8} {'drop':>6} {'flips':>6}"]
    for split, row in report["accuracy"].items():
        mark = "  (searched: in-sample)" if row["searched"] else "  (not seen by the search)"
        lines.append(f"  {split:<6} {row['images']:>6} {row['float']:>7.2f} {row['ideal']:>7.2f} {row['crossbar']:>8.2f} "
                     f"{row['drop']:>6.2f} {row['flip_rate']:>6.2f}{mark}")
    lines.append("  (percent; drop = ideal − crossbar in points; a lossless config's crossbar accuracy equals ideal)")
    test, searched = report["accuracy"]["test"], report["accuracy"][report["search_split"]]
    if test["searched"]:
        lines.append("the test split was searched on: its drop is bounded by the budget, not an independent estimate")
    else:
        lines.append(f"accuracy drop on the untouched test split: {test['drop']:.2f} points (budget {report['budget']}; "
                     f"{searched['drop']:.2f} on the searched {report['search_split']} split)")
    return "\n".join(lines)
