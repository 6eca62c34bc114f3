"""The digital periphery of one crossbar tile: the top-level component of the generated RTL."""

from __future__ import annotations

from typing import Optional

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, meta, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out, flipped

from .config_bus import ERROR_BITS, ConfigBus
from .input_stage import InputStage
from .interfaces import (ApbSignature, AxiStreamSignature, MacroAdcSignature, PeripheryComponent, SarAdcSignature,
                         row_layout, slot_layout)
from .lanes import MacroLanes, SarLanes
from .periphery import REG_ROWS, REG_STATUS, PeripheryParams, Schedule
from .sequencer import RowSequencer
from .shift_add import ShiftAdd

#: How the analog side answers, per interface (also in ``<module>.json``).
ANALOG_RULES = {
    "macro": ("adc[g].start = 1 in a cycle: the macro samples y[t][p] (t = input_cycle, p = adc[g].column, "
              "y of docs/design.md §3.7 from the wordlines of that cycle) at the rising edge ending it and answers "
              "adc[g].valid = 1 with adc[g].code = min(y >> adc[g].shift, 2^adc[g].bits - 1) for one cycle, "
              "1..conversion_cycles cycles after the start cycle"),
    "sar": ("while adc[g].step = 1: adc[g].cmp = (y[t][p] >= adc[g].ref) with t = input_cycle, p = adc[g].column, "
            "y of docs/design.md §3.7 from the wordlines of that cycle; sampled at the next rising edge"),
}


def layout_fields(layout: data.StructLayout) -> list[dict]:
    """Bit fields of a struct layout: name, offset, width."""
    return [{"name": name, "offset": field.offset, "width": field.width} for name, field in layout]


class TileAnnotation(meta.Annotation):
    """Parameters, the configuration-memory slot, the register map and the analog-boundary rule of a
    :class:`TilePeriphery`, carried in its ``Component.metadata`` JSON."""

    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:codesign:tile-periphery:2",
        "type": "object",
        "properties": {
            "interface": {"enum": ["macro", "sar"]},
            "parameters": {"type": "object", "additionalProperties": {"type": "integer"}},
            "slot": {"type": "array", "items": {"type": "object"}},
            "registers": {"type": "object", "additionalProperties": {"type": "integer"}},
            "analog": {"type": "string"},
        },
        "required": ["interface", "parameters", "slot", "registers", "analog"],
        "additionalProperties": False,
    }

    def __init__(self, params: PeripheryParams):
        self._params = params

    @property
    def origin(self) -> PeripheryParams:
        return self._params

    def as_json(self) -> dict:
        p, g = self._params, self._params.geometry
        instance = {
            "interface": p.interface,
            "parameters": {
                "rows": g.rows, "cols": g.cols, "cell_bits": g.cell_bits, "dac_bits": g.dac_bits,
                "weight_bits": g.weight_bits, "input_bits": g.input_bits, "slices": g.slices,
                "logical_cols": p.logical_cols, "input_cycles": p.cycles, "adcs": p.adcs, "bmax": p.bmax,
                "chain": p.chain, "value_width": p.value_width, "acc_width": p.acc_width, "out_width": p.out_width,
                "conversion_cycles": p.conversion_cycles, "stream_width": p.stream_width, "depth": p.depth,
                "slot_width": p.slot_width, "plane_width": p.plane_width, "x_beats": p.x_beats,
                "beat_results": p.beat_results, "y_beats": p.y_beats, "apb_addr_width": p.apb_addr_width,
            },
            "slot": layout_fields(slot_layout(p)),
            "registers": {"STATUS": 4 * REG_STATUS, "ROWS": 4 * REG_ROWS, "slot_0_0": p.slot_address(0, 0),
                          **{f"error_{name}": 1 + i for i, name in enumerate(ERROR_BITS)}},
            "analog": ANALOG_RULES[p.interface],
        }
        self.validate(instance)
        return instance


class TileSignature(wiring.Signature):
    """Ports of :class:`TilePeriphery`, annotated with :class:`TileAnnotation`."""

    def __init__(self, params: PeripheryParams):
        self._params = params
        adc = (MacroAdcSignature(params) if params.macro else
               SarAdcSignature(params.bmax, params.value_width, params.column_width))
        super().__init__({
            "s_axis_x": In(AxiStreamSignature(params.stream_width)),
            "s_axis_acc": In(AxiStreamSignature(params.stream_width)),
            "m_axis_y": Out(AxiStreamSignature(params.stream_width)),
            "apb": In(ApbSignature(params.apb_addr_width)),
            "wordline": Out(params.plane_width),
            "input_cycle": Out(range(max(params.cycles, 2))),   # 1 bit even when T = 1
            "adc": Out(adc).array(params.adcs),
            "busy": Out(1),
            "error": Out(1),
        })

    def annotations(self, obj: object, /) -> tuple:
        return (*super().annotations(obj), TileAnnotation(self._params))


class TilePeriphery(PeripheryComponent):
    """Periphery of one crossbar tile (docs/periphery.md): input planes in on AXI4-Stream, the
    configuration memory walked row by row with ``A`` ADC lanes in lockstep, shift-add, results out
    on AXI4-Stream, configured through APB.

    Parameters
    ----------
    params : :class:`~codesign.hw.periphery.PeripheryParams`
    schedule : :class:`~codesign.hw.periphery.Schedule`, optional
        Preload the configuration memory and ``ROWS`` with a tile's schedule (simulation in
        Python). Without it the memory starts at 0 and ``ROWS`` at 0, as in generated RTL: the
        tile accepts vectors once configured through ``apb``.

    Members
    -------
    s_axis_x : In(AxiStreamSignature(W))
        Input vectors as ``T`` planes (:class:`~codesign.hw.input_stage.InputStage`).
    s_axis_acc : In(AxiStreamSignature(W)), m_axis_y : Out(AxiStreamSignature(W))
        Partial sums of the previous row blocks in, results out (:class:`~codesign.hw.shift_add.ShiftAdd`).
    apb : In(ApbSignature(apb_addr_width))
        Configuration (:class:`~codesign.hw.config_bus.ConfigBus`).
    wordline : Out(R·v), input_cycle : Out(range(max(T, 2)))
        **Analog boundary**: the applied plane ``x_t`` (row ``r`` at bits ``[r·v, (r+1)·v)``) and ``t``.
    adc : Out(MacroAdcSignature | SarAdcSignature).array(A)
        **Analog boundary**: the ADC ports (:data:`ANALOG_RULES`).
    busy : Out(1)
        A vector is in the tile: from the cycle after its first beat is accepted until its last
        result beat is taken.
    error : Out(1)
        A sticky error bit of ``STATUS`` is set.
    """

    def __init__(self, params: PeripheryParams, schedule: Optional[Schedule] = None):
        if schedule is not None and schedule.params != params:
            raise ValueError("the schedule was made for other periphery parameters")
        self._schedule = schedule
        super().__init__(params)

    def members(self, params: PeripheryParams) -> TileSignature:
        return TileSignature(params)

    def elaborate(self, platform: object) -> Module:
        m = Module()
        p = self._params
        words = self._schedule.words() if self._schedule else []
        m.submodules.memory = memory = Memory(shape=unsigned(p.row_width), depth=p.depth, init=words)
        read = memory.read_port()
        write = memory.write_port(granularity=p.slot_width if p.adcs > 1 else None)
        m.submodules.bus = bus = ConfigBus(p, rows=len(self._schedule.rows) if self._schedule else 0)
        m.submodules.inputs = inputs = InputStage(p)
        m.submodules.sequencer = seq = RowSequencer(p)
        m.submodules.lanes = lanes = MacroLanes(p) if p.macro else SarLanes(p)
        m.submodules.shift_add = shift_add = ShiftAdd(p)

        wiring.connect(m, flipped(self.s_axis_x), inputs.s_axis)
        wiring.connect(m, flipped(self.s_axis_acc), shift_add.s_axis_acc)
        wiring.connect(m, flipped(self.m_axis_y), shift_add.m_axis_y)
        wiring.connect(m, flipped(self.apb), bus.apb)
        for g in range(p.adcs):
            wiring.connect(m, flipped(self.adc[g]), lanes.adc[g])

        rows = data.View(row_layout(p), read.data)
        pending = Signal(range(4))              # vectors between their first beat and their last result beat
        busy = Signal()
        m.d.comb += [
            read.addr.eq(Mux(bus.read_en, bus.read_addr, seq.fetch_addr)),
            read.en.eq(bus.read_en | seq.fetch_en),
            write.addr.eq(bus.write_addr),
            write.data.eq(bus.write_data),
            write.en.eq(bus.write_en),
            bus.read_data.eq(rows),
            bus.busy.eq(busy),
            bus.errors.eq(Cat(lanes.error, inputs.error, shift_add.error)),
            inputs.enable.eq(bus.rows != 0),
            inputs.load.eq(seq.plane_load),
            seq.rows.eq(bus.rows),
            seq.restart.eq(bus.restart),
            seq.data.eq(rows),
            seq.plane_ready.eq(inputs.ready),
            seq.drained.eq(shift_add.drained),
            seq.done.eq(lanes.done),
            lanes.issue.eq(seq.issue),
            lanes.data.eq(rows),
            lanes.conv.eq(seq.conv),
            lanes.conv_valid.eq(seq.conv_valid),
            lanes.wb.eq(seq.wb),
            lanes.wb_valid.eq(seq.wb_valid),
            shift_add.wb.eq(seq.wb),
            shift_add.wb_valid.eq(seq.wb_valid),
            shift_add.codes.eq(lanes.codes),
            self.wordline.eq(inputs.wordline),
            self.input_cycle.eq(inputs.input_cycle),
            busy.eq(pending != 0),
            self.busy.eq(busy),
            self.error.eq(bus.error),
        ]
        m.d.sync += pending.eq(pending + inputs.vector_start - shift_add.vector_end)
        return m
