"""Yosys synthesis of periphery RTL: baselines per Yosys version with tolerance, inferred memories
priced as macros and as flip-flops, logic depth, caching, errors."""

import json
import re
from pathlib import Path

import pytest

from codesign.cli import main
from codesign.errors import CodesignError, ToolNotFound
from codesign.synth import (MACRO_UM2_PER_BIT, baseline_path, compare_to_baseline, liberty_path, parse_ltp,
                            parse_memories, periphery, synthesize)
from codesign.tools import yosys

BASELINES = Path(__file__).parent / "baselines"


def table_verilog(name: str, depth: int, width: int, read: str = "sync") -> str:
    """A ``lib.memory.Memory`` of ``depth`` × ``width`` bits with one write port and one read port
    (``read`` = "sync": registered, "comb": asynchronous), whose read data a 16-bit register sums."""
    from amaranth import Module
    from amaranth.back import verilog
    from amaranth.lib import memory, wiring
    from amaranth.lib.wiring import In, Out

    class Table(wiring.Component):
        def __init__(self):
            super().__init__({"w_addr": In(range(depth)), "w_data": In(width), "w_en": In(1),
                              "r_addr": In(range(depth)), "total": Out(16)})

        def elaborate(self, platform):
            m = Module()
            m.submodules.mem = mem = memory.Memory(shape=width, depth=depth, init=[])
            write, read_port = mem.write_port(), mem.read_port(domain=read)
            m.d.comb += [write.addr.eq(self.w_addr), write.data.eq(self.w_data), write.en.eq(self.w_en),
                         read_port.addr.eq(self.r_addr)]
            m.d.sync += self.total.eq(self.total + read_port.data)
            return m

    return verilog.convert(Table(), name=name, emit_src=False, strip_internal_attrs=True)


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    """Memories of 64×12 and 128×12 bits (registered read), 64×12 read asynchronously."""
    folder = tmp_path_factory.mktemp("tables")
    paths = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AMARANTH_USE_YOSYS", "builtin")
        for name, depth, read in (("table64", 64, "sync"), ("table128", 128, "sync"), ("table64_async", 64, "comb")):
            paths[name] = folder / f"{name}.v"
            paths[name].write_text(table_verilog(name, depth, 12, read))
    return paths


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CODESIGN_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "synth"


def test_shift_add_matches_baseline_of_this_yosys(shift_add):
    result = synthesize([shift_add], "shift_add")
    path = baseline_path(BASELINES, result.yosys, "shift_add")
    assert path.is_file(), (f"no baseline for Yosys {result.yosys}: measured {result.to_json()}; "
                            f"review it and store it as {path}")
    assert compare_to_baseline(result.to_json(), json.loads(path.read_text())) == []
    assert result.cells["sky130_fd_sc_hd__dfxtp_1"] > 0 and result.sequential_area_um2 < result.area_um2
    # No memory: both flows (memories kept as macros, mapped to flip-flops) see the same cells.
    assert result.memories == [] and result.memory_macro_um2 == 0
    assert result.logic_um2 + result.flops_um2 == pytest.approx(result.area_um2, abs=1e-6)
    assert result.flops_um2 == result.sequential_area_um2


def test_inferred_memory_is_found_and_priced_both_ways(tables):
    small = synthesize([tables["table64"]], "table64")
    (memory,) = small.memories
    assert (memory.words, memory.width, memory.bits) == (64, 12, 768)
    assert (memory.read_ports, memory.write_ports, memory.registered_read) == (1, 1, True)
    # OpenRAM sky130_sram_2kbyte_1rw_32x512_8: 483.86 µm × 326.1 µm for 512 × 32 bits.
    assert small.memory_macro_um2 == pytest.approx(768 * 483.86 * 326.1 / (512 * 32))
    assert small.memory_bitcells_um2 == pytest.approx(768 * 1.31 * 1.58)
    # As flip-flops: at least one sky130 dfxtp_1 (20.0192 µm²) per stored bit, on top of the rest.
    assert small.memory_flops_um2 > 768 * 20.0192
    assert small.area_um2 - small.memory_flops_um2 == pytest.approx(small.logic_um2 + small.flops_um2)
    assert small.flops_um2 == pytest.approx(16 * 20.0192)   # the 16-bit sum register only
    assert small.area_macro_um2 < small.area_um2


def test_a_larger_memory_prices_more(tables):
    small, large = (synthesize([tables[n]], n) for n in ("table64", "table128"))
    assert large.memory_bits == 2 * small.memory_bits
    assert large.memory_macro_um2 == pytest.approx(2 * small.memory_macro_um2)
    assert large.memory_flops_um2 > 1.8 * small.memory_flops_um2
    # The logic outside the memory hardly changes (one more address bit).
    assert large.logic_um2 + large.flops_um2 == pytest.approx(small.logic_um2 + small.flops_um2, rel=0.1)


def test_an_asynchronous_read_is_flagged(tables):
    (memory,) = synthesize([tables["table64_async"]], "table64_async").memories
    assert memory.registered_read is False and memory.bits == 768


def test_config_memory_of_a_generated_tile_is_inferred(tmp_path):
    """Today's generated periphery (a 32×32 tile of the bundled model): its config words are a $mem_v2."""
    assert main(["generate", "--rows", "32", "--cols", "32", "--no-report", "--out", str(tmp_path / "g")]) == 0
    (path,) = (tmp_path / "g" / "rtl").glob("*.v")
    result = synthesize([path], path.stem)
    assert result.memories and result.memory_bits >= 32
    assert result.memory_macro_um2 == pytest.approx(result.memory_bits * MACRO_UM2_PER_BIT)
    assert result.memory_flops_um2 > result.memory_macro_um2 > result.memory_bitcells_um2
    assert result.ltp > 0 and result.area_macro_um2 < result.area_um2


def test_ltp_and_memory_parsing_fail_loudly():
    assert parse_ltp("Longest topological path in top (length=17):\n    0: a") == 17
    with pytest.raises(CodesignError, match="ltp printed no longest path"):
        parse_ltp("nothing here")
    netlist = {"modules": {"m": {"cells": {
        "$auto$1": {"type": "$mem_v2", "parameters": {"MEMID": "\\words", "SIZE": 8, "WIDTH": 3, "RD_PORTS": 2,
                                                      "WR_PORTS": 1, "RD_CLK_ENABLE": 2}},
        "$auto$2": {"type": "$_AND_", "parameters": {}}}}}}
    (memory,) = parse_memories(netlist)
    assert (memory.name, memory.bits, memory.read_ports, memory.registered_read) == ("words", 24, 2, False)


def test_baseline_comparison_catches_a_change(shift_add):
    measured = synthesize([shift_add], "shift_add").to_json()
    baseline = json.loads(baseline_path(BASELINES, measured["yosys"], "shift_add").read_text())
    assert compare_to_baseline(measured, baseline) == []
    grown = dict(measured, area_um2=measured["area_um2"] * (1 + 2 * baseline["tolerance"]["area_um2"]))
    assert [line.split(":")[0] for line in compare_to_baseline(grown, baseline)] == ["area_um2"]
    fewer = dict(measured, transistors=int(measured["transistors"] * 0.9))
    assert [line.split(":")[0] for line in compare_to_baseline(fewer, baseline)] == ["transistors"]
    deeper = dict(measured, ltp=measured["ltp"] + 5)
    assert [line.split(":")[0] for line in compare_to_baseline(deeper, baseline)] == ["ltp"]
    assert compare_to_baseline({}, baseline)


def test_each_module_is_synthesized_once(shift_add, cache):
    first = synthesize([shift_add], "shift_add")
    second = synthesize([shift_add], "shift_add")
    assert not first.cached and second.cached
    assert second.to_json() == first.to_json()
    assert len(list(cache.glob("*.json"))) == 1


def test_liberty_areas_are_sky130_lef_sizes():
    # templates/sky130_hd_area.lib: LEF SIZE widths × the 2.72 µm row height of sky130_fd_sc_hd.
    widths = {"inv_1": 1.38, "buf_1": 1.38, "nand2_1": 1.38, "nor2_1": 1.38, "and2_1": 2.30, "or2_1": 2.30,
              "a21oi_1": 1.84, "o21ai_0": 1.84, "xor2_1": 3.22, "xnor2_1": 3.22, "mux2_1": 4.14, "dfxtp_1": 7.36}
    text = liberty_path().read_text()
    areas = {name: float(a) for name, a in re.findall(r"cell \(sky130_fd_sc_hd__(\w+)\) \{\s*area : ([\d.]+);", text)}
    assert areas == pytest.approx({name: w * 2.72 for name, w in widths.items()})
    assert "Apache" in text and "skywater-pdk" in text


def test_yosys_error_is_reported(tmp_path):
    bad = tmp_path / "bad.v"
    bad.write_text("module bad(input a, output b);\n  assign b = a +;\nendmodule\n")
    with pytest.raises(CodesignError, match="Yosys could not synthesize module 'bad': .*ERROR"):
        synthesize([bad], "bad")


def test_missing_yosys_is_not_a_zero(shift_add, monkeypatch):
    monkeypatch.setenv("CODESIGN_YOSYS", "/nonexistent/yosys")
    with pytest.raises(ToolNotFound):
        yosys()
    status = periphery(shift_add.parent)
    assert status["measured"] is False and status["modules"] == []
    assert "Yosys not available" in status["reason"] and "pip install codesign[area]" in status["how_to_enable"]
