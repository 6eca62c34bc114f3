"""``codesign report``: the three files, traceable figures, and honest gaps (no Yosys, no sweep)."""

import json
import re
import shutil

import pytest

from codesign.cli import main
from codesign.cost import ADC_MODELS
from codesign.errors import CodesignError
from codesign.report import FILES, write_report

# A small hand-written periphery module (a registered 8-bit accumulator) standing in for rtl/.
ACCUMULATOR = """\
module acc8(input clk, input rst, input [7:0] x, input en, output reg [7:0] y);
  always @(posedge clk)
    if (rst) y <= 8'd0;
    else if (en) y <= y + x;
endmodule
"""


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """``codesign generate`` on the bundled model, with the crossbar-size sweep (writes report/)."""
    out = tmp_path_factory.mktemp("gen") / "out"
    assert main(["generate", "--search", "--out", str(out)]) == 0
    return out


@pytest.fixture
def folder(generated, tmp_path):
    """A private copy of the generated folder."""
    copy = tmp_path / "out"
    shutil.copytree(generated, copy)
    return copy


def load(folder):
    return json.loads((folder / "report" / "summary.json").read_text())


def test_generate_writes_the_three_files(generated):
    assert sorted(p.name for p in (generated / "report").iterdir()) == sorted(FILES)
    summary = load(generated)
    assert len(summary["models"]) >= 4 and set(summary["models"]) == set(ADC_MODELS)
    for model, data in summary["models"].items():
        assert summary["adc_models"][model]["source"]
        for design in ("uniform", "per_crossbar", "per_column"):
            assert data["totals"][design]["adc_energy_pj"] > 0
        uniform = data["totals"]["uniform"]["adc_energy_pj"]
        for design in ("per_crossbar", "per_column"):
            ratio = data["vs_uniform"][design]["adc_energy"]
            assert ratio == pytest.approx(uniform / data["totals"][design]["adc_energy_pj"])
            assert ratio > 1
    assert summary["band"]["per_column"]["vs_uniform"]["min"] <= summary["band"]["per_column"]["vs_uniform"]["max"]
    assert summary["sweep"]["best"]["objective"] <= min(p["objective"] for p in summary["sweep"]["global"])


def test_report_numbers_carry_their_sources(generated):
    summary = load(generated)
    md = (generated / "report" / "report.md").read_text()
    for model, table in summary["adc_models"].items():
        assert table["scaling"] and table["conditions"] and table["per_bits"]
        assert table["source"] in md
    for component in summary["components"].values():
        assert "ISAAC" in component["source"] and component["derivation"]
    assert "Stillmaker" in summary["technology_scaling"]["source"]


def test_html_is_self_contained(generated):
    html = (generated / "report" / "report.html").read_text()
    # energy and area by component, band, layers, bits histogram, bits per column, bits per tile, sweep
    assert len(re.findall(r'src="data:image/png;base64,', html)) == 8
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "<script" not in html and "<link" not in html


def test_report_is_deterministic(folder):
    first = {name: (folder / "report" / name).read_bytes() for name in FILES}
    write_report(folder)
    assert {name: (folder / "report" / name).read_bytes() for name in FILES} == first


def test_missing_yosys_says_not_measured(folder, monkeypatch, capsys):
    shutil.rmtree(folder / "rtl")
    (folder / "rtl").mkdir()
    (folder / "rtl" / "acc8.v").write_text(ACCUMULATOR)
    monkeypatch.setenv("CODESIGN_YOSYS", str(folder / "no-such-yosys"))
    assert main(["report", str(folder)]) == 0
    status = load(folder)["periphery"]
    assert status["measured"] is False and status["modules"] == []
    assert "Yosys not available" in status["reason"]
    for name in ("report.md", "report.html"):
        text = (folder / "report" / name).read_text()
        assert "Periphery area not measured: Yosys not available" in text
        assert "pip install codesign[area]" in text
    assert "periphery area not measured" in capsys.readouterr().out


def test_rtl_is_synthesized_when_yosys_is_there(folder):
    shutil.rmtree(folder / "rtl")
    (folder / "rtl").mkdir()
    (folder / "rtl" / "acc8.v").write_text(ACCUMULATOR)
    status = write_report(folder)["periphery"]
    assert status["measured"] is True and status["yosys"]
    (module,) = status["modules"]
    assert module["module"] == "acc8" and module["area_um2"] > 0 and module["transistors"] > 0
    # 8 flip-flops of y, each a sky130_fd_sc_hd__dfxtp_1 (20.0192 µm²).
    assert module["cells"]["sky130_fd_sc_hd__dfxtp_1"] == 8
    assert module["sequential_area_um2"] == pytest.approx(8 * 20.0192)
    assert "pre-layout estimate" in (folder / "report" / "report.md").read_text()


def test_calibrated_config_adds_the_fourth_design(folder):
    data = json.loads((folder / "hw_config.json").read_text())
    for layer in data["layers"]:
        for tile in layer["tiles"]:
            tile["adc_bits"] = [max(b - 1, 0) for b in tile["adc_bits"]]
    calibrated = folder / "calibrated.json"
    calibrated.write_text(json.dumps(data))
    assert main(["report", str(folder), "--calibrated", str(calibrated), "--adc-model", "zigzag"]) == 0
    summary = load(folder)
    assert summary["default_model"] == "zigzag" and "calibrated" in summary["designs"]
    for data in summary["models"].values():
        totals = data["totals"]
        assert totals["calibrated"]["adc_energy_pj"] < totals["per_column"]["adc_energy_pj"]
    assert "per-column calibrated" in (folder / "report" / "report.md").read_text()


def test_folder_without_config_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(CodesignError, match="no hw_config.json in .*: run 'codesign generate --out"):
        write_report(tmp_path)
    assert main(["report", str(tmp_path)]) == 1
    assert capsys.readouterr().err.count("\n") == 1
    assert not (tmp_path / "report").exists()


def test_report_without_sweep_says_how_to_get_it(folder):
    (folder / "search.json").unlink()
    summary = write_report(folder)
    assert summary["sweep"] is None
    assert "codesign generate --search" in (folder / "report" / "report.md").read_text()


def test_generated_periphery_is_measured_for_every_tile(generated):
    """The real rtl/ of `generate`: each module synthesized, its area counted once per crossbar tile."""
    summary = load(generated)
    status = summary["periphery"]
    config = json.loads((generated / "hw_config.json").read_text())
    tiles = sum(len(layer["tiles"]) for layer in config["layers"])
    assert status["measured"] is True and len(status["modules"]) >= 1
    assert sum(m["tiles"] for m in status["modules"]) == tiles
    assert status["total_area_um2"] == pytest.approx(sum(m["area_um2"] * m["tiles"] for m in status["modules"]))
    assert f"{tiles}" in (generated / "report" / "report.md").read_text()
