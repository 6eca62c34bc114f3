"""ResNet-shaped state_dicts with random weights, magnitude-pruned: inputs of the benchmarks."""

from __future__ import annotations

from pathlib import Path


def resnet_shapes(depth: int) -> dict[str, tuple[int, ...]]:
    """Conv/Linear weight shapes of torchvision's ResNet-18 or ResNet-50 (ImageNet, 1000 classes)."""
    blocks, bottleneck = {18: ([2, 2, 2, 2], False), 50: ([3, 4, 6, 3], True)}[depth]
    shapes: dict[str, tuple[int, ...]] = {"conv1": (64, 3, 7, 7)}
    inplanes = 64
    for stage, (count, planes) in enumerate(zip(blocks, (64, 128, 256, 512)), start=1):
        out = planes * (4 if bottleneck else 1)
        for block in range(count):
            name = f"layer{stage}.{block}"
            if bottleneck:
                shapes[f"{name}.conv1"] = (planes, inplanes, 1, 1)
                shapes[f"{name}.conv2"] = (planes, planes, 3, 3)
                shapes[f"{name}.conv3"] = (out, planes, 1, 1)
            else:
                shapes[f"{name}.conv1"] = (planes, inplanes, 3, 3)
                shapes[f"{name}.conv2"] = (planes, planes, 3, 3)
            if block == 0 and inplanes != out:
                shapes[f"{name}.downsample.0"] = (out, inplanes, 1, 1)
            inplanes = out
    shapes["fc"] = (1000, inplanes)
    return shapes


def pruned_resnet(depth: int, path: Path, sparsity: float = 0.5, seed: int = 0) -> Path:
    """Write a random ResNet-`depth` state_dict with each layer magnitude-pruned to `sparsity`."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in resnet_shapes(depth).items():
        weight = torch.randn(shape, generator=generator) * (2.0 / (shape[1] * (shape[2] * shape[3] if len(shape) == 4 else 1))) ** 0.5
        threshold = weight.abs().flatten().kthvalue(max(1, int(sparsity * weight.numel()))).values
        state[f"{name}.weight"] = torch.where(weight.abs() > threshold, weight, torch.zeros(()))
    torch.save(state, path)
    return path
