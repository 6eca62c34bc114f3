"""Parameters, widths and shared interfaces of the tile periphery (DESIGN.md section 3).

One :class:`PeripheryParams` describes everything the gateware of a crossbar tile depends on:
the crossbar geometry and number formats (:class:`codesign.mapping.Geometry`), the largest ADC
resolution ``Bmax`` its SAR controllers must support, and how many tiles' partial sums one
accumulator must hold (``chain``, the row blocks of a layer). Every register width below is
derived from these numbers so that no value can overflow, whatever the comparators answer.

Width derivation
----------------
* Column value (3.7): ``y = Σ_rows x_t[r]·d[r, p] ≤ Ymax = R·(2^v − 1)·(2^c − 1)``, so
  ``value_width = Wy = bit_length(Ymax)`` bits hold every column value.
* SAR result (3.8): ``code << k``. The SAR never sets a code bit whose weight ``2^(i+k)`` is
  ``≥ 2^Wy`` (such a trial exceeds every column value and is decided "below" without asking the
  comparator), so ``code << k < 2^Wy`` for any comparator behaviour.
* One tile (3.9): ``Σ_t Σ_s 2^(v·t + c·s)·(value⁺ − value⁻)`` with ``0 ≤ value < 2^Wy`` is
  bounded in magnitude by ``tile_bound = (2^Wy − 1)·Gv·Gc`` with ``Gv = Σ_t 2^(v·t)`` and
  ``Gc = Σ_s 2^(c·s)`` (the positive and negative sums are each at most that, so every partial
  sum is too).
* Output (accumulator): the sum of ``chain`` tiles, ``|out| ≤ chain·tile_bound``, so
  ``out_width = bit_length(chain·tile_bound) + 1`` (two's complement). A chained accumulator
  input ``|acc| ≤ (chain − 1)·tile_bound`` therefore never overflows.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from functools import cached_property
from typing import Sequence

from amaranth.hdl import signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from codesign.config import MAX_ADC_BITS
from codesign.mapping import Geometry, adcs_problem
from codesign.params import WORD

#: One physical column's configuration word as in ``params/<layer>/tile_NNN.mem``:
#: bits ``[4:0]`` = ADC bits ``b`` (0 = skipped), bits ``[9:5]`` = shift ``k``.
CONFIG_WORD = data.StructLayout({"bits": unsigned(WORD.bits_width), "shift": unsigned(WORD.shift_width)})

#: Width of the ADC shift ``k`` everywhere in the periphery.
SHIFT_WIDTH = WORD.shift_width

#: Fixed sequencer overhead per input vector in clock cycles: one to accept the vector, one
#: for the last conversions to reach the accumulators, one to present the result.
VECTOR_OVERHEAD = 3

#: Fixed overhead per input cycle ``t``: the cycle in which the wordlines settle and the first
#: column's command is handed to the SAR controller.
CYCLE_OVERHEAD = 1


@dataclass(frozen=True)
class Lane:
    """The logical columns ``[first, first + count)`` served by one SAR ADC."""

    first: int
    count: int
    phys_per_logical: int

    @property
    def columns(self) -> range:
        """Physical columns of the lane, ``[first·2S, (first + count)·2S)``."""
        return range(self.first * self.phys_per_logical, (self.first + self.count) * self.phys_per_logical)


@dataclass(frozen=True)
class PeripheryParams:
    """Everything the periphery of one tile depends on.

    Parameters
    ----------
    geometry : :class:`codesign.mapping.Geometry`
        Crossbar rows ``R``, physical columns ``C``, cell bits ``c``, DAC bits ``v``, weight bits,
        input bits and SAR ADCs per tile.
    bmax : int
        Largest ADC resolution (SAR steps) a column may use, 1..16.
    chain : int
        Number of tiles whose partial sums one output accumulates (row blocks of a layer), ≥ 1.

    Raises
    ------
    TypeError
        If a parameter has the wrong type.
    ValueError
        If ``bmax`` or ``chain`` is out of range, or there are more ADCs than logical columns
        (each ADC serves at least one logical column).
    """

    geometry: Geometry
    bmax: int
    chain: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.geometry, Geometry):
            raise TypeError(f"geometry must be a codesign.mapping.Geometry, not {self.geometry!r}")
        object.__setattr__(self, "bmax", operator.index(self.bmax))
        object.__setattr__(self, "chain", operator.index(self.chain))
        if not 1 <= self.bmax <= MAX_ADC_BITS:
            raise ValueError(f"bmax must be 1..{MAX_ADC_BITS} ADC bits, not {self.bmax}")
        if self.chain < 1:
            raise ValueError(f"chain must be at least 1 tile, not {self.chain}")
        if problem := adcs_problem(self.geometry):
            raise ValueError(problem)

    # --- geometry, renamed after DESIGN 3 -------------------------------------------------------

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
        return self.geometry.adcs

    # --- derived widths ----------------------------------------------------------------------

    @property
    def value_width(self) -> int:
        """``Wy = bit_length(R·(2^v − 1)·(2^c − 1))``: bits of a column value."""
        return self.geometry.uniform_bits

    @property
    def max_exponent(self) -> int:
        """Largest shift-add exponent ``v·(T − 1) + c·(S − 1)``."""
        g = self.geometry
        return g.dac_bits * (self.cycles - 1) + g.cell_bits * (g.slices - 1)

    @property
    def tile_bound(self) -> int:
        """Largest magnitude of one tile's contribution to a result (module docstring)."""
        g = self.geometry
        gv = sum(1 << (g.dac_bits * t) for t in range(self.cycles))
        gc = sum(1 << (g.cell_bits * s) for s in range(g.slices))
        return ((1 << self.value_width) - 1) * gv * gc

    @property
    def out_width(self) -> int:
        """Signed bits of an accumulator: ``bit_length(chain·tile_bound) + 1``."""
        return (self.chain * self.tile_bound).bit_length() + 1

    @cached_property
    def lanes(self) -> tuple[Lane, ...]:
        """Logical columns per ADC: lane ``g`` gets ``[floor(g·L/A), floor((g+1)·L/A))``."""
        L, A = self.logical_cols, self.adcs
        return tuple(Lane(g * L // A, (g + 1) * L // A - g * L // A, self.geometry.phys_per_logical)
                     for g in range(A))

    # --- cycle accounting ---------------------------------------------------------------------

    def column_steps(self, bits: Sequence[int]) -> list[int]:
        """SAR steps of each of the ``C`` physical columns: ``min(b, Bmax)``; missing columns are 0."""
        steps = [min(int(b), self.bmax) for b in bits]
        return steps + [0] * (self.cols - len(steps))

    def vector_cycles(self, steps: Sequence[int]) -> int:
        """Clock cycles per input vector when physical column ``p`` takes ``steps[p]`` SAR steps::

            T · (1 + max over lanes g of Σ_{p in lane g} steps[p]) + 3

        (input always valid, output always ready; :class:`TilePeriphery` explains the terms).
        """
        busiest = max(sum(steps[p] for p in lane.columns) for lane in self.lanes)
        return self.cycles * (CYCLE_OVERHEAD + busiest) + VECTOR_OVERHEAD

    # --- payload layouts -----------------------------------------------------------------------

    @property
    def tag_layout(self) -> data.StructLayout:
        """What travels with a conversion: physical ``column`` and input ``cycle`` t."""
        return data.StructLayout({"column": range(self.cols), "cycle": range(self.cycles)})

    @property
    def command_layout(self) -> data.StructLayout:
        return sar_command_layout(self.bmax, self.tag_layout)

    @property
    def conversion_layout(self) -> data.StructLayout:
        return sar_result_layout(self.bmax, self.value_width, self.tag_layout)

    @property
    def results_layout(self) -> data.ArrayLayout:
        """``L`` signed results of ``out_width`` bits; result ``j`` at bits ``[j·W, (j+1)·W)``."""
        return data.ArrayLayout(signed(self.out_width), self.logical_cols)

    @property
    def vector_layout(self) -> data.StructLayout:
        """An input vector: ``x`` (``R`` × ``a`` bits, row ``r`` at ``[r·a, (r+1)·a)``), then ``acc``."""
        return data.StructLayout({"x": data.ArrayLayout(unsigned(self.geometry.input_bits), self.rows),
                                  "acc": self.results_layout})


def sar_command_layout(bmax: int, tag_shape: object) -> data.StructLayout:
    """A conversion request: ``bits`` b (0..Bmax), ``shift`` k, and an opaque ``tag``."""
    return data.StructLayout({"bits": range(bmax + 1), "shift": unsigned(SHIFT_WIDTH), "tag": tag_shape})


def sar_result_layout(bmax: int, value_width: int, tag_shape: object) -> data.StructLayout:
    """A conversion result: ``code`` = min(y >> k, 2^b − 1), ``value`` = code << k, the ``tag``."""
    return data.StructLayout({"code": unsigned(bmax), "value": unsigned(value_width), "tag": tag_shape})


class PeripheryComponent(wiring.Component):
    """Base of the components built from :class:`PeripheryParams`: checks the parameters,
    builds the signature with :meth:`members` and exposes the parameters as :attr:`params`."""

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


class AdcSignature(wiring.Signature):
    """The analog boundary of one SAR ADC, seen from the digital side.

    Parameters
    ----------
    bmax : int
        Width of the trial code.
    value_width : int
        ``Wy``; the reference is ``Wy + 1`` bits wide.
    columns : int
        Physical columns to select among; 0 leaves out the ``column`` member (a bare SAR
        controller does not know which column it converts).

    Members
    -------
    step : Out(1)
        A comparison takes place in this cycle; ``cmp`` is sampled at the next rising edge.
    column : Out(range(columns))
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

    def __init__(self, bmax: int, value_width: int, columns: int = 0):
        members = {
            "step": Out(1),
            "trial": Out(bmax),
            "shift": Out(SHIFT_WIDTH),
            "ref": Out(value_width + 1),
            "cmp": In(1),
        }
        if columns:
            members["column"] = Out(range(columns))
        super().__init__(members)


class ConfigReadSignature(wiring.Signature):
    """A synchronous read port of the configuration memory (driven by the reader).

    Members
    -------
    addr : Out(range(depth))
        Physical column to read.
    en : Out(1)
        When 1, ``data`` takes the word at ``addr`` at the next rising edge; otherwise it holds.
    data : In(CONFIG_WORD)
        The word read (one cycle after ``en``).
    """

    def __init__(self, depth: int):
        super().__init__({"addr": Out(range(depth)), "en": Out(1), "data": In(CONFIG_WORD)})


class ConfigWriteSignature(wiring.Signature):
    """The write port of the configuration memory (driven by the writer).

    Members
    -------
    addr : Out(range(depth))
        Physical column to write.
    data : Out(CONFIG_WORD)
        Its new word.
    en : Out(1)
        Write at the next rising edge.
    """

    def __init__(self, depth: int):
        super().__init__({"addr": Out(range(depth)), "data": Out(CONFIG_WORD), "en": Out(1)})

