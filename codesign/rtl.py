"""RTL of the tile periphery for ``codesign generate``: ``DIR/rtl/``.

One Verilog module per crossbar geometry (rows, cols, cell bits, DAC bits, weight bits, input
bits, ADCs), never one per tile: ``Bmax`` is the largest ADC resolution and ``chain`` the most
row blocks among the layers sharing the geometry. Each tile's ``(b, k)`` words stay in its
parameter file ``params/<layer>/tile_NNN.mem``, which the module's ``CFG_FILE`` parameter names.

Written into ``DIR/rtl/``:

``<module>.v``                 the :class:`codesign.hw.TilePeriphery` of one geometry (Amaranth),
                               followed by its configuration memory ``<module>_config`` ($readmemh);
                               self-contained, so every file compiles and synthesizes on its own
``<module>.json``              its ports (``Component.metadata``), parameters and payload layouts
``manifest.json``              modules, and per tile: module, ``CFG_FILE`` and cycles per vector

The output is byte-identical across runs: Amaranth's builtin Yosys, ``emit_src=False``,
fixed names, sorted JSON keys.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from . import __version__
from .config import HardwareConfig, LayerConfig
from .errors import CodesignError, one_line
from .mapping import Geometry

MANIFEST = "manifest.json"

#: Verilator warnings that Amaranth's Verilog raises by construction (``--lint-only``):
#: operand widths Yosys leaves implicit and ``case`` statements without a default.
VERILATOR_LINT_FLAGS = ("-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-CASEINCOMPLETE")


@dataclass
class ModuleGroup:
    """The layers that share one periphery module."""

    name: str
    params: Any                                    # codesign.hw.PeripheryParams
    layers: list[LayerConfig] = field(default_factory=list)


def module_name(params: PeripheryParams) -> str:
    """``codesign_tile_r128c128_c2v1_w8a8_adc1_b7x3``: the geometry, Bmax and chain length, so two
    modules with different hardware never share a name."""
    g = params.geometry
    return (f"codesign_tile_r{g.rows}c{g.cols}_c{g.cell_bits}v{g.dac_bits}"
            f"_w{g.weight_bits}a{g.input_bits}_adc{g.adcs}_b{params.bmax}x{params.chain}")


def chain_length(layer: LayerConfig) -> int:
    """Most tiles that contribute to one output of the layer (its row blocks)."""
    counts = np.zeros(layer.matrix.cols, dtype=np.int64)
    for tile in layer.tiles:
        counts[tile.col_start:tile.col_start + tile.col_count] += 1
    return int(counts.max(initial=1))


def module_groups(config: HardwareConfig) -> list[ModuleGroup]:
    """Group the layers by geometry, in order of first appearance."""
    from .hw import PeripheryParams

    found: dict[Geometry, list[LayerConfig]] = {}
    for layer in config.layers:
        found.setdefault(config.geometry(layer), []).append(layer)
    groups = []
    for geometry, layers in found.items():
        bmax = max((b for layer in layers for tile in layer.tiles for b in tile.adc_bits), default=0)
        chain = max(chain_length(layer) for layer in layers)
        try:
            params = PeripheryParams(geometry, max(bmax, 1), chain)
        except ValueError as exc:
            raise CodesignError(f"layer '{layers[0].key}': {exc} (choose --adcs {geometry.logical_cols} "
                                f"or fewer)") from None
        groups.append(ModuleGroup(module_name(params), params, layers))
    return groups


@contextmanager
def builtin_yosys() -> Iterator[None]:
    """Make Amaranth use its pinned WebAssembly Yosys, so the Verilog is the same on every machine."""
    saved = os.environ.get("AMARANTH_USE_YOSYS")
    os.environ["AMARANTH_USE_YOSYS"] = "builtin"
    try:
        yield
    finally:
        if saved is None:
            del os.environ["AMARANTH_USE_YOSYS"]
        else:
            os.environ["AMARANTH_USE_YOSYS"] = saved


def verilog_module(group: ModuleGroup) -> tuple[str, dict]:
    """Verilog text and port description (``Component.metadata``) of a group's module.

    The configuration memory's file becomes the top-level parameter ``CFG_FILE``.
    """
    from amaranth.back import verilog

    from .hw import TilePeriphery
    from .hw.config_store import config_verilog
    from .hw.tile import CFG_FILE_PLACEHOLDER

    config_module = f"{group.name}_config"
    top = TilePeriphery(group.params, config_module=config_module)
    with builtin_yosys():
        text = verilog.convert(top, name=group.name, emit_src=False, strip_internal_attrs=True)
    placeholder = f'"{CFG_FILE_PLACEHOLDER}"'
    header = f"module {group.name}("
    if text.count(placeholder) != 1 or text.count(header) != 1:
        raise RuntimeError(f"unexpected Verilog from Amaranth for {group.name}: cannot place the CFG_FILE parameter")
    text = text.replace(placeholder, "CFG_FILE")
    body = text.index(");\n", text.index(header)) + 3
    p = group.params
    parameter = ('  // Configuration words of the tile (params/<layer>/tile_NNN.mem), loaded by $readmemh.\n'
                 '  parameter CFG_FILE = "";\n')
    banner = (f"// codesign {__version__}: periphery of a {p.rows}x{p.cols} crossbar tile "
              f"(cell bits {p.geometry.cell_bits}, DAC bits {p.geometry.dac_bits}, weight bits "
              f"{p.geometry.weight_bits}, input bits {p.geometry.input_bits}, {p.adcs} ADC(s), Bmax {p.bmax}, "
              f"chain {p.chain}).\n// Ports, widths and payload layouts: {group.name}.json.\n")
    return (banner + text[:body] + parameter + text[body:] + "\n" + config_verilog(config_module),
            top.metadata.as_json())


def tile_cycles(params: Any, bits: list[int]) -> dict[str, int]:
    """Cycles per input vector of one tile: as built, without column skip (every column visited
    for at least one step), and with a uniform ADC (every column at ``Wy`` bits, no skip)."""
    steps = params.column_steps(bits)
    return {
        "cycles": params.vector_cycles(steps),
        "without_skip": params.vector_cycles([max(s, 1) for s in steps]),
        "uniform": params.vector_cycles([params.value_width] * params.cols),
    }


def write_rtl(config: HardwareConfig, out: Path, params_dir: Path,
              log: Callable[[str], None] = lambda message: None) -> dict:
    """Write ``out`` (``DIR/rtl``) for ``config``; ``params_dir`` holds the parameter files already
    written (its ``params.json`` names every tile's ``.mem`` file). Returns the summary; ``log``
    gets a line per module."""
    out.mkdir(parents=True, exist_ok=True)
    params_doc = json.loads((params_dir / "params.json").read_text())
    mem_files = {entry["key"]: [tile["mem"] for tile in entry["tiles"]] for entry in params_doc["layers"]}
    prefix = params_dir.name
    modules, layers = [], []
    groups = module_groups(config)
    for number, group in enumerate(groups, start=1):
        log(f"generating RTL module {number} of {len(groups)}: {group.name}")
        text, ports = verilog_module(group)
        _write(out / f"{group.name}.v", text)
        _write(out / f"{group.name}.json", json.dumps(ports, indent=2, sort_keys=True) + "\n")
        modules.append({"name": group.name, "verilog": f"{group.name}.v", "ports": f"{group.name}.json",
                        "bmax": group.params.bmax, "chain": group.params.chain,
                        "layers": [layer.key for layer in group.layers]})
        for layer in group.layers:
            tiles = []
            for index, (tile, mem) in enumerate(zip(layer.tiles, mem_files[layer.key])):
                tiles.append({"index": index, "cfg_file": f"{prefix}/{mem}",
                              **tile_cycles(group.params, tile.adc_bits)})
            layers.append({"name": layer.key, "module": group.name, "tiles": tiles})
    manifest = {"generator": f"codesign {__version__}", "modules": modules, "layers": layers}
    _write(out / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return rtl_summary(manifest)


class _Entry(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class _ManifestModule(_Entry):
    name: str
    verilog: str
    ports: str


class _ManifestTile(_Entry):
    cfg_file: str
    cycles: int


class _ManifestLayer(_Entry):
    name: str
    module: str
    tiles: list[_ManifestTile]


class _Manifest(_Entry):
    modules: list[_ManifestModule]
    layers: list[_ManifestLayer]


def load_manifest(root: Path) -> dict:
    """``root/rtl/manifest.json``, refused (one line) if it is not shaped as :func:`write_rtl` writes
    it or names files outside ``root`` or missing."""
    from .files import read_json, within

    path = root / "rtl" / MANIFEST
    manifest = read_json(path, "regenerate the folder")
    try:
        parsed = _Manifest.model_validate(manifest)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(map(str, err["loc"]))
        raise CodesignError(f"{path} is not a manifest codesign wrote ({where}: {err['msg']}); regenerate "
                            f"the folder") from None
    files = [(root / "rtl" / name, f"rtl/{name}") for m in parsed.modules for name in (m.verilog, m.ports)]
    files += [(root / t.cfg_file, t.cfg_file) for layer in parsed.layers for t in layer.tiles]
    for file, given in files:
        if not within(file, root):
            raise CodesignError(f"{path} names '{given}', outside {root}: regenerate the folder")
        if not file.is_file():
            raise CodesignError(f"{root} has no {given} (named in rtl/manifest.json): "
                                f"regenerate the folder")
    return manifest


def rtl_summary(manifest: dict) -> dict:
    """Per-layer cycle figures of a manifest (for ``summary.json``)."""
    rows = []
    for layer in manifest["layers"]:
        tiles = layer["tiles"]
        rows.append({
            "name": layer["name"], "module": layer["module"], "tiles": len(tiles),
            **{f"max_{key}": max(t[key] for t in tiles) for key in ("cycles", "without_skip", "uniform")},
            **{f"sum_{key}": sum(t[key] for t in tiles) for key in ("cycles", "without_skip", "uniform")},
        })
    total = {key: sum(row[key] for row in rows) for key in ("sum_cycles", "sum_without_skip", "sum_uniform")}
    return {"modules": [{k: m[k] for k in ("name", "bmax", "chain")} | {"layers": len(m["layers"])}
                        for m in manifest["modules"]],
            "layers": rows, "total": total}


def rtl_summary_text(summary: dict) -> str:
    """The RTL part of the printed summary: modules, and cycles per input vector per layer."""
    lines = [f"RTL periphery: {len(summary['modules'])} Verilog module(s) in rtl/ for "
             f"{sum(row['tiles'] for row in summary['layers'])} tiles"]
    lines += [f"  {m['name']}: Bmax {m['bmax']}, chain {m['chain']}, {m['layers']} layer(s)"
              for m in summary["modules"]]
    header = ("layer", "tiles", "cycles/vector", "without skip", "uniform ADC", "tile-cycles", "saved by skip")
    table = []
    for row in summary["layers"]:
        saved = row["sum_without_skip"] - row["sum_cycles"]
        table.append((one_line(row["name"]), str(row["tiles"]), str(row["max_cycles"]), str(row["max_without_skip"]),
                      str(row["max_uniform"]), str(row["sum_cycles"]), _share(saved, row["sum_without_skip"])))
    total = summary["total"]
    table.append(("total", str(sum(row["tiles"] for row in summary["layers"])), "", "", "",
                  str(total["sum_cycles"]), _share(total["sum_without_skip"] - total["sum_cycles"],
                                                   total["sum_without_skip"])))
    widths = [max(len(h), *(len(r[i]) for r in table)) for i, h in enumerate(header)]
    fmt = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    rule = "  ".join("-" * w for w in widths)
    lines += ["", fmt(header), rule, *map(fmt, table[:-1]), rule, fmt(table[-1]), "",
              "cycles/vector: clock cycles per input vector of the layer's slowest tile (tiles run in parallel); "
              "tile-cycles: summed over the layer's tiles; without skip: every b = 0 column still visited for one "
              "SAR step; uniform ADC: every column at full resolution"]
    return "\n".join(lines)


def _share(saved: int, base: int) -> str:
    return f"{saved} ({100 * saved / base:.1f}%)" if base else "0"


def _write(path: Path, text: str) -> None:
    path.write_text(text)
