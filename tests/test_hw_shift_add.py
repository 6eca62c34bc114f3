# amaranth: UnusedElaboratable=no
"""ShiftAdd in the Amaranth simulator: conversions recombined into results as docs/design.md §3.9 says."""

import numpy as np
import pytest

from codesign import golden
from codesign.config import TileConfig
from codesign.hw import PeripheryParams, ShiftAdd
from codesign.hw.simulation import simulate
from codesign.mapping import Geometry

GEOMETRIES = [
    Geometry(rows=6, cols=24, cell_bits=3, dac_bits=2, weight_bits=8, input_bits=5, adcs=2),   # S = 3
    Geometry(rows=5, cols=16, cell_bits=2, dac_bits=1, weight_bits=5, input_bits=3, adcs=1),   # S = 2
]


def run(params, init, lanes, *, load_during=None):
    """Load ``init``, then deliver ``lanes[g]`` = [(column, cycle, value)] on lane ``g`` with
    random gaps. ``load_during`` = (lane, conversion) offers a conversion during the load cycle."""
    dut = ShiftAdd(params)
    rng = np.random.default_rng(0)
    sums, finished = [], []

    async def loader(ctx):
        ctx.set(dut.init, [int(v) for v in init])
        ctx.set(dut.load, 1)
        if load_during:
            g, (column, cycle, value) = load_during
            ctx.set(dut.conv[g].p, {"value": value, "tag": {"column": column, "cycle": cycle}})
            ctx.set(dut.conv[g].valid, 1)
            assert ctx.get(dut.conv[g].ready) == 0
        await ctx.tick()
        ctx.set(dut.load, 0)

    def lane_bench(g):
        async def bench(ctx):
            await ctx.tick()                               # after the load
            for column, cycle, value in lanes[g]:
                while rng.random() < 0.3:
                    ctx.set(dut.conv[g].valid, 0)
                    await ctx.tick()
                ctx.set(dut.conv[g].p, {"code": 0, "value": value, "tag": {"column": column, "cycle": cycle}})
                ctx.set(dut.conv[g].valid, 1)
                await ctx.tick().until(dut.conv[g].ready)
            ctx.set(dut.conv[g].valid, 0)
            finished.append(g)
        return bench

    async def reader(ctx):
        while len(finished) < params.adcs:
            await ctx.tick()
        await ctx.tick()                                   # the last conversion reaches the sums
        sums.extend(ctx.get(dut.sums))

    simulate(dut, loader, reader, *(lane_bench(g) for g in range(params.adcs)))
    return np.array(sums, dtype=np.int64)


def conversions(params, values):
    """Per lane, (column, cycle, value) of every conversion in ``values[T, C]``, shuffled."""
    rng = np.random.default_rng(1)
    lanes = []
    for lane in params.lanes:
        items = [(p, t, int(values[t, p])) for t in range(params.cycles) for p in lane.columns]
        lanes.append([items[i] for i in rng.permutation(len(items))])
    return lanes


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=["S3-2adcs", "S2-1adc"])
def test_tile_results_match_golden(geometry):
    rng = np.random.default_rng(5)
    R, L, width = geometry.rows, geometry.logical_cols, geometry.phys_per_logical
    limit = (1 << (geometry.weight_bits - 1)) - 1
    q = rng.integers(-limit, limit + 1, size=(R, L))
    q[rng.random(q.shape) < 0.3] = 0
    params = PeripheryParams(geometry, bmax=5, chain=2)
    bits = rng.integers(0, 6, size=L * width)
    tile = TileConfig(row_start=0, row_count=R, col_start=0, col_count=L, adc_bits=bits.tolist(),
                      adc_shift=rng.integers(0, 3, size=L * width).tolist())
    x = rng.integers(0, 1 << geometry.input_bits, size=(1, R))
    y = golden.column_values(q, geometry, tile, x)[0]                        # [T, C]
    values = np.zeros_like(y)
    values[:, :L * width] = golden.adc(y[:, :L * width], tile.adc_bits, tile.adc_shift)
    init = rng.integers(-params.tile_bound, params.tile_bound + 1, size=L)
    sums = run(params, init, conversions(params, values))
    np.testing.assert_array_equal(sums, init + golden.tile_outputs_reference(q, geometry, tile, x)[0])


@pytest.mark.parametrize("sign", [1, -1])
def test_extreme_chain_fits_out_width(sign):
    geometry = GEOMETRIES[0]
    params = PeripheryParams(geometry, bmax=4, chain=2)
    S, c, v = geometry.slices, geometry.cell_bits, geometry.dac_bits
    vmax = (1 << params.value_width) - 1
    values = np.zeros((params.cycles, params.cols), dtype=np.int64)
    polarity = 0 if sign > 0 else 1
    values[:, [p for p in range(params.logical_cols * 2 * S) if p % 2 == polarity]] = vmax
    tile = sum((1 << (v * t + c * s)) * vmax for t in range(params.cycles) for s in range(S))
    init = np.full(params.logical_cols, sign * tile)                        # a whole tile already chained
    sums = run(params, init, conversions(params, values))
    np.testing.assert_array_equal(sums, np.full(params.logical_cols, 2 * sign * tile))
    assert 2 * tile < 1 << (params.out_width - 1)


def test_no_conversion_is_taken_during_load():
    params = PeripheryParams(GEOMETRIES[1], bmax=3)
    init = np.arange(params.logical_cols) * 5 - 7
    sums = run(params, init, [[]], load_during=(0, (0, 0, 3)))
    np.testing.assert_array_equal(sums, init)


def test_constructor_rejects_other_parameters():
    with pytest.raises(TypeError, match="params must be a PeripheryParams"):
        ShiftAdd(GEOMETRIES[0])
