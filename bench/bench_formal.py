"""Formal properties (issue 11): the run of ``make formal`` (docs/formal.md) — the bundled model's
module and a 32×32 SAR tile — per property its proof, depth, solver, time and result."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from . import codesign_command, run_command

#: The ``codesign generate`` options of each folder ``make formal`` proves.
FOLDERS = {"default": [], "tile32": ["--rows", "32", "--cols", "32", "--adc-interface", "sar"]}


def run() -> str:
    from codesign.formal import Settings, failures, prove_folder, results_table

    load = os.getloadavg()[0]
    results = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-formal-") as work:
        for name, options in FOLDERS.items():
            out = Path(work) / name
            run_command([*codesign_command(), "generate", "--out", str(out), "--no-report", *options])
            results += prove_folder(out, Path(work) / f"{name}-proofs", Settings())
    wall = time.perf_counter() - start
    checked = [r for r in results if r.mode != "reach"]
    return (f"### Formal properties: `make formal` (issue 11)\n\n{results_table(results)}\n\n"
            f"{len(checked) - len(failures(results))} of {len(checked)} properties hold; {wall:.0f} s wall time "
            f"with both `codesign generate` runs (1-minute load average {load:.1f} at the start, on 2 cores).\n")
