"""The mutation suite (issue 11): every mutant of docs/mutants.md against ``codesign simulate``.

Each mutant of :data:`codesign.mutants.MUTANTS` is applied to a copy of a fixture folder (or to a
copy of the Amaranth sources, then regenerated) and simulated on Icarus; target: every mutant
killed, no survivor, no edit that fails to apply (the equivalent ones argued in docs/mutants.md
must survive). The table lists who killed each mutant and the first failure line it produced.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from codesign.mutants import MUTANTS, kill_table, run_suite

from . import stopwatch, table


def run() -> str:
    with tempfile.TemporaryDirectory(prefix="bench-mutants-") as work:
        with stopwatch() as wall:
            outcomes = run_suite(MUTANTS, Path(work), log=lambda line: print(line, file=sys.stderr, flush=True))
    killed = sum(1 for o in outcomes if o.applied and o.killed_by and not o.mutant.equivalent)
    equivalent = sum(1 for o in outcomes if o.mutant.equivalent)
    survivors = [o.mutant.name for o in outcomes if o.applied and not o.ok and not o.mutant.equivalent]
    broken = [o.mutant.name for o in outcomes if not o.applied or (o.mutant.equivalent and not o.ok)]
    summary = [["mutants", len(outcomes), "≥ 25", "pass" if len(outcomes) >= 25 else "FAIL"],
               ["killed", killed, f"{len(outcomes) - equivalent}", "pass" if not survivors and not broken else "FAIL"],
               ["survivors", ", ".join(survivors) or 0, "0", "pass" if not survivors else "FAIL"],
               ["equivalent (argued in docs/mutants.md, must survive)", equivalent, "", ""],
               ["edits that do not apply / equivalent ones killed", ", ".join(broken) or 0, "0",
                "pass" if not broken else "FAIL"],
               ["wall time (fixtures included; Icarus)", f"{wall[0]:.0f} s", "", ""]]
    return ("### Mutation suite: `make mutants` (issue 11)\n\n" + table(["measure", "measured", "target", ""], summary)
            + "\n\n" + kill_table(outcomes))
