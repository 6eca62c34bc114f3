"""Ingest: file formats, layer discovery, quantization, and refusals."""

import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from codesign.checkpoint import make_checkpoint, save_checkpoint
from codesign.errors import CodesignError
from codesign.ingest import load_model, quantize
from codesign.zoo import DigitsCNN


class Grouped(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.grouped = nn.Conv2d(8, 12, 1, groups=2)
        self.norm = nn.BatchNorm2d(12)
        self.head = nn.Linear(12, 5)

    def forward(self, x):
        return self.head(self.norm(self.grouped(self.depthwise(self.stem(x)))).mean((2, 3)))


def test_state_dict_conv_and_linear(tmp_path):
    torch.manual_seed(0)
    model = DigitsCNN()
    path = tmp_path / "sd.pt"
    torch.save(model.state_dict(), path)
    spec = load_model(path)
    assert [(l.name, l.kind, l.q.shape) for l in spec.layers] == [
        ("features.0", "conv2d", (9, 16)), ("features.2", "conv2d", (144, 32)),
        ("features.5", "conv2d", (288, 64)), ("classifier.1", "linear", (256, 64)),
        ("classifier.3", "linear", (64, 10))]
    assert spec.info.format == "state_dict" and len(spec.ignored) == 5
    # Q[K, N] rows in PyTorch flatten order (cin, kh, kw): Q[r, n] = W[n].flatten()[r]
    layer = spec.layers[1]
    w = model.features[2].weight.detach().double().numpy()
    assert np.allclose(layer.q.T * layer.scale[:, None], w.reshape(32, -1), atol=layer.scale.max() / 2 + 1e-12)


def test_checkpoint_scales_masks_and_positions(tmp_path):
    torch.manual_seed(1)
    model = DigitsCNN()
    layers = {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    with torch.no_grad():
        for m in layers.values():
            m.weight.clamp_(-0.12, 0.12)          # |w| / 0.004 ≤ 30, inside 6-bit ±31
    masks = {n: torch.rand_like(m.weight) > 0.5 for n, m in layers.items()}
    scales = {n: torch.tensor(0.004) for n in layers}
    path = tmp_path / "ck.pt"
    save_checkpoint(make_checkpoint("digits_cnn", {}, model.state_dict(), weight_bits=6, input_bits=4,
                                    scales=scales, masks=masks), path)
    spec = load_model(path)
    assert spec.info.format == "checkpoint" and spec.info.arch == "digits_cnn"
    assert all(l.weight_bits == 6 and l.input_bits == 4 for l in spec.layers)
    assert [l.positions for l in spec.layers] == [64, 64, 16, 1, 1]
    first = spec.layers[0]
    w = model.features[0].weight.detach().double().numpy().reshape(16, -1).T
    mask = masks["features.0"].numpy().reshape(16, -1).T
    assert (first.q[~mask] == 0).all()                        # pruned zeros stay zero
    assert (first.q[mask] == np.rint(w[mask] / 0.004)).all()
    assert np.allclose(first.scale, 0.004)


def test_checkpoint_scale_overflow_is_refused(tmp_path):
    model = DigitsCNN()
    path = tmp_path / "ck.pt"
    scales = {"features.0": torch.tensor(1e-6)}
    save_checkpoint(make_checkpoint("digits_cnn", {}, model.state_dict(), weight_bits=8, input_bits=8,
                                    scales=scales), path)
    with pytest.raises(CodesignError, match=r"layer 'features.0': weights exceed ±127 at the checkpoint's scale"):
        load_model(path)


def test_torchscript_keeps_groups(tmp_path):
    torch.manual_seed(2)
    path = tmp_path / "ts.pt"
    torch.jit.save(torch.jit.script(Grouped()), path)
    spec = load_model(path)
    assert spec.info.format == "torchscript"
    keys = [(l.key, l.q.shape) for l in spec.layers]
    assert keys[0] == ("stem", (27, 8))
    assert keys[1:9] == [("depthwise" if g == 0 else f"depthwise#{g}", (9, 1)) for g in range(8)]
    assert keys[9:] == [("grouped", (4, 6)), ("grouped#1", (4, 6)), ("head", (12, 5))]
    assert spec.layers[0].conv.stride == (2, 2) and spec.layers[1].conv.groups == 8
    assert any("norm" in item for item in spec.ignored)


def test_pickled_module_needs_trust(tmp_path):
    path = tmp_path / "module.pt"
    torch.save(Grouped(), path)
    with pytest.raises(CodesignError, match="holds pickled Python objects .* pass --trust-pickle"):
        load_model(path)
    spec = load_model(path, trust_pickle=True)
    assert spec.info.format == "module" and len(spec.layers) == 1 + 8 + 2 + 1


def test_trusted_pickle_of_a_class_that_cannot_be_imported_says_so(tmp_path):
    (tmp_path / "private_net.py").write_text("import torch\nclass Net(torch.nn.Linear):\n    pass\n")
    path = tmp_path / "module.pt"
    save = f"import torch, private_net; torch.save(private_net.Net(4, 3), {str(path)!r})"
    subprocess.run([sys.executable, "-c", save], cwd=tmp_path, check=True)
    assert "private_net" not in sys.modules
    with pytest.raises(CodesignError, match=r"cannot unpickle .*module.pt: .*private_net.*; unpickling a whole module "
                                            r"needs its class importable: run codesign where the module defining it "
                                            r"is on PYTHONPATH, or save model.state_dict\(\) instead"):
        load_model(path, trust_pickle=True)


def test_integer_grid_is_taken_exactly():
    rng = np.random.default_rng(3)
    q = rng.integers(-90, 91, size=(6, 40))          # max |q| 90 < 127: not the default grid
    q[:, 0] = 90
    step = 0.0123
    got, scale = quantize((q * step).astype(np.float32).astype(np.float64), 8, per_channel=True)
    assert (got == q).all() and np.allclose(scale, step)
    got, scale = quantize(q.astype(np.float64), 8, per_channel=False)   # integers: step 1
    assert (got == q).all() and np.allclose(scale, 1.0)


def test_float_weights_quantize_symmetrically():
    w = np.array([[0.5, -1.0, 0.25, 0.0, 1e-4]])
    got, scale = quantize(w + 1e-9, 4, per_channel=False)
    assert got.tolist() == [[4, -7, 2, 0, 0]] and np.isclose(scale[0], 1 / 7, rtol=1e-6)


@pytest.mark.parametrize("content, message", [
    (b"hello world\n", "is not a model file codesign reads (a state_dict or codesign checkpoint (torch.save), "
                        "TorchScript, torch.export .pt2, ONNX or safetensors)"),
    (b"", "is not a model file codesign reads (a state_dict or codesign checkpoint (torch.save), TorchScript, "
          "torch.export .pt2, ONNX or safetensors; it is empty)"),
    (b"\x80\x02\x8a", "is truncated or corrupt"),
])
def test_unreadable_files(tmp_path, content, message):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CodesignError, match=re.escape(message)):
        load_model(path)


def test_truncated_checkpoint(tmp_path):
    path = tmp_path / "good.pt"
    torch.save(DigitsCNN().state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CodesignError, match="is truncated or corrupt"):
        load_model(path)


def test_refusals(tmp_path):
    with pytest.raises(CodesignError, match="model file not found: nowhere.pt"):
        load_model("nowhere.pt")
    path = tmp_path / "norm.pt"
    torch.save(nn.BatchNorm2d(4).state_dict(), path)
    with pytest.raises(CodesignError, match="no Conv2d or Linear weights"):
        load_model(path)
    sd = DigitsCNN().state_dict()
    sd["features.2.weight"][0, 0, 0, 0] = float("nan")
    torch.save(sd, path)
    with pytest.raises(CodesignError, match="layer 'features.2' has 1 NaN or inf weights"):
        load_model(path)
    torch.save({"enc.weight": torch.ones(4, 2, 3), "fc.weight": torch.ones(3, 4)}, path)
    with pytest.raises(CodesignError, match=r"unsupported layer 'enc' \(3-D weight"):
        load_model(path)
    assert [l.name for l in load_model(path, ignore_unsupported=True).layers] == ["fc"]


def test_bundled_model_loads():
    spec = load_model(None)
    assert spec.info.path == "bundled:digits_cnn_pruned.pt" and spec.info.arch == "digits_cnn"
    assert sum(l.q.shape[0] > 64 for l in spec.layers) >= 3          # several 64-row crossbars
    assert np.mean([float((l.q == 0).mean()) for l in spec.layers]) > 0.4   # it is pruned


def test_state_dict_read_without_torch_equals_torch_load(tmp_path):
    from codesign.ingest.archive import state_dict_arrays as _state_dict_arrays

    torch.manual_seed(4)
    state = {"a.weight": torch.randn(3, 4), "half.weight": torch.randn(2, 2, 3, 3).half(),
             "int.bias": torch.arange(3), "t.weight": torch.randn(4, 3).t(), "s.weight": torch.randn(10, 10)[2:5, 1:8:2],
             "empty.weight": torch.zeros(0, 3), "flag": torch.tensor([True, False]), "d.weight": torch.randn(2, 5).double()}
    path = tmp_path / "sd.pt"
    torch.save(state, path)
    arrays = _state_dict_arrays(path)
    assert set(arrays) == set(state)
    for key, tensor in state.items():
        assert arrays[key].dtype == tensor.numpy().dtype and np.array_equal(arrays[key], tensor.numpy()), key


@pytest.mark.parametrize("state", [
    {"bf.weight": torch.ones(2, 2, dtype=torch.bfloat16)},                   # no numpy dtype
    {"nested": {"w.weight": torch.ones(2, 2)}},                              # not a flat state_dict
    {"w.weight": torch.ones(2, 2), "epoch": 3},
])
def test_other_archives_fall_back_to_torch_load(tmp_path, state):
    from codesign.ingest.archive import state_dict_arrays as _state_dict_arrays

    path = tmp_path / "x.pt"
    torch.save(state, path)
    assert _state_dict_arrays(path) is None


def test_plain_state_dict_needs_no_torch_import(tmp_path):
    torch.manual_seed(5)
    path = tmp_path / "sd.pt"
    torch.save(DigitsCNN().state_dict(), path)
    code = (f"import sys; from codesign.ingest import load_model; spec = load_model({str(path)!r}); "
            f"print('torch' in sys.modules, len(spec.layers))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "5"]
