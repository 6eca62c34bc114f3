"""Parameter files: read back by Icarus ($readmemh, `include, the SV package) and by a C compiler."""

import json
import shutil
import subprocess

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


def test_icarus_reads_headers_and_memories(generated, tmp_path):
    """Every .mem row read back by $readmemh, sliced with the .vh field layout, gives the schedule's slots."""
    config, out = generated
    tool = iverilog()
    for layer in config.layers:
        stem = file_stem(layer.key)
        geo = config.geometry(layer)
        params = module_params(config, layer)
        for index in (0, len(layer.tiles) - 1):
            name = tile_name(index, len(layer.tiles))
            schedule = tile_schedule(params, layer.tiles[index])
            tb = tmp_path / "tb.v"
            tb.write_text(f"""
module tb;
  `include "{stem}.vh"
  reg [ROW_WIDTH-1:0] rows [0:MEMORY_DEPTH-1];
  reg [SLOT_WIDTH-1:0] slot;
  integer r, g;
  initial begin
    $readmemh("{out}/params/{stem}/{name}.mem", rows, 0, {len(schedule.rows) - 1});
    $display("%0d %0d %0d %0d %0d %0d %0d", MATRIX_ROWS, MATRIX_COLS, XBAR_ROWS, XBAR_COLS, SLICES, TILES, ADCS);
    for (r = 0; r < {len(schedule.rows)}; r = r + 1)
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
            subprocess.run([str(tool.path), "-g2012", "-I", str(out / "params"), "-o", str(tmp_path / "tb.vvp"),
                            str(tb)], check=True, capture_output=True, text=True)
            lines = subprocess.run(["vvp", "-n", str(tmp_path / "tb.vvp")], check=True, capture_output=True,
                                   text=True).stdout.split("\n")
            assert lines[0].split() == [str(v) for v in (layer.matrix.rows, layer.matrix.cols, geo.rows, geo.cols,
                                                         geo.slices, len(layer.tiles), geo.adcs)]
            slots = [slot for row in schedule.rows for slot in row]
            got = [tuple(int(v) for v in line.split()) for line in lines[1:1 + len(slots)]]
            assert got == [(slot.bits, slot.shift, slot.column) for slot in slots]
            tile = layer.tiles[index]
            assert {(s.column, s.bits, s.shift) for s in slots if s.bits} == {
                (p, b, k) for p, (b, k) in enumerate(zip(tile.adc_bits, tile.adc_shift)) if b}


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
