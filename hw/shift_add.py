"""Shift-add: recombines conversions into the tile's logical-column results (docs/design.md §3.9)."""

from __future__ import annotations

from amaranth.hdl import Array, Module, Mux, Signal, Value, signed
from amaranth.lib import stream
from amaranth.lib.wiring import In, Out

from .periphery import PeripheryComponent, PeripheryParams


def divmod_const(value: Value, divisor: int) -> tuple[Value, Value]:
    """``(value // divisor, value % divisor)`` for a constant divisor (bit slices for a power of two)."""
    if divisor & (divisor - 1) == 0:
        bits = divisor.bit_length() - 1
        return value[bits:], value[:bits]
    return value // divisor, value % divisor


class ShiftAdd(PeripheryComponent):
    """Accumulates ``±value << (v·t + c·s)`` into the logical column of each conversion.

    A conversion of physical column ``p = (j·S + s)·2 + pol`` in input cycle ``t`` with
    digital value ``value = code << k`` adds ``2^(v·t + c·s)·value`` to result ``j`` when
    ``pol = 0`` and subtracts it when ``pol = 1``. ``load`` sets every result to ``init`` (the
    partial sums of the previous row blocks, or 0), so the tiles of a layer chain.

    Each lane has one adder and writes only its own logical columns (:attr:`PeripheryParams.lanes`),
    so every lane can deliver one conversion per cycle. Widths: see :mod:`codesign.hw.periphery`
    (``out_width`` holds ``chain`` tiles; no sum can overflow).

    Timing
    ------
    A conversion accepted in cycle ``n`` is included in ``sums`` from cycle ``n + 1``. In a
    ``load`` cycle ``sums`` takes ``init`` at the edge and no conversion is accepted.

    Parameters
    ----------
    params : :class:`PeripheryParams`

    Members
    -------
    conv : In(stream.Signature(params.conversion_layout)).array(adcs)
        Conversions ``(code, value, tag = (column, cycle))`` of each lane, in any order.
    load : In(1)
        Replace every result by ``init`` at the next edge.
    init : In(ArrayLayout(signed(out_width), L))
        Starting values of the results.
    sums : Out(ArrayLayout(signed(out_width), L))
        The results.
    """

    def members(self, params: PeripheryParams) -> dict:
        return {
            "conv": In(stream.Signature(params.conversion_layout)).array(params.adcs),
            "load": In(1),
            "init": In(params.results_layout),
            "sums": Out(params.results_layout),
        }

    def elaborate(self, platform: object) -> Module:
        m = Module()
        p = self._params
        geometry = p.geometry
        acc = [Signal(signed(p.out_width), name=f"acc{j}") for j in range(p.logical_cols)]
        m.d.comb += [self.sums[j].eq(acc[j]) for j in range(p.logical_cols)]
        with m.If(self.load):
            m.d.sync += [acc[j].eq(self.init[j]) for j in range(p.logical_cols)]

        for g, lane in enumerate(p.lanes):
            conv = self.conv[g]
            logical, slice_ = divmod_const(conv.p.tag.column[1:], geometry.slices)
            negative = conv.p.tag.column[0]
            exponent = Signal(range(p.max_exponent + 1), name=f"exponent{g}")
            shifted = Signal(p.value_width + p.max_exponent, name=f"shifted{g}")
            term = Signal(signed(p.out_width), name=f"term{g}")
            bank = Array(acc[lane.first:lane.first + lane.count])
            target = bank[logical - lane.first]
            m.d.comb += [
                conv.ready.eq(~self.load),
                exponent.eq(conv.p.tag.cycle * geometry.dac_bits + slice_ * geometry.cell_bits),
                shifted.eq(conv.p.value << exponent),
                term.eq(Mux(negative, -shifted, shifted)),
            ]
            with m.If(conv.valid & conv.ready):
                m.d.sync += target.eq(target + term)
        return m
