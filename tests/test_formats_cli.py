"""The bundled model exported to ONNX (float and QDQ int8), torch.ao static int8 and ``.pt2``:
``codesign emulate``, ``generate`` and ``simulate`` on each (issue 13)."""

import json
import warnings

import numpy as np
import pytest
import torch

from codesign.cli import main
from codesign.data import load_dataset
from codesign.emulate import calibrate_inputs, emulated_module
from codesign.ingest import load_model

ONE_IMAGE = 100 / 360      # one test image, in percent


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from torch.ao.quantization import quantize_fx

    warnings.simplefilter("ignore")
    root = tmp_path_factory.mktemp("bundled")
    net = load_model(None).module.eval()
    train, _ = load_dataset("digits", "train")
    sample = torch.zeros(1, 1, 8, 8)
    paths = {"onnx": root / "digits.onnx", "qdq": root / "digits_qdq.onnx", "ao": root / "digits_int8.pt",
             "pt2": root / "digits.pt2"}
    torch.onnx.export(net, (sample,), paths["onnx"], dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "batch"}})

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"x": train[i:i + 128]} for i in range(0, len(train), 128)])

        def get_next(self):
            return next(self.batches, None)

    quantize_static(str(paths["onnx"]), str(paths["qdq"]), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)
    qconfig = torch.ao.quantization.get_default_qconfig_mapping("fbgemm")
    prepared = quantize_fx.prepare_fx(net, qconfig, (sample,))
    with torch.no_grad():
        prepared(torch.from_numpy(train))
    converted = quantize_fx.convert_fx(prepared)
    torch.jit.save(torch.jit.trace(converted, sample), paths["ao"])
    paths["ao_state_dict"] = root / "digits_int8_state_dict.pt"
    torch.save(converted.state_dict(), paths["ao_state_dict"])
    program = torch.export.export(net, (sample.repeat(2, 1, 1, 1),),
                                  dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    torch.export.save(program, paths["pt2"])
    return paths


def emulate_json(capsys, path):
    assert main(["emulate", "--data", "digits", "--model", str(path), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("label", ["onnx", "qdq", "ao", "pt2"])
def test_emulate_ideal_equals_the_native_framework(exported, capsys, label):
    report = emulate_json(capsys, exported[label])
    accuracy = report["accuracy"]
    assert accuracy["crossbar"] == accuracy["ideal"]          # lossless config: the same predictions
    if label in ("qdq", "ao"):
        assert report["activation_scales_from"] == "model"
        assert abs(accuracy["ideal"] - accuracy["native"]) <= ONE_IMAGE + 1e-9
        assert accuracy["native"] > 95
    elif label == "onnx":
        assert accuracy["native"] == pytest.approx(accuracy["float"])   # onnxruntime runs the float graph
    else:
        bundled = emulate_json(capsys, "examples/digits_cnn_pruned.pt")["accuracy"]
        assert accuracy == {mode: bundled[mode] for mode in ("float", "ideal", "crossbar")}


@pytest.mark.parametrize("label", ["qdq", "ao"])
def test_crossbar_equals_ideal_bit_for_bit(exported, label):
    from codesign.analysis import analyze
    from codesign.config import CrossbarConfig

    model = load_model(exported[label])
    config = analyze(model, CrossbarConfig(rows=64, cols=64)).to_config()
    images, _ = load_dataset("digits", "test")
    x = torch.from_numpy(images[:64])
    quant = calibrate_inputs(model, load_dataset("digits", "train")[0])
    with torch.no_grad():
        ideal = emulated_module(model, quant, "ideal")(x)
        crossbar = emulated_module(model, quant, "crossbar", config)(x)
        assert torch.equal(ideal, crossbar)
        tile = config.layers[1].tiles[0]
        tile.adc_bits = [max(0, b - 3) for b in tile.adc_bits]       # the comparison can fail
        assert not torch.equal(ideal, emulated_module(model, quant, "crossbar", config)(x))


@pytest.mark.slow
@pytest.mark.parametrize("label", ["ao", "qdq"])
def test_generate_then_simulate(exported, tmp_path, capsys, label):
    out = tmp_path / "out"
    assert main(["generate", "--model", str(exported[label]), "--rows", "64", "--cols", "64", "--no-report",
                 "--out", str(out)]) == 0
    config = json.loads((out / "hw_config.json").read_text())
    assert config["model"]["format"] == ("torchscript" if label == "ao" else "onnx")
    layer = config["layers"][1]["name"]
    assert main(["simulate", str(out), "--sim", "icarus", "--tiles", f"{layer}:0", "--vectors", "4"]) == 0
    results = json.loads((out / "sim" / "results.json").read_text())
    assert results["passed"] and results["tiles"] and "real layer inputs" in results["inputs"]


def test_fx_state_dict_reads_the_traced_models_integers(exported):
    traced, state = load_model(exported["ao"]), load_model(exported["ao_state_dict"])
    assert [(l.name, l.q.tolist(), l.scale.tolist()) for l in traced.layers] == \
        [(l.name, l.q.tolist(), l.scale.tolist()) for l in state.layers]
    assert traced.info.format == "torchscript" and state.info.format == "state_dict"


@pytest.mark.slow
def test_calibrate_on_an_onnx_qdq_model(exported, tmp_path, capsys):
    out = tmp_path / "calibrated.json"
    assert main(["calibrate", "--model", str(exported["qdq"]), "--data", "digits", "--budget", "1",
                 "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["bits"]["calibrated"] < report["bits"]["lossless"]
    assert report["accuracy"]["val"]["flip_rate"] <= 1.0 and out.is_file()
