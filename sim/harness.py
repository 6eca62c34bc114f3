"""The simulation top of a tile module: configuration loader and behavioural crossbar (Verilog).

:func:`harness_verilog` writes ``<module>_harness``, which instantiates the generated module and
adds what the cocotb testbench (:mod:`codesign.sim.tile_test`) needs, so that one build and one
simulator run serve every tile of the module. The testbench runs the tiles one after the other
as *segments*; each starts with ``reload`` high during reset:

* **configuration**: at ``reload`` the harness reads the tile's ``params/<layer>/tile_NNN.mem``
  (``cfg_rows`` rows; the path is on ``cfg_path`` as Verilog string bytes) with ``$readmemh``; after
  reset it writes every slot through the module's APB port and then ``ROWS``, as firmware would,
  and raises ``loaded``. A refused transfer (``pslverr``) sets ``protocol_error``.
* **the analog side**, computed from what the module drives: the tile's cell levels ``d[r][p]``
  (``digits_path``: one line per physical column ``p``, the ``R`` levels of ``c`` bits each, row 0
  least significant) give every column value ``y = Σ_r wordline[r]·d[r][p]`` of the ADC's
  ``column`` for the wordlines of that very cycle. ``macro``: a ``start`` is answered with
  ``code = min(y >> shift, 2^bits − 1)`` and ``valid`` ``latency`` cycles later; ``sar``:
  ``cmp = step && y ≥ ref``. With ``model_mode`` 0 the testbench answers instead (the top-level
  ADC inputs pass through).
* **checks**: every conversion (a ``start``, or the first ``step`` of a SAR conversion) must be
  of a converted column with the ``b`` and ``k`` of ``expect_path`` (one hex line per physical column,
  ``b | k << 5``; ``b = 0``: the column is skipped), else ``protocol_error``; ``conversions`` counts them.
* **waveforms** (Icarus): the plusarg ``+codesign_waves=FILE`` dumps the whole harness (FST with
  ``vvp -fst``); Verilator writes VCD through a ``--trace`` build instead.

Every module port name, width and parameter comes from its ``<module>.json`` (:class:`PortMap`).
"""

from __future__ import annotations

from .ports import PortMap

#: Longest file path the path ports carry (bytes).
PATH_BYTES = 1024

#: Ports of the module the harness drives itself (the APB master).
APB_INPUTS = ("apb__psel", "apb__penable", "apb__pwrite", "apb__paddr", "apb__pwdata")


def harness_name(module: str) -> str:
    return f"{module}_harness"


def harness_verilog(module: str, ports: PortMap) -> str:
    """Verilog of ``<module>_harness`` for the tile module ``module`` with ports ``ports``."""
    p = ports.params
    g = p.geometry
    A, R, C, v, c = p.adcs, p.rows, p.cols, g.dac_bits, g.cell_bits
    macro = p.macro
    slot_bits, row_bits = p.slot_index_width, p.row_index_width
    memory = 1 << (slot_bits + row_bits)
    top = harness_name(module)
    model_inputs = {f"adc__{i}__{name}" for i in range(A) for name in (("valid", "code") if macro else ("cmp",))}
    passed = [port for name, port in ports.ports.items() if name not in APB_INPUTS and not name.startswith("apb__")]

    def declaration(port: dict) -> str:
        direction = "input " if port["dir"] == "in" else "output"
        return f"  {direction} wire [{port['width'] - 1}:0] {port['name']},"

    latency_width = p.conversion_cycles.bit_length() + 1
    lines = [
        f"// {top}: simulation top of {module} for the codesign cocotb testbench (codesign.sim.harness):",
        "// configuration through the APB port, the analog side computed from the driven wordlines.",
        f"module {top} (",
        "  input  wire clk,",
        "  input  wire rst,",
        *map(declaration, passed),
        "  input  wire reload,",
        f"  input  wire [8*{PATH_BYTES}-1:0] cfg_path,",
        "  input  wire [31:0] cfg_rows,",
        f"  input  wire [8*{PATH_BYTES}-1:0] digits_path,",
        f"  input  wire [8*{PATH_BYTES}-1:0] expect_path,",
        f"  input  wire [{latency_width - 1}:0] latency,",
        "  input  wire model_mode,",
        "  output reg  loaded,",
        "  output reg  protocol_error,",
        "  output reg  [31:0] conversions",
        ");",
        f"  localparam integer R = {R}, C = {C}, V = {v}, CB = {c}, A = {A}, DEPTH = {p.depth}, SW = {p.slot_width};",
        f"  reg [{p.row_width - 1}:0] rows_mem [0:DEPTH-1];",
        f"  reg [{R * c - 1}:0] dcol [0:C-1];",
        "  reg [9:0] expect_cfg [0:C-1];",
        f"  reg [8*{PATH_BYTES}-1:0] waves_file;",
        "  initial begin",
        "    loaded = 0;",
        "`ifndef VERILATOR",
        '    if ($value$plusargs("codesign_waves=%s", waves_file)) begin',
        f"      $dumpfile(waves_file); $dumpvars(0, {top});",
        "    end",
        "`endif",
        "  end",
        "  always @(posedge clk)",
        "    if (reload) begin",
        "      $readmemh(cfg_path, rows_mem, 0, cfg_rows - 1);",
        "      $readmemh(digits_path, dcol);",
        "      $readmemh(expect_path, expect_cfg);",
        "    end",
        "",
        "  // configuration: every slot, then ROWS, through APB (a setup and an access cycle each)",
        "  reg [31:0] load_row, load_slot;",
        "  reg access, rows_phase;",
        f"  wire [31:0] slot_word = (32'd{memory} | (load_row << {slot_bits}) | load_slot) << 2;",
        f"  wire [{p.row_width - 1}:0] load_data = rows_mem[load_row[{max(row_bits, 1) - 1}:0]] >> (SW * load_slot);",
        "  wire apb__psel = !rst && !loaded;",
        "  wire apb__penable = access;",
        "  wire apb__pwrite = 1'b1;",
        f"  wire [{p.apb_addr_width - 1}:0] apb__paddr = rows_phase ? {p.apb_addr_width}'d4 : "
        f"slot_word[{p.apb_addr_width - 1}:0];",
        f"  wire [31:0] apb__pwdata = rows_phase ? cfg_rows : {{{32 - p.slot_width}'d0, load_data[SW-1:0]}};",
        "  wire [31:0] apb__prdata;",
        "  wire apb__pready, apb__pslverr;",
        "  wire refused = !rst && !loaded && access && (apb__pslverr || !apb__pready);",
        "  always @(posedge clk)",
        "    if (rst) begin",
        "      load_row <= 0; load_slot <= 0; access <= 0; rows_phase <= 0; loaded <= 0;",
        "    end else if (!loaded) begin",
        "      access <= !access;",
        "      if (access) begin",
        "        if (rows_phase) loaded <= 1;",
        "        else if (load_slot == A - 1) begin",
        "          load_slot <= 0; load_row <= load_row + 1;",
        "          if (load_row + 1 == cfg_rows) rows_phase <= 1;",
        "        end else load_slot <= load_slot + 1;",
        "      end",
        "    end",
        "",
        "  // the analog side: column values from the wordlines driven in this cycle",
    ]
    for i in range(A):
        column = f"adc__{i}__column"
        lines += [
            f"  reg [31:0] y_{i};",
            f"  integer r_{i};",
            "  always @(*) begin",
            f"    y_{i} = 0;",
            f"    for (r_{i} = 0; r_{i} < R; r_{i} = r_{i} + 1)",
            f"      y_{i} = y_{i} + {{{32 - v}'d0, wordline[r_{i}*V +: V]}} * {{{32 - c}'d0, dcol[{column}][r_{i}*CB +: CB]}};",
            "  end",
            f"  wire [9:0] expect_{i} = expect_cfg[{column}];",
        ]
        if macro:
            P = p.conversion_cycles
            bits = f"{{{5 - p.bits_width}'d0, adc__{i}__bits}}" if p.bits_width < 5 else f"adc__{i}__bits"
            lines += [
                f"  wire [31:0] full_{i} = (32'd1 << adc__{i}__bits) - 32'd1;",
                f"  wire [31:0] shifted_{i} = y_{i} >> adc__{i}__shift;",
                f"  wire [31:0] code_{i} = shifted_{i} > full_{i} ? full_{i} : shifted_{i};",
                f"  reg [{P}:0] valid_pipe_{i};",
                f"  reg [{p.bmax - 1}:0] code_pipe_{i} [0:{P}];",
                f"  integer s_{i};",
                f"  initial valid_pipe_{i} = 0;",
                "  always @(posedge clk) begin",
                f"    valid_pipe_{i} <= rst ? {P + 1}'d0 : {{valid_pipe_{i}[{P - 1}:0], adc__{i}__start}};",
                f"    for (s_{i} = {P}; s_{i} > 0; s_{i} = s_{i} - 1) code_pipe_{i}[s_{i}] <= code_pipe_{i}[s_{i} - 1];",
                f"    code_pipe_{i}[0] <= code_{i}[{p.bmax - 1}:0];",
                "  end",
                f"  wire counted_{i} = adc__{i}__start && !rst;",
                f"  wire wrong_{i} = counted_{i} && (expect_{i}[4:0] == 5'd0 || {bits} != expect_{i}[4:0]"
                f" || adc__{i}__shift != expect_{i}[9:5]);",
                f"  wire model_valid_{i} = valid_pipe_{i}[latency - 1];",
                f"  wire [{p.bmax - 1}:0] model_code_{i} = code_pipe_{i}[latency - 1];",
            ]
        else:
            lines += [
                f"  wire [31:0] first_trial_{i} = 32'd1 << (expect_{i}[4:0] - 5'd1);",
                f"  wire [31:0] trial_{i} = {{{32 - p.bmax}'d0, adc__{i}__trial}};",
                f"  wire counted_{i} = adc__{i}__step && !rst && trial_{i} == first_trial_{i};",
                f"  wire wrong_{i} = adc__{i}__step && !rst && (expect_{i}[4:0] == 5'd0"
                f" || adc__{i}__shift != expect_{i}[9:5]);",
                f"  wire model_cmp_{i} = adc__{i}__step && y_{i} >= {{{32 - p.value_width - 1}'d0, adc__{i}__ref}};",
            ]
    counted = " + ".join(f"{{31'd0, counted_{i}}}" for i in range(A))
    wrong = " || ".join(f"wrong_{i}" for i in range(A))
    lines += [
        "  // checks: every conversion of a converted column with its b and k; every APB write accepted",
        "  always @(posedge clk)",
        "    if (reload) begin",
        "      conversions <= 0; protocol_error <= 0;",
        "    end else begin",
        f"      conversions <= conversions + {counted};",
        f"      if ({wrong} || refused) protocol_error <= 1;",
        "    end",
    ]
    connections = []
    for name in ports.ports:
        if name in model_inputs:
            kind, index = name.rsplit("__", 1)[1], name.split("__")[1]
            connections.append(f".{name}(model_mode ? model_{kind}_{index} : {name})")
        else:
            connections.append(f".{name}({name})")
    connections += [".clk(clk)", ".rst(rst)"]
    lines += ["", f"  {module} dut (", "    " + ",\n    ".join(connections), "  );", "endmodule", ""]
    return "\n".join(lines)
