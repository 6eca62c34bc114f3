"""``codesign simulate`` speed (issue 5): one 128×128 tile, and every tile of the bundled model.

The tile: a Linear layer of 128 inputs × 16 outputs, 8-bit weights (normal, the smaller half of the
magnitudes pruned) and 8-bit inputs on one 128×128 crossbar (2-bit cells, 1-bit DAC: S = 4, so the
16 outputs fill the 128 columns; T = 8), lossless per-column ADC bits, 16 input vectors. It runs on
Icarus and Verilator in both comparator modes: *fast* (column values preloaded into the simulation,
comparators answered in Verilog) and *python* (the cocotb testbench answers every comparator at
every clock edge). Build time is measured from a clean build directory and kept apart from run
time; a run's start-up (simulator, embedded Python, loading the design) is shown separately, and
simulated cycles per second count the tile's own segment only.

The bundled model: ``codesign generate`` then ``codesign simulate --sim verilator --vectors 16`` in
a fresh process, wall time end to end (build included) against the 5-minute target.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from . import codesign_command, run_command, table

TARGET_SECONDS = 300.0
VECTORS = 16


def tile_model(path: Path) -> Path:
    import torch

    rng = np.random.default_rng(0)
    weight = rng.normal(0.0, 1.0, size=(16, 128))
    weight[np.abs(weight) < np.median(np.abs(weight))] = 0.0
    torch.save({"fc.weight": torch.tensor(weight, dtype=torch.float32)}, path)
    return path


def tile_rows(folder: Path) -> list[list[object]]:
    from codesign.simulate import simulate

    rows = []
    for simulator in ("icarus", "verilator"):
        for mode in ("fast", "python"):
            found = simulate(folder, simulator=simulator, vectors=VECTORS, mode=mode)
            assert found["passed"], found["mismatches"][:3]
            built, (tile,) = found["builds"][0], found["tiles"]
            build = "reused" if built["build_reused"] else f"{built['build_seconds']:.1f} s"
            rows.append([simulator, mode, build, f"{built['run_seconds']:.2f} s", f"{built['startup_seconds']:.2f} s",
                         f"{tile['seconds']:.2f} s", tile["simulated_cycles"],
                         f"{tile['simulated_cycles'] / tile['seconds']:,.0f}", "bit-exact"])
    return rows


def run() -> str:
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        tile = root / "tile"
        run_command([*codesign_command(), "generate", "--model", str(tile_model(root / "fc.pt")),
                     "--out", str(tile), "--no-report"])
        geometry = json.loads((tile / "summary.json").read_text())["rtl"]["layers"][0]
        rows = tile_rows(tile)

        bundled = root / "bundled"
        run_command([*codesign_command(), "generate", "--out", str(bundled), "--no-report"])
        seconds, peak = run_command([*codesign_command(), "simulate", str(bundled), "--sim", "verilator",
                                     "--vectors", str(VECTORS)])
        found = json.loads((bundled / "sim" / "results.json").read_text())
    built = found["builds"][0]
    segments = sum(t["seconds"] for t in found["tiles"])
    full = [["wall time, `codesign simulate` end to end", f"{seconds:.1f} s", f"< {TARGET_SECONDS:.0f} s",
             "pass" if seconds < TARGET_SECONDS and found["passed"] else "FAIL"],
            ["  Verilator build", f"{built['build_seconds']:.1f} s", "", ""],
            ["  simulator run (26 tiles, one start-up)", f"{built['run_seconds']:.1f} s", "", ""],
            ["tiles / vectors per tile / outputs compared",
             f"{len(found['tiles'])} / {found['vectors']} / {found['outputs_compared']}", "", ""],
            ["simulated cycles", f"{found['simulated_cycles']:,}", "", ""],
            ["simulated cycles per second (tiles' segments)", f"{found['simulated_cycles'] / segments:,.0f}", "", ""],
            ["peak memory", f"{peak:.0f} MiB", "", ""],
            ["verdict", "bit-exact" if found["passed"] else f"{found['mismatch_count']} mismatches", "", ""]]
    return ("### sim: `codesign simulate` (issue 5)\n\n"
            f"One 128×128 tile (8-bit weights and inputs, 2-bit cells, 1-bit DAC), {VECTORS} vectors, "
            f"{geometry['max_cycles']} cycles per vector. Build from a clean directory; run = one simulator "
            "process (start-up + the tile's segment).\n\n"
            + table(["simulator", "mode", "build", "run", "start-up", "tile segment", "cycles", "cycles/s",
                     "result"], rows)
            + f"\n\nEvery tile of the bundled model on Verilator, {VECTORS} vectors per tile:\n\n"
            + table(["measure", "value", "target", ""], full))
