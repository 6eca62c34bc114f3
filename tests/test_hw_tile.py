# amaranth: UnusedElaboratable=no
"""TilePeriphery in the Amaranth simulator: a crossbar model answers the comparators from
``codesign.golden.column_values``; results must equal ``codesign.golden`` and the cycle count
the documented formula."""

import math
from dataclasses import dataclass

import numpy as np
import pytest

from codesign import golden
from codesign.config import CrossbarConfig, HardwareConfig, LayerConfig, MatrixShape, TileConfig
from codesign.hw import ConfigStore, PeripheryParams, TilePeriphery
from codesign.hw.simulation import CrossbarModel, simulate, simulate_tile, stream_get, stream_put
from codesign.mapping import Geometry, lossless_bits, tile_column_sums
from codesign.params import tile_words


@dataclass
class Case:
    geometry: Geometry
    params: PeripheryParams
    q: np.ndarray
    tile: TileConfig
    x: np.ndarray            # [B, K] layer inputs
    acc: np.ndarray          # [B, L] starting values

    @property
    def words(self):
        return tile_words(self.tile, self.geometry)

    @property
    def rows(self):
        """The tile's inputs as applied to the crossbar, rows without weights at random."""
        rng = np.random.default_rng(9)
        rows = rng.integers(0, 1 << self.geometry.input_bits, size=(len(self.x), self.geometry.rows))
        rows[:, :self.tile.row_count] = self.x[:, self.tile.row_start:self.tile.row_start + self.tile.row_count]
        return rows

    @property
    def y(self):
        return golden.column_values(self.q, self.geometry, self.tile, self.x)

    @property
    def expected(self):
        out = self.acc.copy()
        out[:, :self.tile.col_count] += golden.tile_outputs_reference(self.q, self.geometry, self.tile, self.x)
        return out

    @property
    def cycles(self):
        return self.params.vector_cycles(self.params.column_steps(self.tile.adc_bits))


def make_case(seed, *, rows=6, logical=3, cell_bits=2, dac_bits=1, weight_bits=6, input_bits=4, adcs=1,
              partial=False, bits="random", max_shift=2, density=0.6, vectors=3, chain=2):
    """A random tile. ``bits``: "lossless" (docs/design.md §3.10), "random" (b in 0..5, k in 0..max_shift:
    truncation and saturation), or an int for every column."""
    rng = np.random.default_rng(seed)
    slices = math.ceil((weight_bits - 1) / cell_bits)
    geometry = Geometry(rows=rows, cols=logical * 2 * slices + seed % 3, cell_bits=cell_bits, dac_bits=dac_bits,
                        weight_bits=weight_bits, input_bits=input_bits, adcs=adcs)
    K = rows - 2 if partial else rows
    N = logical - 1 if partial else logical
    limit = (1 << (weight_bits - 1)) - 1
    q = rng.integers(-limit, limit + 1, size=(K, N))
    q[rng.random(q.shape) > density] = 0
    tile_range = TileConfig(row_start=0, row_count=K, col_start=0, col_count=N, adc_bits=[0] * N * 2 * slices,
                            adc_shift=[0] * N * 2 * slices)
    if bits == "lossless":
        adc_bits = lossless_bits(tile_column_sums(q, geometry, tile_range.range), geometry).tolist()
        adc_shift = [0] * len(adc_bits)
    elif bits == "random":
        adc_bits = rng.integers(0, 6, size=N * 2 * slices).tolist()
        adc_shift = rng.integers(0, max_shift + 1, size=N * 2 * slices).tolist()
    else:
        adc_bits = [bits] * (N * 2 * slices)
        adc_shift = [0] * len(adc_bits)
    tile = tile_range.model_copy(update={"adc_bits": [int(b) for b in adc_bits], "adc_shift": adc_shift})
    params = PeripheryParams(geometry, bmax=max(1, max(adc_bits)), chain=chain)
    x = rng.integers(0, 1 << input_bits, size=(vectors, K))
    bound = (chain - 1) * params.tile_bound
    acc = rng.integers(-bound, bound + 1, size=(vectors, geometry.logical_cols))
    return Case(geometry, params, q, tile, x, acc)


def run_case(case, **kwargs):
    return simulate_tile(TilePeriphery(case.params, case.words), case.rows, case.acc, case.y, **kwargs)


def assert_matches_golden(case, run):
    np.testing.assert_array_equal(run.results, case.expected)


CASES = {
    "lossless": dict(bits="lossless"),
    "lossless-sparse-skip": dict(bits="lossless", density=0.25, logical=4),
    "lossy-shift-saturation": dict(bits="random", max_shift=3),
    "b1-everywhere": dict(bits=1),
    "bmax-everywhere": dict(bits=5),
    "adcs3-partial": dict(bits="random", logical=4, adcs=3, partial=True),
    "adcs2-dac2-cell3": dict(bits="random", adcs=2, dac_bits=2, cell_bits=3, weight_bits=8, input_bits=5),
    "cell1-wide": dict(bits="lossless", cell_bits=1, weight_bits=4, rows=9, logical=2),
}


@pytest.mark.parametrize("name", CASES)
def test_results_and_cycles_match(name):
    case = make_case(len(name), **CASES[name])
    run = run_case(case)
    assert_matches_golden(case, run)
    assert run.periods == [case.cycles] * (len(case.x) - 1)


def test_case_coverage():
    """The cases above exercise what they claim to."""
    saturating = make_case(len("lossy-shift-saturation"), **CASES["lossy-shift-saturation"])
    y, bits = saturating.y, np.array(saturating.tile.adc_bits)
    used = y[:, :, :len(bits)]
    shifts = np.array(saturating.tile.adc_shift)
    assert ((used >> shifts) > (1 << bits) - 1).any() and ((shifts > 0) & (bits > 0)).any()
    sparse = make_case(len("lossless-sparse-skip"), **CASES["lossless-sparse-skip"])
    assert 0 in sparse.tile.adc_bits and max(sparse.tile.adc_bits) == sparse.params.bmax


def test_back_pressure_on_the_output_stream():
    case = make_case(11, bits="random", adcs=2, vectors=4)
    pattern = np.random.default_rng(12).random(100_000) < 0.1
    run = run_case(case, ready=lambda cycle: bool(pattern[cycle]))
    assert_matches_golden(case, run)
    assert all(t - a >= case.cycles - 1 for a, t in zip(run.accepted, run.taken))
    assert [a - t for t, a in zip(run.taken, run.accepted[1:])] == [1] * (len(case.x) - 1)
    assert any(t - a > case.cycles - 1 for a, t in zip(run.accepted, run.taken)), "no back-pressure happened"


def test_row_blocks_chain_to_the_layer_output():
    rng = np.random.default_rng(21)
    geometry = Geometry(rows=5, cols=12, cell_bits=2, dac_bits=1, weight_bits=5, input_bits=3, adcs=1)
    K, N = 9, geometry.logical_cols                      # two row blocks: 5 + 4 rows
    q = rng.integers(-15, 16, size=(K, N))
    tiles = []
    for start, count in ((0, 5), (5, 4)):
        bits = rng.integers(0, 5, size=N * geometry.phys_per_logical).tolist()
        tiles.append(TileConfig(row_start=start, row_count=count, col_start=0, col_count=N, adc_bits=bits,
                                adc_shift=rng.integers(0, 2, size=len(bits)).tolist()))
    layer = LayerConfig(name="fc", kind="linear", weight_bits=5, input_bits=3, matrix=MatrixShape(rows=K, cols=N),
                        tiles=tiles)
    config = HardwareConfig(crossbar=CrossbarConfig(rows=5, cols=12, cell_bits=2, dac_bits=1, adcs=1), layers=[layer])
    x = rng.integers(0, 8, size=(3, K))
    params = PeripheryParams(geometry, bmax=4, chain=2)
    acc = np.zeros((3, N), dtype=np.int64)
    for tile in tiles:
        case = Case(geometry, params, q, tile, x, acc)
        acc = run_case(case).results
    np.testing.assert_array_equal(acc, golden.layer_outputs(q, config, layer, x))


def test_wrong_shift_is_caught():
    """Fault injection: one column's shift off by one in the tile's memory must make the
    comparison with golden fail."""
    case = make_case(31, bits="lossless", density=0.9)
    y = case.y
    column = next(p for p, b in enumerate(case.tile.adc_bits) if b and (y[:, :, p] % 2).any())
    words = case.words
    words[column] += 1 << 5                                       # k: 0 → 1
    run = simulate_tile(TilePeriphery(case.params, words), case.rows, case.acc, y)
    with pytest.raises(AssertionError):
        assert_matches_golden(case, run)
    assert_matches_golden(case, run_case(case))                   # the unmodified memory passes


def test_empty_tile_returns_acc_in_t_plus_3_cycles():
    case = make_case(41, bits=0)
    run = run_case(case)
    np.testing.assert_array_equal(run.results, case.acc)
    assert run.periods == [case.params.cycles + 3] * (len(case.x) - 1)


def test_boundary_wordlines_busy_and_done():
    """wordline = x_t for t = input_cycle whenever an ADC steps; busy and done as documented."""
    case = make_case(51, bits="random", dac_bits=2, input_bits=5, adcs=2, vectors=2)
    tile = TilePeriphery(case.params, case.words)
    v, rows = case.geometry.dac_bits, case.rows
    trace = []

    async def observer(ctx):
        vector = -1
        async for _, _, busy, done, valid, i_valid, i_ready in ctx.tick().sample(
                tile.busy, tile.done, tile.o_stream.valid, tile.i_stream.valid, tile.i_stream.ready):
            trace.append((busy, done, valid, bool(i_valid and i_ready)))      # during the cycle that ended
            vector += int(bool(i_valid and i_ready))
            if any(ctx.get(port.step) for port in tile.adc):                  # during the cycle that begins
                t = ctx.get(tile.input_cycle)
                want = [(int(x) >> (v * t)) & ((1 << v) - 1) for x in rows[vector]]
                assert list(ctx.get(tile.wordline)) == want

    async def driver(ctx):
        for b in range(len(rows)):
            await stream_put(ctx, tile.i_stream, {"x": [int(r) for r in rows[b]], "acc": [int(a) for a in case.acc[b]]})
            await stream_get(ctx, tile.o_stream)

    simulate(tile, driver, background=[observer, CrossbarModel(tile, case.y).testbench])
    busy, done, valid, accept = (np.array(column) for column in zip(*trace))
    starts = np.flatnonzero(accept)
    assert len(starts) == 2 and done.sum() == 2
    for start in starts:
        end = np.flatnonzero(done[start:])[0] + start
        assert busy[start] == 0 and busy[start + 1:end + 1].all() and valid[end] and not valid[end - 1]


def test_configuration_written_through_the_port():
    case = make_case(61, bits="random", adcs=2, vectors=2)
    tile = TilePeriphery(case.params, [0] * case.params.cols)      # all skipped until written
    results = []

    async def driver(ctx):
        for column, word in enumerate(case.words):
            ctx.set(tile.config.addr, column)
            ctx.set(tile.config.data, {"bits": word & 31, "shift": word >> 5})
            ctx.set(tile.config.en, 1)
            await ctx.tick()
        ctx.set(tile.config.en, 0)
        for b in range(len(case.x)):
            await stream_put(ctx, tile.i_stream, {"x": [int(r) for r in case.rows[b]],
                                                  "acc": [int(a) for a in case.acc[b]]})
            results.append([int(v) for v in await stream_get(ctx, tile.o_stream)])

    simulate(tile, driver, background=[CrossbarModel(tile, case.y).testbench])
    np.testing.assert_array_equal(np.array(results), case.expected)


GEOMETRY = Geometry(rows=4, cols=16, cell_bits=2, dac_bits=1, weight_bits=5, input_bits=3, adcs=1)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(geometry=GEOMETRY, bmax=0), ValueError, "bmax must be 1..16 ADC bits, not 0"),
    (dict(geometry=GEOMETRY, bmax=17), ValueError, "bmax must be 1..16 ADC bits, not 17"),
    (dict(geometry=GEOMETRY, bmax=3, chain=0), ValueError, "chain must be at least 1 tile, not 0"),
    (dict(geometry=Geometry(4, 16, 2, 1, 5, 3, adcs=5), bmax=3), ValueError,
     "5 ADCs exceed the 4 logical columns of a 16-column crossbar"),
    (dict(geometry=(4, 16), bmax=3), TypeError, "geometry must be a codesign.mapping.Geometry"),
    (dict(geometry=GEOMETRY, bmax=2.5), TypeError, "'float' object cannot be interpreted as an integer"),
])
def test_parameter_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        PeripheryParams(**kwargs)


def test_component_errors():
    with pytest.raises(TypeError, match="params must be a PeripheryParams"):
        TilePeriphery(GEOMETRY)
    with pytest.raises(ValueError, match="init has 3 words, the tile has 16 physical columns"):
        ConfigStore(16, 1, [0, 0, 0])
    with pytest.raises(ValueError, match="config word 0x400 does not fit 10 bits"):
        ConfigStore(2, 1, [0, 1024])


@pytest.mark.parametrize("seed", range(16))
def test_random_geometries(seed):
    rng = np.random.default_rng(100 + seed)
    cell_bits, dac_bits = int(rng.integers(1, 4)), int(rng.integers(1, 3))
    logical = int(rng.integers(1, 5))
    case = make_case(seed, rows=int(rng.integers(3, 11)), logical=logical, cell_bits=cell_bits, dac_bits=dac_bits,
                     weight_bits=int(rng.integers(3, 9)), input_bits=int(rng.integers(dac_bits, 7)),
                     adcs=int(rng.integers(1, logical + 1)), partial=bool(logical > 1 and rng.random() < 0.5),
                     bits=str(rng.choice(["lossless", "random"])), max_shift=int(rng.integers(0, 4)),
                     density=float(rng.uniform(0.2, 1.0)), chain=int(rng.integers(1, 4)))
    pressure = rng.random(100_000) < 0.7 if seed % 2 else np.ones(100_000, dtype=bool)
    run = run_case(case, ready=lambda cycle: bool(pressure[cycle]))
    assert_matches_golden(case, run)
    if seed % 2 == 0:
        assert run.periods == [case.cycles] * (len(case.x) - 1)
