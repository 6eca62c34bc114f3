"""ADC lanes: the conversion stage of the row pipeline, for either ADC interface."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .interfaces import MacroAdcSignature, PeripheryComponent, SarAdcSignature, physical_column, row_layout, stage_layout
from .periphery import PeripheryParams
from .sar import SARController


class Lanes(PeripheryComponent):
    """Common members of :class:`MacroLanes` and :class:`SarLanes`.

    Members
    -------
    issue : In(1), data : In(row_layout)
        A row enters conversion at this edge; its slots.
    conv, conv_valid : In
        The row in conversion (:class:`~codesign.hw.sequencer.RowSequencer`).
    wb, wb_valid : In
        The row in writeback.
    done : Out(1)
        The row in conversion completes at this edge.
    codes : Out(ArrayLayout(Bmax, A))
        In the writeback cycle: each lane's code for the row in writeback.
    error : Out(1)
        An ADC protocol error in this cycle (``macro`` only).
    adc : Out(...).array(A)
        The ADC ports.
    """

    def members(self, params: PeripheryParams) -> dict:
        return {
            "issue": In(1),
            "data": In(row_layout(params)),
            "conv": In(stage_layout(params)),
            "conv_valid": In(1),
            "wb": In(stage_layout(params)),
            "wb_valid": In(1),
            "done": Out(1),
            "codes": Out(data.ArrayLayout(unsigned(params.bmax), params.adcs)),
            "error": Out(1),
            "adc": Out(self.adc_signature(params)).array(params.adcs),
        }

    def adc_signature(self, params: PeripheryParams) -> wiring.Signature:
        raise NotImplementedError


class MacroLanes(Lanes):
    """One asynchronous ADC macro per lane (:class:`~codesign.hw.interfaces.MacroAdcSignature`).

    A row's conversion lasts ``P = conversion_cycles`` cycles. In its first cycle every lane with a
    converted slot pulses ``start`` (registered) with the slot's ``column``, ``bits`` and ``shift``
    on its port, held until the next row. The macro answers with ``valid`` and ``code`` ``ℓ`` cycles
    after the ``start`` cycle, ``1 ≤ ℓ ≤ P``; the answer is kept until the row's writeback, the cycle
    after its ``P`` cycles. ``error`` flags a missing answer (none by the writeback) and an answer
    no conversion is waiting for.
    """

    def adc_signature(self, params: PeripheryParams) -> wiring.Signature:
        return MacroAdcSignature(params)

    def elaborate(self, platform: object) -> Module:
        m = Module()
        p = self._params
        P = p.conversion_cycles

        early = Signal()                 # an answer now belongs to the row in conversion (age ≥ 1)
        if P > 1:
            age = Signal(range(P), reset_less=True)           # cycles since the row entered
            with m.If(self.issue):
                m.d.sync += age.eq(0)
            with m.Elif(self.conv_valid & (age != P - 1)):
                m.d.sync += age.eq(age + 1)
            m.d.comb += [self.done.eq(self.conv_valid & (age == P - 1)), early.eq(self.conv_valid & (age != 0))]
        else:
            m.d.comb += self.done.eq(self.conv_valid)

        errors = []
        for g in range(p.adcs):
            port, slot, wb_slot = self.adc[g], self.conv.slots[g], self.wb.slots[g]
            start = Signal(name=f"start{g}")
            m.d.sync += start.eq(self.issue & self.data[g].bits.any())
            m.d.comb += [port.start.eq(start), port.column.eq(physical_column(p, slot)), port.bits.eq(slot.bits),
                         port.shift.eq(slot.shift)]
            waiting = self.wb_valid & wb_slot.bits.any()          # the row in writeback needs this lane
            if P == 1:
                m.d.comb += self.codes[g].eq(port.code)
                errors.append(waiting != port.valid)
                continue
            code_conv = Signal(p.bmax, name=f"code_conv{g}", reset_less=True)
            got_conv = Signal(name=f"got_conv{g}")
            code_wb = Signal(p.bmax, name=f"code_wb{g}", reset_less=True)
            got_wb = Signal(name=f"got_wb{g}")
            answer_conv = early & port.valid
            with m.If(self.issue):
                m.d.sync += got_conv.eq(0)
            with m.Elif(answer_conv):
                m.d.sync += [code_conv.eq(port.code), got_conv.eq(1)]
            with m.If(self.done):
                m.d.sync += [code_wb.eq(Mux(answer_conv, port.code, code_conv)), got_wb.eq(got_conv | answer_conv)]
            m.d.comb += self.codes[g].eq(Mux(port.valid & ~early, port.code, code_wb))
            expected = Mux(early, self.conv_valid & slot.bits.any() & ~got_conv, waiting & ~got_wb)
            errors.append((port.valid & ~expected) | (waiting & ~got_wb & ~(port.valid & ~early)))
        m.d.comb += self.error.eq(Cat(errors).any())
        return m


class SarLanes(Lanes):
    """One :class:`~codesign.hw.sar.SARController` per lane, one comparison per cycle.

    Every lane with a converted slot takes its command at the issue edge and compares for ``b``
    cycles; the row is ``done`` at the edge at which every lane has finished (the row takes its
    largest ``b``, at least one cycle). The codes wait in the controllers for the writeback.
    """

    def adc_signature(self, params: PeripheryParams) -> wiring.Signature:
        return SarAdcSignature(params.bmax, params.value_width, params.column_width)

    def elaborate(self, platform: object) -> Module:
        m = Module()
        p = self._params
        ready = []
        for g in range(p.adcs):
            m.submodules[f"sar{g}"] = sar = SARController(p.bmax, p.value_width, unsigned(0))
            port = self.adc[g]
            m.d.comb += [
                sar.cmd.valid.eq(self.issue & self.data[g].bits.any()),
                sar.cmd.p.bits.eq(self.data[g].bits),
                sar.cmd.p.shift.eq(self.data[g].shift),
                port.step.eq(sar.adc.step),
                port.trial.eq(sar.adc.trial),
                port.shift.eq(sar.adc.shift),
                port.ref.eq(sar.adc.ref),
                port.column.eq(physical_column(p, self.conv.slots[g])),
                sar.adc.cmp.eq(port.cmp),
                sar.res.ready.eq(self.wb_valid & self.wb.slots[g].bits.any()),
                self.codes[g].eq(sar.res.p.code),
            ]
            ready.append(sar.cmd.ready)
        m.d.comb += [self.done.eq(self.conv_valid & Cat(ready).all()), self.error.eq(Const(0))]
        return m
