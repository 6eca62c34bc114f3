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
    assert main(["report", str(folder), "--calibrated", str(calibrated), "--adc-model", "zigzag", "--no-fpga"]) == 0
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


# --- the report a newcomer reads (issue 15) --------------------------------------------------------

def sections_of(markdown):
    return re.findall(r"^## (.+)$", markdown, re.M)


def table_cells(markdown):
    return [cell.strip() for line in markdown.splitlines() if line.startswith("|") and not line.startswith("|---")
            for cell in line.strip("|").split("|")]


def test_design_point_and_accuracy_come_first(generated):
    md = (generated / "report" / "report.md").read_text()
    assert sections_of(md)[:3] == ["Design point", "Accuracy (test split)", "Designs compared"]
    point = md.split("## Design point", 1)[1].split("## Accuracy", 1)[0]
    config = json.loads((generated / "hw_config.json").read_text())
    xbar, tiles = config["crossbar"], sum(len(layer["tiles"]) for layer in config["layers"])
    for row in (f"| crossbar (R × C) | {xbar['rows']}×{xbar['cols']} |", "| cell bits c | 2 |",
                "| DAC bits v (input bits per cycle) | 1 |", "| weight bits wb | 8 |", "| input bits a | 8 |",
                f"| ADCs per crossbar | {xbar['adcs']} |",
                "| ADC interface | ADC macro (asynchronous SAR, started once per conversion) |",
                "| digital clock | 1.00 GHz |", "| conversion | 1 clock cycle (macro at 1.20 GS/s) |",
                "| AXI4-Stream data width | 128 bits |", "| ADC sample rate of the cost models | 1.20 GS/s per ADC |",
                "| technology node | 32 nm |",
                f"| layers, crossbar tiles | 5, {tiles} |", "| model | bundled:digits_cnn_pruned.pt (checkpoint, digits_cnn;"):
        assert row in point
    # Without --data nothing is measured, and the page says how to measure it.
    assert "not measured: run 'codesign report DIR --data SPEC'" in md.split("## Accuracy", 1)[1].split("##", 1)[0]


def test_no_table_cell_prints_an_exponent(generated):
    for name in ("report.md", "report.html"):
        text = (generated / "report" / name).read_text()
        cells = table_cells(text) if name.endswith(".md") else re.findall(r"<td>(.*?)</td>", text)
        assert cells and not [c for c in cells if re.search(r"\d[eE][+-]?\d", c)]


@pytest.mark.parametrize("value, text", [(17520.3, "17,520"), (0.00123456, "0.00123"), (1.752e4, "17,520"),
                                         (3.4e9, "3,400,000,000"), (1e-9, "0.000000"), (0.0, "0"), (1.05, "1.05")])
def test_numbers_are_fixed_point(value, text):
    from codesign.report import number

    assert number(value) == text


def test_units_are_chosen_from_the_values():
    from codesign.report import AREA_UNITS, area, energy, pick_unit, si

    assert area(1.752e4) == "17,520 µm²" and area(3.39e6) == "3.390 mm²"
    assert energy(1.05e6) == "1.05 µJ" and energy(370.2) == "370 pJ" and si(1.2e9, "S/s") == "1.20 GS/s"
    assert pick_unit([1.2e4, 3.4e6], AREA_UNITS) == ("mm²", 1e6) and pick_unit([0.0], AREA_UNITS) == ("µm²", 1.0)


def png_width(data):
    import base64
    import struct

    raw = base64.b64decode(data)
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">I", raw[16:20])[0]


def test_every_plot_is_page_wide_with_text_of_at_least_12_px(generated):
    from codesign.cost import CostSettings
    from codesign.report import (MIN_TEXT_PX, build_summary, load_folder, plot_accuracy_energy, plot_band,
                                 plot_column_bits, plot_components, plot_histogram, plot_layer_energy, plot_sweep,
                                 plot_tiles, smallest_text_px)

    config, sweep = load_folder(generated)
    summary, est = build_summary(config, CostSettings(), sweep=sweep)
    energies = {d: [summary["models"]["isaac"]["layers"][k][d]["adc_energy_pj"] for k in est.layers]
                for d in summary["designs"]}
    points = [{"label": "uniform", "kind": "uniform", "energy_pj": 1e6, "accuracy": 99.4},
              {"label": "budget 1", "kind": "calibrated", "energy_pj": 2.3e5, "accuracy": 99.2}]
    figures = [plot_components(summary, "isaac", "energy"), plot_components(summary, "isaac", "area"),
               plot_band(est), plot_layer_energy(est.layers, energies, "isaac"),
               plot_histogram(summary["bits_histogram"]), plot_column_bits(config), plot_tiles(summary["tiles"]),
               plot_sweep(sweep), plot_accuracy_energy(points, 99.4, "isaac")]
    for fig in figures:
        assert fig.get_size_inches()[0] * fig.dpi == 1000
        assert smallest_text_px(fig) >= MIN_TEXT_PX, fig.axes[0].get_title()
    html = (generated / "report" / "report.html").read_text()
    widths = [png_width(data) for data in re.findall(r'src="data:image/png;base64,([^"]+)"', html)]
    assert len(widths) == 8 and set(widths) == {1000}


def test_the_legibility_check_catches_small_text():
    from codesign.report import _figure, smallest_text_px

    fig, ax = _figure(3.0)
    ax.set_xlabel("tiny", fontsize=6)
    assert smallest_text_px(fig) < 12


def test_equal_adc_areas_are_explained_and_unequal_ones_are_not(tmp_path):
    notes = {}
    for adcs in (1, 16):
        out = tmp_path / f"adcs{adcs}"
        assert main(["generate", "--adcs", str(adcs), "--no-report", "--out", str(out)]) == 0
        totals = write_report(out, synthesize=False)["models"]["isaac"]["totals"]
        notes[adcs] = ((out / "report" / "report.md").read_text(),
                       totals["per_column"]["adc_area_um2"] / totals["per_crossbar"]["adc_area_um2"])
    # One ADC per crossbar is sized for the tile's largest column in both designs: equal areas, explained.
    assert notes[1][1] == 1 and "ADC area is the same for per-crossbar and per-column: with one ADC per crossbar" \
        in notes[1][0]
    assert notes[16][1] < 1 and "ADC area is the same" not in notes[16][0]


def test_missing_designs_say_how_to_get_them(generated):
    md = (generated / "report" / "report.md").read_text()
    assert ("Per-column calibrated: not in this report. To add it, run 'codesign calibrate --config "
            "DIR/hw_config.json --data SPEC --budget 1 --out DIR/calibrated.json'") in md
    calibrated = md.split("## Calibrated designs: accuracy against ADC energy", 1)[1].split("##", 1)[0]
    assert "codesign calibrate --config DIR/hw_config.json --data SPEC --budgets 0.25,0.5,1,2" in calibrated


def test_data_measures_every_accuracy(folder):
    summary = write_report(folder, synthesize=False, data="digits")
    acc = summary["accuracy"]
    assert acc["source"].startswith("measured now on digits, test split (360 images")
    # README: the bundled model is 99.17 % float and 99.44 % ideal on the test split; every lossless
    # design (docs/design.md §3.10) must give the ideal model's predictions exactly.
    assert round(acc["float"], 2) == 99.17 and round(acc["ideal"], 2) == 99.44
    assert {d: e["accuracy"] for d, e in acc["designs"].items()} == dict.fromkeys(
        ("uniform", "per_crossbar", "per_column"), acc["ideal"])
    md = (folder / "report" / "report.md").read_text()
    assert "| crossbar: per-column lossless | 99.44 % | this config's bits and shifts, emulated |" in md


def test_data_needs_a_model_that_carries_its_architecture(tmp_path, capsys):
    import torch

    from codesign.ingest import load_model

    model = tmp_path / "plain.pt"
    torch.save(load_model().module.state_dict(), model)
    assert main(["generate", "--model", str(model), "--no-report", "--out", str(tmp_path / "out")]) == 0
    capsys.readouterr()
    assert main(["report", str(tmp_path / "out"), "--no-synth", "--data", "digits"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs a model file that carries its architecture" in err


@pytest.fixture
def small_digits(monkeypatch):
    """30 images per split: enough to exercise calibration, fast."""
    import codesign.data

    real = codesign.data.load_dataset
    monkeypatch.setattr(codesign.data, "load_dataset", lambda spec, split="test": tuple(a[:30] for a in real(spec, split)))


def test_calibrate_budgets_feed_an_accuracy_against_energy_plot(folder, capsys, small_digits):
    out = folder / "calibrated.json"
    argv = ["calibrate", "--config", str(folder / "hw_config.json"), "--data", "digits", "--budgets", "3,10"]
    assert main([*argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    files = [folder / "calibrated-budget3.json", folder / "calibrated-budget10.json"]
    assert f"next: codesign report {folder} --calibrated {files[0]} {files[1]}" in printed
    configs = [json.loads(f.read_text()) for f in files]
    assert [c["calibration"]["budget"] for c in configs] == [3, 10]
    assert configs[0]["calibration"]["tolerance"] <= configs[1]["calibration"]["tolerance"]
    bits = [sum(sum(t["adc_bits"]) for layer in c["layers"] for t in layer["tiles"]) for c in configs]
    assert bits[0] >= bits[1]
    assert main([*argv, "--out", str(out)]) == 1                                           # no silent overwrite
    assert f"{files[0]} exists; pass --force" in capsys.readouterr().err

    # --calibrated is repeatable; without --data the accuracies are the ones calibrate recorded.
    assert main(["report", str(folder), "--no-synth", "--calibrated", str(files[0]), "--calibrated", str(files[1])]) == 0
    summary = load(folder)
    assert [r["label"] for r in summary["calibrations"]] == ["budget 3", "budget 10"]
    assert summary["accuracy"]["source"] == "recorded by codesign calibrate"
    assert [e["accuracy"] for e in summary["accuracy"]["calibrated"]] == [
        c["calibration"]["accuracy"]["test"]["crossbar"] for c in configs]
    html = (folder / "report" / "report.html").read_text()
    assert 'alt="accuracy against ADC energy"' in html
    assert summary["calibrated"] == str(files[0]) and "calibrated" in summary["designs"]


def test_a_layer_search_folder_shows_each_layers_size(tmp_path):
    out = tmp_path / "layers"
    assert main(["generate", "--search", "layer", "--no-report", "--out", str(out)]) == 0
    write_report(out, synthesize=False)
    config = json.loads((out / "hw_config.json").read_text())
    md = (out / "report" / "report.md").read_text()
    sweep = md.split("## Crossbar-size sweep", 1)[1]
    for layer in config["layers"]:
        xbar = layer["crossbar"] or config["crossbar"]
        assert re.search(rf"^\| {re.escape(layer['name'])} \| {xbar['rows']}×{xbar['cols']} \|", sweep, re.M)
    assert "each layer its own crossbar" in sweep and "(this folder's crossbar)" not in sweep
    assert "chosen per layer (--search layer)" in md.split("## Accuracy", 1)[0]
