# amaranth: UnusedElaboratable=no
"""TilePeriphery in the Amaranth simulator with the analog side computed from its wordlines
(``codesign.hw.simulation.AnalogModel``): results must equal ``codesign.golden`` (docs/design.md §3.6–3.9),
every vector must take exactly the cycles of the timing recurrence, and the configuration port,
the error flags and the ADC protocol must behave as documented (docs/periphery.md)."""

import math
from dataclasses import dataclass, replace

import numpy as np
import pytest

from codesign import golden
from codesign.config import TileConfig
from codesign.hw import PeripheryParams, Schedule, Slot, TilePeriphery
from codesign.hw.periphery import REG_ROWS, REG_STATUS, result_beats, vector_beats
from codesign.hw.simulation import (AnalogModel, apb_access, axis_put, axis_send, configure, simulate,
                                   simulate_tile)
from codesign.mapping import Geometry, tile_digits


@dataclass
class Case:
    params: PeripheryParams
    schedule: Schedule
    digits: np.ndarray       # [R, C]
    x: np.ndarray            # [B, R]
    acc: np.ndarray          # [B, L], within the contract's (chain − 1)·tile_bound
    expected: np.ndarray     # [B, L]


def make_case(seed, *, interface="macro", adcs=1, cycles=1, stream=128, rows=6, logical=3, cell_bits=2, dac_bits=1,
              weight_bits=6, input_bits=4, vectors=4, chain=2, bits=None):
    """A random tile: b in 0..5 and k in 0..2 per column (saturation and truncation), or ``bits``."""
    rng = np.random.default_rng(seed)
    slices = math.ceil((weight_bits - 1) / cell_bits)
    geometry = Geometry(rows=rows, cols=logical * 2 * slices + seed % 3, cell_bits=cell_bits, dac_bits=dac_bits,
                        weight_bits=weight_bits, input_bits=input_bits, adcs=adcs)
    limit = (1 << (weight_bits - 1)) - 1
    q = rng.integers(-limit, limit + 1, size=(rows, logical))
    q[rng.random(q.shape) > 0.6] = 0
    used = logical * 2 * slices
    adc_bits = rng.integers(0, 6, size=used).tolist() if bits is None else [bits] * used
    tile = TileConfig(row_start=0, row_count=rows, col_start=0, col_count=logical, adc_bits=adc_bits,
                      adc_shift=rng.integers(0, 3, size=used).tolist())
    params = PeripheryParams(geometry, max(1, *adc_bits), chain, interface, cycles, stream)
    digits = np.zeros((rows, geometry.cols), dtype=np.int64)
    digits[:, :used] = tile_digits(q, geometry, tile.range)
    x = rng.integers(0, 1 << input_bits, size=(vectors, rows))
    bound = (chain - 1) * params.tile_bound
    acc = rng.integers(-bound, bound + 1, size=(vectors, geometry.logical_cols))
    expected = acc.copy()
    expected[:, :logical] += golden.tile_outputs_reference(q, geometry, tile, x)
    return Case(params, params.schedule(tile.adc_bits, tile.adc_shift), digits, x, acc, expected)


def run_case(case, **kwargs):
    return simulate_tile(TilePeriphery(case.params, case.schedule), case.digits, case.x, case.acc, **kwargs)


CASES = {
    "macro, 1 ADC": dict(seed=1),
    "macro, 2 ADCs": dict(seed=2, adcs=2),
    "macro, 3 ADCs, 3 cycles per conversion": dict(seed=3, adcs=3, cycles=3),
    "macro, more ADCs than logical columns": dict(seed=4, adcs=7, logical=2),
    "macro, an ADC per physical column": dict(seed=15, adcs=18, rows=4),
    "macro, two-beat planes and one-result beats": dict(seed=6, adcs=2, stream=18, rows=24),
    "macro, 2-bit DAC, 3-bit cells, T = 2": dict(seed=7, adcs=2, dac_bits=2, cell_bits=3, input_bits=3),
    "macro, one input cycle": dict(seed=8, adcs=2, dac_bits=3, input_bits=3),
    "macro, wide tile, chain 3": dict(seed=9, adcs=4, logical=12, rows=10, chain=3, stream=64),
    "sar, 1 ADC": dict(seed=11, interface="sar"),
    "sar, 3 ADCs": dict(seed=12, interface="sar", adcs=3),
    "sar, two-beat planes": dict(seed=13, interface="sar", adcs=2, stream=18, rows=24),
    "sar, one input cycle": dict(seed=14, interface="sar", adcs=2, dac_bits=3, input_bits=3),
}


@pytest.mark.parametrize("name", CASES)
def test_results_cycles_and_conversions_match(name):
    case = make_case(**CASES[name])
    run = run_case(case)
    np.testing.assert_array_equal(run.results, case.expected)
    timing = case.schedule.timing
    assert run.latencies[0] == timing.latency
    assert [end - run.first_beat[0] + 1 for end in run.last_beat] == [timing.end(b) for b in range(len(case.x))]
    assert run.error_cycles == []
    # Every conversion started is of a converted column with its b and k, each once per input cycle.
    slots = {slot.column: slot for row in case.schedule.rows for slot in row if slot.bits}
    started = [(column, bits, shift) for _, _, column, bits, shift in run.starts]
    if case.params.macro:
        assert all((bits, shift) == (slots[column].bits, slots[column].shift) for column, bits, shift in started)
        assert sorted(column for column, _, _ in started) == sorted(
            [column for column in slots] * case.params.cycles * len(case.x))


def test_the_cases_cover_the_features():
    params = [make_case(**kwargs).params for kwargs in CASES.values()]
    assert {p.interface for p in params} == {"macro", "sar"}
    assert any(p.adcs > p.logical_cols for p in params) and any(p.adcs == p.cols for p in params)
    assert any(p.x_beats > 1 for p in params) and any(p.beat_results == 1 for p in params)
    assert any(p.cycles == 1 for p in params) and any(p.conversion_cycles > 1 for p in params)


@pytest.mark.parametrize("interface", ["macro", "sar"])
def test_back_pressure_and_idle_inputs_change_nothing_but_time(interface):
    case = make_case(21, interface=interface, adcs=2, vectors=6, stream=24, rows=10)
    rng = np.random.default_rng(0)
    stall = rng.random(20000) < 0.6
    run = run_case(case, x_gap=lambda beat: int(rng.integers(0, 4)), acc_gap=lambda beat: int(rng.integers(0, 9)),
                   ready=lambda cycle: not stall[cycle])
    np.testing.assert_array_equal(run.results, case.expected)
    assert run.error_cycles == []


@pytest.mark.parametrize("latency", [1, 2, 3])
def test_macro_answers_anywhere_within_the_conversion_time(latency):
    case = make_case(22, adcs=2, cycles=3)
    run = run_case(case, latency=latency)
    np.testing.assert_array_equal(run.results, case.expected)
    assert run.latencies[0] == case.schedule.timing.latency and run.error_cycles == []


def test_configured_through_the_apb_port():
    case = make_case(23, adcs=3)
    run = simulate_tile(TilePeriphery(case.params), case.digits, case.x, case.acc, schedule=case.schedule)
    np.testing.assert_array_equal(run.results, case.expected)


def test_unconfigured_tile_accepts_no_vector():
    tile = TilePeriphery(make_case(24).params)
    ready = []

    async def bench(ctx):
        ctx.set(tile.s_axis_x.tvalid, 1)
        for _ in range(50):
            ready.append(ctx.get(tile.s_axis_x.tready))
            await ctx.tick()

    simulate(tile, bench)
    assert ready == [0] * 50


def apb_session(params, schedule, script):
    """Run ``script(ctx, tile)`` against a tile configured with ``schedule``; returns what it returns."""
    tile = TilePeriphery(params)
    found = []

    async def bench(ctx):
        await configure(ctx, tile, schedule)
        found.append(await script(ctx, tile))

    simulate(tile, bench)
    return found[0]


def test_registers_and_memory_read_back():
    case = make_case(25, adcs=3)
    p, schedule = case.params, case.schedule

    async def script(ctx, tile):
        slots = [(await apb_access(ctx, tile.apb, p.slot_address(r, g)))[0]
                 for r in range(len(schedule.rows)) for g in range(p.adcs)]
        return slots, await apb_access(ctx, tile.apb, 4 * REG_ROWS), await apb_access(ctx, tile.apb, 4 * REG_STATUS)

    slots, rows, status = apb_session(p, schedule, script)
    mask = (1 << p.slot_width) - 1
    assert slots == [word >> (g * p.slot_width) & mask for word in schedule.words() for g in range(p.adcs)]
    assert rows == (len(schedule.rows), 0) and status == (0, 0)


def test_apb_refuses_bad_accesses_and_changes_nothing():
    case = make_case(26, adcs=3)
    p, schedule = case.params, case.schedule
    first = p.slot_address(0, 0)
    cases = {
        "unaligned": (first + 2, 5, True),
        "slot beyond the ADCs": (p.slot_address(0, 3), 5, True),
        "row beyond the memory": (p.slot_address(p.depth, 0) if p.depth < 1 << p.row_index_width else 4 * 3, 5, True),
        "unmapped register": (4 * 3, 0, False),
        "reserved slot bits": (first, 1 << p.slot_width, True),
        "ROWS above the depth": (4 * REG_ROWS, p.depth + 1, True),
        "writing the busy bit": (4 * REG_STATUS, 1, True),
    }

    async def script(ctx, tile):
        errors = {name: (await apb_access(ctx, tile.apb, address, data, write))[1]
                  for name, (address, data, write) in cases.items()}
        return errors, await apb_access(ctx, tile.apb, first), await apb_access(ctx, tile.apb, 4 * REG_ROWS)

    errors, slot, rows = apb_session(p, schedule, script)
    assert errors == {name: 1 for name in cases}
    assert slot == (schedule.words()[0] & ((1 << p.slot_width) - 1), 0) and rows == (len(schedule.rows), 0)


def test_configuration_is_refused_while_busy():
    case = make_case(27, vectors=1)
    p = case.params
    tile = TilePeriphery(p, case.schedule)
    seen = {}

    async def bench(ctx):
        await axis_put(ctx, tile.s_axis_x, *vector_beats(p, case.x[0])[0])
        seen["busy"] = ctx.get(tile.busy)
        seen["write"] = (await apb_access(ctx, tile.apb, p.slot_address(0, 0), 0, True))[1]
        seen["rows"] = (await apb_access(ctx, tile.apb, 4 * REG_ROWS, 1, True))[1]
        seen["status"] = (await apb_access(ctx, tile.apb, 4 * REG_STATUS))[0]

    simulate(tile, bench, background=[AnalogModel(tile, case.digits).testbench])
    assert seen == {"busy": 1, "write": 1, "rows": 1, "status": 1}


class SilentMacro(AnalogModel):
    """An ADC macro that never answers the second conversion it is asked for."""

    async def testbench(self, ctx):
        port = self.tile.adc[0]
        count = 0
        async for _, _, start in ctx.tick().sample(port.start):
            count += int(bool(start))
            ctx.set(port.valid, int(bool(start)) and count != 2)


def test_a_missing_macro_answer_raises_the_sticky_adc_error():
    case = make_case(28, adcs=1, cycles=1)
    tile = TilePeriphery(case.params, case.schedule)
    model = SilentMacro(tile, case.digits)
    found = {}

    async def bench(ctx):
        ctx.set(tile.m_axis_y.tready, 1)
        await axis_send(ctx, tile.s_axis_acc, result_beats(case.params, case.acc[0]))
        await axis_send(ctx, tile.s_axis_x, vector_beats(case.params, case.x[0]))
        for _ in range(200):
            await ctx.tick()
        found["error"] = ctx.get(tile.error)
        found["status"] = (await apb_access(ctx, tile.apb, 4 * REG_STATUS))[0]
        await apb_access(ctx, tile.apb, 4 * REG_STATUS, 0b10, True)
        found["cleared"] = (await apb_access(ctx, tile.apb, 4 * REG_STATUS))[0], ctx.get(tile.error)

    simulate(tile, bench, background=[model.testbench])
    assert found == {"error": 1, "status": 0b10, "cleared": (0, 0)}


@pytest.mark.parametrize("fault", ["tlast on the first plane", "non-zero acc padding"])
def test_framing_errors_raise_their_sticky_bits(fault):
    case = make_case(29, stream=64, vectors=1)
    p = case.params
    tile = TilePeriphery(p, case.schedule)
    found = {}

    async def bench(ctx):
        x_beats, acc_beats = vector_beats(p, case.x[0]), result_beats(p, case.acc[0])
        if fault == "tlast on the first plane":
            x_beats[0] = (x_beats[0][0], 1)
        else:
            acc_beats[0] = (acc_beats[0][0] | 1 << (p.stream_width - 1), acc_beats[0][1])
        await axis_send(ctx, tile.s_axis_acc, acc_beats)
        await axis_send(ctx, tile.s_axis_x, x_beats)
        await ctx.tick()
        found["status"] = (await apb_access(ctx, tile.apb, 4 * REG_STATUS))[0]

    simulate(tile, bench, background=[AnalogModel(tile, case.digits).testbench])
    assert found["status"] & ~1 == (0b100 if fault.startswith("tlast") else 0b1000)


def test_a_wrong_shift_in_the_configuration_is_caught():
    # Fault injection: one converted slot's k changed; the comparison with golden must fail.
    case = make_case(30, adcs=2, bits=5)
    rows = [list(row) for row in case.schedule.rows]
    slot = rows[0][0]
    rows[0][0] = replace(slot, shift=slot.shift + 1)
    wrong = Schedule(case.params, tuple(map(tuple, rows)))
    run = simulate_tile(TilePeriphery(case.params, wrong), case.digits, case.x, case.acc)
    assert (run.results != case.expected).any()


def test_a_tile_without_conversions_returns_acc():
    case = make_case(31, adcs=2, bits=0)
    run = run_case(case)
    np.testing.assert_array_equal(run.results, case.acc)
    assert case.schedule.conversions == 0 and run.starts == []
    assert run.latencies[0] == case.schedule.timing.latency


def test_component_errors():
    case = make_case(32)
    other = make_case(33, adcs=2)
    with pytest.raises(ValueError, match="other periphery parameters"):
        TilePeriphery(case.params, other.schedule)
    with pytest.raises(TypeError, match="params must be a PeripheryParams"):
        TilePeriphery("params")
    with pytest.raises(ValueError, match="latency must be 1..1 cycles"):
        AnalogModel(TilePeriphery(case.params), case.digits, latency=2)
    assert Slot(0, 0, 0).bits == 0
