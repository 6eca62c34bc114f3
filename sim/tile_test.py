"""The cocotb test of a simulator run (imported by the simulator's embedded Python, never by codesign).

It reads the job :mod:`codesign.sim.runner` wrote (``CODESIGN_SIM_JOB``, a JSON file naming one
``.npz`` of arrays per segment; everything computed from the golden model comes in them) and runs
its segments one after the other. A segment is one tile and its input vectors. For each it

1. resets ``<module>_harness`` for two cycles with ``reload`` high, so the harness reads the tile's
   ``.mem``, cell-level and expected-setting files, and waits until it has written the
   configuration through APB (``loaded``);
2. sends every vector on ``s_axis_x`` (its ``T`` planes in beats) and its partial sums on
   ``s_axis_acc``, and takes the results from ``m_axis_y``: the first ``burst`` vectors back to
   back (to measure the cycle counts), the others with ``gaps[b]`` idle cycles before vector ``b``
   on both inputs and ``ready`` held low for ``stalls[b]`` cycles before its results
   (back-pressure; the harness checks the stream protocol, :data:`~codesign.sim.harness.RULES`);
3. in Python mode, answers the ADCs itself at every falling clock edge from the tile's cell levels
   and the wordlines in that cycle (``macro``: a ``start`` answered ``latency`` cycles later;
   ``sar``: ``cmp = y ≥ ref`` while ``step``);
4. reads how many conversions were started, then sends vector 0 twice more with the ``acc`` values
   that take every result to the extremes of its ``W`` bits, ``±chain·tile_bound`` (:func:`extremes`):
   each result must be vector 0's partial sum plus its ``acc``, exactly (no top bit of the output
   path is left unexercised);
5. at the end checks that the harness saw no protocol error (naming each rule broken and the cycle
   of the first violation) and that the module's ``error`` stayed 0.

After each segment it appends what it observed (results, the clock cycle of every vector's first
input beat and last result beat, errors) as one JSON line to the job's output file; the comparison
with the golden model happens outside the simulator.
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
from cocotb.triggers import ClockCycles, FallingEdge, First, ReadOnly, RisingEdge, Timer, ValueChange
from cocotb.utils import get_sim_time

from codesign.hw.periphery import beat_results, plane_digits, result_beats, vector_beats
from codesign.sim.ports import PortMap

#: Clock period in ns (the harness is built with a 1 ns / 1 ps timescale).
PERIOD_NS = 10
#: Cycles of reset at the start of a segment.
RESET_CYCLES = 2
#: Errors kept per segment (the first ones tell the story).
MAX_ERRORS = 20
#: Idle input cycles before, and cycles each result beat waits for ready in, the two vectors of the
#: extremes probe: every segment sees back-pressure whatever its job's random stalls.
PROBE_GAPS, PROBE_STALLS = [0, 2], [1, 2]
#: Cycles a segment goes on after the harness flags a protocol violation (then it stops waiting).
GRACE_CYCLES = 2000


def now() -> int:
    """The current clock cycle: rising edge ``n`` is at ``n·PERIOD_NS``."""
    return int(get_sim_time("ns") // PERIOD_NS)


def path_value(path: str) -> int:
    """A file path as the bytes of a Verilog string (first character most significant)."""
    return int.from_bytes(path.encode(), "big")


@dataclass
class Observed:
    """What the testbench saw in one segment; one JSON line for :mod:`codesign.sim.runner`."""

    results: list[list[int]] = field(default_factory=list)
    first_beat: list[int] = field(default_factory=list)
    last_beat: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    start: int = 0          #: clock cycle the segment's reset began
    cycles: int = 0         #: clock cycles of the segment
    seconds: float = 0.0    #: wall time of the segment
    conversions: int = 0    #: conversions the harness counted

    def error(self, message: str) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(message)


def stream(dut: Any, name: str) -> tuple[Any, Any, Any, Any]:
    return tuple(getattr(dut, f"{name}__{member}") for member in ("tdata", "tvalid", "tlast", "tready"))


async def reset_and_load(dut: Any, segment: dict) -> None:
    """Reset with ``reload``: the harness reads the segment's files; then wait for ``loaded``."""
    await FallingEdge(dut.clk)
    dut.rst.value = 1
    dut.reload.value = 1
    for name in ("s_axis_x", "s_axis_acc"):
        getattr(dut, f"{name}__tvalid").value = 0
    dut.m_axis_y__tready.value = 0
    dut.cfg_path.value = path_value(segment["cfg"])
    dut.cfg_rows.value = segment["rows"]
    dut.digits_path.value = path_value(segment["digits"])
    dut.expect_path.value = path_value(segment["expect"])
    dut.latency.value = segment["latency"]
    dut.model_mode.value = int(segment["model_mode"])
    await FallingEdge(dut.clk)
    dut.reload.value = 0
    for _ in range(RESET_CYCLES - 1):
        await FallingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    await ReadOnly()
    if not dut.loaded.value:
        await RisingEdge(dut.loaded)


async def settled(signal: Any) -> None:
    """Wait until ``signal`` is 1 at the end of a time step (a combinational signal may pulse within
    a time step while the simulator settles it: Icarus does, so a rising edge alone proves nothing)."""
    await ReadOnly()
    while not signal.value:
        await RisingEdge(signal)
        await ReadOnly()


async def send(dut: Any, name: str, vectors: list[list[tuple[int, int]]], gaps: list[int],
               record: list[int] | None) -> None:
    """Offer the beats of every vector on stream ``name``, ``gaps[b]`` idle cycles before vector ``b``;
    ``record`` receives the cycle in which each vector's first beat is transferred."""
    tdata, tvalid, tlast, tready = stream(dut, name)
    for b, beats in enumerate(vectors):
        for _ in range(gaps[b]):
            await FallingEdge(dut.clk)
            tvalid.value = 0
        for i, (data, last) in enumerate(beats):
            await FallingEdge(dut.clk)
            tdata.value, tlast.value, tvalid.value = data, last, 1
            await settled(tready)
            if record is not None and i == 0:
                record.append(now())
            await RisingEdge(dut.clk)           # the transfer
    await FallingEdge(dut.clk)
    tvalid.value = 0


async def receive(dut: Any, ports: PortMap, count: int, stalls: list[int], seen: Observed,
                  results: list[list[int]]) -> None:
    """Take ``count`` result vectors into ``results``; each beat of vector ``b`` waits ``stalls[b]``
    cycles with ``tvalid`` high and ``tready`` low (back-pressure) before it is taken. Records the
    cycle of each vector's last beat in ``seen``."""
    tvalid, tready = dut.m_axis_y__tvalid, dut.m_axis_y__tready
    beats = ports.params.y_beats
    for b in range(count):
        words = []
        for _ in range(beats):
            await FallingEdge(dut.clk)
            if stalls[b]:
                tready.value = 0
                await settled(tvalid)           # the beat is offered …
                for _ in range(stalls[b]):      # … and has to wait
                    await FallingEdge(dut.clk)
            tready.value = 1
            await settled(tvalid)
            words.append(int(dut.m_axis_y__tdata.value))
            cycle = now()
            await RisingEdge(dut.clk)           # the transfer
        seen.last_beat.append(cycle)
        results.append(beat_results(ports.params, words))
    await FallingEdge(dut.clk)
    tready.value = 0


async def violation(dut: Any) -> None:
    """Return :data:`GRACE_CYCLES` cycles after the harness first flags a protocol violation."""
    while not int(dut.protocol_error.value):
        await ValueChange(dut.protocol_error)
    await ClockCycles(dut.clk, GRACE_CYCLES)


def extremes(params: Any, partial: list[int]) -> list[list[int]]:
    """Two ``acc`` vectors that take results ``partial[j] + acc[j]`` to ``+chain·tile_bound`` and to
    ``−chain·tile_bound`` (each ``acc`` clipped to the ``W``-bit range, so the sum stays in it)."""
    bound = params.chain * params.tile_bound
    low, high = -(1 << (params.out_width - 1)), (1 << (params.out_width - 1)) - 1
    return [[min(max(target - value, low), high) for value in partial] for target in (bound, -bound)]


async def exchange(dut: Any, ports: PortMap, x: list[list[int]], acc: list[list[int]], gaps: list[int],
                   stalls: list[int], seen: Observed, timeout: int, record: bool) -> list[list[int]]:
    """Send vectors ``x`` with partial sums ``acc`` and take their results (those that came, after
    a timeout or :func:`violation`, noted in ``seen``); ``record``: keep the cycles of the first and
    last beats in ``seen``."""
    p = ports.params
    senders = [cocotb.start_soon(send(dut, "s_axis_x", [vector_beats(p, v) for v in x], gaps,
                                      seen.first_beat if record else None)),
               cocotb.start_soon(send(dut, "s_axis_acc", [result_beats(p, v) for v in acc], gaps, None))]
    sink = seen if record else Observed()
    results: list[list[int]] = []
    receiving = cocotb.start_soon(receive(dut, ports, len(x), stalls, sink, results))
    watching = cocotb.start_soon(violation(dut))
    await First(receiving.complete, watching.complete, Timer(timeout * PERIOD_NS, "ns"))
    if not receiving.done():
        why = f"{GRACE_CYCLES} cycles after a protocol violation" if watching.done() else f"after {timeout} cycles"
        seen.error(f"stopped waiting: {len(sink.last_beat)} of {len(x)} results {why}")
    for task in (receiving, watching, *senders):
        task.cancel()
    return results


async def answer_adcs(dut: Any, ports: PortMap, digits: np.ndarray, latency: int) -> None:
    """Python mode: the analog side, from the wordlines of each cycle (module docstring, step 3)."""
    p = ports.params
    adcs = range(p.adcs)
    pending: list[list[tuple[int, int]]] = [[] for _ in adcs]
    cache: dict[int, np.ndarray] = {}

    def column_value(column: int) -> int:
        word = int(dut.wordline.value)
        if word not in cache:
            cache.clear()
            cache[word] = np.array(plane_digits(p, word), dtype=np.int64) @ digits
        return int(cache[word][column])

    while True:
        await FallingEdge(dut.clk)
        cycle = now()
        for g in adcs:
            port = lambda member: getattr(dut, f"adc__{g}__{member}")
            if p.macro:
                if port("start").value:
                    bits, shift = int(port("bits").value), int(port("shift").value)
                    code = min(column_value(int(port("column").value)) >> shift, (1 << bits) - 1)
                    pending[g].append((cycle + latency, code))
                due = pending[g] and pending[g][0][0] == cycle
                port("valid").value = int(bool(due))
                port("code").value = pending[g].pop(0)[1] if due else 0
            elif port("step").value:
                port("cmp").value = int(column_value(int(port("column").value)) >= int(port("ref").value))


async def run_segment(dut: Any, ports: PortMap, segment: dict, python_mode: bool) -> Observed:
    """One tile's vectors from reset to the last result (or the timeout), then the extremes probe."""
    from codesign.sim.harness import RULES

    p = ports.params
    arrays = np.load(segment["arrays"])
    seen = Observed(start=now())
    wall = time.perf_counter()
    await reset_and_load(dut, {**segment, "model_mode": not python_mode})
    x, acc, gaps, stalls = arrays["x"].tolist(), arrays["acc"].tolist(), arrays["gaps"].tolist(), arrays["stalls"].tolist()
    count, burst = len(x), segment["burst"]
    gaps = [0 if b < burst else gap for b, gap in enumerate(gaps)]
    stalls = [0 if b < burst else stall for b, stall in enumerate(stalls)]
    helper = cocotb.start_soon(answer_adcs(dut, ports, arrays["digits"], segment["latency"])) if python_mode else None
    seen.results = await exchange(dut, ports, x, acc, gaps, stalls, seen, segment["timeout_cycles"], record=True)
    await FallingEdge(dut.clk)
    await ReadOnly()
    seen.conversions = int(dut.conversions.value)
    if len(seen.results) == count:
        partial = [r - a for r, a in zip(seen.results[0], acc[0])]
        probes = extremes(p, partial)
        got = await exchange(dut, ports, [x[0]] * 2, probes, PROBE_GAPS, PROBE_STALLS, seen,
                             segment["timeout_cycles"], record=False)
        for want, result, name in zip(probes, got, ("+", "-")):
            wrong = [j for j, (a, r, q) in enumerate(zip(want, result, partial)) if r != q + a]
            if wrong:
                j = wrong[0]
                seen.error(f"the extremes probe: vector 0 again, with acc taking its results to {name}chain·tile_bound, "
                           f"gives {result[j]} at j = {j}, not {partial[j]} + {want[j]} ({len(wrong)} of {len(want)} "
                           f"results wrong: the output path loses top bits)")
    if helper is not None:
        helper.cancel()
    await FallingEdge(dut.clk)          # out of any read-only phase a timeout may have left
    await ReadOnly()
    flags = int(dut.protocol_error.value)
    if flags:
        broken = "; ".join(rule for bit, rule in enumerate(RULES) if flags >> bit & 1)
        seen.errors.insert(0, f"protocol check failed from cycle {int(dut.protocol_cycle.value)} after reload: "
                              f"{broken}")
    if str(dut.error.value) != "0":
        seen.error(f"the module's error output is {dut.error.value} (a sticky STATUS error bit)")
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
        for member in (("valid", "code") if ports.params.macro else ("cmp",)):
            getattr(dut, f"adc__{g}__{member}").value = 0
    Clock(dut.clk, PERIOD_NS, unit="ns").start()
    with open(job["out"], "a") as out:
        for segment in job["segments"]:
            seen = await run_segment(dut, ports, segment, python_mode)
            out.write(json.dumps(vars(seen)) + "\n")
            out.flush()
