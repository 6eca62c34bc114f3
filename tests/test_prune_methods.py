"""Each method's structural promise, checked on the checkpoint as codesign.ingest reads it back.

Runs are short (one or two epochs per phase on the digits): the structure must hold however long
one trains; accuracy is the results script's business.
"""

import math

import numpy as np
import pytest
import torch

from codesign.ingest import load_model
from codesign.mapping import Geometry, default_tiles
from codesign.prune import prune, train_dense
from codesign.prune.core import Grid, Target
from codesign.prune.dub import dub_mask

ROWS, COLS = 32, 64                     # 8-bit weights on 2-bit cells: S = 4, L = 8 logical columns
GEO = Geometry(rows=ROWS, cols=COLS, cell_bits=2, dac_bits=1, weight_bits=8, input_bits=8)
SHORT = 1


@pytest.fixture
def dense(dense_digits):
    return dense_digits


def run(dense, tmp_path, method, **overrides):
    out = tmp_path / f"{method}.pt"
    checkpoint = prune(str(dense), method, "digits", out, epochs=SHORT, overrides=overrides,
                       crossbar={"rows": ROWS, "cols": COLS})
    return checkpoint, load_model(out)


def mask_matrix(checkpoint, name):
    """The checkpoint's mask of a layer as its [K, N] matrix (docs/design.md §3.1, groups = 1 here)."""
    mask = checkpoint["masks"][name].numpy()
    return mask.reshape(mask.shape[0], -1).T


def blocks(matrix, tile):
    return matrix[tile.row_start:tile.row_start + tile.row_count, tile.col_start:tile.col_start + tile.col_count]


# --- D.U.B. ---------------------------------------------------------------------------------------

def test_dub_tiles_keep_power_of_two_shares_in_balanced_columns(dense, tmp_path):
    checkpoint, model = run(dense, tmp_path, "dub", tolerance=0.05)
    levels = set()
    for spec in model.layers:
        mask = mask_matrix(checkpoint, spec.name)
        for tile in default_tiles(*spec.q.shape, GEO):
            kept = blocks(mask, tile).sum(axis=0)
            nonzero = (blocks(spec.q, tile) != 0).sum(axis=0)
            if kept.max() == 0:
                assert nonzero.max() == 0
                levels.add("empty")
                continue
            r = tile.row_count
            shares = {r >> k: k for k in range(r.bit_length())}
            assert kept.max() in shares, (spec.name, tile, kept)       # floor(r / 2^k) weights
            assert (kept == kept.max()).all(), (spec.name, tile, kept)  # every column keeps as many
            assert (nonzero <= kept).all()
            levels.add(shares[int(kept.max())])
    assert len(levels) >= 3                                              # the run exercised several levels


def reference_dub_tile(magnitude, tol, rows):
    """The released code's prune_based_on_tile_sparsity for one full tile, written out with numpy."""
    adc_bits = int(math.log2(rows)) + 2
    bins = [1 - 2.0 ** -k for k in range(adc_bits)] + [1.0]
    sparsity = (magnitude <= tol).sum(axis=0).min() / rows
    index = np.histogram(sparsity, bins)[0].argmax()
    if index == adc_bits - 1:
        return magnitude > tol
    if index == adc_bits - 2:
        return np.zeros_like(magnitude, dtype=bool)
    middle = (bins[index] + bins[index + 1]) / 2
    target = bins[index + 1] if sparsity >= middle else bins[index]
    if target == 0:
        return magnitude > 0     # documented deviation: the code's 0th percentile would drop each column's minimum
    keep = np.zeros_like(magnitude, dtype=bool)
    for j in range(magnitude.shape[1]):
        keep[:, j] = magnitude[:, j] > np.percentile(magnitude[:, j], target * 100)
    return keep


@pytest.mark.parametrize("seed", range(4))
def test_dub_mask_matches_the_released_code_on_full_tiles(seed):
    gen = torch.Generator().manual_seed(seed)
    R, L, K, N = 16, 4, 64, 12
    scale = torch.rand(1, 1, N, generator=gen) * 0.2 + 0.01                  # some columns are near zero
    weight = (torch.randn(1, K, N, generator=gen) * scale * (torch.rand(1, K, N, generator=gen) > 0.6 * seed / 3))
    linear = torch.nn.Linear(K, N, bias=False)
    linear.weight.data = weight[0].T.contiguous()
    target = Target("x", linear, Grid(K, N, R, L))
    mask = target.matrix(dub_mask(target, tolerance=0.02))[0].numpy()
    magnitude = weight[0].abs().numpy()
    for r0 in range(0, K, R):
        for c0 in range(0, N, L):
            expected = reference_dub_tile(magnitude[r0:r0 + R, c0:c0 + L], 0.02, R)
            np.testing.assert_array_equal(mask[r0:r0 + R, c0:c0 + L], expected)


# --- TinyADC --------------------------------------------------------------------------------------

def test_tinyadc_no_column_segment_exceeds_its_budget(dense, tmp_path):
    before = load_model(dense)
    checkpoint, model = run(dense, tmp_path, "tinyadc", level=2)
    budget = ROWS >> 2
    over_before = 0
    for spec, dense_spec in zip(model.layers, before.layers):
        for r0 in range(0, spec.q.shape[0], ROWS):
            assert ((spec.q[r0:r0 + ROWS] != 0).sum(axis=0) <= budget).all(), spec.name
            assert (mask_matrix(checkpoint, spec.name)[r0:r0 + ROWS].sum(axis=0) <= budget).all()
            over_before += int(((dense_spec.q[r0:r0 + ROWS] != 0).sum(axis=0) > budget).sum())
    assert over_before > 100                                             # the budget did bind


# --- crossbar and column grain ----------------------------------------------------------------------

def test_crossbar_grain_prunes_whole_tiles(dense, tmp_path):
    checkpoint, model = run(dense, tmp_path, "crossbar", sparsity=0.5)
    *pruned_layers, output = model.layers
    assert mask_matrix(checkpoint, output.name).all()                # class scores are left alone by default
    for spec in pruned_layers:
        mask = mask_matrix(checkpoint, spec.name)
        tiles = default_tiles(*spec.q.shape, GEO)
        states = [blocks(mask, t).all() or not blocks(mask, t).any() for t in tiles]
        assert all(states), spec.name
        pruned = [t for t in tiles if not blocks(mask, t).any()]
        assert len(pruned) == len(tiles) // 2                            # ceil(0.5 · n) tiles are kept
        assert all((blocks(spec.q, t) == 0).all() for t in pruned)


def test_column_grain_prunes_whole_segments_and_packs_them(dense, tmp_path):
    checkpoint, model = run(dense, tmp_path, "column", sparsity=0.5, reorder=True)
    recombination = checkpoint["meta"]["recombination"]
    L = GEO.logical_cols
    saved = 0
    assert set(recombination) == {spec.name for spec in model.layers[:-1]}
    for spec in model.layers[:-1]:
        mask = mask_matrix(checkpoint, spec.name)
        K, N = spec.q.shape
        for rb, r0 in enumerate(range(0, K, ROWS)):
            segment = mask[r0:r0 + ROWS]
            live = segment.any(axis=0)
            assert (segment.all(axis=0) | ~live).all(), spec.name        # a segment is kept or pruned whole
            assert (spec.q[r0:r0 + ROWS][:, ~live] == 0).all()
            perm = recombination[spec.name][0][rb]
            assert sorted(perm) == list(range(N))                         # a permutation of the outputs
            packed = live[perm]
            assert packed[:live.sum()].all() and not packed[live.sum():].any()
            used = sum(packed[j:j + L].any() for j in range(0, N, L))
            assert used == math.ceil(live.sum() / L)
            saved += math.ceil(N / L) - used
    assert saved > 0
    assert set(checkpoint["meta"]["input_orders"]) == {"features.2", "features.5", "classifier.1", "classifier.3"}


# --- CRIMP ------------------------------------------------------------------------------------------

def test_crimp_prunes_whole_kernel_groups_with_power_of_two_scales(dense, tmp_path):
    checkpoint, model = run(dense, tmp_path, "crimp", crossbar_sparsity=0.25, kernel_sparsity=0.5, variation=0.05)
    for name, scale in checkpoint["scales"].items():
        assert all(math.frexp(s)[0] == 0.5 for s in scale.reshape(-1).tolist()), name
    groups = pruned_groups = empty_tiles = 0
    for spec in model.layers:
        mask = mask_matrix(checkpoint, spec.name)
        kernel = 9 if spec.kind == "conv2d" else 1
        for tile in default_tiles(*spec.q.shape, GEO):
            block = blocks(mask, tile)
            empty_tiles += not block.any()
            channel = (np.arange(tile.row_start, tile.row_start + tile.row_count)) // kernel
            for c in np.unique(channel):
                rows = block[channel == c]
                assert rows.all() or not rows.any(), (spec.name, tile, c)   # a kernel group is kept or pruned whole
                groups += 1
                pruned_groups += not rows.any()
        assert (spec.q[~mask] == 0).all()
    assert empty_tiles >= 8 and pruned_groups > groups / 2


# --- bit-slice L1 against magnitude --------------------------------------------------------------

def test_bitslice_has_more_zero_slices_than_magnitude_at_equal_weight_sparsity(dense, tmp_path):
    sliced, _ = run(dense, tmp_path, "bitslice", alpha=20.0, finetune={"epochs": 3})
    sparsity = sliced["meta"]["sparsity"]
    baseline, _ = run(dense, tmp_path, "magnitude", sparsity=sparsity)
    assert abs(baseline["meta"]["sparsity"] - sparsity) < 0.02
    assert sliced["meta"]["slice_sparsity"] > baseline["meta"]["slice_sparsity"] + 0.02
