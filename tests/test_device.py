"""--device: resolution, the one-line error without a GPU, and training through the device path on CPU."""

import subprocess
import sys

import pytest
import torch

from codesign.device import data_to, resolve_device
from codesign.errors import CodesignError
from codesign.prune.train import Data, augment


def test_cuda_without_gpu_is_an_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(CodesignError, match="--device cuda.*--device cpu"):
        resolve_device("cuda")
    assert resolve_device("auto") == torch.device("cpu")


def test_auto_picks_cuda_and_turns_tf32_off(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        assert resolve_device("auto") == torch.device("cuda")
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def test_unknown_device():
    with pytest.raises(CodesignError, match="not one of cpu, cuda, auto"):
        resolve_device("tpu")


def test_data_to_moves_every_split():
    t = torch.zeros(2, 1, 4, 4)
    data = Data(t, torch.zeros(2, dtype=torch.long), t, torch.zeros(2, dtype=torch.long), t,
                torch.zeros(2, dtype=torch.long), augment=True)
    assert data_to(data, torch.device("cpu")) is data
    moved = data_to(data, torch.device("meta"))
    assert {moved.x_train.device.type, moved.y_val.device.type} == {"meta"} and moved.augment


def test_augment_is_the_same_on_any_device():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    a = augment(x, torch.Generator().manual_seed(1))
    b = augment(x.to("meta"), torch.Generator().manual_seed(1))
    assert b.device.type == "meta" and b.shape == a.shape


def without_gpu(argv: list[str]) -> subprocess.CompletedProcess:
    """``codesign ARGV`` in a fresh Python where ``torch.cuda.is_available()`` is False."""
    code = ("import torch, sys; torch.cuda.is_available = lambda: False; from codesign.cli import main; "
            f"sys.exit(main({argv!r}))")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_cli_cuda_without_gpu_is_one_line(tmp_path):
    done = without_gpu(["train", "digits_cnn", "--epochs", "1", "--device", "cuda", "--out", f"{tmp_path}/m.pt"])
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().count("\n") == 0 and "--device cuda" in done.stderr
    assert not (tmp_path / "m.pt").exists()


def test_model_to_moves_the_architecture_and_predict_follows_it():
    from codesign.device import model_to
    from codesign.emulate import module_device
    from codesign.ingest import load_model

    model = load_model()
    assert model_to(model, torch.device("cpu")) is None and module_device(model.module).type == "cpu"
    assert module_device(torch.nn.ReLU()) == torch.device("cpu")          # no parameters: the CPU
    model_to(model, torch.device("meta"))
    assert {p.device.type for p in model.module.parameters()} == {"meta"}
    assert module_device(model.module).type == "meta"


def test_a_graph_model_stays_on_the_cpu_with_a_note(tmp_path):
    from codesign.device import model_to
    from codesign.ingest import load_model

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    path = tmp_path / "m.onnx"
    torch.onnx.export(net, (torch.zeros(1, 1, 8, 8),), str(path), dynamo=False)
    model = load_model(str(path))
    note = model_to(model, torch.device("meta"))
    assert note is not None and "runs on the CPU" in note
    assert {p.device.type for p in model.module.parameters()} == {"cpu"}


def test_emulate_on_auto_equals_the_cpu(capsys, monkeypatch):
    """Without a GPU ``auto`` is the CPU: the device path (model_to, predict's moves) gives the same report."""
    import json

    import codesign.data
    from codesign.cli import main

    real = codesign.data.load_dataset
    monkeypatch.setattr(codesign.data, "load_dataset", lambda spec, split="test": tuple(a[:60] for a in real(spec, split)))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    reports = []
    for device in ("cpu", "auto"):
        assert main(["emulate", "--data", "digits", "--json", "--device", device]) == 0
        reports.append(json.loads(capsys.readouterr().out))
    assert reports[0] == reports[1] and reports[0]["images"] == 60


@pytest.mark.parametrize("command", [["emulate", "--data", "digits"],
                                     ["calibrate", "--data", "digits", "--budget", "1", "--out", "OUT"]])
def test_emulate_and_calibrate_cuda_without_gpu_is_one_line(tmp_path, command):
    argv = [str(tmp_path / "c.json") if a == "OUT" else a for a in command] + ["--device", "cuda"]
    done = without_gpu(argv)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().count("\n") == 0 and "--device cuda" in done.stderr
    assert not (tmp_path / "c.json").exists()


REPLICA = """
import os, sys
import torch
import torch.distributed as dist
from codesign.device import Replicas

dist.init_process_group("gloo")
rank, world, average = dist.get_rank(), dist.get_world_size(), sys.argv[2] == "1"
torch.manual_seed(0)
model, x, y = torch.nn.Linear(4, 3), torch.randn(13, 4), torch.randint(0, 3, (13,))
index = Replicas(rank, world).share(torch.arange(13))
torch.nn.functional.cross_entropy(model(x[index]), y[index]).backward()
(Replicas(rank, world) if average else Replicas()).average_gradients(list(model.parameters()))
torch.save([p.grad for p in model.parameters()], os.path.join(sys.argv[1], f"{rank}.pt"))
dist.destroy_process_group()
"""


@pytest.mark.parametrize("average", [True, False])
def test_replicas_average_to_the_whole_batch_gradient(tmp_path, average):
    """Two gloo replicas under torchrun, each on its share of 13 samples (12 used), end with the
    gradient of the 12 samples taken at once; without the all_reduce (the fault) each keeps its own."""
    (tmp_path / "replica.py").write_text(REPLICA)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                           str(tmp_path / "replica.py"), str(tmp_path), str(int(average))],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    torch.manual_seed(0)
    model, x, y = torch.nn.Linear(4, 3), torch.randn(13, 4), torch.randint(0, 3, (13,))
    torch.nn.functional.cross_entropy(model(x[:12]), y[:12]).backward()
    whole = [p.grad for p in model.parameters()]
    for rank in range(2):
        grads = torch.load(tmp_path / f"{rank}.pt")
        same = all(torch.allclose(g, w, atol=1e-6) for g, w in zip(grads, whole))
        assert same == average, (rank, grads, whole)


def test_torchrun_trains_with_two_replicas_and_writes_once(tmp_path):
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "codesign",
                           "train", "digits_cnn", "--epochs", "2", "--out", "m.pt"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    epochs = [line for line in done.stderr.splitlines() if line.startswith("codesign: dense train")]
    assert len(epochs) == 2 and done.stdout.count("wrote m.pt") == 1, (done.stdout, epochs)
    checkpoint = torch.load(tmp_path / "m.pt", weights_only=False)
    assert checkpoint["meta"]["accuracy"]["float"] > 40 and sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]
