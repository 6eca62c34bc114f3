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

TARGET_S = 30.0

# (out, in, kernel) of ResNet-18's weight tensors, in torchvision order; kernel 0 = the Linear.
RESNET18 = ([(64, 3, 7)] + [(64, 64, 3)] * 4
            + [(128, 64, 3), (128, 128, 3), (128, 64, 1), (128, 128, 3), (128, 128, 3)]
            + [(256, 128, 3), (256, 256, 3), (256, 128, 1), (256, 256, 3), (256, 256, 3)]
            + [(512, 256, 3), (512, 512, 3), (512, 256, 1), (512, 512, 3), (512, 512, 3)]
            + [(1000, 512, 0)])


def resnet18_state_dict(seed: int = 0) -> dict:
    """Random ResNet-18-shaped weights with the smaller half of each layer's magnitudes zeroed."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    state = {}
    for index, (out, inp, kernel) in enumerate(RESNET18):
        shape = (out, inp, kernel, kernel) if kernel else (out, inp)
        weight = torch.randn(shape, generator=generator)
        threshold = weight.abs().flatten().kthvalue(weight.numel() // 2).values
        state[f"layer{index:02d}.weight"] = torch.where(weight.abs() > threshold, weight, torch.zeros(()))
    return state


def run() -> str:
    import torch

    with tempfile.TemporaryDirectory(prefix="bench-report-") as work:
        model, out = Path(work) / "resnet18_pruned.pt", Path(work) / "out"
        torch.save(resnet18_state_dict(), model)
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
