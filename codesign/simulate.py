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

import hashlib
import json
import re
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np

from .config import HardwareConfig, check_against_model, load_config
from .errors import CodesignError
from .files import claim_tree, read_json
from .rtl import load_manifest, module_groups

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

    @cached_property
    def layer_params(self) -> dict[str, Any]:
        """Layer key → the :class:`~codesign.hw.periphery.PeripheryParams` of its module (grouped once:
        the grouping reads every tile)."""
        return {layer.key: group.params for group in module_groups(self.config) for layer in group.layers}


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
    column value and ADC code is non-decreasing in every input digit (docs/design.md §3.7, §3.8). Rows where
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


def tile_rng(seed: int, folder: Folder, ref: TileRef) -> np.random.Generator:
    """The random stream of tile ``ref`` (seeded ``[seed, layer position, tile index]``): each tile
    draws from its own, so its job is the same whichever tiles run with it and wherever it runs."""
    position = next(i for i, layer in enumerate(folder.config.layers) if layer.key == ref.layer)
    return np.random.default_rng([seed, position, ref.index])


def tile_case(folder: Folder, ref: TileRef, q: np.ndarray, x: np.ndarray, rng: np.random.Generator,
              corners: bool = True) -> TileCase:
    """The job of tile ``ref`` of the layer with integer weights ``q[K, N]`` for layer inputs
    ``x[B, K]``, followed (with ``corners``) by the corner vectors of its column block, and its
    expected results ``[B + corners, L]``."""
    from .golden import layer_outputs
    from .mapping import tile_digits
    from .rtl import tile_schedule
    from .sim.runner import TileJob

    config = folder.config
    layer = config.layer(ref.layer)
    tile = layer.tiles[ref.index]
    geometry = config.geometry(layer)
    params = folder.layer_params[layer.key]
    entry = folder.manifest_layer(layer.key)
    generated = entry["tiles"][ref.index]
    cols = slice(tile.col_start, tile.col_start + tile.col_count)
    extra = corner_vectors(q, cols, layer.input_bits) if corners else np.zeros((0, x.shape[1]), dtype=np.int64)
    x = np.concatenate([x, extra])
    B, R, L = len(x), geometry.rows, geometry.logical_cols
    before = [t for t in layer.tiles if t.col_start == tile.col_start and t.row_start < tile.row_start]

    def partial(tiles: list) -> np.ndarray:
        """The golden sums of ``tiles`` (of this column block), on the rows and columns they cover
        only: a large layer is not re-sliced for each of its tiles."""
        end = max(t.row_start + t.row_count for t in tiles) if tiles else 0
        block = layer.model_copy(update={
            "matrix": layer.matrix.model_copy(update={"rows": end, "cols": tile.col_count}),
            "tiles": [t.model_copy(update={"col_start": 0}) for t in tiles]})
        sums = np.zeros((B, L), dtype=np.int64)
        if tiles:
            sums[:, :tile.col_count] = layer_outputs(q[:end, cols], config, block, x[:, :end])
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


#: Most tiles in one simulator run (one start-up each); smaller batches balance the workers.
MAX_BATCH = 64
#: Batches per worker when the tiles allow (the last ones to finish overlap less).
BATCHES_PER_WORKER = 4
#: Fewest tiles in a batch while each worker gets that many (a simulator start-up takes seconds).
MIN_BATCH = 16


@dataclass(frozen=True)
class ModuleFiles:
    """A module's Verilog and port description (names in ``rtl/`` and texts), sent to the workers."""

    verilog: str
    ports: str
    verilog_text: str
    ports_text: str

    def digest(self) -> str:
        return hashlib.sha256(f"{self.verilog}\0{self.verilog_text}\0{self.ports}\0{self.ports_text}".encode()).hexdigest()


@dataclass(frozen=True)
class SimSetup:
    """What every batch of one ``simulate`` shares, sent to each worker once: the simulator, the
    mode, the modules, the folder's root when every worker sees it (a local engine; else None: the
    nodes build in their own temporary folder), the folder's config and manifest, the weights
    ``Q[K, N]`` and inputs ``x[B, K]`` of the layers simulated (by key), the seed of the tiles'
    random streams (:func:`tile_rng`) and whether the corner vectors follow."""

    simulator: str
    mode: str
    modules: dict[str, ModuleFiles]
    root: Optional[str]
    folder: Folder
    weights: dict[str, np.ndarray]
    inputs: dict[str, np.ndarray]
    seed: int
    corners: bool

    def case(self, ref: TileRef) -> TileCase:
        """Tile ``ref``'s job and golden results."""
        return tile_case(self.folder, ref, self.weights[ref.layer], self.inputs[ref.layer],
                         tile_rng(self.seed, self.folder, ref), self.corners)


@dataclass
class Batch:
    """Tiles of one module for one simulator run: which, their ``.mem`` texts, the work folder
    under ``sim/work/`` (a local engine) and whether to write the module's waveform."""

    module: str
    refs: list[TileRef]
    cfg_texts: list[str]
    work: str
    waves: bool


@dataclass
class BatchRun:
    """What a batch returns: each tile's entry in results.json and its mismatches, the simulator
    run's statistics, its build, and the seconds spent preparing the jobs and checking the results."""

    records: list[dict]
    mismatches: list[list[dict]]
    stats: Any
    build_seconds: float
    build_directory: str
    node: str
    check_seconds: float


def make_batches(refs: list[TileRef], modules: dict[str, str], workers: int,
                 whole_modules: bool) -> list[list[TileRef]]:
    """Tiles grouped by module (``modules``: layer key → module) and cut into batches of at most
    :data:`MAX_BATCH`: fewer so that each of ``workers`` gets about :data:`BATCHES_PER_WORKER`, but
    not below :data:`MIN_BATCH` unless the workers would then be idle; modules interleaved so that
    the workers start on different modules (their builds overlap). ``whole_modules``: one batch
    per module (waveforms: one file per module)."""
    by_module: dict[str, list[TileRef]] = {}
    for ref in refs:
        by_module.setdefault(modules[ref.layer], []).append(ref)
    share = -(-len(refs) // workers)
    size = min(MAX_BATCH, max(min(MIN_BATCH, share), -(-len(refs) // (BATCHES_PER_WORKER * workers)))) \
        if workers > 1 else MAX_BATCH
    queues = [[group[i:i + size] for i in range(0, len(group), size)] if not whole_modules else [group]
              for group in by_module.values()]
    return [queue[i] for i in range(max(map(len, queues), default=0)) for queue in queues if i < len(queue)]


@contextmanager
def _locked_build(path: Path) -> Iterator[None]:
    """One build at a time per module and node: workers of one node wait here and then reuse it."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_batch(setup: SimSetup, batch: Batch) -> BatchRun:
    """Prepare the batch's tiles, build its module on this node (once: cached by content under a
    lock), run the tiles in one simulator run and check their results. Runs on a worker; raises
    :class:`CodesignError` for a failed build."""
    import dataclasses
    import socket
    import tempfile

    from .sim.runner import WAVES_SUFFIX, build, run_tiles

    started = time.perf_counter()
    cases = [setup.case(ref) for ref in batch.refs]
    prepared = time.perf_counter() - started
    files = setup.modules[batch.module]
    if setup.root is not None:
        root = Path(setup.root)
        source, build_root = root / "rtl", root / "sim" / "build"
        workdir = root / "sim" / "work" / batch.work
    else:           # a cluster node: the sources by content, in a build folder of this node's own
        build_root = source = Path(tempfile.gettempdir()) / "codesign-sim-build" / files.digest()[:16]
        workdir = Path(tempfile.mkdtemp(prefix="codesign-sim-"))
        with _locked_build(source / f".{batch.module}.lock"):
            for name, text in ((files.verilog, files.verilog_text), (files.ports, files.ports_text)):
                if not (source / name).is_file() or (source / name).read_text() != text:
                    (source / name).write_text(text)
    with _locked_build(build_root / f".{batch.module}-{setup.simulator}.lock"):
        built = build(setup.simulator, source / files.verilog, source / files.ports, build_root, waves=batch.waves)
    shutil.rmtree(workdir, ignore_errors=True)
    (workdir / "cfg").mkdir(parents=True)
    jobs = []
    for index, (case, text) in enumerate(zip(cases, batch.cfg_texts)):
        cfg = workdir / "cfg" / f"tile{index}.mem"
        cfg.write_text(text)
        jobs.append(dataclasses.replace(case.job, cfg_file=cfg))
    waves = (Path(setup.root) / "sim" / "waves" / f"{batch.module}{WAVES_SUFFIX[setup.simulator]}"
             if batch.waves and setup.root is not None else None)
    try:
        runs, stats = run_tiles(built, jobs, workdir, setup.mode, waves)
    finally:
        if setup.root is None:
            shutil.rmtree(workdir, ignore_errors=True)
    started = time.perf_counter()
    records, mismatches = zip(*(checked(case, run) for case, run in zip(cases, runs))) if cases else ((), ())
    directory = built.directory.relative_to(setup.root) if setup.root is not None else built.directory
    return BatchRun(list(records), list(mismatches), stats, built.seconds, str(directory), socket.gethostname(),
                    prepared + time.perf_counter() - started)


def checked(case: TileCase, run: Any) -> tuple[dict, list[dict]]:
    """A tile's entry in results.json and its mismatches."""
    wrong, errors = compare(case, run)
    return tile_record(case, run, len(wrong), errors), wrong


def tile_span(refs: list[TileRef]) -> str:
    """``layer:i-j, …``: the tiles of a batch, for an error line."""
    spans: list[list] = []
    for ref in refs:
        if spans and spans[-1][0] == ref.layer and spans[-1][2] == ref.index - 1:
            spans[-1][2] = ref.index
        else:
            spans.append([ref.layer, ref.index, ref.index])
    return ", ".join(f"{layer}:{a}" if a == b else f"{layer}:{a}-{b}" for layer, a, b in spans)


def run_cases(setup: SimSetup, refs: list[TileRef], waves: bool, progress: bool, log: Callable[[str], None],
              runner: Any) -> tuple[dict[TileRef, tuple[dict, list[dict]]], list[dict], list[str], dict[str, Path]]:
    """Run the tiles in batches on ``runner`` (a :class:`codesign.engine.Engine`), each module built
    once per node, the tiles prepared and checked where they run. Returns each tile's record and
    mismatches, one record per batch, failures of whole runs (a failed batch names its tiles; the
    others are still checked), and the waveform file of each module (with ``waves``)."""
    from .sim.runner import WAVES_SUFFIX, TileRun

    folder = setup.folder
    layer_modules = {entry["name"]: entry["module"] for entry in folder.manifest["layers"]}
    names = sorted({layer_modules[ref.layer] for ref in refs})
    groups = make_batches(refs, layer_modules, runner.workers if runner.backend != "inline" else 1, waves)
    per_module: dict[str, int] = {}
    batches = []
    for group in groups:
        name = layer_modules[group[0].layer]
        per_module[name] = per_module.get(name, 0) + 1
        texts = [(folder.root / folder.manifest_layer(ref.layer)["tiles"][ref.index]["cfg_file"]).read_text()
                 for ref in group]
        batches.append(Batch(name, group, texts, name if waves else f"{name}/batch{per_module[name] - 1}", waves))
    out = folder.root / "sim"
    waves_files = {name: out / "waves" / f"{name}{WAVES_SUFFIX[setup.simulator]}" for name in names} if waves else {}
    log(f"simulating {len(refs)} tiles of {len(names)} modules with {setup.simulator} in {len(batches)} batches on "
        f"{runner.describe()}")
    results, builds, failures = {}, [], []
    for outcome in runner.map(run_batch, batches, setup, desc="simulate", unit="tile",
                              size=lambda batch: len(batch.refs), progress=progress):
        group, name = groups[outcome.index], batches[outcome.index].module
        if not outcome.ok:
            failures.append(f"module {name}, tiles {tile_span(group)}: {outcome.error}")
            lost = TileRun(errors=["not simulated: its batch failed (see the errors)"])
            results.update({ref: checked(setup.case(ref), lost) for ref in group})
            continue
        done = outcome.value
        results.update(zip(group, zip(done.records, done.mismatches)))
        failures += [f"module {name}, tiles {tile_span(group)}: {done.stats.failure}"] if done.stats.failure else []
        builds.append({"module": name, "tiles": len(group), "node": done.node,
                       "build_seconds": round(done.build_seconds, 3), "build_reused": done.build_seconds == 0,
                       "directory": done.build_directory, "run_seconds": round(done.stats.seconds, 3),
                       "startup_seconds": round(done.stats.overhead, 3),
                       "check_seconds": round(done.check_seconds, 3)})
    return results, builds, failures, waves_files


def sample_tiles(folder: Folder, refs: list[TileRef], count: int, seed: int) -> list[TileRef]:
    """``count`` of ``refs`` (all when fewer), stratified: the tile of each layer with the most
    converted columns (so every layer and every module is simulated), then the most converted tiles
    overall for a quarter of the rest, then tiles drawn at random (``seed``) from each layer in
    proportion to its tiles left. Raises :class:`CodesignError` when ``count`` cannot cover every layer."""
    if count >= len(refs):
        return refs
    converted = {ref: sum(b > 0 for b in folder.config.layer(ref.layer).tiles[ref.index].adc_bits) for ref in refs}
    layers: dict[str, list[TileRef]] = {}
    for ref in refs:
        layers.setdefault(ref.layer, []).append(ref)
    if count < len(layers):
        raise CodesignError(f"--sample {count} cannot cover the {len(layers)} layers selected: give at least "
                            f"{len(layers)}")
    densest = lambda group: sorted(group, key=lambda ref: (-converted[ref], ref.index))  # noqa: E731
    chosen = {densest(group)[0] for group in layers.values()}
    rest = count - len(chosen)
    chosen.update([ref for ref in densest(refs) if ref not in chosen][:rest // 4])
    left = {key: [ref for ref in group if ref not in chosen] for key, group in layers.items()}
    total, wanted = sum(map(len, left.values())), count - len(chosen)
    shares = {key: wanted * len(group) / total for key, group in left.items()} if total else {}
    quota = {key: int(share) for key, share in shares.items()}
    for key in sorted(shares, key=lambda k: quota[k] - shares[k])[:wanted - sum(quota.values())]:
        quota[key] += 1             # largest remainders
    rng = np.random.default_rng([seed, len(refs), count])
    for key, group in left.items():
        chosen.update(group[i] for i in rng.choice(len(group), size=quota[key], replace=False))
    return [ref for ref in refs if ref in chosen]


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
             log: Callable[[str], None] = lambda message: None, workers: Optional[int] = 1,
             address: Optional[str] = None, sample: Optional[int] = None) -> dict:
    """Simulate the selected tiles of the folder ``root``; write and return ``root/sim/results.json``.

    ``vectors`` input vectors per tile (default :data:`DEFAULT_VECTORS`), then with ``corners``
    each tile's :func:`corner_vectors`; ``tiles`` as
    :func:`select_tiles`; ``waves`` writes ``root/sim/waves/<module>.fst`` (Icarus) or ``.vcd``
    (Verilator), each tile from its ``first_cycle`` in results.json; ``mode`` as
    :data:`codesign.sim.runner.MODES`; ``model_path`` overrides the model named in hw_config.json;
    ``workers`` and ``address`` choose the engine (:func:`codesign.engine.engine`: None = every CPU,
    1 = this process; ``address`` a Ray cluster); ``sample`` simulates that many of the selected
    tiles (:func:`sample_tiles`).
    Raises :class:`CodesignError` for a folder that is not a generate output, drift between its
    files, a missing simulator or a failed build. Mismatches do not raise: ``results["passed"]``.
    """
    from .engine import engine
    from .sim.runner import MODES, SIMULATORS, check_build_tools

    if simulator not in SIMULATORS:
        raise CodesignError(f"--sim {simulator}: choose one of {', '.join(SIMULATORS)}")
    if mode not in MODES:
        raise CodesignError(f"--mode {mode}: choose one of {', '.join(MODES)}")
    vectors = DEFAULT_VECTORS if vectors is None else vectors
    if vectors < 1:
        raise CodesignError(f"--vectors must be at least 1, not {vectors}")
    if sample is not None and sample < 1:
        raise CodesignError(f"--sample must be at least 1, not {sample}")
    if waves and address is not None:
        raise CodesignError("--waves writes the waveforms on this machine: not with --ray (simulate the tiles "
                            "to look at here, e.g. --tiles LAYER:I, without --ray)")
    runner = engine(workers, address)
    folder = Folder.open(root)
    out = folder.root / "sim"
    results_file = out / "results.json"
    results_file.unlink(missing_ok=True)            # never leave an earlier verdict behind
    tool = check_build_tools(simulator)
    check_folder(folder)
    refs = select_tiles(folder, tiles)
    if sample is not None:
        refs = sample_tiles(folder, refs, sample, seed)
    model = load_folder_model(folder, model_path)
    rng = np.random.default_rng(seed)
    inputs, source = layer_inputs(model, folder.config, vectors, rng)
    claim_tree(folder.root, "sim")
    shutil.rmtree(out / "work", ignore_errors=True)
    shutil.rmtree(out / "waves", ignore_errors=True)    # no waveform of an earlier run stays behind
    rtl, keys = folder.root / "rtl", {ref.layer for ref in refs}
    used = {folder.manifest_layer(key)["module"] for key in keys}
    modules = {entry["name"]: ModuleFiles(entry["verilog"], entry["ports"], (rtl / entry["verilog"]).read_text(),
                                          (rtl / entry["ports"]).read_text())
               for entry in folder.manifest["modules"] if entry["name"] in used}
    setup = SimSetup(simulator, mode, modules, str(folder.root.absolute()) if runner.local else None, folder,
                     {key: model.layer(key).q for key in keys}, {key: inputs[key] for key in keys}, seed, corners)
    start = time.perf_counter()
    checks, builds, failures, waves_files = run_cases(setup, refs, waves, progress, log, runner)
    records = [checks[ref][0] for ref in refs]
    mismatches = [m for ref in refs for m in checks[ref][1]]
    results = {
        "schema": SCHEMA, "simulator": {"name": simulator, "version": tool.version}, "mode": mode,
        "vectors": vectors, "corners": corners, "seed": seed, "inputs": source, "model": model.info.model_dump(),
        "engine": {"backend": runner.backend, "workers": runner.workers, "address": runner.address,
                   "sample": sample, "tiles_selected": len(select_tiles(folder, tiles))},
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
