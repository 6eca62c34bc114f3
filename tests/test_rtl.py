"""``codesign generate`` → ``rtl/``: deterministic, plain Verilog identifiers, zero warnings under
``verilator -Wall`` (every interface and several geometries), compiles in Icarus, synthesizes in
Yosys with the configuration memory inferred as ``$mem``, and resets control state only. That the
Verilog computes the golden results in the reported cycles is ``tests/test_sim*.py``'s part."""

import filecmp
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from codesign import tools
from codesign.cli import main
from codesign.config import CrossbarConfig, HardwareConfig, LayerConfig, MatrixShape, PeripheryConfig, TileConfig
from codesign.config import load_config
from codesign.hw import PeripheryParams
from codesign.mapping import Geometry
from codesign.rtl import MANIFEST, VERILATOR_LINT_FLAGS, ModuleGroup, explicit_widths, module_groups, module_name
from codesign.rtl import verilog_module
from codesign.sim.ports import PortMap


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """Two runs of `codesign generate` on the bundled model, in processes with different hash seeds."""
    root = tmp_path_factory.mktemp("generate")
    for seed, name in enumerate(("a", "b")):
        env = dict(os.environ, PYTHONHASHSEED=str(seed + 1))
        run([sys.executable, "-m", "codesign", "generate", "--no-report", "--out", root / name], cwd=root, env=env)
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
    return done.stdout + done.stderr


def test_two_runs_are_byte_identical(generated):
    first, second = generated
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert any(str(f).startswith("rtl/") for f in files) and any(str(f).startswith("params/") for f in files)
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    match, mismatch, errors = filecmp.cmpfiles(first, second, [str(f) for f in files], shallow=False)
    assert mismatch == [] and errors == []


def test_one_module_with_the_documented_ports(out, manifest):
    config = load_config(out / "hw_config.json")
    assert len(manifest["modules"]) == len({config.geometry(layer) for layer in config.layers}) == 1
    assert sum(len(layer["tiles"]) for layer in manifest["layers"]) == 26
    module = manifest["modules"][0]
    assert module["name"] == "codesign_tile_r128c128_c2v1_w8a8_adc1m1_b7x3_d128" and module["interface"] == "macro"
    ports = PortMap.load(out / "rtl" / module["ports"])
    names = {f"{s}__{m}" for s in ("s_axis_x", "s_axis_acc", "m_axis_y") for m in ("tdata", "tvalid", "tready", "tlast")}
    names |= {f"apb__{m}" for m in ("psel", "penable", "pwrite", "paddr", "pwdata", "prdata", "pready", "pslverr")}
    names |= {f"adc__0__{m}" for m in ("start", "column", "bits", "shift", "valid", "code")}
    assert set(ports.ports) == names | {"wordline", "input_cycle", "busy", "error"}
    assert ports.width("s_axis_x__tdata") == 128 and ports.width("apb__pwdata") == 32


def test_only_plain_identifiers(out, manifest):
    for module in manifest["modules"]:
        text = (out / "rtl" / module["verilog"]).read_text()
        assert "\\" not in text, "an escaped identifier"
        assert re.findall(r"^module (\w+)\(", text, re.M) == [module["name"]], "one flat module"


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
        ("codesign_tile_r8c16_c2v1_w5a4_adc1m1_b6x3_d128", 6, 3, ["a", "b"]),
        ("codesign_tile_r8c16_c2v1_w5a4_adc2m1_b2x2_d128", 2, 2, ["c"])]
    sar = config.model_copy(update={"periphery": PeripheryConfig(adc_interface="sar", stream_bits=64)})
    slow = config.model_copy(update={"periphery": PeripheryConfig(adc_sample_rate_hz=3e8)})
    assert module_groups(sar)[0].name == "codesign_tile_r8c16_c2v1_w5a4_adc1s_b6x3_d64"
    assert module_groups(slow)[0].name == "codesign_tile_r8c16_c2v1_w5a4_adc1m4_b6x3_d128"


def test_more_adcs_than_logical_columns_work_but_not_more_than_columns(tmp_path, capsys):
    assert main(["generate", "--adcs", "129", "--out", str(tmp_path / "x")]) == 1
    assert "--adcs: adcs 129 exceeds the 128 physical columns" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    assert main(["generate", "--adcs", "20", "--no-report", "--out", str(tmp_path / "y")]) == 0
    assert json.loads((tmp_path / "y" / "rtl" / MANIFEST).read_text())["modules"][0]["name"].endswith(
        "adc20m1_b7x3_d128")


def test_a_result_wider_than_the_stream_is_refused(tmp_path, capsys):
    assert main(["generate", "--stream-bits", "16", "--out", str(tmp_path / "x")]) == 1
    assert "stream_width must be 26..128 bits" in capsys.readouterr().err


def test_summary_reports_cycles_and_skip_saving(out, manifest):
    summary = json.loads((out / "summary.json").read_text())
    text = (out / "summary.txt").read_text()
    tiles = [tile for layer in manifest["layers"] for tile in layer["tiles"]]
    assert summary["rtl"]["total"]["sum_cycles"] == sum(t["cycles"] for t in tiles)
    assert summary["rtl"]["total"]["sum_without_skip"] > summary["rtl"]["total"]["sum_cycles"]
    assert all(t["latency"] > t["cycles"] > 0 and t["rows"] >= 1 for t in tiles)
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


def lint(directory, name):
    """``verilator -Wall`` on one file: its output, which must carry no warning."""
    output = run([tools.verilator().path, *VERILATOR_LINT_FLAGS, "--top-module", name, f"{name}.v"],
                 cwd=directory, env=tools.verilator_env())
    assert "%Warning" not in output and "%Error" not in output, output[:3000]


def test_verilator_lint_has_no_warning(out, manifest):
    assert VERILATOR_LINT_FLAGS == ("--lint-only", "-Wall")
    for module in manifest["modules"]:
        lint(out / "rtl", module["name"])


@pytest.mark.parametrize("geometry, interface, cycles, stream", [
    (Geometry(rows=20, cols=40, cell_bits=3, dac_bits=2, weight_bits=8, input_bits=5, adcs=3), "macro", 3, 128),
    (Geometry(rows=16, cols=34, cell_bits=1, dac_bits=1, weight_bits=4, input_bits=3, adcs=2), "sar", 1, 24),
    (Geometry(rows=64, cols=64, cell_bits=2, dac_bits=1, weight_bits=8, input_bits=8, adcs=64), "macro", 1, 128),
    (Geometry(rows=12, cols=16, cell_bits=2, dac_bits=4, weight_bits=4, input_bits=4, adcs=5), "sar", 1, 32),
], ids=["S3-3adcs-3cycles", "c1-2adcs-sar-24bit", "64adcs", "T1-5adcs-sar"])
def test_other_configurations_lint_clean_and_compile(geometry, interface, cycles, stream, tmp_path):
    params = PeripheryParams(geometry, bmax=5, chain=2, interface=interface, conversion_cycles=cycles,
                             stream_width=stream)
    group = ModuleGroup(module_name(params), params)
    text, _ = verilog_module(group)
    (tmp_path / f"{group.name}.v").write_text(text)
    assert "\\" not in text
    lint(tmp_path, group.name)
    run([icarus()[0], "-g2005", "-o", "x.vvp", f"{group.name}.v"], cwd=tmp_path)


def test_width_pass_extends_operands_and_drops_dead_wire_bits():
    rtlil = """module \\m
  wire width 3 input 1 \\a
  wire width 5 signed input 2 \\b
  wire width 6 output 3 \\y
  wire width 8 $t
  cell $add $1
    parameter \\A_SIGNED 1
    parameter \\A_WIDTH 3
    parameter \\B_SIGNED 1
    parameter \\B_WIDTH 5
    parameter \\Y_WIDTH 6
    connect \\A \\a
    connect \\B \\b
    connect \\Y $t [5:0]
  end
  connect $t [7:6] 2'xx
  connect \\y $t [5:0]
end
"""
    text = explicit_widths(rtlil)
    assert "connect \\A { \\a [2] \\a [2] \\a [2] \\a }" in text and "connect \\B { \\b [4] \\b }" in text
    assert "parameter \\A_WIDTH 6" in text and "wire width 6 $t" in text and "2'xx" not in text


def synthesized(out, module):
    """Yosys' JSON netlist of ``module`` after ``synth -run :fine`` (memories not mapped to flops)."""
    rtl = out / "rtl"
    run([tools.yosys().path, "-q", "-p", f"read_verilog {module}.v; synth -top {module} -flatten -run :fine; "
         f"write_json {module}.json.netlist"], cwd=rtl)
    return json.loads((rtl / f"{module}.json.netlist").read_text())["modules"][module]


def test_yosys_infers_the_memory_and_only_control_state_is_reset(out, manifest):
    module = manifest["modules"][0]["name"]
    netlist = synthesized(out, module)
    cells = list(netlist["cells"].values())
    memories = [c for c in cells if c["type"] == "$mem_v2"]
    assert len(memories) == 1 and int(memories[0]["parameters"]["SIZE"], 2) == 128
    flops = [c for c in cells if "dff" in c["type"]]
    reset = sum(int(c["parameters"]["WIDTH"], 2) for c in flops if c["type"].startswith("$sdff"))
    total = sum(int(c["parameters"]["WIDTH"], 2) for c in flops)
    assert total > 500 and 0 < reset < total / 8, (reset, total)
    names = {name: bits for name, net in netlist["netnames"].items() for bits in [net["bits"]]}
    datapath = [bit for name, bits in names.items()
                if re.fullmatch(r"shift_add_acc\d+|inputs_plane|inputs_wordline|shift_add_held", name) for bit in bits]
    reset_bits = {bit for c in flops if c["type"].startswith("$sdff") for bit in c["connections"]["Q"]}
    assert datapath and not reset_bits & set(datapath), "a datapath register is reset"
