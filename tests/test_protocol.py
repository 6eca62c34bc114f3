"""Every protocol check of the simulation harness (``codesign.sim.harness.RULES``) fails
``codesign simulate`` on a generated Verilog (or regenerated Amaranth source) that breaks it, with
the rule named in the first line; the mutants come from docs/mutants.md."""

import pytest

from codesign.mutants import make_fixtures, mutant, run_mutant
from codesign.sim.harness import RULES

#: One small tile with unused logical columns; the extremes probe gives it back-pressure.
TILE = "classifier.3"

#: For each rule, a mutant that breaks it (rule 6, the SAR steps: a wrong trial and a wrong ref).
BREAKERS = [("bits-plus-one", 0), ("apb-refuses", 1), ("y-ignores-ready", 2), ("tlast-early", 3), ("busy-0", 4),
            ("busy-write-rows", 5), ("sar-trial-0", 6), ("sar-ref-beyond", 6), ("input-cycle-0", 7),
            ("src-skip-slots", 8)]


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    return make_fixtures(tmp_path_factory.mktemp("protocol"))


def test_every_rule_has_a_breaker():
    assert sorted({rule for _, rule in BREAKERS}) == list(range(len(RULES)))


@pytest.mark.parametrize("name, rule", BREAKERS, ids=[name for name, _ in BREAKERS])
def test_a_broken_rule_fails_simulate_and_is_named(fixtures, tmp_path, name, rule):
    outcome = run_mutant(mutant(name), fixtures, tmp_path, tiles=TILE)
    assert outcome.killed_by == "codesign simulate", outcome.message
    assert outcome.message.startswith("layer classifier.3 tile 0: protocol check failed from cycle "), outcome.message
    assert RULES[rule] in outcome.message
