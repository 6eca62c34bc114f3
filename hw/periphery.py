"""Parameters, widths, lane schedule and timing of the tile periphery (docs/periphery.md).

Pure Python (no Amaranth import), so the cost model and the parameter files can use it cheaply.
One :class:`PeripheryParams` describes everything the gateware of a crossbar tile depends on:
the crossbar geometry and number formats (:class:`codesign.mapping.Geometry`), the largest ADC
resolution ``Bmax``, how many tiles' partial sums one output adds up (``chain``), the ADC
interface (``macro``: an asynchronous ADC macro that converts one column per sample period of
``conversion_cycles`` clock cycles; ``sar``: the synchronous SAR controller of
:class:`~codesign.hw.sar.SARController`, one comparison per cycle) and the AXI4-Stream data width.

Width derivation (no value can overflow, whatever the ADCs answer)
-----------------------------------------------------------------
* Column value (docs/design.md §3.7): ``y ≤ R·(2^v − 1)·(2^c − 1)``, ``Wy = bit_length`` of that.
* Conversion value: ``(code << k) mod 2^Wy`` (equal to ``code << k`` for every code a correct
  ADC returns, ``code ≤ y >> k``), so ``0 ≤ value < 2^Wy``.
* One tile: ``|Σ_t Σ_s 2^(v·t + c·s)·(value⁺ − value⁻)| ≤ tile_bound = (2^Wy − 1)·Gv·Gc``
  with ``Gv = Σ_t 2^(v·t)``, ``Gc = Σ_s 2^(c·s)``; the accumulators hold
  ``acc_width = bit_length(tile_bound) + 1`` signed bits.
* Results: ``chain`` tiles add up, ``out_width = bit_length(chain·tile_bound) + 1`` signed bits;
  an ``acc`` input of at most ``(chain − 1)·tile_bound`` never overflows.

Lane schedule
-------------
The converted columns of a tile (``b > 0``; skipped columns are simply absent) are sorted by
(output beat of their logical column, decreasing ``b``, ``p``) and dealt into *rows* of ``A`` slots,
slot ``g`` going to ADC lane ``g``; inside a row the slots are ordered by ``p``. Every row is
converted in lockstep by all lanes, so each lane converts ``⌈n/A⌉`` or ``⌊n/A⌋`` columns per input
cycle (``n`` converted columns): the lanes' conversion time is balanced to within one conversion
(``macro``); for ``sar`` a row takes its largest ``b``, and sorting by ``b`` keeps the rows' ``b``
alike. The configuration memory holds one row per word (:meth:`Schedule.words`).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from itertools import accumulate
from functools import cached_property, lru_cache
from typing import Sequence

from codesign.config import MAX_ADC_BITS, MAX_ADC_SHIFT
from codesign.mapping import Geometry, adcs_problem, ceil_div

#: The two ADC interfaces (``--adc-interface``).
INTERFACES = ("macro", "sar")

#: Width of the ADC shift ``k`` in the configuration memory and on the ADC ports.
SHIFT_WIDTH = MAX_ADC_SHIFT.bit_length()

#: Largest AXI4-Stream data width.
MAX_STREAM_WIDTH = 128

#: APB data width (PWDATA, PRDATA).
APB_DATA_WIDTH = 32

#: Word addresses of the configuration registers (byte address = 4 × word address).
REG_STATUS = 0
REG_ROWS = 1


def bits_for(count: int) -> int:
    """Bits of an index in ``range(count)`` (at least 1)."""
    return max(1, (count - 1).bit_length())


@dataclass(frozen=True)
class Slot:
    """One conversion of a row: physical column ``column``, ADC bits ``bits`` (0 = empty slot)
    and shift ``shift``."""

    column: int
    bits: int
    shift: int


@dataclass(frozen=True)
class PeripheryParams:
    """Everything the periphery of one tile depends on.

    Parameters
    ----------
    geometry : :class:`codesign.mapping.Geometry`
        ``R``, ``C``, ``c``, ``v``, weight and input bits, and ``A`` = ``geometry.adcs`` ADC lanes
        (1 … ``C``).
    bmax : int
        Largest ADC resolution a column may use, 1..16.
    chain : int
        Tiles whose partial sums one output adds up (row blocks of a layer), ≥ 1.
    interface : str
        ``"macro"`` or ``"sar"``.
    conversion_cycles : int
        ``macro``: clock cycles per conversion of one ADC (its sample period), ≥ 1. Must be 1 for ``sar``.
    stream_width : int
        Data width of the AXI4-Stream ports in bits, ``out_width`` … 128.

    Raises
    ------
    TypeError, ValueError
        For a parameter of the wrong type or out of range (the message names it).
    """

    geometry: Geometry
    bmax: int
    chain: int = 1
    interface: str = "macro"
    conversion_cycles: int = 1
    stream_width: int = MAX_STREAM_WIDTH

    def __post_init__(self) -> None:
        if not isinstance(self.geometry, Geometry):
            raise TypeError(f"geometry must be a codesign.mapping.Geometry, not {self.geometry!r}")
        for name in ("bmax", "chain", "conversion_cycles", "stream_width"):
            object.__setattr__(self, name, operator.index(getattr(self, name)))
        if not 1 <= self.bmax <= MAX_ADC_BITS:
            raise ValueError(f"bmax must be 1..{MAX_ADC_BITS} ADC bits, not {self.bmax}")
        if self.chain < 1:
            raise ValueError(f"chain must be at least 1 tile, not {self.chain}")
        if self.interface not in INTERFACES:
            raise ValueError(f"interface must be one of {', '.join(INTERFACES)}, not {self.interface!r}")
        if self.conversion_cycles < 1 or (self.interface == "sar" and self.conversion_cycles != 1):
            raise ValueError(f"conversion_cycles must be at least 1 (exactly 1 for the sar interface), "
                             f"not {self.conversion_cycles}")
        if not self.out_width <= self.stream_width <= MAX_STREAM_WIDTH:
            raise ValueError(f"stream_width must be {self.out_width}..{MAX_STREAM_WIDTH} bits (a result has "
                             f"{self.out_width}), not {self.stream_width}")
        if problem := adcs_problem(self.geometry):
            raise ValueError(problem)

    # --- geometry, named after docs/design.md §3 -----------------------------------------------------

    @property
    def rows(self) -> int:
        """``R``: wordlines."""
        return self.geometry.rows

    @property
    def cols(self) -> int:
        """``C``: physical columns."""
        return self.geometry.cols

    @property
    def logical_cols(self) -> int:
        """``L = floor(C / 2S)``: results per input vector."""
        return self.geometry.logical_cols

    @property
    def cycles(self) -> int:
        """``T = ceil(a / v)``: input cycles per input vector."""
        return self.geometry.input_cycles

    @property
    def adcs(self) -> int:
        """``A``: ADC lanes."""
        return self.geometry.adcs

    @property
    def macro(self) -> bool:
        return self.interface == "macro"

    # --- widths -------------------------------------------------------------------------------

    @property
    def value_width(self) -> int:
        """``Wy = bit_length(R·(2^v − 1)·(2^c − 1))``: bits of a column value."""
        return self.geometry.uniform_bits

    @property
    def max_exponent(self) -> int:
        """Largest shift-add exponent ``v·(T − 1) + c·(S − 1)``."""
        g = self.geometry
        return g.dac_bits * (self.cycles - 1) + g.cell_bits * (g.slices - 1)

    @cached_property
    def tile_bound(self) -> int:
        """Largest magnitude of one tile's contribution to a result (module docstring)."""
        g = self.geometry
        gv = sum(1 << (g.dac_bits * t) for t in range(self.cycles))
        gc = sum(1 << (g.cell_bits * s) for s in range(g.slices))
        return ((1 << self.value_width) - 1) * gv * gc

    @cached_property
    def acc_width(self) -> int:
        """Signed bits of an accumulator (one tile): ``bit_length(tile_bound) + 1``."""
        return self.tile_bound.bit_length() + 1

    @cached_property
    def out_width(self) -> int:
        """Signed bits of a result (``chain`` tiles): ``bit_length(chain·tile_bound) + 1``."""
        return (self.chain * self.tile_bound).bit_length() + 1

    @cached_property
    def used_columns(self) -> int:
        """``L·2S``: physical columns that can hold weights."""
        return self.logical_cols * self.geometry.phys_per_logical

    @cached_property
    def column_width(self) -> int:
        return bits_for(self.cols)

    @cached_property
    def bits_width(self) -> int:
        """Bits of the ``b`` field: ``bit_length(Bmax)``."""
        return self.bmax.bit_length()

    @cached_property
    def slot_fields(self) -> dict[str, tuple[int, int]]:
        """``(lsb, width)`` of each field of a configuration-memory slot, least significant first:
        ADC bits ``b``, shift ``k``, then the physical column ``p = (j·S + s)·2 + pol`` as its
        polarity ``pol``, slice ``s`` and logical column ``j`` (so the periphery needs no divider)."""
        widths = {"bits": self.bits_width, "shift": SHIFT_WIDTH, "polarity": 1,
                  "slice": (self.geometry.slices - 1).bit_length(), "logical": (self.logical_cols - 1).bit_length()}
        fields, lsb = {}, 0
        for name, width in widths.items():
            fields[name] = (lsb, width)
            lsb += width
        return fields

    @cached_property
    def slot_width(self) -> int:
        """Bits of one slot of a memory row (:attr:`slot_fields`)."""
        return sum(width for _, width in self.slot_fields.values())

    @cached_property
    def depth(self) -> int:
        """Rows of the configuration memory: ``⌈L·2S / A⌉`` (a tile with every column converted)."""
        return ceil_div(self.used_columns, self.adcs)

    @cached_property
    def row_width(self) -> int:
        return self.adcs * self.slot_width

    # --- streams and the configuration bus ----------------------------------------------------------

    @property
    def plane_width(self) -> int:
        """``R·v``: bits of one input plane ``x_t`` (one wordline digit per row)."""
        return self.rows * self.geometry.dac_bits

    @property
    def x_beats(self) -> int:
        """AXI4-Stream beats per input plane: ``⌈R·v / stream_width⌉``."""
        return ceil_div(self.plane_width, self.stream_width)

    @cached_property
    def beat_results(self) -> int:
        """``E = floor(stream_width / out_width)``: results (or ``acc`` values) per beat."""
        return self.stream_width // self.out_width

    @cached_property
    def y_beats(self) -> int:
        """Beats per result vector (and per ``acc`` vector): ``⌈L / E⌉``."""
        return ceil_div(self.logical_cols, self.beat_results)

    @property
    def slot_index_width(self) -> int:
        """Bits of the slot field of a configuration-memory address (0 for one ADC)."""
        return (self.adcs - 1).bit_length()

    @property
    def row_index_width(self) -> int:
        return bits_for(self.depth)

    @property
    def apb_addr_width(self) -> int:
        """PADDR bits: byte offset (2), slot, row, and the bit that selects the memory."""
        return 2 + self.slot_index_width + self.row_index_width + 1

    def slot_address(self, row: int, slot: int) -> int:
        """Byte address of slot ``slot`` of memory row ``row`` on the configuration bus."""
        memory = 1 << (self.slot_index_width + self.row_index_width)
        return 4 * (memory | row << self.slot_index_width | slot)

    # --- the schedule ------------------------------------------------------------------------------

    def logical_of(self, column: int) -> int:
        """Logical column ``j`` of physical column ``p``: ``p // 2S``."""
        return column // self.geometry.phys_per_logical

    def beat_of(self, column: int) -> int:
        """Result beat that holds physical column ``p``'s logical column."""
        return self._beats[column]

    @cached_property
    def _beats(self) -> tuple[int, ...]:
        return tuple(self.logical_of(p) // self.beat_results for p in range(self.cols))

    def schedule(self, bits: Sequence[int], shifts: Sequence[int]) -> "Schedule":
        """The lane schedule of a tile with per-physical-column ``bits`` and ``shifts`` (module
        docstring). Raises ``ValueError`` for a ``b`` above ``Bmax`` or more columns than ``L·2S``."""
        bits, shifts = [int(b) for b in bits], [int(k) for k in shifts]
        if len(bits) != len(shifts) or len(bits) > self.used_columns:
            raise ValueError(f"a tile has at most {self.used_columns} columns with one b and one k each, "
                             f"not {len(bits)} b and {len(shifts)} k")
        too_high = [b for b in bits if b > self.bmax]
        if too_high:
            raise ValueError(f"b = {too_high[0]} exceeds the module's Bmax {self.bmax}")
        if any(not 0 <= k <= MAX_ADC_SHIFT for k in shifts):
            raise ValueError(f"shifts must lie in 0..{MAX_ADC_SHIFT}")
        beats = self._beats
        converted = sorted((p for p, b in enumerate(bits) if b), key=lambda p: (beats[p], -bits[p], p))
        rows = []
        for first in range(0, len(converted), self.adcs):
            chunk = sorted(converted[first:first + self.adcs])
            slots = [Slot(p, bits[p], shifts[p]) for p in chunk]
            if len(slots) < self.adcs:
                slots += [Slot(chunk[-1], 0, 0)] * (self.adcs - len(slots))
            rows.append(tuple(slots))
        if not rows:            # nothing converted: one empty row, so every vector still completes
            rows.append((Slot(self.used_columns - 1, 0, 0),) * self.adcs)
        return Schedule(self, tuple(rows))


@dataclass(frozen=True)
class Schedule:
    """The rows of one tile's configuration memory (:meth:`PeripheryParams.schedule`).

    An empty slot (``bits = 0``) repeats the column of the row's last converted slot (the whole
    row of a tile without conversions uses column ``L·2S − 1``), so the last slot of every row
    names the row's last logical column.
    """

    params: PeripheryParams
    rows: tuple[tuple[Slot, ...], ...]

    def pack(self, slot: Slot) -> int:
        """A slot as its ``slot_width`` bits (:attr:`PeripheryParams.slot_fields`)."""
        fields = self.params.slot_fields
        logical, slice_ = divmod(slot.column // 2, self.params.geometry.slices)
        return (slot.bits << fields["bits"][0] | slot.shift << fields["shift"][0]
                | (slot.column & 1) << fields["polarity"][0] | slice_ << fields["slice"][0]
                | logical << fields["logical"][0])

    def words(self) -> list[int]:
        """The memory rows: slot ``g`` at bits ``[g·slot_width, (g+1)·slot_width)``."""
        width = self.params.slot_width
        return [sum(self.pack(slot) << (g * width) for g, slot in enumerate(row)) for row in self.rows]

    @property
    def conversions(self) -> int:
        """Converted columns per input cycle."""
        return sum(1 for row in self.rows for slot in row if slot.bits)

    def lane_conversions(self) -> list[int]:
        """Converted columns of each lane per input cycle."""
        return [sum(1 for row in self.rows if row[g].bits) for g in range(self.params.adcs)]

    def row_cycles(self) -> list[int]:
        """Clock cycles each row occupies the lanes: ``conversion_cycles`` (``macro``), or the
        row's largest ``b``, at least 1 (``sar``: one comparison per cycle)."""
        p = self.params
        if p.macro:
            return [p.conversion_cycles] * len(self.rows)
        return [max(1, *(slot.bits for slot in row)) for row in self.rows]

    def busy_cycles(self) -> list[int]:
        """Clock cycles each lane converts per input cycle (``conversion_cycles`` or ``b`` per column)."""
        p = self.params
        return [sum(p.conversion_cycles if p.macro else row[g].bits for row in self.rows if row[g].bits)
                for g in range(p.adcs)]

    @cached_property
    def first_beats(self) -> list[int]:
        """First result beat each row touches (its first slot's)."""
        return [self.params.beat_of(row[0].column) for row in self.rows]

    @cached_property
    def last_beats(self) -> list[int]:
        """Last result beat each row touches (its last slot's, by the padding rule)."""
        return [self.params.beat_of(row[-1].column) for row in self.rows]


    @cached_property
    def timing(self) -> "Timing":
        """Exact clock cycles of this tile, back to back (:class:`Timing`)."""
        return vector_timing(self)



def tile_timing(params: PeripheryParams, bits: Sequence[int]) -> "Timing":
    """The :class:`Timing` of a tile whose physical columns have ``bits`` (cached). A ``macro``
    conversion takes ``conversion_cycles`` whatever its ``b``, so there only the set of converted
    columns matters; ``sar`` rows take their largest ``b``."""
    key = tuple(int(b > 0) for b in bits) if params.macro else tuple(int(b) for b in bits)
    return _timing(params, key)


@lru_cache(maxsize=1 << 14)
def _timing(params: PeripheryParams, bits: tuple[int, ...]) -> "Timing":
    return vector_timing(params.schedule(bits, (0,) * len(bits)))


@dataclass(frozen=True)
class Timing:
    """Cycle counts of a tile whose input streams are always valid and whose results are always
    taken (docs/periphery.md, "Timing").

    ``period``: clock cycles between consecutive vectors, back to back (the steady state);
    ``latency``: clock cycles from the first input beat of a vector entering an idle tile to its
    last result beat, both included; ``ends[k]``: for vectors sent back to back into an idle tile,
    the clock cycles from the first input beat of vector 0 to the last result beat of vector ``k``
    (``ends[0] = latency``; beyond the listed vectors every vector adds ``period``).
    """

    period: int
    latency: int
    ends: tuple[int, ...]

    def end(self, vector: int) -> int:
        """``ends[vector]``, continued by ``period``."""
        if vector < len(self.ends):
            return self.ends[vector]
        return self.ends[-1] + (vector - len(self.ends) + 1) * self.period


#: Vectors the timing recurrence runs at most to reach its steady state.
TIMING_VECTORS = 8


def vector_timing(schedule: Schedule) -> Timing:
    """The cycle counts of ``schedule``, by the recurrence of docs/periphery.md ("Timing").

    Cycle numbers count from the cycle of the first input beat (0). A row *issued in cycle c*
    enters the lanes at the edge ending ``c``, converts in cycles ``c+1 … c+D`` (``D`` =
    :meth:`Schedule.row_cycles`) and is written back in cycle ``c+D+1``. Row ``r`` is issued in
    the first cycle that satisfies: the previous row was issued ``D`` cycles earlier or more; for
    row 0 of input cycle ``t``, the plane is complete (its ``x_beats`` beats arrive from the cycle
    row 0 of ``t − 1`` was issued, one per cycle); in input cycle 0, result beat ``last_beat(r)``
    of the previous vector was taken in an earlier cycle. Result beat ``k`` is taken one cycle
    after the writeback (in the last input cycle) of the first row that starts beyond it (of the
    last row if none does), and at least two cycles after the beat before it.
    """
    p = schedule.params
    D = schedule.row_cycles()
    R, T, total = len(D), p.cycles, sum(D)
    first, last = schedule.first_beats, schedule.last_beats
    finals = [next((r for r in range(R) if first[r] > k), R - 1) for k in range(p.y_beats)]
    offsets = [0, *accumulate(D[:-1])]        # cycles from row 0 to row r of an input cycle
    plane_ready = p.x_beats                 # row 0 of the next vector's input cycle 0 may issue
    previous_end = 0                        # the previous row may be followed in this cycle
    taken: list[int] = []                   # the previous vector's result beats
    ends: list[int] = []
    for vector in range(TIMING_VECTORS):
        issues = []
        for r in range(R):
            cycle = max(plane_ready, previous_end) if r == 0 else issues[-1] + D[r - 1]
            if taken:
                cycle = max(cycle, taken[last[r]] + 1)
            issues.append(cycle)
        if T > 1:
            row0 = max(issues[-1] + D[-1], issues[0] + p.x_beats)
            row0 += (T - 2) * max(total, p.x_beats)
            plane_ready = row0 + p.x_beats
            issues = [row0 + offset for offset in offsets]
        else:
            plane_ready = issues[0] + p.x_beats
        previous_end = issues[-1] + D[-1]
        after = taken[-1] + 2 if taken else 0
        taken = []
        for k in range(p.y_beats):
            row = finals[k]
            taken.append(max(issues[row] + D[row] + 2, taken[-1] + 2 if taken else after))
        ends.append(taken[-1])
        if len(ends) >= 3 and ends[-1] - ends[-2] == ends[-2] - ends[-3]:
            break
    return Timing(period=ends[-1] - ends[-2], latency=ends[0] + 1, ends=tuple(end + 1 for end in ends))


# --- port formats (shared by the Amaranth and the cocotb testbenches) -------------------------------


def plane_word(params: PeripheryParams, digits: Sequence[int]) -> int:
    """An input plane: ``x_t[r]`` at bits ``[r·v, (r+1)·v)`` (the ``wordline`` port's format)."""
    v = params.geometry.dac_bits
    return sum(int(d) << (r * v) for r, d in enumerate(digits))


def plane_digits(params: PeripheryParams, word: int) -> list[int]:
    """The ``R`` wordline digits of a plane word."""
    v = params.geometry.dac_bits
    return [(word >> (r * v)) & ((1 << v) - 1) for r in range(params.rows)]


def vector_beats(params: PeripheryParams, x: Sequence[int]) -> list[tuple[int, int]]:
    """``(tdata, tlast)`` of the ``s_axis_x`` beats of input vector ``x[R]``: plane ``t = 0 … T−1``,
    each in ``x_beats`` beats, ``tlast`` on the very last."""
    g, width = params.geometry, params.stream_width
    mask = (1 << width) - 1
    beats = []
    for t in range(params.cycles):
        word = plane_word(params, [(int(value) >> (g.dac_bits * t)) & g.input_digit_max for value in x])
        beats += [((word >> (i * width)) & mask, 0) for i in range(params.x_beats)]
    beats[-1] = (beats[-1][0], 1)
    return beats


def result_beats(params: PeripheryParams, values: Sequence[int]) -> list[tuple[int, int]]:
    """``(tdata, tlast)`` of the ``L`` signed values ``values`` as ``s_axis_acc`` (or ``m_axis_y``) beats:
    beat ``k`` holds ``j = k·E + i`` at bits ``[i·out_width, (i+1)·out_width)``."""
    E, W = params.beat_results, params.out_width
    mask = (1 << W) - 1
    beats = []
    for k in range(params.y_beats):
        chunk = values[k * E:(k + 1) * E]
        beats.append((sum((int(v) & mask) << (i * W) for i, v in enumerate(chunk)), int(k == params.y_beats - 1)))
    return beats


def beat_results(params: PeripheryParams, beats: Sequence[int]) -> list[int]:
    """The ``L`` signed results of one vector's ``m_axis_y`` beats (``tdata`` values)."""
    E, W = params.beat_results, params.out_width
    values = []
    for word in beats:
        for i in range(E):
            value = (word >> (i * W)) & ((1 << W) - 1)
            values.append(value - (1 << W) if value >> (W - 1) else value)
    return values[:params.logical_cols]
