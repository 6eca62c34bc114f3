"""SAR ADC controller with a run-time resolution ``b`` and input shift ``k`` (docs/design.md §3.8)."""

from __future__ import annotations

import operator

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from codesign.config import MAX_ADC_BITS

from .interfaces import SarAdcSignature
from .periphery import SHIFT_WIDTH


def sar_command_layout(bmax: int, tag_shape: object) -> data.StructLayout:
    """A conversion request: ``bits`` b (0..Bmax), ``shift`` k, and an opaque ``tag``."""
    return data.StructLayout({"bits": range(bmax + 1), "shift": unsigned(SHIFT_WIDTH), "tag": tag_shape})


def sar_result_layout(bmax: int, tag_shape: object) -> data.StructLayout:
    """A conversion result: ``code`` = min(y >> k, 2^b − 1) and the command's ``tag``."""
    return data.StructLayout({"code": unsigned(bmax), "tag": tag_shape})


class SARController(wiring.Component):
    """A ``b``-step successive-approximation register.

    For each command ``(b, k, tag)`` it finds ``code = min(y >> k, 2^b − 1)`` of the analog
    column value ``y`` by binary search, most significant bit first: in step ``i = b−1 … 0`` it
    presents ``trial = code | 2^i`` and the reference ``trial << k`` and keeps bit ``i`` when
    the comparator says ``y ≥ trial << k``. Since ``y >> k ≥ trial ⇔ y ≥ trial << k`` for
    integers, the result equals docs/design.md §3.8 exactly.

    A trial whose bit weight ``2^(i+k)`` reaches ``2^Wy`` exceeds every column value
    (``y < 2^Wy``): the reference then reads ``2^Wy`` and the step is decided "below" without
    using ``cmp``. Hence ``code << k < 2^Wy`` whatever the comparator answers.

    Timing
    ------
    A command is accepted while the controller is idle or in the last step of the previous
    conversion, so back-to-back conversions take exactly ``b`` cycles each. The ``b`` steps
    occupy the ``b`` cycles after acceptance (``adc.step = 1``; ``cmp`` is sampled at the end of
    each). The result is registered: ``res.valid`` rises the cycle after the last step and
    stays until accepted. If the previous result is still waiting, the last step repeats
    (``adc.step`` stays 1) until ``res`` has room. A command with ``b = 0`` takes no comparison
    step and yields no result (its value is 0 by definition); only its transfer occupies the
    command stream for a cycle, which is why the tile never issues one.

    Parameters
    ----------
    bmax : int
        Largest resolution, 1..16; commands carry ``b`` in ``0..bmax``.
    value_width : int
        ``Wy``, bits of a column value (:attr:`PeripheryParams.value_width`).
    tag_shape : shape-castable
        Opaque data passed from a command to its result (``unsigned(0)`` for none).

    Members
    -------
    cmd : In(stream.Signature(StructLayout({"bits": range(bmax + 1), "shift": 5, "tag": tag_shape})))
        Conversion requests.
    res : Out(stream.Signature(StructLayout({"code": bmax, "tag": tag_shape})))
        ``code = min(y >> k, 2^b − 1)``.
    adc : Out(SarAdcSignature(bmax, Wy))
        Trial code, shift, reference and step strobe out; comparator answer in.
    tag : Out(tag_shape)
        The tag of the conversion in progress (valid while ``adc.step``).
    """

    def __init__(self, bmax: int, value_width: int, tag_shape: object):
        bmax = operator.index(bmax)
        value_width = operator.index(value_width)
        if not 1 <= bmax <= MAX_ADC_BITS:
            raise ValueError(f"bmax must be 1..{MAX_ADC_BITS} SAR steps, not {bmax}")
        if value_width < 1:
            raise ValueError(f"value_width must be at least 1 bit, not {value_width}")
        self._bmax = bmax
        self._value_width = value_width
        self._tag_shape = tag_shape
        super().__init__({
            "cmd": In(stream.Signature(sar_command_layout(bmax, tag_shape))),
            "res": Out(stream.Signature(sar_result_layout(bmax, tag_shape))),
            "adc": Out(SarAdcSignature(bmax, value_width)),
            "tag": Out(tag_shape),
        })

    @property
    def bmax(self) -> int:
        return self._bmax

    @property
    def value_width(self) -> int:
        return self._value_width

    def elaborate(self, platform: object) -> Module:
        m = Module()
        bmax, width = self._bmax, self._value_width

        busy = Signal()                                   # a step is in progress (control: reset)
        index = Signal(range(bmax), reset_less=True)      # i: code bit under test
        shift = Signal(SHIFT_WIDTH, reset_less=True)      # k
        code = Signal(bmax, reset_less=True)              # bits decided so far
        value = Signal(width, reset_less=True)            # code << k
        tag = Signal(self._tag_shape, reset_less=True)
        result = Signal(sar_result_layout(bmax, self._tag_shape), reset_less=True)
        position = Signal(range(bmax + (1 << SHIFT_WIDTH)))  # i + k: weight of the trial bit in y
        in_range = Signal()                               # 2^(i+k) < 2^Wy
        trial_value = Signal(width)
        last = Signal()
        completes = Signal()                              # the conversion ends at this edge
        above = Signal()                                  # keep bit i

        m.d.comb += [
            position.eq(index + shift),
            in_range.eq(position < width),
            trial_value.eq(value | Cat(position == n for n in range(width))),
            self.adc.step.eq(busy),
            self.adc.trial.eq(code | Cat(index == n for n in range(bmax))),
            self.adc.shift.eq(shift),
            self.adc.ref.eq(Mux(in_range, trial_value, 1 << width)),
            self.tag.eq(tag),
            self.res.p.eq(result),
            last.eq(busy & (index == 0)),
            completes.eq(last & (~self.res.valid | self.res.ready)),
            self.cmd.ready.eq(~busy | completes),
            above.eq(self.adc.cmp & in_range),
        ]

        with m.If(self.res.valid & self.res.ready):
            m.d.sync += self.res.valid.eq(0)
        with m.If(busy & (~last | completes)):
            next_code = Mux(above, self.adc.trial, code)
            next_value = Mux(above, trial_value, value)
            m.d.sync += [code.eq(next_code), value.eq(next_value), index.eq(index - 1)]
            with m.If(last):
                m.d.sync += [busy.eq(0), self.res.valid.eq(1), result.code.eq(next_code), result.tag.eq(tag)]
        with m.If(self.cmd.valid & self.cmd.ready & (self.cmd.p.bits != 0)):
            m.d.sync += [
                busy.eq(1),
                index.eq(self.cmd.p.bits - 1),
                shift.eq(self.cmd.p.shift),
                code.eq(0),
                value.eq(0),
                tag.eq(self.cmd.p.tag),
            ]
        return m
