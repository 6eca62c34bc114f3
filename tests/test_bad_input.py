"""Regression tests of the hardening issue: every bad input is one line and exit status 1, nothing
is left behind, and a config, folder or option that looks valid but is not is refused by name."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from codesign.cli import main
from codesign.config import parse_config
from codesign.errors import CodesignError

BUNDLED = Path(__file__).parents[1] / "examples" / "digits_cnn_pruned.pt"


def refused(argv, capsys, message):
    """Run the CLI in process: exit 1 and exactly one error line holding ``message``."""
    assert main(argv) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("codesign: error:")]
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err and "internal error" not in err
    return lines[0]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("bad") / "out"
    assert main(["generate", "--out", str(out), "--no-report"]) == 0
    return out


@pytest.fixture
def copy(folder, tmp_path):
    shutil.copytree(folder, tmp_path / "out")
    return tmp_path / "out"


# --- numeric options (item 4) ------------------------------------------------------------------

@pytest.mark.parametrize("option, value, message", [
    ("--rows", "0", "argument --rows: 0 is out of range: give 1…4096"),
    ("--cols", "1", "argument --cols: 1 is out of range: give 2…4096"),
    ("--cell-bits", "0", "argument --cell-bits: 0 is out of range: give 1…4"),
    ("--dac-bits", "0", "argument --dac-bits: 0 is out of range: give 1…16"),
    ("--input-bits", "0", "argument --input-bits: 0 is out of range: give 1…16"),
    ("--weight-bits", "1", "argument --weight-bits: 1 is out of range: give 2…16"),
    ("--adcs", "0", "argument --adcs: 0 is out of range: give 1…4096"),
    ("--adcs", "-3", "argument --adcs: -3 is out of range: give 1…4096"),
    ("--rows", "1e3", "argument --rows: '1e3' is not a whole number"),
    ("--rows", "99999999999999999999", "is out of range: give 1…4096"),
])
def test_zero_or_invalid_numbers_are_refused_not_defaulted(option, value, message, capsys, tmp_path):
    for command in ("analyze", "generate"):
        refused([command, option, value, "--out", str(tmp_path / "o")] if command == "generate"
                else [command, option, value], capsys, message)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("argv, message", [
    (["emulate", "--data", "digits", "--conductance-sigma", "nan"], "argument --conductance-sigma: nan is not a finite"),
    (["emulate", "--data", "digits", "--adc-noise", "-1"], "argument --adc-noise: -1 is out of range"),
    (["emulate", "--data", "digits", "--seed", "-1"], "argument --seed: -1 is out of range"),
    (["calibrate", "--data", "digits", "--budget", "inf"], "argument --budget: inf is not a finite number"),
    (["report", ".", "--tech-nm", "nan"], "argument --tech-nm: nan is not a finite number"),
    (["simulate", ".", "--seed", "-5"], "argument --seed: -5 is out of range"),
    (["prune", "--method", "dub", "--rows", "0", "--out", "x.pt"], "argument --rows: 0 is out of range"),
    (["train", "digits_cnn", "--weight-bits", "17", "--out", "x.pt"], "argument --weight-bits: 17 is out of range"),
    (["analyze", "--search", "everything"], "argument --search: invalid choice"),
])
def test_other_numeric_options_are_checked_by_argparse(argv, message, capsys):
    refused(argv, capsys, message)


def test_one_adc_rule_for_analyze_and_generate(capsys, tmp_path):
    refused(["analyze", "--adcs", "129"], capsys, "adcs 129 exceeds the 128 physical columns")
    assert main(["analyze", "--json"]) == 0
    config = json.loads(capsys.readouterr().out)
    config["crossbar"]["adcs"] = 4096
    (tmp_path / "c.json").write_text(json.dumps(config))
    for command in ("analyze", "generate"):
        refused([command, "--config", str(tmp_path / "c.json"), *(["--out", str(tmp_path / "o")]
                                                                   if command == "generate" else [])],
                capsys, "4096 exceeds the 128 physical columns")


# --- configs (items 7, 8, 9) ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def config_text(capsys_module=None):
    import io
    import contextlib

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["analyze", "--json"]) == 0
    return out.getvalue()


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["layers"][0]["tiles"][0]["adc_bits"].__setitem__(0, True), "adc_bits[0]: Input should be a valid integer"),
    (lambda c: c["layers"][0]["tiles"][0]["adc_bits"].__setitem__(0, "3"), "adc_bits[0]: Input should be a valid integer"),
    (lambda c: c["layers"][0]["tiles"][0]["adc_bits"].__setitem__(0, 3.0), "adc_bits[0]: Input should be a valid integer"),
    (lambda c: c["crossbar"].__setitem__("rows", "128"), "crossbar rows: Input should be a valid integer"),
    (lambda c: c["layers"][0].__setitem__("weight_bits", 8.5), "weight_bits: Input should be a valid integer"),
], ids=["true", "string", "float", "rows-string", "weight-bits-float"])
def test_config_numbers_have_strict_types(config_text, edit, message):
    config = json.loads(config_text)
    edit(config)
    with pytest.raises(CodesignError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_config(json.dumps(config))


def test_deeply_nested_json_is_one_line(capsys, tmp_path):
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    refused(["analyze", "--config", str(tmp_path / "deep.json")], capsys, "JSON nested too deeply")
    (tmp_path / "deep.json").write_text('{"a":' * 5_000 + "1" + "}" * 5_000)
    refused(["prune", "--method", "dub", "--hparams", str(tmp_path / "deep.json"), "--out", str(tmp_path / "x.pt")],
            capsys, "deep.json")


def test_a_config_of_another_model_is_refused_unless_allowed(config_text, capsys, tmp_path):
    other = tmp_path / "other.pt"
    other.write_bytes(BUNDLED.read_bytes() + b"")
    torch.save(torch.load(BUNDLED, weights_only=True), other)          # same weights, another file and sha
    (tmp_path / "c.json").write_text(config_text)
    out = tmp_path / "o"
    refused(["generate", "--model", str(other), "--config", str(tmp_path / "c.json"), "--out", str(out),
             "--no-report"], capsys, "was made for another model file (bundled:digits_cnn_pruned.pt")
    assert not out.exists()
    assert main(["generate", "--model", str(other), "--config", str(tmp_path / "c.json"), "--out", str(out),
                 "--no-report", "--allow-model-mismatch"]) == 0
    recorded = json.loads((out / "hw_config.json").read_text())["model"]
    import hashlib

    assert recorded["sha256"] == hashlib.sha256(other.read_bytes()).hexdigest()
    assert recorded["absolute_path"] == str(other.resolve())


# --- folders given to simulate and report (items 8, 9) -------------------------------------------

def test_missing_verilog_is_named(copy, capsys):
    for path in (copy / "rtl").glob("*.v"):
        path.unlink()
    for command in (["simulate", str(copy)], ["report", str(copy)]):
        refused(command, capsys, "has no rtl/codesign_tile_")


@pytest.mark.parametrize("manifest, message", [
    ("{", "not valid JSON"),
    ("[" * 100_000, "nested too deeply"),
    ('{"modules": 3, "layers": []}', "is not a manifest codesign wrote (modules"),
    ('{"modules": [], "layers": [{"name": "x"}]}', "is not a manifest codesign wrote (layers.0.module"),
], ids=["truncated", "deep", "modules", "layers"])
def test_corrupt_rtl_manifest_is_one_line(copy, capsys, manifest, message):
    (copy / "rtl" / "manifest.json").write_text(manifest)
    for command in (["simulate", str(copy)], ["report", str(copy), "--no-synth"]):
        if command[0] == "report":
            continue                         # --no-synth reads no RTL
        refused(command, capsys, message)
    refused(["report", str(copy)], capsys, message)


def test_corrupt_port_description_is_one_line(copy, capsys):
    ports = next((copy / "rtl").glob("*.json"))
    if ports.name == "manifest.json":
        ports = sorted((copy / "rtl").glob("codesign_tile_*.json"))[0]
    for text, message in (("{}", "is not a port description codesign wrote"), ("[1", "not valid JSON"),
                          ('{"interface": []}', "is not a port description codesign wrote")):
        ports.write_text(text)
        refused(["simulate", str(copy)], capsys, message)


def test_a_manifest_naming_a_file_outside_the_folder_is_refused_unread(copy, capsys, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET first line\n")
    manifest = json.loads((copy / "rtl" / "manifest.json").read_text())
    manifest["layers"][0]["tiles"][0]["cfg_file"] = "../secret.txt"
    (copy / "rtl" / "manifest.json").write_text(json.dumps(manifest))
    line = refused(["simulate", str(copy)], capsys, "names '../secret.txt', outside")
    assert "SECRET" not in line
    manifest["layers"][0]["tiles"][0]["cfg_file"] = str(secret)
    (copy / "rtl" / "manifest.json").write_text(json.dumps(manifest))
    refused(["simulate", str(copy)], capsys, "outside")


def test_reversed_tile_range_is_named(folder, capsys):
    refused(["simulate", str(folder), "--tiles", "features.2:3-1"], capsys,
            "--tiles features.2:3-1: the range is reversed; write features.2:1-3")


# --- emulate --inputs and --out (items 5, 8) ------------------------------------------------------

def test_empty_or_npz_inputs_are_one_line(capsys, tmp_path):
    (tmp_path / "empty.npy").write_bytes(b"")
    np.savez(tmp_path / "x.npz", a=np.zeros((2, 9), np.int64))
    for inputs, message in ((tmp_path / "empty.npy", "lacks the NumPy header, it is empty"),
                            (tmp_path / "x.npz", "is a .npz archive")):
        refused(["emulate", "--layer", "features.0", "--inputs", str(inputs), "--out", str(tmp_path / "y.npy")],
                capsys, message)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.npy", "x.npz"]


def test_emulate_writes_exactly_the_named_file(capsys, tmp_path):
    np.save(tmp_path / "x.npy", np.ones((2, 9), np.int64))
    argv = ["emulate", "--layer", "features.0", "--inputs", str(tmp_path / "x.npy"), "--out", str(tmp_path / "y.bin")]
    assert main(argv) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy", "y.bin"]
    assert np.load(tmp_path / "y.bin").shape == (2, 16)
    refused(argv, capsys, "y.bin exists; pass --force")
    assert main([*argv, "--force"]) == 0
    argv[-1] = str(tmp_path / "x.npy")
    refused([*argv, "--force"], capsys, "is the input")


# --- output lines (items 2, 9) --------------------------------------------------------------------

def test_generate_reports_each_stage(capsys, tmp_path):
    assert main(["generate", "--out", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err
    for stage in ("analysing 5 crossbar matrices", "writing parameter files of 5 layers",
                  "generating RTL module 1 of 1", "writing report/"):
        assert stage in err


def test_hostile_layer_names_stay_in_their_table_rows(capsys, tmp_path):
    names = ["a\n| x | y |\n# injected", "b<script>alert(1)</script>*[l](javascript:x)", "c\x1b[2J"]
    torch.save({f"{name}.weight": torch.ones(4, 3) for name in names}, tmp_path / "m.pt")
    assert main(["analyze", "--model", str(tmp_path / "m.pt")]) == 0
    printed = capsys.readouterr().out
    assert "\x1b" not in printed and len(printed.splitlines()) == 2 + len(names) + 2 + 3
    out = tmp_path / "o"
    assert main(["generate", "--model", str(tmp_path / "m.pt"), "--out", str(out), "--no-report"]) == 0
    assert main(["report", str(out), "--no-synth"]) == 0
    markdown = (out / "report" / "report.md").read_text()
    assert not [line for line in markdown.splitlines() if line.startswith("# injected") or "<script>" in line]
    assert "\\<script\\>" in markdown and not re.search(r"(?<!\\)\]\(javascript", markdown)
    html = (out / "report" / "report.html").read_text()
    assert "<script>" not in html


def test_an_error_naming_a_hostile_layer_stays_one_line(capsys, tmp_path):
    state = {"a\nb\u2028c\x1b[2J.weight": torch.ones(4, 3)}
    torch.save(state, tmp_path / "m.pt")
    refused(["emulate", "--model", str(tmp_path / "m.pt"), "--layer", "nope", "--inputs", "x.npy", "--out", "y.npy"],
            capsys, "no layer 'nope' in the config; layers are: a\\nb\\u2028c\\x1b[2J")
