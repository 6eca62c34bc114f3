"""Column sequencer: walks a tile's converted columns and feeds the SAR controllers."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import stream
from amaranth.lib.wiring import In, Out

from .periphery import ConfigReadSignature, PeripheryComponent, PeripheryParams


def lowest_set(bits: list[Value]) -> tuple[Value, Value]:
    """``(any bit set, index of the lowest set bit)`` of ``bits`` as a balanced tree of muxes.

    The index has ``ceil_log2(len(bits))`` bits and is 0 when no bit is set.
    """
    if len(bits) == 1:
        return bits[0], Const(0, 0)
    half = 1 << ((len(bits) - 1).bit_length() - 1)
    low_any, low_index = lowest_set(bits[:half])
    high_any, high_index = lowest_set(bits[half:])
    width = (half - 1).bit_length()
    return low_any | high_any, Mux(low_any, Cat(low_index, Const(0, width - len(low_index) + 1)),
                                   Cat(high_index, Const(0, width - len(high_index)), high_any))


class ColumnSequencer(PeripheryComponent):
    """Issues one SAR command per converted column, lane by lane, for one input cycle.

    Lane ``g`` (one per ADC, :attr:`PeripheryParams.lanes`) owns a contiguous range of
    logical columns and their physical columns. On ``start`` every lane takes the set of its
    columns whose skip bit is clear and then, lowest column first, reads each column's word
    ``(b, k)`` from the configuration memory and offers it as a command on ``cmd[g]``; columns
    with ``b = 0`` are never visited. A word with ``b > Bmax`` is converted with ``Bmax`` steps.

    Timing
    ------
    The memory read has one cycle of latency and is overlapped with the conversion in
    progress: the next column's word is fetched in the cycle its predecessor's command is
    accepted, so a SAR controller that accepts a command in its last step is never idle. The
    first command of a pass is valid the cycle after ``start``. ``done`` is 1 once every lane
    has handed over all its commands of the pass (and stays 1 until the next ``start``).

    Parameters
    ----------
    params : :class:`PeripheryParams`

    Members
    -------
    start : In(1)
        Begin a pass over the columns (only while ``done``).
    cycle : In(range(T))
        Input cycle ``t`` stamped into each command's tag when it is offered.
    skip : In(C)
        Bit ``p`` = 1: physical column ``p`` is not converted.
    cfg : Out(ConfigReadSignature(C)).array(adcs)
        One configuration-memory read port per lane.
    cmd : Out(stream.Signature(params.command_layout)).array(adcs)
        Commands ``(b, k, tag = (column, cycle))`` to the SAR controller of each lane.
    done : Out(1)
        No command of the current pass remains to be issued.
    """

    def members(self, params: PeripheryParams) -> dict:
        return {
            "start": In(1),
            "cycle": In(range(params.cycles)),
            "skip": In(params.cols),
            "cfg": Out(ConfigReadSignature(params.cols)).array(params.adcs),
            "cmd": Out(stream.Signature(params.command_layout)).array(params.adcs),
            "done": Out(1),
        }

    def elaborate(self, platform: object) -> Module:
        m = Module()
        lane_done = []
        for g, lane in enumerate(self._params.lanes):
            lane_done.append(self._lane(m, g, lane.columns))
        m.d.comb += self.done.eq(Cat(lane_done).all())
        return m

    def _lane(self, m: Module, g: int, columns: range) -> Signal:
        """The fetch/issue logic of lane ``g``; returns its 'nothing left' signal."""
        bmax = self._params.bmax
        first, width = columns.start, len(columns)
        cfg, cmd = self.cfg[g], self.cmd[g]

        todo = Signal(width, name=f"todo{g}")              # columns not yet fetched in this pass
        source = Signal(width, name=f"source{g}")
        index = Signal(range(width), name=f"index{g}")      # lowest column of source, lane-local
        slot_valid = Signal(name=f"slot_valid{g}")          # cfg.data holds the word of slot_column
        slot_column = Signal(range(self._params.cols), name=f"slot_column{g}")
        fetch = Signal(name=f"fetch{g}")
        done = Signal(name=f"done{g}")

        accepted = cmd.valid & cmd.ready
        m.d.comb += [
            source.eq(Mux(self.start, ~self.skip[first:first + width], todo)),
            index.eq(lowest_set([source[i] for i in range(width)])[1]),
            fetch.eq((source != 0) & (~slot_valid | accepted)),
            cfg.addr.eq(first + index),
            cfg.en.eq(fetch),
            cmd.valid.eq(slot_valid),
            cmd.p.bits.eq(Mux(cfg.data.bits > bmax, bmax, cfg.data.bits)),
            cmd.p.shift.eq(cfg.data.shift),
            cmd.p.tag.column.eq(slot_column),
            cmd.p.tag.cycle.eq(self.cycle),
            done.eq((todo == 0) & ~slot_valid),
        ]
        m.d.sync += todo.eq(source)
        with m.If(fetch):
            m.d.sync += [todo.bit_select(index, 1).eq(0), slot_valid.eq(1), slot_column.eq(first + index)]
        with m.Elif(accepted):
            m.d.sync += slot_valid.eq(0)
        return done
