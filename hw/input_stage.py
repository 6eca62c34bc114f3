"""Input planes: AXI4-Stream beats in, the wordline digits of one input cycle out (docs/design.md §3.6)."""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib.wiring import In, Out

from .interfaces import AxiStreamSignature, PeripheryComponent, next_index
from .periphery import PeripheryParams


class InputStage(PeripheryComponent):
    """Assembles input planes from ``s_axis`` and applies them to the wordlines.

    A vector arrives as ``T`` planes, ``t = 0 … T−1`` (least significant first); plane ``t`` is
    ``x_t[r] = (x[r] >> v·t) & (2^v − 1)`` for every row, row ``r`` at plane bits ``[r·v, (r+1)·v)``,
    sent as ``⌈R·v / W⌉`` beats of ``W = stream_width`` bits (beat ``i`` carries plane bits
    ``[i·W, (i+1)·W)``; the unused top bits of the last beat must be 0). ``tlast`` marks the last
    beat of plane ``T − 1``. A beat with a wrong ``tlast`` or non-zero padding raises ``error``
    for one cycle (the beat is used as if it were right).

    The plane buffer (``R·v`` bits) takes the beats of the next plane while the wordline register
    drives the current one: ``load`` moves the buffer to ``wordline`` (``input_cycle`` follows)
    and frees it at the same edge, so a one-beat plane can be accepted in that cycle.

    Members
    -------
    s_axis : In(AxiStreamSignature(W))
        The planes.
    enable : In(1)
        Accept beats (the tile is configured).
    ready : Out(1)
        The buffer holds a complete plane.
    load : In(1)
        Apply the buffered plane at this edge (only while ``ready``).
    wordline : Out(R·v), input_cycle : Out(range(max(T, 2)))
        The applied plane and its ``t``.
    vector_start : Out(1)
        The first beat of a vector is accepted in this cycle.
    error : Out(1)
        A framing error in the beat accepted in this cycle.
    """

    def members(self, params: PeripheryParams) -> dict:
        return {
            "s_axis": In(AxiStreamSignature(params.stream_width)),
            "enable": In(1),
            "ready": Out(1),
            "load": In(1),
            "wordline": Out(params.plane_width),
            "input_cycle": Out(range(max(params.cycles, 2))),
            "vector_start": Out(1),
            "error": Out(1),
        }

    def elaborate(self, platform: object) -> Module:
        m = Module()
        p = self._params
        width, beats, T = p.stream_width, p.x_beats, p.cycles
        tail = p.plane_width - (beats - 1) * width          # plane bits in the last beat

        plane = Signal(p.plane_width, reset_less=True)
        wordline = Signal(p.plane_width, reset_less=True)
        input_cycle = Signal(range(max(T, 2)), reset_less=True)
        full = Signal()
        beat = Signal(range(beats))
        t_in = Signal(range(T))                             # t of the plane being received
        t_full = Signal(range(T), reset_less=True)          # t of the complete plane in the buffer
        accept = Signal()
        last_beat = Signal()

        s = self.s_axis
        m.d.comb += [
            self.ready.eq(full),
            s.tready.eq(self.enable & (~full | self.load)),
            accept.eq(s.tvalid & s.tready),
            last_beat.eq(beat == beats - 1),
            self.wordline.eq(wordline),
            self.input_cycle.eq(input_cycle),
            self.vector_start.eq(accept & (beat == 0) & (t_in == 0)),
        ]
        padding = s.tdata[tail:].any() & last_beat if tail < width else 0
        m.d.comb += self.error.eq(accept & ((s.tlast != (last_beat & (t_in == T - 1))) | padding))

        for i in range(beats):
            size = tail if i == beats - 1 else width
            with m.If(accept & (beat == i)):
                m.d.sync += plane[i * width:i * width + size].eq(s.tdata[:size])
        with m.If(accept):
            m.d.sync += beat.eq(next_index(beat, beats))
        m.d.sync += full.eq((full & ~self.load) | (accept & last_beat))
        with m.If(accept & last_beat):
            m.d.sync += [t_full.eq(t_in), t_in.eq(next_index(t_in, T))]
        with m.If(self.load):
            m.d.sync += [wordline.eq(plane), input_cycle.eq(t_full)]
        return m

