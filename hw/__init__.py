"""Amaranth gateware of the crossbar-tile periphery (docs/design.md §3), installed as
``codesign.hw``.

:class:`TilePeriphery` is the top of one tile; it is built from a :class:`ColumnSequencer`, one
:class:`SARController` per ADC, a :class:`ShiftAdd` and the configuration memory
(:class:`ConfigStore`, or its Verilog twin in generated RTL). Every width
derives from :class:`PeripheryParams`. ``codesign generate`` converts one :class:`TilePeriphery`
per crossbar geometry to Verilog (:mod:`codesign.rtl`).
"""

from .config_store import ConfigStore
from .periphery import AdcSignature, ConfigReadSignature, ConfigWriteSignature, Lane, PeripheryParams
from .sar import SARController
from .sequencer import ColumnSequencer
from .shift_add import ShiftAdd
from .tile import TilePeriphery

__all__ = ["AdcSignature", "ColumnSequencer", "ConfigReadSignature", "ConfigStore", "ConfigWriteSignature",
           "Lane", "PeripheryParams", "SARController", "ShiftAdd", "TilePeriphery"]
