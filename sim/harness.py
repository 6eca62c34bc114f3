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
* **checks** (:data:`RULES`, one bit of ``protocol_error`` each; ``protocol_cycle`` is the cycle,
  counted from ``reload``, of the first violation): every conversion (a ``start``, or the first
  ``step`` of a SAR conversion) must be of a converted column with the ``b`` and ``k`` of
  ``expect_path`` (one hex line per physical column, ``b | k << 5``; ``b = 0``: the column is
  skipped) and in the input cycle ``input_cycle`` its place in the conversions says; each SAR step's
  ``trial``, ``shift`` and ``ref`` follow from the command and the comparator answers so far, for
  ``b`` steps on one column; ``m_axis_y`` holds ``tdata``, ``tlast`` and ``tvalid`` while ``tready``
  is low, and ``tlast`` marks exactly the last beat of a vector; ``busy`` is 1 exactly while a
  vector is in the tile (counted from the stream transfers); every APB write of the configuration
  is accepted, and once per segment, while the first vector is in the tile, the harness writes
  slot 0 of row 0 (with its own value) and ``ROWS`` (with ``cfg_rows``), which must both be refused
  (``pslverr``); the configuration has ``max(1, ⌈n/A⌉)`` rows for the ``n`` converted columns.
  ``conversions`` counts the conversions.
* **waveforms** (Icarus): the plusarg ``+codesign_waves=FILE`` dumps the whole harness (FST with
  ``vvp -fst``); Verilator writes VCD through a ``--trace`` build instead.

Every module port name, width and parameter comes from its ``<module>.json`` (:class:`PortMap`).
"""

from __future__ import annotations

from codesign.hw.periphery import PeripheryParams

from .ports import PortMap

#: Longest file path the path ports carry (bytes).
PATH_BYTES = 1024

#: What each bit of the harness's ``protocol_error`` means, least significant first.
RULES = (
    "a conversion of a skipped column or with another b or k than the configuration",
    "an APB write of the configuration was refused",
    "m_axis_y changed tdata or tlast, or dropped tvalid, while tready was low",
    "m_axis_y.tlast not on exactly the last beat of a vector",
    "busy differs from whether a vector is in the tile",
    "a configuration write was accepted while busy",
    "a SAR step's trial, shift or ref does not follow from its command and comparisons "
    "(or the conversion stopped or changed column before its b steps)",
    "a conversion in another input cycle than input_cycle says",
    "the configuration has other than max(1, ceil(n / A)) rows for its n converted columns "
    "(a skipped column takes a slot)",
)

#: Ports of the module the harness drives itself (the APB master).
APB_INPUTS = ("apb__psel", "apb__penable", "apb__pwrite", "apb__paddr", "apb__pwdata")


def harness_name(module: str) -> str:
    return f"{module}_harness"


def harness_verilog(module: str, ports: PortMap) -> str:
    """Verilog of ``<module>_harness`` for the tile module ``module`` with ports ``ports``."""
    p = ports.params
    g = p.geometry
    A, R, C, v, c, T = p.adcs, p.rows, p.cols, g.dac_bits, g.cell_bits, p.cycles
    macro = p.macro
    slot_bits, row_bits = p.slot_index_width, p.row_index_width
    memory = 1 << (slot_bits + row_bits)
    aw = p.apb_addr_width
    top = harness_name(module)
    model_inputs = {f"adc__{i}__{name}" for i in range(A) for name in (("valid", "code") if macro else ("cmp",))}
    passed = [port for name, port in ports.ports.items() if name not in APB_INPUTS and not name.startswith("apb__")]

    def declaration(port: dict) -> str:
        direction = "input " if port["dir"] == "in" else "output"
        return f"  {direction} wire [{port['width'] - 1}:0] {port['name']},"

    latency_width = p.conversion_cycles.bit_length() + 1
    lines = [
        f"// {top}: simulation top of {module} for the codesign cocotb testbench (codesign.sim.harness):",
        "// configuration through the APB port, the analog side computed from the driven wordlines, protocol checks.",
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
        f"  output reg  [{len(RULES) - 1}:0] protocol_error,",
        "  output reg  [31:0] protocol_cycle,",
        "  output reg  [31:0] conversions",
        ");",
        f"  localparam integer R = {R}, C = {C}, V = {v}, CB = {c}, A = {A}, DEPTH = {p.depth}, SW = {p.slot_width};",
        f"  reg [{p.row_width - 1}:0] rows_mem [0:DEPTH-1];",
        f"  reg [{R * c - 1}:0] dcol [0:C-1];",
        "  reg [9:0] expect_cfg [0:C-1];",
        "  reg [31:0] converted;         // columns with b > 0: conversions per input cycle",
        "  reg [31:0] cycle;             // clock cycles since reload",
        f"  reg [8*{PATH_BYTES}-1:0] waves_file;",
        "  integer j;",
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
        "      converted = 0;",
        "      for (j = 0; j < C; j = j + 1) converted = converted + {31'd0, expect_cfg[j][4:0] != 5'd0};",
        "      cycle <= 0;",
        "    end else cycle <= cycle + 1;",
        "",
        "  // the streams as the module sees them: vectors in (first s_axis_x beat) and out (last m_axis_y beat)",
        "  reg [31:0] x_beat, y_beat, in_tile;",
        "  wire x_moves = !rst && s_axis_x__tvalid && s_axis_x__tready;",
        "  wire y_moves = !rst && m_axis_y__tvalid && m_axis_y__tready;",
        f"  wire vector_in = x_moves && x_beat == 0, vector_out = y_moves && y_beat == {p.y_beats - 1};",
        "  reg y_waits, y_last_held;",
        f"  reg [{p.stream_width - 1}:0] y_held;",
        "  always @(posedge clk)",
        "    if (rst) begin",
        "      x_beat <= 0; y_beat <= 0; in_tile <= 0; y_waits <= 0;",
        "    end else begin",
        f"      if (x_moves) x_beat <= x_beat == {T * p.x_beats - 1} ? 0 : x_beat + 1;",
        f"      if (y_moves) y_beat <= y_beat == {p.y_beats - 1} ? 0 : y_beat + 1;",
        "      in_tile <= in_tile + {31'd0, vector_in} - {31'd0, vector_out};",
        "      y_waits <= m_axis_y__tvalid && !m_axis_y__tready;",
        "      y_held <= m_axis_y__tdata; y_last_held <= m_axis_y__tlast;",
        "    end",
        "  wire y_unstable = y_waits && (!m_axis_y__tvalid || m_axis_y__tdata != y_held || m_axis_y__tlast != y_last_held);",
        "  wire y_misframed = y_moves && m_axis_y__tlast != vector_out;",
        "  wire busy_wrong = !rst && busy != (in_tile != 0);",
        "",
        "  // configuration: every slot, then ROWS, through APB (a setup and an access cycle each); then,",
        "  // while the first vector is in the tile, slot 0 of row 0 and ROWS again, which must be refused",
        "  reg [31:0] load_row, load_slot;",
        "  reg access, rows_phase;",
        "  reg [2:0] probe;               // 0: waiting for a vector; 1, 2: slot write; 3, 4: ROWS write; 5: done",
        f"  wire [31:0] slot_word = (32'd{memory} | (load_row << {slot_bits}) | load_slot) << 2;",
        f"  wire [{p.row_width - 1}:0] load_data = rows_mem[load_row[{max(row_bits, 1) - 1}:0]] >> (SW * load_slot);",
        f"  wire [{p.row_width - 1}:0] first_row = rows_mem[0];",
        "  wire probing = probe != 0 && probe != 5;",
        "  wire probe_rows = probe == 3 || probe == 4;",
        "  wire apb__psel = !rst && (!loaded || probing);",
        "  wire apb__penable = loaded ? probe == 2 || probe == 4 : access;",
        "  wire apb__pwrite = 1'b1;",
        f"  wire [{aw - 1}:0] apb__paddr = (loaded ? probe_rows : rows_phase) ? {aw}'d4 : "
        f"loaded ? {aw}'d{(memory << 2) % (1 << aw)} : slot_word[{aw - 1}:0];",
        f"  wire [31:0] apb__pwdata = (loaded ? probe_rows : rows_phase) ? cfg_rows : "
        f"{{{32 - p.slot_width}'d0, loaded ? first_row[SW-1:0] : load_data[SW-1:0]}};",
        "  wire [31:0] apb__prdata;",
        "  wire apb__pready, apb__pslverr;",
        "  wire refused = !rst && !loaded && access && (apb__pslverr || !apb__pready);",
        "  wire accepted_busy = !rst && apb__psel && apb__penable && loaded && in_tile != 0 && !apb__pslverr;",
        "  always @(posedge clk)",
        "    if (rst) begin",
        "      load_row <= 0; load_slot <= 0; access <= 0; rows_phase <= 0; loaded <= 0; probe <= 0;",
        "    end else if (!loaded) begin",
        "      access <= !access;",
        "      if (access) begin",
        "        if (rows_phase) loaded <= 1;",
        "        else if (load_slot == A - 1) begin",
        "          load_slot <= 0; load_row <= load_row + 1;",
        "          if (load_row + 1 == cfg_rows) rows_phase <= 1;",
        "        end else load_slot <= load_slot + 1;",
        "      end",
        "    end else if (probing || (probe == 0 && in_tile != 0)) probe <= probe + 1;",
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
        lines += macro_lane(p, i) if macro else sar_lane(p, i)
    counted = " + ".join(f"{{31'd0, counted_{i}}}" for i in range(A))
    started = " || ".join(f"counted_{i}" for i in range(A))
    wrong = " || ".join(f"wrong_{i}" for i in range(A))
    sar_wrong = " || ".join(f"sar_wrong_{i}" for i in range(A)) if not macro else "1'b0"
    t_width = ports.width("input_cycle")
    violations = ["wrong", "refused", "y_unstable", "y_misframed", "busy_wrong", "accepted_busy", "sar_wrong",
                  "cycle_wrong", "rows_wrong"]
    assert len(violations) == len(RULES)
    lines += [
        "  // checks: every conversion of a converted column with its b and k, in its input cycle",
        f"  wire wrong = {wrong};",
        f"  wire sar_wrong = {sar_wrong};",
        f"  wire [31:0] plane = converted == 0 ? 0 : (conversions / converted) % {T};",
        f"  wire cycle_wrong = ({started}) && {{{32 - t_width}'d0, input_cycle}} != plane;",
        f"  wire rows_wrong = !rst && cfg_rows != (converted == 0 ? 1 : (converted + {A - 1}) / {A});",
        f"  wire [{len(RULES) - 1}:0] violated = {{{', '.join(reversed(violations))}}};",
        "  always @(posedge clk)",
        "    if (reload) begin",
        "      conversions <= 0; protocol_error <= 0; protocol_cycle <= 0;",
        "    end else begin",
        f"      conversions <= conversions + {counted};",
        "      protocol_error <= protocol_error | violated;",
        "      if (protocol_error == 0 && violated != 0) protocol_cycle <= cycle;",
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


def macro_lane(p: PeripheryParams, i: int) -> list[str]:
    """Lane ``i`` of the ``macro`` interface: the macro's answer pipeline and the start check."""
    P = p.conversion_cycles
    bits = f"{{{5 - p.bits_width}'d0, adc__{i}__bits}}" if p.bits_width < 5 else f"adc__{i}__bits"
    return [
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


def sar_lane(p: PeripheryParams, i: int) -> list[str]:
    """Lane ``i`` of the ``sar`` interface: the comparator and the SAR step checks.

    The harness follows each conversion from its first step (a step with none in progress): ``b``
    and ``k`` from the column's configuration, then step ``n = b−1 … 0`` must present
    ``trial = code | 2^n`` (``code``: the bits the comparator kept so far),
    ``ref = min(trial << k, 2^Wy)`` and ``shift = k``, on the same column, in consecutive cycles.
    """
    bmax, wy = p.bmax, p.value_width
    ref_width = wy + 1
    return [
        f"  wire model_cmp_{i} = adc__{i}__step && y_{i} >= {{{32 - ref_width}'d0, adc__{i}__ref}};",
        f"  wire cmp_{i} = model_mode ? model_cmp_{i} : adc__{i}__cmp;",
        f"  reg [4:0] left_{i}, k_{i};            // steps left in the conversion; its k",
        f"  reg [{bmax - 1}:0] kept_{i};",
        f"  reg [{p.column_width - 1}:0] col_{i};",
        f"  wire first_{i} = adc__{i}__step && left_{i} == 0;",
        f"  wire [4:0] step_k_{i} = first_{i} ? expect_{i}[9:5] : k_{i};",
        f"  wire [4:0] n_{i} = (first_{i} ? expect_{i}[4:0] : left_{i}) - 5'd1;",
        f"  wire [{bmax - 1}:0] want_trial_{i} = (first_{i} ? {bmax}'d0 : kept_{i}) | ({bmax}'d1 << n_{i});",
        f"  wire [63:0] scaled_{i} = {{{64 - bmax}'d0, want_trial_{i}}} << step_k_{i};",
        f"  wire in_range_{i} = scaled_{i} < (64'd1 << {wy});",
        f"  wire [{ref_width - 1}:0] want_ref_{i} = in_range_{i} ? scaled_{i}[{ref_width - 1}:0] : {ref_width}'d{1 << wy};",
        f"  wire counted_{i} = first_{i} && !rst;",
        f"  wire wrong_{i} = adc__{i}__step && !rst && (expect_{i}[4:0] == 5'd0"
        f" || adc__{i}__shift != expect_{i}[9:5]);",
        f"  wire sar_wrong_{i} = !rst && (adc__{i}__step ? adc__{i}__trial != want_trial_{i} || "
        f"adc__{i}__ref != want_ref_{i} || adc__{i}__shift != step_k_{i} || (!first_{i} && adc__{i}__column != col_{i})"
        f" : left_{i} != 0);",
        "  always @(posedge clk)",
        f"    if (rst) left_{i} <= 0;",
        f"    else if (adc__{i}__step) begin",
        f"      left_{i} <= n_{i}; k_{i} <= step_k_{i}; col_{i} <= adc__{i}__column;",
        f"      kept_{i} <= cmp_{i} && in_range_{i} ? want_trial_{i} : (first_{i} ? {bmax}'d0 : kept_{i});",
        "    end",
    ]
