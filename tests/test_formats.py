"""Every model format codesign reads, built in the test from one small CNN (issue 13).

The network has a strided convolution, a dilated grouped one, a depthwise one and a Linear layer.
torch.ao quantizes it (per-channel symmetric qint8 weights, quint8 activations); the float formats
are written from the *dequantized* network, so every file holds the same integer weights. The
integers codesign reads must equal ``int_repr()`` (or the ONNX initializers) exactly, and the
analysis of every format must give the same ``adc_bits`` in every tile.
"""

import warnings

import numpy as np
import onnx
import pytest
import torch
from onnx import helper, numpy_helper
from torch import nn
from torch.ao import quantization as tq

from codesign.analysis import analyze
from codesign.config import CrossbarConfig
from codesign.emulate import calibrate_inputs, emulated_module
from codesign.ingest import LayerSpec, ModelSpec, load_model

SHAPE = (3, 12, 12)
NAMES = ["stem", "grouped", "depthwise", "fc"]
GROUPS = {"stem": 1, "grouped": 2, "depthwise": 12, "fc": 1}


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant, self.dequant = tq.QuantStub(), tq.DeQuantStub()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)                      # 12×12 → 6×6
        self.relu1 = nn.ReLU()
        self.grouped = nn.Conv2d(8, 12, 3, padding=2, dilation=2, groups=2)
        self.relu2 = nn.ReLU()
        self.depthwise = nn.Conv2d(12, 12, 3, padding=1, groups=12, bias=False)
        self.relu3 = nn.ReLU()
        self.fc = nn.Linear(12 * 6 * 6, 10)

    def forward(self, x):
        x = self.relu1(self.stem(self.quant(x)))
        x = self.relu3(self.depthwise(self.relu2(self.grouped(x))))
        return self.dequant(self.fc(torch.flatten(x, 1)))


QCONFIG = tq.QConfig(activation=tq.MinMaxObserver.with_args(dtype=torch.quint8),
                     weight=tq.PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric,
                                                                  quant_min=-127, quant_max=127))


def quantized(net, qconfig, images):
    model = SmallCNN().eval()
    model.load_state_dict(net.state_dict())
    model.qconfig = qconfig
    tq.fuse_modules(model, [["stem", "relu1"], ["grouped", "relu2"], ["depthwise", "relu3"]], inplace=True)
    prepared = tq.prepare(model)
    prepared(images)
    return tq.convert(prepared)


def integers_of(qmodel):
    """{layer: (int_repr as int64, scales per output channel)} of a converted torch.ao model."""
    out = {}
    for name in NAMES:
        weight = getattr(qmodel, name).weight()
        scale = (weight.q_per_channel_scales().double().numpy() if weight.qscheme() != torch.per_tensor_affine
                 else np.full(weight.shape[0], weight.q_scale()))
        out[name] = (weight.int_repr().long().numpy(), scale)
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Every format of the same network: {label: path}, plus the integers and scales."""
    warnings.simplefilter("ignore")
    root = tmp_path_factory.mktemp("formats")
    torch.manual_seed(0)
    net = SmallCNN().eval()
    images = torch.rand(64, *SHAPE)
    qmodel = quantized(net, QCONFIG, images)
    ints = integers_of(qmodel)
    dense = SmallCNN().eval()           # the float network whose weights are exactly q · scale
    with torch.no_grad():
        for name in NAMES:
            layer = getattr(dense, name)
            q, scale = ints[name]
            layer.weight.copy_(torch.from_numpy(q * scale.reshape((-1,) + (1,) * (q.ndim - 1))))
            if layer.bias is not None:
                layer.bias.copy_(getattr(net, name).bias)
    x = torch.rand(2, *SHAPE)
    paths = {}

    def path(label, suffix=".pt"):
        paths[label] = root / f"{label}{suffix}"
        return paths[label]

    torch.save(dense.state_dict(), path("state_dict"))
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in dense.state_dict().items()}, path("safetensors", ".safetensors"))
    torch.jit.save(torch.jit.script(dense), path("scripted"))
    torch.jit.save(torch.jit.trace(dense, x), path("traced"))
    program = torch.export.export(dense, (x,), dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    torch.export.save(program, path("pt2", ".pt2"))
    torch.onnx.export(dense, (x,), path("onnx", ".onnx"), dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "batch"}})
    qdq_graph(paths["onnx"], ints, path("qdq", ".onnx"))
    qonnx_graph(paths["onnx"], ints, path("qonnx", ".onnx"))
    torch.save(qmodel.state_dict(), path("ao_state_dict"))
    torch.jit.save(torch.jit.script(qmodel), path("ao_scripted"))
    torch.jit.save(torch.jit.trace(qmodel, x), path("ao_traced"))
    per_tensor = quantized(net, tq.QConfig(activation=tq.MinMaxObserver.with_args(dtype=torch.quint8),
                                           weight=tq.MinMaxObserver.with_args(dtype=torch.qint8,
                                                                              qscheme=torch.per_tensor_symmetric)), images)
    torch.jit.save(torch.jit.trace(per_tensor, x), path("ao_per_tensor"))
    dynamic = tq.quantize_dynamic(SmallCNN().eval(), {nn.Linear}, dtype=torch.qint8)
    torch.save(dynamic.state_dict(), path("ao_dynamic"))
    return {"paths": paths, "ints": ints, "output_scale": float(qmodel.fc.scale), "per_tensor": integers_of(per_tensor),
            "dynamic": dynamic.fc.weight().int_repr().long().numpy(), "net": dense, "root": root, "images": images}


def _weight_node(graph, name):
    return next(i for i in graph.initializer if i.name == f"{name}.weight")


def qdq_graph(source, ints, target):
    """The float ONNX graph with every weight replaced by DequantizeLinear of its int8 initializer
    (the QDQ form onnxruntime writes), and a QuantizeLinear/DequantizeLinear pair on the stem's input."""
    model = onnx.load(str(source))
    graph = model.graph
    nodes = []
    for name in NAMES:
        init = _weight_node(graph, name)
        q, scale = ints[name]
        graph.initializer.remove(init)
        graph.initializer.extend([numpy_helper.from_array(q.astype(np.int8), f"{name}.weight_quantized"),
                                  numpy_helper.from_array(scale.astype(np.float32), f"{name}.weight_scale"),
                                  numpy_helper.from_array(np.zeros(len(scale), np.int8), f"{name}.weight_zero_point")])
        nodes.append(helper.make_node("DequantizeLinear", [f"{name}.weight_quantized", f"{name}.weight_scale",
                                                           f"{name}.weight_zero_point"], [f"{name}.weight"],
                                      axis=0 if name != "fc" else 0))
    graph.initializer.extend([numpy_helper.from_array(np.array(1 / 255, np.float32), "x_scale"),
                              numpy_helper.from_array(np.array(0, np.uint8), "x_zero_point")])
    nodes += [helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zero_point"], ["x_q"]),
              helper.make_node("DequantizeLinear", ["x_q", "x_scale", "x_zero_point"], ["x_dq"])]
    for node in graph.node:
        node.input[:] = ["x_dq" if i == "x" else i for i in node.input]
    old = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + old)
    onnx.checker.check_model(model)
    onnx.save(model, str(target))


def qonnx_graph(source, ints, target):
    """QONNX: Brevitas-style ``Quant`` nodes on the float weights (8-bit signed, narrow range) and an
    unsigned 8-bit ``Quant`` on the stem's input."""
    model = onnx.load(str(source))
    graph = model.graph
    nodes = []
    graph.initializer.extend([numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
                              numpy_helper.from_array(np.array(8.0, np.float32), "eight"),
                              numpy_helper.from_array(np.array(1 / 255, np.float32), "x_scale")])
    for name in NAMES:
        q, scale = ints[name]
        shape = (-1,) + (1,) * (q.ndim - 1)
        graph.initializer.append(numpy_helper.from_array(scale.astype(np.float32).reshape(shape), f"{name}.scale"))
        nodes.append(helper.make_node("Quant", [f"{name}.weight", f"{name}.scale", "zero", "eight"],
                                      [f"{name}.weight_quant"], domain="qonnx.custom_op.general", signed=1, narrow=1,
                                      rounding_mode="ROUND"))
    nodes.append(helper.make_node("Quant", ["x", "x_scale", "zero", "eight"], ["x_quant"],
                                  domain="qonnx.custom_op.general", signed=0, narrow=0, rounding_mode="ROUND"))
    renamed = {"x": "x_quant", **{f"{name}.weight": f"{name}.weight_quant" for name in NAMES}}
    for node in graph.node:
        node.input[:] = [renamed.get(i, i) for i in node.input]
    old = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + old)
    model.opset_import.append(helper.make_opsetid("qonnx.custom_op.general", 1))
    onnx.save(model, str(target))


def full_weights(spec: ModelSpec, name: str) -> np.ndarray:
    """The layer's integers as a PyTorch-shaped weight [Cout, Cin/g, kh, kw] or [out, in]."""
    groups = [layer for layer in spec.layers if layer.name == name]
    matrix = np.concatenate([layer.q for layer in groups], axis=1)       # [K, Cout]
    first = groups[0]
    if first.kind == "conv2d":
        kh, kw = first.conv.kernel
        return matrix.T.reshape(matrix.shape[1], -1, kh, kw)
    return matrix.T


GRAPH_FORMATS = ["scripted", "traced", "pt2", "onnx", "qdq", "qonnx", "ao_scripted", "ao_traced"]
WEIGHT_FORMATS = ["state_dict", "safetensors", "ao_state_dict"]


@pytest.mark.parametrize("label", GRAPH_FORMATS + WEIGHT_FORMATS)
def test_integers_equal_int_repr(files, label):
    spec = load_model(files["paths"][label], per_channel=True)
    names = [l.name for l in spec.layers if l.group == 0]
    assert names == NAMES if label != "safetensors" else sorted(names) == sorted(NAMES)   # its header is sorted
    for name in NAMES:
        q, scale = files["ints"][name]
        assert np.array_equal(full_weights(spec, name), q), (label, name)
        layer_scale = np.concatenate([l.scale for l in spec.layers if l.name == name])
        assert np.allclose(layer_scale, scale, rtol=1e-6), (label, name)
        assert all(l.weight_bits == 8 for l in spec.layers)
    grouped = [l for l in spec.layers if l.name == "grouped"]
    if label in GRAPH_FORMATS:
        assert len(grouped) == 2 and grouped[0].conv.dilation == (2, 2) and grouped[0].q.shape == (36, 6)
        assert spec.layers[0].conv.stride == (2, 2) and sum(l.name == "depthwise" for l in spec.layers) == 12
    else:
        assert len(grouped) == 1 and any("groups=1" in note for note in spec.notes)


def test_per_tensor_and_dynamic_quantization(files):
    spec = load_model(files["paths"]["ao_per_tensor"])
    for name in NAMES:
        q, scale = files["per_tensor"][name]
        assert np.array_equal(full_weights(spec, name), q)
        assert np.ptp(np.concatenate([l.scale for l in spec.layers if l.name == name])) == 0
    spec = load_model(files["paths"]["ao_dynamic"])     # float convolutions, a dynamic quantized Linear
    assert np.array_equal(full_weights(spec, "fc"), files["dynamic"])


def _regrouped(spec: ModelSpec) -> ModelSpec:
    """A state_dict's groups=1 matrices split into the network's groups (a state_dict cannot say them)."""
    layers = []
    for layer in spec.layers:
        groups = GROUPS[layer.name]
        width = layer.q.shape[1] // groups
        for g in range(groups):
            columns = slice(g * width, (g + 1) * width)
            layers.append(LayerSpec(layer.name, layer.kind, g, np.ascontiguousarray(layer.q[:, columns]),
                                    layer.scale[columns], layer.weight_bits, layer.input_bits, layer.conv))
    return ModelSpec(layers, spec.info)


def test_analysis_is_identical_in_every_format(files):
    crossbar = CrossbarConfig(rows=32, cols=32)

    def bits(spec):
        return [(layer.key, [tile.adc_bits for tile in layer.tiles]) for layer in analyze(spec, crossbar).to_config().layers]

    reference = bits(load_model(files["paths"]["ao_scripted"]))
    assert len(reference) == 1 + 2 + 12 + 1
    for label in GRAPH_FORMATS:
        assert bits(load_model(files["paths"][label], per_channel=True)) == reference, label
    for label in WEIGHT_FORMATS:
        assert sorted(bits(_regrouped(load_model(files["paths"][label], per_channel=True)))) == sorted(reference), label
    changed = load_model(files["paths"]["qdq"], per_channel=True)
    changed.layers[-1].q[0, 0] += 1                  # the comparison can fail
    assert bits(changed) != reference


@pytest.mark.parametrize("label", ["scripted", "traced", "pt2", "onnx", "qdq", "qonnx", "ao_scripted", "ao_traced"])
def test_graph_formats_run_like_the_network(files, label):
    """The float mode of every graph equals the network itself; the ideal integer mode of a quantized
    graph equals its own framework's quantized run (torch.ao kernels, onnxruntime)."""
    spec = load_model(files["paths"][label], per_channel=True)
    images = files["images"][:16]
    module = spec.graph_module()
    with torch.no_grad():
        expected = files["net"](images)
        assert torch.allclose(module(images), expected, atol=1e-4), label
        quant = calibrate_inputs(spec, files["images"].numpy())
        if label.startswith("ao_"):
            assert {q.source for q in quant.values()} == {"model"}
        if label in ("qdq", "qonnx"):          # their QuantizeLinear / Quant on the input: 1/255, zero point 0
            assert quant["stem"].source == "model" and quant["stem"].scale == pytest.approx(1 / 255)
            assert quant["fc"].source == "train"
        ideal = emulated_module(spec, quant, "ideal")(images)
        native = module.native(images)
        if label.startswith("ao_"):
            # equal up to torch.ao's requantization rounding: at most one step of the output scale
            assert (ideal.float() - native.float()).abs().max() <= files["output_scale"] * 1.01, label
        assert (ideal.argmax(1) == expected.argmax(1)).float().mean() >= 0.75


def test_onnxruntime_quantized_models_read_their_initializers(tmp_path, files):
    """onnxruntime's own QDQ (per channel), QOperator (QLinearConv/QGemm) and dynamic
    (ConvInteger/MatMulInteger) models: the integers codesign reads are the initializers, exactly."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static

    images = files["images"].numpy()

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"x": images[i:i + 16]} for i in range(0, len(images), 16)])

        def get_next(self):
            return next(self.batches, None)

    source = files["paths"]["onnx"]
    made = {}
    for label, fmt, per_channel in (("qdq", QuantFormat.QDQ, True), ("qop", QuantFormat.QOperator, False)):
        made[label] = tmp_path / f"{label}.onnx"
        quantize_static(str(source), str(made[label]), Reader(), quant_format=fmt, per_channel=per_channel,
                        weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)
    made["dynamic"] = tmp_path / "dynamic.onnx"
    quantize_dynamic(str(source), str(made["dynamic"]), weight_type=QuantType.QInt8)
    for label, path in made.items():
        model = onnx.load(str(path))
        initializers = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        spec = load_model(path)
        ops = {node.op_type for node in model.graph.node}
        assert ops & {"DequantizeLinear", "QLinearConv", "ConvInteger"}, label
        for name in NAMES:
            q = initializers[f"{name}.weight_quantized"].astype(np.int64)
            zero = initializers[f"{name}.weight_zero_point"].astype(np.int64).reshape((-1,) + (1,) * (q.ndim - 1))
            if name == "fc" and q.shape[0] != 10:       # MatMul/QGemm weights may be stored [in, out]
                q, zero = q.T, zero.T
            assert np.array_equal(full_weights(spec, name), q - zero), (label, name)
        assert len(spec.layers) == 16, label


def test_brevitas_qonnx_export(tmp_path):
    """The reference QONNX case: a Brevitas model (4-bit weights, 8-bit signed input, 4-bit ReLUs)
    exported with ``export_qonnx``; the integers equal Brevitas' ``quant_weight().int()`` and the
    ideal integer emulation computes Brevitas' own quantized forward pass."""
    import brevitas.nn as qnn
    from brevitas.export import export_qonnx

    class Brevitas(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = qnn.QuantIdentity(return_quant_tensor=True)
            self.stem = qnn.QuantConv2d(3, 8, 3, stride=2, padding=1, weight_bit_width=4, return_quant_tensor=True)
            self.relu1 = qnn.QuantReLU(bit_width=4, return_quant_tensor=True)
            self.grouped = qnn.QuantConv2d(8, 12, 3, padding=2, dilation=2, groups=2, weight_bit_width=4,
                                           return_quant_tensor=True)
            self.relu2 = qnn.QuantReLU(bit_width=4, return_quant_tensor=True)
            self.depthwise = qnn.QuantConv2d(12, 12, 3, padding=1, groups=12, weight_bit_width=4,
                                             return_quant_tensor=True)
            self.relu3 = qnn.QuantReLU(bit_width=4, return_quant_tensor=True)
            self.fc = qnn.QuantLinear(12 * 6 * 6, 10, bias=True, weight_bit_width=4)

        def forward(self, x):
            x = self.relu2(self.grouped(self.relu1(self.stem(self.inp(x)))))
            return self.fc(self.relu3(self.depthwise(x)).flatten(1))

    warnings.simplefilter("ignore")
    torch.manual_seed(3)
    model = Brevitas().eval()
    images = torch.rand(32, *SHAPE)
    with torch.no_grad():
        model(images)
    path = tmp_path / "brevitas.onnx"
    export_qonnx(model, images[:2], str(path))
    spec = load_model(path)
    assert [l.name for l in spec.layers if l.group == 0] == NAMES and {l.weight_bits for l in spec.layers} == {4}
    for name in NAMES:
        assert np.array_equal(full_weights(spec, name), getattr(model, name).quant_weight().int().numpy()), name
    quant = calibrate_inputs(spec, images.numpy())
    assert {q.source for q in quant.values()} == {"model"} and quant["grouped"].high == 15
    with torch.no_grad():
        ideal = emulated_module(spec, quant, "ideal")(images)
        assert torch.allclose(ideal.float(), model(images).float(), atol=1e-5)


def test_onnx_positions_match_the_network(files):
    """Products per inference from the ONNX graph's shapes equal those of the network itself."""
    reference = {l.key: l.positions for l in load_model(files["paths"]["scripted"]).layers}
    for label in ("onnx", "qdq", "qonnx", "pt2"):
        assert {l.key: l.positions for l in load_model(files["paths"][label]).layers} == \
            {key: 36 if not key.startswith("fc") else 1 for key in reference}, label


def test_onnx_with_external_data(files, tmp_path):
    """torch.onnx.export's default (dynamo) writes the weights to a data file next to the model."""
    path = tmp_path / "external.onnx"
    torch.onnx.export(files["net"], (torch.rand(2, *SHAPE),), path, dynamo=True, external_data=True)
    data = [p for p in tmp_path.iterdir() if p.name != "external.onnx"]
    assert data and path.stat().st_size < 100_000                   # the weights are outside the .onnx
    spec = load_model(path, per_channel=True)
    for name in NAMES:
        assert np.array_equal(full_weights(spec, name), files["ints"][name][0]), name
    with torch.no_grad():
        images = files["images"][:4]
        assert torch.allclose(spec.graph_module()(images), files["net"](images), atol=1e-4)
    data[0].write_bytes(data[0].read_bytes()[:100])                 # a data file that does not belong
    with pytest.raises(Exception, match="does not hold its .* bytes"):
        load_model(path)
