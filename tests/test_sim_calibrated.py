"""A calibrated folder (``codesign calibrate`` on the bundled model, budget 1 point: most lowered
columns take a shift k > 0, the truncation of docs/design.md §3.8) fed to ``generate --config``
simulates bit-exactly on Verilator (every tile) and Icarus (a stratified sample), and a
periphery that ignores k fails on it."""

import json
import shutil
from pathlib import Path

import pytest

from codesign.cli import main
from codesign.mutants import Edit, apply_edits
from codesign.simulate import simulate


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("calibrated")
    assert main(["calibrate", "--data", "digits", "--budget", "1", "--out", str(root / "calibrated.json")]) == 0
    assert main(["generate", "--config", str(root / "calibrated.json"), "--out", str(root / "out"),
                 "--no-report"]) == 0
    return root / "out"


def shifted_columns(folder: Path, tiles: set[tuple[str, int]] | None = None) -> int:
    """Converted columns with k > 0 in the folder's hw_config.json (of ``tiles`` only, if given)."""
    config = json.loads((folder / "hw_config.json").read_text())
    return sum(1 for layer in config["layers"] for index, tile in enumerate(layer["tiles"])
               if tiles is None or (layer["name"], index) in tiles
               for b, k in zip(tile["adc_bits"], tile["adc_shift"]) if b and k > 0)


def test_the_calibrated_config_shifts_at_least_500_columns(calibrated):
    assert shifted_columns(calibrated) >= 500


def test_every_tile_of_the_calibrated_folder_is_bit_exact_on_verilator(calibrated):
    found = simulate(calibrated, simulator="verilator", workers=2)
    assert found["passed"], found["mismatches"][:5] or [t["errors"] for t in found["tiles"] if t["errors"]][:3]
    assert len(found["tiles"]) == found["engine"]["tiles_selected"] == 26


def test_a_sample_of_the_calibrated_folder_is_bit_exact_on_icarus(calibrated):
    found = simulate(calibrated, simulator="icarus", workers=2, sample=8)
    assert found["passed"], found["mismatches"][:5] or [t["errors"] for t in found["tiles"] if t["errors"]][:3]
    assert shifted_columns(calibrated, {(t["layer"], t["tile"]) for t in found["tiles"]}) >= 150


def test_a_periphery_that_ignores_the_shift_fails_on_the_calibrated_folder(calibrated, tmp_path):
    copy = tmp_path / "out"
    shutil.copytree(calibrated, copy, ignore=shutil.ignore_patterns("sim"))
    # the mutant macro-ignores-k of the mutation suite, for this folder's code width
    apply_edits(copy, [Edit("rtl/*.v", r"(assign shift_add_value0 = \{ \d+'h0, adc__0__code \}) << sequencer_wb\[7:3\];",
                            r"\1;")])
    config = json.loads((copy / "hw_config.json").read_text())
    layer, index = max(((layer["name"], i) for layer in config["layers"] for i in range(len(layer["tiles"]))),
                       key=lambda tile: shifted_columns(copy, {tile}))
    found = simulate(copy, simulator="icarus", tiles=[f"{layer}:{index}"])
    assert not found["passed"] and found["mismatch_count"] > 0
