"""``codesign report DIR``: ``DIR/report/{report.html, report.md, summary.json}``.

The report states the design point, the model's accuracy (measured with ``--data``, else as
``codesign calibrate`` recorded it), prices the designs of ``DIR/hw_config.json``
(:mod:`codesign.cost`, docs/cost-models.md) under every ADC model, shows the band they span,
measures the periphery RTL in ``DIR/rtl/`` with Yosys (:mod:`codesign.synth`) and plots energy and
area by component, the band, per-layer energy, the ADC bits (histogram, per column, per tile),
accuracy against ADC energy for calibrated configs, and the crossbar-size sweep
(``DIR/search.json``). ``summary.json`` holds every figure with its model name and source;
``report.html`` is self-contained (plots embedded as base64 PNG, 1000 px wide, text ≥ 12 px).
Quantities carry one SI unit per table column and per plot axis, chosen from the values shown.
"""

from __future__ import annotations

import base64
import io
import json
import math
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, model_validator

from .config import HardwareConfig, load_config
from .cost import (COMPONENTS, DESIGN_LABELS, ISAAC_CITATION, ISAAC_NODE_NM, SCALING_SOURCE, CostSettings,
                   Estimate, area_scale, dub_levels, energy_scale, estimate, scaling_note)
from .errors import CodesignError
from .files import read_json

SCHEMA = "codesign-report/1"
FILES = ("report.html", "report.md", "summary.json")
KNOWN_CROSSBAR_FIELDS = ("rows", "cols", "cell_bits", "dac_bits", "signed", "adcs")
ACCURACY_SPLIT = "test"
LOSSLESS_NOTE = "exact by construction: every column at or above its lossless bits (docs/design.md §3.10)"


# --- the summary (everything machine-readable) --------------------------------------------------

def build_summary(config: HardwareConfig, settings: CostSettings, calibrated: Optional[HardwareConfig] = None,
                  sweep: Optional[dict] = None, periphery: Optional[dict] = None,
                  calibrated_path: Optional[str] = None) -> tuple[dict, Estimate]:
    """All figures of the report as JSON-ready data, and the :class:`~codesign.cost.Estimate` behind them."""
    est = estimate(config, calibrated, settings)
    clock = config.periphery.clock_hz
    models = {}
    for model in est.tables:
        totals = {d: est.total(model, d).to_json(clock) for d in est.designs}
        models[model] = {
            "totals": totals,
            "vs_uniform": {d: _ratios(est, model, d, "uniform") for d in est.designs},
            "vs_per_crossbar": {d: _ratios(est, model, d, "per_crossbar") for d in est.designs},
            "layers": {layer: {d: est.costs[model][d][i].to_json(clock) for d in est.designs}
                       for i, layer in enumerate(est.layers)},
        }
    summary = {
        "schema": SCHEMA,
        "config": {"file": "hw_config.json", "model": config.model.model_dump() if config.model else None,
                   "crossbar": config.crossbar.model_dump(), "periphery": config.periphery.model_dump(),
                   "layers": len(config.layers),
                   "tiles": sum(len(layer.tiles) for layer in config.layers)},
        "design_point": design_point(config, settings),
        "calibrated": calibrated_path,
        "settings": settings.model_dump(),
        "designs": {d: DESIGN_LABELS[d] for d in est.designs},
        "default_model": settings.adc_model,
        "adc_models": {m: t.describe(est.bits_used) for m, t in est.tables.items()},
        "components": _components(settings.tech_nm),
        "technology_scaling": {"source": SCALING_SOURCE, "vdd": 0.8},
        "models": models,
        "band": {d: est.band(d) for d in est.designs},
        "bits_histogram": {d: _histogram(c) for d, c in (("per_column", config),
                                                           ("calibrated", calibrated)) if c is not None},
        "dub_levels": dub_levels(config),
        "tiles": _tile_grids(config),
        "sweep": sweep,
        "periphery": periphery,
        "warnings": est.warnings,
    }
    if periphery is not None:
        periphery["design_total"] = periphery_design_total(est, periphery, settings.adc_model)
    return summary, est


def _ratios(est: Estimate, model: str, design: str, baseline: str) -> dict:
    return {what: est.ratio(model, design, baseline, what)
            for what in ("adc_energy", "energy", "adc_area", "area", "latency")}


def _components(tech_nm: float) -> dict:
    e, a = energy_scale(ISAAC_NODE_NM, tech_nm), area_scale(ISAAC_NODE_NM, tech_nm)
    return {c.name: {"energy_pj": c.energy_pj * e, "energy_per": c.energy_per, "area_um2": c.area_um2 * a,
                     "area_per": c.area_per, "derivation": c.derivation, "source": ISAAC_CITATION,
                     "scaling": scaling_note(ISAAC_NODE_NM, tech_nm)} for c in COMPONENTS.values()}


def _histogram(config: HardwareConfig) -> list[int]:
    counts = np.bincount(np.concatenate([np.asarray(t.adc_bits, dtype=np.int64)
                                         for layer in config.layers for t in layer.tiles]))
    return [int(n) for n in counts]


def _tile_grids(config: HardwareConfig) -> dict:
    """Per layer: the largest bits of each tile (its per-crossbar resolution) on the tile grid."""
    grids = {}
    for layer in config.layers:
        rows = sorted({t.row_start for t in layer.tiles})
        cols = sorted({t.col_start for t in layer.tiles})
        grid = [[None] * len(cols) for _ in rows]
        for t in layer.tiles:
            grid[rows.index(t.row_start)][cols.index(t.col_start)] = max(t.adc_bits, default=0)
        grids[layer.key] = {"row_starts": rows, "col_starts": cols, "max_bits": grid}
    return grids


def design_point(config: HardwareConfig, settings: CostSettings) -> dict:
    """What the report's figures are for: crossbar, number formats, ADCs, clock, node, model, bits."""
    sizes: dict[str, list[str]] = {}
    for layer in config.layers:
        geo = config.geometry(layer)
        sizes.setdefault(f"{geo.rows}×{geo.cols}", []).append(layer.key)
    geometries = [config.geometry(layer) for layer in config.layers]
    extra = {k: v for k, v in config.crossbar.model_dump().items() if k not in KNOWN_CROSSBAR_FIELDS}
    return {
        "crossbar_sizes": sizes,
        "cell_bits": config.crossbar.cell_bits, "dac_bits": config.crossbar.dac_bits,
        "signed": config.crossbar.signed, "adcs_per_crossbar": sorted({g.adcs for g in geometries}),
        "weight_bits": sorted({layer.weight_bits for layer in config.layers}),
        "input_bits": sorted({layer.input_bits for layer in config.layers}),
        "uniform_bits": sorted({g.uniform_bits for g in geometries}),
        "crossbar_extra": extra,
        "sample_rate_hz": settings.sample_rate_hz, "periphery": config.periphery.model_dump(),
        "conversion_cycles": config.periphery.conversion_cycles, "tech_nm": settings.tech_nm,
        "layers": len(config.layers), "tiles": sum(len(layer.tiles) for layer in config.layers),
        "model": config.model.model_dump() if config.model else None,
        "calibration": config.calibration.model_dump() if config.calibration else None,
    }


# --- calibrated configs and accuracy -------------------------------------------------------------

def calibration_label(config: HardwareConfig, path: Path) -> str:
    """``budget 0.5`` for a config written by ``codesign calibrate``, else its file name."""
    return f"budget {config.calibration.budget:g}" if config.calibration else Path(path).name


def calibration_sweep(config: HardwareConfig, calibrated: Sequence[tuple[Path, HardwareConfig]],
                      settings: CostSettings) -> list[dict]:
    """Each calibrated config priced against the folder's: ADC bits, ADC energy per model, ratios."""
    rows = []
    lossless_bits = sum(sum(t.adc_bits) for layer in config.layers for t in layer.tiles)
    for path, other in calibrated:
        est = estimate(config, other, settings)
        record = other.calibration
        rows.append({
            "file": str(path), "label": calibration_label(other, path),
            "budget": record.budget if record else None, "tolerance": record.tolerance if record else None,
            "adc_bits": sum(sum(t.adc_bits) for layer in other.layers for t in layer.tiles),
            "adc_bits_lossless": lossless_bits,
            "adc_energy_pj": {m: est.adc_energy(m, "calibrated") for m in est.tables},
            "vs_uniform": {m: est.ratio(m, "calibrated", "uniform") for m in est.tables},
            "vs_per_column": {m: est.ratio(m, "calibrated", "per_column") for m in est.tables},
            "recorded_accuracy": record.accuracy[ACCURACY_SPLIT].model_dump()
            if record and ACCURACY_SPLIT in record.accuracy else None,
            "recorded_data": record.data if record else None,
        })
    return rows


def design_config(config: HardwareConfig, design: str) -> HardwareConfig:
    """``config`` with the bits of ``design`` (docs/design.md §3.11) and no shifts, to emulate it."""
    if design == "per_column":
        return config
    layers = []
    for layer in config.layers:
        uniform = config.geometry(layer).uniform_bits
        tiles = [tile.model_copy(update={
            "adc_bits": [uniform if design == "uniform" else max(tile.adc_bits, default=0)] * len(tile.adc_bits),
            "adc_shift": [0] * len(tile.adc_shift)}) for tile in layer.tiles]
        layers.append(layer.model_copy(update={"tiles": tiles}))
    return config.model_copy(update={"layers": layers})


def measure_accuracy(folder: Path, config: HardwareConfig, calibrated: Sequence[tuple[Path, HardwareConfig]],
                     data: Optional[str]) -> dict:
    """Top-1 accuracy on the test split of every design, in percent.

    With ``data``: measured now by whole-model emulation (:mod:`codesign.emulate`) of the model
    ``hw_config.json`` names, which must carry its architecture. Without: what
    ``codesign calibrate`` recorded in the calibrated configs, if anything. Uniform and
    per-crossbar ADCs never clip a lossless column, so their accuracy is the ideal integer model's.
    """
    result: dict[str, Any] = {"split": ACCURACY_SPLIT, "data": data, "source": None, "ideal": None, "float": None,
                              "designs": {}, "calibrated": [], "how": None}
    if data is None:
        recorded = [(path, other) for path, other in calibrated if other.calibration is not None
                    and ACCURACY_SPLIT in other.calibration.accuracy]
        if not recorded:
            result["how"] = ("not measured: run 'codesign report DIR --data SPEC' (e.g. --data digits; the model "
                             "file must carry its architecture, see README 'How a model is read')")
            return result
        first = recorded[0][1].calibration
        result.update(source="recorded by codesign calibrate", data=first.data,
                      ideal=first.accuracy[ACCURACY_SPLIT].ideal, float=first.accuracy[ACCURACY_SPLIT].float,
                      how="the lossless designs are not measured: run 'codesign report DIR --data SPEC'")
        result["designs"]["uniform"] = {"accuracy": result["ideal"], "note": LOSSLESS_NOTE}
        result["calibrated"] = [{"file": str(path), "label": calibration_label(other, path),
                                 "accuracy": other.calibration.accuracy[ACCURACY_SPLIT].crossbar}
                                for path, other in recorded]
        return result

    from .data import load_dataset
    from .emulate import accuracy, calibrate_inputs, check_images, emulated_module
    from .simulate import Folder, load_folder_model

    model = load_folder_model(Folder(folder, config, {}), None)
    train, _ = load_dataset(data, "train")
    images, labels = load_dataset(data, ACCURACY_SPLIT)
    check_images(model, images, data)
    quant = calibrate_inputs(model, train)

    def measured(mode: str, cfg: Optional[HardwareConfig] = None, label: str = "") -> float:
        return accuracy(emulated_module(model, quant, mode, cfg), images, labels, progress=f"accuracy: {label or mode}")

    result.update(source=f"measured now on {data}, {ACCURACY_SPLIT} split ({len(labels)} images; activation "
                         f"scales from its train split)",
                  float=measured("float"), ideal=measured("ideal"))
    notes = {"uniform": "every column at full resolution, emulated",
             "per_crossbar": "every column at its tile's largest bits, emulated",
             "per_column": "this config's bits and shifts, emulated"}
    result["designs"] = {design: {"accuracy": measured("crossbar", design_config(config, design), design),
                                  "note": note} for design, note in notes.items()}
    result["calibrated"] = [{"file": str(path), "label": calibration_label(other, path),
                             "accuracy": measured("crossbar", other, calibration_label(other, path))}
                            for path, other in calibrated]
    return result


# --- numbers and units ---------------------------------------------------------------------------

ENERGY_UNITS = (("pJ", 1.0), ("nJ", 1e3), ("µJ", 1e6), ("mJ", 1e9), ("J", 1e12))   #: from pJ
AREA_UNITS = (("µm²", 1.0), ("mm²", 1e6))                                           #: from µm²
TIME_UNITS = (("ns", 1.0), ("µs", 1e3), ("ms", 1e6), ("s", 1e9))                   #: from ns
SI_PREFIXES = (("", 1.0), ("k", 1e3), ("M", 1e6), ("G", 1e9), ("T", 1e12))


def pick_unit(values: Iterable[float], units: Sequence[tuple[str, float]]) -> tuple[str, float]:
    """The largest unit not above the largest finite magnitude among ``values`` (the first for none)."""
    finite = [abs(v) for v in values if v is not None and math.isfinite(v) and v != 0]
    top = max(finite, default=0.0)
    return next(((name, scale) for name, scale in reversed(units) if scale <= top), units[0])


def number(value: Optional[float], digits: int = 3) -> str:
    """``value`` with ``digits`` significant digits in fixed point (thousands separated): never an exponent."""
    if value is None:
        return "–"
    if math.isinf(value):
        return "∞"
    if value == 0:
        return "0"
    decimals = min(max(digits - 1 - math.floor(math.log10(abs(value))), 0), 6)
    return f"{value:,.{decimals}f}"


def quantity(value: float, units: Sequence[tuple[str, float]], digits: int = 3) -> str:
    name, scale = pick_unit([value], units)
    return f"{number(value / scale, digits)} {name}"


def energy(pj: float) -> str:
    return quantity(pj, ENERGY_UNITS)


def area(um2: float) -> str:
    return quantity(um2, AREA_UNITS, 4)


def si(value: float, unit: str) -> str:
    """``1.2e9, 'S/s'`` → ``1.2 GS/s``."""
    return quantity(value, [(prefix + unit, scale) for prefix, scale in SI_PREFIXES])


def times(ratio: float) -> str:
    return "∞" if math.isinf(ratio) else f"{ratio:.2f}×"


def percent(value: Optional[float]) -> str:
    return "not measured" if value is None else f"{value:.2f} %"


def column(values: Sequence[float], units: Sequence[tuple[str, float]], digits: int = 3) -> tuple[str, list[str]]:
    """One unit for a table column: its name and the values in it."""
    name, scale = pick_unit(values, units)
    return name, [number(v / scale, digits) for v in values]


# --- plots ---------------------------------------------------------------------------------------

FIGURE_WIDTH_IN = 10.0      #: 1000 px at PLOT_DPI: page width in report.html.
PLOT_DPI = 100
PLOT_STYLE = {"font.size": 11, "axes.titlesize": 11, "axes.labelsize": 11, "xtick.labelsize": 10,
              "ytick.labelsize": 10, "legend.fontsize": 10, "figure.dpi": PLOT_DPI}   #: 10 pt = 13.9 px at least
MIN_TEXT_PX = 12


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _figure(height_in: float, rows: int = 1, cols: int = 1, **kwargs: Any) -> tuple[Any, Any]:
    fig, axes = _pyplot().subplots(rows, cols, figsize=(FIGURE_WIDTH_IN, height_in), dpi=PLOT_DPI,
                                   layout="constrained", **kwargs)
    return fig, axes


def _png(fig: Any) -> str:
    """The figure as base64 PNG, exactly FIGURE_WIDTH_IN × PLOT_DPI pixels wide (no cropping)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=PLOT_DPI, metadata={"Software": None})
    _pyplot().close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def smallest_text_px(fig: Any) -> float:
    """Size in pixels of the smallest visible text of a figure (titles, labels, ticks, legends)."""
    from matplotlib.text import Text

    fig.canvas.draw()
    sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    return min(sizes) * fig.dpi / 72


def _styled(draw: Any) -> Any:
    """Run a plot function under PLOT_STYLE, so every text it makes has the report's sizes."""
    def run(*args: Any, **kwargs: Any) -> Any:
        with _pyplot().rc_context(PLOT_STYLE):
            return draw(*args, **kwargs)
    run.__name__, run.__doc__ = draw.__name__, draw.__doc__
    return run


def _labels_every(ax: Any, names: Sequence[str], axis: str = "x", most: int = 40) -> None:
    """Tick labels for ``names``, thinned to at most ``most`` so they stay legible."""
    step = max(1, math.ceil(len(names) / most))
    ticks = list(range(0, len(names), step))
    if axis == "x":
        ax.set_xticks(ticks, [names[i] for i in ticks], rotation=45 if len(names) > 6 else 0,
                      ha="right" if len(names) > 6 else "center")
    else:
        ax.set_yticks(ticks, [names[i] for i in ticks])


def _log_axis(ax: Any, axis: str = "y") -> None:
    """A log axis whose ticks read as plain numbers (1, 2, 5, 10, 20, …), not powers of ten."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    target = ax.yaxis if axis == "y" else ax.xaxis
    (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
    target.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    target.set_major_formatter(FuncFormatter(lambda value, _: number(value, 1)))
    target.set_minor_formatter(NullFormatter())


def _plot_unit(values: Iterable[float], units: Sequence[tuple[str, float]]) -> tuple[str, float]:
    """The unit of a log-scaled plot: the smallest positive value reads at least 1."""
    positive = [v for v in values if v and math.isfinite(v) and v > 0]
    return pick_unit([min(positive)] if positive else [], units)


@_styled
def plot_histogram(histograms: dict[str, list[int]]) -> Any:
    fig, ax = _figure(3.8)
    width = 0.8 / len(histograms)
    for i, (design, counts) in enumerate(histograms.items()):
        ax.bar(np.arange(len(counts)) + (i - (len(histograms) - 1) / 2) * width, counts, width,
               label=DESIGN_LABELS[design])
    top = max(len(h) for h in histograms.values())
    ax.set_xticks(range(top))
    ax.set_xlabel("ADC bits b of a physical column (0 = skipped, never converted)")
    ax.set_ylabel("physical columns")
    ax.legend()
    return fig


@_styled
def plot_layer_energy(layers: list[str], energy_pj: dict[str, list[float]], model: str) -> Any:
    fig, ax = _figure(4.6)
    unit, scale = _plot_unit([v for values in energy_pj.values() for v in values], ENERGY_UNITS)
    width = 0.8 / len(energy_pj)
    x = np.arange(len(layers))
    for i, (design, values) in enumerate(energy_pj.items()):
        ax.bar(x + (i - (len(energy_pj) - 1) / 2) * width, np.asarray(values) / scale, width,
               label=DESIGN_LABELS[design])
    _labels_every(ax, layers)
    _log_axis(ax)
    ax.set_xlabel("layer")
    ax.set_ylabel(f"ADC energy per inference [{unit}]")
    ax.set_title(f"ADC energy per layer under the {model} model")
    ax.legend()
    return fig


@_styled
def plot_components(summary: dict, model: str, what: str) -> Any:
    """Energy per inference (``what="energy"``) or area (``"area"``) of each design, stacked by component."""
    key, units, quantity_name = {"energy": ("energy_by_component_pj", ENERGY_UNITS, "energy per inference"),
                                 "area": ("area_by_component_um2", AREA_UNITS, "area")}[what]
    totals = summary["models"][model]["totals"]
    designs = list(summary["designs"])
    components = list(totals[designs[0]][key])
    unit, scale = pick_unit([sum(totals[d][key].values()) for d in designs], units)
    fig, ax = _figure(1.2 + 0.55 * len(designs))
    left = np.zeros(len(designs))
    colors = _pyplot().get_cmap("tab10")
    for i, component in enumerate(components):
        values = np.array([totals[d][key][component] for d in designs]) / scale
        ax.barh(range(len(designs)), values, left=left, color=colors(i), label=component.replace("_", "-"))
        left += values
    ax.set_yticks(range(len(designs)), [summary["designs"][d] for d in designs])
    ax.invert_yaxis()
    ax.set_xlabel(f"{quantity_name} [{unit}] ({model} ADCs; other components from ISAAC's table)")
    ax.legend(ncols=min(6, len(components)), loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    return fig


@_styled
def plot_band(est: Estimate) -> Any:
    fig, ax = _figure(4.2)
    models = list(est.tables)
    unit, scale = _plot_unit([est.adc_energy(m, d) for m in models for d in est.designs], ENERGY_UNITS)
    width = 0.8 / len(models)
    x = np.arange(len(est.designs))
    for i, model in enumerate(models):
        ax.bar(x + (i - (len(models) - 1) / 2) * width, [est.adc_energy(model, d) / scale for d in est.designs],
               width, label=model)
    ax.set_xticks(x, [DESIGN_LABELS[d] for d in est.designs])
    _log_axis(ax)
    ax.set_ylabel(f"ADC energy per inference [{unit}]")
    ax.legend(ncols=len(models), loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    return fig


TILE_PLOT_LAYERS = 48     #: Per-tile heat maps drawn at most (the first layers); summary.json has them all.
COLUMN_PLOT_LAYERS = 12   #: Per-column heat maps drawn at most (the first layers).


def _bits_colormap(top: int) -> tuple[Any, Any]:
    """A discrete colour per bit count 1…top, grey for 0 (skipped), and its norm."""
    from matplotlib.colors import BoundaryNorm, ListedColormap

    plt = _pyplot()
    colors = ["#d9d9d9", *[plt.get_cmap("viridis")(i / max(top - 1, 1)) for i in range(top)]]
    return ListedColormap(colors), BoundaryNorm(np.arange(-0.5, top + 1.5), top + 1)


@_styled
def plot_tiles(grids: dict) -> Any:
    names = list(grids)[:TILE_PLOT_LAYERS]
    ncols = min(4, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig, axes = _figure(2.6 * nrows + 0.8, nrows, ncols, squeeze=False)
    top = max((b for g in grids.values() for row in g["max_bits"] for b in row if b), default=1)
    cmap, norm = _bits_colormap(top)
    image = None
    for index, (ax, name) in enumerate(zip(axes.flat, names)):
        grid = np.array([[-1 if b is None else b for b in row] for row in grids[name]["max_bits"]], float)
        image = ax.imshow(np.ma.masked_less(grid, 0), cmap=cmap, norm=norm, interpolation="nearest", aspect="auto")
        ax.set_title(name)
        rows, cols = grid.shape
        ax.set_xticks(range(0, cols, max(1, math.ceil(cols / 6))))
        ax.set_yticks(range(0, rows, max(1, math.ceil(rows / 5))))
        if index % ncols == 0:
            ax.set_ylabel("row block")
        if index >= len(names) - ncols:
            ax.set_xlabel("column block")
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    if image is not None:
        bar = fig.colorbar(image, ax=axes, shrink=0.9, ticks=range(top + 1))
        bar.set_label("tile's largest ADC bits (grey: empty)")
    return fig


def column_bits(config: HardwareConfig, key: str) -> np.ndarray:
    """ADC bits of layer ``key`` as ``[row block, layer-wide physical column]`` (docs/design.md §3.5):
    the tile holding logical columns from ``j0`` puts its column ``p`` at ``j0·2S + p``."""
    layer = config.layer(key)
    per = config.geometry(layer).phys_per_logical
    rows = sorted({t.row_start for t in layer.tiles})
    grid = np.zeros((len(rows), layer.matrix.cols * per), dtype=np.int64)
    for tile in layer.tiles:
        start = tile.col_start * per
        grid[rows.index(tile.row_start), start:start + len(tile.adc_bits)] = tile.adc_bits
    return grid


@_styled
def plot_column_bits(config: HardwareConfig) -> Any:
    keys = [layer.key for layer in config.layers][:COLUMN_PLOT_LAYERS]
    grids = [column_bits(config, key) for key in keys]
    top = max((int(g.max(initial=0)) for g in grids), default=1) or 1
    cmap, norm = _bits_colormap(top)
    heights = [0.9 + 0.12 * min(g.shape[0], 12) for g in grids]
    fig, axes = _figure(sum(heights) + 1.2, len(keys), 1, squeeze=False,
                        gridspec_kw={"height_ratios": heights})
    image = None
    for ax, key, grid in zip(axes.flat, keys, grids):
        image = ax.imshow(grid, cmap=cmap, norm=norm, interpolation="nearest", aspect="auto")
        ax.set_title(f"{key}: {grid.shape[0]} row block(s) × {grid.shape[1]} physical columns", loc="left")
        ax.set_yticks(range(0, grid.shape[0], max(1, math.ceil(grid.shape[0] / 4))))
        ax.set_ylabel("row block")
    axes.flat[-1].set_xlabel("physical column p of the layer, p = (j·S + s)·2 + pol")
    bar = fig.colorbar(image, ax=axes, shrink=0.9, ticks=range(top + 1))
    bar.set_label("ADC bits b (grey: skipped)")
    return fig


@_styled
def plot_sweep(sweep: dict) -> Any:
    points = sweep["global"]
    rows = sorted({p["rows"] for p in points})
    cols = sorted({p["cols"] for p in points})
    grid = np.full((len(rows), len(cols)), np.nan)
    for p in points:
        grid[rows.index(p["rows"]), cols.index(p["cols"])] = p["objective"]
    fig, ax = _figure(5.5)
    image = ax.imshow(grid, cmap="viridis_r", origin="lower", aspect="auto")
    middle = (np.nanmin(grid) + np.nanmax(grid)) / 2
    for (r, c), value in np.ndenumerate(grid):
        if not np.isnan(value):
            ax.text(c, r, f"{value:.2f}", ha="center", va="center", color="k" if value < middle else "w")
    best = sweep["best"]
    ax.scatter([cols.index(best["cols"])], [rows.index(best["rows"])], marker="s", s=900, facecolors="none",
               edgecolors="red", linewidths=2.5)
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("crossbar columns C")
    ax.set_ylabel("crossbar rows R")
    ax.set_title("objective J summed over layers, one size for every layer (red: its minimum)")
    fig.colorbar(image, label="objective J (lower is better)")
    return fig


@_styled
def plot_accuracy_energy(points: list[dict], ideal: Optional[float], model: str) -> Any:
    """Test accuracy against ADC energy per inference: one point per design or calibrated config."""
    fig, ax = _figure(4.8)
    unit, scale = _plot_unit([p["energy_pj"] for p in points], ENERGY_UNITS)
    ordered = sorted(points, key=lambda p: p["energy_pj"])
    for i, p in enumerate(ordered):
        x, y = p["energy_pj"] / scale, p["accuracy"]
        ax.scatter(x, y, marker="o" if p["kind"] == "calibrated" else "s", s=60, zorder=3)
        last = i == len(ordered) - 1
        ax.annotate(p["label"], (x, y), textcoords="offset points", xytext=(-6 if last else 6, 10 if i % 2 else -18),
                    ha="right" if last else "left")
    if ideal is not None:
        ax.axhline(ideal, color="grey", linestyle="--", label=f"ideal integer model, {ideal:.2f} %")
        ax.legend(loc="lower right")
    low, high = min(p["accuracy"] for p in points), max(p["accuracy"] for p in points)
    ax.set_ylim(low - 0.15 * max(high - low, 0.5), high + 0.15 * max(high - low, 0.5))
    _log_axis(ax, "x")
    ax.set_xlabel(f"ADC energy per inference [{unit}] ({model})")
    ax.set_ylabel(f"{ACCURACY_SPLIT} accuracy [%]")
    ax.grid(True, alpha=0.3)
    return fig


# --- sections: one structure rendered by both templates ------------------------------------------

def _section(title: str, text: list[str] | None = None, tables: list[dict] | None = None,
             figure: Optional[str] = None, figures: Optional[list[dict]] = None) -> dict:
    """A report section; ``figures`` are ``{"alt", "png"}``, ``figure`` a single PNG titled like the section."""
    shown = list(figures or []) + ([{"alt": title, "png": figure}] if figure else [])
    return {"title": title, "text": text or [], "tables": tables or [], "figures": shown}


def _table(header: list[str], rows: list[list[Any]], caption: str = "") -> dict:
    return {"caption": caption, "header": header, "rows": [[str(cell) for cell in row] for row in rows]}


def _plot(alt: str, figure: Any, plots: bool) -> list[dict]:
    """``[{"alt", "png"}]`` for a figure made by calling ``figure()``, or nothing without plots."""
    return [{"alt": alt, "png": _png(figure())}] if plots else []


def build_sections(summary: dict, est: Estimate, plots: bool = True, config: Optional[HardwareConfig] = None) -> list[dict]:
    """The report's sections in reading order; ``config`` (the folder's) adds the per-column heat map."""
    sections = [_design_point_section(summary), _accuracy_section(summary)]
    sections += _designs_sections(summary, est, plots)
    sections.append(_calibration_section(summary, plots))
    sections += _model_sections(summary, est, plots)
    sections.append(_layer_section(summary, est, plots))
    sections.append(_bits_section(summary, plots, config))
    sections.append(_tiles_section(summary, plots))
    sections.append(_latency_section(summary))
    sections.append(_periphery_section(summary["periphery"]))
    sections.append(_sweep_section(summary["sweep"], plots, summary["design_point"]))
    if summary["warnings"]:
        sections.append(_section("Warnings", summary["warnings"]))
    return sections


def _design_point_section(summary: dict) -> dict:
    point = summary["design_point"]
    sizes = point["crossbar_sizes"]
    size = next(iter(sizes)) if len(sizes) == 1 else "; ".join(f"{s} ({len(keys)} layer{'s' * (len(keys) > 1)})"
                                                              for s, keys in sizes.items())
    listed = lambda values: "/".join(map(str, values))    # noqa: E731 - a one-line formatter
    rows = [["crossbar (R × C)", size + ("" if len(sizes) == 1 else ", chosen per layer (--search layer)")],
            ["cell bits c", point["cell_bits"]], ["DAC bits v (input bits per cycle)", point["dac_bits"]],
            ["weight bits wb", listed(point["weight_bits"])], ["input bits a", listed(point["input_bits"])],
            ["signed weights", point["signed"]],
            ["ADCs per crossbar", listed(point["adcs_per_crossbar"])],
            ["uniform (full) resolution", listed(point["uniform_bits"]) + " b"]]
    rows += [[f"crossbar {name.replace('_', ' ')}", json.dumps(value) if isinstance(value, (dict, list)) else value]
             for name, value in point["crossbar_extra"].items()]
    periphery = point["periphery"]
    interface = ("ADC macro (asynchronous SAR, started once per conversion)" if periphery["adc_interface"] == "macro"
                 else "synchronous SAR controller (one comparison per clock)")
    rows += [["ADC interface", interface],
             ["digital clock", si(periphery["clock_hz"], "Hz")],
             ["conversion", f"{point['conversion_cycles']} clock cycle{'s' * (point['conversion_cycles'] > 1)}"
                            + (f" (macro at {si(periphery['adc_sample_rate_hz'], 'S/s')})"
                               if periphery["adc_interface"] == "macro" else " per SAR step")],
             ["AXI4-Stream data width", f"{periphery['stream_bits']} bits"],
             ["ADC sample rate of the cost models", si(point["sample_rate_hz"], "S/s") + " per ADC"],
             ["technology node", f"{point['tech_nm']:g} nm"],
             ["layers, crossbar tiles", f"{point['layers']}, {point['tiles']:,}"]]
    model = point["model"]
    if model:
        rows.append(["model", f"{model['path']} ({model['format']}{', ' + model['arch'] if model['arch'] else ''}; "
                              f"sha256 {model['sha256'][:12]}…)"])
    record = point["calibration"]
    rows.append(["ADC bits of hw_config.json", "lossless per column (the analysis), unless edited" if record is None
                 else f"calibrated by codesign calibrate, budget {record['budget']:g} on {record['data']}"])
    return _section("Design point", ["What every figure below is for (docs/design.md §3 defines the symbols)."],
                    [_table(["quantity", "value"], rows)])


def _accuracy_section(summary: dict) -> dict:
    acc = summary["accuracy"]
    title = f"Accuracy ({acc['split']} split)"
    if acc["source"] is None:
        return _section(title, [f"Accuracy {acc['how']}."])
    rows = [["float (the model file's weights, float activations)", percent(acc["float"]), ""],
            ["ideal (integer weights and activations, exact products)", percent(acc["ideal"]), ""]]
    for design, label in summary["designs"].items():
        if design == "calibrated":
            continue
        entry = acc["designs"].get(design)
        rows.append([f"crossbar: {label}", percent(entry["accuracy"] if entry else None),
                     entry["note"] if entry else "run 'codesign report DIR --data SPEC'"])
    for entry in acc["calibrated"]:
        rows.append([f"crossbar: per-column calibrated, {entry['label']}", percent(entry["accuracy"]), entry["file"]])
    text = [f"Source: {acc['source']}" + (f" ({acc['data']})" if acc["source"].startswith("recorded") else "") + "."]
    if acc["how"]:
        text.append(acc["how"][0].upper() + acc["how"][1:] + ".")
    return _section(title, text, [_table(["model / design", "top-1 accuracy", "how"], rows)])


def _designs_sections(summary: dict, est: Estimate, plots: bool) -> list[dict]:
    model = summary["default_model"]
    settings = summary["settings"]
    designs = list(summary["designs"])
    totals = summary["models"][model]["totals"]
    ratios = summary["models"][model]
    adc_e_unit, adc_e = column([totals[d]["adc_energy_pj"] for d in designs], ENERGY_UNITS)
    adc_a_unit, adc_a = column([totals[d]["adc_area_um2"] for d in designs], AREA_UNITS, 4)
    e_unit, e = column([totals[d]["energy_pj"] for d in designs], ENERGY_UNITS)
    a_unit, a = column([totals[d]["area_um2"] for d in designs], AREA_UNITS, 4)
    t_unit, t = column([totals[d]["latency_ns"] for d in designs], TIME_UNITS, 4)
    headline = [[summary["designs"][d], adc_e[i], times(ratios["vs_uniform"][d]["adc_energy"]),
                 times(ratios["vs_per_crossbar"][d]["adc_energy"]), adc_a[i], e[i], a[i],
                 f"{totals[d]['conversions']:,}", t[i]] for i, d in enumerate(designs)]
    text = [f"ADC model of this table: {model} — {summary['adc_models'][model]['source']}; "
            f"{summary['adc_models'][model]['conditions']}; {summary['adc_models'][model]['scaling']}.",
            f"Technology node {settings['tech_nm']:g} nm, {si(settings['sample_rate_hz'], 'S/s')} per ADC, "
            f"latency from the periphery's clock cycles at {si(summary['config']['periphery']['clock_hz'], 'Hz')} "
            f"({summary['config']['periphery']['adc_interface']} ADCs). Energies are per inference; conversions = output "
            f"positions × input cycles × converted columns (docs/cost-models.md §1). Totals add DAC, "
            f"sample-and-hold, array, shift-add and registers from ISAAC's table (see Components)."]
    text += _adc_area_note(summary)
    if "calibrated" not in designs:
        text.append("Per-column calibrated: not in this report. To add it, run 'codesign calibrate --config "
                    "DIR/hw_config.json --data SPEC --budget 1 --out DIR/calibrated.json' (or --budgets "
                    "0.25,0.5,1,2 for several), then 'codesign report DIR --calibrated DIR/calibrated.json'.")
    table = _table(["design", f"ADC energy [{adc_e_unit}]", "vs uniform", "vs per-crossbar", f"ADC area [{adc_a_unit}]",
                    f"total energy [{e_unit}]", f"total area [{a_unit}]", "conversions", f"latency [{t_unit}]"],
                   headline)
    compared = _section("Designs compared", text, [table])

    components = list(totals[designs[0]]["energy_by_component_pj"])
    tables = []
    for key, units, what, digits in (("energy_by_component_pj", ENERGY_UNITS, "energy per inference", 3),
                                     ("area_by_component_um2", AREA_UNITS, "area", 4)):
        unit, scale = pick_unit([v for d in designs for v in totals[d][key].values()], units)
        tables.append(_table(["design", *[c.replace("_", "-") for c in components], "total"],
                             [[summary["designs"][d], *[number(totals[d][key][c] / scale, digits) for c in components],
                               number(sum(totals[d][key].values()) / scale, digits)] for d in designs],
                             f"{what} by component [{unit}] ({model} ADCs)"))
    figures = (_plot("energy per inference by component", lambda: plot_components(summary, model, "energy"), plots)
               + _plot("area by component", lambda: plot_components(summary, model, "area"), plots))
    breakdown = _section("Energy and area by component",
                         ["Each design's energy per inference and area, split into its components. The digital "
                          "periphery generated by codesign is measured separately (Digital periphery, below)."],
                         tables, figures=figures)
    return [compared, breakdown]


def _adc_area_note(summary: dict) -> list[str]:
    """Why per-crossbar and per-column ADC areas coincide, when they do (docs/cost-models.md §1.3)."""
    totals = summary["models"][summary["default_model"]]["totals"]
    crossbar, per_column = totals["per_crossbar"]["adc_area_um2"], totals["per_column"]["adc_area_um2"]
    if not math.isclose(crossbar, per_column, rel_tol=1e-9):
        return []
    counts = summary["design_point"]["adcs_per_crossbar"]
    adcs = "one ADC" if counts == [1] else "/".join(map(str, counts)) + " ADCs"
    return [f"ADC area is the same for per-crossbar and per-column: with {adcs} per crossbar, each ADC "
            f"converts a group of columns one after another and must be sized for the largest resolution among "
            f"them, which is the tile's largest lossless bits in both designs. Per-column bits save conversion "
            f"energy and time, not ADC area, unless each ADC serves fewer columns (--adcs; docs/cost-models.md §1.3)."]


def _calibration_section(summary: dict, plots: bool) -> dict:
    title = "Calibrated designs: accuracy against ADC energy"
    rows = summary["calibrations"]
    if not rows:
        return _section(title, ["No calibrated config given. Run 'codesign calibrate --config DIR/hw_config.json "
                                "--data SPEC --budgets 0.25,0.5,1,2 --out DIR/calibrated.json' (one config per "
                                "budget), then 'codesign report DIR --calibrated DIR/calibrated-budget*.json "
                                "--data SPEC'."])
    model = summary["default_model"]
    totals = summary["models"][model]["totals"]
    acc = summary["accuracy"]
    measured = {entry["file"]: entry["accuracy"] for entry in acc["calibrated"]}
    unit, energies = column([r["adc_energy_pj"][model] for r in rows] + [totals["per_column"]["adc_energy_pj"]],
                            ENERGY_UNITS)
    table = [[r["label"], r["file"], "lossless" if r["tolerance"] is None and r["budget"] is not None
              else number(r["tolerance"]) if r["tolerance"] is not None else "–",
              f"{r['adc_bits']:,} of {r['adc_bits_lossless']:,}", energies[i], times(r["vs_uniform"][model]),
              times(r["vs_per_column"][model]), percent(measured.get(r["file"]))] for i, r in enumerate(rows)]
    text = [f"ADC energy per inference under {model}; accuracy on the {acc['split']} split "
            f"({acc['source'] or acc['how']}). The first file is the 'per-column "
            f"calibrated' design of the tables above."]
    short = {"uniform": "uniform", "per_crossbar": "per-crossbar", "per_column": "per-column lossless"}
    points = [{"label": short[d], "kind": d, "energy_pj": totals[d]["adc_energy_pj"],
               "accuracy": acc["designs"][d]["accuracy"]} for d in ("uniform", "per_crossbar", "per_column")
              if d in acc["designs"]]
    points += [{"label": r["label"], "kind": "calibrated", "energy_pj": r["adc_energy_pj"][model],
                "accuracy": measured[r["file"]]} for r in rows if measured.get(r["file"]) is not None]
    figures = _plot("accuracy against ADC energy", lambda: plot_accuracy_energy(points, acc["ideal"], model),
                    plots and len(points) >= 2)
    if len(points) < 2:
        text.append("The accuracy-against-energy plot needs accuracies: run 'codesign report DIR --data SPEC "
                    "--calibrated …', or give configs written by 'codesign calibrate' (they record theirs).")
    return _section(title, text, [_table(["config", "file", "τ", "ADC bits (Σ over columns)", f"ADC energy [{unit}]",
                                          "vs uniform", "vs per-column lossless", "accuracy"], table)],
                    figures=figures)


def _model_sections(summary: dict, est: Estimate, plots: bool) -> list[dict]:
    designs = list(summary["designs"])
    band_values = [v for b in summary["band"].values() for v in (b["adc_energy_pj"]["min"], b["adc_energy_pj"]["max"])]
    unit, scale = pick_unit(band_values, ENERGY_UNITS)
    band_rows = [[summary["designs"][d],
                  f"{number(b['adc_energy_pj']['min'] / scale)} ({b['adc_energy_pj']['min_model']})",
                  number(b["adc_energy_pj"]["median"] / scale),
                  f"{number(b['adc_energy_pj']['max'] / scale)} ({b['adc_energy_pj']['max_model']})",
                  f"{times(b['vs_uniform']['min'])} – {times(b['vs_uniform']['max'])} "
                  f"(median {times(b['vs_uniform']['median'])})"]
                 for d, b in summary["band"].items()]
    m_unit, m_scale = pick_unit([summary["models"][m]["totals"][d]["adc_energy_pj"] for m in est.tables
                                 for d in designs], ENERGY_UNITS)
    per_model = [[m, *[number(summary["models"][m]["totals"][d]["adc_energy_pj"] / m_scale) for d in designs],
                  times(summary["models"][m]["vs_uniform"]["per_column"]["adc_energy"]),
                  times(summary["models"][m]["vs_per_crossbar"]["per_column"]["adc_energy"])] for m in est.tables]
    band = _section(
        "ADC-model band",
        ["Published ADC models disagree by 10–20× on the same conversion (docs/cost-models.md §2.6); the band "
         "shows every model's figure."],
        [_table(["design", f"min [{unit}]", f"median [{unit}]", f"max [{unit}]", "saving vs uniform"], band_rows,
                "ADC energy per inference across the five models"),
         _table(["model", *[f"{summary['designs'][d]} [{m_unit}]" for d in designs], "per-column vs uniform",
                 "per-column vs per-crossbar"], per_model, "ADC energy per inference per model")],
        figures=_plot("ADC energy per inference of each design under each ADC model", lambda: plot_band(est), plots))

    sources = [[m, d["source"], d["conditions"], d["scaling"],
                "; ".join(f"{b} b: {number(v['energy_pj'])} pJ, {number(v['area_um2'], 4)} µm²"
                          for b, v in d["per_bits"].items())]
               for m, d in summary["adc_models"].items()]
    models = _section(
        "ADC models and sources",
        [f"Technology scaling: {summary['technology_scaling']['source']} (energy at V_dd = 0.8 V). Every model, "
         f"its constants and its full source: docs/cost-models.md §2."],
        [_table(["model", "source", "conditions", "scaling path", "energy per conversion and area per ADC, "
                                                                    "per resolution in use"], sources)])

    components = [[name, f"{number(c['energy_pj'], 4)} pJ per {c['energy_per']}",
                   f"{number(c['area_um2'], 4)} µm² per {c['area_per']}", c["derivation"], c["scaling"]]
                  for name, c in summary["components"].items()]
    table = _section("Components (ISAAC table)", [f"Source: {ISAAC_CITATION} (docs/cost-models.md §4)."],
                     [_table(["component", "energy", "area", "derivation", "scaling"], components)])
    return [band, models, table]


def _layer_section(summary: dict, est: Estimate, plots: bool) -> dict:
    model = summary["default_model"]
    designs = list(summary["designs"])
    per_layer = summary["models"][model]["layers"]
    energies = {d: [per_layer[layer][d]["adc_energy_pj"] for layer in est.layers] for d in designs}
    unit, scale = pick_unit([v for values in energies.values() for v in values], ENERGY_UNITS)
    rows = []
    for i, layer in enumerate(est.layers):
        per = per_layer[layer]
        rows.append([layer, *[number(energies[d][i] / scale) for d in designs],
                     times(per["uniform"]["adc_energy_pj"] / per["per_column"]["adc_energy_pj"])
                     if per["per_column"]["adc_energy_pj"] else "∞"])
    return _section(f"Per-layer ADC energy ({model})", [],
                    [_table(["layer", *[f"{summary['designs'][d]} [{unit}]" for d in designs], "per-column vs uniform"],
                            rows)],
                    figures=_plot("ADC energy per layer", lambda: plot_layer_energy(est.layers, energies, model), plots))


def _bits_section(summary: dict, plots: bool, config: Optional[HardwareConfig]) -> dict:
    hist = summary["bits_histogram"]
    width = max(len(h) for h in hist.values())
    layers = summary["design_point"]["layers"]
    text = ["The heat map shows every physical column's ADC bits, layer by layer (rows: row blocks of R matrix "
            "rows; columns: the layer's physical columns in the order of docs/design.md §3.5)"
            + (f"; the first {COLUMN_PLOT_LAYERS} of {layers} layers." if layers > COLUMN_PLOT_LAYERS else ".")]
    figures = _plot("ADC bits per physical column: histogram", lambda: plot_histogram(hist), plots)
    if config is not None:
        figures += _plot("ADC bits of every physical column, per layer", lambda: plot_column_bits(config), plots)
    return _section("ADC bits per physical column", text if config is not None else [],
                    [_table(["bits", *[f"{DESIGN_LABELS[d]} (columns)" for d in hist]],
                            [[b, *[h[b] if b < len(h) else 0 for h in hist.values()]] for b in range(width)])],
                    figures=figures)


def _tiles_section(summary: dict, plots: bool) -> dict:
    levels = summary["dub_levels"]
    return _section(
        "Tiles per D.U.B. level and per-tile bits",
        ["Level k: the tile's lossless bits are k below the layer's uniform resolution (D.U.B., docs/design.md §8.1). "
         "The heat maps show each tile's largest ADC bits (its per-crossbar resolution) on the layer's grid of row "
         "blocks × column blocks"
         + (f", for the first {TILE_PLOT_LAYERS} layers." if len(summary["tiles"]) > TILE_PLOT_LAYERS else ".")],
        [_table(["level k", "tiles"], [[k, n] for k, n in enumerate(levels["levels"])] + [["empty", levels["empty"]]])],
        figures=_plot("largest ADC bits of each tile, per layer", lambda: plot_tiles(summary["tiles"]), plots))


def _latency_section(summary: dict) -> dict:
    model = summary["default_model"]
    designs = list(summary["designs"])
    totals = summary["models"][model]["totals"]
    unit, values = column([totals[d]["latency_ns"] for d in designs], TIME_UNITS, 4)
    steps = [[summary["designs"][d], f"{totals[d]['latency_cycles']:,}", values[i],
              times(summary["models"][model]["vs_uniform"][d]["latency"])] for i, d in enumerate(designs)]
    return _section(
        "Latency (periphery clock cycles)",
        ["Each design is timed by the cycle model of the generated periphery (docs/periphery.md §Timing): a "
         "layer's MVMs run back to back on each tile, its first taking the tile's latency and each further one "
         "its period; tiles run in parallel (the slowest counts), layers one after another."],
        [_table(["design", "clock cycles per inference", f"time [{unit}]", "vs uniform"], steps)])


# --- periphery (codesign.synth): area breakdown, scaled area, FPGA timing, design total ----------------

#: ISAAC-table rows that the synthesized periphery replaces in the design total: its shift-add
#: and input/output registers are in the generated RTL (with the SAR logic, sequencer and config).
ISAAC_DIGITAL = ("shift_add", "registers")


def periphery_design_total(est: Estimate, status: dict, model: str, design: str = "per_column") -> Optional[dict]:
    """The total area of ``design`` with the measured periphery (scaled to the report's node) in
    place of ISAAC's digital rows; ``None`` when the periphery was not measured for every tile."""
    if not status.get("totals"):
        return None
    by_component = est.total(model, design).area_um2
    analog = {k: v for k, v in by_component.items() if k not in ISAAC_DIGITAL}
    replaced = {k: by_component[k] for k in ISAAC_DIGITAL}
    scaled = status["totals"]["scaled"]
    return {"design": design, "adc_model": model, "node_nm": status["scaling"]["to_nm"],
            "analog_by_component_um2": analog, "analog_um2": sum(analog.values()),
            "periphery_macro_um2": scaled["area_macro_um2"], "periphery_flops_um2": scaled["area_um2"],
            "total_um2": sum(analog.values()) + scaled["area_macro_um2"],
            "total_flops_um2": sum(analog.values()) + scaled["area_um2"],
            "isaac_digital_by_component_um2": replaced, "isaac_total_um2": sum(by_component.values())}


def _periphery_section(status: Optional[dict]) -> dict:
    title = "Digital periphery measured from the RTL (Yosys, nextpnr)"
    if status is None or not status["measured"]:
        reason = status["reason"] if status else "synthesis was not requested"
        hint = status["how_to_enable"] if status else "run 'codesign report DIR'"
        return _section(title, [f"Periphery area not measured: {reason}.", f"To enable: {hint}."])
    node = status["scaling"]["to_nm"]
    pricing = status["memory_pricing"]
    notes = [f"{status['label']}. Yosys {status['yosys']}, Liberty {status['liberty']}. Method and sources: "
             f"docs/periphery-cost.md.",
             f"Inferred memories (Yosys $mem_v2) are priced two ways: as an SRAM macro at "
             f"{pricing['macro_um2_per_bit']:.2f} µm²/bit, the density of OpenRAM's sky130_sram_2kbyte_1rw_32x512_8 "
             f"(bit cells {pricing['bitcell_um2']:.2f} µm² each, sky130_fd_bd_sram__sram_sp_cell_opt1, are the lower "
             f"bound; summary.json and docs/periphery-cost.md give the sources and the overhead assumption), and "
             f"as synthesized flip-flops with their write decode and read multiplexers.",
             f"Scaled to {node:g} nm with the area factor ×{status['scaling']['area_factor']:.3g} from 130 nm "
             f"({status['scaling']['source']}), the rule the cost model applies to ISAAC's digital components."]
    tables = [_periphery_module_table(status["modules"])]
    if status["totals"] is not None:
        notes.append(f"All {status['totals']['tiles']} tiles together: {area(status['totals']['sky130']['area_macro_um2'])} "
                     f"in sky130 cells with memories as macros, {area(status['totals']['scaled']['area_macro_um2'])} "
                     f"scaled to {node:g} nm (one module instance per crossbar tile, counted from rtl/manifest.json).")
        tables.append(_periphery_totals_table(status["totals"], node))
    fpga = status["fpga"]
    if fpga["measured"]:
        notes.append(f"FPGA timing: {fpga['method']}. nextpnr-ecp5 {fpga['nextpnr']}, target "
                     f"{fpga['target_mhz']:g} MHz, fixed seed.")
        tables.append(_periphery_fpga_table(status["modules"]))
    else:
        notes.append(f"FPGA timing not measured: {fpga['reason']}. To enable: {fpga['how_to_enable']}.")
    if status.get("design_total"):
        tables.append(_periphery_design_table(status["design_total"]))
    return _section(title, notes, tables)


def _periphery_module_table(modules: list[dict]) -> dict:
    rows = [[m["module"], "?" if m["tiles"] is None else m["tiles"], area(m["logic_um2"]), area(m["flops_um2"]),
             _memories(m["memories"]), area(m["memory_macro_um2"]), area(m["memory_flops_um2"]),
             area(m["area_macro_um2"]), area(m["area_um2"]), f"{m['transistors']:,}", m["ltp"]]
            for m in modules]
    return _table(["module", "tiles", "logic", "flip-flops", "memories", "memory as macro", "memory as flip-flops",
                   "module, memory as macro", "module, memory as flip-flops", "transistors (est.)",
                   "ltp (gates)"], rows,
                  "Per module instance, sky130 cells; logic and flip-flops exclude the inferred memories; ltp = "
                  "longest flip-flop to flip-flop path in generic gates (Yosys ltp -noff)")


def _memories(memories: list[dict]) -> str:
    if not memories:
        return "none inferred"
    return "; ".join(f"{m['name']} {m['words']}×{m['width']} b ({m['read_ports']}R {m['write_ports']}W"
                     + ("" if m["registered_read"] else ", unregistered read: no SRAM macro fits") + ")"
                     for m in memories)


PERIPHERY_ROWS = (("logic_um2", "logic (outside memories)"), ("flops_um2", "flip-flops (outside memories)"),
                  ("memory_macro_um2", "memories as SRAM macros"),
                  ("memory_bitcells_um2", "memories, bit cells only (lower bound)"),
                  ("memory_flops_um2", "memories as flip-flops"),
                  ("area_macro_um2", "periphery, memories as macros"),
                  ("area_um2", "periphery, memories as flip-flops"))


def _periphery_totals_table(totals: dict, node: float) -> dict:
    rows = [[label, area(totals["sky130"][key]), area(totals["scaled"][key])] for key, label in PERIPHERY_ROWS]
    return _table(["all tiles", "sky130 (130 nm)", f"scaled to {node:g} nm"], rows,
                  f"Area × tiles served, {totals['tiles']} tiles")


def _periphery_fpga_table(modules: list[dict]) -> dict:
    rows = []
    for m in modules:
        f = m["fpga"]
        path = f["critical_path"]
        where = {(False, False): "inside the module", (True, False): "input port → module flip-flop",
                 (False, True): "module flip-flop → output port",
                 (True, True): "input port → output port"}[path["from_input_port"], path["to_output_port"]]
        use = f["utilization"]
        rows.append([m["module"], f["part"], f"{f['fmax_mhz']:.1f} MHz", f"{path['delay_ns']:.2f} ns, {where}",
                     f["cells"].get("LUT4", 0), f["cells"].get("TRELLIS_FF", 0), f["cells"].get("CCU2C", 0),
                     f["cells"].get("TRELLIS_DPR16X4", 0), f["cells"].get("DP16KD", 0),
                     f["cells"].get("MULT18X18D", 0),
                     ", ".join(f"{k} {v['used']:,}/{v['available']:,} ({v['used'] / v['available']:.0%})"
                               for k, v in use.items() if k in ("TRELLIS_COMB", "TRELLIS_FF", "TRELLIS_RAMW", "DP16KD"))])
    return _table(["module", "part", "fmax", "critical path", "LUT4", "FF", "CCU2C", "LUTRAM 16×4", "EBR", "DSP",
                   "device use (with boundary flip-flops)"], rows,
                  "ECP5 place and route; cell counts are the module's own, device use includes the registered "
                  "boundary (one flip-flop per port bit)")


def _periphery_design_table(total: dict) -> dict:
    node = f"{total['node_nm']:g} nm"
    rows = [[f"{name} ({total['adc_model']} ADC model)" if name == "adc" else name, area(value)]
            for name, value in total["analog_by_component_um2"].items()]
    rows += [[f"synthesized periphery, memories as macros, scaled to {node}", area(total["periphery_macro_um2"])],
             ["total area with the periphery", area(total["total_um2"])],
             ["(total with memories as flip-flops)", area(total["total_flops_um2"])],
             ["(ISAAC-table rows this replaces: " + ", ".join(total["isaac_digital_by_component_um2"]) + ")",
              area(sum(total["isaac_digital_by_component_um2"].values()))],
             ["(ISAAC-table total of the same design)", area(total["isaac_total_um2"])]]
    return _table([f"{DESIGN_LABELS[total['design']]} design, {node}", "area"], rows,
                  "Total area with the measured periphery in place of ISAAC's shift-add and register rows")


def _sweep_section(sweep: Optional[dict], plots: bool, point: dict) -> dict:
    title = "Crossbar-size sweep"
    if sweep is None:
        return _section(title, ["No sweep in this folder: run 'codesign generate --search --out DIR' "
                                "(writes DIR/search.json), then 'codesign report DIR'."])
    best = sweep["best"]
    e_unit, e_scale = pick_unit([p["energy_pj"] for p in sweep["global"]], ENERGY_UNITS)
    a_unit, a_scale = pick_unit([p["area_um2"] for p in sweep["global"]], AREA_UNITS)
    rows = [[p["rows"], p["cols"], f"{p['tiles']:,}", number(p["energy_pj"] / e_scale), number(p["area_um2"] / a_scale, 4),
             f"{p['objective']:.3f}"] for p in sweep["global"]]
    tables = [_table(["rows", "cols", "tiles", f"energy [{e_unit}]", f"area [{a_unit}]", "J"], rows,
                     "every layer on the same size, summed over layers")]
    per_layer = {key: size for size, keys in point["crossbar_sizes"].items() for key in keys}
    if len(point["crossbar_sizes"]) > 1 or sweep.get("mode") == "layer":
        chosen = sweep.get("best_per_layer", {})
        tables.insert(0, _table(["layer", "crossbar (R × C)", "tiles", "J of the layer"],
                                [[key, size, f"{chosen[key]['tiles']:,}" if key in chosen else "–",
                                  f"{chosen[key]['objective']:.3f}" if key in chosen else "–"]
                                 for key, size in per_layer.items()], "the size each layer uses (--search layer)"))
        text = [f"Objective: {sweep['objective']}. This folder gives each layer its own crossbar (--search layer): "
                f"the first table lists them. For comparison, the best single size for every layer would be "
                f"{best['rows']}×{best['cols']} (second table, heat map)."]
    else:
        text = [f"Objective: {sweep['objective']}. Best size for every layer: {best['rows']}×{best['cols']} "
                f"(this folder's crossbar)."]
    return _section(title, text, tables, figures=_plot("objective J of each crossbar size", lambda: plot_sweep(sweep),
                                                        plots))


# --- writing -------------------------------------------------------------------------------------

def _render(name: str, **context: Any) -> str:
    from .params import environment

    return environment().get_template(name).render(**context)


def load_folder(folder: Path) -> tuple[HardwareConfig, Optional[dict]]:
    """``DIR/hw_config.json`` and ``DIR/search.json`` (if present)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CodesignError(f"{folder} is not a folder; give the output folder of 'codesign generate'")
    path = folder / "hw_config.json"
    if not path.is_file():
        raise CodesignError(f"no hw_config.json in {folder}: run 'codesign generate --out {folder}' first")
    config = load_config(path)
    sweep_path = folder / "search.json"
    sweep = read_json(sweep_path, "rerun 'codesign generate --search'") if sweep_path.is_file() else None
    if sweep is not None:
        try:
            _Sweep.model_validate(sweep)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise CodesignError(f"{sweep_path} is not a sweep codesign wrote ({'.'.join(map(str, err['loc']))}: "
                                f"{err['msg']}); rerun 'codesign generate --search'") from None
    return config, sweep


class _SweepPoint(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    rows: StrictInt = Field(ge=1)
    cols: StrictInt = Field(ge=1)
    tiles: StrictInt = Field(ge=0)
    energy_pj: float
    area_um2: float
    objective: float


class _Sweep(BaseModel):
    """The parts of ``search.json`` the report reads."""

    model_config = ConfigDict(extra="allow")

    objective: str
    points: list[_SweepPoint] = Field(alias="global", min_length=1)
    best: _SweepPoint

    @model_validator(mode="after")
    def _best_is_a_point(self) -> "_Sweep":
        if (self.best.rows, self.best.cols) not in {(p.rows, p.cols) for p in self.points}:
            raise ValueError("the best size is not among the sizes swept")
        return self


def write_report(folder: Path, settings: Optional[CostSettings] = None,
                 calibrated: Optional[Path | Sequence[Path]] = None, synthesize: bool = True,
                 fpga: bool = False, data: Optional[str] = None) -> dict:
    """Write ``folder/report/`` from ``folder/hw_config.json``; returns the summary.

    ``calibrated`` is one or more calibrated ``hw_config.json`` files with the same tiles (the first
    is the "per-column calibrated" design of the tables; all are compared in accuracy against ADC
    energy); ``data`` (a ``--data`` spec) measures the accuracies (:func:`measure_accuracy`);
    ``synthesize=False`` skips Yosys (the report then says the periphery was not measured); ``fpga``
    adds the ECP5 place and route (``codesign report`` does, ``codesign generate`` does not: a minute
    or more per module). ``folder`` is locked meanwhile and ``report/`` replaced all at once
    (:func:`codesign.files.output_folder`).
    """
    from .files import output_folder

    paths = [Path(calibrated)] if isinstance(calibrated, (str, Path)) else [Path(p) for p in calibrated or []]
    load_folder(folder)
    with output_folder(folder, "report", part="report", inputs=paths, flag="report of") as out:
        return render_report(folder, out, settings, paths, synthesize, fpga, data)


def render_report(folder: Path, out: Path, settings: Optional[CostSettings] = None,
                  calibrated: Sequence[Path] = (), synthesize: bool = True, fpga: bool = False,
                  data: Optional[str] = None) -> dict:
    """Write the report files of ``folder`` into the existing folder ``out``; returns the summary
    (arguments as :func:`write_report`)."""
    from .synth import periphery

    folder = Path(folder)
    settings = settings or CostSettings()
    config, sweep = load_folder(folder)
    paths = [Path(p) for p in calibrated]
    others = [(path, load_config(path)) for path in paths]
    status = periphery(folder / "rtl", settings.tech_nm, fpga) if synthesize else None
    summary, est = build_summary(config, settings, others[0][1] if others else None, sweep, status,
                                 str(paths[0]) if paths else None)
    summary["calibrations"] = calibration_sweep(config, others, settings)
    summary["accuracy"] = measure_accuracy(folder, config, others, data)
    title = f"codesign report — {config.model.path if config.model else folder.name}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(_finite(summary), indent=2, allow_nan=False) + "\n")
    (out / "report.md").write_text(_render("report.md.j2", title=title,
                                           sections=build_sections(summary, est, plots=False, config=config)))
    (out / "report.html").write_text(_render("report.html.j2", title=title,
                                             sections=build_sections(summary, est, config=config)))
    return summary


def periphery_headline(status: Optional[dict]) -> str:
    """The periphery's line(s) for the terminal."""
    if not (status and status["measured"]):
        return f"periphery area not measured: {status['reason'] if status else 'synthesis skipped'}"
    lines = []
    for m in status["modules"]:
        timing = f", {m['fpga']['fmax_mhz']:.1f} MHz on {m['fpga']['part']}" if m["fpga"] else ""
        lines.append(f"periphery {m['module']} (Yosys, pre-layout, sky130): {area(m['area_macro_um2'])} with memories "
                     f"as macros, {area(m['area_um2'])} as flip-flops, {m['transistors']:,} transistors, "
                     f"ltp {m['ltp']}{timing}")
    if status["totals"] is not None:
        lines.append(f"periphery, all {status['totals']['tiles']} tiles: {area(status['totals']['sky130']['area_macro_um2'])}"
                     f" in sky130, {area(status['totals']['scaled']['area_macro_um2'])} scaled to "
                     f"{status['scaling']['to_nm']:g} nm (memories as macros)")
    return "\n".join(lines)


def _finite(value: Any) -> Any:
    """JSON-ready copy: numpy scalars to Python numbers, infinite ratios (nothing converted) to null."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def headline(summary: dict) -> str:
    """A few lines for the terminal."""
    model = summary["default_model"]
    data = summary["models"][model]
    lines = [f"ADC energy per inference ({model}):"]
    for design, label in summary["designs"].items():
        lines.append(f"  {label:<32} {energy(data['totals'][design]['adc_energy_pj']):>12}  "
                     f"{times(data['vs_uniform'][design]['adc_energy']):>8} vs uniform  "
                     f"{times(data['vs_per_crossbar'][design]['adc_energy']):>8} vs per-crossbar")
    band = summary["band"]["per_column"]["vs_uniform"]
    lines.append(f"per-column vs uniform across {len(band['by_model'])} ADC models: {times(band['min'])} "
                 f"({band['min_model']}) – {times(band['max'])} ({band['max_model']}), "
                 f"median {times(band['median'])}")
    lines.append(periphery_headline(summary["periphery"]))
    return "\n".join(lines)
