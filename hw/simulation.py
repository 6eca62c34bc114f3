"""Running a :class:`~codesign.hw.tile.TilePeriphery` in the Amaranth simulator with its analog side.

:class:`AnalogModel` is the crossbar and its ADCs as the ports see them: every column value
``y = Σ_r x_t[r]·d[r, p]`` (docs/design.md §3.7) is computed from the wordlines the tile drives in that
very cycle and the tile's cell levels ``d[R, C]``. For the ``macro`` interface it answers each
``start`` with ``code = min(y >> k, 2^b − 1)`` after ``latency`` cycles; for ``sar`` it drives every
comparator while ``step``. :func:`simulate_tile` streams input vectors and ``acc`` values in,
takes the results (optionally with idle cycles and back-pressure) and records when every beat
moved, so cycle counts can be measured.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np
from amaranth.sim import Simulator

from .periphery import PeripheryParams, Schedule, beat_results, plane_digits, result_beats, vector_beats
from .tile import TilePeriphery

CLOCK_PERIOD = 1e-6


async def stream_put(ctx: Any, stream: Any, payload: Any) -> None:
    """Offer ``payload`` on the ``lib.stream`` ``stream`` until it is accepted."""
    ctx.set(stream.payload, payload)
    ctx.set(stream.valid, 1)
    await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


async def axis_put(ctx: Any, stream: Any, tdata: int, tlast: int) -> None:
    """Offer one beat on the AXI4-Stream ``stream`` until it is accepted."""
    ctx.set(stream.tdata, tdata)
    ctx.set(stream.tlast, tlast)
    ctx.set(stream.tvalid, 1)
    await ctx.tick().until(stream.tready)
    ctx.set(stream.tvalid, 0)


async def axis_send(ctx: Any, stream: Any, beats: Sequence[tuple[int, int]]) -> None:
    """Send ``beats`` (``(tdata, tlast)`` pairs) on ``stream`` back to back."""
    for tdata, tlast in beats:
        await axis_put(ctx, stream, tdata, tlast)


def simulate(dut: Any, *testbenches: Callable, background: Sequence[Callable] = ()) -> None:
    """Run async ``testbenches`` against ``dut`` with a clock until they all return;
    ``background`` testbenches (models of the surroundings) run alongside and never end."""
    sim = Simulator(dut)
    sim.add_clock(CLOCK_PERIOD)
    for bench in background:
        sim.add_testbench(bench, background=True)
    for bench in testbenches:
        sim.add_testbench(bench)
    sim.run()


async def apb_access(ctx: Any, apb: Any, address: int, data: int = 0, write: bool = False) -> tuple[int, int]:
    """One APB transfer (setup, then access until ``pready``); returns ``(prdata, pslverr)``."""
    ctx.set(apb.paddr, address)
    ctx.set(apb.pwrite, int(write))
    ctx.set(apb.pwdata, data)
    ctx.set(apb.psel, 1)
    ctx.set(apb.penable, 0)
    await ctx.tick()
    ctx.set(apb.penable, 1)
    prdata, error = await ctx.tick().sample(apb.prdata, apb.pslverr).until(apb.pready)
    ctx.set(apb.psel, 0)
    ctx.set(apb.penable, 0)
    return int(prdata), int(error)


async def configure(ctx: Any, tile: TilePeriphery, schedule: Schedule) -> None:
    """Write ``schedule`` into the tile through its configuration port, as firmware would."""
    p = tile.params
    mask = (1 << p.slot_width) - 1
    for row, word in enumerate(schedule.words()):
        for g in range(p.adcs):
            _, error = await apb_access(ctx, tile.apb, p.slot_address(row, g), (word >> (g * p.slot_width)) & mask, True)
            assert not error, f"slot {row}.{g} refused"
    _, error = await apb_access(ctx, tile.apb, 4, len(schedule.rows), True)
    assert not error, "ROWS refused"


class AnalogModel:
    """The crossbar and ADCs of ``tile`` (module docstring).

    Parameters
    ----------
    tile : :class:`TilePeriphery`
    digits : int array ``[R, C]``
        Cell level ``d[r, p]`` of every row and physical column (0 where no weight is held).
    latency : int, optional
        ``macro``: cycles from a ``start`` cycle to its answer, 1 … ``conversion_cycles``
        (default ``conversion_cycles``).

    ``starts`` lists every conversion started, as ``(cycle, lane, column, bits, shift)``.
    """

    def __init__(self, tile: TilePeriphery, digits: np.ndarray, latency: Optional[int] = None):
        p = tile.params
        self.tile = tile
        self.digits = np.asarray(digits, dtype=np.int64)
        if self.digits.shape != (p.rows, p.cols):
            raise ValueError(f"digits must have shape [{p.rows}, {p.cols}], not {list(self.digits.shape)}")
        self.latency = p.conversion_cycles if latency is None else latency
        if not 1 <= self.latency <= p.conversion_cycles:
            raise ValueError(f"latency must be 1..{p.conversion_cycles} cycles, not {self.latency}")
        self.starts: list[tuple[int, int, int, int, int]] = []

    def column_value(self, wordline: int, column: int) -> int:
        """``y = Σ_r x_t[r]·d[r, p]`` for the wordline word ``wordline``."""
        return int(np.dot(plane_digits(self.tile.params, wordline), self.digits[:, column]))

    async def testbench(self, ctx: Any) -> None:
        if self.tile.params.macro:
            await self._macro(ctx)
        else:
            await self._sar(ctx)

    async def _macro(self, ctx: Any) -> None:
        tile = self.tile
        lanes = [(port.start, port.column, port.bits, port.shift) for port in tile.adc]
        answers = [deque() for _ in lanes]
        cycle = 0
        async for _, _, wordline, *values in ctx.tick().sample(tile.wordline, *(s for lane in lanes for s in lane)):
            for g in range(len(lanes)):
                start, column, bits, shift = values[4 * g:4 * g + 4]
                if start:
                    self.starts.append((cycle, g, int(column), int(bits), int(shift)))
                    code = min(self.column_value(wordline, int(column)) >> int(shift), (1 << int(bits)) - 1)
                    answers[g].append((cycle + self.latency, code))
            cycle += 1
            for g, port in enumerate(tile.adc):
                due = answers[g] and answers[g][0][0] == cycle
                ctx.set(port.valid, int(bool(due)))
                ctx.set(port.code, answers[g].popleft()[1] if due else 0)

    async def _sar(self, ctx: Any) -> None:
        tile = self.tile
        async for _ in ctx.tick():
            wordline = ctx.get(tile.wordline)
            for port in tile.adc:
                answer = 0
                if ctx.get(port.step):
                    answer = int(self.column_value(wordline, ctx.get(port.column)) >= ctx.get(port.ref))
                ctx.set(port.cmp, answer)


@dataclass
class TileRun:
    """What :func:`simulate_tile` observed: results ``[B, L]``, per vector the clock cycle its first
    ``s_axis_x`` beat and its last ``m_axis_y`` beat were transferred (cycle 0 is the first), the
    conversions started, and the cycles in which ``error`` was 1."""

    results: np.ndarray
    first_beat: list[int]
    last_beat: list[int]
    starts: list[tuple[int, int, int, int, int]] = field(default_factory=list)
    error_cycles: list[int] = field(default_factory=list)

    @property
    def periods(self) -> list[int]:
        """Cycles between the first beats of consecutive vectors."""
        return [b - a for a, b in zip(self.first_beat, self.first_beat[1:])]

    @property
    def latencies(self) -> list[int]:
        """Cycles from each vector's first beat to its last result beat, inclusive."""
        return [end - start + 1 for start, end in zip(self.first_beat, self.last_beat)]


def simulate_tile(tile: TilePeriphery, digits: np.ndarray, x: np.ndarray, acc: np.ndarray, *,
                  latency: Optional[int] = None, schedule: Optional[Schedule] = None,
                  x_gap: Callable[[int], int] = lambda beat: 0, acc_gap: Callable[[int], int] = lambda beat: 0,
                  ready: Callable[[int], bool] = lambda cycle: True, budget: Optional[int] = None) -> TileRun:
    """Simulate ``tile`` on input vectors ``x[B, R]`` with partial sums ``acc[B, L]``.

    ``schedule`` is written through the configuration port first (leave it out for a tile built
    with its schedule preloaded). ``x_gap(i)`` / ``acc_gap(i)`` idle cycles precede beat ``i`` of each
    input stream; ``ready(cycle)`` decides whether results are taken in a cycle. Raises
    ``RuntimeError`` if not every result arrives within ``budget`` cycles.
    """
    p = tile.params
    x, acc = np.asarray(x), np.asarray(acc)
    count = len(x)
    if x.shape != (count, p.rows) or acc.shape != (count, p.logical_cols):
        raise ValueError(f"x must be [B, {p.rows}] and acc [B, {p.logical_cols}], not {list(x.shape)}, "
                         f"{list(acc.shape)}")
    model = AnalogModel(tile, digits, latency)
    x_beats = [beat for b in range(count) for beat in vector_beats(p, x[b])]
    acc_beats = [beat for b in range(count) for beat in result_beats(p, acc[b])]
    beats_per_vector = p.cycles * p.x_beats
    budget = budget or (count + 2) * (p.cycles * (p.depth * max(p.conversion_cycles, p.bmax) + p.x_beats)
                                      + 4 * p.y_beats + 32) * 4 + 64 * p.depth * p.adcs
    first_beat: list[int] = []
    last_beat: list[int] = []
    y_words: list[int] = []
    error_cycles: list[int] = []
    started = []

    async def monitor(ctx: Any) -> None:
        cycle = 0
        moved = 0
        async for _, _, x_valid, x_ready, y_valid, y_ready, y_data, y_last, error in ctx.tick().sample(
                tile.s_axis_x.tvalid, tile.s_axis_x.tready, tile.m_axis_y.tvalid, tile.m_axis_y.tready,
                tile.m_axis_y.tdata, tile.m_axis_y.tlast, tile.error):
            if x_valid and x_ready:
                if moved % beats_per_vector == 0:
                    first_beat.append(cycle)
                moved += 1
            if y_valid and y_ready:
                y_words.append(int(y_data))
                if y_last:
                    last_beat.append(cycle)
            if error:
                error_cycles.append(cycle)
            cycle += 1

    def producer(stream: Any, beats: list[tuple[int, int]], gap: Callable[[int], int]) -> Callable:
        async def produce(ctx: Any) -> None:
            await send(ctx, stream, beats, gap)
        return produce

    async def send(ctx: Any, stream: Any, beats: list[tuple[int, int]], gap: Callable[[int], int]) -> None:
        while not started:
            await ctx.tick()
        for i, (tdata, tlast) in enumerate(beats):
            for _ in range(gap(i)):
                await ctx.tick()
            await axis_put(ctx, stream, tdata, tlast)

    async def consume(ctx: Any) -> None:
        if schedule is not None:
            await configure(ctx, tile, schedule)
        started.append(True)
        cycle = 0
        while len(last_beat) < count and cycle < budget:
            ctx.set(tile.m_axis_y.tready, int(ready(cycle)))
            await ctx.tick()
            cycle += 1

    simulate(tile, consume, background=(monitor, model.testbench, producer(tile.s_axis_x, x_beats, x_gap),
                                        producer(tile.s_axis_acc, acc_beats, acc_gap)))
    if len(last_beat) < count:
        raise RuntimeError(f"the tile delivered {len(last_beat)} of {count} results within {budget} cycles")
    words = [y_words[b * p.y_beats:(b + 1) * p.y_beats] for b in range(count)]
    results = np.array([beat_results(p, w) for w in words], dtype=np.int64).reshape(count, p.logical_cols)
    return TileRun(results, first_beat, last_beat, model.starts, error_cycles)
