"""Amaranth gateware of the crossbar-tile periphery (docs/periphery.md), installed as ``codesign.hw``.

:class:`TilePeriphery` is the top of one tile: an :class:`InputStage` (input planes to the
wordlines), a :class:`RowSequencer` walking the configuration memory, :class:`MacroLanes` or
:class:`SarLanes` (one ADC per lane), a :class:`ShiftAdd` (accumulators and the result stream)
and a :class:`ConfigBus` (APB). Every width derives from :class:`PeripheryParams`
(:mod:`codesign.hw.periphery`, importable without Amaranth). ``codesign generate`` converts one
:class:`TilePeriphery` per crossbar geometry to Verilog (:mod:`codesign.rtl`).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

#: Public names and the submodule that defines each (imported on first use, so that
#: ``codesign.hw.periphery`` does not pull in Amaranth).
_EXPORTS = {
    "PeripheryParams": "periphery", "Schedule": "periphery", "Slot": "periphery",
    "AxiStreamSignature": "interfaces", "ApbSignature": "interfaces", "MacroAdcSignature": "interfaces",
    "SarAdcSignature": "interfaces",
    "ConfigBus": "config_bus", "InputStage": "input_stage", "MacroLanes": "lanes", "SarLanes": "lanes",
    "RowSequencer": "sequencer", "SARController": "sar", "ShiftAdd": "shift_add", "TilePeriphery": "tile",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'codesign.hw' has no attribute {name!r}")
    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
