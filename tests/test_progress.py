"""Progress: bars on a terminal only, one line per stage when stderr is redirected."""

import re
import subprocess
import sys
from pathlib import Path

from codesign import progress as progress_module
from codesign.progress import progress, write

ROOT = Path(__file__).resolve().parents[1]


def test_redirected_stderr_gets_one_line_per_stage_and_no_carriage_returns(capsys):
    for _ in progress(range(5), "simulate", unit="tile"):
        pass
    with progress(desc="synthesizing periphery (Yosys)", total=1, unit="module") as bar:
        bar.set_postfix(module="m")
        bar.update()
    write("codesign: a note")
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "\r" not in err and len(lines) == 3
    assert re.fullmatch(r"codesign: simulate: 5/5 tiles in \d+\.\d s", lines[0])
    assert re.fullmatch(r"codesign: synthesizing periphery \(Yosys\): 1/1 module in \d+\.\d s", lines[1])
    assert lines[2] == "codesign: a note"


def test_silenced_failed_and_self_logging_stages_print_nothing(capsys):
    for _ in progress(range(3), "quiet", enabled=False):
        pass
    for _ in progress(range(3), "epoch", summary=False):
        pass
    try:
        with progress(desc="failing", total=2) as bar:
            bar.update()
            raise KeyError("stop")
    except KeyError:
        pass
    assert capsys.readouterr().err == ""


def test_a_terminal_gets_a_bar_and_no_stage_line(capsys, monkeypatch):
    monkeypatch.setattr(progress_module, "on_terminal", lambda: True)
    for _ in progress(range(3), "simulate", unit="tile"):
        pass
    err = capsys.readouterr().err
    assert "\r" in err and "simulate" in err and " in 0." not in err


def test_nothing_but_codesign_progress_uses_tqdm():
    users = [p.relative_to(ROOT).as_posix() for folder in ("codesign", "hw", "sim") for p in (ROOT / folder).rglob("*.py")
             if "tqdm" in p.read_text() and p.name != "progress.py"]
    assert users == []


def test_whole_model_emulation_into_a_log_file_writes_readable_lines(tmp_path):
    log = tmp_path / "log.txt"
    with log.open("w") as handle:
        done = subprocess.run([sys.executable, "-m", "codesign", "emulate", "--data", "digits"], stdout=subprocess.PIPE,
                              stderr=handle, text=True)
    assert done.returncode == 0, log.read_text()
    err = log.read_text()
    assert "\r" not in err
    for mode in ("float", "ideal", "crossbar"):
        assert re.search(rf"^codesign: {mode}: \d+/\d+ batch(es)? in \d+\.\d s$", err, re.M), err
