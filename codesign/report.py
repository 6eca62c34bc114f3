"""``codesign report DIR``: ``DIR/report/{report.html, report.md, summary.json}``.

The report prices the designs of ``DIR/hw_config.json`` (:mod:`codesign.cost`) under every ADC
model, shows the band they span, measures the periphery RTL in ``DIR/rtl/`` with Yosys
(:mod:`codesign.synth`) and plots the ADC bits, per-layer energy, per-tile bits, the crossbar-size
sweep (``DIR/search.json``) and the ADC-model band. ``summary.json`` holds every figure with its
model name and source; ``report.html`` is self-contained (plots embedded as base64 PNG).
"""

from __future__ import annotations

import base64
import io
import json
import math
from pathlib import Path
from typing import Any, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, model_validator

from .config import HardwareConfig, load_config
from .cost import (COMPONENTS, DESIGN_LABELS, ISAAC_CITATION, ISAAC_NODE_NM, SCALING_SOURCE, CostSettings,
                   Estimate, area_scale, dub_levels, energy_scale, estimate, scaling_note)
from .errors import CodesignError
from .files import read_json

SCHEMA = "codesign-report/1"
FILES = ("report.html", "report.md", "summary.json")


# --- the summary (everything machine-readable) --------------------------------------------------

def build_summary(config: HardwareConfig, settings: CostSettings, calibrated: Optional[HardwareConfig] = None,
                  sweep: Optional[dict] = None, periphery: Optional[dict] = None,
                  calibrated_path: Optional[str] = None) -> tuple[dict, Estimate]:
    """All figures of the report as JSON-ready data, and the :class:`~codesign.cost.Estimate` behind them."""
    est = estimate(config, calibrated, settings)
    step = settings.sar_step_ns
    models = {}
    for model in est.tables:
        totals = {d: est.total(model, d).to_json(step) for d in est.designs}
        models[model] = {
            "totals": totals,
            "vs_uniform": {d: _ratios(est, model, d, "uniform") for d in est.designs},
            "vs_per_crossbar": {d: _ratios(est, model, d, "per_crossbar") for d in est.designs},
            "layers": {layer: {d: est.costs[model][d][i].to_json(step) for d in est.designs}
                       for i, layer in enumerate(est.layers)},
        }
    summary = {
        "schema": SCHEMA,
        "config": {"file": "hw_config.json", "model": config.model.model_dump() if config.model else None,
                   "crossbar": config.crossbar.model_dump(), "layers": len(config.layers),
                   "tiles": sum(len(layer.tiles) for layer in config.layers)},
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


# --- plots ---------------------------------------------------------------------------------------

def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_histogram(histograms: dict[str, list[int]]) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    width = 0.8 / len(histograms)
    for i, (design, counts) in enumerate(histograms.items()):
        ax.bar(np.arange(len(counts)) + i * width, counts, width, label=DESIGN_LABELS[design])
    ax.set_xlabel("ADC bits (0 = column skipped)")
    ax.set_ylabel("physical columns")
    ax.legend()
    return _png(fig)


def plot_layer_energy(layers: list[str], energy: dict[str, list[float]], model: str) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(7, 0.45 * len(layers) * len(energy)), 3.6))
    width = 0.8 / len(energy)
    x = np.arange(len(layers))
    for i, (design, values) in enumerate(energy.items()):
        ax.bar(x + i * width, values, width, label=DESIGN_LABELS[design])
    ax.set_xticks(x + 0.4 - width / 2, layers, rotation=60, ha="right", fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel(f"ADC energy per inference [pJ] ({model})")
    ax.legend(fontsize=7)
    return _png(fig)


TILE_PLOT_LAYERS = 48  #: Heat maps drawn at most (the first layers); summary.json has them all.


def plot_tiles(grids: dict) -> str:
    plt = _pyplot()
    names = list(grids)[:TILE_PLOT_LAYERS]
    ncols = min(6, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.2 * ncols, 2.0 * nrows + 0.4), squeeze=False)
    top = max((b for g in grids.values() for row in g["max_bits"] for b in row if b), default=1)
    image = None
    for ax, name in zip(axes.flat, names):
        grid = np.array([[np.nan if b in (None, 0) else b for b in row] for row in grids[name]["max_bits"]], float)
        image = ax.imshow(grid, vmin=0, vmax=top, cmap="viridis", interpolation="nearest")
        ax.set_title(name, fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label="tile's largest ADC bits (blank = empty)")
    return _png(fig)


def plot_sweep(sweep: dict) -> str:
    plt = _pyplot()
    points = sweep["global"]
    rows = sorted({p["rows"] for p in points})
    cols = sorted({p["cols"] for p in points})
    grid = np.full((len(rows), len(cols)), np.nan)
    for p in points:
        grid[rows.index(p["rows"]), cols.index(p["cols"])] = p["objective"]
    fig, ax = plt.subplots(figsize=(5, 4))
    image = ax.imshow(grid, cmap="viridis_r", origin="lower")
    middle = (np.nanmin(grid) + np.nanmax(grid)) / 2
    for (r, c), value in np.ndenumerate(grid):
        if not np.isnan(value):
            ax.text(c, r, f"{value:.2f}", ha="center", va="center", fontsize=7, color="k" if value < middle else "w")
    best = sweep["best"]
    ax.scatter([cols.index(best["cols"])], [rows.index(best["rows"])], marker="s", s=300, facecolors="none",
               edgecolors="red", linewidths=2)
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("crossbar columns C")
    ax.set_ylabel("crossbar rows R")
    fig.colorbar(image, label="objective J (lower is better)")
    return _png(fig)


def plot_band(est: Estimate) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    models = list(est.tables)
    width = 0.8 / len(models)
    x = np.arange(len(est.designs))
    for i, model in enumerate(models):
        ax.bar(x + i * width, [est.adc_energy(model, d) for d in est.designs], width, label=model)
    ax.set_xticks(x + 0.4 - width / 2, [DESIGN_LABELS[d] for d in est.designs], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("ADC energy per inference [pJ]")
    ax.legend(fontsize=7, ncols=len(models))
    return _png(fig)


# --- formatting ----------------------------------------------------------------------------------

def energy(pj: float) -> str:
    for unit, scale in (("mJ", 1e9), ("µJ", 1e6), ("nJ", 1e3)):
        if abs(pj) >= scale:
            return f"{pj / scale:.3g} {unit}"
    return f"{pj:.3g} pJ"


def area(um2: float) -> str:
    return f"{um2 / 1e6:.4g} mm²" if abs(um2) >= 1e5 else f"{um2:.4g} µm²"


def times(ratio: float) -> str:
    return "∞" if math.isinf(ratio) else f"{ratio:.2f}×"


# --- sections: one structure rendered by both templates ------------------------------------------

def _section(title: str, text: list[str] | None = None, tables: list[dict] | None = None,
             figure: Optional[str] = None) -> dict:
    return {"title": title, "text": text or [], "tables": tables or [], "figure": figure}


def _table(header: list[str], rows: list[list[Any]], caption: str = "") -> dict:
    return {"caption": caption, "header": header, "rows": [[str(cell) for cell in row] for row in rows]}


def build_sections(summary: dict, est: Estimate, plots: bool = True) -> list[dict]:
    model = summary["default_model"]
    settings = summary["settings"]
    designs = list(summary["designs"])
    totals = summary["models"][model]["totals"]
    ratios = summary["models"][model]
    headline = [[summary["designs"][d], energy(totals[d]["adc_energy_pj"]),
                 times(ratios["vs_uniform"][d]["adc_energy"]), times(ratios["vs_per_crossbar"][d]["adc_energy"]),
                 area(totals[d]["adc_area_um2"]), energy(totals[d]["energy_pj"]), area(totals[d]["area_um2"]),
                 f"{totals[d]['conversions']:,}", f"{totals[d]['latency_ns'] / 1e3:.4g} µs"] for d in designs]
    sections = [_section(
        "Designs compared",
        [f"ADC model of this table: {model} — {summary['adc_models'][model]['source']}; "
         f"{summary['adc_models'][model]['conditions']}; {summary['adc_models'][model]['scaling']}.",
         f"Technology node {settings['tech_nm']:g} nm, {settings['sample_rate_hz']:.3g} conversions/s per ADC, "
         f"one SAR step = {settings['sar_step_ns']:.3g} ns. Energies are per inference; conversions = output "
         f"positions × input cycles × converted columns (DESIGN 3.11). Totals add DAC, sample-and-hold, "
         f"array, shift-add and registers from ISAAC's table (see Components)."],
        [_table(["design", "ADC energy", "vs uniform", "vs per-crossbar", "ADC area", "total energy", "total area",
                 "conversions", "latency"], headline)])]

    band_rows = [[summary["designs"][d], energy(b["adc_energy_pj"]["min"]) + f" ({b['adc_energy_pj']['min_model']})",
                  energy(b["adc_energy_pj"]["median"]),
                  energy(b["adc_energy_pj"]["max"]) + f" ({b['adc_energy_pj']['max_model']})",
                  f"{times(b['vs_uniform']['min'])} – {times(b['vs_uniform']['max'])} "
                  f"(median {times(b['vs_uniform']['median'])})"]
                 for d, b in summary["band"].items()]
    per_model = [[m, *[energy(summary["models"][m]["totals"][d]["adc_energy_pj"]) for d in designs],
                  times(summary["models"][m]["vs_uniform"]["per_column"]["adc_energy"]),
                  times(summary["models"][m]["vs_per_crossbar"]["per_column"]["adc_energy"])] for m in est.tables]
    sections.append(_section(
        "ADC-model band",
        ["Published ADC models disagree by 10–20× (anchors.md section 2); the band shows every model's figure."],
        [_table(["design", "min", "median", "max", "saving vs uniform"], band_rows),
         _table(["model", *[summary["designs"][d] for d in designs], "per-column vs uniform",
                 "per-column vs per-crossbar"], per_model)],
        plot_band(est) if plots else None))

    sources = [[m, d["source"], d["conditions"], d["scaling"],
                "; ".join(f"{b}b {v['energy_pj']:.3g} pJ/{v['area_um2']:.4g} µm²" for b, v in d["per_bits"].items())]
               for m, d in summary["adc_models"].items()]
    sections.append(_section(
        "ADC models and sources",
        [f"Technology scaling: {summary['technology_scaling']['source']} (energy at V_dd = 0.8 V)."],
        [_table(["model", "source", "conditions", "scaling path", "per resolution in use"], sources)]))

    components = [[name, f"{c['energy_pj']:.4g} pJ per {c['energy_per']}",
                   f"{c['area_um2']:.4g} µm² per {c['area_per']}", c["derivation"], c["scaling"]]
                  for name, c in summary["components"].items()]
    sections.append(_section("Components (ISAAC table)", [f"Source: {ISAAC_CITATION}."],
                             [_table(["component", "energy", "area", "derivation", "scaling"], components)]))

    layer_rows = []
    for layer in est.layers:
        per = summary["models"][model]["layers"][layer]
        layer_rows.append([layer, *[energy(per[d]["adc_energy_pj"]) for d in designs],
                           times(per["uniform"]["adc_energy_pj"] / per["per_column"]["adc_energy_pj"])
                           if per["per_column"]["adc_energy_pj"] else "∞"])
    energies = {d: [summary["models"][model]["layers"][layer][d]["adc_energy_pj"] for layer in est.layers]
                for d in designs}
    sections.append(_section(
        f"Per-layer ADC energy ({model})", [],
        [_table(["layer", *[summary["designs"][d] for d in designs], "per-column vs uniform"], layer_rows)],
        plot_layer_energy(est.layers, energies, model) if plots else None))

    hist = summary["bits_histogram"]
    width = max(len(h) for h in hist.values())
    sections.append(_section(
        "ADC bits per physical column", [],
        [_table(["bits", *[DESIGN_LABELS[d] for d in hist]],
                [[b, *[h[b] if b < len(h) else 0 for h in hist.values()]] for b in range(width)])],
        plot_histogram(hist) if plots else None))

    levels = summary["dub_levels"]
    sections.append(_section(
        "Tiles per D.U.B. level and per-tile bits",
        ["Level k: the tile's lossless bits are k below the layer's uniform resolution (D.U.B., seeds.md 1.3). "
         "The heat maps show each tile's largest ADC bits (its per-crossbar resolution)"
         + (f", for the first {TILE_PLOT_LAYERS} layers." if len(summary["tiles"]) > TILE_PLOT_LAYERS else ".")],
        [_table(["level k", "tiles"], [[k, n] for k, n in enumerate(levels["levels"])] + [["empty", levels["empty"]]])],
        plot_tiles(summary["tiles"]) if plots else None))

    steps = [[summary["designs"][d], f"{totals[d]['latency_sar_steps']:,}", f"{totals[d]['latency_ns'] / 1e3:.4g} µs",
              times(ratios["vs_uniform"][d]["latency"])] for d in designs]
    sections.append(_section(
        "Latency (SAR steps)",
        ["Per MVM a tile needs, per input cycle, the sum of its columns' bits on its busiest ADC; tiles run in "
         "parallel, layers one after another, MVMs of a layer in sequence. Sequencer overhead is not included."],
        [_table(["design", "SAR steps per inference", "time", "vs uniform"], steps)]))

    sections.append(_periphery_section(summary["periphery"]))
    sections.append(_sweep_section(summary["sweep"], plots))
    if summary["warnings"]:
        sections.append(_section("Warnings", summary["warnings"]))
    return sections


def _periphery_section(status: Optional[dict]) -> dict:
    title = "Digital periphery measured from the RTL (Yosys)"
    if status is None or not status["measured"]:
        reason = status["reason"] if status else "synthesis was not requested"
        hint = status["how_to_enable"] if status else "run 'codesign report DIR'"
        return _section(title, [f"Periphery area not measured: {reason}.", f"To enable: {hint}."])
    rows = [[m["module"], f"{m['transistors']:,}", area(m["area_um2"]), area(m["sequential_area_um2"]),
             "?" if m["tiles"] is None else m["tiles"],
             "?" if m["total_area_um2"] is None else area(m["total_area_um2"])]
            for m in status["modules"]]
    notes = [f"{status['label']}. Yosys {status['yosys']}, Liberty {status['liberty']}."]
    if status["total_area_um2"] is not None:
        notes.append(f"All tiles together: {area(status['total_area_um2'])} of digital periphery (one module "
                     f"instance per crossbar tile, counted from rtl/manifest.json).")
    return _section(title, notes, [_table(["module", "transistors (est.)", "area per tile", "of which sequential",
                                           "tiles", "area, all tiles"], rows)])


def _sweep_section(sweep: Optional[dict], plots: bool) -> dict:
    title = "Crossbar-size sweep"
    if sweep is None:
        return _section(title, ["No sweep in this folder: run 'codesign generate --search --out DIR' "
                                "(writes DIR/search.json), then 'codesign report DIR'."])
    best = sweep["best"]
    rows = [[p["rows"], p["cols"], p["tiles"], energy(p["energy_pj"]), area(p["area_um2"]), f"{p['objective']:.3f}"]
            for p in sweep["global"]]
    return _section(title, [f"Objective: {sweep['objective']}. Best: {best['rows']}×{best['cols']}."],
                    [_table(["rows", "cols", "tiles", "energy", "area", "J"], rows)],
                    plot_sweep(sweep) if plots else None)


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


def write_report(folder: Path, settings: Optional[CostSettings] = None, calibrated: Optional[Path] = None,
                 synthesize: bool = True) -> dict:
    """Write ``folder/report/`` from ``folder/hw_config.json``; returns the summary.

    ``calibrated`` is a calibrated ``hw_config.json`` with the same tiles; ``synthesize=False`` skips
    Yosys (the report then says the periphery was not measured). ``folder`` is locked meanwhile and
    ``report/`` replaced all at once (:func:`codesign.files.output_folder`).
    """
    from .files import output_folder

    load_folder(folder)
    with output_folder(folder, "report", part="report", inputs=[calibrated], flag="report of") as out:
        return render_report(folder, out, settings, calibrated, synthesize)


def render_report(folder: Path, out: Path, settings: Optional[CostSettings] = None,
                  calibrated: Optional[Path] = None, synthesize: bool = True) -> dict:
    """Write the report files of ``folder`` into the existing folder ``out``; returns the summary."""
    from .synth import periphery

    folder = Path(folder)
    settings = settings or CostSettings()
    config, sweep = load_folder(folder)
    calibrated_config = load_config(calibrated) if calibrated else None
    status = periphery(folder / "rtl") if synthesize else None
    summary, est = build_summary(config, settings, calibrated_config, sweep, status,
                                 str(calibrated) if calibrated else None)
    title = f"codesign report — {config.model.path if config.model else folder.name}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(_finite(summary), indent=2, allow_nan=False) + "\n")
    (out / "report.md").write_text(_render("report.md.j2", title=title,
                                           sections=build_sections(summary, est, plots=False)))
    (out / "report.html").write_text(_render("report.html.j2", title=title, sections=build_sections(summary, est)))
    return summary


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
    status = summary["periphery"]
    if status and status["measured"]:
        lines.append("periphery (Yosys, pre-layout): " + ", ".join(
            f"{m['module']} {m['transistors']:,} transistors {area(m['area_um2'])}" for m in status["modules"])
            + (f"; {area(status['total_area_um2'])} for all tiles" if status["total_area_um2"] is not None else ""))
    else:
        lines.append(f"periphery area not measured: {status['reason'] if status else 'synthesis skipped'}")
    return "\n".join(lines)
