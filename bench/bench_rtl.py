"""``codesign generate`` (hw_config.json, params/, rtl/) on a ResNet-18-sized model vs the 1-minute target.

The model is a ResNet-18-shaped random state_dict (every Conv2d and the final Linear, 11.7 M
weights), 50 % magnitude-pruned, on the default 128×128 crossbars.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from . import codesign_command, run_command, table
from .models import pruned_resnet

TARGET_SECONDS = 60.0


def run() -> str:
    with tempfile.TemporaryDirectory() as folder:
        model = pruned_resnet(18, Path(folder) / "resnet18_pruned.pt")
        out = Path(folder) / "out"
        seconds, peak = run_command([*codesign_command(), "generate", "--model", str(model), "--out", str(out)])
        summary = json.loads((out / "summary.json").read_text())
        files = sum(1 for p in out.rglob("*") if p.is_file())
    tiles = summary["total"]["tiles"]
    rtl = summary["rtl"]
    rows = [["generate wall time", f"{seconds:.1f} s", f"< {TARGET_SECONDS:.0f} s",
             "pass" if seconds < TARGET_SECONDS else "FAIL"],
            ["peak memory", f"{peak:.0f} MiB", "", ""],
            ["tiles / Verilog modules", f"{tiles} / {len(rtl['modules'])}", "modules per geometry", ""],
            ["files written", str(files), "", ""],
            ["tile-cycles per input vector", f"{rtl['total']['sum_cycles']}", "", ""],
            ["  without column skip", f"{rtl['total']['sum_without_skip']}", "", ""]]
    return ("### rtl: `codesign generate` on a ResNet-18-sized model\n\n"
            "ResNet-18-shaped random weights (11.7 M), 50 % magnitude-pruned, 128×128 crossbars.\n\n"
            + table(["measure", "value", "target", ""], rows))
