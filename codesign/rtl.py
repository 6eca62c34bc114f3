"""RTL of the tile periphery for ``codesign generate``: ``DIR/rtl/`` (docs/periphery.md).

One Verilog module per crossbar geometry (rows, cols, cell bits, DAC bits, weight bits, input
bits, ADCs) and periphery (ADC interface, conversion cycles, stream width), never one per tile:
``Bmax`` is the largest ADC resolution and ``chain`` the most row blocks among the layers sharing
the geometry. Each tile's lane schedule stays in its parameter file ``params/<layer>/tile_NNN.mem``,
which firmware (or the simulation harness) writes into the module's configuration memory through
its APB port.

Written into ``DIR/rtl/``:

``<module>.v``                 the :class:`codesign.hw.TilePeriphery` of one group (Amaranth, flattened,
                               plain identifiers, lint-clean under ``verilator -Wall``)
``<module>.json``              its ports (``Component.metadata``), parameters, memory slot and registers
``manifest.json``              modules, and per tile: module, ``cfg_file``, rows, conversions, cycles

The output is byte-identical across runs: Amaranth's builtin Yosys, ``emit_src=False``,
fixed names, sorted JSON keys.
"""

from __future__ import annotations

import json
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from . import __version__
from .config import HardwareConfig, LayerConfig, TileConfig
from .errors import CodesignError, one_line
from .mapping import Geometry

MANIFEST = "manifest.json"

#: Verilator options of the lint check every generated module passes with no warning.
VERILATOR_LINT_FLAGS = ("--lint-only", "-Wall")


@dataclass
class ModuleGroup:
    """The layers that share one periphery module."""

    name: str
    params: Any                                    # codesign.hw.periphery.PeripheryParams
    layers: list[LayerConfig] = field(default_factory=list)


def module_name(params: Any) -> str:
    """``codesign_tile_r128c128_c2v1_w8a8_adc1m1_b7x3_d128``: the geometry, ADC lanes, interface
    (``m<P>``: macro with ``P`` cycles per conversion, ``s``: SAR), Bmax, chain and stream width,
    so two modules with different hardware never share a name."""
    g = params.geometry
    interface = f"m{params.conversion_cycles}" if params.macro else "s"
    return (f"codesign_tile_r{g.rows}c{g.cols}_c{g.cell_bits}v{g.dac_bits}_w{g.weight_bits}a{g.input_bits}"
            f"_adc{g.adcs}{interface}_b{params.bmax}x{params.chain}_d{params.stream_width}")


def chain_length(layer: LayerConfig) -> int:
    """Most tiles that contribute to one output of the layer (its row blocks)."""
    counts = np.zeros(layer.matrix.cols, dtype=np.int64)
    for tile in layer.tiles:
        counts[tile.col_start:tile.col_start + tile.col_count] += 1
    return int(counts.max(initial=1))


def module_groups(config: HardwareConfig) -> list[ModuleGroup]:
    """Group the layers by geometry, in order of first appearance."""
    from .hw.periphery import PeripheryParams

    periphery = config.periphery
    found: dict[Geometry, list[LayerConfig]] = {}
    for layer in config.layers:
        found.setdefault(config.geometry(layer), []).append(layer)
    groups = []
    for geometry, layers in found.items():
        bmax = max((b for layer in layers for tile in layer.tiles for b in tile.adc_bits), default=0)
        chain = max(chain_length(layer) for layer in layers)
        try:
            params = PeripheryParams(geometry, max(bmax, 1), chain, periphery.adc_interface,
                                     periphery.conversion_cycles, periphery.stream_bits)
        except ValueError as exc:
            raise CodesignError(f"layer '{layers[0].key}': {exc} (raise periphery.stream_bits, at most 128, "
                                f"or use fewer row blocks)") from None
        groups.append(ModuleGroup(module_name(params), params, layers))
    return groups


def tile_schedule(params: Any, tile: TileConfig) -> Any:
    """The lane schedule of ``tile`` on its module (:meth:`~codesign.hw.periphery.PeripheryParams.schedule`)."""
    return params.schedule(tile.adc_bits, tile.adc_shift)


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


@contextmanager
def full_width_operands() -> Iterator[None]:
    """Keep every operator's operands as wide as Amaranth made them.

    Amaranth's RTLIL writer trims zero and sign extension off operands (``a + b`` of a 3-bit and a
    5-bit signal becomes a 6-bit ``$add`` of 3- and 5-bit inputs), which Verilator reports as
    WIDTHEXPAND. With the extension kept, every operand has the operator's width.
    """
    from amaranth.back import rtlil

    saved = rtlil.ModuleEmitter.shorten_operand
    rtlil.ModuleEmitter.shorten_operand = lambda self, value, *, signed: value
    try:
        yield
    finally:
        rtlil.ModuleEmitter.shorten_operand = saved


#: Yosys passes between Amaranth's RTLIL and the Verilog: processes become multiplexers, the
#: hierarchy is flattened (names joined by '_': no escaped identifiers with dots), unused wires and
#: cells go, every operator is as narrow as the bits used of its result (``wreduce``), and
#: flip-flops lose their initial values (a datapath register has no reset and no power-on value;
#: control registers are reset through ``rst``).
YOSYS_PASSES = ("proc", "flatten -separator _", "opt_clean -purge", "wreduce", "opt_clean -purge",
                "attrmap -remove init")


def component_verilog(component: Any, name: str) -> str:
    """Verilog of one Amaranth component as module ``name``, by the passes of the generated RTL
    (:data:`YOSYS_PASSES`, :func:`explicit_widths`); ``codesign.formal`` elaborates sub-components
    (the SAR controller) with it."""
    from amaranth._toolchain.yosys import find_yosys
    from amaranth.back import rtlil

    with builtin_yosys():
        text = rtlil.convert(component, name=name, emit_src=False)
        yosys = find_yosys(lambda version: version >= (0, 40))
    passes = "\n".join([f"read_rtlil <<rtlil\n{text}\nrtlil", *YOSYS_PASSES, "write_rtlil"])
    reduced = yosys.run(["-q", "-"], passes, ignore_warnings=True)
    return yosys.run(["-q", "-"], f"read_rtlil <<rtlil\n{explicit_widths(reduced)}\nrtlil\n"
                     "write_verilog -noattr -noparallelcase", ignore_warnings=True)


def verilog_module(group: ModuleGroup) -> tuple[str, dict]:
    """Verilog text and port description (``Component.metadata``) of a group's module."""
    from .hw import TilePeriphery

    top = TilePeriphery(group.params)
    verilog = component_verilog(top, group.name)
    p = group.params
    banner = (f"// codesign {__version__}: periphery of a {p.rows}x{p.cols} crossbar tile "
              f"(cell bits {p.geometry.cell_bits}, DAC bits {p.geometry.dac_bits}, weight bits "
              f"{p.geometry.weight_bits}, input bits {p.geometry.input_bits}, {p.adcs} ADC lane(s), "
              f"{p.interface} ADC interface, Bmax {p.bmax}, chain {p.chain}).\n"
              f"// Ports, widths and stream formats: {group.name}.json; docs/periphery.md.\n")
    return banner + verilog[verilog.index("module "):], top.metadata.as_json()


# --- explicit operand widths ------------------------------------------------------------------------
#
# Verilog sizes an expression by its widest operand and its target; Verilator -Wall reports every
# operand that is silently extended or truncated and every bit that is computed but never read.
# Yosys keeps cells with operands narrower than their result (Amaranth trims extensions, ``wreduce``
# trims results) and wires wider than what is read, so before the Verilog is written:
#
# 1. every operand is extended (zero or sign, by the cell's signedness) or cut to the width of its
#    operation, and a logical NOT of a vector becomes a comparison with zero;
# 2. a cell whose top result bits nobody reads is narrowed (with its operands), until nothing changes;
# 3. wires lose the top bits nobody reads, and connections of unread bits go.

#: Cells whose low result bits depend only on the low operand bits: operands take the result width.
_TO_RESULT = {"$add", "$sub", "$mul", "$and", "$or", "$xor", "$xnor", "$not", "$neg", "$pos"}
#: Comparisons: both operands extended to the wider one.
_COMPARE = {"$eq", "$ne", "$lt", "$le", "$gt", "$ge"}
#: Left shifts: the shifted operand takes the result width (the shift amount keeps its own).
_SHIFTS = {"$shl", "$sshl"}
#: Cells narrowed when their top result bits are unread: (width parameters, data ports).
_NARROWABLE = {**{kind: (("A_WIDTH", "B_WIDTH", "Y_WIDTH"), ("A", "B", "Y")) for kind in _TO_RESULT},
               **{kind: (("A_WIDTH", "Y_WIDTH"), ("A", "Y")) for kind in _SHIFTS},
               "$mux": (("WIDTH",), ("A", "B", "Y")), "$dff": (("WIDTH",), ("D", "Q"))}
#: Output ports of the cells the passes leave.
_OUTPUTS = {"Y", "Q", "RD_DATA"}


def _parse(tokens: list[str], at: int, widths: dict[str, int]) -> tuple[list[str], int]:
    """The signal spec starting at ``tokens[at]`` as single-bit specs, least significant first, and
    the index after it. A concatenation ``{ a b }`` lists its most significant part first."""
    token = tokens[at]
    if token == "{":
        parts, at = [], at + 1
        while tokens[at] != "}":
            part, at = _parse(tokens, at, widths)
            parts.append(part)
        return [bit for part in reversed(parts) for bit in part], at + 1
    if token[0].isdigit():                                  # a constant N'bits, most significant first
        width, digits = token.split("'", 1)
        return [f"1'{digit}" for digit in reversed(digits.rjust(int(width), "0"))], at + 1
    if at + 1 < len(tokens) and tokens[at + 1].startswith("["):
        high, _, low = tokens[at + 1].strip("[]").partition(":")
        return [f"{token} [{i}]" for i in range(int(low or high), int(high) + 1)], at + 2
    return [f"{token} [{i}]" for i in range(widths[token])], at + 1


def _tokens(spec: str) -> list[str]:
    return spec.replace("{", " { ").replace("}", " } ").split()


def _spec(bits: list[str], widths: dict[str, int]) -> str:
    """Single-bit specs (least significant first) as one compact signal spec."""
    runs: list[list] = []                                   # [wire or None, high, low or digits]
    for bit in reversed(bits):
        if bit.startswith("1'"):
            if runs and runs[-1][0] is None:
                runs[-1][2] += bit[2:]
            else:
                runs.append([None, 0, bit[2:]])
            continue
        wire, index = _wire_bit(bit)
        if runs and runs[-1][0] == wire and runs[-1][2] == index + 1:
            runs[-1][2] = index
        else:
            runs.append([wire, index, index])
    parts = []
    for wire, high, low in runs:
        if wire is None:
            parts.append(f"{len(low)}'{low}")
        elif low == 0 and high == widths[wire] - 1:
            parts.append(wire)
        else:
            parts.append(f"{wire} [{high}:{low}]" if high != low else f"{wire} [{high}]")
    return parts[0] if len(parts) == 1 else "{ " + " ".join(parts) + " }"


def _wire_bit(bit: str) -> tuple[str, int]:
    wire, index = bit[:-1].rsplit(" [", 1)
    return wire, int(index)


def _resize(bits: list[str], width: int, signed: bool) -> list[str]:
    """Cut to ``width`` bits, or extend with zeros or the sign bit."""
    if len(bits) >= width:
        return bits[:width]
    return bits + [bits[-1] if signed and bits else "1'0"] * (width - len(bits))


@dataclass
class _Cell:
    kind: str
    name: str
    params: dict[str, str]                 # name (without the backslash) → raw value
    ports: dict[str, list[str]]            # name (without the backslash) → bits, least significant first
    indent: tuple[str, str]

    def operand_widths(self) -> None:
        """Step 1 for this cell."""
        if self.kind == "$logic_not" and len(self.ports["A"]) > 1:
            self.kind = "$eq"
            self.params.update({"B_SIGNED": "0", "B_WIDTH": str(len(self.ports["A"]))})
            self.ports["B"] = ["1'0"] * len(self.ports["A"])
        if self.kind in _TO_RESULT or self.kind in _SHIFTS:
            self.resize(int(self.params["Y_WIDTH"]))
        elif self.kind in _COMPARE:
            width = max(len(self.ports["A"]), len(self.ports["B"]))
            for name in ("A", "B"):
                self.ports[name] = _resize(self.ports[name], width, self.params[f"{name}_SIGNED"] == "1")
                self.params[f"{name}_WIDTH"] = str(width)

    def resize(self, width: int) -> None:
        """The result and the data operands of a narrowable cell at ``width``."""
        parameters, ports = _NARROWABLE[self.kind]
        for name in ports:
            if name in self.ports:
                self.ports[name] = _resize(self.ports[name], width, self.params.get(f"{name}_SIGNED") == "1")
        for name in parameters:
            if name == "WIDTH" or name[0] in self.ports:
                self.params[name] = str(width)

    def lines(self, widths: dict[str, int]) -> list[str]:
        head, body = self.indent
        return ([f"{head}cell {self.kind} {self.name}"]
                + [f"{body}parameter \\{name} {value}" for name, value in self.params.items()]
                + [f"{body}connect \\{name} {_spec(bits, widths)}" for name, bits in self.ports.items()]
                + [f"{head}end"])


def explicit_widths(rtlil_text: str) -> str:
    """``rtlil_text`` (one flattened module) with explicit operand widths and no unread bits (the
    section comment above), and every public name a plain Verilog identifier (Amaranth names some
    wires ``port$41$0``)."""
    lines = _plain_names(rtlil_text).splitlines()
    widths: dict[str, int] = {}
    outputs: set[str] = set()
    for line in lines:
        words = line.split()
        if words[:1] == ["wire"]:
            widths[words[-1]] = int(words[words.index("width") + 1]) if "width" in words else 1
            if "output" in words or "input" in words:
                outputs.add(words[-1])      # ports keep their width (inputs too)
    items: list = []                        # a line, a _Cell, or a connect as [left bits, right bits]
    block: list[str] = []
    for line in lines:
        words = line.split()
        if block:
            block.append(line)
            if words == ["end"]:
                head = block[0].split()
                cell = _Cell(head[1], head[2], {}, {}, (_indent(block[0]), _indent(block[1]) if len(block) > 2 else ""))
                for inner in block[1:-1]:
                    kind, name, value = inner.split(None, 2)
                    if kind == "parameter":
                        cell.params[name[1:]] = value
                    else:
                        cell.ports[name[1:]] = _parse(_tokens(value), 0, widths)[0]
                cell.operand_widths()
                items.append(cell)
                block = []
        elif words[:1] == ["cell"]:
            block = [line]
        elif words[:1] == ["connect"]:
            tokens = _tokens(line.split(None, 1)[1])
            left, end = _parse(tokens, 0, widths)
            items.append([left, _parse(tokens, end, widths)[0], _indent(line)])
        else:
            items.append(line)
    cells = [item for item in items if isinstance(item, _Cell)]
    connects = [item for item in items if isinstance(item, list)]

    def read_bits() -> set[str]:
        read = {f"{port} [{i}]" for port in outputs for i in range(widths[port])}
        for cell in cells:
            read |= {bit for name, bits in cell.ports.items() if name not in _OUTPUTS for bit in bits}
        for left, right, _ in connects:
            read |= set(right)
        return read

    changed = True
    while changed:                                          # step 2
        changed, read = False, read_bits()
        for cell in cells:
            if cell.kind not in _NARROWABLE:
                continue
            result = cell.ports["Y" if "Y" in cell.ports else "Q"]
            needed = max((i + 1 for i, bit in enumerate(result) if bit in read), default=1)
            if needed < len(result):
                cell.resize(needed)
                changed = True
    read = read_bits()                                      # step 3
    for connect in connects:
        keep = [i for i, bit in enumerate(connect[0]) if bit in read]
        connect[0], connect[1] = [connect[0][i] for i in keep], [connect[1][i] for i in keep]
    used: dict[str, int] = {}
    for bits in [bits for cell in cells for bits in cell.ports.values()] + [c[0] + c[1] for c in connects]:
        for bit in bits:
            if not bit.startswith("1'"):
                wire, index = _wire_bit(bit)
                used[wire] = max(used.get(wire, 0), index + 1)
    shrunk = {wire: max(1, used.get(wire, 1)) for wire in widths
              if wire not in outputs and max(1, used.get(wire, 1)) < widths[wire]}
    final = {**widths, **shrunk}
    out: list[str] = []
    for item in items:
        if isinstance(item, _Cell):
            out += item.lines(final)
        elif isinstance(item, list):
            if item[0]:
                out.append(f"{item[2]}connect {_spec(item[0], final)} {_spec(item[1], final)}")
        elif item.split()[:1] == ["wire"] and item.split()[-1] in shrunk:
            name = item.split()[-1]
            out.append(item.replace(f"width {widths[name]} ", f"width {shrunk[name]} ", 1))
        else:
            out.append(item)
    return "\n".join(out) + "\n"


def _plain_names(rtlil_text: str) -> str:
    """Public names (``\name``) with characters other than letters, digits and ``_`` renamed."""
    names = set(re.findall(r"(?<![^\s{])\\\S+", rtlil_text))
    taken = set(names)
    renamed = {}
    for name in sorted(names):
        if re.fullmatch(r"\\[A-Za-z_][A-Za-z0-9_]*", name):
            continue
        plain = "\\" + re.sub(r"[^A-Za-z0-9_]", "_", name[1:]).lstrip("_0123456789")
        while plain in taken:
            plain += "_"
        taken.add(plain)
        renamed[name] = plain
    if not renamed:
        return rtlil_text
    return "\n".join(" ".join(renamed.get(word, word) for word in line.split(" ")) for line in rtlil_text.splitlines())


def _indent(line: str) -> str:
    return line[:len(line) - len(line.lstrip())]


def tile_cycles(params: Any, tile: TileConfig) -> dict[str, int]:
    """Cycle figures of one tile (:class:`~codesign.hw.periphery.Timing`): per vector back to back
    (``cycles``) and from an idle tile (``latency``), plus two references on the same module: without
    column skip (every ``b = 0`` column converted at 1 bit) and with a uniform ADC (every column of
    the tile at ``Wy`` bits, none skipped)."""
    from dataclasses import replace

    from .hw.periphery import tile_timing

    converted = sum(1 for b in tile.adc_bits if b)
    timing = tile_timing(params, tile.adc_bits)
    full = replace(params, bmax=max(params.bmax, params.value_width))
    return {"rows": max(1, -(-converted // params.adcs)), "conversions": converted, "cycles": timing.period,
            "latency": timing.latency, "without_skip": tile_timing(params, [max(1, b) for b in tile.adc_bits]).period,
            "uniform": tile_timing(full, [full.value_width] * len(tile.adc_bits)).period}


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
        p = group.params
        modules.append({"name": group.name, "verilog": f"{group.name}.v", "ports": f"{group.name}.json",
                        "interface": p.interface, "conversion_cycles": p.conversion_cycles,
                        "stream_bits": p.stream_width, "bmax": p.bmax, "chain": p.chain,
                        "layers": [layer.key for layer in group.layers]})
        for layer in group.layers:
            tiles = []
            for index, (tile, mem) in enumerate(zip(layer.tiles, mem_files[layer.key])):
                tiles.append({"index": index, "cfg_file": f"{prefix}/{mem}",
                              **tile_cycles(p, tile)})
            layers.append({"name": layer.key, "module": group.name, "tiles": tiles})
    manifest = {"generator": f"codesign {__version__}", "clock_hz": config.periphery.clock_hz,
                "modules": modules, "layers": layers}
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
    return {"modules": [{k: m[k] for k in ("name", "interface", "conversion_cycles", "bmax", "chain")}
                        | {"layers": len(m["layers"])} for m in manifest["modules"]],
            "layers": rows, "total": total}


def rtl_summary_text(summary: dict) -> str:
    """The RTL part of the printed summary: modules, and cycles per input vector per layer."""
    lines = [f"RTL periphery: {len(summary['modules'])} Verilog module(s) in rtl/ for "
             f"{sum(row['tiles'] for row in summary['layers'])} tiles"]
    lines += [f"  {m['name']}: {m['interface']} ADCs"
              + (f" ({m['conversion_cycles']} cycle(s) per conversion)" if m["interface"] == "macro" else "")
              + f", Bmax {m['bmax']}, chain {m['chain']}, {m['layers']} layer(s)" for m in summary["modules"]]
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
              "cycles/vector: clock cycles per input vector, back to back, of the layer's slowest tile (tiles run "
              "in parallel); tile-cycles: summed over the layer's tiles; without skip: every b = 0 column converted "
              "too (at 1 bit); uniform ADC: every column at full resolution (docs/periphery.md, 'Timing')"]
    return "\n".join(lines)


def _share(saved: int, base: int) -> str:
    return f"{saved} ({100 * saved / base:.1f}%)" if base else "0"


def _write(path: Path, text: str) -> None:
    path.write_text(text)
