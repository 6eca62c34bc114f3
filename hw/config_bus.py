"""The configuration port: an AMBA 3 APB slave for the configuration memory and two registers."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib.wiring import In, Out, flipped

from .interfaces import ApbSignature, PeripheryComponent, row_layout, select
from .periphery import REG_ROWS, REG_STATUS, PeripheryParams

#: Sticky error bits of the STATUS register, from bit 1 (bit 0 is ``busy``).
ERROR_BITS = ("adc", "x_framing", "acc_framing")


def below(value: Value, limit: int) -> Value:
    """``value < limit``, without a comparison that is always true (Verilator's CMPCONST)."""
    return value < limit if limit < 1 << len(value) else Const(1)


class ConfigBus(PeripheryComponent):
    """APB slave (no wait states; ``pready`` is always 1).

    Address map (byte addresses, 32-bit words; ``paddr[1:0]`` must be 0):

    * ``4·REG_STATUS`` ``STATUS``: bit 0 ``busy`` (read-only, write 0), bits 1–3 sticky errors
      (``adc``: an ADC macro answered when no conversion waited or not at all; ``x_framing`` and
      ``acc_framing``: a beat with a wrong ``tlast`` or non-zero padding), cleared by writing 1;
    * ``4·REG_ROWS`` ``ROWS``: rows of the tile's schedule, ``0 … depth``; 0 (after reset) stops the
      tile from accepting vectors;
    * slot ``g`` of memory row ``r``: ``4·(2^(S+Rb) | r << S | g)`` with ``S`` = slot-index bits,
      ``Rb`` = row-index bits (:meth:`~codesign.hw.periphery.PeripheryParams.slot_address`); data
      bits ``[0, slot_width)``.

    ``pslverr`` answers (and nothing changes) for an unaligned or unmapped address, a non-zero
    reserved data bit, a ``ROWS`` value above ``depth``, and any memory access or ``ROWS`` write
    while ``busy``. A memory read is made in the setup phase; a memory access or ``ROWS`` write
    restarts the row sequencer (``restart``).

    Parameters
    ----------
    params : :class:`~codesign.hw.periphery.PeripheryParams`
    rows : int
        Reset value of ``ROWS`` (0 in generated RTL; a preloaded schedule's rows in simulation).

    Members
    -------
    apb : In(ApbSignature(apb_addr_width))
    busy : In(1)
    errors : In(3)
        Error strobes (``ERROR_BITS``).
    rows : Out(range(depth + 1)), restart : Out(1), error : Out(1)
        The ``ROWS`` register, the restart strobe, and any sticky error.
    read_addr, read_en : Out, read_data : In(row_layout)
        The memory read port (shared with the sequencer).
    write_addr, write_data, write_en : Out
        The memory write port (``write_en`` one bit per slot).
    """

    def __init__(self, params: PeripheryParams, rows: int = 0):
        self._rows = rows
        super().__init__(params)

    def members(self, params: PeripheryParams) -> dict:
        return {
            "apb": In(ApbSignature(params.apb_addr_width)),
            "busy": In(1),
            "errors": In(len(ERROR_BITS)),
            "rows": Out(range(params.depth + 1)),
            "restart": Out(1),
            "error": Out(1),
            "read_addr": Out(range(params.depth)),
            "read_en": Out(1),
            "read_data": In(row_layout(params)),
            "write_addr": Out(range(params.depth)),
            "write_data": Out(row_layout(params)),
            "write_en": Out(params.adcs),
        }

    def elaborate(self, platform: object) -> Module:
        m = Module()
        p = self._params
        apb = flipped(self.apb)
        slot_bits, row_bits = p.slot_index_width, p.row_index_width
        rows_width = p.depth.bit_length()

        rows = Signal(range(p.depth + 1), init=self._rows)
        sticky = Signal(len(ERROR_BITS))
        word = apb.paddr[2:]
        region = word[slot_bits + row_bits]                       # 1: the memory
        row = word[slot_bits:slot_bits + row_bits]
        slot = word[:slot_bits]
        register = word[:slot_bits + row_bits]
        unaligned = apb.paddr[:2].any()
        in_memory = region & below(row, p.depth) & below(slot, p.adcs)
        setup = apb.psel & ~apb.penable
        access = apb.psel & apb.penable
        writes = access & apb.pwrite
        data = apb.pwdata
        reserved = Mux(region, data[p.slot_width:].any(),
                       Mux(register == REG_ROWS, data[rows_width:].any() | ~below(data[:rows_width], p.depth + 1),
                           data[1 + len(ERROR_BITS):].any() | data[0]))
        error = Signal()
        m.d.comb += error.eq(unaligned
                             | Mux(region, ~in_memory | self.busy,
                                   ~((register == REG_STATUS) | (register == REG_ROWS))
                                   | (apb.pwrite & (register == REG_ROWS) & self.busy))
                             | (apb.pwrite & reserved))

        slot_data = select([self.read_data[g].as_value() for g in range(p.adcs)], slot)
        status = Cat(self.busy, sticky)
        m.d.comb += [
            apb.pready.eq(1),
            apb.pslverr.eq(access & error),
            apb.prdata.eq(Mux(region, slot_data, Mux(register == REG_ROWS, rows, status))),
            self.read_addr.eq(row),
            self.read_en.eq(setup & ~apb.pwrite & in_memory & ~self.busy & ~unaligned),
            self.write_addr.eq(row),
            self.write_data.eq(Cat(*([data[:p.slot_width]] * p.adcs))),
            self.write_en.eq(Mux(writes & ~error & region, Const(1, p.adcs) << slot, 0)),
            self.restart.eq(self.read_en | (writes & ~error & (region | (register == REG_ROWS)))),
            self.rows.eq(rows),
            self.error.eq(sticky.any()),
        ]
        cleared = Mux(writes & ~error & ~region & (register == REG_STATUS), data[1:1 + len(ERROR_BITS)], 0)
        m.d.sync += sticky.eq((sticky & ~cleared) | self.errors)
        with m.If(writes & ~error & ~region & (register == REG_ROWS)):
            m.d.sync += rows.eq(data[:rows_width])
        return m
