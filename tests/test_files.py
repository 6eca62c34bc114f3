"""codesign.files: output folders that are all or nothing, replace only what codesign wrote, are
locked while written; files written exactly where asked; JSON inputs refused in one line."""

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from codesign.cli import main
from codesign.errors import CodesignError
from codesign.files import (LOCK, MANIFEST, STAGE_PREFIX, locked, output_folder, read_json, read_manifest,
                            write_file)


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "codesign", *args], capture_output=True, text=True, cwd=cwd)


def error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("codesign: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_out_containing_or_equal_to_an_input_is_refused_and_nothing_is_deleted(tmp_path, capsys):
    model = tmp_path / "d" / "model.pt"
    model.parent.mkdir()
    model.write_bytes((Path(__file__).parents[1] / "examples" / "digits_cnn_pruned.pt").read_bytes())
    for out in (model.parent, tmp_path, model):
        assert main(["generate", "--model", str(model), "--out", str(out), "--force", "--no-report"]) == 1
        assert "the input" in error_line(capsys.readouterr().err)
    assert model.is_file() and sorted(p.name for p in model.parent.iterdir()) == ["model.pt"]
    config = tmp_path / "d" / "cfg.json"
    assert main(["analyze", "--model", str(model), "--json"]) == 0
    config.write_text(capsys.readouterr().out)
    assert main(["generate", "--model", str(model), "--config", str(config), "--out", str(config.parent)]) == 1
    assert "contains the input" in error_line(capsys.readouterr().err)
    assert main(["calibrate", "--model", str(model), "--config", str(config), "--data", "digits", "--budget", "1",
                 "--out", str(config), "--force"]) == 1
    assert f"--out {config} is the input" in error_line(capsys.readouterr().err)


def test_symlinked_out_to_the_model_folder_is_refused(tmp_path, capsys):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "model.pt").write_bytes((Path(__file__).parents[1] / "examples" / "digits_cnn_pruned.pt")
                                              .read_bytes())
    (tmp_path / "link").symlink_to(tmp_path / "d")
    assert main(["generate", "--model", str(tmp_path / "d" / "model.pt"), "--out", str(tmp_path / "link"),
                 "--force", "--no-report"]) == 1
    assert "contains the input" in error_line(capsys.readouterr().err)


def test_a_failure_inside_the_folder_leaves_nothing_and_the_earlier_output_intact(tmp_path):
    out = tmp_path / "new" / "o"
    with pytest.raises(RuntimeError):
        with output_folder(out, "test") as stage:
            (stage / "a.txt").write_text("x")
            raise RuntimeError("stage failed")
    assert not (tmp_path / "new").exists()
    with output_folder(out, "test") as stage:
        (stage / "a.txt").write_text("first")
    with pytest.raises(KeyboardInterrupt):
        with output_folder(out, "test", force=True) as stage:
            (stage / "b.txt").write_text("second")
            raise KeyboardInterrupt
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "a.txt"] and (out / "a.txt").read_text() == "first"


def test_a_tampered_manifest_cannot_delete_outside_the_folder(tmp_path):
    outside = tmp_path / "precious.txt"
    outside.write_text("keep")
    out = tmp_path / "o"
    with output_folder(out, "test") as stage:
        (stage / "a.txt").write_text("x")
    for entries in (["../precious.txt"], [str(outside)], ["a/../../precious.txt"]):
        (out / MANIFEST).write_text(json.dumps({"schema": "codesign-written/1", "files": entries, "trees": []}))
        with pytest.raises(CodesignError, match="is corrupt"):
            with output_folder(out, "test", force=True):
                pass
    (out / "link").symlink_to(tmp_path)                   # a listed path through a symbolic link
    (out / MANIFEST).write_text(json.dumps({"schema": "codesign-written/1", "files": ["a.txt", "link/precious.txt"],
                                            "trees": ["link"]}))
    with output_folder(out, "test", force=True) as stage:
        (stage / "b.txt").write_text("y")
    assert outside.read_text() == "keep" and (out / "link").is_symlink()
    (out / MANIFEST).write_text("[" * 100_000)
    with pytest.raises(CodesignError, match="nested too deeply"):
        read_manifest(out)


def test_part_replaces_only_that_subfolder_and_a_foreign_one_is_refused(tmp_path):
    root = tmp_path / "o"
    with output_folder(root, "test") as stage:
        (stage / "keep.txt").write_text("generate's")
    with output_folder(root, "test", part="report") as stage:
        (stage / "r1.txt").write_text("1")
    with output_folder(root, "test", part="report") as stage:
        (stage / "r2.txt").write_text("2")
    assert sorted(p.name for p in (root / "report").iterdir()) == ["r2.txt"] and (root / "keep.txt").exists()
    assert read_manifest(root).files == {"keep.txt", "report/r2.txt"}
    (root / "sim").mkdir()
    (root / "sim" / "mine.txt").write_text("user's")
    with pytest.raises(CodesignError, match="sim was not written by codesign"):
        with output_folder(root, "test", part="sim"):
            pass
    assert (root / "sim" / "mine.txt").exists()


def test_generate_into_the_current_folder_in_place(tmp_path):
    """``--out .`` cannot be renamed away (nor can a mount point): the files are replaced in place."""
    assert run("generate", "--out", ".", "--no-report", "--rows", "64", cwd=tmp_path).returncode == 0
    done = run("generate", "--out", ".", "--no-report", "--force", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "hw_config.json").read_text())["crossbar"]["rows"] == 128
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".codesign-stage") or p.name == LOCK]


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["generate", "--out", str(out), "--no-report"]) == 0
    pid = dead_pid()
    stale = out / f"{STAGE_PREFIX}{pid}"
    (stale / "params").mkdir(parents=True)
    (stale / "params" / "half.mem").write_text("0")
    assert main(["generate", "--out", str(out), "--no-report", "--force"]) == 0
    assert not stale.exists()
    target = tmp_path / "y.npy"
    (tmp_path / f".y.npy.tmp-{pid}").write_text("half")
    write_file(target, lambda f: np.save(f, np.arange(3)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o", "y.npy"]


def test_write_file_writes_exactly_the_named_path(tmp_path):
    target = tmp_path / "y.bin"
    write_file(target, lambda f: np.save(f, np.arange(4)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["y.bin"]
    assert np.load(target).tolist() == [0, 1, 2, 3]
    with pytest.raises(CodesignError, match="exists; pass --force"):
        write_file(target, lambda f: f.write(b"x"))
    with pytest.raises(CodesignError, match="is a folder"):
        write_file(tmp_path, lambda f: f.write(b"x"), force=True)


def test_the_lock_names_its_holder(tmp_path):
    out = tmp_path / "o"
    assert run("generate", "--out", str(out), "--no-report").returncode == 0
    with locked(out, "simulate"):
        for args in (["generate", "--out", str(out), "--no-report", "--force"], ["simulate", str(out)],
                     ["report", str(out), "--no-synth"]):
            done = run(*args)
            assert done.returncode == 1
            assert f"is in use by 'codesign simulate' (pid {os.getpid()}, since " in error_line(done.stderr)
    assert not (out / LOCK).exists()
    assert run("report", str(out), "--no-synth").returncode == 0


def test_a_holder_that_has_not_yet_written_its_name_is_still_named(tmp_path):
    """The race CI saw: the refused process read the lock file between the holder's flock and its
    write. The reader waits for the name; with none ever written it says so after its patience."""
    fd = os.open(tmp_path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    info = json.dumps({"pid": 4242, "command": "codesign generate", "since": "2026-12-05 02:00:00"}).encode()
    late = threading.Timer(0.3, os.write, (fd, info))
    late.start()
    try:
        with pytest.raises(CodesignError, match=r"is in use by 'codesign generate' \(pid 4242, since "):
            with locked(tmp_path, "simulate"):
                pass
    finally:
        late.join()
    os.ftruncate(fd, 0)
    started = time.monotonic()
    with pytest.raises(CodesignError, match="is in use by another codesign process"):
        with locked(tmp_path, "simulate"):
            pass
    assert time.monotonic() - started >= 0.9
    os.close(fd)


def test_two_generates_at_once_one_wins_one_refuses(tmp_path):
    out = tmp_path / "o"
    procs = [subprocess.Popen([sys.executable, "-m", "codesign", "generate", "--out", str(out), "--no-report"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(), p.stderr.read()) for p in procs]
    assert sorted(code for code, _ in results) == [0, 1], results
    refused = next(err for code, err in results if code == 1)
    assert "is in use by 'codesign generate'" in refused or "holds an earlier codesign output" in refused
    assert json.loads((out / "hw_config.json").read_text())["layers"]


@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_during_generate_leaves_nothing(tmp_path, sig, status):
    out = tmp_path / "o"
    proc = subprocess.Popen([sys.executable, "-m", "codesign", "generate", "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(out.glob(f"{STAGE_PREFIX}*/params/*.vh")) and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(sig)
    assert proc.wait(60) == status, proc.stderr.read()
    assert not out.exists()
    assert run("generate", "--out", str(out), "--no-report").returncode == 0


def test_sigterm_during_report_leaves_the_earlier_report(tmp_path):
    out = tmp_path / "o"
    assert run("generate", "--out", str(out), "--no-report").returncode == 0
    assert run("report", str(out), "--no-synth").returncode == 0
    before = {p: p.read_bytes() for p in (out / "report").iterdir()}
    proc = subprocess.Popen([sys.executable, "-m", "codesign", "report", str(out), "--no-synth"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(out.glob(f"{STAGE_PREFIX}*/report")) and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.terminate()
    assert proc.wait(60) == 143, proc.stderr.read()
    assert {p: p.read_bytes() for p in (out / "report").iterdir()} == before
    assert not [p for p in out.iterdir() if p.name.startswith(".codesign-stage") or p.name == LOCK]


def test_the_resume_file_of_prune_may_not_be_an_input(tmp_path, capsys):
    model = tmp_path / "p.resume.pt"
    model.write_bytes(b"x")
    assert main(["prune", "--method", "dub", "--model", str(model), "--out", str(tmp_path / "p.pt")]) == 1
    assert "its resume file" in error_line(capsys.readouterr().err) and model.read_bytes() == b"x"


def test_unwritable_out_is_one_line(tmp_path):
    for out in ("/proc/codesign-out", "/proc/self/status/x"):
        done = run("generate", "--out", out, "--no-report")
        assert done.returncode == 1 and f"{out}" in error_line(done.stderr)


def test_read_json_refuses_in_one_line(tmp_path):
    cases = {"missing.json": None, "bad.json": b"{", "deep.json": b"[" * 50_000 + b"]" * 50_000,
             "latin1.json": "{\"a\": \"\xe9\"}".encode("latin-1")}
    for name, data in cases.items():
        if data is not None:
            (tmp_path / name).write_bytes(data)
        with pytest.raises(CodesignError) as err:
            read_json(tmp_path / name, "fix it")
        assert str(err.value).endswith("fix it") and "\n" not in str(err.value)
