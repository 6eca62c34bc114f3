"""Model zoo: every architecture builds, runs on its input shape, and matches published sizes."""

import pytest
import torch
from torch import nn

from codesign import zoo
from codesign.errors import CodesignError
from codesign.prune.core import Grid


def conv_layers(model):
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


def tiles_at(model, size):
    """D.U.B.'s tile count: size × size logical tiles over every convolution's flattened weight."""
    total = 0
    for conv in conv_layers(model):
        grid = Grid(conv.weight[0].numel(), conv.weight.shape[0], size, size)
        total += grid.row_blocks * grid.col_blocks
    return total


@pytest.mark.parametrize("name", sorted(zoo.ARCHS))
def test_every_architecture_runs_on_its_input_shape(name):
    torch.manual_seed(0)
    model = zoo.build(name, {"num_classes": 7})
    arch = zoo.get_arch(name)
    out = model.eval()(torch.rand(2, *arch.input_shape))
    assert out.shape == (2, 7)


def test_vgg11_cifar_matches_dub_code():
    """docs/design.md §8.1: 8 convolutions with 9,217,728 weights and 2251 tiles at T = 64; 512-512-10 head."""
    model = zoo.build("vgg11_cifar")
    convs = conv_layers(model)
    assert len(convs) == 8
    assert sum(c.weight.numel() for c in convs) == 9_217_728
    assert tiles_at(model, 64) == 2251
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(512, 512), (512, 512), (512, 10)]


def test_resnet18_matches_torchvision_and_dub():
    """torchvision's resnet18 has 11,689,512 parameters and 122 state_dict entries; docs/design.md §8.6:
    20 convolutions (with the shortcuts), 11,166,912 weights, 2727 tiles at T = 64."""
    model = zoo.build("resnet18")
    assert sum(p.numel() for p in model.parameters()) == 11_689_512
    assert len(model.state_dict()) == 122
    convs = conv_layers(model)
    assert len(convs) == 20
    assert sum(c.weight.numel() for c in convs) == 11_166_912
    assert tiles_at(model, 64) == 2727
    assert "layer4.1.conv2.weight" in model.state_dict() and "layer2.0.downsample.0.weight" in model.state_dict()


def test_resnet20_has_nineteen_convolutions_and_270k_parameters():
    """He et al.: ResNet-20 for CIFAR has 0.27 M parameters; 1 + 18 convolutions plus 2 shortcut convolutions."""
    model = zoo.build("resnet20")
    assert len(conv_layers(model)) == 21
    assert 0.26e6 < sum(p.numel() for p in model.parameters()) < 0.28e6


def test_vgg8_layout():
    model = zoo.build("vgg8")
    assert [c.out_channels for c in conv_layers(model)] == [128, 128, 256, 256, 512, 512]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(8192, 1024), (1024, 10)]


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(CodesignError, match="vgg8.*rejects"):
        zoo.build("vgg8", {"width": 3})
    with pytest.raises(CodesignError, match="unknown architecture 'vgg99'"):
        zoo.build("vgg99")
