# amaranth: UnusedElaboratable=no
"""ColumnSequencer (with its configuration memory) in the Amaranth simulator: which columns each
lane converts, in which order, with which (b, k), and how fast."""

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module, Signal
from amaranth.lib import wiring

from codesign.hw import ColumnSequencer, ConfigStore, PeripheryParams
from codesign.hw.sequencer import lowest_set
from codesign.hw.simulation import simulate
from codesign.mapping import Geometry
from codesign.params import WORD

# 3 ADCs on 5 logical columns of 2S = 6 physical columns; columns 30..33 hold no weights.
GEOMETRY = Geometry(rows=8, cols=34, cell_bits=3, dac_bits=1, weight_bits=8, input_bits=4, adcs=3)
PARAMS = PeripheryParams(GEOMETRY, bmax=4)


class Harness(Elaboratable):
    """The sequencer reading a :class:`ConfigStore`, as inside the tile."""

    def __init__(self, params, words):
        self.seq = ColumnSequencer(params)
        self.store = ConfigStore(params.cols, params.adcs, words)

    def elaborate(self, platform):
        m = Module()
        m.submodules.seq, m.submodules.store = self.seq, self.store
        for port, read in zip(self.seq.cfg, self.store.read):
            wiring.connect(m, port, read)
        m.d.comb += self.seq.skip.eq(self.store.skip)
        return m


def random_words(rng):
    bits = rng.integers(0, PARAMS.bmax + 3, size=PARAMS.cols)   # includes b > Bmax
    bits[rng.random(PARAMS.cols) < 0.35] = 0
    return [WORD.pack(int(b), int(k)) for b, k in zip(bits, rng.integers(0, 32, size=PARAMS.cols))]


def expected_commands(words, lane):
    """What lane ``lane`` must issue, from the words alone."""
    commands = []
    for p in lane.columns:
        bits, shift = WORD.unpack(words[p])
        if bits:
            commands.append((p, min(bits, PARAMS.bmax), shift))
    return commands


def run_passes(words, passes, *, ready=lambda g, cycle: True, writes=()):
    """Start ``passes`` passes (input cycles 0, 1, …); ``writes`` = [(before pass, column, word)].

    Returns per pass and lane the accepted commands (column, bits, shift, cycle) and the clock
    cycle of each acceptance relative to ``start``.
    """
    dut = Harness(PARAMS, words)
    seq = dut.seq
    seen = [[[] for _ in PARAMS.lanes] for _ in range(passes)]
    when = [[[] for _ in PARAMS.lanes] for _ in range(passes)]
    current = [0, 0]                                  # pass, cycles since its start

    async def control(ctx):
        for n in range(passes):
            for before, column, word in writes:
                if before == n:
                    ctx.set(dut.store.write.addr, column)
                    ctx.set(dut.store.write.data, dict(zip(("bits", "shift"), WORD.unpack(word))))
                    ctx.set(dut.store.write.en, 1)
                    await ctx.tick()
                    ctx.set(dut.store.write.en, 0)
            ctx.set(seq.cycle, n)
            ctx.set(seq.start, 1)
            current[:] = [n, 0]
            await ctx.tick()
            ctx.set(seq.start, 0)
            await ctx.tick().until(seq.done)

    async def lanes(ctx):
        async for _, _, *sampled in ctx.tick().sample(*(s for c in seq.cmd for s in (c.valid, c.ready, c.payload))):
            n, since = current
            current[1] += 1
            for g in range(PARAMS.adcs):
                valid, taken, payload = sampled[3 * g:3 * g + 3]
                if valid and taken:
                    seen[n][g].append((payload.tag.column, payload.bits, payload.shift, payload.tag.cycle))
                    when[n][g].append(since)
                ctx.set(seq.cmd[g].ready, int(ready(g, since)))

    simulate(dut, control, background=[lanes])
    return seen, when


def test_lanes_issue_converted_columns_in_order():
    rng = np.random.default_rng(3)
    words = random_words(rng)
    words[32] = WORD.pack(3, 1)                       # beyond the logical columns: never converted
    pattern = rng.random((PARAMS.adcs, 1000)) < 0.6
    seen, _ = run_passes(words, 3, ready=lambda g, cycle: bool(pattern[g, cycle]))
    for n in range(3):
        for g, lane in enumerate(PARAMS.lanes):
            want = [(p, b, k, n) for p, b, k in expected_commands(words, lane)]
            assert seen[n][g] == want, f"pass {n} lane {g}"


def test_commands_come_back_to_back():
    rng = np.random.default_rng(4)
    words = random_words(rng)
    _, when = run_passes(words, 2)
    for n in range(2):
        for g, lane in enumerate(PARAMS.lanes):
            count = len(expected_commands(words, lane))
            # first command offered the cycle after start, then one per cycle
            assert when[n][g] == list(range(1, count + 1)), f"pass {n} lane {g}"


def test_lanes_partition_the_logical_columns():
    assert [(lane.first, lane.count) for lane in PARAMS.lanes] == [(0, 1), (1, 2), (3, 2)]
    columns = [p for lane in PARAMS.lanes for p in lane.columns]
    assert columns == list(range(PARAMS.logical_cols * GEOMETRY.phys_per_logical))


def test_write_port_updates_words_and_skip():
    words = [WORD.pack(2, 0)] * PARAMS.cols
    words[7] = 0
    writes = [(1, 7, WORD.pack(3, 2)), (1, 8, 0)]
    seen, _ = run_passes(words, 2, writes=writes)
    lane = next(g for g, lane in enumerate(PARAMS.lanes) if 7 in lane.columns)
    assert 7 not in [c for c, *_ in seen[0][lane]] and 8 in [c for c, *_ in seen[0][lane]]
    assert (7, 3, 2, 1) in seen[1][lane] and 8 not in [c for c, *_ in seen[1][lane]]


@pytest.mark.parametrize("width", [1, 2, 3, 5, 6, 8])
def test_lowest_set_bit_exhaustively(width):
    value = Signal(width)
    m = Module()
    found, index = Signal(), Signal(max(1, (width - 1).bit_length()))
    some, low = lowest_set([value[i] for i in range(width)])
    m.d.comb += [found.eq(some), index.eq(low)]

    async def bench(ctx):
        for v in range(1 << width):
            ctx.set(value, v)
            want = (v & -v).bit_length() - 1 if v else 0
            assert (ctx.get(found), ctx.get(index)) == (int(v != 0), want), f"value {v:#b}"

    simulate(m, bench)


def test_constructor_rejects_other_parameters():
    with pytest.raises(TypeError, match="params must be a PeripheryParams"):
        ColumnSequencer(GEOMETRY)
