"""``codesign simulate`` on fresh ``codesign generate`` folders of the bundled model, both ADC
interfaces: every tile bit-exact in the reported cycles on Icarus and Verilator (the analog side in
the simulator and in Python); a mutated Verilog or configuration memory is caught; a folder whose
hw_config.json drifted from its RTL is refused; stale waveforms go; bad input gets one line."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from codesign.cli import main
from codesign.ingest import load_model
from codesign.rtl import module_groups, tile_schedule
from codesign.simulate import Folder, layer_inputs, read_mem, select_tiles, tile_case
from codesign.sim.runner import build, run_tiles

BUNDLED_TILES = 26


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundled") / "out"
    assert main(["generate", "--out", str(out), "--no-report"]) == 0
    return out


@pytest.fixture(scope="module")
def generated_sar(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundled-sar") / "out"
    assert main(["generate", "--out", str(out), "--no-report", "--adc-interface", "sar", "--adcs", "2"]) == 0
    return out


@pytest.fixture
def folder(generated, tmp_path):
    """A private copy of the generated folder (without simulation results), free to edit."""
    copy = tmp_path / "out"
    shutil.copytree(generated, copy, ignore=shutil.ignore_patterns("sim"))
    return copy


def results(folder: Path) -> dict:
    return json.loads((folder / "sim" / "results.json").read_text())


def mismatch_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if re.fullmatch(
        r"layer \S+ tile \d+ vector \d+ column \d+: expected -?\d+, got -?\d+", line)]


def test_every_tile_of_the_bundled_model_on_icarus(generated, capsys):
    assert main(["simulate", str(generated), "--sim", "icarus", "--vectors", "3", "--no-corners"]) == 0
    out = capsys.readouterr().out
    found = results(generated)
    assert found["passed"] and found["mismatch_count"] == 0 and found["errors"] == []
    assert len(found["tiles"]) == BUNDLED_TILES and all(tile["passed"] for tile in found["tiles"])
    assert found["outputs_compared"] == BUNDLED_TILES * 3 * 16
    assert "real layer inputs from digits" in found["inputs"] and found["simulator"]["name"] == "icarus"
    assert found["simulator"]["version"].startswith("11.") and found["mode"] == "fast"
    manifest = json.loads((generated / "rtl" / "manifest.json").read_text())
    reported = [(tile["cycles"], tile["latency"]) for layer in manifest["layers"] for tile in layer["tiles"]]
    assert [(tile["cycles_per_vector"], tile["latency"]) for tile in found["tiles"]] == reported
    assert all(tile["measured_ends"] == [tile["latency"] + b * tile["cycles_per_vector"] for b in range(3)]
               for tile in found["tiles"])
    assert all(tile["conversions"] == 3 * 8 * t["conversions"] for tile, t in zip(
        found["tiles"], (t for layer in manifest["layers"] for t in layer["tiles"])))
    assert sum(t["back_pressure"]["stalled_output_cycles"] + t["back_pressure"]["idle_input_cycles"]
               for t in found["tiles"]) > 0
    assert f"all {BUNDLED_TILES * 3 * 16} outputs bit-exact" in out


def test_every_tile_of_the_bundled_model_on_verilator(generated, capsys):
    assert main(["simulate", str(generated), "--sim", "verilator"]) == 0
    found = results(generated)
    assert found["passed"] and found["simulator"]["name"] == "verilator" and found["vectors"] == 8
    assert len(found["tiles"]) == BUNDLED_TILES and all(t["vectors"] == 8 + t["corner_vectors"] > 8 + 15
                                                        for t in found["tiles"])      # about 2 per column
    assert found["outputs_compared"] == sum(t["vectors"] for t in found["tiles"]) * 16
    assert (generated / found["builds"][0]["directory"] / "stamp").exists()
    # a second run reuses the build
    assert main(["simulate", str(generated), "--sim", "verilator", "--vectors", "1", "--tiles", "classifier.3"]) == 0
    assert results(generated)["builds"][0]["build_reused"]
    assert "bit-exact" in capsys.readouterr().out


def test_the_analog_side_in_python_on_a_selection(generated):
    assert main(["simulate", str(generated), "--mode", "python", "--vectors", "2",
                 "--tiles", "features.0", "--tiles", "features.5:10-11,classifier.3:0"]) == 0
    found = results(generated)
    assert found["passed"] and found["mode"] == "python"
    assert [(t["layer"], t["tile"]) for t in found["tiles"]] == [
        ("features.0", 0), ("features.5", 10), ("features.5", 11), ("classifier.3", 0)]


def test_sar_interface_every_tile_on_verilator_and_a_selection_on_icarus(generated_sar, capsys):
    assert main(["simulate", str(generated_sar), "--sim", "verilator", "--vectors", "3"]) == 0
    found = results(generated_sar)
    assert found["passed"] and len(found["tiles"]) == BUNDLED_TILES
    assert all(len(tile["measured_ends"]) == 3 for tile in found["tiles"])
    assert main(["simulate", str(generated_sar), "--sim", "icarus", "--vectors", "2",
                 "--tiles", "features.2:2,classifier.3"]) == 0
    assert main(["simulate", str(generated_sar), "--sim", "verilator", "--mode", "python", "--vectors", "2",
                 "--tiles", "features.0"]) == 0
    assert results(generated_sar)["passed"]
    assert "bit-exact" in capsys.readouterr().out


def test_waves_and_no_stale_waves(generated):
    assert main(["simulate", str(generated), "--vectors", "1", "--tiles", "classifier.3", "--waves"]) == 0
    found = results(generated)
    waves = generated / found["waves"][0]
    assert waves.suffix == ".fst" and waves.stat().st_size > 1000
    assert main(["simulate", str(generated), "--vectors", "1", "--tiles", "classifier.3"]) == 0
    assert not (generated / "sim" / "waves").exists() and "waves" not in results(generated)


def test_a_mutated_verilog_fails_the_comparison(folder, capsys):
    """Fault injection: every configuration slot written gets the lowest bit of k flipped, as a
    broken write port would."""
    verilog = next((folder / "rtl").glob("*.v"))
    text = verilog.read_text()
    write = re.findall(r"(memory\[\S+\] <= apb__pwdata\[(\d+):0\]);", text)
    assert len(write) == 1
    ports = json.loads(next(p for p in (folder / "rtl").glob("*.json") if p.name != "manifest.json").read_text())
    slot = ports["interface"]["annotations"]["urn:codesign:tile-periphery:2"]["slot"]
    shift = next(field["offset"] for field in slot if field["name"] == "shift")
    width = int(write[0][1]) + 1
    verilog.write_text(text.replace(write[0][0], f"{write[0][0]} ^ {width}'d{1 << shift}"))
    assert main(["simulate", str(folder), "--vectors", "2", "--tiles", "features.2:0,classifier.3"]) == 1
    out = capsys.readouterr().out
    found = results(folder)
    assert not found["passed"] and found["mismatch_count"] > 0
    assert len(mismatch_lines(out)) == min(found["mismatch_count"], 50)
    first = found["mismatches"][0]
    assert f"layer {first['layer']} tile {first['tile']} vector {first['vector']} column {first['column']}: " \
           f"expected {first['expected']}, got {first['got']}" in out
    assert "FAILED" in out.splitlines()[-1]


def test_a_mutated_configuration_memory_is_refused_and_caught_by_simulation(folder, capsys):
    """One slot's k + 1 in a .mem behind hw_config.json: simulate refuses; run anyway, the hardware
    (which reads the .mem) disagrees with the golden model (which reads hw_config.json)."""
    view = Folder.open(folder)
    ref = select_tiles(view, ["features.2:1"])[0]
    model = load_model(None)
    rng = np.random.default_rng(0)
    inputs, _ = layer_inputs(model, view.config, 2, rng)
    case = tile_case(view, ref, model.layer(ref.layer).q, inputs[ref.layer], rng, corners=False)
    mem = folder / case.cfg_file
    rows = read_mem(mem)
    params = module_groups(view.config)[0].params
    schedule = tile_schedule(params, view.config.layer("features.2").tiles[1])
    odd = case.job.digits.sum(axis=0) % 2 == 1           # vector 0 (every input at its maximum) loses a bit there
    row = next(r for r, slots in enumerate(schedule.rows) if slots[0].bits and odd[slots[0].column])
    column = schedule.rows[row][0].column
    shift = params.slot_fields["shift"][0]
    rows[row] += 1 << shift
    digits = len(mem.read_text().splitlines()[-1])
    mem.write_text("".join(f"{w:0{digits}x}\n" for w in rows))

    assert main(["simulate", str(folder)]) == 1
    err = capsys.readouterr().err
    assert (f"no longer matches the generated files: layer 'features.2' tile 1 memory row {row} slot 0: column "
            f"{column} b={schedule.rows[row][0].bits} k=0 from hw_config.json, word {rows[row]:#x} in "
            f"params/features_2/tile_001.mem") in err
    assert not (folder / "sim" / "results.json").exists()

    module = view.module(case.module)
    built = build("icarus", folder / "rtl" / module["verilog"], folder / "rtl" / module["ports"], folder / "sim")
    (run,), stats = run_tiles(built, [case.job], folder / "sim" / "work")
    assert stats.failure is None and len(run.results) == 2
    assert any("protocol check failed" in error and "with another b or k than the configuration" in error
               for error in run.errors)                              # a conversion with another k
    wrong = np.argwhere(np.array(run.results) != case.expected)
    assert len(wrong) and set(wrong[:, 1]) == {column // 8}      # only that column's logical output


def test_hw_config_edited_behind_the_rtl_is_refused(folder, capsys):
    """One more bit on a column leaves the result exact, so only the drift check can notice it."""
    path = folder / "hw_config.json"
    config = json.loads(path.read_text())
    tile = config["layers"][2]["tiles"][3]
    column = next(p for p, b in enumerate(tile["adc_bits"]) if 0 < b < 7)
    tile["adc_bits"][column] += 1
    path.write_text(json.dumps(config))
    assert main(["simulate", str(folder), "--vectors", "1"]) == 1
    err = capsys.readouterr().err
    assert re.search(r"layer 'features.5' tile 3 memory row \d+ slot 0: column \d+ b=\d k=0 from hw_config.json, "
                     r"word 0x[0-9a-f]+ in params/features_5/tile_003.mem", err), err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_hw_config_with_more_bits_than_the_module_is_refused(folder, capsys):
    path = folder / "hw_config.json"
    config = json.loads(path.read_text())
    config["layers"][0]["tiles"][0]["adc_bits"][0] = 9
    path.write_text(json.dumps(config))
    assert main(["simulate", str(folder)]) == 1
    assert ("layer 'features.0': needs the module codesign_tile_r128c128_c2v1_w8a8_adc1m1_b9x3_d128, which rtl/ "
            "lacks" in capsys.readouterr().err)


@pytest.mark.parametrize("args, message", [
    (["--tiles", "features.9"], "--tiles features.9: no layer 'features.9'; layers are: features.0, features.2"),
    (["--tiles", "features.2:4"], "--tiles features.2:4: layer 'features.2' has tiles 0..3"),
    (["--tiles", "features.2:3-1"], "--tiles features.2:3-1: the range is reversed; write features.2:1-3"),
    (["--vectors", "0"], "argument --vectors: 0 is out of range: give at least 1"),
    (["--model", "nowhere.pt"], "model file not found: nowhere.pt"),
], ids=["layer", "tile", "range", "vectors", "model"])
def test_bad_arguments_get_one_line(generated, args, message, capsys):
    assert main(["simulate", str(generated), *args]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_a_folder_without_rtl_is_refused(tmp_path, capsys):
    (tmp_path / "hw_config.json").write_text("{}")
    assert main(["simulate", str(tmp_path)]) == 1
    assert "has no rtl/manifest.json: give the output folder of 'codesign generate'" in capsys.readouterr().err


def test_another_model_is_refused(generated, tmp_path, capsys):
    other = tmp_path / "other.pt"
    state = {f"{name}.weight": torch.zeros(shape) for name, shape in
             [("features.0", (16, 1, 3, 3)), ("features.2", (32, 16, 3, 3)), ("features.5", (64, 32, 3, 3)),
              ("classifier.1", (64, 256)), ("classifier.3", (10, 64))]}
    torch.save(state, other)
    assert main(["simulate", str(generated), "--model", str(other)]) == 1
    assert "is not the model hw_config.json was made from (bundled:digits_cnn_pruned.pt" in capsys.readouterr().err


def test_missing_simulators_are_named_with_an_install_hint(generated, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["simulate", str(generated), "--sim", "icarus"]) == 1
    assert "iverilog not found: on Debian/Ubuntu run 'apt-get install iverilog'" in capsys.readouterr().err
    assert main(["simulate", str(generated), "--sim", "verilator"]) == 1
    assert "Verilator builds a C++ model, which needs c++, make, perl (not found)" in capsys.readouterr().err
    old = tmp_path / "verilator"
    old.write_text("#!/bin/sh\necho 'Verilator 5.006 2023-01-22 rev (Debian 5.006-3)'\n")
    old.chmod(0o755)
    monkeypatch.setenv("CODESIGN_VERILATOR", str(old))
    assert main(["simulate", str(generated), "--sim", "verilator"]) == 1
    err = capsys.readouterr().err
    assert "is Verilator 5.006; cocotb 2.x needs ≥ 5.036 (Debian 12 ships 5.006)" in err and err.count("\n") == 1
