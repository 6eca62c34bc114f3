"""RTL parameter files rendered from ``templates/`` (jinja2, StrictUndefined).

Written into ``DIR/params/``:

``<layer>.vh``                Verilog header of localparams (geometry and widths) per layer
``<layer>/tile_NNN.mem``      ``$readmemh`` file per tile: one word per physical column,
                              ``word = (k << 5) | b`` (10 bits, 3 hex digits), C words
``<layer>/tile_NNN.skip.mem`` ``$readmemh`` file per tile: one C-bit word, bit p = column p skipped
``codesign_pkg.sv``           one SystemVerilog package with every layer's parameters
``codesign_params.h``         one C header with the parameters and every tile's config words
``params.json``               the same in JSON, with the file of every tile
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from . import __version__
from .config import MAX_ADC_BITS, MAX_ADC_SHIFT, HardwareConfig, LayerConfig, TileConfig
from .mapping import Geometry, ceil_div


@dataclass(frozen=True)
class WordFormat:
    """Bit layout of one physical column's configuration word."""

    bits_width: int = MAX_ADC_BITS.bit_length()    # 5: b in 0..16
    shift_width: int = MAX_ADC_SHIFT.bit_length()  # 5: k in 0..31

    @property
    def width(self) -> int:
        return self.bits_width + self.shift_width

    @property
    def hex_digits(self) -> int:
        return ceil_div(self.width, 4)

    def pack(self, bits: int, shift: int) -> int:
        return (shift << self.bits_width) | bits

    def unpack(self, word: int) -> tuple[int, int]:
        return word & ((1 << self.bits_width) - 1), word >> self.bits_width


WORD = WordFormat()


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


def tile_words(tile: TileConfig, geometry: Geometry) -> list[int]:
    """Config words of all ``C`` physical columns of a tile; unused columns are 0 (skipped)."""
    words = [WORD.pack(b, k) for b, k in zip(tile.adc_bits, tile.adc_shift)]
    return words + [0] * (geometry.cols - len(words))


def skip_mask(words: list[int]) -> int:
    """Bit p set when physical column p is not converted."""
    bits_mask = (1 << WORD.bits_width) - 1
    return int("".join("0" if word & bits_mask else "1" for word in reversed(words)), 2)


def layer_values(layer: LayerConfig, geometry: Geometry) -> dict[str, Any]:
    K, N = layer.matrix.rows, layer.matrix.cols
    peak_input = (1 << layer.input_bits) - 1
    peak_weight = (1 << (layer.weight_bits - 1)) - 1
    return {
        "matrix_rows": K, "matrix_cols": N, "rows": geometry.rows, "cols": geometry.cols,
        "cell_bits": geometry.cell_bits, "dac_bits": geometry.dac_bits,
        "weight_bits": geometry.weight_bits, "input_bits": geometry.input_bits,
        "slices": geometry.slices, "logical_cols": geometry.logical_cols,
        "used_cols": geometry.logical_cols * geometry.phys_per_logical,
        "input_cycles": geometry.input_cycles, "adcs": geometry.adcs, "uniform_bits": geometry.uniform_bits,
        "column_value_width": max(1, (geometry.rows * geometry.input_digit_max * geometry.digit_max).bit_length()),
        "output_width": (K * peak_input * peak_weight).bit_length() + 1,
    }


_PACKAGE_PARAMS = ("matrix_rows", "matrix_cols", "rows", "cols", "cell_bits", "dac_bits", "weight_bits",
                   "input_bits", "slices", "logical_cols", "used_cols", "input_cycles", "adcs",
                   "uniform_bits", "column_value_width", "output_width")
_PACKAGE_NAMES = {"rows": "XBAR_ROWS", "cols": "XBAR_COLS", "uniform_bits": "ADC_BITS_MAX"}


def write_params(config: HardwareConfig, out: Path) -> list[Path]:
    """Render every parameter file into ``out`` (created); returns the files written."""
    env = environment()
    templates = {name: env.get_template(name) for name in
                 ("layer.vh.j2", "tile.mem.j2", "tile.skip.mem.j2", "codesign_pkg.sv.j2", "codesign_params.h.j2")}
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    digits = WORD.hex_digits
    summary: list[dict[str, Any]] = []
    package_layers: list[dict[str, Any]] = []
    idents = identifiers([layer.key for layer in config.layers])
    for layer in config.layers:
        geometry = config.geometry(layer)
        values = layer_values(layer, geometry)
        ident = idents[layer.key]
        stem = ident.lower()
        context = {"version": __version__, "layer": layer, "ident": ident, "g": values, "word": WORD,
                   "tiles": layer.tiles}
        written.append(_write(out / f"{stem}.vh", templates["layer.vh.j2"].render(context)))
        tile_dir = out / stem
        tile_dir.mkdir(exist_ok=True)
        tiles_json, all_words = [], []
        for index, tile in enumerate(layer.tiles):
            words = tile_words(tile, geometry)
            all_words.append([f"0x{w:0{digits}x}" for w in words])
            name = tile_name(index, len(layer.tiles))
            mem = tile_dir / f"{name}.mem"
            skip = tile_dir / f"{name}.skip.mem"
            tile_context = dict(context, index=index, tile=tile)
            written.append(_write(mem, templates["tile.mem.j2"].render(
                tile_context, words=[f"{w:0{digits}x}" for w in words])))
            written.append(_write(skip, templates["tile.skip.mem.j2"].render(
                tile_context, mask=f"{skip_mask(words):0{ceil_div(geometry.cols, 4)}x}")))
            tiles_json.append({
                "index": index, "mem": str(mem.relative_to(out)), "skip_mem": str(skip.relative_to(out)),
                "row_start": tile.row_start, "row_count": tile.row_count,
                "col_start": tile.col_start, "col_count": tile.col_count,
                "converted_columns": sum(1 for b in tile.adc_bits if b),
                "max_bits": max(tile.adc_bits, default=0),
                "bits_histogram": [tile.adc_bits.count(b) for b in range(max(tile.adc_bits, default=0) + 1)]})
        params = [(_PACKAGE_NAMES.get(k, k.upper()), values[k]) for k in _PACKAGE_PARAMS]
        params.append(("TILES", len(layer.tiles)))
        package_layers.append({"layer": layer, "ident": ident, "params": params, "g": values,
                               "tiles": layer.tiles, "tile_words": all_words})
        summary.append({"name": layer.name, "group": layer.group, "key": layer.key, "kind": layer.kind,
                        "header": f"{stem}.vh", "ident": ident, "geometry": values, "tiles": tiles_json})
    context = {"version": __version__, "word": WORD, "layers": package_layers}
    written.append(_write(out / "codesign_pkg.sv", templates["codesign_pkg.sv.j2"].render(context)))
    written.append(_write(out / "codesign_params.h", templates["codesign_params.h.j2"].render(context)))
    document = {"generator": f"codesign {__version__}",
                "word": {"width": WORD.width, "bits": [WORD.bits_width - 1, 0],
                         "shift": [WORD.width - 1, WORD.bits_width], "hex_digits": digits},
                "layers": summary}
    written.append(_write(out / "params.json", json.dumps(document, indent=2) + "\n"))
    return written


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
