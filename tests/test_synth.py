"""Yosys synthesis of periphery RTL: baselines per Yosys version with tolerance, caching, errors."""

import json
import re
from pathlib import Path

import pytest

from codesign.errors import CodesignError, ToolNotFound
from codesign.synth import baseline_path, compare_to_baseline, liberty_path, periphery, synthesize
from codesign.tools import yosys

BASELINES = Path(__file__).parent / "baselines"


def shift_add_verilog() -> str:
    """A small shift-add: accumulates code << shift until ``last`` (Amaranth 0.5)."""
    from amaranth import Module, Signal, signed
    from amaranth.back import verilog
    from amaranth.lib import data, stream, wiring
    from amaranth.lib.wiring import In, Out

    class Sample(data.Struct):
        code: 8
        shift: range(8)
        last: 1

    class ShiftAdd(wiring.Component):
        i_stream: In(stream.Signature(Sample))
        o_stream: Out(stream.Signature(signed(20)))

        def elaborate(self, platform):
            m = Module()
            acc = Signal(signed(20))
            m.d.comb += self.i_stream.ready.eq(~self.o_stream.valid | self.o_stream.ready)
            with m.If(self.o_stream.valid & self.o_stream.ready):
                m.d.sync += self.o_stream.valid.eq(0)
            with m.If(self.i_stream.valid & self.i_stream.ready):
                total = acc + (self.i_stream.p.code << self.i_stream.p.shift)
                with m.If(self.i_stream.p.last):
                    m.d.sync += [self.o_stream.p.eq(total), self.o_stream.valid.eq(1), acc.eq(0)]
                with m.Else():
                    m.d.sync += acc.eq(total)
            return m

    return verilog.convert(ShiftAdd(), name="shift_add", emit_src=False, strip_internal_attrs=True)


@pytest.fixture(scope="module")
def shift_add(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AMARANTH_USE_YOSYS", "builtin")
        text = shift_add_verilog()
    path = tmp_path_factory.mktemp("rtl") / "shift_add.v"
    path.write_text(text)
    return path


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


def test_baseline_comparison_catches_a_change(shift_add):
    measured = synthesize([shift_add], "shift_add").to_json()
    baseline = json.loads(baseline_path(BASELINES, measured["yosys"], "shift_add").read_text())
    assert compare_to_baseline(measured, baseline) == []
    grown = dict(measured, area_um2=measured["area_um2"] * (1 + 2 * baseline["tolerance"]["area_um2"]))
    assert [line.split(":")[0] for line in compare_to_baseline(grown, baseline)] == ["area_um2"]
    fewer = dict(measured, transistors=int(measured["transistors"] * 0.9))
    assert [line.split(":")[0] for line in compare_to_baseline(fewer, baseline)] == ["transistors"]
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
