"""codesign: hardware/software co-design of crossbar-based analog in-memory DNN accelerators.

Pipeline (docs/design.md §2): ingest → mapping → analysis → HardwareConfig → params / rtl /
report / verify. Importing the package is cheap; heavy modules (torch, amaranth, cocotb) are
imported by the stages that use them.
"""

__version__ = "0.1.0"
