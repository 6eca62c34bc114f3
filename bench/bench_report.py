"""Report generation for a ResNet-18-sized config (issue 6): target under 30 s, synthesis excluded.

A ResNet-18-shaped random state_dict (20 convolutions and the 1000×512 classifier, 50 % magnitude
pruned per layer) is mapped by ``codesign generate --no-report``; then ``codesign report DIR`` is
timed as a whole command (start-up, config load, five ADC models × three designs, plots, files).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from . import codesign_command, run_command, table
from .models import pruned_resnet

TARGET_S = 30.0


def run() -> str:
    with tempfile.TemporaryDirectory(prefix="bench-report-") as work:
        model, out = pruned_resnet(18, Path(work) / "resnet18_pruned.pt"), Path(work) / "out"
        generate_s, _ = run_command([*codesign_command(), "generate", "--model", str(model), "--out", str(out),
                                     "--no-report"])
        report_s, _ = run_command([*codesign_command(), "report", str(out), "--no-synth"])
        summary = json.loads((out / "report" / "summary.json").read_text())
        config_mb = (out / "hw_config.json").stat().st_size / 2 ** 20
    isaac = summary["models"]["isaac"]["vs_uniform"]["per_column"]["adc_energy"]
    rows = [
        ["`codesign report DIR` (ResNet-18 config, synthesis excluded)", f"{report_s:.1f} s", f"< {TARGET_S:.0f} s",
         "pass" if report_s < TARGET_S else "FAIL"],
        ["`codesign generate --no-report` (mapping, for scale)", f"{generate_s:.1f} s", "", ""],
        ["config size", f"{summary['config']['tiles']} tiles, {config_mb:.1f} MiB hw_config.json", "", ""],
        ["per-column vs uniform ADC energy (isaac; random weights, 50 % pruned)", f"{isaac:.2f}×", "", ""],
    ]
    return "### Report generation (issue 6)\n\n" + table(["measure", "measured", "target", ""], rows)
