"""The digital periphery of one crossbar tile: the top-level component of the generated RTL."""

from __future__ import annotations

from typing import Sequence

from amaranth.hdl import Cat, ClockSignal, Instance, Module, Shape, Signal, unsigned
from amaranth.lib import data, meta, stream, wiring
from amaranth.lib.wiring import In, Out

from .config_store import ConfigStore
from .periphery import (CONFIG_WORD, CYCLE_OVERHEAD, VECTOR_OVERHEAD, AdcSignature, ConfigWriteSignature,
                        PeripheryComponent, PeripheryParams)
from .sar import SARController
from .sequencer import ColumnSequencer
from .shift_add import ShiftAdd

#: Placeholder for the Verilog parameter naming the tile's ``.mem`` file; :mod:`codesign.rtl`
#: turns it into the top-level parameter ``CFG_FILE``.
CFG_FILE_PLACEHOLDER = "@CODESIGN_CFG_FILE@"

COMPARATOR_RULE = ("while adc[g].step = 1: adc[g].cmp = (y[t][p] >= adc[g].ref) with t = input_cycle, "
                   "p = adc[g].column, y from docs/design.md §3.7; sampled at the next rising edge")
CYCLE_RULE = (f"T*({CYCLE_OVERHEAD} + max over ADC lanes g of sum of min(b[p], bmax) over the lane's columns) "
              f"+ {VECTOR_OVERHEAD}")


def layout_fields(name: str, layout: data.Layout) -> list[dict]:
    """Bit fields of a packed port: name, offset, element count, element width, signedness."""
    def entry(field_name: str, offset: int, shape: object) -> dict:
        count = 1
        if isinstance(shape, data.ArrayLayout):
            count, shape = shape.length, shape.elem_shape
        cast = Shape.cast(shape)
        return {"name": field_name, "offset": offset, "count": count, "width": cast.width, "signed": cast.signed}

    if isinstance(layout, data.StructLayout):
        return [entry(key, field.offset, field.shape) for key, field in layout]
    return [entry(name, 0, layout)]


class TileAnnotation(meta.Annotation):
    """Parameters, packed-port layouts and the analog-boundary rules of a :class:`TilePeriphery`,
    carried in its ``Component.metadata`` JSON."""

    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:codesign:tile-periphery:1",
        "type": "object",
        "properties": {
            "parameters": {"type": "object", "additionalProperties": {"type": "integer"}},
            "lanes": {"type": "array", "items": {"type": "object"}},
            "fields": {"type": "object", "additionalProperties": {"type": "array"}},
            "comparator": {"type": "string"},
            "cycles_per_vector": {"type": "string"},
        },
        "required": ["parameters", "lanes", "fields", "comparator", "cycles_per_vector"],
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
            "parameters": {
                "rows": g.rows, "cols": g.cols, "cell_bits": g.cell_bits, "dac_bits": g.dac_bits,
                "weight_bits": g.weight_bits, "input_bits": g.input_bits, "slices": g.slices,
                "logical_cols": p.logical_cols, "input_cycles": p.cycles, "adcs": p.adcs, "bmax": p.bmax,
                "chain": p.chain, "value_width": p.value_width, "out_width": p.out_width,
            },
            "lanes": [{"adc": index, "logical_columns": [lane.first, lane.first + lane.count],
                       "physical_columns": [lane.columns.start, lane.columns.stop]}
                      for index, lane in enumerate(p.lanes)],
            "fields": {
                "i_stream__payload": layout_fields("vector", p.vector_layout),
                "o_stream__payload": layout_fields("results", p.results_layout),
                "wordline": layout_fields("x_t", data.ArrayLayout(unsigned(g.dac_bits), g.rows)),
                "config__data": layout_fields("word", CONFIG_WORD),
            },
            "comparator": COMPARATOR_RULE,
            "cycles_per_vector": CYCLE_RULE,
        }
        self.validate(instance)
        return instance


class TileSignature(wiring.Signature):
    """Ports of :class:`TilePeriphery`, annotated with :class:`TileAnnotation`."""

    def __init__(self, params: PeripheryParams):
        self._params = params
        super().__init__({
            "i_stream": In(stream.Signature(params.vector_layout)),
            "o_stream": Out(stream.Signature(params.results_layout)),
            "busy": Out(1),
            "done": Out(1),
            "wordline": Out(data.ArrayLayout(unsigned(params.geometry.dac_bits), params.rows)),
            "input_cycle": Out(range(max(params.cycles, 2))),   # 1 bit even when T = 1
            "adc": Out(AdcSignature(params.bmax, params.value_width, params.cols)).array(params.adcs),
            "config": In(ConfigWriteSignature(params.cols)),
        })

    def annotations(self, obj: object, /) -> tuple:
        return (*super().annotations(obj), TileAnnotation(self._params))


class TilePeriphery(PeripheryComponent):
    """Periphery of one crossbar tile: bit-serial inputs, per-column SAR conversion with skip,
    shift-add, one result vector out.

    For every input vector it applies ``x`` to the wordlines ``v`` bits at a time over
    ``T = ceil(a/v)`` input cycles, least significant first (docs/design.md §3.6). In each input cycle
    every ADC lane converts its columns with ``b > 0`` at their own resolution and shift
    (3.8), and the shift-add recombines the codes into the ``L`` results (3.9), starting from
    the vector's ``acc`` field. The configuration memory holds one ``(b, k)`` word per physical
    column (``params/<layer>/tile_NNN.mem``).

    Cycles per input vector (input always valid, output always ready), exactly::

        T · (1 + max_g Σ_{p in lane g} min(b_p, Bmax)) + 3

    one cycle per input cycle for the wordlines to settle while the first command is handed
    over, ``b`` cycles per converted column, and three per vector (accept, drain, output).

    Analog boundary (what a crossbar macro or a testbench model connects to)
    -----------------------------------------------------------------------
    ``wordline`` (out, ``R·v`` bits)
        ``x_t[r]`` of row ``r`` at bits ``[r·v, (r+1)·v)``, ``t = input_cycle``. Input cycle
        ``t`` begins the cycle after the vector was accepted (``t = 0``) or after the last
        comparison step of ``t − 1``, and ends with its own last comparison step.
    ``input_cycle`` (out, ``max(1, ceil_log2(T))`` bits)
        ``t`` of the wordline digits.
    ``adc__<g>__step`` (out, 1)
        ADC ``g`` compares in this cycle.
    ``adc__<g>__column`` (out, ``ceil_log2(C)`` bits)
        Physical column ``p`` connected to ADC ``g`` (valid while ``step``).
    ``adc__<g>__trial`` (out, ``Bmax``) and ``adc__<g>__shift`` (out, 5)
        The trial code and ``k``, for a capacitive DAC scaled by ``2^k``.
    ``adc__<g>__ref`` (out, ``Wy + 1``)
        ``min(trial << k, 2^Wy)``: the reference in column-value units.
    ``adc__<g>__cmp`` (in, 1)
        Must be ``y[t][p] ≥ ref`` while ``step`` (combinational from the outputs above, which
        all come from registers); sampled at the rising edge ending the cycle, ignored otherwise.

    Parameters
    ----------
    params : :class:`PeripheryParams`
    init : sequence of int, optional
        The ``C`` configuration words for simulation in Python (:class:`ConfigStore`). Without
        them the component instantiates the Verilog module ``config_module``
        (:func:`~codesign.hw.config_store.config_verilog`) whose ``MEM_FILE`` parameter is
        :data:`CFG_FILE_PLACEHOLDER`; it can then only be converted, not simulated.
    config_module : str
        Name of that Verilog module.

    Members
    -------
    i_stream : In(stream.Signature(params.vector_layout))
        Input vector ``x`` (``R`` unsigned ``a``-bit activations) and ``acc`` (``L`` signed
        ``out_width``-bit starting values: the partial sums of the previous row blocks, or 0).
    o_stream : Out(stream.Signature(params.results_layout))
        ``acc[j] + Σ_t Σ_s 2^(v·t + c·s)·(value[j,s,+] − value[j,s,−])`` for ``j < L``; held
        until accepted. The next vector is accepted after the output was taken.
    busy : Out(1)
        1 from the cycle after an input vector is accepted until its results are accepted.
    done : Out(1)
        1 for one cycle: the first cycle in which ``o_stream.valid`` is 1.
    wordline, input_cycle, adc : see above.
    config : In(ConfigWriteSignature(C))
        Writes a configuration word (only while not ``busy``).
    """

    def __init__(self, params: PeripheryParams, init: Sequence[int] | None = None,
                 config_module: str = "codesign_tile_config"):
        self._init = None if init is None else list(init)
        self._config_module = config_module
        super().__init__(params)

    def members(self, params: PeripheryParams) -> TileSignature:
        return TileSignature(params)

    def elaborate(self, platform: object) -> Module:
        m = Module()
        p = self._params
        v, T = p.geometry.dac_bits, p.cycles

        m.submodules.sequencer = seq = ColumnSequencer(p)
        m.submodules.shift_add = shift_add = ShiftAdd(p)
        sars = []
        for g in range(p.adcs):
            sar = SARController(p.bmax, p.value_width, p.tag_layout)
            m.submodules[f"sar{g}"] = sar
            sars.append(sar)
            wiring.connect(m, seq.cmd[g], sar.cmd)
            wiring.connect(m, sar.res, shift_add.conv[g])
            port = self.adc[g]
            m.d.comb += [port.step.eq(sar.adc.step), port.trial.eq(sar.adc.trial), port.shift.eq(sar.adc.shift),
                         port.ref.eq(sar.adc.ref), port.column.eq(sar.tag.column), sar.adc.cmp.eq(port.cmp)]
        self._config_store(m, seq)

        x = Signal(p.vector_layout["x"].shape)           # activations, shifted right v bits per input cycle
        cycle = Signal(range(T))
        fresh = Signal()                                 # results became valid in this cycle
        barrier = Signal()                               # every lane has finished input cycle `cycle`
        m.d.comb += [
            self.wordline.eq(Cat(x[r][:v] for r in range(p.rows))),
            self.input_cycle.eq(cycle),
            seq.cycle.eq(cycle),
            shift_add.init.eq(self.i_stream.p.acc),
            self.o_stream.p.eq(shift_add.sums),
            self.done.eq(fresh),
            barrier.eq(seq.done & Cat(sar.cmd.ready for sar in sars).all()),
        ]
        m.d.sync += fresh.eq(0)
        with m.FSM(name="phase"):
            with m.State("IDLE"):
                m.d.comb += self.i_stream.ready.eq(1)
                with m.If(self.i_stream.valid):
                    m.d.comb += [shift_add.load.eq(1), seq.start.eq(1)]
                    m.d.sync += [x.eq(self.i_stream.p.x), cycle.eq(0)]
                    m.next = "CONVERT"
            with m.State("CONVERT"):
                m.d.comb += self.busy.eq(1)
                with m.If(barrier):
                    with m.If(cycle == T - 1):
                        m.next = "DRAIN"
                    with m.Else():
                        m.d.comb += seq.start.eq(1)
                        m.d.sync += [cycle.eq(cycle + 1), *(x[r].eq(x[r] >> v) for r in range(p.rows))]
            with m.State("DRAIN"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += fresh.eq(1)
                m.next = "OUTPUT"
            with m.State("OUTPUT"):
                m.d.comb += [self.busy.eq(1), self.o_stream.valid.eq(1)]
                with m.If(self.o_stream.ready):
                    m.next = "IDLE"
        return m

    def _config_store(self, m: Module, seq: ColumnSequencer) -> None:
        """The configuration memory: :class:`ConfigStore` with ``init``, else the Verilog module."""
        p = self._params
        if self._init is not None:
            m.submodules.cfg_memory = store = ConfigStore(p.cols, p.adcs, self._init)
            for g in range(p.adcs):
                wiring.connect(m, seq.cfg[g], store.read[g])
            wiring.connect(m, wiring.flipped(self.config), store.write)
            m.d.comb += seq.skip.eq(store.skip)
            return
        word_width = Shape.cast(CONFIG_WORD).width
        read_data = Signal(word_width * p.adcs)
        m.d.comb += [seq.cfg[g].data.eq(read_data[g * word_width:(g + 1) * word_width]) for g in range(p.adcs)]
        m.submodules.cfg_memory = Instance(
            self._config_module,
            p_WORDS=p.cols,
            p_ADDR_WIDTH=Shape.cast(range(p.cols)).width,
            p_PORTS=p.adcs,
            p_MEM_FILE=CFG_FILE_PLACEHOLDER,
            i_clk=ClockSignal(),
            i_read_addr=Cat(port.addr for port in seq.cfg),
            i_read_en=Cat(port.en for port in seq.cfg),
            o_read_data=read_data,
            i_write_addr=self.config.addr,
            i_write_data=self.config.data,
            i_write_en=self.config.en,
            o_skip=seq.skip,
        )
