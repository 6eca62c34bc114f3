"""The cocotb test of a simulator run (imported by the simulator's embedded Python, never by codesign).

It reads the job :mod:`codesign.sim.runner` wrote (``CODESIGN_SIM_JOB``, a JSON file naming one
``.npz`` of arrays per segment; everything computed from the golden model comes in them, so the
simulator's Python imports neither the golden model nor pydantic) and runs its segments one after
the other. A segment is one tile and some of its input vectors. For each it

1. resets ``<module>_harness`` for two cycles with ``reload`` high, so the harness reads the tile's
   ``.mem`` file and, in fast mode, its column values, and waits until the configuration words are
   written (``loaded``);
2. offers the input vectors on ``i_stream`` (``x`` and ``acc`` packed after ``<module>.json``),
   leaving ``gaps[b]`` idle cycles before vector ``b``;
3. takes the results from ``o_stream``, holding ``ready`` low for ``stalls[b]`` cycles after each
   result appears (back-pressure), and checks that the payload holds and ``done`` pulses;
4. checks, whenever an ADC starts the comparisons of an input cycle, that ``wordline`` carries
   ``x_t`` of the vector in progress (``digits[t, b]``, from ``codesign.golden.input_cycles``);
5. in Python mode, answers every comparator at every falling clock edge from the column values
   ``y[b, t, p]`` (``codesign.golden.column_values``): ``cmp = y[vector, input_cycle, column] ≥ ref``.

After each segment it appends what it observed (results, the clock cycle of every handshake,
protocol errors) as one JSON line to the job's output file; the comparison with the golden model
happens outside the simulator.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge, SimTimeoutError, with_timeout
from cocotb.utils import get_sim_time

from codesign.sim.ports import PortMap

#: Clock period in ns (the harness is built with a 1 ns / 1 ps timescale).
PERIOD_NS = 10
#: Cycles of reset at the start of a segment.
RESET_CYCLES = 2
#: Errors kept per segment (the first ones tell the story).
MAX_ERRORS = 20


def now() -> int:
    """The current clock cycle (rising edge ``n`` at ``n·PERIOD_NS``)."""
    return round(get_sim_time("ns") / PERIOD_NS)


def input_cycle(dut: Any) -> int:
    """``t`` of the wordline digits."""
    return int(dut.input_cycle.value)


def path_value(path: str) -> int:
    """A file path as the bytes of a Verilog string (first character most significant)."""
    return int.from_bytes(path.encode(), "big")


@dataclass
class Observed:
    """What the testbench saw in one segment; one JSON line for :mod:`codesign.sim.runner`."""

    results: list[list[int]] = field(default_factory=list)
    accepted: list[int] = field(default_factory=list)
    valid: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    start: int = 0          #: clock cycle the segment's reset began
    cycles: int = 0         #: clock cycles of the segment
    seconds: float = 0.0    #: wall time of the segment
    vector: int = -1        #: the vector in progress (last accepted)

    def error(self, message: str) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(message)


async def reset_and_load(dut: Any, segment: dict) -> None:
    """Reset with ``reload``: the harness reads the segment's files; then wait for ``loaded``."""
    await FallingEdge(dut.clk)
    dut.rst.value = 1
    dut.reload.value = 1
    dut.i_stream__valid.value = 0
    dut.o_stream__ready.value = 0
    dut.cfg_path.value = path_value(segment["cfg"])
    dut.y_path.value = path_value(segment["y"])
    dut.y_entries.value = segment["entries"]
    await FallingEdge(dut.clk)
    dut.reload.value = 0
    for _ in range(RESET_CYCLES - 1):
        await FallingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    await ReadOnly()
    if not dut.loaded.value:
        await RisingEdge(dut.loaded)


async def produce(dut: Any, ports: PortMap, arrays: Any, seen: Observed) -> None:
    """Offer every vector; a vector is accepted at the first rising edge with ``ready`` high."""
    x, acc, gaps = arrays["x"], arrays["acc"], arrays["gaps"]
    for b in range(len(x)):
        await FallingEdge(dut.clk)
        dut.i_stream__valid.value = 0
        for _ in range(int(gaps[b])):
            await FallingEdge(dut.clk)
        dut.i_stream__payload.value = ports.pack_vector(x[b], acc[b])
        dut.i_stream__valid.value = 1
        if not dut.i_stream__ready.value:
            await RisingEdge(dut.i_stream__ready)
        await RisingEdge(dut.clk)
        seen.accepted.append(now())
        seen.vector = b
    await FallingEdge(dut.clk)
    dut.i_stream__valid.value = 0


async def consume(dut: Any, ports: PortMap, count: int, stalls: np.ndarray, seen: Observed) -> None:
    """Take ``count`` results, holding ``ready`` low for ``stalls[b]`` cycles after each appears."""
    for b in range(count):
        await RisingEdge(dut.o_stream__valid)
        await ReadOnly()
        seen.valid.append(now())
        payload = int(dut.o_stream__payload.value)
        if not dut.done.value:
            seen.error(f"vector {b}: done is 0 in the first cycle of o_stream.valid")
        await FallingEdge(dut.clk)
        for _ in range(int(stalls[b])):
            await FallingEdge(dut.clk)
        if int(dut.o_stream__payload.value) != payload:
            seen.error(f"vector {b}: o_stream.payload changed while ready was low")
        dut.o_stream__ready.value = 1
        await RisingEdge(dut.clk)
        seen.results.append(ports.unpack_results(payload))
        dut.o_stream__ready.value = 0


async def check_wordlines(dut: Any, g: int, ports: PortMap, digits: np.ndarray, seen: Observed) -> None:
    """Whenever ADC ``g`` starts comparing, ``wordline`` must be ``x_t`` of the vector in progress."""
    step = getattr(dut, f"adc__{g}__step")
    while True:
        await RisingEdge(step)
        await ReadOnly()
        t = input_cycle(dut)
        want = ports.pack_wordline(digits[t, seen.vector])
        got = int(dut.wordline.value)
        if got != want:
            seen.error(f"vector {seen.vector} input cycle {t}: wordline {got:#x}, expected x_t = {want:#x}")


async def answer_comparators(dut: Any, ports: PortMap, y: np.ndarray, seen: Observed) -> None:
    """Python mode: drive every ``adc__<g>__cmp`` at every falling edge by the comparator rule."""
    adcs = [(getattr(dut, f"adc__{g}__step"), getattr(dut, f"adc__{g}__column"), getattr(dut, f"adc__{g}__ref"),
             getattr(dut, f"adc__{g}__cmp")) for g in range(ports.adcs)]
    while True:
        await FallingEdge(dut.clk)
        t = None
        for step, column, ref, cmp in adcs:
            if step.value:
                if t is None:
                    t = input_cycle(dut)
                cmp.value = int(y[seen.vector, t, int(column.value)] >= int(ref.value))


async def run_segment(dut: Any, ports: PortMap, segment: dict, python_mode: bool, timeout_cycles: int) -> Observed:
    """One tile's vectors from reset to the last result (or the timeout)."""
    arrays = np.load(segment["arrays"])
    seen = Observed(start=now())
    wall = time.perf_counter()
    await reset_and_load(dut, segment)
    if bool(dut.table_mode.value) == python_mode:
        seen.error(f"the harness {'has' if python_mode else 'lacks'} a column-value table")
    helpers = [cocotb.start_soon(check_wordlines(dut, g, ports, arrays["digits"], seen)) for g in range(ports.adcs)]
    if python_mode:
        helpers.append(cocotb.start_soon(answer_comparators(dut, ports, arrays["y"], seen)))
    helpers.append(cocotb.start_soon(produce(dut, ports, arrays, seen)))
    count = len(arrays["x"])
    try:
        await with_timeout(cocotb.start_soon(consume(dut, ports, count, arrays["stalls"], seen)),
                           timeout_cycles * PERIOD_NS, "ns")
    except SimTimeoutError:
        seen.error(f"timeout: {len(seen.results)} of {count} results after {timeout_cycles} cycles")
    for helper in helpers:
        helper.cancel()
    seen.cycles = now() - seen.start
    seen.seconds = time.perf_counter() - wall
    return seen


@cocotb.test()
async def tiles(dut: Any) -> None:
    """Run every segment of the job named by ``CODESIGN_SIM_JOB``."""
    job = json.loads(Path(os.environ["CODESIGN_SIM_JOB"]).read_text())
    ports = PortMap.load(job["ports"])
    python_mode = job["mode"] == "python"
    for g in range(ports.adcs):
        getattr(dut, f"adc__{g}__cmp").value = 0
    Clock(dut.clk, PERIOD_NS, unit="ns").start()
    with open(job["out"], "a") as out:
        for segment in job["segments"]:
            seen = await run_segment(dut, ports, segment, python_mode, segment["timeout_cycles"])
            out.write(json.dumps(vars(seen)) + "\n")
            out.flush()
