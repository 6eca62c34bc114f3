"""Regenerate examples/pruning_results.md: every pruning method on the digits model.

    make results                      # or: python examples/pruning_results.py [--work DIR] [--only dub,...]

Trains the digits CNN dense (``codesign train`` defaults, seed 0), prunes it with every method on
the acceptance geometry (64×64 crossbars, 2-bit cells, 1-bit DAC, 8-bit weights and inputs), and
measures each checkpoint through the public APIs: ``codesign.analysis`` (the lossless config
``codesign analyze`` would print), ``codesign.emulate`` (accuracy on the crossbars) and
``codesign.cost`` (ADC energy). Checkpoints go to ``--work`` (default ``build/pruning``).
Deterministic on CPU for a given PyTorch build (one thread); takes about 5 minutes.
"""

from __future__ import annotations

import argparse
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from codesign.analysis import analyze
from codesign.config import CrossbarConfig
from codesign.cost import adc_energy_ratios
from codesign.emulate import accuracy_report
from codesign.ingest import load_model
from codesign.prune import prune, train_dense
from codesign.prune.stats import level_config, level_histogram, slice_sparsity

CROSSBAR = {"rows": 64, "cols": 64, "cell_bits": 2, "dac_bits": 1}
OUT = Path(__file__).with_name("pruning_results.md")
SPLITS = ("test", "val")
MODELS = ("walden", "isaac")      #: the 2^N model and the report's default (codesign.cost.CostSettings().adc_model)
DIGITS_DUB = {"lambda_var": 5e-3, "regularize": {"batch_size": 32, "weight_decay": 5e-3}}
STRONG_DUB = {"lambda_var": 0.02, "regularize": {"batch_size": 32, "weight_decay": 0.01}}


@dataclass
class Case:
    label: str
    method: str
    overrides: dict[str, Any] = field(default_factory=dict)
    note: str = "defaults"


CASES = [
    Case("magnitude", "magnitude"),
    Case("dub", "dub", note="released-code defaults (CIFAR-10 settings)"),
    Case("dub-digits", "dub", DIGITS_DUB, "λ_var = λ_l2 = 5·10⁻³ (a released run), regularize batch 32"),
    Case("dub-strong", "dub", STRONG_DUB, "λ_var 0.02, λ_l2 10⁻² (beyond the released ranges), regularize batch 32"),
    Case("tinyadc", "tinyadc"),
    Case("crossbar", "crossbar"),
    Case("column", "column", {"reorder": True}, "with input feature-map reorder"),
    Case("crimp", "crimp"),
    Case("bitslice", "bitslice"),
]


def measure(path: Path) -> dict[str, Any]:
    """Accuracy before emulation from the checkpoint's meta; crossbar-emulated accuracy on the test
    and val splits; sparsity, tiles and ADC energy from the integer weights."""
    checkpoint = torch.load(path, weights_only=True)
    model = load_model(path)
    config = analyze(model, CrossbarConfig(**CROSSBAR)).to_config()
    matrices = {layer.key: layer.q for layer in model.layers}
    live = sum(max(tile.adc_bits, default=0) > 0 for layer in config.layers for tile in layer.tiles)
    geometry = config.geometry(config.layers[0])
    mats = {key: q[None] for key, q in matrices.items()}
    meta = checkpoint["meta"]
    return {"meta": meta, "live": live, "tiles": sum(len(layer.tiles) for layer in config.layers),
            "accuracy": {split: accuracy_report(model, config, "digits", split)["accuracy"] for split in SPLITS},
            "energy": adc_energy_ratios(config, MODELS),
            "levels_energy": adc_energy_ratios(level_config(config, matrices), MODELS),
            "packed": packed_crossbars(checkpoint, geometry) if "recombination" in meta else None,
            "levels": level_histogram(mats, geometry),
            "sparsity": sum(int((m == 0).sum()) for m in mats.values()) / sum(m.size for m in mats.values()),
            "slices": slice_sparsity(mats, geometry)}


def packed_crossbars(checkpoint: dict[str, Any], geometry: Any) -> int:
    """Crossbars after output recombination: in each row block the live columns, L to a crossbar."""
    total = 0
    for name, groups in checkpoint["meta"]["recombination"].items():
        mask = checkpoint["masks"][name]
        matrices = mask.reshape(len(groups), mask.shape[0] // len(groups), -1).transpose(1, 2)    # [G, K, N]
        for matrix, blocks in zip(matrices, groups):
            for rb in range(len(blocks)):
                live = int(matrix[rb * geometry.rows:(rb + 1) * geometry.rows].any(0).sum())
                total += -(-live // geometry.logical_cols)
    return total


def row(label: str, note: str, result: dict[str, Any], dense: dict[str, float], seconds: float) -> dict[str, Any]:
    """One method's cells; ``dense`` holds the dense model's float accuracy per split, the reference
    of the accuracy drops."""
    meta = result["meta"]
    acc = meta["accuracy"]
    quantized = acc.get("pruned_quantized", acc.get("quantized"))
    levels = result["levels"]
    crossbars = f"{result['live']}/{result['tiles']}"
    if result["packed"] is not None:
        crossbars += f" ({result['packed']} packed)"
    emulated = {split: result["accuracy"][split]["crossbar"] for split in SPLITS}
    cells = {
        "method": label, "settings": note,
        "float": f"{acc.get('pruned_float', acc.get('float')):.2f}", "quantized": f"{quantized:.2f}",
        "emulated": f"{emulated['test']:.2f}", "val": f"{emulated['val']:.2f}",
        "drop": dense["test"] - emulated["test"], "val_drop": dense["val"] - emulated["val"],
        "sparsity": f"{100 * result['sparsity']:.1f}", "slices": f"{100 * result['slices']:.1f}",
        "crossbars": crossbars,
        "levels": " / ".join(str(levels.get(str(k), 0)) for k in range(6)) + f" / {levels['empty']}",
        "time": f"{seconds:.0f}",
    }
    for model in MODELS:
        energy, dub = result["energy"][model], result["levels_energy"][model]
        cells.update({
            f"{model}_u_lv": dub["per_column_vs_uniform"], f"{model}_u_x": energy["per_crossbar_vs_uniform"],
            f"{model}_u_c": energy["per_column_vs_uniform"], f"{model}_x_c": energy["per_column_vs_per_crossbar"],
            f"{model}_lv_c": dub["per_column_pj"] / energy["per_column_pj"]})
    return cells


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    def cell(value: Any) -> str:
        return f"{value:.2f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(title for _, title in columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(r[key]) for key, _ in columns) + " |" for r in rows]
    return "\n".join(lines)


def verdicts(rows: list[dict[str, Any]]) -> list[str]:
    """The issue's targets, checked on the numbers above, for each accounting and ADC model."""
    def met(ok: bool) -> str:
        return "met" if ok else "**not met**"

    lines = []
    dub = [r for r in rows if r["method"].startswith("dub")]
    for r in dub:
        accurate = r["drop"] <= 1.0
        per_model = []
        for model, name in (("walden", "2^N model"), ("isaac", "isaac model")):
            per_model.append(
                f"{name}: {r[f'{model}_u_lv']:.2f}× in D.U.B.'s level accounting (≥ 4× with ≤ 1 point: "
                f"{met(accurate and r[f'{model}_u_lv'] >= 4)}), {r[f'{model}_u_x']:.2f}× with per-crossbar lossless "
                f"bits ({met(accurate and r[f'{model}_u_x'] >= 4)}); per-column lossless adds "
                f"{r[f'{model}_x_c']:.2f}× on top of the per-crossbar figure (≥ 1.3×: {met(r[f'{model}_x_c'] >= 1.3)})")
        lines.append(f"- `{r['method']}` ({r['settings']}): accuracy drop {r['drop']:+.2f} points on the test split "
                     f"({r['val_drop']:+.2f} on val). ADC energy against dense-uniform, " + "; ".join(per_model) + ".")
    eligible = [r for r in dub if r["val_drop"] <= 1.0]
    if eligible:
        best = max(eligible, key=lambda r: r["walden_u_x"])
        lines.append(f"- Chosen on the val split (the largest per-crossbar saving under the 2^N model with a val "
                     f"drop ≤ 1 point), not on test: `{best['method']}`.")
    else:
        lines.append("- No D.U.B. setting keeps the val drop within 1 point.")
    return lines


def report(rows: list[dict[str, Any]], dense: dict[str, float]) -> str:
    accuracy = table(rows, [("method", "method"), ("settings", "settings"), ("float", "float %"),
                            ("quantized", "quantized %"), ("emulated", "crossbar-emulated %"),
                            ("val", "val: crossbar-emulated %"),
                            ("sparsity", "zero weights %"), ("slices", "zero cell digits %"),
                            ("crossbars", "live crossbars"), ("levels", "tiles at level 0/1/2/3/4/5/empty"),
                            ("time", "run s")])
    energy = {model: table(rows, [("method", "method"), (f"{model}_u_lv", "dense-uniform ÷ D.U.B. levels"),
                                  (f"{model}_u_x", "dense-uniform ÷ per-crossbar"),
                                  (f"{model}_u_c", "dense-uniform ÷ per-column"),
                                  (f"{model}_x_c", "per-crossbar ÷ per-column"),
                                  (f"{model}_lv_c", "D.U.B. levels ÷ per-column")])
              for model in MODELS}
    return f"""# Pruning methods on the digits model

Regenerated by `make results` (`python examples/pruning_results.py`); do not edit by hand.
Machine: {platform.processor() or platform.machine()}, PyTorch {torch.__version__}, one CPU thread.

**Set-up.** `codesign.zoo.DigitsCNN` (matrices 9×16, 144×32, 288×64, 256×64, 64×10) trained dense with
`codesign train digits_cnn` (seed 0, on the 1077 training digits; float accuracy {dense['test']:.2f} % on
the test split, {dense['val']:.2f} % on val), then pruned by every method with
`codesign prune --rows 64 --cols 64` (2-bit cells, 1-bit DAC, 8-bit weights and inputs: S = 4 slices,
L = 8 logical columns per crossbar, T = 8 input cycles, dense-uniform ADC 8 bits). Hyperparameters
are each method's defaults (README, "codesign prune") unless the settings column says otherwise;
every run is deterministic. Accuracy is on the 360 test digits (one image = 0.28 points) unless
marked val (the 360 validation digits, for choosing between settings). "float" evaluates the pruned
weights before rounding to their integer grid, "quantized" the checkpoint as written (float
activations), "crossbar-emulated" the checkpoint on its crossbars (`codesign.emulate`: 8-bit
activations with scales from the training split, every column at its lossless ADC bits, which is
bit-exact with the ideal integer model). Zero weights, crossbars and levels are counted on the
integer weights `codesign.ingest` reads from the checkpoint; a crossbar is live if any of its
columns needs an ADC; "packed" counts crossbars after the column method's output recombination.
Tiles per D.U.B. level: the least sparse column of a level-k tile keeps at most r/2^k of its r rows.

{accuracy}

**ADC energy** per inference (`codesign.cost.adc_energy_ratios`; T·positions conversions per
converted column, a column that is never converted costs 0). *Dense-uniform*: every column of every
crossbar at 8 bits. *D.U.B. levels*: D.U.B.'s own accounting, every column of a level-k crossbar at
8 − k bits, empty crossbars removed. *Per-crossbar*: every column of a crossbar at the crossbar's
largest lossless bits (docs/design.md §3.11, the shared-ADC assumption). *Per-column*: every column at its own
lossless bits (codesign's analysis). Ratios above 1 are savings. The level accounting charges every
crossbar the full 8 bits at level 0 whatever its rows, as D.U.B. does: the 9-row first layer (64
positions per inference) and the 16-row last row block of `features.2` keep it low however sparse the
rest becomes; the lossless accountings see that a 9-row column never needs 8 bits.

Under the 2^N model (`walden`: a b-bit conversion costs FOM·2^b, the model of D.U.B. and most
pruning papers):

{energy['walden']}

Under the report's default model (`isaac`: ISAAC's 8-bit SAR and its 4–10-bit family, 0.79 pJ at
4 b against 1.67 pJ at 8 b; below 4 b extrapolated at the 4→5 b ratio, ×0.80 per bit), where a bit
saved is worth far less than under 2^N:

{energy['isaac']}

**Targets** (issue 7: D.U.B. at least 4× ADC energy against dense with at most 1 point accuracy
drop; per-column lossless adding at least 1.3× on top of D.U.B.'s per-crossbar figure). The drop is
end to end: the dense model's float accuracy minus the pruned model's crossbar-emulated accuracy.

{chr(10).join(verdicts(rows))}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("build/pruning"), help="where checkpoints go")
    parser.add_argument("--only", help="comma-separated case labels (default: all)")
    parser.add_argument("--epochs", type=int, help="epochs of every phase (a quick check; default: each method's)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    chosen = [c for c in CASES if not args.only or c.label in args.only.split(",")]

    started = time.perf_counter()
    path = args.work / "dense.pt"
    train_dense("digits_cnn", "digits", path, seed=0, epochs=args.epochs)
    measured = measure(path)
    dense = {split: measured["accuracy"][split]["float"] for split in SPLITS}
    rows = [row("dense", "codesign train defaults", measured, dense, time.perf_counter() - started)]
    for case in chosen:
        started = time.perf_counter()
        out = args.work / f"{case.label}.pt"
        prune(str(path), case.method, "digits", out, overrides=case.overrides, crossbar=CROSSBAR, seed=0,
              epochs=args.epochs)
        rows.append(row(case.label, case.note, measure(out), dense, time.perf_counter() - started))
    OUT.write_text(report(rows, dense))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
