"""Issue 11: ``codesign simulate`` of a calibrated folder on Icarus and Verilator, every tile.

The bundled model calibrated with ``codesign calibrate --data digits --budget 1`` (shifts k > 0 on
the columns where truncating beats clipping), generated with ``generate --config``, then simulated
on both simulators (8 drawn vectors and the corner vectors per tile, every CPU). Target: at least
500 columns with k > 0, every output bit-exact.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from . import codesign_command, run_command, table

MIN_SHIFTED = 500


def shifted_columns(config: dict) -> int:
    """Converted columns (b > 0) with a shift k > 0."""
    return sum(1 for layer in config["layers"] for tile in layer["tiles"]
               for b, k in zip(tile["adc_bits"], tile["adc_shift"]) if b and k > 0)


def run() -> str:
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        calibrated, folder = root / "calibrated.json", root / "out"
        calibrate, _ = run_command([*codesign_command(), "calibrate", "--data", "digits", "--budget", "1",
                                    "--out", str(calibrated)])
        config = json.loads(calibrated.read_text())
        columns = sum(len(tile["adc_bits"]) for layer in config["layers"] for tile in layer["tiles"])
        shifted = shifted_columns(config)
        generate, _ = run_command([*codesign_command(), "generate", "--config", str(calibrated), "--out",
                                   str(folder), "--no-report"])
        rows = [["columns with k > 0", f"{shifted} of {columns}", f"≥ {MIN_SHIFTED}",
                 "pass" if shifted >= MIN_SHIFTED else "FAIL"]]
        for simulator in ("icarus", "verilator"):
            wall, _ = run_command([*codesign_command(), "simulate", str(folder), "--sim", simulator])
            found = json.loads((folder / "sim" / "results.json").read_text())
            rows.append([f"simulate --sim {simulator}: {len(found['tiles'])} tiles, {found['engine']['workers']} "
                         f"workers", f"{found['outputs_compared']} outputs "
                         f"{'bit-exact' if found['passed'] else 'WRONG'}, {wall:.1f} s", "bit-exact",
                         "pass" if found["passed"] else "FAIL"])
    return ("### calibrated folder: simulate with shifts k > 0 (issue 11)\n\n"
            f"The bundled model, `codesign calibrate --data digits --budget 1` ({calibrate:.1f} s), "
            f"`generate --config` ({generate:.1f} s), then `codesign simulate` of every tile (8 vectors and "
            "the corner vectors each) on both simulators, wall time end to end (Verilator's includes its "
            "build).\n\n" + table(["measure", "value", "target", ""], rows))


if __name__ == "__main__":
    print(run())
