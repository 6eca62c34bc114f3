"""The report's periphery section on a generated folder (32×32 tiles of the bundled model): area
breakdown with memories as macros and as flip-flops, scaled to the report's node, FPGA timing, the
design total with the periphery, and per-module progress lines."""

import json
import shutil

import pytest

from codesign.cli import main
from codesign.synth import AREA_KEYS, periphery

# Stillmaker & Baas area factor from 130 nm to 32 nm (their table, as hwcomponents encodes it).
AREA_130_TO_32 = 0.072


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """``codesign generate --rows 32 --cols 32`` on the bundled model, then ``codesign report`` (32 nm)."""
    out = tmp_path_factory.mktemp("gen") / "out"
    assert main(["generate", "--rows", "32", "--cols", "32", "--no-report", "--out", str(out)]) == 0
    assert main(["report", str(out)]) == 0
    return out


def summary_of(folder):
    return json.loads((folder / "report" / "summary.json").read_text())


def test_every_module_has_area_breakdown_timing_and_depth(generated):
    status = summary_of(generated)["periphery"]
    assert status["measured"] and status["fpga"]["measured"] and status["fpga"]["nextpnr"]
    for module in status["modules"]:
        assert module["memories"] and module["memory_bits"] > 0
        assert module["logic_um2"] > 0 and module["flops_um2"] > 0 and module["ltp"] > 0
        assert module["area_macro_um2"] == pytest.approx(module["logic_um2"] + module["flops_um2"]
                                                         + module["memory_macro_um2"])
        assert module["area_um2"] == pytest.approx(module["logic_um2"] + module["flops_um2"]
                                                   + module["memory_flops_um2"])
        assert module["fpga"]["fmax_mhz"] > 0 and module["fpga"]["part"].startswith("LFE5U-")
        assert module["fpga"]["cells"]["TRELLIS_FF"] > 0
        for key in AREA_KEYS:
            assert module["scaled"][key] == pytest.approx(module[key] * AREA_130_TO_32)


def test_totals_count_every_tile_in_both_nodes(generated):
    summary = summary_of(generated)
    status = summary["periphery"]
    tiles = summary["config"]["tiles"]
    totals = status["totals"]
    assert totals["tiles"] == tiles == sum(m["tiles"] for m in status["modules"])
    for key in AREA_KEYS:
        assert totals["sky130"][key] == pytest.approx(sum(m[key] * m["tiles"] for m in status["modules"]))
        assert totals["scaled"][key] == pytest.approx(totals["sky130"][key] * AREA_130_TO_32)
    assert status["total_area_um2"] == pytest.approx(totals["sky130"]["area_um2"])
    assert status["scaling"]["from_nm"] == 130 and status["scaling"]["to_nm"] == 32


def test_design_total_swaps_isaac_digital_rows_for_the_periphery(generated):
    summary = summary_of(generated)
    total = summary["periphery"]["design_total"]
    per_column = summary["models"][summary["default_model"]]["totals"]["per_column"]["area_by_component_um2"]
    assert set(total["analog_by_component_um2"]) == set(per_column) - {"shift_add", "registers"}
    assert total["analog_um2"] == pytest.approx(sum(per_column[k] for k in total["analog_by_component_um2"]))
    assert total["isaac_total_um2"] == pytest.approx(sum(per_column.values()))
    assert total["total_um2"] == pytest.approx(total["analog_um2"]
                                               + summary["periphery"]["totals"]["scaled"]["area_macro_um2"])
    assert total["total_flops_um2"] > total["total_um2"]


def test_report_shows_the_periphery_tables(generated):
    md = (generated / "report" / "report.md").read_text()
    for text in ("memories as SRAM macros", "memories as flip-flops", "scaled to 32 nm", "ltp (gates)", " MHz",
                 "LFE5U-25F", "total area with the periphery", "sky130_sram_2kbyte_1rw_32x512_8",
                 "sram_sp_cell_opt1", "docs/periphery-cost.md"):
        assert text in md, text
    assert "MHz" in (generated / "report" / "report.html").read_text()


def test_progress_is_one_line_per_module_off_a_terminal(generated, capsys):
    periphery(generated / "rtl", 32)
    err = capsys.readouterr().err.splitlines()
    (module,) = [p.stem for p in (generated / "rtl").glob("*.v")]
    assert err[0] == f"periphery 1/1: {module}: Yosys area, ECP5 place and route …"
    assert err[1].startswith(f"periphery 1/1: {module}: ") and " MHz on LFE5U-25F" in err[1]
    assert len(err) == 2 and "\r" not in "".join(err)


def test_no_fpga_says_so(generated, tmp_path):
    folder = tmp_path / "out"
    shutil.copytree(generated, folder)
    assert main(["report", str(folder), "--no-fpga", "--tech-nm", "130"]) == 0
    status = summary_of(folder)["periphery"]
    assert status["fpga"]["measured"] is False and all(m["fpga"] is None for m in status["modules"])
    assert "--no-fpga" in status["fpga"]["reason"] and "codesign report DIR" in status["fpga"]["how_to_enable"]
    assert status["totals"]["scaled"] == pytest.approx(status["totals"]["sky130"])   # 130 nm: no scaling
    assert "FPGA timing not measured: FPGA place and route not run" in (folder / "report" / "report.md").read_text()
