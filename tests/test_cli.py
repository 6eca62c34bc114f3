"""The command line: outputs, determinism, and one-line refusals of bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from codesign.cli import main
from codesign.zoo import DigitsCNN


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "codesign", *args], capture_output=True, text=True, cwd=cwd)


def test_help_imports_nothing_heavy():
    code = ("import sys; from codesign.cli import build_parser; build_parser().format_help(); "
            "print(sorted(m for m in ('torch', 'numpy', 'amaranth', 'pydantic', 'cocotb') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_analyze_prints_table_and_says_bundled(capsys):
    assert main(["analyze", "--rows", "64", "--cols", "64"]) == 0
    out, err = capsys.readouterr()
    assert "using the bundled model" in err
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["layer", "kind", "matrix", "xbar"]
    assert any(line.startswith("features.5") and "288×64" in line and "64×64" in line for line in lines)
    assert any(line.startswith("total") for line in lines)


def test_analyze_json_is_the_config_only(capsys):
    assert main(["analyze", "--json", "--cell-bits", "1", "--dac-bits", "2"]) == 0
    out, _ = capsys.readouterr()
    config = json.loads(out)
    assert config["crossbar"] == {"rows": 128, "cols": 128, "cell_bits": 1, "dac_bits": 2,
                                  "signed": "differential", "adcs": 1}
    assert [layer["name"] for layer in config["layers"]] == [
        "features.0", "features.2", "features.5", "classifier.1", "classifier.3"]


def test_search_prints_sweep_and_picks_a_size(capsys, tmp_path):
    assert main(["analyze", "--search"]) == 0
    out, _ = capsys.readouterr()
    assert "crossbar-size sweep" in out and out.count("← best") == 1 and "best per layer:" in out
    assert main(["generate", "--search", "layer", "--no-report", "--out", str(tmp_path / "o")]) == 0
    sweep = json.loads((tmp_path / "o" / "search.json").read_text())
    assert len(sweep["global"]) == 25
    config = json.loads((tmp_path / "o" / "hw_config.json").read_text())
    best = sweep["best_per_layer"]
    for layer in config["layers"]:
        xbar = layer["crossbar"] or config["crossbar"]
        assert (xbar["rows"], xbar["cols"]) == (best[layer["name"]]["rows"], best[layer["name"]]["cols"])


def tree(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_generate_is_deterministic_and_complete(tmp_path, capsys):
    for name in ("a", "b"):
        assert main(["generate", "--out", str(tmp_path / name), "--rows", "64", "--cols", "64", "--no-report"]) == 0
    a, b = tree(tmp_path / "a"), tree(tmp_path / "b")
    assert a == b
    assert {"hw_config.json", "summary.json", "summary.txt", "params/params.json", "params/codesign_pkg.sv",
            "params/codesign_params.h", "params/features_5.vh", "params/features_5/tile_000.mem"} <= set(a)
    assert len([f for f in a if f.startswith("params/features_5/") and f.endswith(".mem")]) == 5 * 8
    assert not [f for f in a if f.endswith(".skip.mem")]


def test_generate_never_replaces_a_folder_codesign_did_not_write(tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    for force in ([], ["--force"]):
        assert main(["generate", "--out", str(out), "--no-report", *force]) == 1
        assert "is not empty and was not written by codesign" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_force_replaces_only_what_codesign_wrote(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["generate", "--out", str(out), "--no-report", "--rows", "64"]) == 0
    assert main(["generate", "--out", str(out), "--no-report"]) == 1
    assert "holds an earlier codesign output; pass --force" in capsys.readouterr().err
    (out / "notes.txt").write_text("mine")
    (out / "params" / "mine.vh").write_text("mine too")
    assert main(["generate", "--out", str(out), "--no-report", "--force"]) == 0
    assert "kept 2 file(s)" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "mine" and (out / "params" / "mine.vh").read_text() == "mine too"
    written = json.loads((out / ".codesign.json").read_text())["files"]
    assert "hw_config.json" in written and "notes.txt" not in written
    assert json.loads((out / "hw_config.json").read_text())["crossbar"]["rows"] == 128
    assert not (out / "params" / "features_5" / "tile_019.mem").exists()      # 64 rows had 20 tiles there


def test_edited_config_round_trip(tmp_path, capsys):
    assert main(["generate", "--out", str(tmp_path / "a"), "--no-report"]) == 0
    config = json.loads((tmp_path / "a" / "hw_config.json").read_text())
    config["layers"][2]["tiles"][0]["adc_bits"][0] = 3
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(config))
    assert main(["generate", "--config", str(edited), "--out", str(tmp_path / "b"), "--no-report"]) == 0
    assert json.loads((tmp_path / "b" / "hw_config.json").read_text()) == config
    capsys.readouterr()
    assert main(["generate", "--config", str(edited), "--rows", "64", "--out", str(tmp_path / "c")]) == 1
    assert "--rows conflicts with --config" in capsys.readouterr().err


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    (root / "text.pt").write_text("not a model\n")
    torch.save(DigitsCNN().state_dict(), root / "good.pt")
    data = (root / "good.pt").read_bytes()
    (root / "truncated.pt").write_bytes(data[: len(data) // 3])
    torch.save({"bn.weight": torch.ones(4), "bn.bias": torch.zeros(4)}, root / "nolayers.pt")
    sd = DigitsCNN().state_dict()
    sd["classifier.1.weight"][3, 3] = float("inf")
    torch.save(sd, root / "inf.pt")
    torch.save(DigitsCNN(), root / "module.pt")
    done = run("analyze", "--json")
    config = json.loads(done.stdout)
    config["layers"][1]["tiles"].pop()
    (root / "gap.json").write_text(json.dumps(config))
    return root


@pytest.mark.parametrize("args, message", [
    (["--model", "text.pt"], "text.pt is not a model file codesign reads"),
    (["--model", "truncated.pt"], "truncated.pt is truncated or corrupt"),
    (["--model", "nolayers.pt"], "no Conv2d or Linear weights in nolayers.pt"),
    (["--model", "inf.pt"], "layer 'classifier.1' has 1 NaN or inf weights"),
    (["--model", "missing.pt"], "model file not found: missing.pt"),
    (["--model", "module.pt"], "module.pt holds pickled Python objects"),
    (["--config", "gap.json"], "layer 'features.2': the tiles do not cover the matrix"),
    (["--cols", "6"], "cols=6 cannot hold one weight"),
    (["--dac-bits", "9"], "dac_bits=9 exceeds input_bits=8"),
    (["--cell-bits", "5"], "argument --cell-bits: 5 is out of range: give 1…4"),
    (["--rows", "512", "--cell-bits", "4", "--dac-bits", "4"], "needs 17-bit ADCs, above the 16 bits"),
])
def test_bad_input_is_one_line_and_leaves_nothing(bad_inputs, args, message):
    done = run("generate", *args, "--out", "result", cwd=bad_inputs)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("codesign: error:")]
    assert len(errors) == 1 and message in errors[0], done.stderr
    assert "Traceback" not in done.stderr
    assert not (bad_inputs / "result").exists()
    assert not [p for p in bad_inputs.iterdir() if p.name.startswith(".result")]


def test_crossbar_defaults_to_the_one_the_model_was_pruned_for(tmp_path, capsys):
    from codesign.checkpoint import make_checkpoint, save_checkpoint

    path = tmp_path / "pruned.pt"
    meta = {"method": "magnitude", "crossbar": {"rows": 32, "cols": 48, "cell_bits": 1, "dac_bits": 2}}
    save_checkpoint(make_checkpoint("digits_cnn", {}, DigitsCNN().state_dict(), weight_bits=8, input_bits=8,
                                    meta=meta), path)
    assert main(["analyze", "--json", "--model", str(path), "--cols", "64"]) == 0
    out, err = capsys.readouterr()
    assert "the model was pruned for 32×48 crossbars (1-bit cells, 2-bit DAC)" in err
    assert json.loads(out)["crossbar"] == {"rows": 32, "cols": 64, "cell_bits": 1, "dac_bits": 2,
                                           "signed": "differential", "adcs": 1}


def test_periphery_options_go_into_the_config(capsys):
    assert main(["analyze", "--json", "--adc-interface", "sar", "--clock", "5e8", "--stream-bits", "64",
                 "--adcs", "40"]) == 0
    config = json.loads(capsys.readouterr().out)
    assert config["periphery"] == {"adc_interface": "sar", "clock_hz": 5e8, "adc_sample_rate_hz": 1.2e9,
                                   "stream_bits": 64}
    assert config["crossbar"]["adcs"] == 40


@pytest.mark.parametrize("args, message", [
    (["--adcs", "129"], "--adcs: adcs 129 exceeds the 128 physical columns of a crossbar"),
    (["--clock", "2e9"], "--clock: Input should be less than or equal to 1000000000"),
    (["--adc-rate", "0"], "--adc-rate: Input should be greater than 0"),
    (["--stream-bits", "4"], "--stream-bits: 4 is out of range: give 8…128"),
])
def test_periphery_and_adc_options_are_checked(args, message, capsys):
    assert main(["analyze", *args]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("error:") == 1 and "Traceback" not in err


def test_periphery_options_conflict_with_a_config(tmp_path, capsys):
    config = tmp_path / "c.json"
    assert main(["analyze", "--json"]) == 0
    config.write_text(capsys.readouterr().out)
    assert main(["generate", "--config", str(config), "--adc-interface", "sar", "--out", str(tmp_path / "o")]) == 1
    assert "--adc-interface conflicts with --config" in capsys.readouterr().err
