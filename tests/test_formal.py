# amaranth: UnusedElaboratable=no
"""codesign.formal: every property holds on the generated modules and fails on one injected fault.

The tile is small (4x8, two input cycles, two result beats) and the depth short, so the whole file
stays within a few minutes; ``make formal`` proves the bundled model's modules at full depth.
"""

import functools
import json
import re
from pathlib import Path

import pytest

from codesign import formal
from codesign.hw.periphery import PeripheryParams
from codesign.mapping import Geometry
from codesign.rtl import ModuleGroup, module_name, verilog_module

#: Bounded depth of the tile checks here (one input cycle and a whole result vector fit in it:
#: test_generated_module_holds_every_property).
DEPTH = 14
#: Bmax and Wy of the small tile and its SAR controller (shifts k up to 31 reach far past Wy).
BMAX, WIDTH = 3, 4
SETTINGS = formal.Settings(depth=DEPTH)


@functools.cache
def small_tile(interface: str) -> tuple[str, str, dict]:
    """(name, Verilog, port description) of the generated module of a 4x8 tile (L = 2 results,
    T = 2 input cycles, one ADC lane, Bmax 3, Wy 4, 16-bit streams: one result per beat)."""
    geometry = Geometry(rows=4, cols=8, cell_bits=2, dac_bits=1, weight_bits=4, input_bits=2, adcs=1)
    params = PeripheryParams(geometry, BMAX, 1, interface, 1, 16)
    assert params.y_beats == 2 and params.cycles == 2 and params.value_width == WIDTH
    name = module_name(params)
    verilog, description = verilog_module(ModuleGroup(name, params))
    return name, verilog, description


@pytest.fixture(params=["sar", "macro"])
def tile(request) -> tuple[str, str, dict]:
    return small_tile(request.param)


def force_output(verilog: str, port: str, expression: str) -> str:
    """A mutant that drives output ``port`` with ``expression``, in which ``ORIGINAL`` names the
    value the module computed for it."""
    declaration = re.search(rf"^  output (\[\d+:\d+\] )?{port};$", verilog, re.M)
    assert declaration, f"no output {port}"
    body = verilog[declaration.end():]
    internal = f"{port}_original"
    body = re.sub(rf"\b{port}\b", internal, body)
    width = declaration[1] or ""
    body = body.replace("endmodule", f"  assign {port} = {expression.replace('ORIGINAL', internal)};\nendmodule", 1)
    return verilog[:declaration.end()] + f"\n  wire {width}{internal};" + body


def replace_once(text: str, pattern: str, replacement: str) -> str:
    """``text`` with the one match of regular expression ``pattern`` replaced (fails otherwise)."""
    mutated, count = re.subn(pattern, replacement, text, flags=re.M)
    assert count >= 1, f"the mutation site {pattern!r} is gone from the generated Verilog"
    return mutated


def prove(tile, prop: str, tmp_path: Path, verilog: str | None = None, settings=SETTINGS) -> formal.Result:
    name, original, description = tile
    source = tmp_path / f"{name}.v"
    source.write_text(original if verilog is None else verilog)
    (result,) = formal.prove_tile(name, source, description, [prop], tmp_path, settings)
    return result


#: Tile property → (fault, mutant of the generated Verilog).
TILE_MUTANTS = {
    "y_stable": ("m_axis_y.tvalid also waits for s_axis_acc.tvalid (withdrawn before the transfer)",
                 lambda v: force_output(v, "m_axis_y__tvalid", "ORIGINAL & s_axis_acc__tvalid")),
    "tlast": ("m_axis_y.tlast stuck at 1", lambda v: force_output(v, "m_axis_y__tlast", "1'h1")),
    "busy": ("busy tied to 0", lambda v: replace_once(v, r"^  assign busy = \| pending;$", "  assign busy = 1'h0;")),
    "config_busy": ("the configuration bus ignores busy",
                    lambda v: replace_once(v, r"^(  assign _\d+_ = _\d+_ [|&]) busy;$", r"\1 1'h0;")),
    "input_cycle": ("input_cycle stuck at 0", lambda v: force_output(v, "input_cycle", "1'h0")),
}


@pytest.mark.parametrize("prop", TILE_MUTANTS)
def test_tile_property_fails_on_its_mutant(prop, tmp_path):
    fault, mutate = TILE_MUTANTS[prop]
    tile = small_tile("sar")
    result = prove(tile, prop, tmp_path, mutate(tile[1]))
    assert not result.passed, f"{prop} holds although {fault}"


def test_input_cycle_needs_the_depth(tmp_path):
    """Too short a depth for one input cycle is a failure that says so."""
    result = prove(small_tile("macro"), "input_cycle", tmp_path, settings=formal.Settings(depth=6))
    assert not result.passed and "raise --depth" in result.detail


#: SAR property → (fault, mutant of the controller's Verilog).
SAR_MUTANTS = {
    "sar_code": ("the SAR ignores the shift k",
                 lambda v: replace_once(v, r"^(  assign position = [^;]*?) \+ [^;]*adc__shift \};$", r"\1;")),
    "sar_done": ("res.valid is a level (never cleared)",
                 lambda v: replace_once(v, r"^(  assign _\d+_ = )_\d+_( \? 1'h0 : res__valid;)$", r"\g<1>1'h0\2")),
}


@pytest.fixture(scope="module")
def sar_source() -> str:
    return formal.sar_verilog(BMAX, WIDTH)


@pytest.mark.parametrize("prop", SAR_MUTANTS)
def test_sar_property_fails_on_its_mutant(sar_source, prop, tmp_path):
    fault, mutate = SAR_MUTANTS[prop]
    (result,) = formal.prove_sar("sar", BMAX, WIDTH, [prop], tmp_path, SETTINGS, mutate(sar_source))
    assert not result.passed, f"{prop} holds although {fault}"


def test_every_property_has_a_mutant():
    checked = {prop for prop, (_, mode) in formal.PROPERTIES.items() if mode != "reach"}
    assert checked == set(TILE_MUTANTS) | set(SAR_MUTANTS)


def test_result_vector_informs():
    """An unreached result vector is reported, not counted as a failing property."""
    unreached = formal.Result("m", "result_vector", "reach", 3, "boolector", False, 0.1, "no result vector")
    assert formal.failures([unreached]) == [] and "| not reached |" in formal.results_table([unreached])


def test_not_a_generate_folder(tmp_path, capsys):
    assert formal.main([str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no rtl/manifest.json" in err and "codesign generate" in err


def test_keep_must_be_empty(tmp_path, capsys):
    (tmp_path / "old").write_text("")
    assert formal.main([str(tmp_path), "--keep", str(tmp_path)]) == 1
    assert "is not empty" in capsys.readouterr().err


def test_bad_depth(capsys):
    with pytest.raises(SystemExit) as exit_:
        formal.main(["x", "--depth", "zero"])
    assert exit_.value.code == 2 and "--depth must be a whole number" in capsys.readouterr().err


def test_generated_module_holds_every_property(tile, tmp_path):
    """Every property of a one-module folder holding the fixture's module (the SAR ones for
    ``sar``: the controller of its Bmax 3 and Wy 4); one input cycle fits in the depth."""
    name, verilog, description = tile
    rtl = tmp_path / "out" / "rtl"
    rtl.mkdir(parents=True)
    (rtl / f"{name}.v").write_text(verilog)
    (rtl / f"{name}.json").write_text(json.dumps(description))
    interface = description["interface"]["annotations"][formal.ANNOTATION]["interface"]
    (rtl / "manifest.json").write_text(json.dumps({"modules": [
        {"name": name, "verilog": f"{name}.v", "ports": f"{name}.json", "interface": interface}]}))
    results = formal.prove_folder(tmp_path / "out", tmp_path / "work", SETTINGS)
    expected = {prop for prop, (scope, _) in formal.PROPERTIES.items() if scope == "tile" or interface == "sar"}
    assert {r.prop for r in results} == expected and all(r.passed for r in results)
    # one input cycle, and a whole result vector (the stream properties are not vacuous), fit in the depth
    assert all(0 < r.depth <= DEPTH for r in results if r.mode != "prove")
    assert formal.results_table(results).count("| pass |") == len(expected) - 1
