"""Calibration below lossless: error tables against measured errors, the search, the command."""

import json

import numpy as np
import pytest

from codesign.analysis import analyze
from codesign.calibrate import (BISECTIONS, TOLERANCE_SWEEP, calibrate, collect_stats, configure, error_table,
                                search_tolerance, total_bits)
from codesign.cli import main
from codesign.config import CrossbarConfig, check_against_model, parse_config
from codesign.data import load_dataset
from codesign.emulate import calibrate_inputs, emulated_module, predict
from codesign.golden import CrossbarLayer
from codesign.ingest import load_model


@pytest.fixture(scope="module")
def setup():
    """The bundled model, its lossless config, scales, a few train images and every layer's inputs."""
    model = load_model()
    base = analyze(model, CrossbarConfig()).to_config()
    images, _ = load_dataset("digits", "train")
    images = images[:24]
    quant = calibrate_inputs(model, images)
    inputs = {}
    predict(emulated_module(model, quant, "ideal",
                            observer=lambda key, u: inputs.setdefault(key, []).append(u)), images)
    return model, base, quant, images, {key: np.concatenate(parts) for key, parts in inputs.items()}


@pytest.fixture(scope="module")
def tables(setup):
    model, base, quant, images, _ = setup
    stats = collect_stats(model, base, quant, images)
    assert all(layer.stride == 1 for layer in stats.values())     # 24 images: every vector histogrammed
    return stats, {key: [error_table(tile, layer.vectors, layer.mean_output) for tile in layer.tiles]
                   for key, layer in stats.items()}


def test_tolerance_zero_is_exact_on_the_calibration_vectors(setup, tables):
    model, base, _, _, inputs = setup
    config = configure(base, tables[1], 0.0)
    assert total_bits(config) < total_bits(base)                  # real data never reaches some peaks
    for spec in model.layers:
        x = inputs[spec.key]
        np.testing.assert_array_equal(CrossbarLayer(spec.q, config, config.layer(spec.key))(x),
                                      x @ spec.q.astype(np.int64), err_msg=spec.key)


def test_error_table_predicts_the_measured_error(setup, tables):
    """With one lossy column per logical output, E_p(b, k) is exactly the mean |error| of that output."""
    model, base, _, _, inputs = setup
    stats, all_tables = tables
    spec = model.layer("features.5")
    layer = base.layer(spec.key)
    x = inputs[spec.key]
    exact = x @ spec.q.astype(np.int64)
    m = stats[spec.key].mean_output
    checked = 0
    for tile_index, table in enumerate(all_tables[spec.key]):
        for p in np.flatnonzero(table.lossless >= 3)[:6]:
            for b in (table.lossless[p] - 1, table.lossless[p] - 3):
                config = base.model_copy(deep=True)
                tile = config.layer(spec.key).tiles[tile_index]
                tile.adc_bits[p], tile.adc_shift[p] = int(b), int(table.shift[p, b])
                out = CrossbarLayer(spec.q, config, config.layer(spec.key))(x)
                j = tile.col_start + p // (2 * config.geometry(layer).slices)
                measured = np.abs(out[:, j] - exact[:, j]).mean()
                assert table.error[p, b] * m == pytest.approx(measured, rel=1e-9, abs=1e-9)
                checked += 1
    assert checked >= 12


def test_settings_stay_at_or_below_lossless_and_shrink_with_tolerance(tables):
    for key, layer_tables in tables[1].items():
        for table in layer_tables:
            previous = table.lossless
            for tolerance in (0.0, 1e-3, 1e-2, 1e-1, 10.0):
                bits, shift = table.settings(tolerance)
                assert (bits <= previous).all() and (bits + shift <= np.maximum(table.lossless, bits)).all()
                previous = bits
            bits, shift = table.settings(None)
            assert (bits == table.lossless).all() and not shift.any()


def test_search_finds_the_largest_tolerance_within_budget():
    rate = lambda tau: 100 * tau                 # noqa: E731 - a monotone stand-in for the flip rate
    tolerance, history = search_tolerance(rate, 1.0)
    assert rate(tolerance) <= 1.0
    step = (TOLERANCE_SWEEP.step / 2 ** BISECTIONS)
    assert rate(tolerance * 2 ** step) > 1.0 or tolerance == 2.0 ** TOLERANCE_SWEEP[-1]
    assert history[0] == (0.0, 0.0) and len(history) <= 1 + len(TOLERANCE_SWEEP) + BISECTIONS
    assert search_tolerance(lambda tau: 5.0, 1.0)[0] is None             # even τ = 0 breaks the budget
    assert search_tolerance(lambda tau: 0.0, 1.0)[0] == 2.0 ** TOLERANCE_SWEEP[-1]


def test_calibrate_saves_bits_within_budget(setup):
    model, base, quant, images, _ = setup
    search, _ = load_dataset("digits", "test")
    search = search[:30]
    result = calibrate(model, base, quant, images, search, budget=5.0)
    assert total_bits(result.config) < total_bits(result.lossless) == total_bits(base)
    check_against_model(parse_config(result.config.to_json()), model.layers)
    ideal = predict(emulated_module(model, quant, "ideal"), search)
    crossbar = predict(emulated_module(model, quant, "crossbar", result.config), search)
    assert (crossbar != ideal).mean() * 100 <= 5.0
    assert max(rate for tau, rate in result.history if tau <= result.tolerance) <= 5.0


@pytest.fixture
def small_digits(monkeypatch):
    import codesign.data

    real = codesign.data.load_dataset
    monkeypatch.setattr(codesign.data, "load_dataset", lambda spec, split="test": tuple(a[:30] for a in real(spec, split)))


def chosen_flip_rate(report):
    """The flip rate the search measured at the tolerance it chose."""
    return next(step["flip_rate"] for step in reversed(report["search"]) if step["tau"] == report["tolerance"])


def test_cli_calibrate_searches_val_and_reports_test(tmp_path, capsys, small_digits):
    out = tmp_path / "hw.json"
    assert main(["calibrate", "--data", "digits", "--budget", "3", "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    config = parse_config(out.read_text())
    assert total_bits(config) == report["bits"]["calibrated"] < report["bits"]["lossless"]
    assert report["search_split"] == "val"
    assert [split for split, row in report["accuracy"].items() if row["searched"]] == ["val"]
    assert set(report["accuracy"]) == {"train", "val", "test"}
    assert report["accuracy"]["val"]["flip_rate"] == chosen_flip_rate(report) <= 3
    assert main(["calibrate", "--data", "digits", "--budget", "3", "--out", str(out)]) == 1
    assert "exists; pass --force" in capsys.readouterr().err


def test_cli_calibrate_search_split_option_and_summary(tmp_path, capsys, small_digits):
    out = tmp_path / "hw.json"
    assert main(["calibrate", "--data", "digits", "--budget", "3", "--out", str(out)]) == 0
    summary = capsys.readouterr().out
    assert "search on the val split" in summary and "accuracy drop on the untouched test split" in summary
    assert main(["calibrate", "--data", "digits", "--budget", "3", "--search-split", "test", "--out", str(out),
                 "--force", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [split for split, row in report["accuracy"].items() if row["searched"]] == ["test"]
    assert report["accuracy"]["test"]["flip_rate"] == chosen_flip_rate(report) <= 3


def test_cli_calibrate_rejects_a_negative_budget(tmp_path, capsys):
    assert main(["calibrate", "--data", "digits", "--budget", "-1", "--out", str(tmp_path / "c.json")]) == 1
    assert "argument --budget: -1 is out of range: give at least 0" in capsys.readouterr().err
    assert not (tmp_path / "c.json").exists()
