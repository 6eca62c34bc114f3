"""The lane schedule, the memory words, the port formats and the parameters of the periphery
(``codesign.hw.periphery``, pure Python): properties that hold for every tile."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codesign.hw.periphery import (PeripheryParams, Slot, beat_results, plane_digits, plane_word, result_beats,
                                   tile_timing, vector_beats)
from codesign.mapping import Geometry


def params(adcs=4, interface="macro", cycles=1, stream=128, rows=16, cols=48, cell_bits=2, weight_bits=6,
           input_bits=4, dac_bits=1, bmax=5, chain=2):
    geometry = Geometry(rows=rows, cols=cols, cell_bits=cell_bits, dac_bits=dac_bits, weight_bits=weight_bits,
                        input_bits=input_bits, adcs=adcs)
    return PeripheryParams(geometry, bmax, chain, interface, cycles, stream)


tiles = st.integers(1, 8).flatmap(lambda adcs: st.tuples(
    st.just(adcs), st.lists(st.integers(0, 5), min_size=1, max_size=48), st.sampled_from([24, 48, 128])))


@settings(max_examples=150, deadline=None)
@given(tiles)
def test_every_converted_column_is_in_exactly_one_slot_and_the_lanes_are_balanced(case):
    adcs, bits, stream = case
    p = params(adcs=adcs, stream=stream)
    shifts = [(7 * i) % 4 for i in range(len(bits))]
    schedule = p.schedule(bits, shifts)
    converted = [slot for row in schedule.rows for slot in row if slot.bits]
    assert sorted(slot.column for slot in converted) == [i for i, b in enumerate(bits) if b]
    assert all((slot.bits, slot.shift) == (bits[slot.column], shifts[slot.column]) for slot in converted)
    n = len(converted)
    assert len(schedule.rows) == max(1, math.ceil(n / adcs))
    lanes = schedule.lane_conversions()
    assert max(lanes) - min(lanes) <= 1 and sum(lanes) == n
    # Rows are ordered by result beat and only the last row has empty slots, at its end; an empty
    # slot repeats the row's last column (the whole row of an empty tile: column L·2S − 1).
    assert schedule.first_beats == sorted(schedule.first_beats)
    for r, row in enumerate(schedule.rows):
        full = [slot for slot in row if slot.bits]
        assert [slot.column for slot in full] == sorted(slot.column for slot in full)
        assert row[:len(full)] == tuple(full) and (len(full) == adcs or r == len(schedule.rows) - 1)
        pad = full[-1].column if full else p.used_columns - 1
        assert all(slot == Slot(pad, 0, 0) for slot in row[len(full):])
        assert schedule.last_beats[r] == p.beat_of(row[-1].column) == max(p.beat_of(s.column) for s in row)


def test_words_pack_b_k_and_the_column_lsb_first():
    p = params(adcs=2)
    schedule = p.schedule([3, 0, 5, 1], [1, 0, 2, 0])
    width, bits = p.slot_width, p.bits_width
    assert (bits, width) == (3, 3 + 5 + 6)
    words = schedule.words()
    for row, word in zip(schedule.rows, words):
        for g, slot in enumerate(row):
            field = word >> (g * width) & ((1 << width) - 1)
            assert (field & 7, field >> 3 & 31, field >> 8) == (slot.bits, slot.shift, slot.column)


def test_sar_rows_sort_by_bits_within_a_beat():
    p = params(adcs=2, interface="sar")
    schedule = p.schedule([1, 5, 2, 4], [0] * 4)
    assert [sorted(s.bits for s in row) for row in schedule.rows] == [[4, 5], [1, 2]]
    assert schedule.row_cycles() == [5, 2]
    assert schedule.busy_cycles() == [sum(row[0].bits for row in schedule.rows),
                                      sum(row[1].bits for row in schedule.rows)]


def test_schedule_refuses_what_the_module_cannot_hold():
    p = params(bmax=3)
    with pytest.raises(ValueError, match="b = 4 exceeds the module's Bmax 3"):
        p.schedule([4], [0])
    with pytest.raises(ValueError, match="at most 48 columns"):
        p.schedule([1] * 49, [0] * 49)


def test_timing_of_one_row_per_input_cycle():
    # Worked by hand from the rules of docs/periphery.md ("Timing"). 4 converted columns of logical
    # column 0, 4 lanes: one row per input cycle; T = 4, one beat per plane, L = 8 results of 17 bits,
    # 7 per beat: 2 result beats, the row touching beat 0 only.
    # Vector 0: first beat in cycle 0; the row is issued in cycles 1, 2, 3, 4 (t = 0..3), converts in
    # cycle 5, is written back in cycle 6; beat 0 leaves in cycle 7, beat 1 (no row writes it) two
    # cycles later, in cycle 9: latency 10 cycles. Vector 1's first row writes beat 0 again, so it
    # waits for vector 0's beat 0 to leave (cycle 7) and is issued in cycle 8: everything shifts by
    # 7 cycles (= T + 3) per vector.
    p = params(adcs=4)
    assert (p.out_width, p.beat_results, p.y_beats, p.x_beats, p.cycles) == (17, 7, 2, 1, 4)
    timing = p.schedule([1, 2, 3, 4], [0] * 4).timing
    assert timing.latency == 10 and timing.period == 7 and timing.ends[:2] == (10, 17)
    assert timing.end(10) == timing.ends[-1] + (10 - len(timing.ends) + 1) * timing.period


def test_macro_timing_depends_on_the_converted_columns_only():
    p = params(adcs=3, cycles=2)
    assert tile_timing(p, [1, 5, 0, 2]) == tile_timing(p, [4, 1, 0, 1]) == p.schedule([4, 1, 0, 1], [0] * 4).timing
    s = params(adcs=3, interface="sar")
    assert tile_timing(s, [1, 5, 0, 2]) != tile_timing(s, [4, 1, 0, 4])


@pytest.mark.parametrize("stream", [24, 32, 128])
def test_port_formats_round_trip(stream):
    p = params(stream=stream, rows=20, dac_bits=2)
    rng = np.random.default_rng(3)
    x = rng.integers(0, 16, size=p.rows)
    beats = vector_beats(p, x)
    assert len(beats) == p.cycles * p.x_beats and [last for _, last in beats] == [0] * (len(beats) - 1) + [1]
    for t in range(p.cycles):
        word = sum(data << (i * p.stream_width) for i, (data, _) in enumerate(beats[t * p.x_beats:(t + 1) * p.x_beats]))
        assert plane_digits(p, word) == [(int(v) >> (2 * t)) & 3 for v in x]
        assert plane_word(p, plane_digits(p, word)) == word
    bound = (p.chain - 1) * p.tile_bound
    values = rng.integers(-bound, bound + 1, size=p.logical_cols).tolist()
    words = [data for data, _ in result_beats(p, values)]
    assert len(words) == p.y_beats and all(word < 1 << (p.beat_results * p.out_width) for word in words)
    assert beat_results(p, words) == values


@pytest.mark.parametrize("kwargs, message", [
    ({"bmax": 0}, "bmax must be 1..16"),
    ({"chain": 0}, "chain must be at least 1"),
    ({"interface": "flash"}, "interface must be one of macro, sar"),
    ({"cycles": 0}, "conversion_cycles must be at least 1"),
    ({"interface": "sar", "cycles": 2}, "exactly 1 for the sar interface"),
    ({"stream": 8}, "stream_width must be"),
    ({"stream": 256}, "stream_width must be"),
    ({"adcs": 49}, "49 ADCs exceed the 48 physical columns"),
])
def test_parameter_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        params(**kwargs)


def test_widths_follow_the_bounds():
    p = params(rows=128, cols=128, weight_bits=8, input_bits=8, bmax=7, chain=3)
    assert (p.value_width, p.acc_width, p.out_width) == (9, 25, 26)     # the bundled model's tiles
    assert (p.depth, p.slot_width, p.beat_results, p.y_beats, p.x_beats) == (128 // 4, 3 + 5 + 7, 4, 4, 1)
    assert p.slot_address(3, 2) == 4 * (1 << (2 + 5) | 3 << 2 | 2)
