"""Whole-model emulation and ``codesign emulate`` against PyTorch's own conv2d/linear."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from codesign.analysis import analyze
from codesign.cli import main
from codesign.config import CrossbarConfig, ModelInfo
from codesign.emulate import (accuracies, calibrate_inputs, emulate_layer, emulated_module,
                              load_layer_inputs, predict)
from codesign.errors import CodesignError
from codesign.golden import layer_outputs_reference
from codesign.ingest import ConvInfo, LayerSpec, ModelSpec, load_model

STEP = 0.01    # the test network's weights are integers times STEP, so q is known exactly


class Net(nn.Module):
    """Strided, padded, dilated, grouped convolutions and a linear layer, on 4×9×9 inputs."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(4, 6, 3, stride=2, padding=1, dilation=2, groups=2)
        self.conv2 = nn.Conv2d(6, 5, (2, 3), stride=(1, 2), padding=(1, 0))
        self.fc = nn.Linear(5 * 5 * 1, 3)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        return self.fc(x.flatten(1))


def net_model(seed=0):
    """A ModelSpec for :class:`Net` with integer weights (|q| ≤ 20) built by hand: matrices in
    PyTorch flatten order (cin, kh, kw), one per group."""
    torch.manual_seed(seed)
    net = Net().eval()
    layers = []
    for name, module in net.named_children():
        with torch.no_grad():
            module.weight.copy_(torch.randint(-20, 21, module.weight.shape) * STEP)
        q = torch.round(module.weight / STEP).to(torch.int32).numpy()
        groups = getattr(module, "groups", 1)
        per_group = q.shape[0] // groups
        conv = None
        if isinstance(module, nn.Conv2d):
            conv = ConvInfo(module.in_channels, module.out_channels, module.kernel_size, module.stride,
                            module.padding, module.dilation, groups)
        for g in range(groups):
            matrix = q[g * per_group:(g + 1) * per_group].reshape(per_group, -1).T.copy()
            layers.append(LayerSpec(name, "conv2d" if conv else "linear", g, matrix, np.full(per_group, STEP), 8, 8, conv))
    return ModelSpec(layers, ModelInfo(path="net", sha256="0" * 64, format="module"), module=net, input_shape=(4, 9, 9))


def reference_forward(net, quant, x):
    """The ideal integer model with PyTorch ops: each layer sees its quantized input x_q·s."""
    def quantized(name, value):
        q = quant[name]
        low, high = q.limits()
        return torch.clamp(torch.round(value / q.scale), low, high) * q.scale

    x = x.double()
    w = {name: m.weight.double() for name, m in net.named_children()}
    b = {name: m.bias.double() for name, m in net.named_children()}
    x = torch.relu(nn.functional.conv2d(quantized("conv1", x), w["conv1"], b["conv1"], 2, 1, 2, 2))
    x = torch.relu(nn.functional.conv2d(quantized("conv2", x), w["conv2"], b["conv2"], (1, 2), (1, 0)))
    return nn.functional.linear(quantized("fc", x.flatten(1)), w["fc"], b["fc"])


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed-input"])
def test_ideal_mode_is_pytorch_on_quantized_values(signed):
    model = net_model()
    images = torch.rand(16, 4, 9, 9) * (2 if signed else 1) - (1 if signed else 0)
    quant = calibrate_inputs(model, images.numpy())
    assert quant["conv1"].signed is signed and not quant["conv2"].signed and not quant["fc"].signed
    with torch.no_grad():
        ours = emulated_module(model, quant, "ideal")(images).double()
    torch.testing.assert_close(ours, reference_forward(model.module, quant, images), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed-input"])
def test_lossless_crossbar_equals_ideal_bit_for_bit(signed):
    model = net_model(1)
    images = (torch.rand(8, 4, 9, 9) * (2 if signed else 1) - (1 if signed else 0)).numpy()
    quant = calibrate_inputs(model, images)
    config = analyze(model, CrossbarConfig(rows=16, cols=16, cell_bits=2, dac_bits=2)).to_config()
    with torch.no_grad():
        ideal = emulated_module(model, quant, "ideal")(torch.from_numpy(images))
        crossbar = emulated_module(model, quant, "crossbar", config)(torch.from_numpy(images))
    assert torch.equal(ideal, crossbar)


def test_signed_layer_drives_the_crossbar_with_offset_inputs():
    """Under a lossy config a signed layer's output is the crossbar's on u = x_q + 2^(a−1), minus
    2^(a−1)·Σ_r Q[r, j], rescaled: checked against the literal reference of docs/design.md §3.6–3.9."""
    model = net_model(2)
    images = torch.rand(4, 4, 9, 9) * 2 - 1
    quant = calibrate_inputs(model, images.numpy())
    config = analyze(model, CrossbarConfig(rows=16, cols=16)).to_config()
    for layer in config.layers:
        if layer.name == "conv1":
            for tile in layer.tiles:
                tile.adc_bits = [max(b - 1, 0) for b in tile.adc_bits]
    seen, outputs = {}, {}
    module = emulated_module(model, quant, "crossbar", config, observer=lambda key, u: seen.setdefault(key, u))
    module.conv1.register_forward_hook(lambda m, i, out: outputs.setdefault("conv1", out))
    with torch.no_grad():
        module(images)
    groups = []
    for spec in (model.layer("conv1"), model.layer("conv1#1")):
        u = seen[spec.key]
        assert u.min() >= 1 and (u - 128).min() < 0           # unsigned on the wordlines, signed x_q
        y = layer_outputs_reference(spec.q, config, config.layer(spec.key), u) - 128 * spec.q.sum(axis=0)
        assert not np.array_equal(y, (u - 128) @ spec.q.astype(np.int64))     # the lossy ADC matters
        groups.append(y)
    bias = model.module.conv1.bias.detach().double().numpy()
    expected = np.concatenate(groups, axis=1) * quant["conv1"].scale * STEP + bias
    expected = expected.reshape(4, 4, 4, 6).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(outputs["conv1"].double().numpy(), expected, rtol=1e-5, atol=1e-5)


def test_activation_scales_come_from_the_largest_input():
    model = net_model()
    images = np.zeros((2, 4, 9, 9), dtype=np.float32)
    images[0, 0, 0, 0], images[1, 3, 8, 8] = 0.5, 2.55
    quant = calibrate_inputs(model, images)
    assert quant["conv1"].scale == pytest.approx(2.55 / 255) and not quant["conv1"].signed
    images[1, 2, 4, 4] = -5.1
    quant = calibrate_inputs(model, images)
    assert quant["conv1"].scale == pytest.approx(5.1 / 127) and quant["conv1"].signed


@pytest.fixture(scope="module")
def bundled():
    from codesign.data import load_dataset

    model = load_model()
    train, _ = load_dataset("digits", "train")
    images, labels = load_dataset("digits", "test")
    return model, calibrate_inputs(model, train), images[:120], labels[:120]


def test_accuracy_three_ways_and_a_lossy_config_costs_accuracy(bundled):
    model, quant, images, labels = bundled
    lossless = analyze(model, CrossbarConfig()).to_config()
    result = accuracies(model, lossless, images, labels, quant)
    assert result["crossbar"] == result["ideal"] and result["float"] > 95
    one_bit = lossless.model_copy(deep=True)
    for layer in one_bit.layers:
        for tile in layer.tiles:
            tile.adc_bits = [min(b, 1) for b in tile.adc_bits]
    assert accuracies(model, one_bit, images, labels, quant)["crossbar"] < result["ideal"] - 20


def test_unsupported_modules_are_named():
    model = net_model()
    quant = calibrate_inputs(model, np.zeros((1, 4, 9, 9), dtype=np.float32))
    with pytest.raises(CodesignError, match="'fc' saw no input"):
        emulated_module(model, {k: v for k, v in quant.items() if k != "fc"}, "ideal")
    model.module.conv2.padding_mode = "reflect"
    with pytest.raises(CodesignError, match="'conv2' pads with 'reflect'"):
        emulated_module(model, quant, "ideal")


def test_whole_model_needs_an_architecture(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save(load_model().module.state_dict(), path)
    # The hint says what really works (a file that carries its architecture), not "save a codesign
    # checkpoint", which only a zoo architecture can do.
    with pytest.raises(CodesignError, match=r"plain.pt is a state dict file: whole-model emulation needs a model file "
                                            r"that carries its architecture \(see README 'How a model is read'\)"):
        emulated_module(load_model(path), {}, "ideal")


# --- codesign emulate ---------------------------------------------------------------------------

def run(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_layer_mode_writes_x_times_q(tmp_path, capsys):
    x = np.random.default_rng(0).integers(0, 256, size=(5, 144))
    np.save(tmp_path / "x.npy", x)
    code, _, err = run(["emulate", "--layer", "features.2", "--inputs", str(tmp_path / "x.npy"),
                        "--out", str(tmp_path / "y.npy")], capsys)
    assert code == 0, err
    y = np.load(tmp_path / "y.npy")
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, x @ load_model().layer("features.2").q.astype(np.int64))


@pytest.mark.parametrize("inputs, message", [
    (np.zeros((2, 100), dtype=np.int64), r"shape \[2, 100\]; layer 'features.2' takes \[B, 144\]"),
    (np.full((2, 144), 256), r"values 256..256; layer 'features.2' takes 8-bit unsigned inputs 0..255"),
    (np.full((2, 144), -1), r"values -1..-1"),
    (np.zeros((2, 144)), "holds float64 values"),
])
def test_cli_layer_mode_rejects_bad_inputs(tmp_path, capsys, inputs, message):
    np.save(tmp_path / "x.npy", inputs)
    code, _, err = run(["emulate", "--layer", "features.2", "--inputs", str(tmp_path / "x.npy"),
                        "--out", str(tmp_path / "y.npy")], capsys)
    assert code == 1 and len(err.strip().splitlines()[-1]) > 0 and "Traceback" not in err
    assert __import__("re").search(message, err), err
    assert not (tmp_path / "y.npy").exists()


def test_cli_layer_mode_names_the_layers(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((1, 9), dtype=np.int64))
    code, _, err = run(["emulate", "--layer", "features.9", "--inputs", str(tmp_path / "x.npy"),
                        "--out", str(tmp_path / "y.npy")], capsys)
    assert code == 1 and "no layer 'features.9'" in err and "features.0, features.2" in err
    assert not (tmp_path / "y.npy").exists()


def test_load_layer_inputs_accepts_one_vector(tmp_path):
    np.save(tmp_path / "v.npy", np.arange(9))
    assert load_layer_inputs(str(tmp_path / "v.npy"), "features.0", 9, 8).shape == (9,)
    model = load_model()
    config = analyze(model, CrossbarConfig()).to_config()
    assert emulate_layer(model, config, "features.0", np.arange(9)).shape == (16,)


def test_cli_accuracy_mode_json(capsys, monkeypatch):
    import codesign.data

    real = codesign.data.load_dataset
    monkeypatch.setattr(codesign.data, "load_dataset", lambda spec, split="test": tuple(a[:100] for a in real(spec, split)))
    code, out, err = run(["emulate", "--data", "digits", "--json", "--conductance-sigma", "0.05", "--seed", "1"], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["images"] == 100 and report["nonideal"] == {"conductance_sigma": 0.05, "adc_noise": 0.0, "seed": 1}
    assert set(report["accuracy"]) == {"float", "ideal", "crossbar"}


def test_cli_accuracy_on_the_val_split(capsys):
    code, out, err = run(["emulate", "--data", "digits", "--split", "val", "--json"], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert (report["split"], report["images"], report["activation_scales_from"]) == ("val", 360, "train")


def test_cli_emulate_needs_one_mode(capsys):
    code, _, err = run(["emulate"], capsys)
    assert code == 1 and "--layer NAME" in err and "--data SPEC" in err


def test_predictions_do_not_depend_on_the_batch_size(bundled):
    model, quant, images, _ = bundled
    config = analyze(model, CrossbarConfig()).to_config()
    for layer in config.layers:
        for tile in layer.tiles:
            tile.adc_bits = [max(b - 1, 0) for b in tile.adc_bits]
    module = emulated_module(model, quant, "crossbar", config)
    np.testing.assert_array_equal(predict(module, images[:12], batch_size=5), predict(module, images[:12], batch_size=12))
