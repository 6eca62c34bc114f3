"""Robustness (issue 12): the fuzz suite ``tests/test_fuzz.py`` run as CI runs it, with its counts.

Every generated case (model files, configs, option values, corrupted folders, output locations)
must end in a one-line refusal (exit 1, nothing changed) or a correct success; anything else is
an internal error (exit 3, a traceback, a crash or hang of the worker) or another failure (a
changed file, several error lines). Target: at least 2,000 cases in under 3 minutes, 0 internal
errors. The distinct internal errors are listed with one reproducer each.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from . import HERE, stopwatch, table

TARGET_CASES = 2000
TARGET_S = 180.0


def run() -> str:
    with tempfile.TemporaryDirectory(prefix="bench-fuzz-") as work:
        stats = Path(work) / "stats.json"
        env = dict(os.environ, CODESIGN_FUZZ_STATS=str(stats), AMARANTH_USE_YOSYS="builtin")
        with stopwatch() as wall:
            done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                   str(HERE.parent / "tests" / "test_fuzz.py")], env=env, cwd=HERE.parent,
                                  capture_output=True, text=True)
        data = json.loads(stats.read_text())
    classes = data["classes"]
    rows, total = [], {"cases": 0, "refused": 0, "succeeded": 0, "internal_errors": 0, "other_failures": 0,
                       "out_of_memory": 0}
    for name, entry in classes.items():
        rows.append([name, entry["cases"], entry["refused"] + entry["succeeded"], entry["refused"],
                     entry["succeeded"], entry["internal_errors"], entry["other_failures"], entry["out_of_memory"],
                     f"{entry['seconds']:.1f} s", f"{entry['peak_rss_mib']:.0f} MiB"])
        for key in total:
            total[key] += entry[key]
    rows.append(["**total**", total["cases"], total["refused"] + total["succeeded"], total["refused"],
                 total["succeeded"], total["internal_errors"], total["other_failures"], total["out_of_memory"], "", ""])
    summary = [["cases", f"{total['cases']:,}", f"≥ {TARGET_CASES:,}", "pass" if total["cases"] >= TARGET_CASES
                else "FAIL"],
               ["wall time of `pytest tests/test_fuzz.py` (incl. a few real-process cases)", f"{wall[0]:.0f} s",
                f"< {TARGET_S:.0f} s", "pass" if wall[0] < TARGET_S else "FAIL"],
               ["internal errors", total["internal_errors"], "0", "pass" if not total["internal_errors"] else "FAIL"],
               ["worker memory limit (RLIMIT_DATA)", f"{data['memory_limit_gib']:.0f} GiB", "", ""],
               ["pytest", done.stdout.strip().splitlines()[-1] if done.stdout.strip() else f"status {done.returncode}",
                "", ""]]
    text = ("### Robustness: fuzzing every command (issue 12)\n\n"
            + table(["measure", "measured", "target", ""], summary) + "\n\n"
            + table(["class", "cases", "clean", "refused in one line", "correct success", "internal errors",
                     "other failures", "of the refusals: out of memory", "time in cases", "peak RSS"], rows)
            + "\n\n'Out of memory': refused in one line only because an allocation hit the worker's memory limit "
              "(a size that should be checked before allocating).")
    distinct = distinct_failures(data["failures"])
    if distinct:
        text += "\n\nDistinct failures (one reproducer each):\n\n" + "\n".join(
            f"- {count}× `{message}` — e.g. {example}" for message, (count, example) in distinct.items())
    return text


def distinct_failures(failures: list[str]) -> dict[str, tuple[int, str]]:
    """Failures grouped by their error message (numbers and paths blanked), with a count and the
    shortest example."""
    groups: dict[str, tuple[int, str]] = {}
    for failure in failures:
        match = re.search(r"(internal error: [^(;\]]*|changed files[^;]*|a traceback|worker[^;]*|differ from[^;]*)",
                          failure)
        key = re.sub(r"\d+", "N", match[1] if match else failure.split(":")[0])[:160].replace("`", "'")
        description = failure.split("; argv")[0][:300].replace("`", "'").replace("\n", " ")
        count, example = groups.get(key, (0, description))
        groups[key] = (count + 1, min(example, description, key=len))
    return groups
