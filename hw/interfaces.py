"""Amaranth signatures and payload layouts of the tile periphery (docs/periphery.md, "Ports").

Every signature is written from the side that drives the data (the stream source, the bus
master, the periphery towards an ADC); a component flips it where it is the other side.
"""

from __future__ import annotations

from amaranth.hdl import Array, Const, Mux, Value, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .periphery import APB_DATA_WIDTH, SHIFT_WIDTH, PeripheryParams


def slot_layout(params: PeripheryParams) -> data.StructLayout:
    """One slot of a configuration-memory row (:attr:`~codesign.hw.periphery.PeripheryParams.slot_fields`):
    ADC bits ``b`` (0 = empty slot), shift ``k``, and the physical column as polarity, slice and
    logical column."""
    return data.StructLayout({name: unsigned(width) for name, (_, width) in params.slot_fields.items()})


def physical_column(params: PeripheryParams, slot: data.View) -> Value:
    """``p = (j·S + s)·2 + pol`` of a slot, ``column_width`` bits."""
    S = params.geometry.slices
    return ((slot.logical * S + slot.slice) * 2 + slot.polarity)[:params.column_width]


def beat_of_logical(params: PeripheryParams, logical: Value) -> Value:
    """The result beat of logical column ``j``: ``j // E``, as a count of the beat boundaries at or
    below ``j`` (no divider)."""
    E = params.beat_results
    boundaries = [logical >= k * E for k in range(1, params.y_beats)]
    width = (params.y_beats - 1).bit_length()
    return sum(boundaries, Const(0, width))[:width] if boundaries else Const(0, 0)


def row_layout(params: PeripheryParams) -> data.ArrayLayout:
    """A configuration-memory row: ``A`` slots, slot ``g`` for ADC lane ``g``."""
    return data.ArrayLayout(slot_layout(params), params.adcs)


def stage_layout(params: PeripheryParams) -> data.StructLayout:
    """A row in the conversion pipeline: its slots, its input cycle ``t`` and whether it is the
    tile's last row."""
    return data.StructLayout({"slots": row_layout(params), "t": range(params.cycles), "last": 1})


class AxiStreamSignature(wiring.Signature):
    """AXI4-Stream (ARM IHI 0051), seen from the source: ``tdata`` (``width`` bits), ``tvalid``,
    ``tlast`` out, ``tready`` in. A beat is transferred at a rising edge with ``tvalid`` and
    ``tready`` both 1; ``tdata`` and ``tlast`` stay stable while ``tvalid`` waits for ``tready``."""

    def __init__(self, width: int):
        super().__init__({"tdata": Out(width), "tvalid": Out(1), "tlast": Out(1), "tready": In(1)})


class ApbSignature(wiring.Signature):
    """AMBA 3 APB (ARM IHI 0024), seen from the master: ``psel``, ``penable``, ``pwrite``,
    ``paddr`` (``addr_width`` bits, byte address), ``pwdata`` (32) out; ``prdata`` (32),
    ``pready``, ``pslverr`` in."""

    def __init__(self, addr_width: int):
        super().__init__({"psel": Out(1), "penable": Out(1), "pwrite": Out(1), "paddr": Out(addr_width),
                          "pwdata": Out(APB_DATA_WIDTH), "prdata": In(APB_DATA_WIDTH), "pready": In(1),
                          "pslverr": In(1)})


class MacroAdcSignature(wiring.Signature):
    """The port of one asynchronous ADC macro, seen from the periphery.

    Members
    -------
    start : Out(1)
        1 for one cycle: sample column ``column`` at the rising edge ending this cycle and convert
        it with ``bits`` and ``shift``.
    column : Out(range(C)), bits : Out(bit_length(Bmax)), shift : Out(5)
        The conversion's physical column ``p``, resolution ``b`` and shift ``k``; held until the
        next ``start``.
    valid : In(1), code : In(Bmax)
        ``code = min(y >> k, 2^b − 1)`` of the conversion, with ``valid`` 1 for one cycle,
        1 … ``conversion_cycles`` cycles after the ``start`` cycle.
    """

    def __init__(self, params: PeripheryParams):
        super().__init__({"start": Out(1), "column": Out(params.column_width), "bits": Out(params.bits_width),
                          "shift": Out(SHIFT_WIDTH), "valid": In(1), "code": In(params.bmax)})


class SarAdcSignature(wiring.Signature):
    """The analog boundary of one synchronous SAR ADC, seen from the digital side.

    Parameters
    ----------
    bmax : int
        Width of the trial code.
    value_width : int
        ``Wy``; the reference is ``Wy + 1`` bits wide.
    column_width : int
        Width of the ``column`` member; 0 leaves it out (a bare SAR controller does not know
        which column it converts).

    Members
    -------
    step : Out(1)
        A comparison takes place in this cycle; ``cmp`` is sampled at the next rising edge.
    column : Out(column_width)
        The physical column connected to the ADC (valid while ``step``).
    trial : Out(bmax)
        The SAR register with the bit under test set (the code a capacitive DAC would take).
    shift : Out(5)
        ``k``: the reference is the trial code scaled by ``2^k``.
    ref : Out(Wy + 1)
        ``min(trial << k, 2^Wy)`` in column-value units (one cell level at one input LSB).
    cmp : In(1)
        Comparator answer for this cycle: ``1`` when the column value ``y ≥ ref``.
    """

    def __init__(self, bmax: int, value_width: int, column_width: int = 0):
        members = {"step": Out(1), "trial": Out(bmax), "shift": Out(SHIFT_WIDTH), "ref": Out(value_width + 1),
                   "cmp": In(1)}
        if column_width:
            members["column"] = Out(column_width)
        super().__init__(members)


class PeripheryComponent(wiring.Component):
    """Base of the components built from :class:`~codesign.hw.periphery.PeripheryParams`: checks
    the parameters, builds the signature with :meth:`members` and exposes them as :attr:`params`."""

    def __init__(self, params: PeripheryParams):
        if not isinstance(params, PeripheryParams):
            raise TypeError(f"params must be a PeripheryParams, not {params!r}")
        self._params = params
        super().__init__(self.members(params))

    def members(self, params: PeripheryParams) -> "wiring.Signature | dict":
        """The component's signature, or its members."""
        raise NotImplementedError

    @property
    def params(self) -> PeripheryParams:
        return self._params


def next_index(counter: Value, count: int) -> Value:
    """``counter + 1``, wrapping to 0 after ``count − 1`` (``counter`` counts ``range(count)``)."""
    if count == 1:
        return Const(0, 0)
    return Mux(counter == count - 1, 0, counter + 1)


def select(values: list, index: Value) -> Value:
    """``values[index]`` as a multiplexer (a variable part-select would leave the unselected bits of
    a shift dangling in the Verilog)."""
    values = list(values)
    return values[0] if len(values) == 1 else Array(values)[index]
