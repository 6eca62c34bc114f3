"""``codesign simulate`` on synthetic models: edge cases (all-zero and maximum-sum columns, an empty
tile, saturation, shift > 0, b = 1, partial row and column blocks, three ADCs per tile,
back-pressure) for both ADC interfaces, and seeded random configurations (interface, ADCs up to
the physical columns, conversion cycles, stream width), on Icarus and Verilator, the analog side in
the simulator or in Python. Every case also checks, from the golden model alone, that the situation
it names occurs."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from codesign import golden
from codesign.analysis import analyze
from codesign.config import CrossbarConfig, HardwareConfig, PeripheryConfig
from codesign.errors import CodesignError
from codesign.generate import generate
from codesign.ingest import load_model
from codesign.mapping import lossless_bits, tile_column_sums
from codesign.simulate import corner_vectors, read_mem, simulate


def make_folder(root: Path, q: dict[str, np.ndarray], weight_bits: int, input_bits: int, crossbar: CrossbarConfig,
                edit=None, periphery: PeripheryConfig = PeripheryConfig()) -> tuple[Path, HardwareConfig]:
    """Generate a folder for Linear layers with integer matrices ``q`` (Q[K, N]); ``edit(config)``
    may change ADC bits and shifts first."""
    model_file = root / "model.pt"
    torch.save({f"{name}.weight": torch.tensor(matrix.T, dtype=torch.float32) for name, matrix in q.items()},
               model_file)
    model = load_model(model_file, weight_bits=weight_bits, input_bits=input_bits)
    for name, matrix in q.items():
        assert np.array_equal(model.layer(name).q, matrix), "the weights must stay on their integer grid"
    config = analyze(model, crossbar).to_config().model_copy(update={"periphery": periphery})
    if edit is not None:
        edit(config)
    out = root / "out"
    generate(config, out, report=False)
    return out, config


def column_values(config: HardwareConfig, q: np.ndarray, key: str, x: np.ndarray):
    """(tile, y[B, T, C]) for every tile of layer ``key``."""
    layer = config.layer(key)
    return [(tile, golden.column_values(q, config.geometry(layer), tile, x)) for tile in layer.tiles]


# --- edge cases --------------------------------------------------------------------------------

EDGE_CROSSBAR = CrossbarConfig(rows=8, cols=24, cell_bits=2, dac_bits=2, adcs=3)    # S = 2, L = 6, T = 2
EDGE_BITS = dict(weight_bits=5, input_bits=4)


def edge_matrix() -> np.ndarray:
    """Q[20, 14] (row blocks of 8, 8, 4; column blocks of 6, 6, 2) with column 0 all zero, column 1
    at +15 and column 2 at −15 everywhere (maximum sums), rows 8–15 all zero (empty tiles)."""
    rng = np.random.default_rng(11)
    q = rng.integers(-15, 16, size=(20, 14)) * (rng.random((20, 14)) < 0.6)
    q[:, 0] = 0
    q[:, 1] = 15
    q[:, 2] = -15
    q[8:16] = 0
    return q.astype(np.int32)


def edge_edit(config: HardwareConfig) -> None:
    """Below-lossless settings in the first row block: column 3 at b = 1, column 4 two bits below
    lossless (clipping), column 5 with k = 2 (truncation), columns 6–13 random b and k."""
    rng = np.random.default_rng(12)
    for tile in config.layers[0].tiles:
        if tile.row_start != 0:
            continue
        for p, bits in enumerate(tile.adc_bits):
            j = tile.col_start + p // 4
            if bits == 0:
                continue
            if j == 3:
                tile.adc_bits[p] = 1
            elif j == 4:
                tile.adc_bits[p] = max(1, bits - 2)
            elif j == 5:
                tile.adc_bits[p], tile.adc_shift[p] = max(1, bits - 2), 2
            elif j >= 6:
                tile.adc_bits[p], tile.adc_shift[p] = int(rng.integers(1, bits + 1)), int(rng.integers(0, 4))


@pytest.fixture(scope="module", params=["macro", "sar"])
def edges(request, tmp_path_factory):
    q = edge_matrix()
    periphery = PeripheryConfig(adc_interface=request.param, adc_sample_rate_hz=5e8)   # macro: 2 cycles
    out, config = make_folder(tmp_path_factory.mktemp(f"edges-{request.param}"), {"fc": q}, **EDGE_BITS,
                              crossbar=EDGE_CROSSBAR, edit=edge_edit, periphery=periphery)
    return out, config, q


def test_the_edge_cases_occur(edges):
    """The golden model alone confirms each named situation is in the folder and the corner vector."""
    _, config, q = edges
    layer = config.layer("fc")
    geometry = config.geometry(layer)
    assert [(t.row_start, t.row_count, t.col_start, t.col_count) for t in layer.tiles][-1] == (16, 4, 12, 2)
    assert geometry.adcs == 3 and geometry.logical_cols == 6
    empty = [t for t in layer.tiles if not any(t.adc_bits)]
    assert len(empty) == 3, "row block 8–15 is all zero"
    corner = np.full((1, 20), 15)
    ymax = geometry.rows * geometry.input_digit_max * geometry.digit_max
    clipped = truncated = ones = zero = peak = 0
    for tile, y in column_values(config, q, "fc", corner):
        bits, shift = np.array(tile.adc_bits), np.array(tile.adc_shift)
        used = y[0, :, :len(bits)]
        clipped += int(((used >> shift) > (1 << bits) - 1)[:, bits > 0].sum())
        truncated += int(((used & ((1 << shift) - 1)) != 0)[:, shift > 0].sum())
        ones += int((bits == 1).sum())
        zero += int((bits == 0).sum())
        peak += int((used == ymax).sum())
    assert clipped and truncated and ones and zero and peak


@pytest.mark.parametrize("simulator, mode", [("icarus", "fast"), ("icarus", "python"), ("verilator", "fast")])
def test_edge_cases_are_bit_exact(edges, simulator, mode):
    out, config, _ = edges
    found = simulate(out, simulator=simulator, vectors=4, mode=mode, seed=3)
    assert found["passed"], found["mismatches"][:5] or [t["errors"] for t in found["tiles"]]
    assert len(found["tiles"]) == 9 and all(t["vectors"] == 4 + t["corner_vectors"] for t in found["tiles"])
    assert found["outputs_compared"] == sum(t["vectors"] for t in found["tiles"]) * 6
    assert "random (the model file has no architecture)" in found["inputs"]
    latencies = {t["adc_latency"] for t in found["tiles"]}
    assert latencies == ({1, 2} if config.periphery.adc_interface == "macro" else {1})   # macro: 2 cycles
    assert any(t["back_pressure"]["stalled_output_cycles"] for t in found["tiles"])
    assert any(t["back_pressure"]["idle_input_cycles"] for t in found["tiles"])


# --- random configurations ---------------------------------------------------------------------

def random_case(seed: int, root: Path) -> tuple[Path, HardwareConfig]:
    rng = np.random.default_rng(seed)
    cell_bits = int(rng.integers(1, 4))
    weight_bits = int(rng.integers(3, 9))
    input_bits = int(rng.integers(2, 9))
    slices = -(-(weight_bits - 1) // cell_bits)
    logical = int(rng.integers(1, 5))
    cols = 2 * slices * logical + int(rng.integers(0, 4))
    crossbar = CrossbarConfig(rows=int(rng.integers(4, 13)), cols=cols, cell_bits=cell_bits,
                              dac_bits=int(rng.integers(1, min(3, input_bits) + 1)),
                              adcs=int(rng.choice([1, 2, logical + 1, cols])))
    periphery = PeripheryConfig(adc_interface=str(rng.choice(["macro", "sar"])),
                                adc_sample_rate_hz=float(rng.choice([1.2e9, 5e8, 3.4e8])),
                                stream_bits=int(rng.choice([32, 64, 128])))
    limit = (1 << (weight_bits - 1)) - 1
    shape = (int(rng.integers(crossbar.rows // 2, 3 * crossbar.rows)), int(rng.integers(1, 3 * logical + 1)))
    q = (rng.integers(-limit, limit + 1, size=shape) * (rng.random(shape) < 0.5)).astype(np.int32)
    q[0, 0], q[1, 0] = limit, 1                            # the grid is the integers

    def edit(config: HardwareConfig) -> None:
        for tile in config.layers[0].tiles:
            for p, bits in enumerate(tile.adc_bits):
                if bits and rng.random() < 0.4:
                    tile.adc_bits[p] = int(rng.integers(1, bits + 1))
                    tile.adc_shift[p] = int(rng.integers(0, 3))

    return make_folder(root, {"fc": q}, weight_bits, input_bits, crossbar, edit, periphery)


@pytest.mark.parametrize("seed", range(6))
def test_random_configurations_are_bit_exact(seed, tmp_path):
    out, config = random_case(seed, tmp_path)
    found = simulate(out, vectors=4, mode="python" if seed < 2 else "fast", seed=seed)
    assert found["passed"], (config.crossbar, config.periphery, found["mismatches"][:5],
                             [t["errors"] for t in found["tiles"]])
    assert len(found["tiles"]) == len(config.layers[0].tiles)


def test_the_random_configurations_cover_the_features(tmp_path):
    for seed in range(6):
        (tmp_path / str(seed)).mkdir()
    cases = [random_case(seed, tmp_path / str(seed))[1] for seed in range(6)]
    assert {c.periphery.adc_interface for c in cases} == {"macro", "sar"}
    assert any(c.crossbar.adcs > c.crossbar.cols // 4 for c in cases)
    assert any(c.periphery.conversion_cycles > 1 for c in cases if c.periphery.adc_interface == "macro")


# --- pieces ------------------------------------------------------------------------------------

def test_read_mem_reads_comments_and_refuses_junk(tmp_path):
    mem = tmp_path / "t.mem"
    mem.write_text("// header\n0a5 // b=5 k=5\n  001\n")
    assert read_mem(mem) == [0xa5, 1]
    mem.write_text("0a5\n@10\n")
    with pytest.raises(CodesignError, match=r"t\.mem line 2: '@10' is not a hex word"):
        read_mem(mem)


def test_lossless_bits_of_the_edge_columns(edges):
    """Sanity of the fixture: the maximum-sum column needs the full resolution Wy."""
    _, config, q = edges
    layer = config.layer("fc")
    geometry = config.geometry(layer)
    bits = lossless_bits(tile_column_sums(q, geometry, layer.tiles[0].range), geometry)
    assert bits[4:8].max() == geometry.uniform_bits and bits[0:4].max() == 0


def test_a_single_input_cycle_is_bit_exact(tmp_path):
    """T = 1 (every input bit applied at once): ``input_cycle`` is a 1-bit port that stays 0."""
    rng = np.random.default_rng(21)
    q = (rng.integers(-7, 8, size=(12, 5)) * (rng.random((12, 5)) < 0.7)).astype(np.int32)
    out, config = make_folder(tmp_path, {"fc": q}, weight_bits=4, input_bits=2,
                              crossbar=CrossbarConfig(rows=8, cols=12, cell_bits=2, dac_bits=2))
    geometry = config.geometry(config.layer("fc"))
    assert geometry.input_cycles == 1
    found = simulate(out, simulator="icarus", vectors=4, seed=5)
    assert found["passed"] and len(found["tiles"]) == len(config.layer("fc").tiles)
    assert all(t["vectors"] == 4 + t["corner_vectors"] for t in found["tiles"])
    assert found["outputs_compared"] == sum(t["vectors"] for t in found["tiles"]) * geometry.logical_cols


# --- corner vectors: every accumulator at its extremes ----------------------------------------

CORNER_CROSSBAR = CrossbarConfig(rows=64, cols=64, cell_bits=2, dac_bits=1, adcs=4)   # S = 4, L = 8, T = 8
CORNER_BITS = dict(weight_bits=8, input_bits=8)


def corner_matrix() -> np.ndarray:
    """Q[192, 12] (three full row blocks, column blocks of 8 and 4): weights ±100 … 127 with a random
    sign, so a result passes ±2^21 only when the inputs follow its signs (random inputs, and all
    inputs at the maximum, cancel out); columns 9 and 10 of one sign only, and smaller (±12 … 15)."""
    rng = np.random.default_rng(31)
    q = rng.integers(100, 128, size=(192, 12)) * rng.choice([-1, 1], size=(192, 12))
    q[:, 9], q[:, 10] = np.abs(q[:, 9]) // 8, -(np.abs(q[:, 10]) // 8)
    q[rng.random((192, 12)) < 0.05] = 0
    return q.astype(np.int32)


def extremes(q: np.ndarray, rows: int, input_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Largest and smallest possible prefix sums over rows ``0 … rows − 1`` of every column."""
    top = (1 << input_bits) - 1
    return top * np.maximum(q[:rows], 0).sum(axis=0), -top * np.maximum(-q[:rows], 0).sum(axis=0)


def truncated_outputs(verilog: Path, bits: int) -> None:
    """Mutant: every result on m_axis_y keeps only its low ``bits`` bits, sign-extended."""
    text = verilog.read_text()
    found = re.findall(r"assign (m_axis_y__tdata\[(\d+):(\d+)\]) = (.*\$signed.*);", text)
    assert found, "the results are no longer assigned to m_axis_y__tdata as expected"
    for n, (target, high, low, expression) in enumerate(found):
        width = int(high) - int(low) + 1
        assert width > bits
        text = text.replace(f"assign {target} = {expression};",
                            f"wire [{width - 1}:0] truncated_{n} = {expression};\n"
                            f"  assign {target} = {{{{{width - bits}{{truncated_{n}[{bits - 1}]}}}}, "
                            f"truncated_{n}[{bits - 1}:0]}};")
    verilog.write_text(text)


@pytest.fixture(scope="module")
def corners(tmp_path_factory):
    q = corner_matrix()
    out, config = make_folder(tmp_path_factory.mktemp("corners"), {"fc": q}, **CORNER_BITS, crossbar=CORNER_CROSSBAR)
    return out, config, q


def test_corner_vectors_reach_every_extreme_of_the_bundled_model():
    """At every row block of every column block, each output's largest and smallest possible value
    (from the weights' signs alone) occurs among the corner vectors of that block."""
    model = load_model(None)
    config = analyze(model, CrossbarConfig()).to_config()
    for layer in config.layers:
        q = model.layer(layer.key).q.astype(np.int64)
        for tile in layer.tiles:
            cols = slice(tile.col_start, tile.col_start + tile.col_count)
            x = corner_vectors(q, cols, layer.input_bits)
            assert set(np.unique(x)) <= {0, 255} and len(x) <= 2 * tile.col_count
            end = tile.row_start + tile.row_count
            high, low = extremes(q[:, cols], end, layer.input_bits)
            reached = x[:, :end] @ q[:end, cols]
            assert np.array_equal(reached.max(axis=0), high) and np.array_equal(reached.min(axis=0), low), \
                (layer.key, tile.range)


def test_corner_vectors_pack_compatible_demands_and_skip_empty_blocks():
    q = np.array([[3, 0, -1], [0, 2, -1], [0, 0, 0]])
    x = corner_vectors(q, slice(0, 3), 2)
    assert len(x) == 2                   # {0+, 1+, 2−} and {0−, 1−, 2+} never disagree on a row
    assert (x @ q).max(axis=0).tolist() == [9, 6, 0] and (x @ q).min(axis=0).tolist() == [0, 0, -6]
    assert corner_vectors(np.zeros((4, 2), dtype=int), slice(0, 2), 8).shape == (0, 4)


def test_the_corners_reach_the_top_result_bits(corners):
    """From the weights alone: the extremes of the fixture exceed a 22-bit result; random inputs and
    all inputs at the maximum do not."""
    out, config, q = corners
    ports = json.loads(next(p for p in (out / "rtl").glob("*.json") if p.name != "manifest.json").read_text())
    assert ports["interface"]["annotations"]["urn:codesign:tile-periphery:2"]["parameters"]["out_width"] == 25
    high, low = extremes(q, 192, 8)
    assert (high > 2 ** 21).sum() >= 8 and (low < -2 ** 21).sum() >= 8
    others = np.concatenate([np.full((1, 192), 255), np.random.default_rng(0).integers(0, 256, size=(64, 192))])
    assert np.abs(others @ q).max() < 2 ** 21


@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_corner_vectors_are_bit_exact(corners, simulator):
    out, config, _ = corners
    found = simulate(out, simulator=simulator, vectors=2, seed=4)
    assert found["passed"], found["mismatches"][:5] or [t["errors"] for t in found["tiles"]]
    assert found["corners"] and len(found["tiles"]) == 6
    # mixed signs everywhere: 2 per column; block 8–11 shares {9+, 10−} and {9−, 10+}: 2 + 2 + 1 + 1
    assert [t["corner_vectors"] for t in found["tiles"]] == [16, 6] * 3
    assert all(t["vectors"] == 2 + t["corner_vectors"] for t in found["tiles"])
    assert found["outputs_compared"] == sum(t["vectors"] for t in found["tiles"]) * 8


@pytest.mark.parametrize("bits", [20, 22])
def test_a_truncated_result_is_caught_by_the_corners_only(corners, bits, tmp_path):
    out, _, _ = corners
    copy = tmp_path / "out"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("sim"))
    truncated_outputs(next((copy / "rtl").glob("*.v")), bits)
    found = simulate(copy, vectors=2, seed=4)
    assert not found["passed"] and found["mismatch_count"]
    assert all(abs(m["expected"]) >= 2 ** (bits - 1) for m in found["mismatches"])
    if bits == 22:      # only the corner vectors (after the 2 others) reach it; 8 other vectors do not,
        assert all(m["vector"] >= 2 for m in found["mismatches"])
        without = simulate(copy, vectors=8, seed=4, corners=False)
        assert without["mismatch_count"] == 0 and not without["passed"]     # but the acc extremes probe does
        assert all(any("loses top bits" in error for error in t["errors"]) for t in without["tiles"])
