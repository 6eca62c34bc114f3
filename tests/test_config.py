"""HardwareConfig: round trip, schema, and errors that name the layer and tile."""

import json

import numpy as np
import pytest

from codesign.analysis import analyze
from codesign.config import (CrossbarConfig, HardwareConfig, PeripheryConfig, check_against_model, parse_config,
                             schema_json)
from codesign.errors import CodesignError
from codesign.ingest import LayerSpec, ModelSpec
from codesign.config import ModelInfo


def model(*shapes, seed=0):
    rng = np.random.default_rng(seed)
    layers = [LayerSpec(f"layer{i}", "linear", 0, rng.integers(-127, 128, size=s).astype(np.int32),
                        np.ones(s[1]), 8, 8) for i, s in enumerate(shapes)]
    return ModelSpec(layers, ModelInfo(path="m.pt", sha256="0" * 64, format="state_dict"))


@pytest.fixture
def config():
    return analyze(model((100, 20), (30, 7)), CrossbarConfig(rows=64, cols=64)).to_config()


def test_json_round_trip_is_lossless(config):
    text = config.to_json()
    again = parse_config(text)
    assert again == config
    assert again.to_json() == text


def test_schema_is_valid_json_schema():
    schema = json.loads(schema_json())
    assert schema["title"] == "codesign hw_config.json"
    assert {"schema_version", "crossbar", "layers"} <= set(schema["properties"])
    assert "adc_bits" in schema["$defs"]["TileConfig"]["properties"]


def edited(config, mutate):
    data = json.loads(config.to_json())
    mutate(data)
    return json.dumps(data)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["layers"][1]["tiles"][0]["adc_bits"].__setitem__(3, 17),
     r"layer 'layer1' tile 0 adc_bits\[3\]: Input should be less than or equal to 16"),
    (lambda d: d["layers"][0]["tiles"][2]["adc_shift"].__setitem__(0, -1),
     r"layer 'layer0' tile 2 adc_shift\[0\]: Input should be greater than or equal to 0"),
    (lambda d: d["layers"][0]["tiles"][1]["adc_bits"].pop(),
     r"layer 'layer0' tile 1: adc_bits has 63 entries, expected 64"),
    (lambda d: d["layers"][0]["tiles"][0].__setitem__("row_count", 65),
     r"layer 'layer0' tile 0: row_count 65 exceeds the crossbar's 64 rows"),
    (lambda d: d["crossbar"].__setitem__("cols", 4),
     r"layer 'layer0': cols=4 cannot hold one weight"),
    (lambda d: d.__setitem__("schema_version", 2), r"schema_version: Input should be 1"),
    (lambda d: d["layers"][0].__setitem__("colour", "red"), r"layer 'layer0' colour: Extra inputs are not permitted"),
])
def test_schema_errors_name_layer_and_tile(config, mutate, message):
    with pytest.raises(CodesignError, match=message):
        parse_config(edited(config, mutate))


def test_config_checked_against_model(config):
    m = model((100, 20), (30, 7))
    check_against_model(config, m.layers)
    with pytest.raises(CodesignError, match=r"layer 'layer1': config matrix is 30×7, the model's is 31×7"):
        check_against_model(config, model((100, 20), (31, 7)).layers)
    with pytest.raises(CodesignError, match="config layer 'layer1' is not in the model"):
        check_against_model(config, model((100, 20)).layers)


def test_tiles_must_cover_the_matrix(config):
    m = model((100, 20), (30, 7))
    gap = parse_config(edited(config, lambda d: d["layers"][0]["tiles"].pop(1)))
    with pytest.raises(CodesignError, match=r"layer 'layer0': the tiles do not cover the matrix — row 0, column 8"):
        check_against_model(gap, m.layers)

    def overlap(d):
        d["layers"][1]["tiles"][0]["row_count"] = 20
        d["layers"][1]["tiles"].append(dict(d["layers"][1]["tiles"][0], row_start=10))
    with pytest.raises(CodesignError, match=r"layer 'layer1': tiles 0 and 1 overlap at row 10, column 0"):
        check_against_model(parse_config(edited(config, overlap)), m.layers)


def test_bad_json_is_one_line():
    with pytest.raises(CodesignError, match=r"not valid JSON \(Expecting value at line 1 column 1\)"):
        parse_config("nope")


def test_per_layer_crossbar_override(config):
    data = json.loads(config.to_json())
    data["layers"][1]["crossbar"] = {"rows": 32, "cols": 16}
    data["layers"][1]["tiles"] = []
    parsed = HardwareConfig.model_validate(data)
    assert parsed.geometry(parsed.layers[1]).rows == 32 and parsed.geometry(parsed.layers[0]).rows == 64


def test_periphery_section_defaults_and_conversion_cycles(config):
    data = json.loads(config.to_json())
    assert data["periphery"] == {"adc_interface": "macro", "clock_hz": 1e9, "adc_sample_rate_hz": 1.2e9,
                                 "stream_bits": 128}
    del data["periphery"]                                  # a config written before the section existed
    assert parse_config(json.dumps(data)).periphery == config.periphery
    cycles = {(clock, rate): PeripheryConfig(clock_hz=clock, adc_sample_rate_hz=rate).conversion_cycles
              for clock, rate in [(1e9, 1.2e9), (1e9, 1e9), (1e9, 4e8), (5e8, 1e8), (1e9, 3e8)]}
    assert cycles == {(1e9, 1.2e9): 1, (1e9, 1e9): 1, (1e9, 4e8): 3, (5e8, 1e8): 5, (1e9, 3e8): 4}
    assert PeripheryConfig(adc_interface="sar", adc_sample_rate_hz=1e8).conversion_cycles == 1


@pytest.mark.parametrize("section, values, message", [
    ("periphery", {"clock_hz": 2e9}, "periphery clock_hz: Input should be less than or equal to 1000000000"),
    ("periphery", {"adc_interface": "flash"}, "periphery adc_interface: Input should be 'macro' or 'sar'"),
    ("periphery", {"stream_bits": 129}, "periphery stream_bits: Input should be less than or equal to 128"),
    ("crossbar", {"adcs": 65}, "crossbar: adcs 65 exceeds the 64 physical columns of a crossbar: at most one ADC "
                               "per column"),
])
def test_periphery_and_adc_count_errors_are_one_line(config, section, values, message):
    data = json.loads(config.to_json())
    data[section].update(values)
    with pytest.raises(CodesignError) as error:
        parse_config(json.dumps(data), "c.json")
    assert str(error.value) == f"c.json: {message}"


def test_more_adcs_than_logical_columns_are_allowed():
    crossbar = CrossbarConfig(rows=64, cols=64, adcs=64)
    assert analyze(model((100, 20)), crossbar).to_config().crossbar.adcs == 64
