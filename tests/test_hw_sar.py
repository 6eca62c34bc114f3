# amaranth: UnusedElaboratable=no
"""SARController in the Amaranth simulator against ``codesign.golden.adc`` (docs/design.md §3.8)."""

import numpy as np
import pytest
from amaranth.hdl import unsigned

from codesign import golden
from codesign.hw import SARController
from codesign.hw.simulation import simulate, stream_put

BMAX, WIDTH = 6, 9            # 6-step SAR; column values below 2^9
YMAX = (1 << WIDTH) - 1


def golden_result(y, bits, shift):
    """(code, value) of docs/design.md §3.8 from the golden model."""
    value = int(golden.adc(np.array([y]), np.array([bits]), np.array([shift]))[0])
    return value >> shift, value


def run(commands, *, answer=None, ready=lambda cycle: True):
    """Convert ``commands`` = [(y, b, k)] offered back to back; command ``n`` carries tag ``n``.

    The comparator answers ``y ≥ ref`` (or ``answer(y, ref)``) and checks the documented
    reference rule. Returns {tag: (code, code << k)} and the ``adc.step`` strobe of every cycle.
    """
    dut = SARController(BMAX, WIDTH, unsigned(8))
    results, steps = {}, []
    wanted = sum(1 for _, bits, _ in commands if bits)

    async def producer(ctx):
        for tag, (_, bits, shift) in enumerate(commands):
            await stream_put(ctx, dut.cmd, {"bits": bits, "shift": shift, "tag": tag})

    async def analog(ctx):
        async for _ in ctx.tick():
            step = ctx.get(dut.adc.step)
            steps.append(step)
            cmp = 0
            if step:
                y = commands[ctx.get(dut.tag)][0]
                trial, shift, ref = ctx.get(dut.adc.trial), ctx.get(dut.adc.shift), ctx.get(dut.adc.ref)
                assert ref == min(trial << shift, 1 << WIDTH), "the reference breaks the documented rule"
                cmp = answer(y, ref) if answer else int(y >= ref)
            ctx.set(dut.adc.cmp, cmp)

    async def consumer(ctx):
        cycle = 0
        while len(results) < wanted:
            ctx.set(dut.res.ready, int(ready(cycle)))
            _, _, valid, taken, payload = await ctx.tick().sample(dut.res.valid, dut.res.ready, dut.res.payload)
            if valid and taken:
                assert payload.tag not in results, "a result was delivered twice"
                results[payload.tag] = (payload.code, payload.code << commands[payload.tag][2])
            cycle += 1
            assert cycle < 10_000, "the SAR controller stopped producing results"

    simulate(dut, producer, consumer, background=[analog])
    return results, steps


def check(commands, results):
    want = {tag: golden_result(*c) for tag, c in enumerate(commands) if c[1]}
    assert results == want


def test_random_conversions_match_golden():
    rng = np.random.default_rng(1)
    commands = [(int(rng.integers(0, YMAX + 1)), int(rng.integers(1, BMAX + 1)), int(rng.integers(0, 4)))
                for _ in range(60)]
    results, _ = run(commands)
    check(commands, results)


@pytest.mark.parametrize("y, bits, shift", [
    (0, 1, 0), (1, 1, 0), (YMAX, 1, 0),            # b = 1: one comparison
    (37, BMAX, 0), (63, BMAX, 0), (64, BMAX, 0),   # b = Bmax, exact and saturating
    (YMAX, BMAX, 0),                               # saturation at 2^b − 1
    (300, 4, 3), (301, 5, 2), (7, 3, 2),           # shift > 0: truncation
    (YMAX, BMAX, 5), (YMAX, 3, 8), (YMAX, 2, 9),   # trial bits at and above 2^Wy
])
def test_corner_cases(y, bits, shift):
    results, _ = run([(y, bits, shift)])
    check([(y, bits, shift)], results)


def test_back_to_back_conversions_take_b_cycles_each():
    commands = [(200, 5, 0), (3, 1, 0), (77, 6, 1), (0, 2, 0)]
    results, steps = run(commands)
    check(commands, results)
    first = steps.index(1)
    total = sum(bits for _, bits, _ in commands)
    assert steps[first:first + total] == [1] * total and not any(steps[first + total:])


def test_b0_takes_no_step_and_yields_no_result():
    commands = [(100, 3, 0), (100, 0, 0), (50, 2, 1), (9, 0, 3)]
    results, steps = run(commands)
    check(commands, results)
    assert sorted(results) == [0, 2]
    assert sum(steps) == 5


def test_back_pressure_on_results_loses_nothing():
    rng = np.random.default_rng(2)
    commands = [(int(rng.integers(0, YMAX + 1)), int(rng.integers(0, BMAX + 1)), int(rng.integers(0, 3)))
                for _ in range(30)]
    pattern = rng.random(4000) < 0.3
    results, _ = run(commands, ready=lambda cycle: bool(pattern[cycle]))
    check(commands, results)


def test_code_shifted_stays_below_2_to_wy_whatever_the_comparator_says():
    # A comparator stuck at 1 behaves like the largest column value 2^Wy − 1.
    commands = [(YMAX, bits, shift) for bits in (1, 3, BMAX) for shift in (0, 4, 7, 9, 31)]
    results, _ = run(commands, answer=lambda y, ref: 1)
    check(commands, results)
    assert all(value < 1 << WIDTH for _, value in results.values())


def test_wrong_comparator_rule_is_caught():
    # Fault injection: a model that compares y > ref instead of y ≥ ref must disagree with golden.
    commands = [(y, BMAX, 0) for y in (1, 2, 40, 63)]
    results, _ = run(commands, answer=lambda y, ref: int(y > ref))
    with pytest.raises(AssertionError):
        check(commands, results)


@pytest.mark.parametrize("bmax, width, message", [
    (0, 9, "bmax must be 1..16 SAR steps, not 0"),
    (17, 9, "bmax must be 1..16 SAR steps, not 17"),
    (4, 0, "value_width must be at least 1 bit, not 0"),
])
def test_constructor_errors(bmax, width, message):
    with pytest.raises(ValueError, match=message):
        SARController(bmax, width, unsigned(1))
