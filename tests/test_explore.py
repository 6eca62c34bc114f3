"""``codesign explore``: the points are the existing stages' figures, the Pareto front equals a
brute-force one computed here, a real local Ray gives the serial points, a rerun reuses the file,
and bad input gets one line."""

import itertools
import json

import pytest

from codesign import explore as explore_module
from codesign.analysis import analyze
from codesign.cli import main
from codesign.config import CrossbarConfig, PeripheryConfig
from codesign.cost import CostSettings, estimate
from codesign.errors import CodesignError
from codesign.explore import Space, explore, parse_space
from codesign.ingest import load_model

ROWS, COLS, CELLS, MODELS = [32, 64, 128], [4, 64, 256], [1, 2], ["isaac", "walden"]
OBJECTIVES = ("energy_pj", "area_um2", "latency_ns")


@pytest.fixture(scope="module")
def model():
    return load_model(None)


@pytest.fixture(scope="module")
def space():
    return Space(rows=ROWS, cols=COLS, cell_bits=CELLS, adc_model=MODELS)


def expected_points(model) -> dict:
    """Every point of the space from analyze and estimate directly (None: the model cannot map)."""
    points = {}
    for rows, cols, cell, adc in itertools.product(ROWS, COLS, CELLS, MODELS):
        adcs = max(1, -(-cols // 128))
        try:
            config = analyze(model, CrossbarConfig(rows=rows, cols=cols, cell_bits=cell, adcs=adcs)).to_config()
        except CodesignError:
            points[(rows, cols, cell, adcs, adc)] = None
            continue
        total = estimate(config, settings=CostSettings(adc_model=adc), models=[adc]).total(adc, "per_column")
        points[(rows, cols, cell, adcs, adc)] = (total.total_energy_pj, total.total_area_um2,
                                                  total.latency_cycles / PeripheryConfig().clock_hz * 1e9)
    return points


def brute_front(points: dict) -> set:
    """Keys of the points no other point beats in all three objectives (ties: not beaten)."""
    feasible = {k: v for k, v in points.items() if v is not None}
    return {k for k, v in feasible.items()
            if not any(all(o <= m for o, m in zip(w, v)) and w != v for w in feasible.values())}


def key(point: dict) -> tuple:
    return point["rows"], point["cols"], point["cell_bits"], point["adcs"], point["adc_model"]


def test_points_and_front_equal_the_stages_and_a_brute_force_front(model, space, tmp_path):
    found = explore(model, space, tmp_path / "ex", workers=1)
    want = expected_points(model)
    assert len(found["points"]) == len(want) == 36
    for point in found["points"]:
        value = want[key(point)]
        assert point["feasible"] == (value is not None)
        if value is not None:
            assert tuple(point[o] for o in OBJECTIVES) == pytest.approx(value, rel=1e-12)
        else:
            assert point["reason"]
    assert any(value is None for value in want.values())            # 4 columns cannot hold one 8-bit weight
    assert {key(p) for p in found["front"]} == brute_front(want)
    pareto = json.loads((tmp_path / "ex" / "pareto.json").read_text())
    assert [key(p) for p in pareto["front"]] == [key(p) for p in found["front"]]
    html = (tmp_path / "ex" / "explore.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and "Points the model cannot map" in html


def test_a_front_point_made_worse_leaves_the_front():
    good = {"feasible": True, "energy_pj": 1.0, "area_um2": 1.0, "latency_ns": 1.0}
    other = {"feasible": True, "energy_pj": 2.0, "area_um2": 0.5, "latency_ns": 1.0}
    assert explore_module.pareto_front([good, other]) == [good, other]
    worse = {**good, "area_um2": 3.0, "latency_ns": 1.0, "energy_pj": 2.0}
    assert explore_module.pareto_front([worse, other]) == [other]


def test_ray_workers_give_the_serial_points(model, space, tmp_path):
    serial = explore(model, space, tmp_path / "serial", workers=1)
    parallel = explore(model, space, tmp_path / "ray", workers=2)
    assert parallel["points"] == serial["points"] and parallel["front"] == serial["front"]
    lines = (tmp_path / "ray" / "points.jsonl").read_text().splitlines()
    assert len(lines) == 36


def test_a_rerun_prices_only_the_missing_points(model, space, tmp_path, monkeypatch):
    out = tmp_path / "ex"
    first = explore(model, space, out, workers=1)
    path = out / "points.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:10]) + lines[10][:25])           # cut off, mid-line, after 5 geometries
    priced = []
    original = explore_module.price_geometry
    monkeypatch.setattr(explore_module, "price_geometry",
                        lambda setup, geometry: priced.append(geometry) or original(setup, geometry))
    again = explore(model, space, out, workers=1)
    assert len(priced) == again["computed"] == 18 - 5 and again["reused"] == 10
    assert again["points"] == first["points"]
    assert len(path.read_text().splitlines()) == 36
    priced.clear()
    wider = Space(rows=ROWS, cols=COLS, cell_bits=CELLS, adc_model=[*MODELS, "murmann"])
    assert len(explore(model, wider, out, workers=1)["points"]) == 54 and len(priced) == 18
    priced.clear()
    assert explore(model, wider, out, workers=1)["computed"] == 0 and not priced


def test_points_of_another_model_are_refused(model, space, tmp_path):
    out = tmp_path / "ex"
    explore(model, Space(rows=[64]), out, workers=1)
    with pytest.raises(CodesignError, match="holds points of another model, periphery or cost setting: pass --force"):
        explore(model, Space(rows=[64]), out, periphery=PeripheryConfig(clock_hz=5e8), workers=1)
    assert explore(model, Space(rows=[64]), out, periphery=PeripheryConfig(clock_hz=5e8), workers=1,
                   force=True)["computed"] == 1


@pytest.mark.parametrize("args, message", [
    (["--rows", "0,64"], "--rows: 0 is out of range: give 1…4096"),
    (["--rows", "64,x"], "--rows value 2: Input should be a valid integer"),
    (["--cols", "64,64"], "--cols: values repeat; list each once"),
    (["--adc-model", "isaac,flash"], "--adc-model value 2: Input should be 'isaac', 'walden', 'murmann', "
                                     "'zigzag' or 'neurosim-sar'"),
    (["--budgets", "0.5"], "the space: budgets need data: give the dataset to calibrate on (e.g. digits)"),
    (["--budgets", "-1", "--data", "digits"], "--budgets: budgets are percentage points, finite and at least 0"),
    (["--workers", "0"], "argument --workers: 0 is out of range: give at least 1"),
])
def test_bad_options_get_one_line(args, message, tmp_path, capsys):
    assert main(["explore", "--out", str(tmp_path / "ex"), *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"codesign: error: {message}") and err.count("\n") == 1


def test_a_bad_space_file_names_the_file_and_key(tmp_path, capsys):
    path = tmp_path / "space.json"
    path.write_text(json.dumps({"rows": [64], "colz": [64]}))
    assert main(["explore", "--space", str(path), "--out", str(tmp_path / "ex")]) == 1
    assert capsys.readouterr().err == f"codesign: error: {path}: colz: Extra inputs are not permitted\n"
    path.write_text("[1]")
    assert main(["explore", "--space", str(path), "--out", str(tmp_path / "ex")]) == 1
    assert capsys.readouterr().err.startswith(f"codesign: error: {path}: give a JSON object of lists")


def test_parse_space_names_the_field():
    with pytest.raises(CodesignError, match=r"^space.json: rows: Input should be a valid list$"):
        parse_space({"rows": 64}, lambda field: f"space.json: {field}")
