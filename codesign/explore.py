"""``codesign explore``: a design-space sweep, its Pareto front of energy, area and latency, and plots.

The space (:class:`Space`) is the product of crossbar rows, columns, cell bits, DAC bits, ADCs per
crossbar, ADC models and, optionally, calibration budgets (with a dataset). Each crossbar
geometry is one piece of work for the engine (:mod:`codesign.engine`): the model is analysed on
it (:func:`codesign.analysis.analyze`, the per-column lossless bits), calibrated once per budget
(:func:`codesign.calibrate.run_calibrations`) and priced under every ADC model
(:func:`codesign.cost.estimate`: energy per inference, area, latency per inference from the
periphery's cycle counts at the clock). A geometry the model cannot map (an ADC above 16 bits,
more ADCs than columns, too few columns) is recorded as infeasible with the reason.

Output folder (default ``explore/``): ``points.jsonl``, one line per point as it completes (a run
that is interrupted or extended later computes only the points missing from it);
``pareto.json``, the points no other point beats in energy, area and latency at once; and
``explore.html``, the Pareto scatter and the sensitivity to each swept parameter.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .cost import AdcModelName
from .errors import CodesignError, validation_message

SCHEMA = "codesign-explore/1"
FILES = ("points.jsonl", "pareto.json", "explore.html")
#: The geometry of one piece of work, in the order of the key.
GEOMETRY = ("rows", "cols", "cell_bits", "dac_bits", "adcs")
#: A point's key: its geometry, ADC model and calibration budget (None = lossless per column).
KEY = (*GEOMETRY, "adc_model", "budget")
OBJECTIVES = ("energy_pj", "area_um2", "latency_ns")
MAX_POINTS = 100_000


def _distinct(values: list) -> list:
    if len(set(values)) != len(values):
        raise ValueError("values repeat; list each once")
    return values


class Space(BaseModel):
    """The sweep: every combination of the listed values (``adcs`` omitted: one ADC per 128
    columns, as ``analyze``). ``budgets`` (percentage points, :mod:`codesign.calibrate`) need
    ``data``; each adds a calibrated design next to the lossless one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rows: list[int] = Field([128], min_length=1, description="Wordlines per crossbar.")
    cols: list[int] = Field([128], min_length=1, description="Physical columns per crossbar.")
    cell_bits: list[int] = Field([2], min_length=1, description="Bits per cell.")
    dac_bits: list[int] = Field([1], min_length=1, description="Input bits per cycle.")
    adcs: Optional[list[int]] = Field(None, min_length=1, description="ADCs per crossbar (default: cols / 128).")
    adc_model: list[AdcModelName] = Field(["isaac"], min_length=1, description="ADC models to price with.")
    budgets: list[float] = Field([], description="Calibration budgets in percentage points (need data).")
    data: Optional[str] = Field(None, description="Dataset of the calibrations, e.g. digits.")
    search_split: Literal["train", "val", "test"] = Field("val", description="Split the budgets hold on.")

    @field_validator("rows", "cols", "cell_bits", "dac_bits", "adcs")
    @classmethod
    def _in_range(cls, values: Optional[list[int]], info: Any) -> Optional[list[int]]:
        from .config import CrossbarConfig, field_range

        if values is None:
            return None
        low, high = field_range(CrossbarConfig, info.field_name)
        for value in values:
            if (low is not None and value < low) or (high is not None and value > high):
                raise ValueError(f"{value} is out of range: give {low}…{high}")
        return _distinct(values)

    @field_validator("adc_model")
    @classmethod
    def _models(cls, values: list[str]) -> list[str]:
        return _distinct(values)

    @field_validator("budgets")
    @classmethod
    def _budgets(cls, values: list[float]) -> list[float]:
        if any(not math.isfinite(v) or v < 0 for v in values):
            raise ValueError("budgets are percentage points, finite and at least 0")
        return _distinct(values)

    @model_validator(mode="after")
    def _consistent(self) -> "Space":
        if self.budgets and self.data is None:
            raise ValueError("budgets need data: give the dataset to calibrate on (e.g. digits)")
        if self.points > MAX_POINTS:
            raise ValueError(f"{self.points} points: at most {MAX_POINTS}; sweep fewer values")
        return self

    def geometries(self) -> list[dict]:
        """Every crossbar of the sweep (``adcs`` None: the default for its columns)."""
        return [dict(zip(GEOMETRY, values)) for values in itertools.product(
            self.rows, self.cols, self.cell_bits, self.dac_bits, self.adcs or [None])]

    @property
    def points(self) -> int:
        return len(self.geometries()) * len(self.adc_model) * (1 + len(self.budgets))

    def keys(self, geometry: dict) -> list[tuple]:
        """The keys of a geometry's points (its ``adcs`` resolved)."""
        return [point_key({**geometry, "adc_model": model, "budget": budget})
                for model in self.adc_model for budget in [None, *self.budgets]]


def point_key(point: dict) -> tuple:
    return tuple(point[name] for name in KEY)


def resolved(geometry: dict) -> dict:
    """``adcs`` None → one ADC per 128 columns (:func:`codesign.analysis.default_adcs`)."""
    from .analysis import default_adcs

    return {**geometry, "adcs": default_adcs(geometry["cols"]) if geometry["adcs"] is None else geometry["adcs"]}


def parse_space(values: dict, where: Callable[[str], str]) -> Space:
    """A :class:`Space` from ``values``; a bad value raises :class:`CodesignError` naming it by
    ``where(field)`` (an option or a file's key)."""
    try:
        return Space(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else ""
        item = f" value {err['loc'][1] + 1}" if len(err["loc"]) > 1 and isinstance(err["loc"][1], int) else ""
        name = where(field) if field else "the space"
        raise CodesignError(f"{name}{item}: {validation_message(err)}") from None


# --- one geometry, priced (runs on a worker) ------------------------------------------------------

@dataclass(frozen=True)
class Setup:
    """What every geometry shares: the model, the periphery, the cost settings and the space."""

    model: Any              # codesign.ingest.ModelSpec
    periphery: Any          # codesign.config.PeripheryConfig
    settings: Any           # codesign.cost.CostSettings (its adc_model is replaced per point)
    space: Space


def price_geometry(setup: Setup, geometry: dict) -> list[dict]:
    """The points of one crossbar geometry: every ADC model, lossless and each budget."""
    from .analysis import analyze
    from .calibrate import run_calibrations
    from .config import CrossbarConfig
    from .cost import estimate

    space, geometry = setup.space, resolved(geometry)
    keys = [dict(zip(KEY, key)) for key in space.keys(geometry)]
    try:
        crossbar = CrossbarConfig(**geometry)
        config = analyze(setup.model, crossbar).to_config().model_copy(update={"periphery": setup.periphery})
    except ValidationError as exc:
        reason = validation_message(exc.errors()[0])
        return [{**key, "feasible": False, "reason": reason} for key in keys]
    except CodesignError as exc:
        return [{**key, "feasible": False, "reason": str(exc)} for key in keys]
    calibrated = run_calibrations(setup.model, config, space.data, space.budgets, space.search_split) \
        if space.budgets else []
    tiles = sum(len(layer.tiles) for layer in config.layers)
    points = []
    for model in space.adc_model:
        settings = setup.settings.model_copy(update={"adc_model": model})
        designs = [(None, None, estimate(config, settings=settings, models=[model]), "per_column")]
        designs += [(budget, report, estimate(config, other, settings, models=[model]), "calibrated")
                    for budget, (other, report) in zip(space.budgets, calibrated)]
        for budget, report, est, design in designs:
            total = est.total(model, design).to_json(config.periphery.clock_hz)
            point = {**geometry, "adc_model": model, "budget": budget, "feasible": True, "tiles": tiles,
                     "energy_pj": total["energy_pj"], "area_um2": total["area_um2"],
                     "latency_ns": total["latency_ns"], "latency_cycles": total["latency_cycles"],
                     "adc_energy_pj": total["adc_energy_pj"], "conversions": total["conversions"]}
            if report is not None:      # measured on the test split, which the calibration did not search
                point["test_accuracy_drop"] = report["accuracy"]["test"]["drop"]
            points.append(point)
    return points


# --- the front -------------------------------------------------------------------------------------

def dominates(a: dict, b: dict) -> bool:
    """Whether ``a`` is at least as good as ``b`` in every objective and better in one."""
    return all(a[o] <= b[o] for o in OBJECTIVES) and any(a[o] < b[o] for o in OBJECTIVES)


def pareto_front(points: Iterable[dict]) -> list[dict]:
    """The feasible points no other feasible point dominates, by energy (then area, latency)."""
    feasible = sorted((p for p in points if p.get("feasible")), key=lambda p: tuple(p[o] for o in OBJECTIVES))
    front: list[dict] = []
    for point in feasible:          # sorted: a point can only be dominated by one before it
        if not any(dominates(other, point) for other in front):
            front.append(point)
    return front


# --- the points file ---------------------------------------------------------------------------------

def context_of(setup: Setup) -> dict:
    """What every point of a file must share with this run to be reused: model, periphery, settings
    (without the ADC model, a swept parameter) and the calibration's dataset and split."""
    settings = setup.settings.model_dump(exclude={"adc_model"})
    return {"model_sha256": setup.model.info.sha256, "periphery": setup.periphery.model_dump(),
            "settings": settings, "data": setup.space.data, "search_split": setup.space.search_split}


def fingerprint(context: dict) -> str:
    return hashlib.sha256(json.dumps(context, sort_keys=True).encode()).hexdigest()[:16]


def read_points(path: Path, context: str) -> dict[tuple, dict]:
    """The points of ``path`` by key (an unfinished last line, from an interrupted run, is dropped);
    refused if they were made with another model or settings."""
    if not path.is_file():
        return {}
    text = path.read_text()
    lines = text.split("\n")
    if lines and lines[-1]:                              # no newline: written when the run was cut
        path.write_text("\n".join(lines[:-1]) + ("\n" if len(lines) > 1 else ""))
    points = {}
    for number, line in enumerate(lines[:-1], start=1):
        try:
            point = json.loads(line)
            key = point_key(point)
        except (json.JSONDecodeError, KeyError, TypeError):
            raise CodesignError(f"{path} line {number} is not a point codesign wrote: pass --force to start "
                                f"afresh") from None
        if point.get("context") != context:
            raise CodesignError(f"{path} holds points of another model, periphery or cost setting: pass --force "
                                f"to start afresh, or choose another --out")
        points[key] = point
    return points


def explore(model: Any, space: Space, out: Path, periphery: Any = None, settings: Any = None,
            workers: Optional[int] = 1, address: Optional[str] = None, force: bool = False, progress: bool = False,
            plots: bool = True, log: Callable[[str], None] = lambda message: None) -> dict:
    """Sweep ``space`` for ``model`` into ``out`` (see the module); returns ``{"points", "front",
    "computed", "reused"}`` (geometries priced, points reused). ``force`` discards the points of an earlier run; ``workers`` and
    ``address`` as :func:`codesign.engine.engine`."""
    from .config import PeripheryConfig
    from .cost import CostSettings
    from .engine import engine
    from .files import locked

    runner = engine(workers, address)
    setup = Setup(model, periphery or PeripheryConfig(), settings or CostSettings(), space)
    context = fingerprint(context_of(setup))
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CodesignError(f"--out {out} exists and is not a folder")
    strangers = sorted(n for n in (out.iterdir() if out.is_dir() else []) if n.name not in (*FILES, ".codesign.lock"))
    if strangers:
        raise CodesignError(f"--out {out} holds files explore did not write ({strangers[0].name}): choose another "
                            f"folder")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "points.jsonl"
    with locked(out, "explore"):
        if force:
            path.unlink(missing_ok=True)
        known = read_points(path, context)
        wanted = {key for geometry in space.geometries() for key in space.keys(resolved(geometry))}
        todo = [g for g in space.geometries() if not set(space.keys(resolved(g))) <= known.keys()]
        reused = len(wanted & known.keys())
        log(f"{len(wanted)} points, {reused} already in {path}; pricing {len(todo)} crossbar "
            f"geometries on {runner.describe()}")
        failures = []
        with path.open("a") as handle:
            for outcome in runner.map(price_geometry, todo, setup, desc="explore", unit="geometry",
                                      progress=progress):
                if not outcome.ok:
                    failures.append(f"{outcome.item}: {outcome.error}")
                    continue
                for point in outcome.value:
                    if point_key(point) not in known:
                        known[point_key(point)] = point = {"schema": SCHEMA, "context": context, **point}
                        handle.write(json.dumps(point) + "\n")
                handle.flush()
        if failures:
            raise CodesignError(f"{len(failures)} geometries failed (the others are in {path}; rerun to retry): "
                                f"{failures[0]}")
        points = [known[key] for key in sorted(wanted, key=str)]
        front = pareto_front(points)
        (out / "pareto.json").write_text(json.dumps({"schema": SCHEMA, "objectives": list(OBJECTIVES),
                                                     "front": front}, indent=2) + "\n")
        (out / "explore.html").write_text(render_html(points, front, space, plots))
    return {"points": points, "front": front, "computed": len(todo), "reused": reused}


# --- the page ----------------------------------------------------------------------------------------

def label(point: dict) -> str:
    text = f"{point['rows']}×{point['cols']} c{point['cell_bits']} v{point['dac_bits']} {point['adcs']} ADC " \
           f"{point['adc_model']}"
    return text + (f" budget {point['budget']:g}" if point["budget"] is not None else "")


def swept(points: list[dict]) -> list[str]:
    """The parameters with more than one value among the feasible points."""
    return [name for name in KEY if len({p[name] for p in points if p["feasible"]}) > 1]


def plot_pareto(points: list[dict], front: list[dict]) -> Any:
    """Energy against area and against latency, coloured by latency / area; the front ringed."""
    from .report import AREA_UNITS, ENERGY_UNITS, TIME_UNITS, _figure, _log_axis, _plot_unit

    feasible = [p for p in points if p["feasible"]]
    e_unit, e_scale = _plot_unit([p["energy_pj"] for p in feasible], ENERGY_UNITS)
    a_unit, a_scale = _plot_unit([p["area_um2"] for p in feasible], AREA_UNITS)
    t_unit, t_scale = _plot_unit([p["latency_ns"] for p in feasible], TIME_UNITS)
    fig, axes = _figure(4.8, 1, 2)
    pairs = [("area_um2", a_scale, f"area [{a_unit}]", "latency_ns", t_scale, f"latency [{t_unit}]"),
             ("latency_ns", t_scale, f"latency per inference [{t_unit}]", "area_um2", a_scale, f"area [{a_unit}]")]
    for ax, (x, x_scale, x_label, colour, c_scale, c_label) in zip(axes, pairs):
        shown = ax.scatter([p[x] / x_scale for p in feasible], [p["energy_pj"] / e_scale for p in feasible],
                           c=[p[colour] / c_scale for p in feasible], cmap="viridis", s=18)
        ax.scatter([p[x] / x_scale for p in front], [p["energy_pj"] / e_scale for p in front], s=80,
                   facecolors="none", edgecolors="red", linewidths=1.5, label=f"Pareto front ({len(front)})")
        _log_axis(ax, "x")
        _log_axis(ax, "y")
        ax.set_xlabel(x_label)
        ax.set_ylabel(f"energy per inference [{e_unit}]")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper right")
        fig.colorbar(shown, ax=ax, label=c_label)
    return fig


def sensitivity(points: list[dict], name: str) -> dict[str, list[float]]:
    """For each value of ``name``: the best energy, area and latency among the feasible points with
    that value, relative to the best over all (1 = fixing the parameter there costs nothing)."""
    feasible = [p for p in points if p["feasible"]]
    values = sorted({p[name] for p in feasible}, key=lambda v: (v is not None, v))
    best = {o: min(p[o] for p in feasible) for o in OBJECTIVES}
    return {o: [min(p[o] for p in feasible if p[name] == value) / best[o] if best[o] else 1.0 for value in values]
            for o in OBJECTIVES} | {"values": values}


def plot_sensitivity(points: list[dict], names: list[str]) -> Any:
    from .report import _figure

    columns = min(3, len(names))
    rows = -(-len(names) // columns)
    fig, axes = _figure(3.2 * rows, rows, columns, squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, names):
        found = sensitivity(points, name)
        ticks = ["lossless" if v is None else str(v) for v in found["values"]]
        for objective, text in zip(OBJECTIVES, ("energy", "area", "latency")):
            ax.plot(range(len(ticks)), found[objective], marker="o", label=text)
        ax.set_xticks(range(len(ticks)), ticks, rotation=30 if len(ticks) > 4 else 0)
        ax.set_xlabel(name.replace("_", " "))
        ax.set_ylabel("best / best overall")
        ax.grid(True, alpha=0.3)
    axes.flat[0].legend(loc="upper left")
    return fig


def render_html(points: list[dict], front: list[dict], space: Space, plots: bool = True) -> str:
    """``explore.html``: the sweep, the front as a table, the Pareto scatter and the sensitivity."""
    from .report import _plot, _render, _section, _styled, _table, area, energy, quantity, TIME_UNITS

    feasible = [p for p in points if p["feasible"]]
    infeasible = [p for p in points if not p["feasible"]]
    names = swept(points)
    text = [f"{len(points)} points ({len(feasible)} feasible, {len(infeasible)} that the model cannot map) over "
            f"{', '.join(f'{name} {list(getattr(space, name) or [])}' for name in ('rows', 'cols', 'cell_bits', 'dac_bits', 'adcs', 'adc_model', 'budgets'))}"
            f" (adcs [] = one per 128 columns). Energy and latency per inference; area of the live crossbars "
            f"(codesign.cost, docs/cost-models.md)."]
    rows = [[label(p), energy(p["energy_pj"]), area(p["area_um2"]), quantity(p["latency_ns"], TIME_UNITS),
             p["tiles"]] for p in front]
    sections = [_section("The sweep", text),
                _section("Pareto front (energy, area, latency)", [
                    "No other point of the sweep is at least as good in all three and better in one."],
                    [_table(["point", "energy", "area", "latency", "tiles"], rows)],
                    figures=_plot("energy against area and latency; red rings: the Pareto front",
                                  lambda: _styled(plot_pareto)(points, front), plots and bool(feasible)))]
    if names:
        sections.append(_section("Sensitivity", [
            "For each value of a swept parameter, the best energy, area and latency among the points with that "
            "value, relative to the best of the whole sweep."],
            figures=_plot("best energy, area and latency per parameter value",
                          lambda: _styled(plot_sensitivity)(points, names), plots and bool(feasible))))
    if infeasible:
        reasons: dict[str, int] = {}
        for p in infeasible:
            reasons[p["reason"]] = reasons.get(p["reason"], 0) + 1
        sections.append(_section("Points the model cannot map", tables=[
            _table(["reason", "points"], [[reason, count] for reason, count in reasons.items()])]))
    return _render("report.html.j2", title="codesign explore", sections=sections,
                   intro="Generated by codesign explore from points.jsonl; pareto.json holds the front, "
                         "machine-readable.")


def format_front(result: dict, limit: int = 20) -> str:
    """The front as a table on stdout."""
    from .report import TIME_UNITS, area, energy, quantity

    front = result["front"]
    lines = [f"{len(result['points'])} points ({result['reused']} reused from points.jsonl, {result['computed']} "
             f"crossbar geometries priced now); "
             f"Pareto front of energy, area and latency: {len(front)} points"]
    for p in front[:limit]:
        lines.append(f"  {label(p):<44} {energy(p['energy_pj']):>12} {area(p['area_um2']):>14} "
                     f"{quantity(p['latency_ns'], TIME_UNITS):>10}")
    if len(front) > limit:
        lines.append(f"  … {len(front) - limit} more in pareto.json")
    return "\n".join(lines)
