"""Shared test settings."""

import pytest


@pytest.fixture(scope="session", autouse=True)
def synthesis_cache(tmp_path_factory):
    """One synthesis cache for the session: hermetic, yet each distinct module is synthesized once."""
    patch = pytest.MonkeyPatch()
    patch.setenv("CODESIGN_CACHE_DIR", str(tmp_path_factory.mktemp("codesign-cache")))
    yield
    patch.undo()


@pytest.fixture(scope="session")
def dense_digits(tmp_path_factory):
    """A real dense checkpoint: digits_cnn trained for 4 epochs (about 90 % test accuracy)."""
    from codesign.prune import train_dense

    path = tmp_path_factory.mktemp("dense") / "dense.pt"
    train_dense("digits_cnn", "digits", path, epochs=4)
    return path


def shift_add_verilog() -> str:
    """A small Amaranth 0.5 shift-add: accumulates code << shift until ``last``."""
    from amaranth import Module, Signal, signed
    from amaranth.back import verilog
    from amaranth.lib import data, stream, wiring
    from amaranth.lib.wiring import In, Out

    class Sample(data.Struct):
        code: 8
        shift: range(8)
        last: 1

    class ShiftAdd(wiring.Component):
        i_stream: In(stream.Signature(Sample))
        o_stream: Out(stream.Signature(signed(20)))

        def elaborate(self, platform):
            m = Module()
            acc = Signal(signed(20))
            m.d.comb += self.i_stream.ready.eq(~self.o_stream.valid | self.o_stream.ready)
            with m.If(self.o_stream.valid & self.o_stream.ready):
                m.d.sync += self.o_stream.valid.eq(0)
            with m.If(self.i_stream.valid & self.i_stream.ready):
                total = acc + (self.i_stream.p.code << self.i_stream.p.shift)
                with m.If(self.i_stream.p.last):
                    m.d.sync += [self.o_stream.p.eq(total), self.o_stream.valid.eq(1), acc.eq(0)]
                with m.Else():
                    m.d.sync += acc.eq(total)
            return m

    return verilog.convert(ShiftAdd(), name="shift_add", emit_src=False, strip_internal_attrs=True)


@pytest.fixture(scope="session")
def shift_add(tmp_path_factory):
    """``shift_add.v`` (the Amaranth shift-add above) alone in a folder: the synthesis and FPGA baselines' module."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AMARANTH_USE_YOSYS", "builtin")
        text = shift_add_verilog()
    path = tmp_path_factory.mktemp("rtl") / "shift_add.v"
    path.write_text(text)
    return path
