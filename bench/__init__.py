"""Benchmarks: ``make bench`` (``python -m bench [name ...]``).

Each ``bench/bench_<name>.py`` defines ``run() -> str`` returning a markdown section (a heading,
a table of measured figures next to the issue's target and floor). ``python -m bench`` runs them
and appends everything to ``bench/results.md`` under a header naming the machine and date.
"""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Iterator

HERE = Path(__file__).parent
RESULTS = HERE / "results.md"


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = int(Path("/proc/meminfo").read_text().split()[1]) / 2**20
        memory = f"{mem:.0f} GiB"
    except (OSError, ValueError, IndexError):
        memory = "unknown memory"
    return f"{cpu}, {os.cpu_count()} cores, {memory}, Python {platform.python_version()}, {platform.system()}"


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    """``with stopwatch() as t: ...`` then ``t[0]`` is the wall time in seconds."""
    cell = [0.0]
    start = time.perf_counter()
    try:
        yield cell
    finally:
        cell[0] = time.perf_counter() - start


def best_of(func, repeat: int = 3) -> float:
    """Smallest wall time of ``repeat`` calls, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def run_command(args: list[str], **kwargs) -> tuple[float, float]:
    """Run a command to completion; return (wall seconds, peak RSS of the child in MiB)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, **kwargs)
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(peak, before) / 1024


def codesign_command() -> list[str]:
    return [sys.executable, "-m", "codesign"]


def table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def append_results(sections: list[str]) -> None:
    header = f"\n## {date.today().isoformat()} — {machine()}\n"
    with RESULTS.open("a") as handle:
        if RESULTS.stat().st_size == 0:
            handle.write("# Benchmark results\n\nAppended by `make bench`; newest last.\n")
        handle.write(header + "\n" + "\n\n".join(sections) + "\n")
