"""``codesign simulate`` on several workers: a real local Ray (and the process pool) give the serial
result; a failed batch is reported with its tiles while the others are still checked; ``--sample``
covers every layer with its densest tile; bad options get one line."""

import json
from pathlib import Path

import pytest

from codesign import engine as engine_module
from codesign.cli import main
from codesign.simulate import Folder, sample_tiles, select_tiles, simulate

#: Two layers of the bundled model, one tile each on 128×128 crossbars.
TILES = ["features.0", "classifier.3"]
#: What may differ between runs of the same tiles: wall times, where a tile sits in its simulator run,
#: and its segment's simulated cycles, by one after another segment (its measured cycles do not).
VARYING = ("seconds", "first_cycle", "simulated_cycles")


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundled") / "out"
    assert main(["generate", "--out", str(out), "--no-report"]) == 0
    return out


def checked(results: dict) -> list[dict]:
    return [{k: v for k, v in record.items() if k not in VARYING} for record in results["tiles"]]


def test_two_ray_workers_give_the_serial_result(generated):
    serial = simulate(generated, tiles=TILES, vectors=4, workers=1)
    assert serial["passed"] and serial["engine"]["backend"] == "inline" and len(serial["tiles"]) == 2
    parallel = simulate(generated, tiles=TILES, vectors=4, workers=2)
    assert parallel["engine"]["backend"] == "ray" and len(parallel["builds"]) == 2   # one batch per worker
    assert checked(parallel) == checked(serial)
    assert all(abs(a["simulated_cycles"] - b["simulated_cycles"]) <= 1
               for a, b in zip(parallel["tiles"], serial["tiles"]))
    assert parallel["passed"] and parallel["outputs_compared"] == serial["outputs_compared"]
    written = json.loads((generated / "sim" / "results.json").read_text())
    assert checked(written) == checked(parallel)


def test_a_failed_batch_names_its_tiles_and_the_others_are_still_checked(generated, monkeypatch):
    import codesign.sim.runner as runner

    original = runner.run_tiles

    def failing(build, jobs, workdir, *args, **kwargs):     # the forked pool workers see this patch
        if workdir.name == "batch1":
            raise RuntimeError("injected")
        return original(build, jobs, workdir, *args, **kwargs)

    monkeypatch.setattr(runner, "run_tiles", failing)
    monkeypatch.setattr(engine_module, "ray_available", lambda: False)
    found = simulate(generated, tiles=TILES, vectors=4, workers=2)
    assert found["engine"]["backend"] == "pool" and not found["passed"]
    first, second = found["tiles"]
    assert first["passed"] and first["layer"] == "features.0"
    assert not second["passed"] and second["errors"][0] == "not simulated: its batch failed (see the errors)"
    (error,) = found["errors"]
    assert error.startswith("module codesign_tile_") and ", tiles classifier.3:0: RuntimeError: injected (at " in error


def densest(config, key: str) -> int:
    """The index of the layer's tile with the most converted columns (first on ties), written out."""
    tiles = config.layer(key).tiles
    counts = [len([b for b in tile.adc_bits if b != 0]) for tile in tiles]
    return counts.index(max(counts))


def test_a_sample_covers_every_layer_with_its_densest_tile(generated):
    folder = Folder.open(generated)
    refs = select_tiles(folder, None)
    layers = [layer.key for layer in folder.config.layers]
    for count in (len(layers), 9, 20):
        chosen = sample_tiles(folder, refs, count, seed=0)
        assert len(chosen) == count == len(set(chosen))
        assert {ref.layer for ref in chosen} == set(layers)
        assert {(key, densest(folder.config, key)) for key in layers} <= {(r.layer, r.index) for r in chosen}
        assert chosen == [ref for ref in refs if ref in chosen]           # folder order
        assert sample_tiles(folder, refs, count, seed=0) == chosen        # the seed fixes it
    assert sample_tiles(folder, refs, 9, seed=1) != sample_tiles(folder, refs, 9, seed=0)
    assert sample_tiles(folder, refs, 100, seed=0) == refs


@pytest.mark.parametrize("args, message", [
    (["--sample", "3"], "codesign: error: --sample 3 cannot cover the 5 layers selected: give at least 5"),
    (["--workers", "0"], "codesign: error: argument --workers: 0 is out of range: give at least 1"),
    (["--ray", "headnode"], "codesign: error: cannot reach the Ray cluster at headnode: give HOST:PORT"),
    (["--ray", "auto", "--waves"], "codesign: error: --waves writes the waveforms on this machine: not "
                                          "with --ray"),
])
def test_bad_options_get_one_line(generated, args, message, capsys):
    assert main(["simulate", str(generated), *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1 + ("no --model" in err)
