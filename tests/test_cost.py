"""Cost models against published anchor points (docs/cost-models.md §2.6 and §3; docs/design.md §8.1)."""

import numpy as np
import pytest

from codesign.analysis import analyze
from codesign.config import CrossbarConfig, ModelInfo
from codesign.cost import (ADC_MODELS, CostSettings, adc_energy_ratios, area_scale, dub_levels, energy_scale,
                           estimate)
from codesign.errors import CodesignError
from codesign.ingest import LayerSpec, ModelSpec

BITS = (4, 5, 6, 7, 8, 9, 10)

# docs/cost-models.md §2.6, "The same conversion, priced by each model": (model, settings, decimals of the
# printed energy, [(pJ, µm²) for 4…10 b]). Areas are printed as integers.
ANCHORS_2_1 = [
    ("isaac", dict(tech_nm=32, sample_rate_hz=1.2e9), 2,
     [(0.79, 361), (0.99, 477), (1.20, 627), (1.42, 845), (1.67, 1200), (1.97, 1828), (2.38, 3002)]),
    ("murmann", dict(tech_nm=32, sample_rate_hz=1.2e9), 2,
     [(0.92, 5130), (0.94, 5151), (1.07, 5353), (1.31, 5698), (1.85, 6313), (5.30, 8651), (15.73, 11979)]),
    ("murmann", dict(tech_nm=22, sample_rate_hz=100e6), 2,
     [(0.46, 1828), (0.46, 1835), (0.53, 1907), (0.65, 2030), (0.85, 2199), (1.16, 2414), (1.64, 2678)]),
    ("zigzag", dict(tech_nm=28, zigzag_vdd=0.9), 2,
     [(0.32, 183), (0.41, 336), (0.49, 618), (0.58, 1135), (0.70, 2085), (0.94, 3830), (1.66, 7036)]),
    ("neurosim-sar", dict(tech_nm=22), 3,
     [(0.033, 105), (0.042, 124), (0.053, 143), (0.065, 162), (0.078, 180), (0.092, 199), (0.107, 218)]),
    ("neurosim-sar", dict(tech_nm=32), 3,
     [(0.067, 223), (0.087, 263), (0.110, 302), (0.134, 342), (0.161, 382), (0.191, 421), (0.222, 461)]),
]


def rounds_to(value: float, printed: float, decimals: int) -> bool:
    return abs(value - printed) <= 0.5 * 10 ** -decimals + 1e-9


def test_isaac_8_bit_is_1_67_pj_and_1200_um2():
    table = ADC_MODELS["isaac"].table(CostSettings(), [8])
    assert round(table.energy_pj[8], 2) == 1.67
    assert table.area_um2[8] == 1200
    assert "ISAAC" in table.citation and table.warnings == ()


@pytest.mark.parametrize("model, settings, decimals, expected", ANCHORS_2_1,
                         ids=[f"{a[0]}-{a[1]['tech_nm']}nm" for a in ANCHORS_2_1])
def test_models_reproduce_anchors_table(model, settings, decimals, expected):
    table = ADC_MODELS[model].table(CostSettings(**settings), BITS)
    for bits, (energy, area) in zip(BITS, expected):
        assert rounds_to(table.energy_pj[bits], energy, decimals), (bits, table.energy_pj[bits], energy)
        assert rounds_to(table.area_um2[bits], area, 0), (bits, table.area_um2[bits], area)


def test_walden_default_is_isaac_implied_and_doubles_per_bit():
    table = ADC_MODELS["walden"].table(CostSettings(), range(1, 11))
    # docs/cost-models.md §2.6: "Walden figures of merit implied at 8 b: isaac 6.5 fJ/step".
    assert round(CostSettings().walden_fom_fj, 1) == 6.5
    assert round(table.energy_pj[8], 2) == 1.67
    assert np.allclose(table.energy_pj[2:] / table.energy_pj[1:-1], 2.0)
    custom = ADC_MODELS["walden"].table(CostSettings(walden_fom_fj=0.35), [8])
    assert round(custom.energy_pj[8] * 1e3 / 2 ** 8, 3) == 0.35


@pytest.mark.parametrize("src, dst, area, energy", [(32, 22, 0.55, 0.45), (32, 16, 0.41, 0.26), (65, 22, 0.17, 0.24)])
def test_technology_scaling_matches_stillmaker_baas(src, dst, area, energy):
    # docs/cost-models.md §3: "32 → 22 nm area ×0.55, energy ×0.45; …"
    assert rounds_to(area_scale(src, dst), area, 2)
    assert rounds_to(energy_scale(src, dst), energy, 2)


def test_scaled_model_reports_its_scaling_path_and_extrapolations():
    table = ADC_MODELS["isaac"].table(CostSettings(tech_nm=22), [3, 8])
    assert "32 nm → 22 nm" in table.scaling
    assert table.energy_pj[8] == pytest.approx(1.67 * 0.45, rel=0.015)  # 0.45 is printed to 2 digits
    assert any("3 b outside" in w for w in table.warnings)
    far = ADC_MODELS["zigzag"].table(CostSettings(tech_nm=3), [6])
    assert any("outside 7–130 nm" in w for w in far.warnings)


def test_murmann_claims_no_saving_below_its_fit():
    table = ADC_MODELS["murmann"].table(CostSettings(), [1, 2, 3, 4])
    assert table.energy_pj[1] == table.energy_pj[4]
    assert any("priced as 4 b" in w for w in table.warnings)


def spec(q, name="layer", positions=None, weight_bits=3, input_bits=4):
    return LayerSpec(name, "linear", 0, np.asarray(q, dtype=np.int32), np.ones(np.shape(q)[1]), weight_bits,
                     input_bits, positions=positions)


def config_of(*specs, rows, cols):
    model = ModelSpec(list(specs), ModelInfo(path="m.pt", sha256="0" * 64, format="state_dict"))
    return analyze(model, CrossbarConfig(rows=rows, cols=cols, cell_bits=2, dac_bits=1)).to_config()


def test_accounting_follows_design_3_11():
    # One 4×4 crossbar, 3-bit weights on 2-bit cells (S = 1), 4-bit inputs (T = 4), 10 MVMs per
    # inference. Column 0 sums 1+2+3 = 6 → 3 bits; the other three physical columns are empty.
    config = config_of(spec([[1, 0], [2, 0], [0, 0], [3, 0]], positions=10), rows=4, cols=4)
    assert config.layers[0].tiles[0].adc_bits == [3, 0, 0, 0]
    est = estimate(config, models=["walden"])
    isaac_pj = 16e-3 / (8 * 1.2e9) * 1e12      # ISAAC: 16 mW for 8 ADCs at 1.2 GS/s
    walden = lambda b: isaac_pj * 2.0 ** (b - 8)  # noqa: E731 - E = FOM·2^b with ISAAC's FOM
    uniform_bits = 4                             # ceil(log2(4·1·3 + 1)) = 4 (docs/design.md §3.11)
    # Latency from the periphery's timing (docs/periphery.md, "Timing"), worked by hand: one ADC macro,
    # one conversion per cycle, one beat per plane and one result beat (L = 2 results of 9 bits).
    # per_column: 1 converted column, one row per input cycle, issued in cycles 1..4, written back in
    # cycle 6, the results leave in cycle 7: latency 8; the next vector's row waits for that beat,
    # so each further MVM adds T + 3 = 7: 8 + 9·7 = 71 cycles. uniform and per_crossbar: all four
    # physical columns converted (no skip), four rows per input cycle, the last issued in cycle 16,
    # results in cycle 19: latency 20, each further MVM 4T + 3 = 19: 20 + 9·19 = 191 cycles.
    expected = {  # (conversions = positions × T × converted columns, ADC energy, clock cycles)
        "uniform": (10 * 4 * 4, 10 * 4 * 4 * walden(uniform_bits), 191),
        "per_crossbar": (10 * 4 * 4, 10 * 4 * 4 * walden(3), 191),
        "per_column": (10 * 4 * 1, 10 * 4 * 1 * walden(3), 71),
    }
    for design, (conversions, adc_pj, cycles) in expected.items():
        cost = est.total("walden", design)
        assert cost.conversions == conversions, design
        assert cost.energy_pj["adc"] == pytest.approx(adc_pj), design
        assert cost.latency_cycles == cycles, design
        assert cost.to_json(1e9)["latency_ns"] == cycles           # 1 GHz: one cycle is one ns
    assert est.ratio("walden", "per_column", "uniform") == pytest.approx(4 * walden(4) / walden(3))
    # One ADC per crossbar, sized for the largest resolution it converts.
    assert est.total("walden", "uniform").area_um2["adc"] == pytest.approx(1200 * 2.0 ** (4 - 8))
    assert est.total("walden", "per_column").area_um2["adc"] == pytest.approx(1200 * 2.0 ** (3 - 8))


def test_unknown_positions_count_one_mvm_with_a_warning():
    est = estimate(config_of(spec([[1], [1]]), rows=4, cols=4), models=["isaac"])
    assert est.total("isaac", "per_column").conversions == 4  # T = 4 cycles, one column, 1 MVM
    assert any("positions" in w for w in est.warnings)


def dub_layer(histogram, rows=64, seed=0):
    """A 3-bit-weight layer whose 64-row tiles sit at D.U.B. levels ``histogram`` (k = 0…6, then
    empty): every column of a level-k tile holds 64/2^k weights of magnitude 3 (D.U.B.'s balanced
    sparsity), so its densest column needs 8 − k bits and an empty tile none."""
    rng = np.random.default_rng(seed)
    blocks = []
    for level, count in enumerate(histogram):
        nonzero = 0 if level == len(histogram) - 1 else rows >> level
        for _ in range(count):
            block = np.zeros((rows, rows), dtype=np.int32)
            for col in range(rows):
                block[rng.choice(rows, size=nonzero, replace=False), col] = 3
            blocks.append(block)
    order = rng.permutation(len(blocks))
    return spec(np.concatenate([blocks[i] for i in order]), name="vgg11", positions=1)


def test_dub_released_histogram_gives_10_2x_under_2_to_the_n():
    # docs/design.md §8.1: VGG11/CIFAR-10, T = 64, λ_l2 = λ_var = 1e-3: tiles per level k = 0…6 and empty.
    released = [23, 228, 112, 166, 119, 910, 0, 693]
    # 64-row crossbars with 128 physical columns hold 64 logical columns of one slice (D.U.B.'s 64×64 tile).
    config = config_of(dub_layer(released), rows=64, cols=128)
    assert config.geometry(config.layers[0]).uniform_bits == 8  # D.U.B.: ceil(log2 64) + 2
    levels = dub_levels(config)
    assert levels["levels"][:7] == released[:7] and levels["empty"] == released[7]
    assert sum(levels["levels"][7:]) == 0
    ratio = estimate(config, models=["walden"]).ratio("walden", "per_crossbar", "uniform")
    assert round(ratio, 1) == 10.2
    # Per-column lossless also skips the empty negative-polarity columns D.U.B. still converts.
    assert estimate(config, models=["walden"]).ratio("walden", "per_column", "per_crossbar") > 1.9


def test_calibrated_design_and_mismatch():
    config = config_of(spec([[3, 1], [2, 0], [1, 1], [3, 2]], positions=2), rows=4, cols=4)
    data = config.model_dump()
    data["layers"][0]["tiles"][0]["adc_bits"] = [max(b - 1, 0) for b in data["layers"][0]["tiles"][0]["adc_bits"]]
    calibrated = type(config).model_validate(data)
    est = estimate(config, calibrated, models=["isaac", "zigzag"])
    assert est.designs == ("uniform", "per_crossbar", "per_column", "calibrated")
    for model in ("isaac", "zigzag"):
        assert est.adc_energy(model, "calibrated") < est.adc_energy(model, "per_column")
    data["layers"][0]["tiles"][0]["row_count"] = 3
    data["layers"][0]["tiles"][0]["adc_bits"] = [1] * 4
    shifted = type(config).model_validate(data)
    with pytest.raises(CodesignError, match="differs from hw_config.json at layer 'layer'"):
        estimate(config, shifted)


def test_adc_energy_ratios_for_pruning_results():
    config = config_of(spec([[3, 0], [3, 0], [0, 0], [0, 1]], positions=1), rows=4, cols=4)
    ratios = adc_energy_ratios(config)
    assert set(ratios) == {"walden", "isaac"}
    for values in ratios.values():
        assert values["per_column_vs_uniform"] == pytest.approx(values["uniform_pj"] / values["per_column_pj"])
        assert values["per_column_vs_per_crossbar"] >= 1.0


def test_unknown_model_is_one_line_error():
    with pytest.raises(CodesignError, match="unknown ADC model 'flash'"):
        estimate(config_of(spec([[1]]), rows=4, cols=4), models=["flash"])


def test_search_objective_prices_like_the_report():
    # The crossbar-size search builds tiles from row-block sums, the report from hw_config.json:
    # both must give the same energy and area for the default tiling.
    from codesign.analysis import layer_cost, make_geometry
    from codesign.mapping import layer_column_sums

    rng = np.random.default_rng(3)
    q = rng.integers(-127, 128, size=(300, 40)) * (rng.random((300, 40)) < 0.3)
    layer = spec(q, positions=7, weight_bits=8, input_bits=8)
    crossbar = CrossbarConfig(rows=128, cols=64, cell_bits=2, dac_bits=1)
    config = config_of(layer, rows=128, cols=64)
    geo = make_geometry(layer, crossbar)
    for design, uniform in (("per_column", False), ("uniform", True)):
        energy, area = layer_cost(layer, geo, layer_column_sums(layer.q, geo), uniform=uniform)
        total = estimate(config, models=["isaac"]).total("isaac", design)
        assert energy == pytest.approx(total.total_energy_pj) and area == pytest.approx(total.total_area_um2)
