"""Build a tile module's harness once per simulator and run tiles on it (``cocotb_tools.runner``).

:func:`build` compiles ``<module>.v`` with its :mod:`~codesign.sim.harness` in a build directory
of its own per (module, simulator); a stamp of the sources, simulator version and options lets a
later call reuse it. :func:`run_tiles` runs many tiles of the module in one simulator run, one
after the other: each tile's ``.mem`` file, cell levels and expected settings are read by the
harness at the tile's reset, so no tile needs a build of its own and the simulator and its Python
start once. The simulator is found through :mod:`codesign.tools` before cocotb is asked (cocotb
would raise ``SystemExit`` for a missing one).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from codesign import tools
from codesign.errors import CodesignError

from .harness import harness_name, harness_verilog
from .ports import PortMap

SIMULATORS = ("icarus", "verilator")
#: ``fast``: the analog side computed inside the simulator (the harness);
#: ``python``: by the cocotb testbench every cycle.
MODES = ("fast", "python")
TIMESCALE = ("1ns", "1ps")
TEST_MODULE = "codesign.sim.tile_test"
#: Waveform format of each simulator.
WAVES_SUFFIX = {"icarus": ".fst", "verilator": ".vcd"}
#: The harness is Verilog-2005 (cocotb's runner would pass -g2012).
ICARUS_ARGS = ["-g2005"]
#: Verilator options: none; the module is lint-clean under -Wall (codesign.rtl) and the harness
#: under Verilator's default warnings.
VERILATOR_ARGS: list[str] = []


def simulator_tool(simulator: str) -> tools.Tool:
    """The simulator's tool (found, version-checked, or :class:`~codesign.errors.ToolNotFound`)."""
    if simulator == "icarus":
        return tools.iverilog()
    if simulator == "verilator":
        return tools.verilator()
    raise CodesignError(f"unknown simulator '{simulator}': choose one of {', '.join(SIMULATORS)}")


def check_build_tools(simulator: str) -> tools.Tool:
    """The simulator's tool, and for Verilator the C++ tool chain its builds need (else
    :class:`~codesign.errors.CodesignError` with an install hint)."""
    tool = simulator_tool(simulator)
    if simulator == "verilator":
        missing = [name for name in ("c++", "make", "perl") if shutil.which(name) is None]
        if missing:
            raise CodesignError(f"Verilator builds a C++ model, which needs {', '.join(missing)} (not found): on "
                                f"Debian/Ubuntu run 'apt-get install g++ make perl', or use --sim icarus")
    return tool


@contextmanager
def simulator_environment(tool: tools.Tool) -> Iterator[None]:
    """``os.environ`` for cocotb's runner, which looks the simulator up on ``PATH``: the tool's
    directory first (:func:`codesign.tools.verilator_env` for Verilator)."""
    saved = dict(os.environ)
    if tool.name == "verilator":
        os.environ.update(tools.verilator_env())
    else:
        os.environ["PATH"] = f"{tool.path.parent}{os.pathsep}{saved.get('PATH', '')}"
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@dataclass
class Build:
    """A compiled harness of one module on one simulator."""

    simulator: str
    tool: tools.Tool
    module: str
    directory: Path
    ports_file: Path
    ports: PortMap
    seconds: float          #: build wall time; 0 when an earlier build was reused
    tracing: bool           #: a Verilator build with waveform tracing

    @property
    def waves(self) -> bool:
        """Whether runs on this build can write waveforms."""
        return self.simulator == "icarus" or self.tracing

    @property
    def top(self) -> str:
        return harness_name(self.module)


def _log_excerpt(path: Path, lines: int = 4) -> str:
    """The first error lines of a log (else its last lines), joined into one line."""
    try:
        text = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return f"no log at {path}"
    errors = [line for line in text if re.search(r"error|fatal", line, re.I)]
    return " | ".join(errors[:lines] if errors else text[-lines:]) + f" (log {path})"


def build(simulator: str, verilog: Path, ports_file: Path, root: Path, waves: bool = False) -> Build:
    """Compile ``verilog`` (a generated tile module) with its harness in ``root/<module>-<simulator>``
    (``-waves`` appended for a Verilator build that can trace; Icarus builds always can).

    Reuses an earlier build in that directory when the sources, simulator version and options are
    the same. Raises :class:`~codesign.errors.CodesignError` if the simulator is missing or the
    build fails (with its first error lines).
    """
    from codesign.tools import isolated_runner as get_runner  # a process group of its own

    tool = check_build_tools(simulator)
    ports = PortMap.load(ports_file)
    module = verilog.stem
    # Icarus dumps through the harness (+codesign_waves) with any build; Verilator needs a tracing
    # build (VCD: its FST writer needs the lz4 headers, which are not a given).
    waves = waves and simulator == "verilator"
    directory = root / f"{module}-{simulator}{'-waves' if waves else ''}"
    directory.mkdir(parents=True, exist_ok=True)
    harness = directory / f"{harness_name(module)}.v"
    harness.write_text(harness_verilog(module, ports))
    args = VERILATOR_ARGS if simulator == "verilator" else ICARUS_ARGS
    digest = hashlib.sha256()
    for part in (verilog.read_bytes(), harness.read_bytes(), f"{simulator} {tool.version} {args} {waves}".encode()):
        digest.update(hashlib.sha256(part).digest())
    stamp = directory / "stamp"
    result = Build(simulator, tool, module, directory, ports_file, ports, 0.0, waves)
    if stamp.exists() and stamp.read_text() == digest.hexdigest():
        return result
    stamp.unlink(missing_ok=True)
    log = directory / "build.log"
    start = time.perf_counter()
    try:
        with simulator_environment(tool):
            get_runner(simulator).build(sources=[verilog.absolute(), harness.absolute()], hdl_toplevel=result.top,
                                        build_dir=directory / "build", build_args=args, timescale=TIMESCALE,
                                        waves=waves, always=True, clean=True, log_file=log)
    except (SystemExit, RuntimeError):
        raise CodesignError(f"{simulator} could not build {verilog.name}: {_log_excerpt(log)}") from None
    result.seconds = time.perf_counter() - start
    stamp.write_text(digest.hexdigest())
    return result


@dataclass
class TileJob:
    """The input vectors of one tile run and how to present them.

    ``cfg_file`` the tile's ``.mem`` file and ``rows`` its memory rows; ``x[B, R]`` activations (rows
    beyond the tile's may hold anything: they carry no weights), ``acc[B, L]`` partial sums,
    ``digits[R, C]`` the tile's cell levels (the analog side computes column values from them and
    the wordlines), ``expect[C]`` each physical column's ``b | k << 5`` (``b = 0``: skipped),
    ``latency`` the ADC macro's answer delay in cycles, ``gaps[B]`` idle input cycles before each
    vector, ``stalls[B]`` cycles each result waits for ``ready`` (both only after the first
    ``burst`` vectors, which run back to back).
    """

    cfg_file: Path
    rows: int
    x: np.ndarray
    acc: np.ndarray
    digits: np.ndarray
    expect: list[int]
    latency: int
    gaps: np.ndarray
    stalls: np.ndarray
    burst: int


@dataclass
class TileRun:
    """What the simulation of one tile returned: results ``[B, L]`` (missing ones absent), the clock
    cycle of each vector's first input beat and last result beat, protocol errors, the conversions
    the harness counted, the clock cycle the tile's segment began, its simulated clock cycles and
    its wall time."""

    results: list[list[int]] = field(default_factory=list)
    first_beat: list[int] = field(default_factory=list)
    last_beat: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    conversions: int = 0
    start: int = -1
    cycles: int = 0
    seconds: float = 0.0

    @property
    def ends(self) -> list[int]:
        """Cycles from the first input beat of vector 0 to the last result beat of each vector, included."""
        return [end - self.first_beat[0] + 1 for end in self.last_beat] if self.first_beat else []


@dataclass
class RunStats:
    """A simulator run of several tiles: its wall time, the part outside the tiles' segments
    (simulator and Python start-up, loading the design), and why it failed, if it did."""

    seconds: float
    overhead: float
    failure: str | None


def timeout_cycles(ports: PortMap, vectors: int) -> int:
    """A generous bound on a segment's clock cycles: every row at its longest, plus stalls and loading."""
    p = ports.params
    row = max(p.conversion_cycles, p.bmax)
    per_vector = p.cycles * (p.depth * row + p.x_beats) + 4 * p.y_beats + 16
    return 4 * (vectors + 2) * per_vector + 4 * p.depth * p.adcs + 64


def run_tiles(build: Build, jobs: list[TileJob], workdir: Path, mode: str = "fast", waves: Path | None = None,
              done: Callable[[int], None] = lambda job: None) -> tuple[list[TileRun], RunStats]:
    """Simulate ``jobs`` (tiles of ``build``'s module) one after the other in one simulator run, one
    segment per job. ``done(i)`` is called as job ``i`` finishes. The run's files and log stay in
    ``workdir``; ``waves`` names the waveform file to write (suffix :data:`WAVES_SUFFIX`; the build
    must have waves).
    """
    if mode not in MODES:
        raise CodesignError(f"unknown mode '{mode}': choose one of {', '.join(MODES)}")
    if waves is not None and not build.waves:
        raise ValueError("waveforms need a build with waves=True")
    workdir.mkdir(parents=True, exist_ok=True)
    segments = [_write_segment(build, job, workdir / f"segment{index}") for index, job in enumerate(jobs)]
    out = workdir / "observed.jsonl"
    out.unlink(missing_ok=True)
    (workdir / "job.json").write_text(json.dumps({
        "mode": mode, "ports": str(build.ports_file.absolute()), "out": str(out.absolute()), "segments": segments}))
    runs = [TileRun() for _ in jobs]
    seen_lines = 0

    def collect() -> None:
        nonlocal seen_lines
        text = out.read_text() if out.exists() else ""
        for line in text.split("\n")[:-1][seen_lines:]:        # complete lines only
            seen = json.loads(line)
            runs[seen_lines] = TileRun(seen["results"], seen["first_beat"], seen["last_beat"], seen["errors"],
                                       seen["conversions"], seen["start"], seen["cycles"], seen["seconds"])
            done(seen_lines)
            seen_lines += 1

    start = time.perf_counter()
    failure = _simulate(build, workdir, waves, collect)
    collect()
    for index in range(seen_lines, len(jobs)):
        runs[index].errors.append(f"the simulation ended before this tile (log {workdir / 'sim.log'})")
    seconds = time.perf_counter() - start
    return runs, RunStats(seconds, seconds - sum(run.seconds for run in runs), failure)


def _write_segment(build: Build, job: TileJob, stem: Path) -> dict:
    """The files of one segment; returns its entry in job.json."""
    p = build.ports.params
    arrays = stem.with_suffix(".npz")
    np.savez(arrays, x=job.x, acc=job.acc, digits=job.digits, gaps=job.gaps, stalls=job.stalls)
    digit_bits = p.geometry.cell_bits
    width = (p.rows * digit_bits + 3) // 4
    columns = [sum(int(d) << (r * digit_bits) for r, d in enumerate(job.digits[:, column])) for column in range(p.cols)]
    digits = stem.with_suffix(".digits.hex")
    digits.write_text("".join(f"{word:0{width}x}\n" for word in columns))
    expect = stem.with_suffix(".expect.hex")
    expect.write_text("".join(f"{word:03x}\n" for word in job.expect))
    return {"arrays": str(arrays.absolute()), "cfg": str(job.cfg_file.absolute()), "rows": job.rows,
            "digits": str(digits.absolute()), "expect": str(expect.absolute()), "latency": job.latency,
            "burst": job.burst, "timeout_cycles": timeout_cycles(build.ports, len(job.x))}


def _simulate(build: Build, workdir: Path, waves: Path | None, poll: Callable[[], None]) -> str | None:
    """Run the simulator on ``workdir/job.json`` while calling ``poll`` about every 0.2 s; returns
    why the run failed, or None."""
    from cocotb_tools.check_results import get_results
    from codesign.tools import isolated_runner as get_runner  # a process group of its own

    plusargs, test_args = [], []
    if waves is not None:
        waves.parent.mkdir(parents=True, exist_ok=True)
        if build.simulator == "icarus":
            plusargs.append(f"+codesign_waves={waves.absolute()}")
        else:
            test_args = ["--trace-file", str(waves.absolute())]
    xml = workdir / "results.xml"
    log = workdir / "sim.log"

    def run() -> None:
        try:
            get_runner(build.simulator).test(
                test_module=TEST_MODULE, hdl_toplevel=build.top, hdl_toplevel_lang="verilog",
                build_dir=build.directory / "build", test_dir=workdir, results_xml=str(xml.absolute()),
                plusargs=plusargs, test_args=test_args, waves=waves is not None, timescale=TIMESCALE,
                log_file=log, extra_env={"CODESIGN_SIM_JOB": str((workdir / "job.json").absolute())})
        except SystemExit:
            pass    # a failed cocotb test or simulator exit: the results file and the log say which

    with simulator_environment(build.tool):       # cocotb's Icarus runner looks for iverilog on PATH
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        while thread.is_alive():
            thread.join(0.2)
            poll()
    try:
        failed = get_results(xml)[1]
    except RuntimeError:
        failed = 1
    return f"the simulation failed: {_log_excerpt(log)}" if failed else None
