"""The simulation top of a tile module: configuration loader and behavioural crossbar (Verilog).

:func:`harness_verilog` writes ``<module>_harness``, which instantiates the generated module and
adds what the cocotb testbench (:mod:`codesign.sim.tile_test`) needs so that one build, and one
simulator run, serves every tile of the module in both comparator modes. The testbench runs the
tiles one after the other as *segments*; each starts with ``reload`` high during reset:

* **configuration**: at ``reload`` the harness reads the tile's ``params/<layer>/tile_NNN.mem``
  (its path is on the ``cfg_path`` port, as Verilog string bytes) with ``$readmemh``; after reset
  it writes the words into the module through its ``config`` port, one per cycle, as silicon
  would, and raises ``loaded`` when all ``C`` are in. The module's own ``CFG_FILE`` stays empty,
  so nothing else configures it.
* **comparators, fast mode**: when ``y_path`` names a file, ``y_entries`` column values
  ``y[b][t][p]`` (``codesign.golden.column_values``, one per line at ``(b·T + t)·C + p``) are
  loaded too, and each ADC's comparator is answered inside the simulator by the rule of the
  analog boundary, ``cmp = step && y[vector][input_cycle][column] >= ref``, where ``vector``
  counts the vectors accepted since reset (the last one accepted is in progress).
* **comparators, Python mode**: with an empty ``y_path`` the top-level ``adc__<g>__cmp`` inputs
  are passed through, and the testbench answers them itself every cycle.
* **waveforms** (Icarus): the plusarg ``+codesign_waves=FILE`` dumps the whole harness (FST with
  ``vvp -fst``); Verilator writes VCD through a ``--trace`` build instead.

Every module port name, width and parameter comes from its ``<module>.json`` (:class:`PortMap`).
"""

from __future__ import annotations

from .ports import PortMap

#: Column values the fast mode's table holds: at most this many, rounded down to whole vectors.
TABLE_ENTRIES = 1 << 18

#: Longest file path the ``cfg_path`` and ``y_path`` ports carry (bytes).
PATH_BYTES = 1024


def harness_name(module: str) -> str:
    return f"{module}_harness"


def table_vectors(ports: PortMap) -> int:
    """Input vectors the fast mode's column-value table holds (per segment)."""
    p = ports.parameters
    return max(1, TABLE_ENTRIES // (p["input_cycles"] * p["cols"]))


def harness_verilog(module: str, ports: PortMap) -> str:
    """Verilog of ``<module>_harness`` for the tile module ``module`` with ports ``ports``."""
    p = ports.parameters
    T, C, vectors = p["input_cycles"], p["cols"], table_vectors(ports)
    addr_width = ports.width("config__addr")
    word_width = ports.width("config__data")
    index_width = (vectors * T * C - 1).bit_length()
    cmp_wires = {f"adc__{g}__cmp": f"dut_cmp_{g}" for g in range(ports.adcs)}
    config_ports = {"config__addr", "config__data", "config__en"}
    passed = [port for name, port in ports.ports.items() if name not in config_ports]
    cycle_term = f"input_cycle * {index_width}'d{C} + "
    top = harness_name(module)

    def declaration(port: dict) -> str:
        direction = "input " if port["dir"] == "in" else "output"
        return f"  {direction} wire [{port['width'] - 1}:0] {port['name']},"

    lines = [
        f"// {top}: simulation top of {module} for the codesign cocotb testbench",
        "// (codesign.sim.harness): configuration through the config port, comparators answered from",
        "// a table of column values (fast mode) or by the testbench (Python mode).",
        f"module {top} (",
        "  input  wire clk,",
        "  input  wire rst,",
        *map(declaration, passed),
        "  input  wire reload,",
        f"  input  wire [8*{PATH_BYTES}-1:0] cfg_path,",
        f"  input  wire [8*{PATH_BYTES}-1:0] y_path,",
        "  input  wire [31:0] y_entries,",
        "  output wire loaded,",
        "  output reg  table_mode",
        ");",
        f"  localparam integer T = {T}, C = {C}, VECTORS = {vectors};",
        f"  reg [{word_width - 1}:0] cfg_words [0:C-1];",
        f"  reg [{p['value_width'] - 1}:0] ytab [0:VECTORS*T*C-1];",
        f"  reg [8*{PATH_BYTES}-1:0] waves_file;",
        "  integer i;",
        "  initial begin",
        "    table_mode = 0;",
        "    for (i = 0; i < C; i = i + 1) cfg_words[i] = 0;",
        "`ifndef VERILATOR",
        '    if ($value$plusargs("codesign_waves=%s", waves_file)) begin',
        f"      $dumpfile(waves_file); $dumpvars(0, {top});",
        "    end",
        "`endif",
        "  end",
        "  always @(posedge clk)",
        "    if (reload) begin",
        "      for (i = 0; i < C; i = i + 1) cfg_words[i] = 0;",
        "      if (cfg_path != 0) $readmemh(cfg_path, cfg_words);",
        "      table_mode = y_path != 0;",
        "      if (table_mode) $readmemh(y_path, ytab, 0, y_entries - 1);",
        "    end",
        "",
        "  // configuration: word p goes through the config port in the p-th cycle after reset",
        f"  reg [{addr_width}:0] load_addr;",
        "  always @(posedge clk)",
        f"    if (rst) load_addr <= 0; else if (!loaded) load_addr <= load_addr + {addr_width + 1}'d1;",
        f"  assign loaded = load_addr == {addr_width + 1}'d{C};",
        f"  wire [{addr_width - 1}:0] config__addr = load_addr[{addr_width - 1}:0];",
        f"  wire [{word_width - 1}:0] config__data = cfg_words[config__addr];",
        "  wire config__en = !rst && !loaded;",
        "",
        "  // fast mode: the comparators answered from the column-value table",
        f"  reg [{index_width - 1}:0] base;   // (vectors accepted - 1) * T * C",
        "  always @(posedge clk)",
        f"    if (rst) base <= -{index_width}'d{T * C};",
        f"    else if (i_stream__valid && i_stream__ready) base <= base + {index_width}'d{T * C};",
    ]
    for g in range(ports.adcs):
        lines += [
            f"  wire [{index_width - 1}:0] index_{g} = base + {cycle_term}adc__{g}__column;",
            f"  wire dut_cmp_{g} = table_mode ? adc__{g}__step && ytab[index_{g}] >= adc__{g}__ref : adc__{g}__cmp;",
        ]
    widths = {"clk": 1, "rst": 1, **{name: port["width"] for name, port in ports.ports.items()}}
    connections = [f".{name}({cmp_wires.get(name, name) if width else ''})" for name, width in widths.items()]
    lines += ["", f"  {module} dut (", "    " + ",\n    ".join(connections), "  );", "endmodule", ""]
    return "\n".join(lines)
