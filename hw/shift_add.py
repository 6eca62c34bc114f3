"""Shift-add and the result stream: conversions into the tile's ``L`` results (docs/design.md §3.9)."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data
from amaranth.lib.wiring import In, Out

from .interfaces import AxiStreamSignature, PeripheryComponent, beat_of_logical, next_index, select, stage_layout
from .periphery import PeripheryParams


class ShiftAdd(PeripheryComponent):
    """Adds every conversion into its result and streams the results out.

    **Writeback.** In the writeback cycle of a row (input cycle ``t``), lane ``g``'s code of
    physical column ``p = (j·S + s)·2 + pol`` (the slot holds ``j``, ``s`` and ``pol``) becomes ``value = (code << k) mod 2^Wy`` and
    ``term = value << (v·t + c·s)``, added to accumulator ``j`` when ``pol = 0`` and subtracted when
    ``pol = 1``. Slots of the same ``j`` in one row are adjacent; each adds to its left neighbour's
    sum and only the rightmost writes, so all ``A`` lanes land in one cycle. The first write of a
    vector to ``j`` starts from 0 (``touched``), so an accumulator never needs clearing.

    **Results.** Results leave in beats of ``E = floor(W / out_width)`` results, beat ``k``
    holding ``j = k·E … k·E + E − 1`` at ``tdata`` bits ``[i·out_width, (i+1)·out_width)``, the
    unused top bits 0; ``tlast`` marks beat ``⌈L/E⌉ − 1``. Beat ``k`` of ``m_axis_y`` is
    accumulator ``j`` (0 for a ``j`` not written) plus element ``i`` of beat ``k`` of ``s_axis_acc``
    (the previous row blocks' partial sums, same packing). A beat is *final* once no later row of
    the last input cycle writes to it: at the writeback of a row in input cycle ``T − 1`` every beat
    below the row's first beat becomes final, all at the tile's last row. Beats drain in order;
    ``drained`` bit ``k`` toggles as beat ``k`` is taken, and the next vector may write beat ``k`` only
    after that (:class:`~codesign.hw.sequencer.RowSequencer` checks it). An ``acc`` beat is held in a
    register, taken when it is empty, so beats leave at most every second cycle.

    Members
    -------
    wb, wb_valid : In
        The row in writeback.
    codes : In(ArrayLayout(Bmax, A))
        Each lane's code for it.
    s_axis_acc : In(AxiStreamSignature(W)), m_axis_y : Out(AxiStreamSignature(W))
    drained : Out(y_beats)
    vector_end : Out(1)
        The last beat of a result vector is taken in this cycle.
    error : Out(1)
        An ``acc`` beat with a wrong ``tlast`` or non-zero padding is taken in this cycle.
    """

    def members(self, params: PeripheryParams) -> dict:
        return {
            "wb": In(stage_layout(params)),
            "wb_valid": In(1),
            "codes": In(data.ArrayLayout(unsigned(params.bmax), params.adcs)),
            "s_axis_acc": In(AxiStreamSignature(params.stream_width)),
            "m_axis_y": Out(AxiStreamSignature(params.stream_width)),
            "drained": Out(params.y_beats),
            "vector_end": Out(1),
            "error": Out(1),
        }

    def elaborate(self, platform: object) -> Module:
        m = Module()
        p = self._params
        L, E = p.logical_cols, p.beat_results
        acc = [Signal(signed(p.acc_width), name=f"acc{j}", reset_less=True) for j in range(L)]
        touched = Signal(L)
        written = self._writeback(m, acc, touched)
        taken = self._results(m, acc, touched)
        for j in range(L):
            m.d.sync += touched[j].eq((touched[j] & ~taken[j // E]) | written[j])
        return m

    def _writeback(self, m: Module, acc: list[Signal], touched: Signal) -> list[Signal]:
        """The writeback of the row in ``wb``; returns each accumulator's write strobe."""
        p = self._params
        geometry, wb = p.geometry, self.wb
        valid = [slot.bits.any() for slot in wb.slots]
        merges = ([Const(0)] + [valid[g] & (wb.slots[g].logical == wb.slots[g - 1].logical) for g in range(1, p.adcs)]
                  + [Const(0)])
        strobes = [Signal(name=f"write{j}") for j in range(p.logical_cols)]
        previous = None
        for g, slot in enumerate(wb.slots):
            logical, slice_ = slot.logical, slot.slice
            value = Signal(p.value_width, name=f"value{g}")
            term = Signal(p.value_width + p.max_exponent, name=f"term{g}")
            base = Signal(signed(p.acc_width), name=f"base{g}")
            total = Signal(signed(p.acc_width), name=f"sum{g}")
            own = Mux(select(touched, logical), select(acc, logical), 0)
            m.d.comb += [
                value.eq(self.codes[g] << slot.shift),
                term.eq(value << (wb.t * geometry.dac_bits + slice_ * geometry.cell_bits)),
                base.eq(Mux(merges[g], previous, own) if g else own),
                total.eq(Mux(slot.polarity, base - term, base + term)),
            ]
            writes = self.wb_valid & valid[g] & ~merges[g + 1]
            for j in range(p.logical_cols):
                with m.If(writes & (logical == j)):
                    m.d.sync += acc[j].eq(total)
                    m.d.comb += strobes[j].eq(1)
            previous = total
        return strobes

    def _results(self, m: Module, acc: list[Signal], touched: Signal) -> list:
        """Finalization, the ``acc`` register and ``m_axis_y``; returns per beat its 'taken' strobe."""
        p = self._params
        L, E, beats, W = p.logical_cols, p.beat_results, p.y_beats, p.out_width
        final = Signal(beats)
        finalized = Signal(range(beats + 1))            # beats of the vector in writeback made final
        drained = Signal(beats, init=(1 << beats) - 1)
        pointer = Signal(range(beats))                  # next beat to leave
        held = Signal(data.ArrayLayout(signed(W), E), reset_less=True)   # the acc beat
        held_valid = Signal()
        acc_beat = Signal(range(beats))                  # beat index of the next acc beat
        wb = self.wb

        # finalization
        closing = self.wb_valid & (wb.t == p.cycles - 1)
        reached = Mux(wb.last, beats, beat_of_logical(p, wb.slots[0].logical))
        newly = Signal(beats)
        m.d.comb += newly.eq(Cat(closing & (finalized <= k) & (k < reached) for k in range(beats)))
        with m.If(closing):
            m.d.sync += finalized.eq(Mux(wb.last, 0, reached))

        # acc input
        s = self.s_axis_acc
        accept = s.tvalid & s.tready
        limit = [min(E, L - k * E) for k in range(beats)]           # results in beat k
        padding = s.tdata[E * W:].any() if E * W < p.stream_width else Const(0)
        partial = (acc_beat == beats - 1) & s.tdata[limit[-1] * W:E * W].any() if limit[-1] < E else Const(0)
        m.d.comb += [s.tready.eq(~held_valid),
                     self.error.eq(accept & ((s.tlast != (acc_beat == beats - 1)) | padding | partial))]
        with m.If(accept):
            m.d.sync += [held.eq(s.tdata[:E * W]), held_valid.eq(1), acc_beat.eq(next_index(acc_beat, beats))]

        # results
        out = self.m_axis_y
        take = out.tvalid & out.tready
        elements = []
        for i in range(E):
            candidates = [Mux(touched[k * E + i], acc[k * E + i], 0) if k * E + i < L else Const(0, signed(p.acc_width))
                          for k in range(beats)]
            element = Signal(signed(W), name=f"result{i}")
            m.d.comb += element.eq(select(candidates, pointer) + held[i])
            elements.append(element)
        m.d.comb += [
            out.tvalid.eq(select(final, pointer) & held_valid),
            out.tdata.eq(Cat(*elements)),
            out.tlast.eq(pointer == beats - 1),
            self.drained.eq(drained),
            self.vector_end.eq(take & out.tlast),
        ]
        taken = [take & (pointer == k) for k in range(beats)]
        m.d.sync += [final.eq((final & ~Cat(taken)) | newly), drained.eq(drained ^ Cat(taken))]
        with m.If(take):
            m.d.sync += [pointer.eq(next_index(pointer, beats)), held_valid.eq(0)]
        return taken

