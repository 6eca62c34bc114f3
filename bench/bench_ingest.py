"""Issue 13: reading a 50 MB ONNX ResNet-18 within 2× of reading the same weights as a state_dict.

The state_dict is bench/models.py's ``pruned_resnet(18)`` (random weights, 50 % magnitude-pruned,
11.2 M conv/linear weights in float32); the same weights are loaded into the zoo's ResNet-18
(torchvision names) and exported with ``torch.onnx.export``. Measured: ``load_model`` in process
(best of 3, imports warm) and ``codesign analyze`` end to end (best of 3, imports included).
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

from . import best_of, codesign_command, run_command, table
from .models import pruned_resnet

TARGET = 2.0


def export_onnx(state_path: Path, onnx_path: Path) -> None:
    import torch

    from codesign.zoo import resnet18

    model = resnet18().eval()
    model.load_state_dict(torch.load(state_path, weights_only=True), strict=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 3, 224, 224),), onnx_path, dynamo=False, input_names=["x"],
                          do_constant_folding=False)


def run() -> str:
    from codesign.ingest import load_model

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        state = pruned_resnet(18, Path(tmp) / "resnet18.pt")
        onnx_path = Path(tmp) / "resnet18.onnx"
        export_onnx(state, onnx_path)
        times = {}
        for label, path in (("state_dict", state), ("ONNX", onnx_path)):
            model = load_model(path)
            weights = sum(layer.q.size for layer in model.layers)
            load = best_of(lambda: load_model(path), 3)
            run_command(codesign_command() + ["analyze", "--model", str(path)])        # warm the page cache
            wall = min(run_command(codesign_command() + ["analyze", "--model", str(path)])[0] for _ in range(3))
            times[label] = (load, wall)
            rows.append([label, f"{path.stat().st_size / 2**20:.1f} MiB", f"{weights / 1e6:.1f} M", f"{load:.3f} s",
                         f"{wall:.2f} s"])
        ratio_load = times["ONNX"][0] / times["state_dict"][0]
        ratio_wall = times["ONNX"][1] / times["state_dict"][1]
        rows.append(["ONNX / state_dict", "", "", f"{ratio_load:.2f}× ({'pass' if ratio_load <= TARGET else 'FAIL'})",
                     f"{ratio_wall:.2f}× ({'pass' if ratio_wall <= TARGET else 'FAIL'})"])
    return ("### Reading a ResNet-18 as ONNX and as a state_dict (issue 13; target ONNX ≤ 2× state_dict)\n\n"
            + table(["file", "size", "crossbar weights", "load_model (in process)", "codesign analyze (CLI)"], rows))
