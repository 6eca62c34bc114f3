"""The mutation suite (codesign.mutants, docs/mutants.md): every edit applies to today's generated
code, the list is documented, a fast subset is killed (among them the issue's survivors: the
output truncated, the SAR ignoring k, the wordlines dropping), a no-op mutant is reported as a
survivor and an edit that does not apply as an error, never as a kill. ``make mutants`` runs all."""

import re
import shutil
from pathlib import Path

import pytest

from codesign.mutants import (MUTANTS, Edit, Mutant, MutantError, apply_edits, kill_table, make_fixtures,
                              package_copy, run_mutant, run_suite)

DOCS = Path(__file__).resolve().parent.parent / "docs" / "mutants.md"
FAST = ("output-22-bits", "sar-ignores-k", "wordline-drops")


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("mutants")


@pytest.fixture(scope="module")
def fixtures(work):
    return make_fixtures(work)


def test_at_least_25_distinct_mutants_all_documented():
    names = [m.name for m in MUTANTS]
    assert len(names) >= 25 and len(set(names)) == len(names)
    listed = re.findall(r"^\| `([\w-]+)` \|", DOCS.read_text(), re.M)
    assert listed == names
    assert {m.fixture for m in MUTANTS} == {"macro", "sar"} and any(m.source for m in MUTANTS)


def test_every_edit_applies(fixtures, tmp_path):
    sources = package_copy(tmp_path / "src") / "codesign"
    pristine = {path: path.read_text() for path in sources.glob("hw/*.py")}
    for m in MUTANTS:
        if m.source:
            apply_edits(sources, m.edits)
            for path, text in pristine.items():
                path.write_text(text)
        else:
            copy = tmp_path / m.name
            shutil.copytree(fixtures[m.fixture], copy, ignore=shutil.ignore_patterns("sim"))
            apply_edits(copy, m.edits)
            shutil.rmtree(copy)


def test_a_fast_subset_is_killed(fixtures, work):
    outcomes = run_suite([m for m in MUTANTS if m.name in FAST], work, tiles="classifier.3", vectors=4)
    assert [o.verdict for o in outcomes] == ["killed"] * len(FAST), kill_table(outcomes)
    messages = {o.mutant.name: o.message for o in outcomes}
    assert "the output path loses top bits" in messages["output-22-bits"]
    assert "a SAR step's trial, shift or ref does not follow" in messages["sar-ignores-k"]
    table = kill_table(outcomes)
    assert table.count("\n") == len(FAST) + 1 and "| `wordline-drops` |" in table


def test_a_no_op_mutant_is_reported_as_a_survivor(fixtures, work):
    same = Mutant("no-op", "busy replaced by itself", "macro",
                  (Edit("rtl/*.v", r"assign busy = \| pending;", "assign busy = | pending;"),))
    outcome = run_mutant(same, fixtures, work, tiles="classifier.3", vectors=4)
    assert outcome.applied and outcome.killed_by == "" and outcome.verdict == "SURVIVED" and not outcome.ok
    assert "| SURVIVED | — |" in kill_table([outcome])


def test_an_edit_that_does_not_apply_is_an_error_not_a_kill(fixtures, work):
    stale = Mutant("stale", "a line the Verilog lacks", "macro", (Edit("rtl/*.v", r"assign nothing_here;", ""),))
    outcome = run_mutant(stale, fixtures, work)
    assert not outcome.applied and outcome.verdict == "NOT APPLIED" and not outcome.ok
    assert "/assign nothing_here;/ matches 0 times, not 1" in outcome.message
    twice = Edit("rtl/*.v", r"assign busy", "assign busy", count=2)
    with pytest.raises(MutantError, match="matches 1 times, not 2"):
        apply_edits(work / "stale" / "out", [twice])
