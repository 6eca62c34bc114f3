"""`pip install .` (not only editable) must carry hw/, sim/, templates/ and the bundled model."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_carries_every_top_level_folder(tmp_path):
    source = tmp_path / "source"            # build from a copy: setuptools writes build/ into the tree
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "__pycache__",
                                                                  "demo-out", ".pytest_cache", ".hypothesis"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path), str(source)], check=True, capture_output=True)
    wheel, = tmp_path.glob("codesign-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {"codesign/cli.py", "codesign/hw/__init__.py", "codesign/sim/__init__.py",
                "codesign/templates/tile.mem.j2", "codesign/templates/layer.vh.j2",
                "codesign/examples/digits_cnn_pruned.pt"}
    assert expected <= names
    for folder, package in (("hw", "codesign/hw/"), ("sim", "codesign/sim/"), ("templates", "codesign/templates/")):
        sources = {p.name for p in (ROOT / folder).iterdir() if p.suffix in (".py", ".j2", ".lib", ".v")}
        packed = {n.removeprefix(package) for n in names if n.startswith(package)}
        assert sources <= packed, f"{folder}/ files missing from the wheel: {sorted(sources - packed)}"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "codesign = codesign.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
