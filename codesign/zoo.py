"""Model architectures known by name, so checkpoints carry ``arch`` instead of pickled code.

Each entry builds an ``nn.Module`` from keyword arguments and knows its input shape (C, H, W),
which lets the toolkit count output positions per layer and run whole-model emulation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch import Tensor, nn

from .errors import CodesignError


class DigitsCNN(nn.Module):
    """The bundled model: a small CNN for scikit-learn's 8×8 digits (input 1×8×8, values 0–1).

    Weight matrices (K×N) for width w: features.0 9×w, features.2 9w×2w, features.5 18w×4w,
    classifier.1 16w×64, classifier.3 64×classes. With w = 16 the 144-, 288- and 256-row layers
    span several 64-row crossbars.
    """

    def __init__(self, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(),                # 8×8
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),                                             # 4×4
            nn.Conv2d(2 * width, 4 * width, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),                                             # 2×2
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * width, 64), nn.ReLU(), nn.Linear(64, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


class VGG(nn.Module):
    """Plain VGG for 3×32×32 images: 3×3 convolutions (padding 1) and 2×2 max-pools from ``config``
    (an int = a convolution's output channels, ``"M"`` = a pool), then a fully connected classifier.

    Module names follow torchvision's VGG (``features.N``, ``classifier.N``).
    """

    def __init__(self, config: list[int | str], hidden: list[int], num_classes: int = 10,
                 batch_norm: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for item in config:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            layers.append(nn.Conv2d(channels, int(item), 3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(int(item)))
            layers.append(nn.ReLU())
            channels = int(item)
        self.features = nn.Sequential(*layers)
        pools = sum(1 for item in config if item == "M")
        width = channels * (32 >> pools) ** 2
        head: list[nn.Module] = []
        for size in hidden:
            head += [nn.Linear(width, size), nn.ReLU()]
            if dropout:
                head.append(nn.Dropout(dropout))
            width = size
        head.append(nn.Linear(width, num_classes))
        self.classifier = nn.Sequential(*head)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x).flatten(1))


def vgg8(num_classes: int = 10, batch_norm: bool = True) -> VGG:
    """VGG8 for CIFAR-10 as in DNN+NeuroSim (the model of Liang et al.'s CIFAR experiments):
    conv 128-128-M-256-256-M-512-512-M, then fc 8192→1024→classes. Batch norm after every
    convolution by default (folded into the digital periphery, not mapped)."""
    return VGG([128, 128, "M", 256, 256, "M", 512, 512, "M"], [1024], num_classes, batch_norm)


def vgg11_cifar(num_classes: int = 10, batch_norm: bool = False) -> VGG:
    """VGG11 as in D.U.B.'s released code (``custom_models_cifar_vgg.vgg11``): 8 convolutions
    64-M-128-M-256-256-M-512-512-M-512-512-M without batch norm, then 512→512→512→classes with
    ReLU and dropout 0.5 (9,217,728 convolution weights)."""
    return VGG([64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"], [512, 512], num_classes,
               batch_norm, dropout=0.5)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3×3 convolutions with batch norm; a 1×1 convolution + batch norm on
    the shortcut when the stride or the width changes (torchvision's ``downsample`` names)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    """ResNet of basic blocks: a stem, stages of ``blocks`` blocks at ``widths`` channels (stride 2
    from the second stage on), global average pooling and a linear classifier ``fc``."""

    def __init__(self, stem: list[tuple[str, nn.Module]], widths: list[int], blocks: int, num_classes: int) -> None:
        super().__init__()
        self.stem_layers = [name for name, _ in stem]
        for name, module in stem:
            self.add_module(name, module)
        stages = []
        inplanes = widths[0]
        for index, planes in enumerate(widths):
            stride = 1 if index == 0 else 2
            stage = [BasicBlock(inplanes, planes, stride)] + [BasicBlock(planes, planes) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*stage))
            inplanes = planes
        for index, stage in enumerate(stages):
            self.add_module(f"layer{index + 1}", stage)
        self.stages = len(stages)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], num_classes)

    def forward(self, x: Tensor) -> Tensor:
        for name in self.stem_layers:
            x = getattr(self, name)(x)
        for index in range(self.stages):
            x = getattr(self, f"layer{index + 1}")(x)
        return self.fc(self.avgpool(x).flatten(1))


def resnet20(num_classes: int = 10) -> ResNet:
    """ResNet-20 for CIFAR-10 (He et al. 2016; the bit-slice L1 code's ``resnet(depth=20)``): a 3×3
    stem of 16 channels, three stages of three blocks at 16/32/64 channels, 1×1-convolution shortcuts."""
    stem = [("conv1", nn.Conv2d(3, 16, 3, 1, 1, bias=False)), ("bn1", nn.BatchNorm2d(16)), ("relu", nn.ReLU())]
    return ResNet(stem, [16, 32, 64], 3, num_classes)


def resnet18(num_classes: int = 1000) -> ResNet:
    """ResNet-18 for 3×224×224 images with torchvision's module names, so a torchvision
    ``resnet18`` state_dict loads as is (trained init): 7×7 stem, max-pool, four stages of two
    blocks at 64/128/256/512 channels (20 convolutions with the shortcuts, 11,166,912 weights)."""
    stem = [("conv1", nn.Conv2d(3, 64, 7, 2, 3, bias=False)), ("bn1", nn.BatchNorm2d(64)), ("relu", nn.ReLU()),
            ("maxpool", nn.MaxPool2d(3, 2, 1))]
    return ResNet(stem, [64, 128, 256, 512], 2, num_classes)


@dataclass(frozen=True)
class Arch:
    build: Callable[..., nn.Module]
    input_shape: tuple[int, int, int]
    description: str


ARCHS: dict[str, Arch] = {
    "digits_cnn": Arch(DigitsCNN, (1, 8, 8), "small CNN for the 8×8 digits (the bundled model)"),
    "vgg8": Arch(vgg8, (3, 32, 32), "VGG8 for CIFAR-10 (DNN+NeuroSim; Liang et al.)"),
    "vgg11_cifar": Arch(vgg11_cifar, (3, 32, 32), "VGG11 for CIFAR-10, 8 conv + 512-512-10 (D.U.B.'s code)"),
    "resnet20": Arch(resnet20, (3, 32, 32), "ResNet-20 for CIFAR-10 (bit-slice L1's code)"),
    "resnet18": Arch(resnet18, (3, 224, 224), "ResNet-18 for ImageNet-sized images (torchvision names)"),
}


def get_arch(name: str) -> Arch:
    try:
        return ARCHS[name]
    except KeyError:
        raise CodesignError(f"unknown architecture '{name}'; known: {', '.join(sorted(ARCHS))}") from None


def build(name: str, kwargs: dict[str, Any] | None = None) -> nn.Module:
    """Instantiate architecture ``name`` with ``kwargs``; a bad argument is a one-line error."""
    arch = get_arch(name)
    try:
        return arch.build(**(kwargs or {}))
    except TypeError as exc:
        raise CodesignError(f"architecture '{name}' rejects its arguments {kwargs}: {exc}") from None
