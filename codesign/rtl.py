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
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from . import __version__
from .config import HardwareConfig, LayerConfig, TileConfig
from .errors import CodesignError
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


def verilog_module(group: ModuleGroup) -> tuple[str, dict]:
    """Verilog text and port description (``Component.metadata``) of a group's module."""
    from amaranth._toolchain.yosys import find_yosys
    from amaranth.back import rtlil

    from .hw import TilePeriphery

    top = TilePeriphery(group.params)
    with builtin_yosys():
        text = rtlil.convert(top, name=group.name, emit_src=False)
        yosys = find_yosys(lambda version: version >= (0, 40))
    passes = "\n".join([f"read_rtlil <<rtlil\n{text}\nrtlil", *YOSYS_PASSES, "write_rtlil"])
    reduced = yosys.run(["-q", "-"], passes, ignore_warnings=True)
    verilog = yosys.run(["-q", "-"], f"read_rtlil <<rtlil\n{explicit_widths(reduced)}\nrtlil\n"
                        "write_verilog -noattr -noparallelcase", ignore_warnings=True)
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
# operand that is silently extended or truncated. Yosys keeps cells with operands narrower than
# their result (Amaranth trims extensions, ``wreduce`` trims unused result bits), so before the
# Verilog is written every operand is extended (zero or sign, by the cell's signedness) or cut to
# the operation's width, and a logical NOT of a vector becomes a comparison with zero.

#: Cells whose operands are extended or cut to the result width (the low result bits of these
#: operations depend only on the low operand bits).
_TO_RESULT = {"$add", "$sub", "$mul", "$and", "$or", "$xor", "$xnor", "$not", "$neg", "$pos"}
#: Comparisons: both operands extended to the wider one.
_COMPARE = {"$eq", "$ne", "$lt", "$le", "$gt", "$ge"}
#: Shifts: the shifted operand is extended to the result width (never cut).
_SHIFTS = {"$shl", "$sshl"}


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


def _spec_bits(spec: str, widths: dict[str, int]) -> list[str]:
    tokens = spec.replace("{", " { ").replace("}", " } ").split()
    bits, end = _parse(tokens, 0, widths)
    assert end == len(tokens), spec
    return bits


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
        wire, index = bit[:-1].rsplit(" [", 1)
        if runs and runs[-1][0] == wire and runs[-1][2] == int(index) + 1:
            runs[-1][2] = int(index)
        else:
            runs.append([wire, int(index), int(index)])
    parts = []
    for wire, high, low in runs:
        if wire is None:
            parts.append(f"{len(low)}'{low}")
        elif low == 0 and high == widths[wire] - 1:
            parts.append(wire)
        else:
            parts.append(f"{wire} [{high}:{low}]" if high != low else f"{wire} [{high}]")
    return parts[0] if len(parts) == 1 else "{ " + " ".join(parts) + " }"


def _resize(bits: list[str], width: int, signed: bool) -> list[str]:
    """Cut to ``width`` bits, or extend with zeros or the sign bit."""
    if len(bits) >= width:
        return bits[:width]
    return bits + [bits[-1] if signed and bits else "1'0"] * (width - len(bits))


def _cell(lines: list[str], widths: dict[str, int]) -> list[str]:
    """One ``cell … end`` block with its operands at the operation's width."""
    kind = lines[0].split()[1]
    params = {line.split()[1]: line.split(None, 2)[2] for line in lines if line.split()[0] == "parameter"}
    ports = {line.split()[1]: line.split(None, 2)[2] for line in lines if line.split()[0] == "connect"}
    if kind == "$logic_not" and int(params["\\A_WIDTH"]) > 1:
        kind, width = "$eq", params["\\A_WIDTH"]
        params.update({"\\B_SIGNED": "0", "\\B_WIDTH": width})
        ports["\\B"] = f"{width}'" + "0" * int(width)
    if kind in _TO_RESULT or kind in _COMPARE or kind in _SHIFTS:
        operands = ["\\A"] if kind in _SHIFTS else [name for name in ("\\A", "\\B") if name in ports]
        width = (max(int(params[f"{name}_WIDTH"]) for name in operands) if kind in _COMPARE
                 else int(params["\\Y_WIDTH"]))
        for name in operands:
            signed = params.get(f"{name}_SIGNED") == "1"
            ports[name] = _spec(_resize(_spec_bits(ports[name], widths), width, signed), widths)
            params[f"{name}_WIDTH"] = str(width)
    indent = _indent(lines[1])
    return ([f"{_indent(lines[0])}cell {kind} {lines[0].split()[2]}"]
            + [f"{indent}parameter {name} {value}" for name, value in params.items()]
            + [f"{indent}connect {name} {value}" for name, value in ports.items()] + [lines[-1]])


def explicit_widths(rtlil_text: str) -> str:
    """``rtlil_text`` (one flattened module) with every operand as wide as its operation, with the
    unused top bits of internal wires (left behind by ``wreduce``) removed, and with every public
    name a plain Verilog identifier (Amaranth names some wires ``port$41$0``)."""
    lines = _plain_names(rtlil_text).splitlines()
    widths: dict[str, int] = {}
    ports: set[str] = set()
    for line in lines:
        words = line.split()
        if words[:1] == ["wire"]:
            widths[words[-1]] = int(words[words.index("width") + 1]) if "width" in words else 1
            if "input" in words or "output" in words:
                ports.add(words[-1])
    items: list = []                                        # a line, or a cell block (list of lines)
    block: list[str] = []
    for line in lines:
        if block:
            block.append(line)
            if line.split() == ["end"]:
                items.append(_cell(block, widths))
                block = []
        elif line.split()[:1] == ["cell"]:
            block = [line]
        else:
            items.append(line)

    def specs(item: object) -> list[str]:
        if isinstance(item, list):
            return [line.split(None, 2)[2] for line in item if line.split()[0] == "connect"]
        words = item.split(None, 2) if item.strip() else []
        if words[:1] == ["connect"]:
            left, right = _split_connect(words[1] + " " + words[2])
            return [] if set(_spec_bits(right, widths)) == {"1'x"} else [left, right]
        return []

    used: dict[str, int] = {}
    for item in items:
        for spec in specs(item):
            for bit in _spec_bits(spec, widths):
                if not bit.startswith("1'"):
                    wire, index = bit[:-1].rsplit(" [", 1)
                    used[wire] = max(used.get(wire, 0), int(index) + 1)
    shrunk = {wire: max(1, used.get(wire, 1)) for wire in widths if wire not in ports}
    shrunk = {wire: width for wire, width in shrunk.items() if width < widths[wire]}

    def wanted(bit: str) -> bool:
        """A bit that stays (a constant, or below its wire's new width)."""
        if bit.startswith("1'"):
            return True
        wire, index = bit[:-1].rsplit(" [", 1)
        return int(index) < shrunk.get(wire, widths[wire])

    new_widths = {**widths, **shrunk}
    out: list[str] = []
    for item in items:
        if isinstance(item, list):
            for line in item:
                words = line.split(None, 2)
                if words[0] == "connect":
                    line = f"{_indent(line)}connect {words[1]} {_spec(_spec_bits(words[2], widths), new_widths)}"
                out.append(line)
            continue
        words = item.split()
        if words[:1] == ["wire"] and words[-1] in shrunk:
            out.append(item.replace(f"width {widths[words[-1]]} ", f"width {shrunk[words[-1]]} ", 1))
        elif words[:1] == ["connect"]:
            left, right = (_spec_bits(spec, widths) for spec in _split_connect(item.split(None, 1)[1]))
            pairs = [(a, b) for a, b in zip(left, right) if wanted(a)]
            if pairs:
                out.append(f"{_indent(item)}connect {_spec([a for a, _ in pairs], new_widths)} "
                           f"{_spec([b for _, b in pairs], new_widths)}")
        else:
            out.append(item)
    return "\n".join(out) + "\n"


def _plain_names(rtlil_text: str) -> str:
    """Public names (``\\name``) with characters other than letters, digits and ``_`` renamed."""
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


def _split_connect(text: str) -> tuple[str, str]:
    """The two signal specs of ``connect <left> <right>``."""
    tokens = text.replace("{", " { ").replace("}", " } ").split()
    _, end = _parse(tokens, 0, _AnyWidth())
    return " ".join(tokens[:end]), " ".join(tokens[end:])


class _AnyWidth(dict):
    """Wire widths that do not matter (only the extent of a spec is wanted)."""

    def __missing__(self, key: str) -> int:
        return 1


def tile_cycles(params: Any, tile: TileConfig) -> dict[str, int]:
    """Cycle figures of one tile (:class:`~codesign.hw.periphery.Timing`): per vector back to back
    (``cycles``) and from an idle tile (``latency``), plus two references on the same module: without
    column skip (every ``b = 0`` column converted at 1 bit) and with a uniform ADC (every column of
    the tile at ``Wy`` bits, none skipped)."""
    schedule = tile_schedule(params, tile)
    dense = params.schedule([max(1, b) for b in tile.adc_bits], tile.adc_shift)
    return {"rows": len(schedule.rows), "conversions": schedule.conversions, "cycles": schedule.timing.period,
            "latency": schedule.timing.latency, "without_skip": dense.timing.period,
            "uniform": _uniform_cycles(params, len(tile.adc_bits))}


@lru_cache(maxsize=256)
def _uniform_cycles(params: Any, columns: int) -> int:
    from dataclasses import replace

    full = replace(params, bmax=params.value_width)
    return full.schedule([full.bmax] * columns, [0] * columns).timing.period


def write_rtl(config: HardwareConfig, out: Path, params_dir: Path) -> dict:
    """Write ``out`` (``DIR/rtl``) for ``config``; ``params_dir`` holds the parameter files already
    written (its ``params.json`` names every tile's ``.mem`` file). Returns the summary."""
    out.mkdir(parents=True, exist_ok=True)
    params_doc = json.loads((params_dir / "params.json").read_text())
    mem_files = {entry["key"]: [tile["mem"] for tile in entry["tiles"]] for entry in params_doc["layers"]}
    prefix = params_dir.name
    modules, layers = [], []
    for group in module_groups(config):
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
        table.append((row["name"], str(row["tiles"]), str(row["max_cycles"]), str(row["max_without_skip"]),
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
