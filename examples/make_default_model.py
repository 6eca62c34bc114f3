"""Make the bundled default model: examples/digits_cnn_pruned.pt.

A small CNN (codesign.zoo.DigitsCNN) trained on scikit-learn's bundled 8×8 digits, magnitude-
pruned layer by layer, fine-tuned with its masks under 8-bit weight quantization (straight-through
estimator), and saved as a codesign checkpoint with per-layer scales and masks.

    python examples/make_default_model.py        # about 10 s on one CPU core

Deterministic on CPU for a given PyTorch build (one thread). Trained on the digits' train split
(1077 images); the val split is left for calibration. The test-split accuracies it prints are
recorded in examples/README.md.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from codesign.checkpoint import make_checkpoint, save_checkpoint
from codesign.data import digits
from codesign.zoo import DigitsCNN

WEIGHT_BITS = 8
INPUT_BITS = 8
SPARSITY = {"features.0": 0.3, "features.2": 0.6, "features.5": 0.7, "classifier.1": 0.75, "classifier.3": 0.5}
OUT = Path(__file__).with_name("digits_cnn_pruned.pt")


def layers(model: nn.Module) -> dict[str, nn.Module]:
    return {name: m for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


def scale_of(weight: torch.Tensor) -> torch.Tensor:
    return weight.detach().abs().max() / (2 ** (WEIGHT_BITS - 1) - 1)


def fake_quant(weight: torch.Tensor) -> torch.Tensor:
    """Symmetric per-layer quantization with a straight-through gradient."""
    scale = scale_of(weight)
    return weight + (torch.round(weight / scale) * scale - weight).detach()


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean()) * 100


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, lr: float,
          masks: dict[str, torch.Tensor] | None = None, quantize: bool = False) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    mods = layers(model)
    gen = torch.Generator().manual_seed(1)
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=gen)
        for start in range(0, len(y), 64):
            idx = order[start:start + 64]
            loss = forward_loss(model, x[idx], y[idx], mods if quantize else None)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if masks:
                with torch.no_grad():
                    for name, m in mods.items():
                        m.weight.mul_(masks[name])
        sched.step()


def forward_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, quantized: dict | None) -> torch.Tensor:
    """Cross-entropy, with the weights of ``quantized`` layers fake-quantized when given."""
    weights = {f"{name}.weight": fake_quant(m.weight) for name, m in (quantized or {}).items()}
    return nn.functional.cross_entropy(torch.func.functional_call(model, weights, (x,)), y)


def main() -> None:
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)        # small layers: faster on one thread, and the result ignores the core count
    xtr, ytr = (torch.from_numpy(a) for a in digits("train"))
    xte, yte = (torch.from_numpy(a) for a in digits("test"))
    model = DigitsCNN()
    train(model, xtr, ytr, epochs=40, lr=3e-3)
    dense = accuracy(model.eval(), xte, yte)
    masks = {}
    for name, m in layers(model).items():
        w = m.weight.detach()
        k = int(SPARSITY[name] * w.numel())
        threshold = w.abs().flatten().kthvalue(k).values if k else -1
        masks[name] = (w.abs() > threshold).float()
        m.weight.data.mul_(masks[name])
    pruned = accuracy(model, xte, yte)
    train(model.train(), xtr, ytr, epochs=30, lr=1e-3, masks=masks, quantize=True)
    scales = {}
    with torch.no_grad():
        for name, m in layers(model).items():
            scales[name] = scale_of(m.weight)
            m.weight.copy_(torch.round(m.weight / scales[name]) * scales[name] * masks[name])
    final = accuracy(model.eval(), xte, yte)
    sparsity = 1 - sum(float(v.sum()) for v in masks.values()) / sum(v.numel() for v in masks.values())
    meta = {"method": "magnitude", "dataset": "digits", "sparsity": round(sparsity, 4),
            "accuracy": {"dense_float": round(dense, 2), "pruned_float": round(pruned, 2),
                         "pruned_finetuned_quantized": round(final, 2)},
            "made_by": "examples/make_default_model.py"}
    ckpt = make_checkpoint("digits_cnn", {}, model.state_dict(), weight_bits=WEIGHT_BITS, input_bits=INPUT_BITS,
                           scales=scales, masks={k: v.bool() for k, v in masks.items()}, meta=meta)
    save_checkpoint(ckpt, OUT)
    print(f"dense {dense:.2f}%  pruned {pruned:.2f}%  fine-tuned 8-bit {final:.2f}%  sparsity {100 * sparsity:.1f}%")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
