"""Parameter files: read back by Icarus ($readmemh, `include, the SV package) and by a C compiler."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from codesign.analysis import analyze
from codesign.config import CrossbarConfig
from codesign.generate import generate
from codesign.ingest import load_model
from codesign.params import file_stem, identifier, tile_name
from codesign.rtl import module_groups, tile_schedule
from codesign.tools import iverilog


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    config = analyze(load_model(None), CrossbarConfig(rows=64, cols=72, adcs=3)).to_config()   # 72: 8 unused columns
    rng = np.random.default_rng(5)
    for layer in config.layers:                    # exercise the shift field too
        for tile in layer.tiles:
            tile.adc_shift = rng.integers(0, 32, len(tile.adc_shift)).tolist()
    out = tmp_path_factory.mktemp("gen") / "out"
    generate(config, out)
    return config, out


def test_names():
    assert identifier("features.3#1") == "FEATURES_3_G1" and file_stem("layer1.0.conv2") == "layer1_0_conv2"
    assert identifier("3x") == "L_3X" and tile_name(7, 12) == "tile_007" and tile_name(7, 1200) == "tile_0007"


def module_params(config, layer):
    return next(group.params for group in module_groups(config) if layer in group.layers)


def icarus_read_back(params: Path, stem: str, tile: str, rows: int, tmp_path: Path) -> tuple[list[str], list[tuple]]:
    """Icarus `include's ``<stem>.vh`` and $readmemh's the tile's ``rows`` memory rows: the header's
    MATRIX_ROWS, MATRIX_COLS, XBAR_ROWS, XBAR_COLS, SLICES, TILES, ADCS and, sliced with the .vh
    field layout, every slot's (b, k, physical column)."""
    tb = tmp_path / "tb.v"
    tb.write_text(f"""
module tb;
  `include "{stem}.vh"
  reg [ROW_WIDTH-1:0] rows [0:MEMORY_DEPTH-1];
  reg [SLOT_WIDTH-1:0] slot;
  integer r, g;
  initial begin
    $readmemh("{params}/{stem}/{tile}.mem", rows, 0, {rows - 1});
    $display("%0d %0d %0d %0d %0d %0d %0d", MATRIX_ROWS, MATRIX_COLS, XBAR_ROWS, XBAR_COLS, SLICES, TILES, ADCS);
    for (r = 0; r < {rows}; r = r + 1)
      for (g = 0; g < ADCS; g = g + 1) begin
        slot = rows[r] >> (g * SLOT_WIDTH);
        $display("%0d %0d %0d", (slot >> SLOT_BITS_LSB) & ((1 << SLOT_BITS_WIDTH) - 1),
                 (slot >> SLOT_SHIFT_LSB) & ((1 << SLOT_SHIFT_WIDTH) - 1),
                 (((slot >> SLOT_LOGICAL_LSB) & ((1 << SLOT_LOGICAL_WIDTH) - 1)) * SLICES
                  + ((slot >> SLOT_SLICE_LSB) & ((1 << SLOT_SLICE_WIDTH) - 1))) * 2
                 + ((slot >> SLOT_POLARITY_LSB) & 1));
      end
    $finish;
  end
endmodule
""")
    subprocess.run([str(iverilog().path), "-g2012", "-I", str(params), "-o", str(tmp_path / "tb.vvp"), str(tb)],
                   check=True, capture_output=True, text=True)
    done = subprocess.run(["vvp", "-n", str(tmp_path / "tb.vvp")], check=True, capture_output=True, text=True)
    assert "warning" not in (done.stdout + done.stderr).lower(), done
    lines = done.stdout.split("\n")
    return lines[0].split(), [tuple(int(v) for v in line.split()) for line in lines[1:] if line.strip()]


def check_read_back(config, layer, params: Path, stem: str, index: int, tmp_path: Path) -> None:
    """The header and the memory rows of tile ``index`` as Icarus reads them equal the lane schedule of
    its ``(b, k)``, and the converted slots are exactly the tile's converted columns."""
    geo, tile = config.geometry(layer), layer.tiles[index]
    schedule = tile_schedule(module_params(config, layer), tile)
    header, slots = icarus_read_back(params, stem, tile_name(index, len(layer.tiles)), len(schedule.rows), tmp_path)
    assert header == [str(v) for v in (layer.matrix.rows, layer.matrix.cols, geo.rows, geo.cols, geo.slices,
                                       len(layer.tiles), geo.adcs)]
    wanted = [slot for row in schedule.rows for slot in row]
    assert slots == [(slot.bits, slot.shift, slot.column) for slot in wanted]
    assert {(s.column, s.bits, s.shift) for s in wanted if s.bits} == {
        (p, b, k) for p, (b, k) in enumerate(zip(tile.adc_bits, tile.adc_shift)) if b}


def test_icarus_reads_headers_and_memories(generated, tmp_path):
    config, out = generated
    for layer in config.layers:
        for index in (0, len(layer.tiles) - 1):
            check_read_back(config, layer, out / "params", file_stem(layer.key), index, tmp_path)


def test_systemverilog_package_compiles(generated, tmp_path):
    config, out = generated
    params = module_params(config, config.layer("features.5"))
    word = 1 << params.slot_fields["shift"][0] | 5
    tb = tmp_path / "use_pkg.sv"
    tb.write_text(f"module use_pkg; import codesign_pkg::*; features_5_slot_t c; initial begin "
                  f"c = {params.slot_width}'h{word:x};"
                  " $display(\"%0d %0d %0d %0d %0d\", c.bits, c.shift, FEATURES_5_XBAR_ROWS, CLASSIFIER_3_TILES, "
                  "REG_ROWS); end endmodule\n")
    subprocess.run([str(iverilog().path), "-g2012", "-o", str(tmp_path / "p.vvp"), str(out / "params" / "codesign_pkg.sv"),
                    str(tb)], check=True, capture_output=True, text=True)
    shown = subprocess.run(["vvp", "-n", str(tmp_path / "p.vvp")], check=True, capture_output=True, text=True).stdout
    last = config.layer("classifier.3")
    assert shown.split()[:5] == ["5", "1", "64", str(len(last.tiles)), "4"]


def test_c_header_compiles_and_matches(generated, tmp_path):
    config, out = generated
    layer = config.layer("features.2")
    tile = layer.tiles[-1]
    params = module_params(config, layer)
    schedule = tile_schedule(params, tile)
    program = tmp_path / "main.c"
    program.write_text(f"""#include <stdio.h>
#include "codesign_params.h"
#define F(slot, name) CODESIGN_SLOT_FIELD(slot, FEATURES_2_SLOT_##name##_LSB, FEATURES_2_SLOT_##name##_WIDTH)
int main(void) {{
    const unsigned t = FEATURES_2_TILES - 1;
    printf("%u %u %u\\n", FEATURES_2_TILE_RANGES[t].row_start, FEATURES_2_TILE_RANGES[t].col_count,
           FEATURES_2_TILE_ROWS[t]);
    for (unsigned i = 0; i < FEATURES_2_TILE_ROWS[t] * FEATURES_2_ADCS; i++) {{
        const uint32_t slot = FEATURES_2_TILE_SLOTS[t][i];
        printf("%u %u %u %u\\n", F(slot, BITS), F(slot, SHIFT),
               (F(slot, LOGICAL) * FEATURES_2_SLICES + F(slot, SLICE)) * 2 + F(slot, POLARITY),
               CODESIGN_SLOT_ADDRESS(FEATURES_2_APB_SLOT_BITS, FEATURES_2_APB_ROW_BITS, i / FEATURES_2_ADCS,
                                     i % FEATURES_2_ADCS));
    }}
    return 0;
}}
""")
    compiler = shutil.which("cc") or shutil.which("gcc")
    subprocess.run([compiler, "-std=c99", "-Wall", "-Werror", "-I", str(out / "params"), "-o", str(tmp_path / "m"),
                    str(program)], check=True)
    lines = subprocess.run([str(tmp_path / "m")], check=True, capture_output=True, text=True).stdout.splitlines()
    assert lines[0].split() == [str(tile.row_start), str(tile.col_count), str(len(schedule.rows))]
    slots = [(r, g, slot) for r, row in enumerate(schedule.rows) for g, slot in enumerate(row)]
    assert [tuple(map(int, line.split())) for line in lines[1:]] == [
        (slot.bits, slot.shift, slot.column, params.slot_address(r, g)) for r, g, slot in slots]


def test_params_json_lists_every_tile(generated):
    config, out = generated
    document = json.loads((out / "params" / "params.json").read_text())
    for layer, entry in zip(config.layers, document["layers"]):
        params = module_params(config, layer)
        assert entry["key"] == layer.key and len(entry["tiles"]) == len(layer.tiles)
        assert entry["memory"]["slot"]["bits"] == [params.bits_width - 1, 0]
        assert entry["memory"]["depth"] == params.depth and entry["memory"]["adcs"] == params.adcs
        for tile, listed in zip(layer.tiles, entry["tiles"]):
            assert (out / "params" / listed["mem"]).is_file()
            assert listed["converted_columns"] == sum(1 for b in tile.adc_bits if b)
            assert listed["memory_rows"] == len(tile_schedule(params, tile).rows)
            assert listed["bits_histogram"] == [sum(1 for b in tile.adc_bits if b == n) for n in range(max(tile.adc_bits) + 1)]


# --- names from a model file cannot inject into the files -----------------------------------------

HOSTILE_NAMES = [
    'a\n`include "x"\n',                       # a new line with a directive
    '*/ #error injected /*',                   # closes a C comment
    'q"uote\\back\\',                           # quote, a backslash at the end
    'line\u2028sep\u2029par\x85nel\x0bvt\x0cff',  # Unicode and other line breaks
    'cr\rlf\r\n`define CODESIGN_X 1',
    'tab\tnul\x00esc\x1b[2J',
    "apo'strophe */ // /* `timescale 1ns/1ps",
    '\\\n#error spliced',                      # backslash-newline continues a // comment in C
    'tri??/\n#error trigraph',
    'features.0', 'features_0', 'FEATURES-0',  # the same identifier after sanitising
    'é' * 300,                                 # nothing left of it, and long
    '0' * 300,
]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    from codesign.config import HardwareConfig
    from codesign.params import identifiers, write_params

    base = analyze(load_model(None), CrossbarConfig(rows=64, cols=72)).to_config()
    template = base.layer("features.2")
    layers = [template.model_copy(update={"name": name}) for name in HOSTILE_NAMES]
    config = HardwareConfig(crossbar=base.crossbar, layers=layers)
    out = tmp_path_factory.mktemp("hostile") / "params"
    write_params(config, out)
    (out / "x").write_text("this is not Verilog\n")       # an injected `include "x" would fail to compile
    return config, out, identifiers([layer.key for layer in layers])


def test_hostile_names_get_distinct_recorded_identifiers(hostile):
    config, out, idents = hostile
    assert len(set(idents.values())) == len(HOSTILE_NAMES)
    assert [idents[n] for n in ("features.0", "features_0", "FEATURES-0")] == ["FEATURES_0", "FEATURES_0_2",
                                                                                  "FEATURES_0_3"]
    assert all(re.fullmatch(r"[A-Z][A-Z0-9_]{0,47}", ident) for ident in idents.values())
    listed = {entry["key"]: entry["ident"] for entry in json.loads((out / "params.json").read_text())["layers"]}
    assert listed == idents


def test_hostile_names_stay_inside_comments(hostile):
    config, out, idents = hostile
    benign = (out.parent / "benign")
    from codesign.config import HardwareConfig
    from codesign.params import write_params

    write_params(HardwareConfig(crossbar=config.crossbar, layers=[
        layer.model_copy(update={"name": f"l{i}"}) for i, layer in enumerate(config.layers)]), benign)
    for i, layer in enumerate(config.layers):
        stem = idents[layer.key].lower()
        for name in (f"{stem}.vh", f"{stem}/tile_000.mem"):
            text = (out / name).read_text()
            assert len(text.splitlines()) == len((benign / name.replace(stem, f"l{i}")).read_text().splitlines())
            assert all(c.isprintable() and c.isascii() for line in text.splitlines() for c in line)
    for name in ("codesign_pkg.sv", "codesign_params.h"):
        text = (out / name).read_text()
        assert len(text.splitlines()) == len((benign / name).read_text().splitlines())
        assert all(c.isprintable() and c.isascii() for line in text.splitlines() for c in line)
        assert "*/" not in "".join(line.split("/*", 1)[1].rsplit("*/", 1)[0] for line in text.splitlines()
                                   if line.lstrip().startswith("/* layer"))


def test_icarus_reads_hostile_headers_and_memories_unchanged(hostile, tmp_path):
    config, out, idents = hostile
    for layer in config.layers:
        check_read_back(config, layer, out, idents[layer.key].lower(), 0, tmp_path)


def test_hostile_systemverilog_package_and_c_header_compile_unchanged(hostile, tmp_path):
    config, out, idents = hostile
    names = [idents[layer.key] for layer in config.layers]
    tb = tmp_path / "use_pkg.sv"
    shown = " ".join(f"{n}_MATRIX_ROWS, {n}_TILES" for n in names)
    tb.write_text(f'module use_pkg; import codesign_pkg::*; initial $display("{" ".join(["%0d %0d"] * len(names))}", '
                  f'{shown.replace(" ", ", ").replace(",,", ",")}); endmodule\n')
    subprocess.run([str(iverilog().path), "-g2012", "-o", str(tmp_path / "p.vvp"), str(out / "codesign_pkg.sv"),
                    str(tb)], check=True, capture_output=True, text=True)
    got = subprocess.run(["vvp", "-n", str(tmp_path / "p.vvp")], check=True, capture_output=True, text=True).stdout
    expected = [str(v) for layer in config.layers for v in (layer.matrix.rows, len(layer.tiles))]
    assert got.split()[:len(expected)] == expected
    program = tmp_path / "main.c"
    program.write_text('#include <stdio.h>\n#include "codesign_params.h"\nint main(void) {\n'
                       + "".join(f'    printf("%u %u %u\\n", (unsigned){n}_MATRIX_ROWS, (unsigned){n}_TILES, '
                                 f'(unsigned){n}_TILE_ROWS[0]);\n' for n in names)
                       + "    return 0;\n}\n")
    compiler = shutil.which("cc") or shutil.which("gcc")
    subprocess.run([compiler, "-std=c99", "-Wall", "-Wextra", "-Wcomment", "-Werror", "-trigraphs", "-I", str(out),
                    "-o", str(tmp_path / "m"), str(program)], check=True)
    lines = subprocess.run([str(tmp_path / "m")], check=True, capture_output=True, text=True).stdout.splitlines()
    assert lines == [f"{layer.matrix.rows} {len(layer.tiles)} "
                     f"{len(tile_schedule(module_params(config, layer), layer.tiles[0]).rows)}"
                     for layer in config.layers]
