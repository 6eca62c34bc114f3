"""The mutation suite (``make mutants``, docs/mutants.md): faults that the verification must catch.

A :class:`Mutant` is a set of textual edits (:class:`Edit`) of a generated folder (its Verilog or
its ``.mem`` files) or of the Amaranth sources (``hw/``). :func:`run_mutant` applies them to a
copy of a fixture folder (:func:`make_fixtures`: the bundled model, ``macro`` with one ADC and
``sar`` with two, every third converted column given a shift ``k > 0``, every seventh ``k = 5``),
regenerates the folder from a mutated copy of the package for source mutants, and runs
``codesign simulate`` on Icarus (and, where it does not kill the mutant, the mutant's unit
tests). A mutant is *killed* when one of them fails; an edit that does not apply exactly as
written is an error of the suite, never a kill. :func:`kill_table` formats the outcome.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Union

from .errors import CodesignError

#: Tiles every mutant is simulated on: a tile of row block 1 (its partial sums come in on
#: s_axis_acc) and a tile with unused logical columns.
TILES = "features.2:3,classifier.3"
#: Vectors per tile: three back to back (cycle counts), two with back-pressure.
VECTORS = 5
#: Sub-packages of ``codesign`` that an editable install maps to folders of the repository.
SUBPACKAGES = ("hw", "sim", "templates", "examples")


class MutantError(CodesignError):
    """A mutant whose edit does not apply: the suite is out of date with the generated code."""


@dataclass(frozen=True)
class Edit:
    """Replace ``pattern`` (a regular expression, multiline) in the files matching ``path`` (a glob
    relative to the folder, or to the package for source mutants) by ``new`` (a template or a
    function of the match). ``count``: the exact number of matches over those files (0: at least one)."""

    path: str
    pattern: str
    new: Union[str, Callable[[re.Match], str]]
    count: int = 1


@dataclass(frozen=True)
class Mutant:
    """A fault: ``edits`` of the ``fixture`` folder (``macro`` or ``sar``), or of the package's
    Amaranth sources when ``source`` (the folder is then regenerated from the mutated package);
    ``tests``: pytest files (relative to the repository) run when ``codesign simulate`` passes;
    ``equivalent``: why no check can see it (it must then survive)."""

    name: str
    description: str
    fixture: str
    edits: tuple[Edit, ...]
    source: bool = False
    tests: tuple[str, ...] = ()
    equivalent: str = ""


@dataclass
class Outcome:
    """What happened to one mutant: ``killed_by`` (``""``: it survived) and the first failure line."""

    mutant: Mutant
    killed_by: str
    message: str
    seconds: float
    applied: bool = True

    @property
    def verdict(self) -> str:
        if not self.applied:
            return "NOT APPLIED"
        if self.mutant.equivalent:
            return "equivalent (survived)" if not self.killed_by else "equivalent but KILLED"
        return "killed" if self.killed_by else "SURVIVED"

    @property
    def ok(self) -> bool:
        return self.applied and bool(self.killed_by) != bool(self.mutant.equivalent)


V = "rtl/*.v"


def _flip_mem_shift(match: re.Match) -> str:
    """The first word of a .mem file with its shift field's lowest bit flipped (bit 3 of slot 0)."""
    word = match[2]
    return f"{match[1]}{int(word, 16) ^ 1 << 3:0{len(word)}x}\n"


def _truncate(bits: int, width: int = 26) -> tuple[Edit, ...]:
    """Every result of m_axis_y kept to its low ``bits`` bits, sign-extended to ``width``."""
    function = (f"\n  function [{width - 1}:0] trunc; input [{width - 1}:0] v; "
                f"trunc = {{{{{width - bits}{{v[{bits - 1}]}}}}, v[{bits - 1}:0]}}; endfunction")
    return (Edit(V, r"^(module codesign_tile_\w+\([^;]*\);)", lambda m: m[1] + function),
            Edit(V, r"^(  assign m_axis_y__tdata\[\d+:\d+\] = )(\$signed.+);$", r"\1trunc(\2);", count=4))


MUTANTS: tuple[Mutant, ...] = (
    # --- generated Verilog, macro interface (one ADC) ---
    Mutant("busy-0", "busy tied to 0", "macro", (Edit(V, r"assign busy = \| pending;", "assign busy = 1'b0;"),)),
    Mutant("busy-write-memory", "a memory write is accepted while busy (the busy term of the refusal dropped)",
           "macro", (Edit(V, r"(assign _\d+_ = _\d+_ \| )busy;", r"\g<1>1'b0;"),)),
    Mutant("busy-write-rows", "a ROWS write is accepted while busy", "macro",
           (Edit(V, r"(assign _\d+_ = _\d+_ & )busy;", r"\g<1>1'b0;"),)),
    Mutant("apb-refuses", "every APB access answered with pslverr", "macro",
           (Edit(V, r"assign apb__pslverr = (_\d+_) & bus_error;", r"assign apb__pslverr = \1;"),)),
    Mutant("tlast-level", "m_axis_y.tlast a level (on every beat)", "macro",
           (Edit(V, r"assign m_axis_y__tlast = shift_add_pointer == 2'h3;", "assign m_axis_y__tlast = 1'b1;"),)),
    Mutant("tlast-early", "m_axis_y.tlast on the second-last beat", "macro",
           (Edit(V, r"assign m_axis_y__tlast = shift_add_pointer == 2'h3;",
                 "assign m_axis_y__tlast = shift_add_pointer == 2'h2;"),)),
    Mutant("y-ignores-ready", "m_axis_y moves on without tready (dropped handshake)", "macro",
           (Edit(V, r"m_axis_y__tvalid & m_axis_y__tready;", "m_axis_y__tvalid;", count=0),)),
    Mutant("x-ignores-full", "s_axis_x.tready while the plane buffer is full (dropped handshake)", "macro",
           (Edit(V, r"assign s_axis_x__tready = enable & _\d+_;", "assign s_axis_x__tready = enable;"),)),
    Mutant("acc-ignores-held", "s_axis_acc.tready while an acc beat is still held", "macro",
           (Edit(V, r"assign s_axis_acc__tready = ~ shift_add_held_valid;", "assign s_axis_acc__tready = 1'b1;"),)),
    Mutant("output-20-bits", "results truncated to 20 bits (sign-extended)", "macro", _truncate(20)),
    Mutant("output-22-bits", "results truncated to 22 bits (sign-extended)", "macro", _truncate(22)),
    Mutant("wordline-drops", "the wordlines drop to 0 after the first conversion of an input cycle", "macro",
           (Edit(V, r"(assign _\d+_ = inputs_load \? inputs_plane : )wordline;", r"\g<1>128'h0;"),)),
    Mutant("input-cycle-0", "input_cycle stuck at 0", "macro",
           (Edit(V, r"(assign _\d+_ = inputs_load \? )inputs_t_full( : input_cycle;)", r"\g<1>3'h0\2"),)),
    Mutant("macro-ignores-k", "the code is not shifted by k before the shift-add", "macro",
           (Edit(V, r"(assign shift_add_value0 = \{ 2'h0, adc__0__code \}) << sequencer_wb\[7:3\];", r"\1;"),)),
    Mutant("polarity-swapped", "the negative column added, the positive subtracted", "macro",
           (Edit(V, r"(assign shift_add_sum0 = sequencer_wb\[8\] \? )(_\d+_) : (_\d+_);", r"\1\3 : \2;"),)),
    Mutant("slice-weight", "slice s weighted 2^s instead of 2^(c·s) (a constant)", "macro",
           (Edit(V, r"(\{ 2'h0, sequencer_wb\[10:9\] \} \* )4'h2;", r"\g<1>4'h1;"),)),
    Mutant("cycle-weight", "input cycle t weighted 2^(2t) instead of 2^(v·t) (a constant)", "macro",
           (Edit(V, r"(\{ 1'h0, sequencer_wb\[17:15\] \} \* )4'h1;", r"\g<1>4'h2;"),)),
    Mutant("column-polarity", "the ADC samples the other column of the pair (column address)", "macro",
           (Edit(V, r"(assign adc__0__column = _\d+_ \+ \{ 6'h00, )(sequencer_conv\[8\] \};)", r"\1~ \2"),)),
    Mutant("bits-plus-one", "the ADC is asked for b + 1 bits", "macro",
           (Edit(V, r"(assign adc__0__bits = )(sequencer_conv\[2:0\]);", r"\1\2 + 3'h1;"),)),
    Mutant("memory-row-off-by-one", "APB writes land one memory row further (config addressing)", "macro",
           (Edit(V, r"memory\[apb__paddr\[8:2\]\] <= ", "memory[apb__paddr[8:2] + 7'h01] <= "),)),
    Mutant("memory-shift-bit", "every slot written with the lowest bit of k flipped", "macro",
           (Edit(V, r"(memory\[apb__paddr\[8:2\]\] <= apb__pwdata\[14:0\]);", r"\1 ^ 15'h0008;"),)),
    Mutant("rows-minus-one", "the sequencer walks one memory row fewer (off by one)", "macro",
           (Edit(V, r"(\{ 1'h0, bus_rows \} - )9'h001;", r"\g<1>9'h002;", count=0),)),
    Mutant("x-framing-inverted", "the s_axis_x tlast check inverted", "macro",
           (Edit(V, r"s_axis_x__tlast != (_\d+_);", r"s_axis_x__tlast == \1;"),)),
    Mutant("reset-pending", "the vector count resets to 1, not 0", "macro",
           (Edit(V, r"(assign _\d+_ = rst \? )2'h0( : _0001_;)", r"\g<1>2'h1\2"),)),
    Mutant("reset-sticky", "the sticky error bits reset to 1", "macro",
           (Edit(V, r"(assign _\d+_ = rst \? )3'h0( : _\d+_;\n  assign _\d+_ = ~ inputs_full;)", r"\g<1>3'h1\2"),)),
    Mutant("mem-edited", "a .mem word edited behind hw_config.json (the .skip.mem of the issue)", "macro",
           (Edit("params/features_2/tile_001.mem", r"\A((?://.*\n)+)([0-9a-f]+)\n", _flip_mem_shift),)),
    # --- generated Verilog, SAR interface (two ADCs) ---
    Mutant("sar-trial-0", "the SAR trial output tied to 0", "sar",
           (Edit(V, r"assign adc__0__trial = lanes_sar0_code \| \{[^;]*\};", "assign adc__0__trial = 7'h00;"),)),
    Mutant("sar-ignores-k", "the SAR ignores the shift k (trial bit weight 2^i, not 2^(i+k))", "sar",
           (Edit(V, r"(assign lanes_sar0_position = \{ 3'h0, lanes_sar0_index \}) \+ \{ 1'h0, adc__0__shift \};",
                 r"\1;"),)),
    Mutant("sar-done-level", "the row's done a level while it converts (not the cycle all lanes finish)", "sar",
           (Edit(V, r"assign done = sequencer_conv_valid & _\d+_;", "assign done = sequencer_conv_valid;"),)),
    Mutant("sar-cmp-inverted", "the comparator answer inverted", "sar",
           (Edit(V, r"assign lanes_sar0_above = adc__0__cmp & ", "assign lanes_sar0_above = ~ adc__0__cmp & "),)),
    Mutant("sar-last-early", "the SAR stops one step early (off by one)", "sar",
           (Edit(V, r"assign (_\d+_) = lanes_sar0_index == 3'h0;\n(  assign lanes_sar0_last = adc__0__step & \1;)",
                 r"assign \1 = lanes_sar0_index == 3'h1;\n\2"),)),
    Mutant("sar-ref-beyond", "the reference of an out-of-range trial 2^Wy − 1, not 2^Wy (a constant)", "sar",
           (Edit(V, r"(assign adc__0__ref = lanes_sar0_in_range \? \{ 1'h0, lanes_sar0_trial_value \} : )10'h200;",
                 r"\g<1>10'h1ff;"),)),
    # --- Amaranth sources, regenerated ---
    Mutant("src-busy-0", "TilePeriphery.busy tied to 0", "macro",
           (Edit("hw/tile.py", r"busy\.eq\(pending != 0\)", "busy.eq(0)"),), source=True, tests=("tests/test_hw_tile.py",)),
    Mutant("src-rows-write-busy", "ConfigBus accepts a ROWS write while busy", "macro",
           (Edit("hw/config_bus.py", r"\| \(apb\.pwrite & \(register == REG_ROWS\) & self\.busy\)", "| 0"),),
           source=True, tests=("tests/test_hw_tile.py",)),
    Mutant("src-vector-start", "InputStage.vector_start on every plane (skip of the t == 0 term)", "macro",
           (Edit("hw/input_stage.py", r"self\.vector_start\.eq\(accept & \(beat == 0\) & \(t_in == 0\)\)",
                 "self.vector_start.eq(accept & (beat == 0))"),), source=True),
    Mutant("src-skip-slots", "the schedule gives every fifth skipped column a slot (skip logic)", "macro",
           (Edit("hw/periphery.py", r"\(p for p, b in enumerate\(bits\) if b\)",
                 "(p for p, b in enumerate(bits) if b or p % 5 == 0)"),), source=True),
    Mutant("src-sar-shift-port", "SARController drives shift = 0 on its port", "sar",
           (Edit("hw/sar.py", r"self\.adc\.shift\.eq\(shift\)", "self.adc.shift.eq(0)"),), source=True,
           tests=("tests/test_hw_sar.py",)),
    Mutant("src-sar-ignores-k", "SARController ignores k in the trial position", "sar",
           (Edit("hw/sar.py", r"position\.eq\(index \+ shift\)", "position.eq(index)"),), source=True,
           tests=("tests/test_hw_sar.py",)),
    Mutant("src-sar-ready", "SARController takes a command only when idle (one cycle lost per conversion)", "sar",
           (Edit("hw/sar.py", r"self\.cmd\.ready\.eq\(~busy \| completes\)", "self.cmd.ready.eq(~busy)"),),
           source=True, tests=("tests/test_hw_sar.py",)),
    Mutant("src-sequencer-last", "RowSequencer marks the second-last row as the last", "macro",
           (Edit("hw/sequencer.py", r"last\.eq\(row == self\.rows - 1\)", "last.eq(row == self.rows - 2)"),),
           source=True, tests=("tests/test_hw_tile.py",)),
)


def mutant(name: str) -> Mutant:
    try:
        return next(m for m in MUTANTS if m.name == name)
    except StopIteration:
        raise CodesignError(f"no mutant '{name}'; mutants are: {', '.join(m.name for m in MUTANTS)}") from None


def apply_edits(root: Path, edits: Iterable[Edit]) -> None:
    """Apply ``edits`` to the files under ``root``; raises :class:`MutantError` for an edit whose
    pattern matches another number of times than its ``count`` (or no file)."""
    for edit in edits:
        files = sorted(root.glob(edit.path))
        if not files:
            raise MutantError(f"edit of {edit.path}: no such file under {root}")
        texts = {path: path.read_text() for path in files}
        found = sum(len(re.findall(edit.pattern, text, re.M)) for text in texts.values())
        if found == 0 or (edit.count and found != edit.count):
            raise MutantError(f"edit of {edit.path}: /{edit.pattern}/ matches {found} times, "
                              f"not {edit.count or 'at least once'}")
        for path, text in texts.items():
            path.write_text(re.sub(edit.pattern, edit.new, text, flags=re.M))


def package_copy(target: Path) -> Path:
    """A copy of the installed ``codesign`` package under ``target/codesign`` with its sub-packages
    (:data:`SUBPACKAGES`) as real folders, wherever the install maps them; returns ``target``, the
    folder to put first on ``PYTHONPATH``."""
    package = Path(importlib.import_module("codesign").__file__).parent
    shutil.copytree(package, target / "codesign", ignore=shutil.ignore_patterns("__pycache__", *SUBPACKAGES))
    for name in SUBPACKAGES:
        source = Path(importlib.import_module(f"codesign.{name}").__file__).parent
        shutil.copytree(source, target / "codesign" / name, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def _env(pythonpath: Path | None) -> dict[str, str]:
    env = dict(os.environ, AMARANTH_USE_YOSYS="builtin")
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def codesign(args: list[str], pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m codesign ARGS`` in a process of its own (its output captured), run from
    ``pythonpath`` when given (``-m`` puts the working folder first on ``sys.path``)."""
    return subprocess.run([sys.executable, "-m", "codesign", *args], env=_env(pythonpath), capture_output=True,
                          text=True, cwd=pythonpath)


def _checked(result: subprocess.CompletedProcess, what: str) -> None:
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        raise CodesignError(f"{what} failed: {lines[-1] if lines else f'status {result.returncode}'}")


def fixture_config(config: dict, interface: str) -> dict:
    """The bundled model's ``hw_config.json`` made a fixture: every third converted column gets
    ``k = 1`` or ``2``, every seventh ``k = 5`` (SAR trials beyond ``2^Wy``); ``sar``: two ADCs."""
    config = json.loads(json.dumps(config))
    for layer in config["layers"]:
        for tile in layer["tiles"]:
            for p, b in enumerate(tile["adc_bits"]):
                if b and p % 7 == 3:
                    tile["adc_shift"][p] = 5
                elif b and p % 3 == 1:
                    tile["adc_shift"][p] = 1 + (p // 3) % 2
    if interface == "sar":
        config["crossbar"]["adcs"] = 2
        config["periphery"]["adc_interface"] = "sar"
    return config


def make_fixtures(work: Path, interfaces: Iterable[str] = ("macro", "sar")) -> dict[str, Path]:
    """The fixture folders of ``interfaces`` under ``work``, generated once."""
    base = work / "bundled"
    if not (base / "hw_config.json").exists():
        _checked(codesign(["generate", "--out", str(base), "--no-report", "--force"]), "codesign generate")
    folders = {}
    for interface in interfaces:
        folder = work / f"fixture-{interface}"
        folders[interface] = folder
        if (folder / "rtl" / "manifest.json").exists():
            continue
        config = work / f"fixture-{interface}.json"
        config.write_text(json.dumps(fixture_config(json.loads((base / "hw_config.json").read_text()), interface)))
        _checked(codesign(["generate", "--config", str(config), "--out", str(folder), "--no-report", "--force"]),
                 f"codesign generate ({interface} fixture)")
    return folders


def _first_failure(result: subprocess.CompletedProcess, folder: Path) -> str:
    """The line that names why ``codesign simulate`` failed: its error (a refusal), else the first
    protocol-check failure of ``sim/results.json``, else its first line of output."""
    err = [line for line in result.stderr.splitlines() if line.startswith("codesign: error")]
    if err:
        return err[0].removeprefix("codesign: error: ")
    try:
        tiles = json.loads((folder / "sim" / "results.json").read_text())["tiles"]
    except (OSError, ValueError, KeyError):
        tiles = []
    errors = [f"layer {t['layer']} tile {t['tile']}: {e}" for t in tiles for e in t["errors"]]
    protocol = [line for line in errors if "protocol check failed" in line]
    out = [line for line in result.stdout.splitlines() if line.strip()]
    return (protocol or out or [f"status {result.returncode}"])[0]


def run_mutant(m: Mutant, fixtures: dict[str, Path], work: Path, simulator: str = "icarus",
               tiles: str = TILES, vectors: int = VECTORS) -> Outcome:
    """Apply ``m`` to a copy of its fixture, simulate, and (if it survives) run its tests."""
    start = time.perf_counter()
    here = work / m.name
    shutil.rmtree(here, ignore_errors=True)
    folder = here / "out"
    shutil.copytree(fixtures[m.fixture], folder, ignore=shutil.ignore_patterns("sim"))
    pythonpath = None
    try:
        if m.source:
            pythonpath = package_copy(here / "src")
            apply_edits(pythonpath / "codesign", m.edits)
            where = subprocess.run([sys.executable, "-c", "import codesign.hw; print(codesign.hw.__file__)"],
                                   env=_env(pythonpath), capture_output=True, text=True, cwd=pythonpath).stdout.strip()
            if not where.startswith(str(pythonpath)):
                raise MutantError(f"the mutated sources are not the ones imported: codesign.hw is {where or '?'}")
            config = shutil.copy(folder / "hw_config.json", here / "hw_config.json")    # not inside --out
            _checked(codesign(["generate", "--config", str(config), "--out", str(folder),
                               "--no-report", "--force"], pythonpath), "codesign generate of the mutated sources")
        else:
            apply_edits(folder, m.edits)
    except MutantError as error:
        return Outcome(m, "", str(error), time.perf_counter() - start, applied=False)
    result = codesign(["simulate", str(folder), "--sim", simulator, "--vectors", str(vectors), "--tiles", tiles],
                      pythonpath)
    if result.returncode != 0:
        message = _first_failure(result, folder)
        if "could not build" in message:        # a mutant that is not Verilog is no fault of the design
            return Outcome(m, "", message, time.perf_counter() - start, applied=False)
        return Outcome(m, "codesign simulate", message, time.perf_counter() - start)
    for test in m.tests:
        repo = Path(__file__).resolve().parent.parent
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", str(repo / test)],
                              env=_env(pythonpath), cwd=pythonpath or repo, capture_output=True, text=True)
        if done.returncode != 0:
            failed = [line for line in done.stdout.splitlines() if line.startswith("FAILED")]
            return Outcome(m, test, failed[0] if failed else done.stdout.strip().splitlines()[-1],
                           time.perf_counter() - start)
    return Outcome(m, "", "codesign simulate passed" + (" and so did its tests" if m.tests else ""),
                   time.perf_counter() - start)


def run_suite(mutants: Iterable[Mutant], work: Path, simulator: str = "icarus", tiles: str = TILES,
              vectors: int = VECTORS, log: Callable[[str], None] = lambda line: None) -> list[Outcome]:
    """Every mutant of ``mutants`` on fixtures made under ``work``, one after the other (as
    :func:`run_mutant`); ``log`` gets one line per mutant."""
    mutants = list(mutants)
    fixtures = make_fixtures(work, sorted({m.fixture for m in mutants}))
    outcomes = []
    for m in mutants:
        outcome = run_mutant(m, fixtures, work, simulator, tiles, vectors)
        log(f"{m.name}: {outcome.verdict} by {outcome.killed_by or '-'} in {outcome.seconds:.0f} s: {outcome.message}")
        outcomes.append(outcome)
    return outcomes


def kill_table(outcomes: list[Outcome]) -> str:
    """The markdown kill table: mutant, description, verdict, killed by, first failure, seconds."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| mutant | description | verdict | killed by | first failure | seconds |", "|---|---|---|---|---|---|"]
    lines += [f"| `{o.mutant.name}` | {cell(o.mutant.description)} | {o.verdict} | {o.killed_by or '—'} | "
              f"{cell(o.message[:200])} | {o.seconds:.0f} |" for o in outcomes]
    return "\n".join(lines)
