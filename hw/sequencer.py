"""Row sequencer: reads the configuration memory and moves its rows through conversion and writeback."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib.wiring import In, Out

from .interfaces import PeripheryComponent, beat_of_logical, next_index, row_layout, select, stage_layout
from .periphery import PeripheryParams


class RowSequencer(PeripheryComponent):
    """Walks the tile's ``rows`` memory rows once per input cycle, ``T`` input cycles per vector.

    Three stages, each holding at most one row:

    * **fetch**: the memory's read register (one cycle read latency); the next row is read in the
      cycle a row leaves, so a row can be issued every cycle;
    * **conversion** (``conv``): the lanes convert the row's slots; a row enters (``issue``) when
      the lanes report the previous one ``done`` (or are idle) and, for row 0 of an input cycle,
      the input plane is ready (it is applied to the wordlines at the same edge, ``plane_load``),
      and, in input cycle 0, when the previous vector's result beats up to the row's last beat
      have been taken (``drained``: the parity of the vectors drained, per beat);
    * **writeback** (``wb``): one cycle, the cycle after the row's conversion is ``done``.

    ``restart`` (a configuration access, only while the tile is idle) empties the fetch stage and
    starts over at row 0 of input cycle 0.

    Members
    -------
    rows : In(range(depth + 1))
        Rows of the tile (the ``ROWS`` register); 0 stops fetching.
    restart : In(1)
    fetch_addr : Out(range(depth)), fetch_en : Out(1), data : In(row_layout)
        The memory read port (data one cycle after ``fetch_en``, held otherwise).
    plane_ready : In(1), plane_load : Out(1)
        The input stage's complete plane; apply it at this edge.
    drained : In(y_beats)
        Bit ``k`` toggles whenever result beat ``k`` is taken.
    done : In(1)
        The row in conversion completes at this edge.
    issue : Out(1)
        The fetched row (``data``) enters conversion at this edge.
    conv, conv_valid, wb, wb_valid : Out
        The rows in conversion and in writeback (:func:`~codesign.hw.interfaces.stage_layout`).
    """

    def members(self, params: PeripheryParams) -> dict:
        return {
            "rows": In(range(params.depth + 1)),
            "restart": In(1),
            "fetch_addr": Out(range(params.depth)),
            "fetch_en": Out(1),
            "data": In(row_layout(params)),
            "plane_ready": In(1),
            "plane_load": Out(1),
            "drained": In(params.y_beats),
            "done": In(1),
            "issue": Out(1),
            "conv": Out(stage_layout(params)),
            "conv_valid": Out(1),
            "wb": Out(stage_layout(params)),
            "wb_valid": Out(1),
        }

    def elaborate(self, platform: object) -> Module:
        m = Module()
        p = self._params
        depth, T = p.depth, p.cycles

        fetched = Signal()                                  # the read register holds row `row`
        row = Signal(range(depth))
        t = Signal(range(T))
        parity = Signal()                                   # vector count mod 2
        next_row = Signal(range(depth))
        next_t = Signal(range(T))
        next_parity = Signal()
        last = Signal()                                     # `row` is the tile's last row
        drained_before = Signal()                           # the previous vector's beats are taken
        fetch = Signal()
        conv = Signal(stage_layout(p), reset_less=True)
        wb = Signal(stage_layout(p), reset_less=True)
        conv_valid = Signal()
        wb_valid = Signal()

        m.d.comb += [
            last.eq(row == self.rows - 1),
            drained_before.eq(select(self.drained, beat_of_logical(p, self.data[p.adcs - 1].logical)) != parity),
            self.issue.eq(fetched & ~self.restart & (~conv_valid | self.done)
                          & ((row != 0) | self.plane_ready) & ((t != 0) | drained_before)),
            self.plane_load.eq(self.issue & (row == 0)),
            fetch.eq((self.rows != 0) & ~self.restart & (~fetched | self.issue)),
            self.fetch_en.eq(fetch),
            self.fetch_addr.eq(next_row),
            self.conv.eq(conv),
            self.conv_valid.eq(conv_valid),
            self.wb.eq(wb),
            self.wb_valid.eq(wb_valid),
        ]

        with m.If(self.restart):
            m.d.sync += [fetched.eq(0), next_row.eq(0), next_t.eq(0)]
            with m.If(fetched):
                m.d.sync += next_parity.eq(parity)
        with m.Elif(fetch):
            wraps = next_row == self.rows - 1
            vector_ends = wraps & (next_t == T - 1)
            m.d.sync += [fetched.eq(1), row.eq(next_row), t.eq(next_t), parity.eq(next_parity),
                         next_row.eq(Mux(wraps, 0, next_row + 1))]
            with m.If(wraps):
                m.d.sync += next_t.eq(next_index(next_t, T))
            with m.If(vector_ends):
                m.d.sync += next_parity.eq(~next_parity)
        with m.Elif(self.issue):
            m.d.sync += fetched.eq(0)

        with m.If(self.issue):
            m.d.sync += [conv_valid.eq(1), conv.slots.eq(self.data), conv.t.eq(t), conv.last.eq(last)]
        with m.Elif(self.done):
            m.d.sync += conv_valid.eq(0)
        m.d.sync += wb_valid.eq(self.done)
        with m.If(self.done):
            m.d.sync += wb.eq(conv)
        return m

