"""``codesign simulate DIR``: the generated Verilog of every tile against the golden model.

For each selected tile of a ``codesign generate`` folder, the tile's Verilog module (``DIR/rtl/``)
runs in Icarus Verilog or Verilator under cocotb (:mod:`codesign.sim`), configured through its APB
port from its ``params/<layer>/tile_NNN.mem``. A model of the analog side computes every column
value from the wordlines the module drives and the tile's cell levels (docs/design.md §3.7) and answers the
ADCs (``macro``: the code after a latency of 1 … ``conversion_cycles`` cycles; ``sar``: the
comparator). Every result is compared bit-exactly with :func:`codesign.golden.layer_outputs`: a
tile of row block ``k`` gets on ``s_axis_acc`` the golden partial sums of the row blocks before it
(as the hardware chains them) and must return the partial sums up to and including its own. Also
checked: no conversion of a skipped column and none with other ``b``, ``k`` than the config, as
many conversions as the config implies, results held under back-pressure, ``tlast``, the module's
``error`` output, and the exact cycles of ``rtl/manifest.json`` (latency and back-to-back period).

Inputs are real layer inputs when the model's architecture is known and takes the bundled digits
images (each layer's integer inputs while the model classifies digits test images), random
otherwise; then every tile gets the *corner vectors* of its column block (:func:`corner_vectors`),
which drive every result and every partial sum on ``s_axis_acc`` to its largest and its smallest
possible value, so the accumulators' top bits and signs are exercised. Before simulating, the folder is checked for drift: ``hw_config.json`` (what the golden
model uses) must still match ``rtl/`` and ``params/`` (what the hardware uses); any difference is
refused with the first one named, because it could pass unnoticed (a column given more bits).
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from .config import HardwareConfig, check_against_model, load_config
from .errors import CodesignError
from .files import claim_tree, read_json
from .rtl import load_manifest

SCHEMA = "codesign-simulate/1"
DEFAULT_VECTORS = 8
#: Mismatches listed in results.json (all are counted).
LISTED_MISMATCHES = 1000
#: Vectors sent back to back first (their cycles are checked); the others see back-pressure.
BURST = 3
#: Idle input cycles before a vector and cycles a result waits for ready: 0 .. this − 1 (seeded).
BACK_PRESSURE = 3


@dataclass(frozen=True)
class TileRef:
    """Tile ``index`` of layer ``layer`` (its key), in the order of ``hw_config.json``."""

    layer: str
    index: int


@dataclass
class Folder:
    """A ``codesign generate`` output folder, as simulate reads it."""

    root: Path
    config: HardwareConfig
    manifest: dict

    @classmethod
    def open(cls, root: str | Path) -> "Folder":
        root = Path(root)
        if not root.is_dir():
            raise CodesignError(f"{root} is not a folder: give the output folder of 'codesign generate'")
        for needed in ("hw_config.json", "rtl/manifest.json", "params/params.json"):
            if not (root / needed).is_file():
                raise CodesignError(f"{root} has no {needed}: give the output folder of 'codesign generate' "
                                    f"(run 'codesign generate --out {root}' first)")
        return cls(root, load_config(root / "hw_config.json"), load_manifest(root))

    def module(self, name: str) -> dict:
        return next(m for m in self.manifest["modules"] if m["name"] == name)

    def manifest_layer(self, key: str) -> dict:
        return next(entry for entry in self.manifest["layers"] if entry["name"] == key)


def read_mem(path: Path) -> list[int]:
    """The words of a ``$readmemh`` file as codesign writes them (``//`` comments, one hex word per
    token); raises :class:`CodesignError` for anything else."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise CodesignError(f"cannot read {path}: {exc.strerror}; regenerate the folder") from None
    words = []
    for number, line in enumerate(text.splitlines(), start=1):
        for token in line.split("//", 1)[0].split():
            if not re.fullmatch(r"[0-9a-fA-F]+", token):
                raise CodesignError(f"{path} line {number}: '{token}' is not a hex word; regenerate the folder")
            words.append(int(token, 16))
    return words


def _drift(root: Path, where: str, problem: str) -> CodesignError:
    return CodesignError(f"hw_config.json no longer matches the generated files: {where}: {problem}; regenerate "
                         f"the folder from a copy of the config ('cp {root}/hw_config.json edited.json; codesign "
                         f"generate --config edited.json --out {root} --force', with the --model it was made from) "
                         f"or restore the edited file")


def check_folder(folder: Folder) -> None:
    """Refuse a folder whose ``hw_config.json`` differs from what its hardware and testbench read:
    the modules and their parameters (``rtl/<module>.json``), layers and tiles (``rtl/manifest.json``),
    every tile's memory rows (``params/…/tile_NNN.mem``), its ``ROWS`` and its reported cycles."""
    from .rtl import module_groups

    config, root = folder.config, folder.root
    modules = {m["name"]: m for m in folder.manifest["modules"]}
    layers = {entry["name"]: entry for entry in folder.manifest["layers"]}
    if sorted(layers) != sorted(layer.key for layer in config.layers):
        raise _drift(root, "layers", f"hw_config.json has {', '.join(layer.key for layer in config.layers)}; "
                                     f"rtl/manifest.json has {', '.join(layers)}")
    for group in module_groups(config):
        module = modules.get(group.name)
        if module is None:
            raise _drift(root, f"layer '{group.layers[0].key}'", f"needs the module {group.name}, which rtl/ lacks")
        found = _ports(root / "rtl" / module["ports"]).params
        if found != group.params:
            difference = next(name for name in ("geometry", "bmax", "chain", "interface", "conversion_cycles",
                                                "stream_width") if getattr(found, name) != getattr(group.params, name))
            raise _drift(root, f"module {group.name}", f"hw_config.json implies {difference} "
                                                       f"{getattr(group.params, difference)}, rtl/{module['ports']} "
                                                       f"has {getattr(found, difference)}")
        for layer in group.layers:
            entry = layers[layer.key]
            if entry["module"] != group.name:
                raise _drift(root, f"layer '{layer.key}'",
                             f"needs module {group.name}, rtl/manifest.json says {entry['module']}")
            if len(entry["tiles"]) != len(layer.tiles):
                raise _drift(root, f"layer '{layer.key}'", f"{len(layer.tiles)} tiles in hw_config.json, "
                                                           f"{len(entry['tiles'])} in rtl/manifest.json")
            for index, (tile, generated) in enumerate(zip(layer.tiles, entry["tiles"])):
                _check_tile(root, f"layer '{layer.key}' tile {index}", group.params, tile, generated)


def _ports(path: Path) -> Any:
    """The port description of a module; one line if it is not one codesign wrote."""
    from .sim.ports import PortMap

    try:
        return PortMap(read_json(path, "regenerate the folder"))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CodesignError(f"{path} is not a port description codesign wrote ({type(exc).__name__}: {exc}); "
                            f"regenerate the folder") from None


def _check_tile(root: Path, where: str, params: Any, tile: Any, generated: dict) -> None:
    """One tile: its ``.mem`` rows against the schedule of its ``(b, k)``, and its manifest entry."""
    from .rtl import tile_cycles, tile_schedule

    mem = generated["cfg_file"]
    words = read_mem(root / mem)
    schedule = tile_schedule(params, tile)
    wanted = schedule.words()
    if len(words) != len(wanted):
        raise _drift(root, where, f"{len(wanted)} memory rows from hw_config.json, {len(words)} in {mem}")
    for row, (want, have) in enumerate(zip(wanted, words)):
        if want != have:
            g = next(g for g in range(params.adcs) if (want ^ have) >> (g * params.slot_width) & ((1 << params.slot_width) - 1))
            slot = schedule.rows[row][g]
            raise _drift(root, f"{where} memory row {row} slot {g}",
                         f"column {slot.column} b={slot.bits} k={slot.shift} from hw_config.json, "
                         f"word {have >> (g * params.slot_width) & ((1 << params.slot_width) - 1):#x} in {mem}")
    reported = tile_cycles(params, tile)
    for key in ("rows", "cycles", "latency"):
        if generated.get(key) != reported[key]:
            raise _drift(root, where, f"{key} {reported[key]} from hw_config.json, rtl/manifest.json reports "
                                      f"{generated.get(key)}")


def select_tiles(folder: Folder, specs: Optional[list[str]]) -> list[TileRef]:
    """Tiles named by ``--tiles`` (``LAYER``, ``LAYER:I`` or ``LAYER:I-J``, comma-separated or
    repeated), in folder order; all tiles when ``specs`` is empty."""
    config = folder.config
    everything = [TileRef(layer.key, i) for layer in config.layers for i in range(len(layer.tiles))]
    if not specs:
        return everything
    chosen: set[TileRef] = set()
    for spec in (part.strip() for item in specs for part in item.split(",") if part.strip()):
        name, _, indices = spec.rpartition(":") if re.search(r":\d+(-\d+)?$", spec) else (spec, "", "")
        layer = next((candidate for candidate in config.layers if name in (candidate.key, candidate.name)), None)
        if layer is None:
            raise CodesignError(f"--tiles {spec}: no layer '{name}'; layers are: "
                                f"{', '.join(candidate.key for candidate in config.layers)}")
        count = len(layer.tiles)
        first, _, last = indices.partition("-")
        if last and int(last) < int(first):
            raise CodesignError(f"--tiles {spec}: the range is reversed; write {name}:{last}-{first}")
        span = range(count) if not indices else range(int(first), int(last or first) + 1)
        if not span or span.start >= count or span.stop > count:
            raise CodesignError(f"--tiles {spec}: layer '{layer.key}' has tiles 0..{count - 1}")
        chosen.update(TileRef(layer.key, i) for i in span)
    return [ref for ref in everything if ref in chosen]


def load_folder_model(folder: Folder, path: Optional[str]) -> Any:
    """The model ``hw_config.json`` was made from (or ``path``), checked by its sha256."""
    from .ingest import load_model

    config = folder.config
    info = config.model
    if path is None:
        if info is None:
            raise CodesignError(f"{folder.root}/hw_config.json names no model: pass --model FILE")
        found = info.locate(folder.root)
        path = None if found is None else str(found)
    bits = {(layer.weight_bits, layer.input_bits) for layer in config.layers}
    if len(bits) > 1:
        raise CodesignError("layers with different weight or input bits are not supported yet")
    weight_bits, input_bits = bits.pop()
    model = load_model(path, weight_bits=weight_bits, input_bits=input_bits,
                       per_channel=info.per_channel if info else False)
    if info is not None and info.sha256 != model.info.sha256:
        raise CodesignError(f"{model.info.path} is not the model hw_config.json was made from ({info.path}, "
                            f"sha256 {info.sha256[:12]}…): pass that model with --model")
    check_against_model(config, model.layers)
    return model


def layer_inputs(model: Any, config: HardwareConfig, vectors: int,
                 rng: np.random.Generator) -> tuple[dict[str, np.ndarray], str]:
    """``vectors`` input vectors ``x[B, K]`` per layer and where they came from.

    Vector 0 is the corner case: every input at its maximum ``2^a − 1``, so every column reaches
    its largest value (where a reduced resolution clips). The others are real inputs when the
    model's architecture is known and takes the digits images: each layer's integer inputs
    (:mod:`codesign.emulate`, ideal integer mode) while the model classifies random digits test
    images, drawn at random among them; otherwise uniform random ``a``-bit integers.
    """
    from .data import digits
    from .emulate import calibrate_inputs, emulated_module, float_module, predict

    def with_corner(drawn: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for layer in config.layers:
            drawn[layer.key][0] = (1 << layer.input_bits) - 1
        return drawn

    random = {layer.key: rng.integers(0, 1 << layer.input_bits, size=(vectors, layer.matrix.rows))
              for layer in config.layers}
    try:
        float_module(model)
    except CodesignError:
        return with_corner(random), "vector 0 at the maximum, the others random (the model file has no architecture)"
    images, _ = digits("test")
    if model.input_shape is not None and tuple(images.shape[1:]) != tuple(model.input_shape):
        return with_corner(random), ("vector 0 at the maximum, the others random (the model does not take the "
                                     "digits images)")
    seen: dict[str, list[np.ndarray]] = {}
    try:    # a graph without a recorded input shape (TorchScript) shows only here that it takes other images
        quant = calibrate_inputs(model, digits("train")[0])
        module = emulated_module(model, quant, "ideal", observer=lambda key, u: seen.setdefault(key, []).append(u))
        predict(module, images[rng.choice(len(images), size=min(vectors, len(images)), replace=False)])
    except CodesignError:
        return with_corner(random), ("vector 0 at the maximum, the others random (the model does not take the "
                                     "digits images)")
    inputs = {}
    for layer in config.layers:
        rows = np.concatenate(seen[layer.key])
        inputs[layer.key] = rows[rng.choice(len(rows), size=vectors, replace=len(rows) < vectors)]
    return with_corner(inputs), "vector 0 at the maximum, the others real layer inputs from digits test images"


def corner_vectors(q: np.ndarray, columns: slice, input_bits: int) -> np.ndarray:
    """Input vectors ``x[V, K]`` that drive every output in ``columns`` of ``Q[K, N]`` to its
    largest and its smallest value over all ``input_bits``-bit inputs, at every row block.

    Output ``j`` (and each partial sum of its row blocks) is largest with ``x[r] = 2^a − 1`` where
    ``Q[r, j] > 0`` and ``x[r] = 0`` where ``Q[r, j] < 0``, smallest with the signs exchanged, for
    any ADC resolutions: the two signs sit on their own columns (docs/design.md §3.3), and every
    column value and ADC code is non-decreasing in every input digit (§3.7, §3.8). Rows where
    ``Q[r, j] = 0`` are free, so these ``2·|columns|`` demands are packed first-fit (most
    constrained first) into as few vectors as never ask a row for both values; free rows stay 0.
    An all-zero block needs none.
    """
    signs = np.sign(q[:, columns]).T.astype(np.int8)                # [L, K]: +1 at max, −1 at 0
    demands = [d for d in np.concatenate([signs, -signs]) if d.any()]
    demands.sort(key=lambda d: -np.count_nonzero(d))
    packed: list[np.ndarray] = []
    for demand in demands:
        target = next((v for v in packed if not (v * demand < 0).any()), None)
        if target is None:
            packed.append(demand.copy())
        else:
            np.copyto(target, demand, where=demand != 0)
    vectors = np.array(packed, dtype=np.int64).reshape(len(packed), q.shape[0])
    return np.where(vectors > 0, (1 << input_bits) - 1, 0)


@dataclass
class TileCase:
    """One tile's job, the golden results it must produce and the cycles it must take."""

    ref: TileRef
    module: str
    cfg_file: str
    corners: int        # corner vectors, after the others
    timing: Any         # codesign.hw.periphery.Timing
    conversions: int    # the conversions all the vectors need
    col_start: int
    col_count: int
    job: Any            # codesign.sim.runner.TileJob
    expected: np.ndarray


def tile_case(folder: Folder, model: Any, ref: TileRef, x: np.ndarray, rng: np.random.Generator,
              corners: bool = True) -> TileCase:
    """The job of tile ``ref`` for layer inputs ``x[B, K]``, followed (with ``corners``) by the
    corner vectors of its column block, and its expected results ``[B + corners, L]``."""
    from .golden import layer_outputs
    from .mapping import tile_digits
    from .rtl import module_groups, tile_schedule
    from .sim.runner import TileJob

    config = folder.config
    layer = config.layer(ref.layer)
    tile = layer.tiles[ref.index]
    geometry = config.geometry(layer)
    params = next(group.params for group in module_groups(config) if layer in group.layers)
    q = model.layer(layer.key).q
    entry = folder.manifest_layer(layer.key)
    generated = entry["tiles"][ref.index]
    cols = slice(tile.col_start, tile.col_start + tile.col_count)
    extra = corner_vectors(q, cols, layer.input_bits) if corners else np.zeros((0, x.shape[1]), dtype=np.int64)
    x = np.concatenate([x, extra])
    B, R, L = len(x), geometry.rows, geometry.logical_cols
    before = [t for t in layer.tiles if t.col_start == tile.col_start and t.row_start < tile.row_start]

    def partial(tiles: list) -> np.ndarray:
        sums = np.zeros((B, L), dtype=np.int64)
        sums[:, :tile.col_count] = layer_outputs(q, config, layer.model_copy(update={"tiles": tiles}), x)[:, cols]
        return sums

    rows = rng.integers(0, 1 << geometry.input_bits, size=(B, R))    # rows without weights get noise
    rows[:, :tile.row_count] = x[:, tile.row_start:tile.row_start + tile.row_count]
    digits = np.zeros((R, geometry.cols), dtype=np.int64)
    held = tile_digits(q, geometry, tile.range)
    digits[:tile.row_count, :held.shape[1]] = held
    expect = [b | k << 5 for b, k in zip(tile.adc_bits, tile.adc_shift)]
    schedule = tile_schedule(params, tile)
    latency = int(rng.integers(1, params.conversion_cycles + 1))
    job = TileJob(cfg_file=folder.root / generated["cfg_file"], rows=len(schedule.rows), x=rows, acc=partial(before),
                  digits=digits, expect=expect + [0] * (geometry.cols - len(expect)), latency=latency,
                  gaps=rng.integers(0, BACK_PRESSURE, size=B), stalls=rng.integers(0, BACK_PRESSURE, size=B),
                  burst=min(BURST, B))
    return TileCase(ref, entry["module"], generated["cfg_file"], len(extra), schedule.timing,
                    B * geometry.input_cycles * schedule.conversions, tile.col_start, tile.col_count, job,
                    partial(before + [tile]))


def compare(case: TileCase, run: Any) -> tuple[list[dict], list[str]]:
    """Mismatches (one per wrong result) and other errors of a tile's run."""
    mismatches, errors = [], list(run.errors)
    for b, want in enumerate(case.expected.tolist()):
        if b >= len(run.results):
            errors.append(f"vector {b}: no result")
            continue
        for j, (w, g) in enumerate(zip(want, run.results[b])):
            if w != g:
                mismatches.append({"layer": case.ref.layer, "tile": case.ref.index, "vector": b,
                                   "column": case.col_start + j if j < case.col_count else None,
                                   "tile_column": j, "expected": w, "got": g})
    for b, end in enumerate(run.ends[:case.job.burst]):
        if end != case.timing.end(b):
            errors.append(f"vector {b}: done {end} cycles after the first input beat, the timing of "
                          f"rtl/manifest.json gives {case.timing.end(b)} (latency {case.timing.latency}, "
                          f"period {case.timing.period})")
            break
    if len(run.results) == len(case.expected) and run.conversions != case.conversions:
        errors.append(f"{run.conversions} conversions started, the configuration implies {case.conversions}")
    return mismatches, errors


def run_cases(folder: Folder, cases: list[TileCase], simulator: str, mode: str, waves: bool, progress: bool,
              log: Callable[[str], None]) -> tuple[dict[TileRef, Any], list[dict], list[str], dict[str, Path]]:
    """Build each module once and run its tiles in one simulator run. Returns the tiles' runs, one
    record per build, failures of whole runs, and the waveform file of each module (with ``waves``)."""
    from .progress import Progress
    from .sim.runner import WAVES_SUFFIX, build, run_tiles

    out = folder.root / "sim"
    by_module: dict[str, list[TileCase]] = {}
    for case in cases:
        by_module.setdefault(case.module, []).append(case)
    waves_files = {name: out / "waves" / f"{name}{WAVES_SUFFIX[simulator]}" for name in by_module} if waves else {}
    runs, builds, failures = {}, [], []
    with Progress(desc="simulate", total=len(cases), unit="tile", enabled=progress) as bar:
        for name, group in by_module.items():
            module = folder.module(name)
            log(f"building {name} with {simulator}")
            built = build(simulator, folder.root / "rtl" / module["verilog"], folder.root / "rtl" / module["ports"],
                          out / "build", waves=waves)
            tile_runs, stats = run_tiles(built, [case.job for case in group], out / "work" / name, mode,
                                         waves_files.get(name), done=lambda _: bar.update())
            runs.update({case.ref: run for case, run in zip(group, tile_runs)})
            failures += [stats.failure] if stats.failure else []
            builds.append({"module": name, "build_seconds": round(built.seconds, 3), "build_reused": built.seconds == 0,
                           "directory": str(built.directory.relative_to(folder.root)),
                           "run_seconds": round(stats.seconds, 3), "startup_seconds": round(stats.overhead, 3)})
    return runs, builds, failures, waves_files


def tile_record(case: TileCase, run: Any, mismatches: int, errors: list[str]) -> dict:
    """A tile's entry in results.json."""
    return {"layer": case.ref.layer, "tile": case.ref.index, "module": case.module, "cfg_file": case.cfg_file,
            "vectors": len(case.expected), "corner_vectors": case.corners, "outputs": int(case.expected.size),
            "cycles_per_vector": case.timing.period, "latency": case.timing.latency,
            "measured_ends": run.ends[:case.job.burst], "adc_latency": case.job.latency,
            "conversions": run.conversions, "first_cycle": run.start,
            "back_pressure": {"idle_input_cycles": int(case.job.gaps.sum()),
                              "stalled_output_cycles": int(case.job.stalls.sum())},
            "simulated_cycles": run.cycles, "seconds": round(run.seconds, 3),
            "mismatches": mismatches, "errors": errors, "passed": not mismatches and not errors}


def simulate(root: str | Path, simulator: str = "icarus", vectors: Optional[int] = None,
             tiles: Optional[list[str]] = None, waves: bool = False, mode: str = "fast",
             model_path: Optional[str] = None, seed: int = 0, progress: bool = False, corners: bool = True,
             log: Callable[[str], None] = lambda message: None) -> dict:
    """Simulate the selected tiles of the folder ``root``; write and return ``root/sim/results.json``.

    ``vectors`` input vectors per tile (default :data:`DEFAULT_VECTORS`), then with ``corners``
    each tile's :func:`corner_vectors`; ``tiles`` as
    :func:`select_tiles`; ``waves`` writes ``root/sim/waves/<module>.fst`` (Icarus) or ``.vcd``
    (Verilator), each tile from its ``first_cycle`` in results.json; ``mode`` as
    :data:`codesign.sim.runner.MODES`; ``model_path`` overrides the model named in hw_config.json.
    Raises :class:`CodesignError` for a folder that is not a generate output, drift between its
    files, a missing simulator or a failed build. Mismatches do not raise: ``results["passed"]``.
    """
    from .sim.runner import MODES, SIMULATORS, simulator_tool

    if simulator not in SIMULATORS:
        raise CodesignError(f"--sim {simulator}: choose one of {', '.join(SIMULATORS)}")
    if mode not in MODES:
        raise CodesignError(f"--mode {mode}: choose one of {', '.join(MODES)}")
    vectors = DEFAULT_VECTORS if vectors is None else vectors
    if vectors < 1:
        raise CodesignError(f"--vectors must be at least 1, not {vectors}")
    folder = Folder.open(root)
    out = folder.root / "sim"
    results_file = out / "results.json"
    results_file.unlink(missing_ok=True)            # never leave an earlier verdict behind
    tool = simulator_tool(simulator)
    check_folder(folder)
    refs = select_tiles(folder, tiles)
    model = load_folder_model(folder, model_path)
    rng = np.random.default_rng(seed)
    inputs, source = layer_inputs(model, folder.config, vectors, rng)
    claim_tree(folder.root, "sim")
    shutil.rmtree(out / "work", ignore_errors=True)
    shutil.rmtree(out / "waves", ignore_errors=True)    # no waveform of an earlier run stays behind
    cases = [tile_case(folder, model, ref, inputs[ref.layer], rng, corners) for ref in refs]
    start = time.perf_counter()
    runs, builds, failures, waves_files = run_cases(folder, cases, simulator, mode, waves, progress, log)
    records, mismatches = [], []
    for case in cases:
        wrong, errors = compare(case, runs[case.ref])
        mismatches += wrong
        records.append(tile_record(case, runs[case.ref], len(wrong), errors))
    results = {
        "schema": SCHEMA, "simulator": {"name": simulator, "version": tool.version}, "mode": mode,
        "vectors": vectors, "corners": corners, "seed": seed, "inputs": source, "model": model.info.model_dump(),
        "builds": builds, "tiles": records, "errors": failures,
        "outputs_compared": sum(r["outputs"] for r in records),
        "simulated_cycles": sum(r["simulated_cycles"] for r in records),
        "seconds": round(time.perf_counter() - start, 3),
        "mismatch_count": len(mismatches),
        "mismatches": mismatches[:LISTED_MISMATCHES],
        "passed": not failures and all(r["passed"] for r in records),
        **({"waves": [str(path.relative_to(folder.root)) for path in waves_files.values()]} if waves else {}),
    }
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".results.json.tmp"
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(results_file)
    return results


def format_results(results: dict, limit: int = 50) -> str:
    """One line per mismatch or error (at most ``limit``), then a verdict line."""
    lines = []
    for m in results["mismatches"]:
        column = f"column {m['column']}" if m["column"] is not None else f"unused tile column {m['tile_column']}"
        lines.append(f"layer {m['layer']} tile {m['tile']} vector {m['vector']} {column}: "
                     f"expected {m['expected']}, got {m['got']}")
    for record in results["tiles"]:
        lines += [f"layer {record['layer']} tile {record['tile']}: {error}" for error in record["errors"]]
    lines += results["errors"]
    shown = lines[:limit]
    if len(lines) > limit or results["mismatch_count"] > len(results["mismatches"]):
        shown.append(f"… {results['mismatch_count']} mismatches in all; the list is in sim/results.json")
    failed = [r for r in results["tiles"] if not r["passed"]]
    sim = results["simulator"]
    counts = [r["corner_vectors"] for r in results["tiles"]]
    low, high = min(counts, default=0), max(counts, default=0)
    corners = "" if not high else f" + {low} corner" if low == high else f" + {low}–{high} corner"
    verdict = (f"{len(results['tiles'])} tiles × {results['vectors']}{corners} vectors on {sim['name']} {sim['version']} "
               f"({results['mode']} mode, inputs: {results['inputs']}): ")
    if not results["passed"]:
        verdict += f"FAILED: {len(failed)} tile(s) wrong, {results['mismatch_count']} mismatching outputs"
    else:
        verdict += (f"all {results['outputs_compared']} outputs bit-exact, cycles per vector as reported; "
                    f"{results['simulated_cycles']} cycles simulated in {results['seconds']:.1f} s")
    return "\n".join(shown + [verdict])
