"""cocotb verification of the generated periphery Verilog against the golden model, installed as
``codesign.sim``.

:mod:`~codesign.sim.ports` reads a module's ports from its ``<module>.json``;
:mod:`~codesign.sim.harness` writes its simulation top (configuration loader, behavioural
crossbar); :mod:`~codesign.sim.runner` builds it with Icarus Verilog or Verilator through
``cocotb_tools.runner`` and runs tiles on it; :mod:`~codesign.sim.tile_test` is the cocotb test
the simulator runs. :mod:`codesign.simulate` (``codesign simulate``) puts them to work on a
``codesign generate`` folder.
"""
