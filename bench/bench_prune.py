"""Issue 7's acceptance command, timed: D.U.B. on the digits with its default hyperparameters.

``codesign prune --method dub --data digits --rows 64 --cols 64 --out p.pt`` trains the digits CNN
dense (40 epochs), then runs D.U.B.'s 160 regularized and 200 fine-tuning epochs; the target is
under 10 minutes on 2 cores. ``codesign generate --model p.pt`` must then work on the result.
"""

from __future__ import annotations

import resource
import subprocess
import tempfile
from pathlib import Path

from . import codesign_command, run_command, table

TARGET_SECONDS = 600


def run() -> str:
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "p.pt"
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        prune_s, prune_mib = run_command([*codesign_command(), "prune", "--method", "dub", "--data", "digits",
                                          "--rows", "64", "--cols", "64", "--out", str(model)],
                                         stderr=subprocess.DEVNULL)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        generate_s, _ = run_command([*codesign_command(), "generate", "--model", str(model),
                                    "--out", str(Path(tmp) / "out")], stderr=subprocess.DEVNULL)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    rows = [["codesign prune --method dub --data digits --rows 64 --cols 64", f"{prune_s:.0f} s", f"{cpu:.0f} s",
             f"{prune_mib:.0f} MiB", f"< {TARGET_SECONDS} s on 2 cores",
             "met" if prune_s < TARGET_SECONDS else "NOT met"],
            ["codesign generate --model p.pt", f"{generate_s:.1f} s", "", "", "works", "met"]]
    header = ["command", "wall time", "CPU time", "peak RSS", "target", "status"]
    return "### prune (issue 7)\n\n" + table(header, rows) + \
        "\n\nWall time depends on what else the machine runs; CPU time is user + system of the command."
