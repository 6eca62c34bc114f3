"""hw_config.json names its model relative to its own folder (docs/design.md §4), so the folder
works from anywhere: simulate, report and --config find the model wherever they are run from."""

import json
import os
import shutil

import pytest

from codesign.cli import main
from codesign.config import ModelInfo
from codesign.errors import CodesignError
from codesign.ingest import bundled_model_path


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A model in models/, a folder generated into build/deep/out from the project folder."""
    (tmp_path / "models").mkdir()
    shutil.copy(bundled_model_path(), tmp_path / "models" / "pruned.pt")
    monkeypatch.chdir(tmp_path)
    assert main(["generate", "--model", "models/pruned.pt", "--out", "build/deep/out", "--no-report"]) == 0
    return tmp_path


def test_generate_stores_the_model_relative_to_the_output_folder_and_absolute(project):
    model = json.loads((project / "build" / "deep" / "out" / "hw_config.json").read_text())["model"]
    assert model["path"] == "../../../models/pruned.pt"
    assert model["absolute_path"] == str((project / "models" / "pruned.pt").resolve())


def test_simulate_from_another_folder_finds_the_model(project, monkeypatch, capsys):
    elsewhere = project / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    argv = ["simulate", "../build/deep/out", "--tiles", "classifier.3:0", "--vectors", "2"]
    assert main(argv) == 0, capsys.readouterr().err
    results = json.loads((project / "build" / "deep" / "out" / "sim" / "results.json").read_text())
    assert results["passed"] and "real layer inputs" in results["inputs"]      # the model's own activations


def test_a_moved_folder_falls_back_to_the_absolute_path(project, monkeypatch):
    shutil.move(project / "build" / "deep" / "out", project / "moved")
    monkeypatch.chdir(project / "models")
    info = ModelInfo.model_validate(json.loads((project / "moved" / "hw_config.json").read_text())["model"])
    assert info.locate(project / "moved") == project / "models" / "pruned.pt"
    os.remove(project / "models" / "pruned.pt")
    with pytest.raises(CodesignError, match=r"hw_config.json is not found \(tried .*\): pass --model FILE"):
        info.locate(project / "moved")


def test_config_without_model_option_uses_the_configs_model(project, monkeypatch, capsys):
    monkeypatch.chdir(project / "build")
    capsys.readouterr()
    assert main(["generate", "--config", "deep/out/hw_config.json", "--out", "again", "--no-report"]) == 0
    err = capsys.readouterr().err
    assert "using the model deep/out/hw_config.json was made from, deep/out/../../../models/pruned.pt" in err
    assert "bundled" not in err
    again = json.loads((project / "build" / "again" / "hw_config.json").read_text())["model"]
    assert again["path"] == "../../models/pruned.pt"
