"""Golden model: the fast path against the literal per-cycle reference and against ``X @ Q``.

Two independent oracles: :func:`codesign.golden.layer_outputs_reference` (docs/design.md §3.6–3.9 written
out with Python integers, one column and cycle at a time) and the plain int64 product ``X @ Q``
(equal to the crossbar output only when every column is lossless, 3.10).
"""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codesign.analysis import analyze
from codesign.config import CrossbarConfig, HardwareConfig, LayerConfig, MatrixShape, TileConfig
from codesign.golden import (CrossbarLayer, NonIdeality, column_values, exact_dtype, exact_product,
                             layer_outputs, layer_outputs_reference)
from codesign.ingest import load_model
from codesign.mapping import Geometry, TileRange, lossless_bits, tile_column_sums, tile_digits


def matmul(x, q):
    """The oracle for an all-lossless crossbar: int64 ``x @ q``."""
    return np.asarray(x, dtype=np.int64) @ np.asarray(q, dtype=np.int64)


def lossless_of(q, geometry, tile):
    return lossless_bits(tile_column_sums(q, geometry, tile), geometry).astype(np.int64)


def partition(size, block, cuts):
    """Split ``range(size)`` into consecutive blocks of at most ``block``, cut where ``cuts`` say."""
    starts, start = [], 0
    while start < size:
        length = min(block, size - start, max(1, cuts[len(starts) % len(cuts)]))
        starts.append((start, length))
        start += length
    return starts


def build_config(q, geometry, settings_of, row_cuts=(10 ** 6,), col_cuts=(10 ** 6,)):
    """A one-layer HardwareConfig; ``settings_of(tile, lossless) -> (bits, shift)`` per tile."""
    K, N = q.shape
    tiles = []
    for r0, nr in partition(K, geometry.rows, row_cuts):
        for j0, nc in partition(N, geometry.logical_cols, col_cuts):
            tile = TileRange(r0, nr, j0, nc)
            bits, shift = settings_of(tile, lossless_of(q, geometry, tile))
            tiles.append(TileConfig(row_start=r0, row_count=nr, col_start=j0, col_count=nc,
                                    adc_bits=np.clip(bits, 0, 16).tolist(), adc_shift=list(map(int, shift))))
    layer = LayerConfig(name="layer", kind="linear", weight_bits=geometry.weight_bits, input_bits=geometry.input_bits,
                        matrix=MatrixShape(rows=K, cols=N), tiles=tiles)
    crossbar = CrossbarConfig(rows=geometry.rows, cols=geometry.cols, cell_bits=geometry.cell_bits,
                              dac_bits=geometry.dac_bits)
    return HardwareConfig(crossbar=crossbar, layers=[layer]), layer


def lossless(tile, bits):
    return bits, np.zeros_like(bits)


def random_weights(rng, shape, weight_bits, density=0.6):
    limit = (1 << (weight_bits - 1)) - 1
    return (rng.integers(-limit, limit + 1, size=shape) * (rng.random(shape) < density)).astype(np.int32)


@st.composite
def cases(draw):
    """Any geometry, sparsity, tiling (aligned or not) and per-column ADC settings, small shapes."""
    c, wb = draw(st.integers(1, 4)), draw(st.integers(2, 10))
    a = draw(st.integers(1, 10))
    v = draw(st.integers(1, min(a, 4)))
    S = math.ceil((wb - 1) / c)
    R, L = draw(st.integers(1, 12)), draw(st.integers(1, 4))
    geometry = Geometry(R, L * 2 * S + draw(st.integers(0, 2 * S - 1)), c, v, wb, a)
    K, N = draw(st.integers(1, 30)), draw(st.integers(1, 10))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    q = random_weights(rng, (K, N), wb, draw(st.floats(0, 1)))
    mode = draw(st.sampled_from(["lossless", "below", "random", "saturate"]))

    def settings_of(tile, bits):
        if mode == "lossless":
            return lossless(tile, bits)
        if mode == "below":
            return np.maximum(bits - rng.integers(0, 3, bits.size), 0), rng.integers(0, 3, bits.size)
        if mode == "saturate":
            return np.minimum(bits, rng.integers(0, 3, bits.size)), np.zeros_like(bits)
        return rng.integers(0, 12, bits.size), rng.integers(0, 5, bits.size) * (rng.random(bits.size) < 0.5)

    cuts = draw(st.lists(st.integers(1, 12), min_size=1, max_size=4))
    config, layer = build_config(q, geometry, settings_of, row_cuts=cuts, col_cuts=cuts[::-1])
    x = rng.integers(0, 1 << a, size=(draw(st.integers(1, 3)), K))
    if draw(st.booleans()):
        x[0] = (1 << a) - 1                     # every column at its peak: saturates lossy columns
    return q, config, layer, x


@settings(max_examples=2500, deadline=None, suppress_health_check=list(HealthCheck))
@given(cases())
def test_fast_path_equals_reference(case):
    q, config, layer, x = case
    np.testing.assert_array_equal(CrossbarLayer(q, config, layer)(x), layer_outputs_reference(q, config, layer, x))


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(R=st.integers(1, 40), lcols=st.integers(1, 5), c=st.integers(1, 4), v=st.integers(1, 3),
       wb=st.integers(2, 10), a=st.integers(3, 10), K=st.integers(1, 90), N=st.integers(1, 20),
       seed=st.integers(0, 2 ** 32 - 1))
def test_all_lossless_equals_matmul_random_shapes(R, lcols, c, v, wb, a, K, N, seed):
    S = math.ceil((wb - 1) / c)
    geometry = Geometry(R, lcols * 2 * S, c, v, wb, a)
    rng = np.random.default_rng(seed)
    q = random_weights(rng, (K, N), wb)
    config, layer = build_config(q, geometry, lossless)
    x = rng.integers(0, 1 << a, size=(5, K))
    x[0] = (1 << a) - 1
    np.testing.assert_array_equal(layer_outputs(q, config, layer, x), matmul(x, q))


BUNDLED_CROSSBARS = [CrossbarConfig(), CrossbarConfig(rows=32, cols=32, cell_bits=1, dac_bits=2),
                     CrossbarConfig(rows=100, cols=24, cell_bits=3, dac_bits=3)]


@pytest.mark.parametrize("crossbar", BUNDLED_CROSSBARS, ids=lambda x: f"{x.rows}x{x.cols}c{x.cell_bits}v{x.dac_bits}")
def test_all_lossless_equals_matmul_every_bundled_layer(crossbar):
    model = load_model()
    config = analyze(model, crossbar).to_config()
    rng = np.random.default_rng(0)
    for spec in model.layers:
        K = spec.q.shape[0]
        x = rng.integers(0, 256, size=(64, K))
        x[0], x[1] = 255, 0
        x[2:10] *= rng.random((8, K)) < 0.3          # sparse rows, like activations after a ReLU
        np.testing.assert_array_equal(layer_outputs(spec.q, config, config.layer(spec.key), x), matmul(x, spec.q),
                                      err_msg=spec.key)


def test_chunked_batches_equal_the_reference(monkeypatch):
    """Large batches are emulated in chunks of CHUNK_CONVERSIONS vector-cycles; chunk edges change nothing."""
    import codesign.golden

    monkeypatch.setattr(codesign.golden, "CHUNK_CONVERSIONS", 13)
    q, config, layer, x = edge_case("saturation")
    x = np.concatenate([x] * 4)
    np.testing.assert_array_equal(CrossbarLayer(q, config, layer)(x), layer_outputs_reference(q, config, layer, x))


# --- each edge case against the reference, with a check that the case really occurs --------------

def edge_case(name):
    """(q, config, layer, x, occurs) for one named edge case; ``occurs`` checks it is exercised."""
    rng = np.random.default_rng(7)
    geometry = Geometry(rows=8, cols=16, cell_bits=2, dac_bits=1, weight_bits=6, input_bits=5)   # S = 3, L = 2
    q, x = random_weights(rng, (13, 5), 6, density=0.8), rng.integers(0, 32, size=(6, 13))
    x[0] = 31
    if name == "saturation":
        config, layer = build_config(q, geometry, lambda t, b: (np.maximum(b - 2, 1), np.zeros_like(b)))
    elif name == "shift":
        config, layer = build_config(q, geometry, lambda t, b: (np.maximum(b - 1, 1), (b > 1).astype(int)))
    elif name == "one_bit":
        config, layer = build_config(q, geometry, lambda t, b: (np.minimum(b, 1), np.zeros_like(b)))
    elif name == "zero_bit":
        config, layer = build_config(q, geometry, lambda t, b: (b * (np.arange(b.size) % 3 != 0), np.zeros_like(b)))
    elif name == "negative_weights":
        q = -np.abs(q)
        config, layer = build_config(q, geometry, lambda t, b: (np.maximum(b - 1, 0), np.zeros_like(b)))
    elif name == "partial_blocks":       # 13 rows on 8-row crossbars, 5 columns on 2-column crossbars
        config, layer = build_config(q, geometry, lambda t, b: (np.maximum(b - 1, 0), np.zeros_like(b)))
    elif name == "dac_bits":             # v = 2 on 5-bit inputs: T = 3 cycles, the last with one bit
        geometry = Geometry(rows=8, cols=16, cell_bits=2, dac_bits=2, weight_bits=6, input_bits=5)
        config, layer = build_config(q, geometry, lambda t, b: (np.maximum(b - 1, 0), np.zeros_like(b)))
    return q, config, layer, x


def column_value_stats(q, config, layer, x):
    """For every tile: the column values y[B, T, P] and the tile's ADC settings."""
    geometry = config.geometry(layer)
    for tile in layer.tiles:
        y = column_values(q, geometry, tile, x)[:, :, :tile.col_count * geometry.phys_per_logical]
        yield tile, y, np.array(tile.adc_bits), np.array(tile.adc_shift)


OCCURS = {
    "saturation": lambda t, y, b, k: ((y > (1 << b) - 1) & (b > 0)).any(),
    "shift": lambda t, y, b, k: ((k > 0) & (b > 0) & (y % 2 == 1)).any(),
    "one_bit": lambda t, y, b, k: ((b == 1) & (y > 1)).any(),
    "zero_bit": lambda t, y, b, k: ((b == 0) & (y > 0)).any(),
    "negative_weights": lambda t, y, b, k: (y[:, :, 1::2] > 0).any() and not (y[:, :, 0::2] > 0).any(),
    "partial_blocks": lambda t, y, b, k: t.row_count < 8 and t.col_count < 2,
    "dac_bits": lambda t, y, b, k: y.shape[1] == 3 and (y > y.max(initial=0) // 3).any(),
}


@pytest.mark.parametrize("name", list(OCCURS))
def test_edge_case_matches_reference(name):
    q, config, layer, x = edge_case(name)
    assert any(OCCURS[name](*stats) for stats in column_value_stats(q, config, layer, x)), f"{name} not exercised"
    fast = CrossbarLayer(q, config, layer)(x)
    np.testing.assert_array_equal(fast, layer_outputs_reference(q, config, layer, x))
    assert not np.array_equal(fast, matmul(x, q)), "the lossy setting should change some output"


def test_column_values_follow_the_definition():
    rng = np.random.default_rng(3)
    geometry = Geometry(rows=6, cols=20, cell_bits=3, dac_bits=2, weight_bits=7, input_bits=5)   # S = 2, L = 5
    q = random_weights(rng, (9, 4), 7)
    tile = TileConfig(row_start=6, row_count=3, col_start=1, col_count=3, adc_bits=[1] * 12, adc_shift=[0] * 12)
    x = rng.integers(0, 32, size=(4, 9))
    y = column_values(q, geometry, tile, x)
    assert y.shape == (4, 3, 20)
    for b in range(4):
        for t in range(3):
            for j in range(3):
                w = [int(q[6 + r, 1 + j]) for r in range(3)]
                for s in range(2):
                    for pol in (0, 1):
                        expected = sum(((int(x[b, 6 + r]) >> (2 * t)) & 3)
                                       * ((max(w[r], 0) if pol == 0 else max(-w[r], 0)) >> (3 * s) & 7)
                                       for r in range(3))
                        assert y[b, t, (j * 2 + s) * 2 + pol] == expected
    assert not y[:, :, 12:].any()                  # physical columns beyond col_count·2S hold nothing


# --- fault injection: the comparison against X @ Q must catch a wrong ADC setting ------------------

@pytest.fixture(scope="module")
def real_layer():
    """features.2 of the bundled model, its lossless config and real integer inputs (digits test images)."""
    from codesign.data import load_dataset
    from codesign.emulate import calibrate_inputs, emulated_module, predict

    model = load_model()
    images, _ = load_dataset("digits", "test")
    quant = calibrate_inputs(model, images)
    seen = {}
    predict(emulated_module(model, quant, "ideal", observer=lambda key, u: seen.setdefault(key, u)), images[:40])
    spec = model.layer("features.2")
    config = analyze(model, CrossbarConfig()).to_config()
    return spec.q, config, config.layer("features.2"), seen["features.2"]


def needed_column(q, config, layer, x, test):
    """(tile index, column p) of the first column whose real values satisfy ``test(y, bits)``."""
    for index, (tile, y, bits, _) in enumerate(column_value_stats(q, config, layer, x)):
        for p in range(y.shape[2]):
            if bits[p] > 0 and test(y[:, :, p], bits[p]):
                return index, p
    raise AssertionError("no column of the layer fits the fault")


@pytest.mark.parametrize("fault", ["one_bit_fewer", "shift_one"])
def test_injected_fault_is_caught(real_layer, fault):
    q, config, layer, x = real_layer
    np.testing.assert_array_equal(CrossbarLayer(q, config, layer)(x), matmul(x, q))     # no fault: exact
    if fault == "one_bit_fewer":        # a column whose real data reaches its top bit
        index, p = needed_column(q, config, layer, x, lambda y, b: y.max() >= 1 << (b - 1))
    else:                               # a column whose real data has odd values
        index, p = needed_column(q, config, layer, x, lambda y, b: (y % 2 == 1).any())
    faulty = config.model_copy(deep=True)
    tile = faulty.layers[[lay.key for lay in faulty.layers].index(layer.key)].tiles[index]
    if fault == "one_bit_fewer":
        tile.adc_bits[p] -= 1
    else:
        tile.adc_shift[p] = 1
    out = CrossbarLayer(q, faulty, faulty.layer(layer.key))(x)
    wrong = np.flatnonzero((out != matmul(x, q)).any(axis=0))
    width = config.geometry(layer).phys_per_logical
    assert wrong.tolist() == [tile.col_start + p // width]      # caught, in exactly that output column


# --- non-idealities ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lossy_case():
    rng = np.random.default_rng(11)
    geometry = Geometry(rows=16, cols=24, cell_bits=2, dac_bits=2, weight_bits=7, input_bits=6)
    q = random_weights(rng, (40, 9), 7)
    config, layer = build_config(q, geometry, lambda t, b: (np.maximum(b - 1, 0), (b > 3).astype(int)))
    return q, config, layer, rng.integers(0, 64, size=(30, 40))


def test_nonidealities_off_are_bit_exact(lossy_case):
    q, config, layer, x = lossy_case
    exact = layer_outputs_reference(q, config, layer, x)
    for off in (None, NonIdeality(), NonIdeality(0.0, 0.0, seed=5)):
        np.testing.assert_array_equal(CrossbarLayer(q, config, layer, off)(x), exact)


def test_tiny_nonidealities_keep_every_code(lossy_case):
    """The analog path's comparators sit half a level below each code: errors under ½ change nothing."""
    q, config, layer, x = lossy_case
    analog = CrossbarLayer(q, config, layer, NonIdeality(conductance_sigma=1e-5, adc_noise=1e-3, seed=1))
    assert analog.analog
    np.testing.assert_array_equal(analog(x), layer_outputs_reference(q, config, layer, x))


def test_nonidealities_are_seeded(lossy_case):
    q, config, layer, x = lossy_case
    run = lambda seed: CrossbarLayer(q, config, layer, NonIdeality(0.2, 1.0, seed))(x)   # noqa: E731
    np.testing.assert_array_equal(run(4), run(4))
    assert not np.array_equal(run(4), run(5))
    assert not np.array_equal(run(4), layer_outputs_reference(q, config, layer, x))


def single_column(rows, bits=16):
    """A K×1 matrix of ones on one crossbar column (c = 1, wb = 2: S = 1), 1-bit inputs; the empty
    negative column is skipped (converted, it would read the positive half of the noise)."""
    geometry = Geometry(rows=rows, cols=2, cell_bits=1, dac_bits=1, weight_bits=2, input_bits=1)
    q = np.ones((rows, 1), dtype=np.int32)
    return q, *build_config(q, geometry, lambda t, b: (np.where(b > 0, bits, 0), np.zeros_like(b)))


def test_adc_noise_has_the_stated_sigma():
    """y = 100 plus N(0, 2²), rounded by the half-level comparators: mean 100, variance 4 + 1/12."""
    q, config, layer = single_column(100)
    out = CrossbarLayer(q, config, layer, NonIdeality(adc_noise=2.0, seed=2))(np.ones((20000, 100), dtype=np.int64))
    assert abs(out.mean() - 100) < 0.1
    assert abs(out.var() - (4 + 1 / 12)) < 0.3


def test_conductance_variation_is_log_normal():
    """Σ of 400 cells d·e^θ, θ ~ N(0, 0.3²), one draw per seed: E = 400·e^(σ²/2), Var = 400·(e^(2σ²) − e^(σ²))."""
    sigma, rows = 0.3, 400
    q, config, layer = single_column(rows)
    x = np.ones((1, rows), dtype=np.int64)
    sums = np.array([CrossbarLayer(q, config, layer, NonIdeality(conductance_sigma=sigma, seed=s))(x)[0, 0]
                     for s in range(300)], dtype=np.float64)
    mean = rows * math.exp(sigma ** 2 / 2)
    std = math.sqrt(rows * (math.exp(2 * sigma ** 2) - math.exp(sigma ** 2)))
    assert abs(sums.mean() - mean) < 3 * std / math.sqrt(len(sums)) + 0.5
    assert 0.8 * std < sums.std() < 1.2 * std


def test_skipped_columns_stay_silent_under_noise():
    q, config, layer = single_column(10, bits=0)
    out = CrossbarLayer(q, config, layer, NonIdeality(conductance_sigma=0.5, adc_noise=5.0))(np.ones((50, 10), dtype=np.int64))
    assert not out.any()


# --- exact arithmetic and errors ---------------------------------------------------------------

def test_exact_dtype_thresholds():
    assert exact_dtype(2 ** 24 - 1) is np.float32 and exact_dtype(2 ** 24) is np.float64
    assert exact_dtype(2 ** 53 - 1) is np.float64 and exact_dtype(2 ** 53) is np.int64


def test_exact_product_beyond_float64():
    a = np.array([[2 ** 31 + 1, 3]], dtype=np.int64)
    b = np.array([[2 ** 30 + 7], [5]], dtype=np.int64)
    expected = (2 ** 31 + 1) * (2 ** 30 + 7) + 15
    assert int(exact_product(a, b, expected)[0, 0]) == expected       # above 2^53: the int64 path


def test_bad_inputs_are_rejected():
    geometry = Geometry(rows=8, cols=16, cell_bits=2, dac_bits=1, weight_bits=6, input_bits=5)
    q = random_weights(np.random.default_rng(0), (10, 3), 6)
    config, layer = build_config(q, geometry, lossless)
    with pytest.raises(ValueError, match="weight matrix is 10×2"):
        CrossbarLayer(q[:, :2], config, layer)
    with pytest.raises(ValueError, match="exceed ±31"):
        CrossbarLayer(q * 4, config, layer)
    crossbar = CrossbarLayer(q, config, layer)
    with pytest.raises(ValueError, match=r"0\.\.31"):
        crossbar(np.full((2, 10), 32))
    with pytest.raises(ValueError, match=r"shape \[B, 10\]"):
        crossbar(np.zeros((2, 9), dtype=np.int64))
    with pytest.raises(ValueError, match="adc_noise"):
        NonIdeality(adc_noise=-1.0)


def test_tile_digits_recombine_to_the_weights():
    """The layer-wide digits the fast path starts from hold every weight: Σ ±2^(c·s)·d = q."""
    geometry = Geometry(rows=8, cols=16, cell_bits=2, dac_bits=1, weight_bits=6, input_bits=5)
    q = random_weights(np.random.default_rng(1), (10, 4), 6)
    digits = tile_digits(q, geometry, TileRange(0, 10, 0, 4)).astype(np.int64).reshape(10, 4, 3, 2)
    recombined = ((digits[..., 0] - digits[..., 1]) * np.array([1, 4, 16])).sum(axis=2)
    np.testing.assert_array_equal(recombined, q)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases(), keep=st.integers(0, 2 ** 16 - 1))
def test_a_subset_of_tiles_counts_only_those_tiles(case, keep):
    """Chained row blocks (the RTL's accumulator input) need the output of some tiles only."""
    q, config, layer, x = case
    subset = layer.model_copy(update={"tiles": [t for i, t in enumerate(layer.tiles) if keep >> (i % 16) & 1]})
    assert np.array_equal(CrossbarLayer(q, config, subset)(x), layer_outputs_reference(q, config, subset, x))
