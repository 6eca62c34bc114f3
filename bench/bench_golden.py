"""Golden model speed (issue 3): a ResNet-18-shaped conv layer and whole-model emulation.

The layer: 256→256 channels, 3×3, 14×14 input (padding 1), batch 8, 8-bit weights (bell-shaped,
dense) and 8-bit post-ReLU inputs (half zeros), 2-bit cells, 1-bit DAC, 128×128 crossbars:
``X[1568, 2304] @ Q[2304, 256]``. The reference is that product in float64 on the already unfolded
``X`` (NumPy BLAS); the emulation gets the same integer ``X``. "Prepared" times a
:class:`codesign.golden.CrossbarLayer` built once (as whole-model emulation uses it), "one-shot"
times :func:`codesign.golden.layer_outputs` including the mapping of the weights onto crossbars.

The layer is measured in two fresh processes, with one BLAS thread and with the default thread
count (OpenBLAS reads ``OMP_NUM_THREADS`` when NumPy is imported): on a busy shared machine the
many tile-sized products of the per-cycle path lose more to thread contention than the one large
reference product, so the single-thread ratio is the cleaner measure of the algorithm.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

from . import HERE, best_of, codesign_command, run_command, stopwatch, table

LOSSLESS_TARGET = 2.0       # × the float64 matrix product
FLOOR_FACTOR = 1.5          # × T·S·2 × the matrix product, for every column one bit below lossless
WHOLE_MODEL_TARGET = 10.0   # seconds


def resnet_layer() -> tuple[np.ndarray, np.ndarray]:
    """Integer weights Q[2304, 256] and unfolded inputs X[1568, 2304] of the benchmark layer."""
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(0)
    q = np.clip(np.rint(rng.normal(0, 32, size=(256, 256, 3, 3))), -127, 127).astype(np.int32)
    x = rng.integers(0, 256, size=(8, 256, 14, 14)) * (rng.random((8, 256, 14, 14)) < 0.5)
    cols = F.unfold(torch.from_numpy(x.astype(np.float32)), 3, padding=1)          # [8, 2304, 196]
    return q.reshape(256, -1).T.copy(), cols.transpose(1, 2).reshape(-1, 2304).numpy().astype(np.int64)


def layer_rows() -> list[list[object]]:
    from codesign.analysis import analyze_layer
    from codesign.config import CrossbarConfig, HardwareConfig
    from codesign.golden import CrossbarLayer, layer_outputs
    from codesign.ingest import LayerSpec

    q, x = resnet_layer()
    crossbar = CrossbarConfig(rows=128, cols=128, cell_bits=2, dac_bits=1)
    lossless = analyze_layer(LayerSpec("conv", "conv2d", 0, q, np.ones(256), 8, 8), crossbar).to_layer_config()
    below = lossless.model_copy(deep=True)
    for tile in below.tiles:
        tile.adc_bits = [max(b - 1, 0) for b in tile.adc_bits]
    configs = {name: HardwareConfig(crossbar=crossbar, layers=[layer])
               for name, layer in (("lossless", lossless), ("below", below))}
    geometry = configs["lossless"].geometry(lossless)
    floor = FLOOR_FACTOR * geometry.input_cycles * geometry.slices * 2

    xf, qf = x.astype(np.float64), q.astype(np.float64)
    matmul = best_of(lambda: xf @ qf, repeat=7)
    prepared = {name: CrossbarLayer(q, config, config.layers[0]) for name, config in configs.items()}
    assert np.array_equal(prepared["lossless"](x), x @ q.astype(np.int64)), "lossless emulation is not X @ Q"
    times = {
        "lossless, prepared": best_of(lambda: prepared["lossless"](x), repeat=5),
        "lossless, one-shot": best_of(lambda: layer_outputs(q, configs["lossless"], lossless, x), repeat=5),
        "one bit below, prepared": best_of(lambda: prepared["below"](x), repeat=2),
        "one bit below, one-shot": best_of(lambda: layer_outputs(q, configs["below"], below, x), repeat=2),
    }
    rows = [["float64 matrix product (reference)", f"{matmul * 1e3:.1f} ms", "1.0×", "", ""]]
    for name, seconds in times.items():
        target = LOSSLESS_TARGET if name.startswith("lossless") else floor
        ratio = seconds / matmul
        rows.append([name, f"{seconds * 1e3:.1f} ms", f"{ratio:.2f}×", f"≤ {target:g}×",
                     "yes" if ratio <= target else "NO"])
    return rows


def model_rows() -> list[list[object]]:
    from codesign.analysis import analyze
    from codesign.config import CrossbarConfig
    from codesign.data import load_dataset
    from codesign.emulate import accuracies, calibrate_inputs
    from codesign.ingest import load_model

    model = load_model()
    train, _ = load_dataset("digits", "train")
    images, labels = load_dataset("digits", "test")
    lossless = analyze(model, CrossbarConfig()).to_config()
    below = lossless.model_copy(deep=True)
    for layer in below.layers:
        for tile in layer.tiles:
            tile.adc_bits = [max(b - 1, 0) for b in tile.adc_bits]
    rows = []
    for name, config in (("lossless config", lossless), ("every column one bit below lossless", below)):
        with stopwatch() as elapsed:
            quant = calibrate_inputs(model, train)
            result = accuracies(model, config, images, labels, quant)
        accuracy = " / ".join(f"{result[mode]:.2f}" for mode in ("float", "ideal", "crossbar"))
        rows.append([f"bundled model, 360 test images, {name} (in process)", f"{elapsed[0]:.2f} s", accuracy,
                     f"< {WHOLE_MODEL_TARGET:g} s", "yes" if elapsed[0] < WHOLE_MODEL_TARGET else "NO"])
    wall, peak = run_command([*codesign_command(), "emulate", "--data", "digits"], stderr=-3)
    rows.append(["`codesign emulate --data digits` (whole command, imports included)", f"{wall:.2f} s",
                 f"peak RSS {peak:.0f} MiB", f"< {WHOLE_MODEL_TARGET:g} s", "yes" if wall < WHOLE_MODEL_TARGET else "NO"])
    return rows


def layer_rows_in_process(threads: str | None) -> list[list[object]]:
    """:func:`layer_rows` in a fresh Python with ``OMP_NUM_THREADS=threads`` (None: the default)."""
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    if threads is not None:
        env["OMP_NUM_THREADS"] = threads
    script = "import json; from bench.bench_golden import layer_rows; print(json.dumps(layer_rows()))"
    done = subprocess.run([sys.executable, "-c", script], cwd=HERE.parent, env=env, check=True,
                          capture_output=True, text=True)
    label = f"{threads} BLAS thread" if threads else f"default threads ({os.cpu_count()} cores)"
    return [[f"{row[0]} — {label}", *row[1:]] for row in json.loads(done.stdout)]


def run() -> str:
    layer = table(["ResNet-18-shaped conv layer (X[1568, 2304] @ Q[2304, 256])", "time", "vs matmul", "target",
                   "met"], layer_rows_in_process("1") + layer_rows_in_process(None))
    model = table(["whole-model accuracy (float / ideal / crossbar, %)", "time", "accuracy", "target", "met"],
                  model_rows())
    return "### Golden model and emulation (issue 3)\n\n" + layer + "\n\n" + model + "\n"
