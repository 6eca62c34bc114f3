"""Running the periphery in the Amaranth simulator against a model of the analog side.

:class:`CrossbarModel` answers every comparator of a :class:`TilePeriphery` from the column values
``y[B, T, C]`` of docs/design.md §3.7 (``codesign.golden.column_values``), with exactly the rule of the
analog boundary: while ``adc[g].step`` is 1, ``adc[g].cmp = y[vector, input_cycle, adc[g].column]
≥ adc[g].ref``. :func:`simulate_tile` feeds input vectors, takes the results (optionally with
back-pressure) and reports when each vector was accepted, so cycle counts can be measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from amaranth.sim import Simulator

from .tile import TilePeriphery

CLOCK_PERIOD = 1e-6


async def stream_put(ctx: Any, stream: Any, payload: Any) -> None:
    """Offer ``payload`` on ``stream`` until it is accepted."""
    ctx.set(stream.payload, payload)
    ctx.set(stream.valid, 1)
    await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


async def stream_get(ctx: Any, stream: Any) -> Any:
    """Accept one payload from ``stream``."""
    ctx.set(stream.ready, 1)
    payload, = await ctx.tick().sample(stream.payload).until(stream.valid)
    ctx.set(stream.ready, 0)
    return payload


class CrossbarModel:
    """The analog side of ``tile``: wordlines in, comparator answers out.

    Parameters
    ----------
    tile : :class:`TilePeriphery`
    y : int array ``[B, T, C]``
        Column values of each input vector, in the order the vectors are accepted.
    """

    def __init__(self, tile: TilePeriphery, y: np.ndarray):
        p = tile.params
        y = np.asarray(y)
        if y.ndim != 3 or y.shape[1:] != (p.cycles, p.cols):
            raise ValueError(f"y must have shape [B, {p.cycles}, {p.cols}], not {list(y.shape)}")
        if y.size and (y.min() < 0 or y.max() >= 1 << p.value_width):
            raise ValueError(f"column values must lie in 0..{(1 << p.value_width) - 1} (docs/design.md §3.7)")
        self.tile = tile
        self.y = y

    async def testbench(self, ctx: Any) -> None:
        tile = self.tile
        vector = -1
        async for _, _, valid, ready in ctx.tick().sample(tile.i_stream.valid, tile.i_stream.ready):
            if valid and ready:
                vector += 1
            t = ctx.get(tile.input_cycle)
            for port in tile.adc:
                answer = 0
                if ctx.get(port.step):
                    answer = int(self.y[vector, t, ctx.get(port.column)] >= ctx.get(port.ref))
                ctx.set(port.cmp, answer)


@dataclass
class TileRun:
    """What :func:`simulate_tile` observed: results ``[B, L]`` and the clock cycle in which each
    vector was accepted and each result taken (cycle 0 is the first after reset)."""

    results: np.ndarray
    accepted: list[int]
    taken: list[int]

    @property
    def periods(self) -> list[int]:
        """Cycles between consecutive vector acceptances."""
        return [b - a for a, b in zip(self.accepted, self.accepted[1:])]


def simulate_tile(tile: TilePeriphery, x: np.ndarray, acc: np.ndarray, y: np.ndarray, *,
                  ready: Callable[[int], bool] = lambda cycle: True) -> TileRun:
    """Simulate ``tile`` on input vectors ``x[B, R]`` with starting values ``acc[B, L]``.

    ``y[B, T, C]`` are the column values the crossbar model answers from; ``ready(cycle)``
    decides whether the result consumer is ready in a cycle. Raises ``RuntimeError`` if the tile
    does not deliver every result within a generous cycle budget.
    """
    p = tile.params
    x, acc = np.asarray(x), np.asarray(acc)
    count = len(x)
    if x.shape != (count, p.rows) or acc.shape != (count, p.logical_cols):
        raise ValueError(f"x must be [B, {p.rows}] and acc [B, {p.logical_cols}], not {list(x.shape)}, "
                         f"{list(acc.shape)}")
    results: list[list[int]] = []
    accepted: list[int] = []
    taken: list[int] = []

    async def monitor(ctx: Any) -> None:
        cycle = 0
        async for _, _, i_valid, i_ready, o_valid, o_ready, payload in ctx.tick().sample(
                tile.i_stream.valid, tile.i_stream.ready, tile.o_stream.valid, tile.o_stream.ready,
                tile.o_stream.payload):
            if i_valid and i_ready:
                accepted.append(cycle)
            if o_valid and o_ready:
                taken.append(cycle)
                results.append([int(v) for v in payload])
            cycle += 1

    async def producer(ctx: Any) -> None:
        for b in range(count):
            await stream_put(ctx, tile.i_stream, {"x": [int(v) for v in x[b]], "acc": [int(v) for v in acc[b]]})

    budget = (count + 2) * (p.cycles * (1 + p.cols * p.bmax) + 16) * 4

    async def consumer(ctx: Any) -> None:
        cycle = delivered = 0
        while delivered < count and cycle < budget:
            ctx.set(tile.o_stream.ready, int(ready(cycle)))
            _, _, valid, ready_now = await ctx.tick().sample(tile.o_stream.valid, tile.o_stream.ready)
            delivered += int(bool(valid and ready_now))
            cycle += 1

    simulate(tile, producer, consumer, background=(monitor, CrossbarModel(tile, y).testbench))
    if len(taken) < count:
        raise RuntimeError(f"the tile delivered {len(taken)} of {count} results within {budget} cycles")
    return TileRun(np.array(results, dtype=np.int64).reshape(count, p.logical_cols), accepted, taken)


def simulate(dut: Any, *testbenches: Callable, background: Sequence[Callable] = ()) -> None:
    """Run async ``testbenches`` against ``dut`` with a clock until they all return;
    ``background`` testbenches (models of the surroundings) run alongside and never end."""
    sim = Simulator(dut)
    sim.add_clock(CLOCK_PERIOD, if_exists=True)
    for bench in background:
        sim.add_testbench(bench, background=True)
    for bench in testbenches:
        sim.add_testbench(bench)
    sim.run()
