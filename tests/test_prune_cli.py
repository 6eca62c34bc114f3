"""codesign train / prune end to end: the checkpoint round trip, resume after Ctrl-C, and refusals."""

import json

import pytest
import torch
from torch import nn

from codesign import zoo
from codesign.analysis import analyze
from codesign.cli import main
from codesign.config import CrossbarConfig
from codesign.errors import CodesignError
from codesign.ingest import load_model, read_model_file
from codesign.prune import prune, resume, train_dense
from codesign.prune.core import find_targets
from codesign.prune.reorder import reorder_inputs
from codesign.prune.runner import resume_path
from codesign.prune.core import Quantizer
from codesign.mapping import Geometry


@pytest.fixture
def dense(dense_digits):
    return dense_digits


def test_train_writes_a_dense_checkpoint_that_analyze_reads(dense):
    checkpoint = torch.load(dense, weights_only=True)
    assert checkpoint["arch"] == {"name": "digits_cnn", "kwargs": {"num_classes": 10}}
    assert checkpoint["meta"]["method"] == "dense" and len(checkpoint["meta"]["history"]) == 4
    assert checkpoint["meta"]["accuracy"]["float"] > 80
    spec = load_model(dense)
    assert [s.name for s in spec.layers] == ["features.0", "features.2", "features.5", "classifier.1", "classifier.3"]


def test_pruned_checkpoint_round_trips_into_ingest_analyze_and_generate(dense, tmp_path, capsys):
    out = tmp_path / "p.pt"
    code = main(["prune", "--model", str(dense), "--method", "magnitude", "--data", "digits", "--rows", "64",
                 "--cols", "64", "--epochs", "1", "--per-channel", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "magnitude on digits" in printed and "--rows 64 --cols 64" in printed
    checkpoint = torch.load(out, weights_only=True)
    meta = checkpoint["meta"]
    assert meta["method"] == "magnitude" and meta["hyperparameters"]["sparsity"] == 0.75
    assert set(meta["accuracy"]) == {"dense_float", "dense_quantized", "pruned_float", "pruned_quantized"}
    assert checkpoint["per_channel"] and checkpoint["scales"]["features.2"].shape == (32,)
    spec = load_model(out)
    for layer in spec.layers:
        weight = checkpoint["state_dict"][f"{layer.name}.weight"]
        scale = checkpoint["scales"][layer.name].double().reshape(-1, *[1] * (weight.dim() - 1))
        q = torch.round(weight.double() / scale)
        assert torch.equal(weight, (q * scale).to(weight.dtype))                      # on the integer grid
        assert torch.equal(torch.from_numpy(layer.q).long(), q.reshape(q.shape[0], -1).T.long())
        assert (layer.q[~checkpoint["masks"][layer.name].numpy().reshape(q.shape[0], -1).T] == 0).all()
    zeros = sum(int((layer.q == 0).sum()) for layer in spec.layers)
    assert zeros / sum(layer.q.size for layer in spec.layers) == pytest.approx(meta["sparsity"])
    analysis = analyze(spec, CrossbarConfig(rows=64, cols=64))
    columns = sum(a.bits.size for a in analysis.layers)
    assert sum(int(a.bits.sum()) for a in analysis.layers) / columns == pytest.approx(meta["mean_adc_bits"])
    assert main(["generate", "--model", str(out), "--rows", "64", "--cols", "64", "--out", str(tmp_path / "gen")]) == 0
    config = json.loads((tmp_path / "gen" / "hw_config.json").read_text())
    assert config["crossbar"]["rows"] == 64 and len(config["layers"]) == 5
    capsys.readouterr()
    assert main(["analyze", "--model", str(out)]) == 0
    assert "pruned for 64×64 crossbars (2-bit cells, 1-bit DAC): using them" in capsys.readouterr().err
    assert main(["analyze", "--model", str(out), "--search"]) == 0     # the sweep picks the size, not the note
    assert "pruned for 64×64 crossbars (2-bit cells, 1-bit DAC): --search sweeps rows and cols and keeps its " \
           "cell and DAC bits" in capsys.readouterr().err


def test_prune_trains_a_zoo_architecture_first(tmp_path):
    out = tmp_path / "p.pt"
    checkpoint = prune("digits_cnn", "magnitude", "digits", out, epochs=1, crossbar={"rows": 32, "cols": 32})
    assert (tmp_path / "p.dense.pt").is_file()
    assert checkpoint["meta"]["source"] == str(tmp_path / "p.dense.pt")
    assert torch.load(tmp_path / "p.dense.pt", weights_only=True)["meta"]["method"] == "dense"


class Stop(Exception):
    pass


def test_ctrl_c_leaves_a_checkpoint_that_resumes_to_the_same_result(dense, tmp_path):
    settings = dict(epochs=2, crossbar={"rows": 64, "cols": 64}, overrides={"level": 2})
    whole = prune(str(dense), "tinyadc", "digits", tmp_path / "whole.pt", **settings)
    seen = []

    def interrupt_in_second_phase(record):
        seen.append(record)
        if record["phase"] == "finetune":
            raise KeyboardInterrupt

    out = tmp_path / "cut.pt"
    with pytest.raises(KeyboardInterrupt):
        prune(str(dense), "tinyadc", "digits", out, on_epoch=interrupt_in_second_phase, **settings)
    assert not out.exists() and resume_path(out).is_file()
    saved = torch.load(resume_path(out), weights_only=True)
    assert saved["meta"]["resume"]["position"] == {"phase": 1, "epoch": 0}
    again = resume(resume_path(out), out)
    assert not resume_path(out).exists()                        # finished: its state is in out now
    assert [r["phase"] for r in again["meta"]["history"]] == ["admm", "admm", "finetune", "finetune"]
    for key, value in whole["state_dict"].items():
        assert torch.equal(value, again["state_dict"][key]), key
    assert whole["meta"]["accuracy"] == again["meta"]["accuracy"]


def test_cli_resume_refuses_contradicting_options(dense, tmp_path, capsys):
    out = tmp_path / "cut.pt"
    with pytest.raises(KeyboardInterrupt):
        prune(str(dense), "magnitude", "digits", out, epochs=2, crossbar={"rows": 64, "cols": 64},
              on_epoch=lambda record: (_ for _ in ()).throw(KeyboardInterrupt()))
    assert main(["prune", "--resume", str(resume_path(out)), "--rows", "128", "--out", str(out)]) == 1
    assert "--rows 128 differs from the resumed run's 64" in capsys.readouterr().err
    assert main(["prune", "--resume", str(resume_path(out)), "--epochs", "3", "--out", str(out)]) == 1
    assert "fixed by the run being resumed" in capsys.readouterr().err
    assert main(["prune", "--resume", str(resume_path(out)), "--out", str(out)]) == 0
    assert len(torch.load(out, weights_only=True)["meta"]["history"]) == 2
    assert not resume_path(out).exists() and f"removed {resume_path(out)}" in capsys.readouterr().err
    assert main(["prune", "--resume", str(dense), "--out", str(out), "--force"]) == 1
    assert "not a resumable checkpoint" in capsys.readouterr().err


def test_train_and_prune_refuse_to_replace_an_existing_out_without_force(dense, tmp_path, capsys):
    out = tmp_path / "kept.pt"
    out.write_bytes(b"a good model")
    for argv in (["train", "digits_cnn", "--epochs", "1"], ["prune", "--model", str(dense), "--method", "magnitude"],
                 ["prune", "--resume", str(tmp_path / "any.resume.pt")]):
        assert main([*argv, "--out", str(out)]) == 1
        assert capsys.readouterr().err.strip() == f"codesign: error: {out} exists; pass --force to replace it"
        assert out.read_bytes() == b"a good model"
    # A zoo --model is trained into OUT-stem.dense.pt first: that file is not replaced silently either.
    fresh = tmp_path / "p.pt"
    (tmp_path / "p.dense.pt").write_bytes(b"a dense model")
    assert main(["prune", "--model", "digits_cnn", "--method", "magnitude", "--out", str(fresh)]) == 1
    assert f"{tmp_path / 'p.dense.pt'} exists; pass --force" in capsys.readouterr().err
    assert not fresh.exists()
    assert main(["train", "digits_cnn", "--epochs", "1", "--out", str(out), "--force"]) == 0
    assert torch.load(out, weights_only=True)["meta"]["method"] == "dense"


def test_train_help_says_what_train_takes(capsys):
    assert main(["train", "--help"]) == 0
    text = capsys.readouterr().out
    usage = text.split("\n\n")[0]
    assert "[ARCH]" not in usage and "codesign train ARCH --out FILE" in usage and "--resume FILE --out FILE" in usage
    epochs = " ".join(text.split("--epochs N", 1)[1].split("--seed")[0].split())
    assert epochs == "training epochs (default: 40 for digits, 200 for other data)"
    assert "finetune" not in text and "dense pre-training" not in text


def test_show_hparams_reflects_overrides(capsys):
    assert main(["prune", "--method", "dub", "--show-hparams", "--epochs", "7", "--set", "lambda_var=0.02"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["lambda_var"] == 0.02 and shown["regularize"]["epochs"] == 7 and shown["finetune"]["epochs"] == 7
    assert shown["regularize"]["weight_decay"] == 1e-3                               # released-code default kept


@pytest.mark.parametrize("argv, message", [
    (["prune", "--method", "dub", "--set", "lambda_var=-1", "--out", "x.pt"], "hyperparameter 'lambda_var'"),
    (["prune", "--method", "dub", "--set", "nonsense=1", "--out", "x.pt"], "hyperparameter 'nonsense'"),
    (["prune", "--method", "dub", "--set", "novalue", "--out", "x.pt"], "--set expects KEY=VALUE"),
    (["prune", "--out", "x.pt"], "--method is required"),
    (["prune", "--method", "dub", "--threads", "0", "--out", "x.pt"], "argument --threads: 0 is out of range: give at least 1"),
    (["prune", "--method", "dub"], "--out FILE is required"),
    (["prune", "--method", "dub", "--model", "nowhere.pt", "--out", "x.pt"], "model file not found: nowhere.pt"),
    (["prune", "--method", "dub", "--data", "cifar10:/nowhere", "--out", "x.pt"], "--model is required"),
    (["train", "vgg8", "--data", "digits", "--out", "x.pt"], "takes 3×32×32 images but the data has 1×8×8"),
    (["train", "--out", "x.pt"], "give the architecture"),
])
def test_bad_input_is_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.pt").exists()


def test_non_finite_weights_are_refused_by_name(dense, tmp_path, capsys):
    checkpoint = torch.load(dense, weights_only=True)
    checkpoint["state_dict"]["features.2.weight"][0, 0, 0, 0] = float("nan")
    torch.save(checkpoint, tmp_path / "nan.pt")
    assert main(["prune", "--model", str(tmp_path / "nan.pt"), "--method", "dub", "--out", str(tmp_path / "x.pt")]) == 1
    assert "'features.2.weight' has 1 NaN or inf values" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


def test_a_plain_state_dict_needs_its_architecture(dense, tmp_path, capsys):
    plain = tmp_path / "plain.pt"
    torch.save(torch.load(dense, weights_only=True)["state_dict"], plain)
    assert main(["prune", "--model", str(plain), "--method", "magnitude", "--out", str(tmp_path / "x.pt")]) == 1
    assert "pass --arch NAME" in capsys.readouterr().err
    assert main(["prune", "--model", str(plain), "--arch", "digits_cnn", "--method", "magnitude", "--epochs", "1",
                 "--rows", "32", "--cols", "32", "--out", str(tmp_path / "x.pt")]) == 0


def test_read_model_file_names_the_format(dense, tmp_path):
    obj, fmt = read_model_file(dense)
    assert fmt == "checkpoint" and obj["arch"]["name"] == "digits_cnn"
    plain = tmp_path / "plain.pt"
    torch.save(obj["state_dict"], plain)
    state, fmt = read_model_file(str(plain))
    assert fmt == "state_dict" and sorted(state) == sorted(obj["state_dict"])
    whole = tmp_path / "whole.pt"
    torch.save(nn.Linear(2, 3), whole)
    with pytest.raises(CodesignError, match="holds pickled Python objects"):
        read_model_file(whole)
    assert read_model_file(whole, trust_pickle=True)[1] == "module"
    with pytest.raises(CodesignError, match="model file not found"):
        read_model_file(tmp_path / "missing.pt")


class WithConv1d(nn.Module):
    """1×8×8 images through a Conv1d: a layer no crossbar method handles."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.flat = nn.Flatten(2)
        self.odd = nn.Conv1d(1, 2, 3)
        self.head = nn.Linear(2 * 62, num_classes)

    def forward(self, x):
        return self.head(self.odd(self.flat(x)).flatten(1))


def test_layers_a_method_cannot_handle_are_refused_by_name(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(zoo.ARCHS, "with_conv1d", zoo.Arch(WithConv1d, (1, 8, 8), "test"))
    assert main(["prune", "--model", "with_conv1d", "--method", "dub", "--epochs", "1", "--out",
                 str(tmp_path / "x.pt")]) == 1
    assert "cannot prune layer 'odd' (Conv1d)" in capsys.readouterr().err
    assert main(["prune", "--model", "resnet20", "--method", "column", "--set", "reorder=true", "--epochs", "1",
                 "--data", "cifar10:/nowhere", "--out", str(tmp_path / "x.pt")]) == 1
    assert "CIFAR-10 folder not found" in capsys.readouterr().err
    model = zoo.build("resnet20")
    targets = find_targets(model, Geometry(64, 64, 2, 1, 8, 8), "column")
    with pytest.raises(CodesignError, match="cannot reorder the input channels of layer 'layer1.0.conv1': its input "
                                            "is also used elsewhere"):
        reorder_inputs(model, targets, "column")


def test_reorder_keeps_the_function_and_sorts_channels():
    torch.manual_seed(0)
    model = zoo.build("vgg8").eval()
    x = torch.rand(2, 3, 32, 32)
    before = model(x)
    targets = find_targets(model, Geometry(64, 64, 2, 1, 8, 8), "column")
    orders = reorder_inputs(model, targets, "column")
    assert set(orders) == {t.name for t in targets[1:]}                       # all but the input layer
    assert any(order != sorted(order) for order in orders.values())
    assert torch.allclose(model(x), before, atol=1e-5)
    for t in targets[1:]:
        importance = t.weight.detach().reshape(t.weight.shape[0], len(orders[t.name]), -1).pow(2).sum((0, 2))
        assert (importance[:-1] >= importance[1:] - 1e-6).all()                  # (float sums reorder)


def test_quantizer_steps_are_what_the_checkpoint_claims(dense, tmp_path):
    checkpoint = prune(str(dense), "crimp", "digits", tmp_path / "c.pt", epochs=1, crossbar={"rows": 64, "cols": 64})
    model = zoo.build("digits_cnn", checkpoint["arch"]["kwargs"])
    model.load_state_dict(checkpoint["state_dict"])
    quant = Quantizer(8, pow2=True)
    for name, scale in checkpoint["scales"].items():
        assert torch.equal(quant.step(model.get_submodule(name).weight), scale)
