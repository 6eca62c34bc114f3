"""Issue 14: ``codesign simulate`` and ``codesign explore`` on 1 and 2 workers, ResNet-18-shaped.

Model: torchvision ResNet-18 shapes, random weights, every layer 50 % magnitude-pruned
(:mod:`bench.models`), 8-bit weights and inputs, generated onto 128×128 crossbars (2-bit cells,
1-bit DAC; about 5,700 tiles).

- simulate: ``codesign simulate --sim verilator`` of every tile with ``--workers 1`` and then
  ``--workers 2`` (local Ray), each in a fresh process building afresh, in one run; wall time end
  to end, the ratio (target ≤ 0.6), the cost of one tile (its share of the simulator runs, of
  preparing its job and golden results and checking its results, both on the workers, and of the
  rest, done here: loading, the drift check, the inputs) and a projection to 64 cores (the
  workers' share spread over 64, the rest serial, plus one build).
- explore: ``codesign explore`` of ≥ 200 points with ``--workers 1`` and ``--workers 2``; the
  ratio (target ≤ 0.6), whether the Pareto fronts of the two runs are identical and whether they
  equal a brute-force front computed here from every point of the serial run (each feasible point
  compared with every other, independently of codesign's sorted sweep).

``python -m bench.bench_scale --quick`` is a smoke test of the same code on a stratified sample of 24
tiles (``--sample 24``: every layer) and 16 points; its ratios say nothing about the targets.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from codesign.explore import OBJECTIVES

from . import codesign_command, run_command, table
from .models import pruned_resnet

TARGET_RATIO = 0.6
CLUSTER_CORES = 64
#: Drawn vectors per tile; the corner vectors (about 32 more per 128×128 tile) are left out
#: (``--no-corners``): they add the same work to every tile, and with them one worker takes about
#: 0.5 s per tile, 48 minutes for the 5,724 tiles, too long to run twice in one benchmark.
VECTORS = 8
#: The sweeps: full (4 · 4 · 2 · 2 · 4 = 256 points) and quick (16 points).
SPACES = {
    False: {"rows": "64,128,256,512", "cols": "64,128,256,512", "cell_bits": "1,2", "dac_bits": "1,2",
            "adc_model": "isaac,walden,murmann,zigzag"},
    True: {"rows": "64,128", "cols": "128,256", "cell_bits": "1,2", "adc_model": "isaac,walden"},
}
QUICK_SAMPLE = 24


def simulate_rows(folder: Path, quick: bool) -> tuple[list[list[object]], dict]:
    """Simulate with 1 then 2 workers, each building afresh; the table rows and the figures."""
    found, walls = {}, {}
    for workers in (1, 2):
        shutil.rmtree(folder / "sim" / "build", ignore_errors=True)     # each run builds as a fresh one would
        args = [*codesign_command(), "simulate", str(folder), "--sim", "verilator", "--vectors", str(VECTORS),
                "--workers", str(workers), "--no-corners", *(["--sample", str(QUICK_SAMPLE)] if quick else [])]
        walls[workers], _ = run_command(args)
        found[workers] = json.loads((folder / "sim" / "results.json").read_text())
    one, two = found[1], found[2]
    tiles, selected = len(one["tiles"]), one["engine"]["tiles_selected"]
    build = max(b["build_seconds"] for b in one["builds"])
    modules = len({b["module"] for b in one["builds"]})
    runs = sum(b["run_seconds"] for b in one["builds"])              # the simulator runs, on the workers
    checks = sum(b["check_seconds"] for b in one["builds"])          # jobs, golden results, comparison: the workers
    driver = walls[1] - build - runs - checks                          # here: load, drift check, inputs
    projected = (driver + (runs + checks) / CLUSTER_CORES) * selected / tiles + build   # Amdahl: the rest stays serial
    volatile = ("seconds", "first_cycle", "simulated_cycles")
    same = [{k: v for k, v in t.items() if k not in volatile} for t in one["tiles"]] == \
        [{k: v for k, v in t.items() if k not in volatile} for t in two["tiles"]]
    ratio = walls[2] / walls[1]
    rows = [["tiles simulated", f"{tiles} of {selected}", "every tile", "pass" if tiles == selected else "quick"],
            ["wall, 1 worker (in process)", f"{walls[1]:.1f} s", "", ""],
            ["wall, 2 workers (local Ray)", f"{walls[2]:.1f} s", "", ""],
            ["ratio 2 / 1 workers", f"{ratio:.2f}", f"≤ {TARGET_RATIO}", "pass" if ratio <= TARGET_RATIO else "FAIL"],
            ["Verilator build", f"{build:.1f} s ({modules} module{'s' if modules > 1 else ''})", "", ""],
            ["per tile, 1 worker: simulator run / job and check (on the worker) / the rest (here)",
             f"{runs / tiles:.3f} s / {checks / tiles:.3f} s / {driver / tiles:.3f} s", "", ""],
            [f"projected on {CLUSTER_CORES} cores (the workers' share / {CLUSTER_CORES}, the rest here, one build)",
             f"{projected / 60:.1f} min for {selected} tiles", "", ""],
            ["verdicts", f"1 worker {'bit-exact' if one['passed'] else 'FAILED'}, 2 workers "
                         f"{'bit-exact' if two['passed'] else 'FAILED'}, tile records "
                         f"{'identical' if same else 'DIFFERENT'}", "", ""]]
    return rows, {"ratio": ratio, "passed": one["passed"] and two["passed"] and same}


def brute_force_front(points: list[dict]) -> list[tuple]:
    """The objectives of every feasible point no other feasible point dominates (all pairs compared), sorted."""
    feasible = [tuple(p[o] for o in OBJECTIVES) for p in points if p.get("feasible")]
    return sorted(a for a in feasible
                  if not any(all(b_o <= a_o for a_o, b_o in zip(a, b)) and b != a for b in feasible))


def explore_rows(model: Path, root: Path, quick: bool) -> tuple[list[list[object]], dict]:
    """Explore with 1 then 2 workers into fresh folders; the table rows and the figures."""
    walls, fronts, points = {}, {}, {}
    options = [f"--{name.replace('_', '-')}={value}" for name, value in SPACES[quick].items()]
    for workers in (1, 2):
        out = root / f"explore-{workers}"
        walls[workers], _ = run_command([*codesign_command(), "explore", "--model", str(model), *options,
                                         "--out", str(out), "--workers", str(workers)])
        fronts[workers] = json.loads((out / "pareto.json").read_text())["front"]
        points[workers] = [json.loads(line) for line in (out / "points.jsonl").read_text().splitlines()]
    ratio = walls[2] / walls[1]
    key = ("rows", "cols", "cell_bits", "dac_bits", "adcs", "adc_model", "budget", "energy_pj", "area_um2",
           "latency_ns")
    same = [[p[k] for k in key] for p in fronts[1]] == [[p[k] for k in key] for p in fronts[2]]
    brute = brute_force_front(points[1]) == sorted(tuple(p[o] for o in OBJECTIVES) for p in fronts[1])
    count = len(points[1])
    rows = [["points", f"{count}", "≥ 200", "pass" if count >= 200 else ("quick" if quick else "FAIL")],
            ["wall, 1 worker (in process)", f"{walls[1]:.1f} s", "", ""],
            ["wall, 2 workers (local Ray)", f"{walls[2]:.1f} s", "", ""],
            ["ratio 2 / 1 workers", f"{ratio:.2f}", f"≤ {TARGET_RATIO}", "pass" if ratio <= TARGET_RATIO else "FAIL"],
            ["Pareto front", f"{len(fronts[1])} points, {'identical' if same else 'DIFFERENT'} on 2 workers",
             "identical", "pass" if same else "FAIL"],
            ["Pareto front vs brute force over the serial run's points",
             "equal" if brute else "DIFFERENT", "equal", "pass" if brute else "FAIL"]]
    return rows, {"ratio": ratio, "same": same and brute}


def run(quick: bool = False) -> str:
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        model = pruned_resnet(18, root / "resnet18.pt")
        folder = root / "gen"
        generate, _ = run_command([*codesign_command(), "generate", "--model", str(model), "--out", str(folder),
                                   "--no-report"])
        sim, _ = simulate_rows(folder, quick)
        explored, _ = explore_rows(model, root, quick)
    scale = (f"**quick scale** (`--quick`: {QUICK_SAMPLE} sampled tiles, {sum(1 for _ in SPACES[True])} swept "
             "parameters): a smoke test, its ratios do not measure the targets" if quick else "full scale")
    return ("### scale: simulate and explore on 1 and 2 workers (issue 14)\n\n"
            f"ResNet-18 shapes, random weights 50 % magnitude-pruned, 128×128 crossbars, {VECTORS} vectors per tile "
            "(`--no-corners`); "
            f"{scale}. `codesign generate` took {generate:.1f} s. Each run is a fresh process; 2 workers = "
            "local Ray (`dist` extra).\n\n`codesign simulate --sim verilator`:\n\n"
            + table(["measure", "value", "target", ""], sim)
            + f"\n\n`codesign explore` ({', '.join(f'{k} {v}' for k, v in SPACES[quick].items())}):\n\n"
            + table(["measure", "value", "target", ""], explored))


if __name__ == "__main__":
    import sys

    print(run(quick="--quick" in sys.argv[1:]))
