"""Mapping and lossless per-column bits against a direct, element-by-element reference."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codesign.analysis import analyze_layer
from codesign.config import CrossbarConfig
from codesign.ingest import LayerSpec
from codesign.mapping import (Geometry, TileRange, default_tiles, layer_column_sums, lossless_bits,
                              tile_column_sums, tile_digits)


def reference_tile_bits(q, geo, tile):
    """docs/design.md §3.3–3.5 and §3.10 written out literally, one weight at a time."""
    S, c, v = geo.slices, geo.cell_bits, geo.dac_bits
    bits = {}
    for j in range(tile.col_count):
        for s in range(S):
            for pol in (0, 1):
                total = 0
                for r in range(tile.row_count):
                    w = int(q[tile.row_start + r, tile.col_start + j])
                    part = max(w, 0) if pol == 0 else max(-w, 0)
                    total += (part >> (c * s)) & ((1 << c) - 1)
                peak = ((1 << v) - 1) * total
                bits[(j * S + s) * 2 + pol] = math.ceil(math.log2(peak + 1)) if peak else 0
    return [bits[p] for p in range(len(bits))]


def spec(q, wb=8, a=8):
    return LayerSpec("layer", "linear", 0, q.astype(np.int32), np.ones(q.shape[1]), wb, a)


geometries = st.builds(
    lambda rows, lcols, c, v, wb: Geometry(rows, lcols * 2 * math.ceil((wb - 1) / c) + (lcols % 3),
                                           c, v, wb, max(v, 8)),
    rows=st.integers(1, 40), lcols=st.integers(1, 5), c=st.integers(1, 4), v=st.integers(1, 2),
    wb=st.integers(2, 10))


@settings(max_examples=150, deadline=None)
@given(geo=geometries, K=st.integers(1, 90), N=st.integers(1, 13), seed=st.integers(0, 2**31),
       density=st.floats(0, 1))
def test_lossless_bits_match_reference(geo, K, N, seed, density):
    rng = np.random.default_rng(seed)
    limit = (1 << (geo.weight_bits - 1)) - 1
    q = rng.integers(-limit, limit + 1, size=(K, N)) * (rng.random((K, N)) < density)
    result = analyze_layer(spec(q, geo.weight_bits, geo.input_bits),
                           CrossbarConfig(rows=geo.rows, cols=geo.cols, cell_bits=geo.cell_bits,
                                          dac_bits=geo.dac_bits))
    for tile in default_tiles(K, N, geo):
        assert result.tile_bits(tile).tolist() == reference_tile_bits(q, geo, tile)


def test_isaac_worst_case_is_nine_bits():
    geo = Geometry(rows=128, cols=128, cell_bits=2, dac_bits=1, weight_bits=9, input_bits=16)
    q = np.full((128, 16), 255)  # every 2-bit cell at level 3
    bits = lossless_bits(layer_column_sums(q, geo), geo)
    assert geo.uniform_bits == 9
    assert (bits[0, 0::2] == 9).all() and (bits[0, 1::2] == 0).all()


@pytest.mark.parametrize("cell_bits", [1, 2, 3, 4])
@pytest.mark.parametrize("dac_bits", [1, 2])
def test_dense_worst_case_matches_uniform_bits(cell_bits, dac_bits):
    geo = Geometry(rows=64, cols=64, cell_bits=cell_bits, dac_bits=dac_bits, weight_bits=1 + 2 * cell_bits,
                   input_bits=8)
    q = np.full((64, 1), (1 << (2 * cell_bits)) - 1)  # both slices at the top level
    assert lossless_bits(layer_column_sums(q, geo), geo)[0, 0] == geo.uniform_bits


def test_partial_tiles_and_zero_columns():
    geo = Geometry(rows=8, cols=16, cell_bits=2, dac_bits=1, weight_bits=8, input_bits=8)  # S = 4, L = 2
    q = np.zeros((19, 5), dtype=np.int32)
    q[:, 1] = -1                       # negative column: only polarity 1 of slice 0 is live
    q[16:, 4] = 127                    # live only in the last, 3-row block
    tiles = default_tiles(19, 5, geo)
    assert [(t.row_start, t.row_count, t.col_start, t.col_count) for t in tiles][-3:] == \
        [(16, 3, 0, 2), (16, 3, 2, 2), (16, 3, 4, 1)]
    sums = layer_column_sums(q, geo)
    bits = lossless_bits(sums, geo)
    assert bits.shape == (3, 5 * 8)
    assert bits[0, 8 + 1] == 4 and bits[2, 8 + 1] == 2      # 8 and 3 rows of level 1
    assert bits[0, 8:16].sum() == 4                          # only (s=0, pol=1) of column 1
    assert not bits[:2, 32:].any() and bits[2, 32:40].tolist() == [4, 0, 4, 0, 4, 0, 2, 0]
    assert not bits[:, :8].any()                             # an all-zero column is skipped
    empty = TileRange(0, 8, 2, 2)
    assert not tile_column_sums(q, geo, empty).any()


def test_physical_column_order():
    geo = Geometry(rows=4, cols=16, cell_bits=2, dac_bits=1, weight_bits=5, input_bits=8)  # S = 2
    q = np.array([[0b1101, -0b0110]])
    digits = tile_digits(q, geo, TileRange(0, 1, 0, 2))[0]
    # j=0: slice 0 = 01, slice 1 = 11 positive; j=1: slice 0 = 10, slice 1 = 01 negative
    expected = {geo.physical_index(0, 0, 0): 1, geo.physical_index(0, 1, 0): 3,
                geo.physical_index(1, 0, 1): 2, geo.physical_index(1, 1, 1): 1}
    assert digits.tolist() == [expected.get(p, 0) for p in range(8)]


def test_geometry_rejects_too_few_columns():
    with pytest.raises(ValueError, match="need 2·S = 8"):
        Geometry(rows=8, cols=6, cell_bits=2, dac_bits=1, weight_bits=8, input_bits=8)
