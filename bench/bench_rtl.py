"""``codesign generate`` (hw_config.json, params/, rtl/) on a ResNet-18-sized model vs the 1-minute target.

The model is a ResNet-18-shaped random state_dict (every Conv2d and the final Linear, 11.7 M
weights), 50 % magnitude-pruned, on the default 128×128 crossbars.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from . import codesign_command, run_command, table

TARGET_SECONDS = 60.0

#: (name, shape) of every crossbar-mapped weight of ResNet-18.
RESNET18 = [("conv1", (64, 3, 7, 7))]
RESNET18 += [(f"layer1.{b}.conv{i}", (64, 64, 3, 3)) for b in range(2) for i in (1, 2)]
for stage, width in ((2, 128), (3, 256), (4, 512)):
    RESNET18 += [(f"layer{stage}.0.conv1", (width, width // 2, 3, 3)),
                 (f"layer{stage}.0.conv2", (width, width, 3, 3)),
                 (f"layer{stage}.0.downsample.0", (width, width // 2, 1, 1)),
                 (f"layer{stage}.1.conv1", (width, width, 3, 3)),
                 (f"layer{stage}.1.conv2", (width, width, 3, 3))]
RESNET18 += [("fc", (1000, 512))]


def resnet18_state_dict(seed: int = 0) -> dict:
    """Random ResNet-18-shaped weights with the smaller half of each tensor's magnitudes zeroed."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in RESNET18:
        weight = torch.randn(shape, generator=generator)
        threshold = weight.abs().flatten().median()
        state[f"{name}.weight"] = torch.where(weight.abs() > threshold, weight, torch.zeros(()))
    return state


def run() -> str:
    import torch

    with tempfile.TemporaryDirectory() as folder:
        model = Path(folder) / "resnet18_pruned.pt"
        torch.save(resnet18_state_dict(), model)
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
