"""Crossbar views, quantizer and statistics of codesign.prune against codesign.mapping and ingest."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from codesign.analysis import analyze
from codesign.config import CrossbarConfig, ModelInfo
from codesign.cost import estimate
from codesign.errors import CodesignError
from codesign.ingest import LayerSpec, ModelSpec, quantize
from codesign.mapping import Geometry, default_tiles
from codesign.prune.core import Grid, Quantizer, Target, find_targets, keep_top
from codesign.prune.stats import level_config, level_histogram, slice_sparsity, tile_levels


@settings(max_examples=60, deadline=None)
@given(K=st.integers(1, 70), N=st.integers(1, 30), rows=st.integers(1, 33), wb=st.integers(2, 9),
       c=st.integers(1, 4), extra=st.integers(0, 5), G=st.integers(1, 2))
def test_tiles_are_exactly_the_mapping_tiles(K, N, rows, wb, c, extra, G):
    geo = Geometry(rows=rows, cols=2 * math.ceil((wb - 1) / c) * (1 + extra % 3) + extra, cell_bits=c, dac_bits=1,
                   weight_bits=wb, input_bits=8)
    grid = Grid(K, N, geo.rows, geo.logical_cols)
    mat = torch.arange(G * K * N, dtype=torch.float32).reshape(G, K, N) + 1
    tiles = grid.tiles(mat)
    valid = grid.valid()
    mapped = default_tiles(K, N, geo)
    assert len(mapped) == grid.row_blocks * grid.col_blocks
    for tile in mapped:
        rb, cb = tile.row_start // geo.rows, tile.col_start // geo.logical_cols
        block = tiles[:, rb, cb][valid[0, rb, cb].expand(G, -1, -1)].reshape(G, tile.row_count, tile.col_count)
        expected = mat[:, tile.row_start:tile.row_start + tile.row_count, tile.col_start:tile.col_start + tile.col_count]
        assert torch.equal(block, expected)
    assert int(valid.sum()) == K * N
    assert torch.equal(grid.from_tiles(tiles), mat)
    assert torch.equal(grid.from_segments(grid.segments(mat)), mat)


def test_matrix_view_is_designs_flatten_order():
    conv = nn.Conv2d(4, 6, (2, 3), groups=2)
    target = Target("c", conv, Grid(2 * 2 * 3, 3, 4, 2))
    mat = target.matrix()
    assert mat.shape == (2, 12, 3)
    w = conv.weight.detach()
    for g in range(2):
        for o in range(3):
            for ci in range(2):
                for i in range(2):
                    for j in range(3):
                        assert mat[g, ci * 6 + i * 3 + j, o] == w[g * 3 + o, ci, i, j]
    assert torch.equal(target.unmatrix(mat), conv.weight)


def test_find_targets_names_the_unsupported_layer():
    geo = Geometry(64, 64, 2, 1, 8, 8)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 2))
    assert [t.name for t in find_targets(model, geo, "dub")] == ["0", "2"]
    with pytest.raises(CodesignError, match=r"cannot prune layer '1' \(Conv1d\)"):
        find_targets(nn.Sequential(nn.Linear(3, 3), nn.Conv1d(1, 1, 3)), geo, "dub")
    with pytest.raises(CodesignError, match="layer '0' uses padding='same'"):
        find_targets(nn.Sequential(nn.Conv2d(1, 1, 3, padding="same")), geo, "dub")


def test_keep_top_breaks_ties_by_index():
    scores = torch.tensor([[3.0, 1.0, 3.0, 2.0], [0.0, 0.0, 0.0, 5.0]])
    assert keep_top(scores, 2, 1).tolist() == [[True, False, True, False], [True, False, False, True]]
    assert keep_top(scores, torch.tensor([[1], [3]]), 1).tolist() == [[True, False, False, False],
                                                                       [True, True, False, True]]


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("pow2", [False, True])
def test_snapped_weights_are_read_back_exactly_by_ingest(per_channel, pow2):
    torch.manual_seed(0)
    w = torch.randn(5, 3, 3, 3) * torch.tensor([1.0, 0.01, 3.0, 0.0, 0.2]).reshape(5, 1, 1, 1)
    quant = Quantizer(6, per_channel, pow2)
    snapped, scale = quant.snap(w)
    q, steps = quantize(snapped.double().numpy(), 6, per_channel, scale)
    assert np.abs(q).max() <= 31
    assert torch.equal(torch.from_numpy(q).long(), quant.integers(w))
    if pow2:
        assert all(math.frexp(s)[0] == 0.5 for s in scale.reshape(-1).tolist())
    peak = w.abs().flatten(1).amax(1) if per_channel else w.abs().max()
    assert (peak.double() <= torch.as_tensor(scale).double() * 31 + 1e-12).all()   # no weight is clipped


def test_fake_quantization_passes_gradients_straight_through():
    w = torch.tensor([0.3, -1.0, 0.04], requires_grad=True)
    out = Quantizer(4).fake(w)
    assert torch.allclose(out, torch.tensor([2, -7, 0]) / 7.0)
    out.sum().backward()
    assert w.grad.tolist() == [1.0, 1.0, 1.0]


def test_tile_levels_follow_dub_bins():
    geo = Geometry(rows=8, cols=16, cell_bits=2, dac_bits=1, weight_bits=8, input_bits=8)   # L = 2
    q = np.zeros((12, 4), dtype=np.int32)
    q[:8, 0] = 1            # tile (0,0): densest column 8 of 8 → level 0
    q[:2, 2] = 1            # tile (0,1): 2 of 8 → level 2
    q[:3, 3] = 1            #             3 of 8 → level 1 (3 > 8/4)
    q[8:9, 1] = 5           # tile (1,0): 1 of 4 rows → level 2; tile (1,1) empty
    assert tile_levels(q, geo) == [0, 1, 2, None]
    assert level_histogram({"x": q[None]}, geo) == {"0": 1, "1": 1, "2": 1, "empty": 1}


def test_level_config_is_dub_accounting_on_a_hand_computed_matrix():
    # 4-row crossbars, 3-bit weights on 2-bit cells (S = 1), 8 physical columns: L = 4 logical
    # columns per crossbar, uniform ceil(log2(4·3 + 1)) = 4 bits. Matrix 4×5: two tiles side by side.
    q = np.zeros((4, 5), dtype=np.int32)
    q[:, 0] = 3                                       # tile 0: a full column → level 0
    q[0, 1] = -1
    spec = LayerSpec("x", "linear", 0, q, np.ones(5), 3, 2, positions=3)
    info = ModelInfo(path="m.pt", sha256="0" * 64, format="state_dict")
    config = analyze(ModelSpec([spec], info), CrossbarConfig(rows=4, cols=8, cell_bits=2, dac_bits=1)).to_config()
    assert [tile.adc_bits for tile in config.layers[0].tiles] == [[4, 0, 0, 1, 0, 0, 0, 0], [0, 0]]
    levels = level_config(config, {"x": q})
    assert [tile.adc_bits for tile in levels.layers[0].tiles] == [[4] * 8, [0, 0]]    # tile 1 is empty
    q[1:, 0] = 0                                      # now 1 of 4 rows → level 2 → 4 − 2 bits
    levels = level_config(config, {"x": q})
    assert [tile.adc_bits for tile in levels.layers[0].tiles] == [[2] * 8, [0, 0]]
    # priced by codesign.cost under the 2^N model: 8 columns at 2 bits against 10 at 4 bits
    assert estimate(levels, models=["walden"]).ratio("walden", "per_column", "uniform") == pytest.approx(
        10 * 2 ** 4 / (8 * 2 ** 2))


def test_slice_sparsity_counts_zero_digits():
    geo = Geometry(rows=4, cols=8, cell_bits=2, dac_bits=1, weight_bits=5, input_bits=8)    # S = 2
    q = np.array([[[0, 1, 4, 15]]])                    # digits (0,0) (1,0) (0,1) (3,3)
    assert slice_sparsity({"x": q}, geo) == 4 / 8


def test_hoyer_variance_matches_the_definition_and_the_gate_spares_sparse_columns():
    from codesign.prune.dub import hoyer_variance

    torch.manual_seed(1)
    K, N, R, L = 10, 7, 4, 3                               # edge row block of 2 rows, edge tile of 1 column
    linear = nn.Linear(K, N, bias=False)
    target = Target("x", linear, Grid(K, N, R, L))
    w = linear.weight.detach().T                            # [K, N] as the crossbar holds it
    expected = 0.0
    for r0 in range(0, K, R):
        hoyers = []
        for j in range(N):
            seg = w[r0:r0 + R, j].double()
            hoyers.append(float(seg.abs().sum() ** 2 / (seg.pow(2).sum() + 1e-6)))
        hoyers += [0.0] * (-N % L)                           # the code's zero-padded columns
        for c0 in range(0, len(hoyers), L):
            expected += float(np.var(hoyers[c0:c0 + L], ddof=1))
    assert hoyer_variance(target, gate=False).item() == pytest.approx(expected, rel=1e-5)

    gated = hoyer_variance(target, gate=True)
    assert gated.item() == pytest.approx(expected, rel=1e-5)
    gated.backward()
    grad = linear.weight.grad.T                              # [K, N]
    seg = target.grid.segments(target.matrix().detach())[0]
    hoyer = seg.abs().sum(1) ** 2 / (seg.pow(2).sum(1) + 1e-6)          # [RB, N]
    padded = torch.nn.functional.pad(hoyer, (0, -N % L)).reshape(hoyer.shape[0], -1, L)
    below = (padded < padded.mean(-1, keepdim=True)).reshape(hoyer.shape[0], -1)[:, :N]
    for rb in range(hoyer.shape[0]):
        for j in range(N):
            rows = grad[rb * R:(rb + 1) * R, j]
            assert (rows == 0).all() == bool(below[rb, j]), (rb, j)


def test_schedules():
    from codesign.prune.train import Schedule

    step = Schedule(epochs=160, lr=0.01, milestones=[50 / 160, 100 / 160, 150 / 160])
    assert [step.lr_at(e) for e in (0, 49, 50, 99, 100, 150)] == pytest.approx([0.01, 0.01, 1e-3, 1e-3, 1e-4, 1e-5])
    cosine = Schedule(epochs=4, lr=1.0, decay="cosine")
    assert [cosine.lr_at(e) for e in range(4)] == pytest.approx([1.0, 0.8535534, 0.5, 0.1464466])


def test_augment_crops_and_flips_the_padded_image():
    from codesign.prune.train import augment

    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).reshape(2, 3, 6, 6) + 1
    out = augment(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    again = augment(x, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    padded = nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(2):
        crops = [padded[i, :, dy:dy + 6, dx:dx + 6] for dy in range(9) for dx in range(9)]
        assert any(torch.equal(out[i], c) or torch.equal(out[i], c.flip(2)) for c in crops)
