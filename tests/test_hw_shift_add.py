# amaranth: UnusedElaboratable=no
"""ShiftAdd alone in the Amaranth simulator: writebacks of hand-made rows (merged slots of one
logical column, extreme codes) recombined into results as docs/design.md §3.9 says, streamed out in beats."""

import numpy as np
import pytest

from codesign.hw import PeripheryParams, ShiftAdd
from codesign.hw.periphery import beat_results, result_beats
from codesign.hw.simulation import axis_put, simulate
from codesign.mapping import Geometry

GEOMETRY = Geometry(rows=6, cols=24, cell_bits=3, dac_bits=2, weight_bits=8, input_bits=5, adcs=4)   # S = 3, T = 3


def run(params, rows, acc):
    """Write back ``rows`` = [(t, last, [(column, bits, shift, code)] × A)] one per cycle (each input
    cycle's rows, the last input cycle last), then take the results with ``acc`` added."""
    dut = ShiftAdd(params)
    words = []

    async def bench(ctx):
        for t, last, slots in rows:
            ctx.set(dut.wb, {"t": t, "last": last, "slots": [slot(params, c, b, k) for c, b, k, _ in slots]})
            ctx.set(dut.codes, [code for *_, code in slots])
            ctx.set(dut.wb_valid, 1)
            await ctx.tick()
        ctx.set(dut.wb_valid, 0)
        ctx.set(dut.m_axis_y.tready, 1)
        for data, last in result_beats(params, acc):
            await axis_put(ctx, dut.s_axis_acc, data, last)
            data, = await ctx.tick().sample(dut.m_axis_y.tdata).until(dut.m_axis_y.tvalid)
            words.append(data)

    simulate(dut, bench)
    return beat_results(params, words)


def slot(params, column, bits, shift):
    """A slot's fields for physical column ``column``."""
    logical, slice_ = divmod(column // 2, params.geometry.slices)
    return {"bits": bits, "shift": shift, "polarity": column % 2, "slice": slice_, "logical": logical}


def reference(params, rows, acc):
    """docs/design.md §3.9 with value = (code << k) mod 2^Wy."""
    g = params.geometry
    out = list(acc)
    for t, _, slots in rows:
        for column, bits, shift, code in slots:
            if bits:
                j, s = divmod(column // 2, g.slices)
                value = (code << shift) % (1 << params.value_width)
                out[j] += (1 << (g.dac_bits * t + g.cell_bits * s)) * (-value if column % 2 else value)
    return out


def rows_of(params, chunks):
    """Every chunk of slots once per input cycle, the tile's last row last."""
    return [(t, r == len(chunks) - 1, chunk) for t in range(params.cycles) for r, chunk in enumerate(chunks)]


def test_slots_of_one_logical_column_merge_in_one_writeback():
    params = PeripheryParams(GEOMETRY, 6, 2)
    rng = np.random.default_rng(1)
    # Row 0: four slices/polarities of logical column 0 (one chain); row 1: columns 1, 1, 2, 3.
    chunks = [[(p, 6, int(rng.integers(0, 3)), int(rng.integers(0, 64))) for p in (0, 1, 2, 5)],
              [(p, 6, 0, int(rng.integers(0, 64))) for p in (6, 9, 12, 18)]]
    rows = rows_of(params, chunks)
    acc = rng.integers(-params.tile_bound, params.tile_bound, size=params.logical_cols).tolist()
    assert run(params, rows, acc) == reference(params, rows, acc)


@pytest.mark.parametrize("sign", [1, -1])
def test_the_extreme_chain_fits_the_result_width(sign):
    # Every positive (or negative) column of every slice at 2^Wy − 1 in every input cycle: one tile
    # gives ±tile_bound; with acc = ±(chain − 1)·tile_bound the result is ±chain·tile_bound.
    params = PeripheryParams(GEOMETRY, GEOMETRY.uniform_bits, 3)
    top = (1 << params.value_width) - 1
    columns = [p for p in range(params.used_columns) if p % 2 == (0 if sign > 0 else 1)]
    chunks = [[(p, params.bmax, 0, top) for p in columns[r:r + 4]] for r in range(0, len(columns), 4)]
    rows = rows_of(params, chunks)
    acc = [sign * (params.chain - 1) * params.tile_bound] * params.logical_cols
    got = run(params, rows, acc)
    assert got == reference(params, rows, acc) == [sign * params.chain * params.tile_bound] * params.logical_cols
    assert params.chain * params.tile_bound < 1 << (params.out_width - 1)


def test_a_code_above_its_column_value_wraps_below_2_to_wy():
    # A misbehaving macro: code << k ≥ 2^Wy is taken modulo 2^Wy, so no result can overflow.
    params = PeripheryParams(GEOMETRY, 6, 1)
    chunks = [[(0, 6, 5, 63), (2, 6, 9, 63), (4, 6, 0, 0), (6, 6, 0, 1)]]
    rows = rows_of(params, chunks)
    acc = [0] * params.logical_cols
    assert run(params, rows, acc) == reference(params, rows, acc)
