"""Issue 12, ingest side: crafted and unusual model files give one line and exit 1 (or a correct
result), never a traceback, and nothing is written."""

import numpy as np
import pytest
import torch
from torch import nn

from codesign.checkpoint import make_checkpoint, save_checkpoint
from codesign.cli import main
from codesign.ingest import load_model
from codesign.zoo import DigitsCNN


def refused(capsys, tmp_path, model, message, command=("generate",)):
    """``codesign <command> --model model`` exits 1 with one line containing ``message``; no output folder."""
    out = tmp_path / "out"
    args = [*command, "--model", str(model)] + (["--out", str(out), "--no-report"] if command[0] == "generate" else [])
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("codesign: error: ") and message in err[0], err
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def checkpoint(tmp_path, **changes):
    ck = make_checkpoint("digits_cnn", {}, DigitsCNN().state_dict(), weight_bits=8, input_bits=8)
    ck.update(changes)
    path = tmp_path / "ck.pt"
    save_checkpoint(ck, path)
    return path


def saved(tmp_path, state, name="sd.pt"):
    path = tmp_path / name
    torch.save(state, path)
    return path


def test_zero_size_weight(tmp_path, capsys):
    refused(capsys, tmp_path, saved(tmp_path, {"fc.weight": torch.zeros(0, 5)}), "layer 'fc' of")
    assert "has an empty weight [0, 5]" in str(pytest.raises(Exception, load_model, tmp_path / "sd.pt").value)


def test_layer_without_a_name_is_named_by_its_key(tmp_path):
    spec = load_model(saved(tmp_path, nn.Linear(4, 3).state_dict()))      # keys 'weight', 'bias'
    assert [l.name for l in spec.layers] == ["weight"] and spec.layers[0].q.shape == (4, 3)


def test_sparse_weights_read_as_dense(tmp_path):
    weight = torch.randn(6, 4) * (torch.rand(6, 4) > 0.5)
    dense = load_model(saved(tmp_path, {"fc.weight": weight}, "dense.pt")).layers[0].q
    sparse = load_model(saved(tmp_path, {"fc.weight": weight.to_sparse()}, "sparse.pt")).layers[0].q
    assert np.array_equal(dense, sparse)


def test_meta_and_complex_weights(tmp_path, capsys):
    refused(capsys, tmp_path, saved(tmp_path, {"fc.weight": torch.empty(3, 4, device="meta")}),
            "layer 'fc' is a meta tensor without data")
    refused(capsys, tmp_path, saved(tmp_path, {"fc.weight": torch.randn(3, 4, dtype=torch.complex64)}),
            "layer 'fc' has complex values (torch.complex64): crossbars hold real weights")
    refused(capsys, tmp_path, saved(tmp_path, {"fc.weight": torch.randn(3, 4, dtype=torch.complex64).numpy()}),
            "holds pickled Python objects")    # a pickled numpy array: not what weights_only accepts


def test_quantized_tensor_is_read_exactly(tmp_path):
    weight = torch.quantize_per_tensor(torch.randn(5, 7), 0.02, 0, torch.qint8)
    spec = load_model(saved(tmp_path, {"fc.weight": weight}))
    assert np.array_equal(spec.layers[0].q, weight.int_repr().numpy().T) and np.allclose(spec.layers[0].scale, 0.02)


def test_stride_zero_expanded_tensor_allocates_nothing(tmp_path, capsys):
    path = saved(tmp_path, {"fc.weight": torch.zeros(1).expand(200_000, 200_000)})    # 149 GiB as float32
    assert path.stat().st_size < 4096
    refused(capsys, tmp_path, path, "claims 200000×200000 = 40,000,000,000 values")


@pytest.mark.parametrize("changes, message", [
    ({"arch": {"name": "digits_cnn", "kwargs": {"width": -3}}}, "architecture 'digits_cnn' rejects its kwargs"),
    ({"arch": {"name": "digits_cnn", "kwargs": {"nope": 1}}}, "architecture 'digits_cnn' rejects its arguments"),
    ({"arch": {"name": "digits_cnn", "kwargs": {"width": 10 ** 6}}}, "does not fit architecture 'digits_cnn'"),
    ({"arch": {"name": "digits_cnn", "kwargs": [1]}}, "arch kwargs must be a dict"),
    ({"weight_bits": "8"}, "the checkpoint's weight_bits is '8', not an integer 2–16"),
    ({"weight_bits": 20}, "the checkpoint's weight_bits is 20, not an integer 2–16"),
    ({"input_bits": True}, "the checkpoint's input_bits is True"),
    ({"per_channel": "yes"}, "the checkpoint's per_channel is 'yes'"),
    ({"scales": {"features.0": torch.ones(3)}}, "scales['features.0'] has 3 entries; layer 'features.0' has 16"),
    ({"scales": {"features.0": "0.1"}}, "scales['features.0'] is a str, not a tensor"),
    ({"scales": {"features.0": torch.ones(16, 2)}}, "scales['features.0'] must be a float tensor, 0-d or one per"),
    ({"scales": {"nowhere": torch.tensor(0.1)}}, "the checkpoint's scales name 'nowhere'"),
    ({"meta": ["a", "list"]}, "the checkpoint's meta is a list, not a dict"),
    ({"masks": [1]}, "the checkpoint's masks is a list, not a dict"),
])
def test_crafted_checkpoint_fields(tmp_path, capsys, changes, message):
    refused(capsys, tmp_path, checkpoint(tmp_path, **changes), message)


def test_weight_bits_error_names_its_source(tmp_path, capsys):
    refused(capsys, tmp_path, checkpoint(tmp_path), "argument --weight-bits: 40 is out of range: give 2…16",
            command=("analyze", "--weight-bits", "40"))


def test_conv_transpose_is_refused_by_name(tmp_path, capsys):
    refused(capsys, tmp_path, saved(tmp_path, nn.ConvTranspose2d(4, 6, 3).state_dict()),
            "unsupported layer '' (weight [4, 6, 3, 3] with a bias of [6]: not a Conv2d or Linear".replace("''", "'weight'"))
    scripted = tmp_path / "ts.pt"
    torch.jit.save(torch.jit.script(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ConvTranspose2d(4, 2, 3))), scripted)
    refused(capsys, tmp_path, scripted, "unsupported layer '1' (ConvTranspose2d)")
    assert [l.name for l in load_model(scripted, ignore_unsupported=True).layers] == ["0"]


def test_ambiguous_conv_transpose_without_bias_is_mapped_with_a_note(tmp_path):
    """Without a bias (or with Cin = Cout) a state_dict cannot tell a ConvTranspose2d from a Conv2d:
    mapped as Conv2d, and the note says a graph format is needed to know."""
    spec = load_model(saved(tmp_path, nn.ConvTranspose2d(4, 6, 3, bias=False).state_dict()))
    assert spec.layers[0].kind == "conv2d" and any("transposed" in note for note in spec.notes)


def test_messages_name_the_format(tmp_path, capsys):
    pt2 = tmp_path / "m.pt2"
    torch.export.save(torch.export.export(nn.Linear(3, 2), (torch.zeros(1, 3),)), pt2)
    assert load_model(pt2).info.format == "pt2"
    data = pt2.read_bytes()
    (tmp_path / "cut.pt2").write_bytes(data[: len(data) // 2])
    refused(capsys, tmp_path, tmp_path / "cut.pt2", "truncated or corrupt")
    (tmp_path / "bad.onnx").write_bytes(b"\x08\x07garbage that is not protobuf")
    refused(capsys, tmp_path, tmp_path / "bad.onnx", "is not a readable ONNX model")
    header = b'{"w": {"dtype": "F32"}}'
    (tmp_path / "bad.safetensors").write_bytes(len(header).to_bytes(8, "little") + header)
    refused(capsys, tmp_path, tmp_path / "bad.safetensors", "safetensors entry 'w' lacks dtype, shape or data_offsets")


def test_random_bytes_as_layer_inputs(tmp_path, capsys):
    inputs = tmp_path / "x.npy"
    inputs.write_bytes(np.random.default_rng(0).bytes(64))
    out = tmp_path / "y.npy"
    assert main(["emulate", "--layer", "features.0", "--inputs", str(inputs), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert all(line.startswith("codesign: ") for line in err) and "Traceback" not in "".join(err)
    assert "is not a .npy file (it lacks the NumPy header)" in err[-1] and "pickle" not in err[-1]
    assert not out.exists()


def test_onnx_external_data_outside_the_folder(tmp_path, capsys):
    import onnx
    from onnx import helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((3, 4), np.float32), "fc.weight")
    weight.data_location = onnx.TensorProto.EXTERNAL
    del weight.external_data[:]
    entry = weight.external_data.add()
    entry.key, entry.value = "location", "../../etc/passwd"
    weight.ClearField("raw_data")
    graph = helper.make_graph([helper.make_node("Gemm", ["x", "fc.weight"], ["y"], transB=1)], "g",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3])], [weight])
    path = tmp_path / "m.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    refused(capsys, tmp_path, path, "names external data '../../etc/passwd' outside the model's folder")


def test_torchscript_for_other_images(tmp_path, capsys):
    """TorchScript records no input shape: a model for 3-channel images meets the digits only when it
    runs, and says so in one line (simulate then falls back to random inputs)."""
    path = tmp_path / "rgb.pt"
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 10 * 10, 10)).eval()
    torch.jit.save(torch.jit.trace(net, torch.zeros(1, 3, 12, 12)), path)
    assert main(["emulate", "--data", "digits", "--model", str(path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert "the model does not run on images of shape 1×8×8" in err[-1] and "Traceback" not in "".join(err)


@pytest.mark.parametrize("command", ["generate", "analyze", "emulate"])
def test_an_archive_that_crashes_the_torchscript_loader(tmp_path, capsys, monkeypatch, command):
    """CI once saw a bit-flipped TorchScript archive kill the whole process with SIGSEGV inside
    torch. The loader is stood in for by one that does exactly that: the trial load in a child
    turns the crash into one line, and the parent never loads the archive itself."""
    import os
    import signal

    path = tmp_path / "ts.pt"
    torch.jit.save(torch.jit.script(nn.Sequential(nn.Linear(4, 3))), path)
    np.save(tmp_path / "x.npy", np.ones((2, 4), dtype=np.int64))
    layer = ("--layer", "0", "--inputs", str(tmp_path / "x.npy"), "--out", str(tmp_path / "y.npy"))
    monkeypatch.setattr(torch.jit, "load", lambda *_, **__: os.kill(os.getpid(), signal.SIGSEGV))
    refused(capsys, tmp_path, path, "crashed TorchScript's loader (SIGSEGV), so the file is corrupt",
            (command, *layer) if command == "emulate" else (command,))
    assert not (tmp_path / "y.npy").exists()


def test_the_trial_load_does_not_hide_a_loader_error(tmp_path, capsys, monkeypatch):
    """An archive the loader refuses with an exception is refused with that exception's message."""
    path = tmp_path / "ts.pt"
    torch.jit.save(torch.jit.script(nn.Sequential(nn.Linear(4, 3))), path)
    monkeypatch.setattr(torch.jit, "load", lambda *_, **__: (_ for _ in ()).throw(RuntimeError("bad constants.pkl")))
    refused(capsys, tmp_path, path, "cannot load TorchScript archive", ("analyze",))
