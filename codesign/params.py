"""RTL parameter files rendered from ``templates/`` (jinja2, StrictUndefined).

Written into ``DIR/params/``:

``<layer>.vh``                Verilog header of localparams (geometry, widths, memory and stream layout) per layer
``<layer>/tile_NNN.mem``      ``$readmemh`` file per tile: its configuration-memory rows, one hex word each
                              (the lane schedule of docs/periphery.md: ``A`` slots of ``(b, k, p)``)
``codesign_pkg.sv``           one SystemVerilog package with every layer's parameters and slot type
``codesign_params.h``         one C header with the parameters and every tile's slots, for firmware
``params.json``               the same in JSON, with the file of every tile
"""

from __future__ import annotations

import hashlib
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from . import __version__
from .config import HardwareConfig, LayerConfig
from .mapping import Geometry, ceil_div


def environment() -> jinja2.Environment:
    """The templates of ``templates/`` (StrictUndefined; HTML templates autoescaped, the others not),
    with the filters that make names from a model file safe in them: ``comment`` (Verilog,
    SystemVerilog, ``$readmemh`` and C comments) and ``md`` (a Markdown table cell or line)."""
    root = Path(str(resources.files("codesign.templates")))
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(root), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                             autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",)))
    env.filters["comment"] = comment_text
    env.filters["md"] = markdown_text
    return env


#: Characters of a name that are written as ``\uXXXX`` in a comment: those that could end a
#: comment (``*/``), start one (``/*``), quote, or mean something to a preprocessor (`` ` ``).
_COMMENT_ESCAPED = {c: f"\\u{ord(c):04x}" for c in "*'`\x7f"}


def comment_text(text: str) -> str:
    """``text`` for the inside of a comment in every language codesign writes (``//`` and ``/* */``
    in Verilog, SystemVerilog and C, and ``$readmemh`` files): printable ASCII only, everything
    else JSON-escaped (``\\n``, ``\\u2028``, ``\\"``, ``\\\\``), so a name cannot end the comment,
    break its line or splice the next one."""
    return "".join(_COMMENT_ESCAPED.get(c, c) for c in json.dumps(text, ensure_ascii=True)[1:-1])


def markdown_text(value: Any) -> str:
    """``value`` as literal text in a Markdown table cell or line: one line; the characters that
    could make emphasis, code, a link, HTML or a new table cell backslash-escaped."""
    text = "".join(c if c.isprintable() else json.dumps(c)[1:-1] for c in str(value))
    return re.sub(r"([\\`*<>|]|\](?=[(\[]))", r"\\\1", text)


#: Longest identifier written; longer names keep a prefix and a hash of the whole key.
IDENTIFIER_MAX = 48


def identifier(key: str) -> str:
    """A C/Verilog identifier for a layer key: 'features.3#1' → 'FEATURES_3_G1'. Only letters,
    digits and ``_``, never starting with a digit or ``_``, at most :data:`IDENTIFIER_MAX` long
    (a long one ends in 8 hex digits of the key's sha256). Different keys may give the same
    identifier: :func:`identifiers` disambiguates them."""
    name = re.sub(r"[^0-9A-Za-z]+", "_", key.replace("#", "_g")).strip("_").upper() or "LAYER"
    name = name if not name[0].isdigit() else "L_" + name
    if len(name) > IDENTIFIER_MAX:
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:8].upper()
        name = f"{name[:IDENTIFIER_MAX - 9].rstrip('_')}_{digest}"
    return name


def identifiers(keys: list[str]) -> dict[str, str]:
    """The identifier of every layer key, distinct: a key whose :func:`identifier` is taken by an
    earlier key (in config order) gets ``_2``, ``_3``, … appended. Recorded in params.json."""
    taken: set[str] = set()
    found = {}
    for key in keys:
        base = ident = identifier(key)
        number = 1
        while ident in taken:
            number += 1
            ident = f"{base}_{number}"
        taken.add(ident)
        found[key] = ident
    return found


def file_stem(key: str) -> str:
    """A file name for a layer key: 'features.3#1' → 'features_3_g1'."""
    return identifier(key).lower()


def tile_name(index: int, count: int) -> str:
    return f"tile_{index:0{max(3, len(str(count - 1)))}d}"


def layer_values(layer: LayerConfig, geometry: Geometry, periphery: Any) -> dict[str, Any]:
    """The parameters of a layer's files; ``periphery`` is its module's
    :class:`~codesign.hw.periphery.PeripheryParams`."""
    K, N = layer.matrix.rows, layer.matrix.cols
    peak_input = (1 << layer.input_bits) - 1
    peak_weight = (1 << (layer.weight_bits - 1)) - 1
    p = periphery
    return {
        "matrix_rows": K, "matrix_cols": N, "rows": geometry.rows, "cols": geometry.cols,
        "cell_bits": geometry.cell_bits, "dac_bits": geometry.dac_bits,
        "weight_bits": geometry.weight_bits, "input_bits": geometry.input_bits,
        "slices": geometry.slices, "logical_cols": geometry.logical_cols,
        "used_cols": geometry.logical_cols * geometry.phys_per_logical,
        "input_cycles": geometry.input_cycles, "adcs": geometry.adcs, "uniform_bits": geometry.uniform_bits,
        "column_value_width": max(1, (geometry.rows * geometry.input_digit_max * geometry.digit_max).bit_length()),
        "output_width": (K * peak_input * peak_weight).bit_length() + 1,
        "adc_macro": int(p.macro), "conversion_cycles": p.conversion_cycles, "adc_bits_module": p.bmax,
        "result_width": p.out_width, "stream_bits": p.stream_width, "x_beats": p.x_beats,
        "results_per_beat": p.beat_results, "y_beats": p.y_beats,
        "memory_depth": p.depth, "slot_width": p.slot_width, "row_width": p.row_width,
        **{f"slot_{name}_{part}": value for name, (lsb, width) in p.slot_fields.items()
           for part, value in (("lsb", lsb), ("width", width))},
        "apb_addr_width": p.apb_addr_width, "apb_slot_bits": p.slot_index_width, "apb_row_bits": p.row_index_width,
    }


_PACKAGE_PARAMS = ("matrix_rows", "matrix_cols", "rows", "cols", "cell_bits", "dac_bits", "weight_bits",
                   "input_bits", "slices", "logical_cols", "used_cols", "input_cycles", "adcs",
                   "uniform_bits", "column_value_width", "output_width", "adc_macro", "conversion_cycles",
                   "adc_bits_module", "result_width", "stream_bits", "x_beats", "results_per_beat", "y_beats",
                   "memory_depth", "slot_width", "row_width",
                   *(f"slot_{name}_{part}" for name in ("bits", "shift", "polarity", "slice", "logical")
                     for part in ("lsb", "width")),
                   "apb_addr_width", "apb_slot_bits", "apb_row_bits")
_PACKAGE_NAMES = {"rows": "XBAR_ROWS", "cols": "XBAR_COLS", "uniform_bits": "ADC_BITS_MAX", "adc_bits_module": "BMAX"}


def write_params(config: HardwareConfig, out: Path) -> list[Path]:
    """Render every parameter file into ``out`` (created); returns the files written."""
    from .rtl import module_groups, tile_schedule

    env = environment()
    templates = {name: env.get_template(name) for name in
                 ("layer.vh.j2", "tile.mem.j2", "codesign_pkg.sv.j2", "codesign_params.h.j2")}
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    modules = {layer.key: group.params for group in module_groups(config) for layer in group.layers}
    summary: list[dict[str, Any]] = []
    package_layers: list[dict[str, Any]] = []
    idents = identifiers([layer.key for layer in config.layers])
    for layer in config.layers:
        geometry, periphery = config.geometry(layer), modules[layer.key]
        values = layer_values(layer, geometry, periphery)
        ident = idents[layer.key]
        stem = ident.lower()
        context = {"version": __version__, "layer": layer, "ident": ident, "g": values, "tiles": layer.tiles}
        written.append(_write(out / f"{stem}.vh", templates["layer.vh.j2"].render(context)))
        tile_dir = out / stem
        tile_dir.mkdir(exist_ok=True)
        tiles_json, tile_slots, tile_rows = [], [], []
        digits = ceil_div(periphery.row_width, 4)
        slot_mask = (1 << periphery.slot_width) - 1
        for index, tile in enumerate(layer.tiles):
            schedule = tile_schedule(periphery, tile)
            words = schedule.words()
            slots = [(word >> (g * periphery.slot_width)) & slot_mask for word in words for g in range(periphery.adcs)]
            tile_slots.append([f"0x{slot:x}u" for slot in slots + [0] * (periphery.depth * periphery.adcs - len(slots))])
            tile_rows.append(len(words))
            mem = tile_dir / f"{tile_name(index, len(layer.tiles))}.mem"
            written.append(_write(mem, templates["tile.mem.j2"].render(
                context, index=index, tile=tile, words=[f"{word:0{digits}x}" for word in words])))
            tiles_json.append({
                "index": index, "mem": str(mem.relative_to(out)), "memory_rows": len(words),
                "row_start": tile.row_start, "row_count": tile.row_count,
                "col_start": tile.col_start, "col_count": tile.col_count,
                "converted_columns": schedule.conversions,
                "max_bits": max(tile.adc_bits, default=0),
                "bits_histogram": [tile.adc_bits.count(b) for b in range(max(tile.adc_bits, default=0) + 1)]})
        params = [(_PACKAGE_NAMES.get(k, k.upper()), values[k]) for k in _PACKAGE_PARAMS]
        params.append(("TILES", len(layer.tiles)))
        package_layers.append({"layer": layer, "ident": ident, "params": params, "g": values,
                               "tiles": layer.tiles, "tile_slots": tile_slots, "tile_rows": tile_rows})
        summary.append({"name": layer.name, "group": layer.group, "key": layer.key, "kind": layer.kind,
                        "header": f"{stem}.vh", "ident": ident, "geometry": values,
                        "memory": {"depth": periphery.depth, "adcs": periphery.adcs, "row_width": periphery.row_width,
                                   "hex_digits": digits, "slot": slot_fields(periphery)},
                        "tiles": tiles_json})
    context = {"version": __version__, "layers": package_layers}
    written.append(_write(out / "codesign_pkg.sv", templates["codesign_pkg.sv.j2"].render(context)))
    written.append(_write(out / "codesign_params.h", templates["codesign_params.h.j2"].render(context)))
    document = {"generator": f"codesign {__version__}", "layers": summary}
    written.append(_write(out / "params.json", json.dumps(document, indent=2) + "\n"))
    return written


def slot_fields(periphery: Any) -> dict[str, list[int]]:
    """``[msb, lsb]`` of each field of a configuration-memory slot (``msb < lsb``: no bits)."""
    return {name: [lsb + width - 1, lsb] for name, (lsb, width) in periphery.slot_fields.items()}


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
