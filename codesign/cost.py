"""Area, energy and latency estimates with traceable sources (docs/design.md §3.11, docs/cost-models.md).

Three layers, each usable on its own:

1. **Technology scaling** (:func:`area_scale`, :func:`energy_scale`): Stillmaker & Baas (2017)
   tables, 130–7 nm, energy at V_dd = 0.8 V.
2. **ADC models** behind one interface (:class:`AdcModel`): ``isaac``, ``walden``, ``murmann``,
   ``zigzag``, ``neurosim-sar``. :meth:`AdcModel.table` prices every resolution a design uses at a
   tech node and per-ADC sample rate and says where each number came from (:class:`AdcTable`).
   Other crossbar components (DAC, sample-and-hold, array, shift-add, registers) come from ISAAC's
   table (:data:`COMPONENTS`).
3. **Accounting** (:func:`estimate`): for a :class:`~codesign.config.HardwareConfig`, the four
   designs of docs/design.md §3.11 — ``uniform`` full resolution, ``per_crossbar`` lossless (D.U.B.'s
   assumption), ``per_column`` lossless, ``calibrated`` per column — per layer and in total, under
   every ADC model. Conversions per inference = positions × input cycles × converted columns.
   Latency per inference comes from the generated periphery's cycle counts
   (:func:`layer_cycles`) at the config's digital clock.

Units everywhere: pJ, µm², nm, Hz, ns. ``bits = 0`` means a skipped column (no conversion, no cost).
"""

from __future__ import annotations

import math
import statistics
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterable, Literal, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .config import HardwareConfig, LayerConfig
from .errors import CodesignError
from .mapping import Geometry, ceil_div

# --- technology scaling -------------------------------------------------------------------------

SCALING_SOURCE = ("Stillmaker & Baas, 'Scaling equations for the accurate prediction of CMOS device "
                  "performance from 180nm to 7nm', Integration 58 (2017), doi:10.1016/j.vlsi.2017.02.002; "
                  "tables as encoded in https://github.com/Accelergy-Project/hwcomponents "
                  "(hwcomponents/scaling/techscaling.py)")
SCALING_VDD = 0.8  #: V_dd at which energy factors are taken (hwcomponents' default).
_NODES_NM = (130.0, 90.0, 65.0, 45.0, 32.0, 20.0, 16.0, 14.0, 10.0, 7.0)
NODE_RANGE_NM = (_NODES_NM[-1], _NODES_NM[0])  #: Outside this range every factor is extrapolated.
# _AREA[i][j]: area factor from node i to node j.
_AREA = (
    (1, 0.44, 0.23, 0.16, 0.072, 0.033, 0.03, 0.027, 0.016, 0.0092),
    (2.3, 1, 0.53, 0.35, 0.16, 0.075, 0.067, 0.061, 0.036, 0.021),
    (4.3, 1.9, 1, 0.66, 0.31, 0.14, 0.13, 0.12, 0.068, 0.039),
    (6.4, 2.8, 1.5, 1, 0.46, 0.21, 0.19, 0.17, 0.1, 0.059),
    (14, 6.1, 3.3, 2.2, 1, 0.46, 0.41, 0.38, 0.22, 0.13),
    (30, 13, 7.1, 4.7, 2.2, 1, 0.89, 0.82, 0.48, 0.28),
    (34, 15, 7.9, 5.3, 2.4, 1.1, 1, 0.91, 0.54, 0.31),
    (37, 16, 8.7, 5.8, 2.7, 1.2, 1.1, 1, 0.59, 0.34),
    (63, 28, 15, 9.8, 4.5, 2.1, 1.9, 1.7, 1, 0.58),
    (110, 48, 25, 17, 7.8, 3.6, 3.2, 2.9, 1.7, 1),
)
# Relative switching energy of node i: a·V² + b·V + c.
_ENERGY = (
    (7.171, -6.709, 2.904), (4.762, -4.781, 2.092), (3.755, -4.398, 1.975), (1.103, -0.362, 0.2767),
    (0.9559, -0.7823, 0.471), (0.373, -0.1582, 0.04104), (0.2958, -0.1241, 0.03024),
    (0.2363, -0.09675, 0.02239), (0.2068, -0.09311, 0.02375), (0.1776, -0.09097, 0.02447),
)


def node_in_range(node_nm: float) -> bool:
    return NODE_RANGE_NM[0] <= node_nm <= NODE_RANGE_NM[1]


def _position(node_nm: float) -> tuple[float, float]:
    """(fractional table index, extrapolation ratio node/edge) of a node; index linear in nm.

    22 nm sits 5/6 of the way from 32 to 20 nm. (hwcomponents' interpolation weights the farther
    neighbour, giving 32→22 nm area ×0.91; docs/cost-models.md §3 uses this linear reading, ×0.55.)
    """
    clamped = min(max(node_nm, NODE_RANGE_NM[0]), NODE_RANGE_NM[1])
    for i in range(len(_NODES_NM) - 1):
        big, small = _NODES_NM[i], _NODES_NM[i + 1]
        if small <= clamped <= big:
            return i + (big - clamped) / (big - small), node_nm / clamped
    raise AssertionError("unreachable")


def area_scale(from_nm: float, to_nm: float) -> float:
    """Area factor from ``from_nm`` to ``to_nm`` from the Stillmaker–Baas table.

    With ``i`` the table node at or above ``from_nm`` and ``row(t)`` row ``i`` linearly interpolated
    (in nm) at node ``t``: ``row(to) / row(from)``. Exact at table nodes, 1 from a node to itself.
    Outside 130–7 nm the edge factor is multiplied by the node ratio (linear), as hwcomponents does.
    """
    (x, rx), (y, ry) = _position(from_nm), _position(to_nm)
    row = _AREA[int(x)]

    def at(t: float) -> float:
        t0 = int(t)
        t1 = min(t0 + 1, len(_NODES_NM) - 1)
        return row[t0] + (row[t1] - row[t0]) * (t - t0)

    return at(y) / at(x) * ry / rx


def _switching_energy(index: float, vdd: float) -> float:
    i0 = int(index)
    i1 = min(i0 + 1, len(_NODES_NM) - 1)
    f = index - i0
    return sum((1 - f) * _ENERGY[i0][k] * vdd ** (2 - k) + f * _ENERGY[i1][k] * vdd ** (2 - k) for k in range(3))


def energy_scale(from_nm: float, to_nm: float, vdd: float = SCALING_VDD) -> float:
    """Energy factor from ``from_nm`` to ``to_nm`` at ``vdd``: ratio of the tables' a·V²+b·V+c.

    Outside 130–7 nm the edge factor is multiplied by sqrt(node ratio), as hwcomponents does.
    """
    (x, rx), (y, ry) = _position(from_nm), _position(to_nm)
    return _switching_energy(y, vdd) / _switching_energy(x, vdd) * math.sqrt(ry / rx)


def scaling_note(from_nm: float, to_nm: float) -> str:
    """One line: how a number at ``from_nm`` was carried to ``to_nm``."""
    if from_nm == to_nm:
        return f"native {from_nm:g} nm, no scaling"
    return (f"{from_nm:g} nm → {to_nm:g} nm by Stillmaker–Baas: energy ×{energy_scale(from_nm, to_nm):.3g}, "
            f"area ×{area_scale(from_nm, to_nm):.3g}")


# --- ADC models ---------------------------------------------------------------------------------

ISAAC_CITATION = ("Shafiee et al., 'ISAAC', ISCA 2016, doi:10.1109/ISCA.2016.12 (ADC: Kull et al., ISSCC 2013, "
                  "8 b 1.2 GS/s SAR, 32 nm)")
ISAAC_ADC_PJ = 16e-3 / (8 * 1.2e9) * 1e12   #: 16 mW for 8 ADCs at 1.2 GS/s each = 1.67 pJ/conversion.
ISAAC_ADC_UM2 = 1200.0                      #: 0.0096 mm² for 8 ADCs.
ISAAC_RATE_HZ = 1.2e9
ISAAC_NODE_NM = 32.0
DEFAULT_WALDEN_FOM_FJ = ISAAC_ADC_PJ / 2 ** 8 * 1e3  #: ISAAC-implied Walden FOM, 6.51 fJ/conversion-step.


#: Names of the ADC cost models (:data:`ADC_MODELS`), for validated settings.
AdcModelName = Literal["isaac", "walden", "murmann", "zigzag", "neurosim-sar"]


class CostSettings(BaseModel):
    """What the estimates assume; every field is user-settable (``codesign report`` options)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    adc_model: AdcModelName = Field(
        "isaac", description="ADC model of the headline figures (the band always shows every model).")
    tech_nm: float = Field(ISAAC_NODE_NM, gt=0, le=1000, description="Technology node in nm (ISAAC: 32).")
    sample_rate_hz: float = Field(ISAAC_RATE_HZ, gt=0, le=1e11,
                                  description="Conversions per second of one ADC (ISAAC: 1.2 GS/s).")
    walden_fom_fj: float = Field(DEFAULT_WALDEN_FOM_FJ, gt=0,
                                 description="Walden figure of merit in fJ per conversion step at 32 nm.")
    zigzag_vdd: float = Field(0.9, gt=0, le=2, description="Supply voltage of the ZigZag fit in V (its default 0.9).")


@dataclass(frozen=True)
class AdcTable:
    """An ADC model priced at one operating point: ``energy_pj[b]``, ``area_um2[b]`` for b = 0…max.

    Entry 0 is 0 (a skipped column has no conversion). ``scaling`` says how each number was derived
    from the source's native conditions; ``warnings`` lists extrapolations actually used.
    """

    model: str
    citation: str
    conditions: str
    scaling: str
    energy_pj: np.ndarray
    area_um2: np.ndarray
    warnings: tuple[str, ...]

    def describe(self, bits: Iterable[int]) -> dict:
        return {"model": self.model, "source": self.citation, "conditions": self.conditions,
                "scaling": self.scaling, "warnings": list(self.warnings),
                "per_bits": {int(b): {"energy_pj": float(self.energy_pj[b]), "area_um2": float(self.area_um2[b])}
                             for b in bits if b > 0}}


class AdcModel(ABC):
    """One published ADC model: energy per conversion and area per ADC for a resolution.

    Subclasses give :attr:`name`, :attr:`citation`, the range of bits their source covers
    (``bits_range``, upper bound ``None`` when the source states none) and :meth:`native`, which
    returns ``(energy pJ, area µm², scaling note)`` at the requested node and per-ADC rate.
    """

    name: str
    citation: str
    bits_range: tuple[int, Optional[int]]
    extrapolation = "the source's formula evaluated outside its fitted range"  #: how bits outside the range are priced

    @abstractmethod
    def native(self, bits: int, settings: CostSettings) -> tuple[float, float, str]:
        """Energy per conversion (pJ), area per ADC (µm²) and the scaling path, for ``bits`` ≥ 1."""

    @abstractmethod
    def conditions(self, settings: CostSettings) -> str:
        """The source's native operating point, in words."""

    def in_range(self, bits: int) -> bool:
        low, high = self.bits_range
        return bits >= low and (high is None or bits <= high)

    def table(self, settings: CostSettings, bits_used: Iterable[int]) -> AdcTable:
        """Price every resolution up to the largest used one; warn about extrapolations in use."""
        used = sorted({int(b) for b in bits_used if b > 0})
        top = max(used, default=0)
        energy, area = np.zeros(top + 1), np.zeros(top + 1)
        notes: list[str] = []
        for b in range(1, top + 1):
            energy[b], area[b], note = self.native(b, settings)
            notes.append(note)
        warnings = []
        outside = [b for b in used if not self.in_range(b)]
        if outside:
            low, high = self.bits_range
            span = f"{low}–{high}" if high else f"≥ {low}"
            warnings.append(f"{self.name}: {_bits_list(outside)} b outside the source's {span} b: extrapolated "
                            f"({self.extrapolation})")
        if not node_in_range(settings.tech_nm):
            warnings.append(f"{self.name}: {settings.tech_nm:g} nm is outside {NODE_RANGE_NM[0]:g}–"
                            f"{NODE_RANGE_NM[1]:g} nm: technology factors extrapolated")
        scaling = "; ".join(dict.fromkeys(notes)) if notes else "no resolution in use"
        return AdcTable(self.name, self.citation, self.conditions(settings), scaling, energy, area, tuple(warnings))


def _rate(hz: float) -> str:
    """A sample rate with an SI prefix, never an exponent: 1.2e9 → '1.2 GS/s'."""
    scale, prefix = next(((s, p) for s, p in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")) if hz >= s), (1, ""))
    return f"{hz / scale:g} {prefix}S/s"


def _bits_list(bits: list[int]) -> str:
    return ", ".join(map(str, bits))


class IsaacAdc(AdcModel):
    """ISAAC's 8-bit SAR and its Saberi-scaled 4–10-bit family at 32 nm, 1.2 GS/s (docs/cost-models.md §2.1).

    Between table points nothing is interpolated (bits are integers). Outside 4–10 b the energy and
    area follow the per-bit ratio of the nearest two table entries (geometric extrapolation). The
    sample rate is not modelled: the table is for 1.2 GS/s. Scaled from 32 nm by Stillmaker–Baas.
    """

    name = "isaac"
    citation = (ISAAC_CITATION + "; 4–10 b family scaled per Saberi et al., TCAS-I 2011, as tabulated in "
                "https://github.com/Accelergy-Project/hwcomponents-library (library/isaac.py)")
    bits_range = (4, 10)
    extrapolation = "geometric, with the per-bit ratio of the two nearest table entries"
    #: bits → (pJ per conversion, µm² per ADC) at 32 nm, 1.2 GS/s.
    TABLE = {4: (0.79, 361.04), 5: (0.99, 476.91), 6: (1.20, 626.91), 7: (1.42, 845.18),
             8: (ISAAC_ADC_PJ, ISAAC_ADC_UM2), 9: (1.969078145, 1827.911647), 10: (2.379022742, 3002.008032)}

    def native(self, bits: int, settings: CostSettings) -> tuple[float, float, str]:
        low, high = self.bits_range
        if bits < low:
            edge, ratio_of = low, (low + 1, low)
        elif bits > high:
            edge, ratio_of = high, (high, high - 1)
        else:
            edge, ratio_of = bits, None
        energy, area = self.TABLE[edge]
        if ratio_of:
            (e1, a1), (e0, a0) = self.TABLE[ratio_of[0]], self.TABLE[ratio_of[1]]
            energy *= (e1 / e0) ** (bits - edge)
            area *= (a1 / a0) ** (bits - edge)
        return (energy * energy_scale(ISAAC_NODE_NM, settings.tech_nm),
                area * area_scale(ISAAC_NODE_NM, settings.tech_nm), scaling_note(ISAAC_NODE_NM, settings.tech_nm))

    def conditions(self, settings: CostSettings) -> str:
        return "table at 32 nm, 1.2 GS/s (the sample rate is not modelled)"


class WaldenAdc(AdcModel):
    """E = FOM_W · 2^b (Walden). FOM_W defaults to ISAAC's implied 6.51 fJ/step at 32 nm.

    Area has no Walden law; it follows ISAAC's 1200 µm² at 8 b scaled by 2^(b − 8), as
    hwcomponents-library scales its ISAAC ADC. Both scaled from 32 nm by Stillmaker–Baas. This is
    the "2^N model" of D.U.B. and most pruning papers.
    """

    name = "walden"
    citation = ("Walden, IEEE JSAC 17(4) 1999 (E = FOM·2^b); FOM and 2^b area scaling from ISAAC's ADC "
                "(1.67 pJ, 1200 µm² at 8 b, 32 nm) as in hwcomponents-library library/isaac.py")
    bits_range = (1, None)

    def native(self, bits: int, settings: CostSettings) -> tuple[float, float, str]:
        energy = settings.walden_fom_fj * 1e-3 * 2 ** bits
        area = ISAAC_ADC_UM2 * 2.0 ** (bits - 8)
        return (energy * energy_scale(ISAAC_NODE_NM, settings.tech_nm),
                area * area_scale(ISAAC_NODE_NM, settings.tech_nm), scaling_note(ISAAC_NODE_NM, settings.tech_nm))

    def conditions(self, settings: CostSettings) -> str:
        return f"FOM_W = {settings.walden_fom_fj:.3g} fJ/step at 32 nm; rate not modelled"


class MurmannAdc(AdcModel):
    """Andrulis–Murmann survey fit (docs/cost-models.md §2.3), constants at full precision from the plug-in.

    FOM_S = min(213.78 − 2.872·ln f, FOM_max[⌈b⌉]), FOM_max[n] = 128.31 + 3.2205·n dB;
    SNDR = 6.02·b + 1.76 dB;
    E = 1/(2·10^((FOM_S − SNDR)/10)) · exp(26.05 + 1.880·ln node − 2.829·ln b − 1.470) pJ;
    A = exp(1.346 + 0.9933·ln node + 0.1807·ln f + 0.2991·ln E) µm². Node and rate are inputs of the
    fit, so no technology scaling is applied. The fit needs b ≥ 4 (its −2.829·ln b term makes energy
    *rise* below that); fewer bits are priced as 4 b, i.e. no saving is claimed below the fit's range.
    """

    name = "murmann"
    citation = ("Andrulis et al., 'Modeling Analog-Digital-Converter Energy and Area for Compute-In-Memory "
                "Accelerator Design', arXiv:2404.06553, fit to Murmann's ADC survey; constants from "
                "https://github.com/Accelergy-Project/accelergy-adc-plug-in adc_data/model.yaml (commit 6851cb8)")
    bits_range = (4, None)
    extrapolation = "priced as 4 b, the fit's lower limit"
    # adc_data/model.yaml; max_by_enob is exactly linear: intercept + step·n, n = 0…20.
    FOMS_INTERCEPT, FOMS_FREQ = 213.7806687348118, -2.8719030399529957
    FOMS_MAX_0, FOMS_MAX_STEP, FOMS_MAX_LAST = 128.3068287398817, 3.220511510977564, 20
    TECH_INTERCEPT, TECH_SLOPE = 26.0496215686518, 1.8800369206815004
    ENOB_SLOPE, RESIDUAL = -2.8291256050594527, -1.4702022133784405
    AREA_INTERCEPT, AREA_TECH = 1.3461916439910742, 0.9932794744745022
    AREA_FREQ, AREA_ENERGY = 0.18071538424508238, 0.29912426192653485

    def native(self, bits: int, settings: CostSettings) -> tuple[float, float, str]:
        f, node = settings.sample_rate_hz, settings.tech_nm
        bits = max(bits, self.bits_range[0])
        n = min(math.ceil(bits), self.FOMS_MAX_LAST)
        foms = min(self.FOMS_INTERCEPT + self.FOMS_FREQ * math.log(f), self.FOMS_MAX_0 + self.FOMS_MAX_STEP * n)
        sndr = bits * 20 * math.log10(2) + 10 * math.log10(1.5)
        energy = 1 / (2 * 10 ** ((foms - sndr) / 10)) * math.exp(
            self.TECH_INTERCEPT + self.TECH_SLOPE * math.log(node) + self.ENOB_SLOPE * math.log(bits) + self.RESIDUAL)
        area = math.exp(self.AREA_INTERCEPT + self.AREA_TECH * math.log(node) + self.AREA_FREQ * math.log(f)
                        + self.AREA_ENERGY * math.log(energy))
        return energy, area, f"fit evaluated at {node:g} nm, {_rate(f)} per ADC (no scaling)"

    def conditions(self, settings: CostSettings) -> str:
        return f"survey fit at {settings.tech_nm:g} nm, {_rate(settings.sample_rate_hz)} per ADC (best-case designs)"


class ZigzagAdc(AdcModel):
    """ZigZag's 28 nm AIMC fit (docs/cost-models.md §2.4): E = (100·b + 0.001·4^b)·V_dd² fJ,
    A = 10^(−0.0369·b + 1.206)·2^b µm². Scaled from 28 nm by Stillmaker–Baas; rate not modelled.
    The source states no range of bits."""

    name = "zigzag"
    citation = ("Sun, Houshmand, Verhelst, 'Analog or Digital In-memory Computing? Benchmarking through "
                "Quantitative Modeling', ICCAD 2023, arXiv:2405.14978; https://github.com/KULeuven-MICAS/zigzag "
                "(imc_array.py), fit validated on 3 AIMC macros at 28 nm")
    bits_range = (1, None)
    NODE_NM = 28.0

    def native(self, bits: int, settings: CostSettings) -> tuple[float, float, str]:
        energy = (100 * bits + 0.001 * 4 ** bits) * settings.zigzag_vdd ** 2 * 1e-3
        area = 10 ** (-0.0369 * bits + 1.206) * 2 ** bits
        return (energy * energy_scale(self.NODE_NM, settings.tech_nm),
                area * area_scale(self.NODE_NM, settings.tech_nm), scaling_note(self.NODE_NM, settings.tech_nm))

    def conditions(self, settings: CostSettings) -> str:
        return f"fit at 28 nm, V_dd = {settings.zigzag_vdd:g} V; rate not modelled"


class NeurosimSarAdc(AdcModel):
    """NeuroSim's SAR ADC (docs/cost-models.md §2.5), ADC part only.

    E = (α·b + β) µW · (b + 1) ns, with (α, β) of the LP roadmap at 65/32/22/7/1 nm; other nodes take
    the nearest tabulated node and Stillmaker–Baas energy scaling. A = 212.8·F²·(478 + 182·(b − 1))
    (minimum-transistor multiples, 28F × 7.6F per gate), F = the node. The column-current term
    k/R_col·(b + 1) ns is *not* included: it belongs to the array and needs R_col.
    """

    name = "neurosim-sar"
    citation = ("DNN+NeuroSim V1.4, https://github.com/neurosim/DNN_NeuroSim_V1.4 "
                "(Inference_pytorch/NeuroSIM/SarADC.cpp); area units per V1.3 issue #17")
    bits_range = (1, None)
    #: node nm → (α µW/bit, β µW), LP roadmap.
    CONSTANTS = {65.0: (3.7506, 25.844), 32.0: (1.1294, 8.8998), 22.0: (0.538, 4.3753),
                 7.0: (0.1061, 0.8847), 1.0: (0.0101, 0.0843)}

    def reference_node(self, node_nm: float) -> float:
        return min(self.CONSTANTS, key=lambda n: abs(math.log(n / node_nm)))

    def native(self, bits: int, settings: CostSettings) -> tuple[float, float, str]:
        node = settings.tech_nm
        ref = self.reference_node(node)
        alpha, beta = self.CONSTANTS[ref]
        energy = (alpha * bits + beta) * (bits + 1) * 1e-3
        area = 212.8 * (node * 1e-3) ** 2 * (478 + 182 * (bits - 1))
        if ref == node:
            return energy, area, f"constants tabulated at {node:g} nm, no scaling"
        note = (f"constants of {ref:g} nm, energy ×{energy_scale(ref, node):.3g} by Stillmaker–Baas; "
                f"area formula evaluated at F = {node:g} nm")
        return energy * energy_scale(ref, node), area, note

    def conditions(self, settings: CostSettings) -> str:
        return f"LP constants of {self.reference_node(settings.tech_nm):g} nm; (b+1) ns per conversion; ADC only"


ADC_MODELS: dict[str, AdcModel] = {m.name: m for m in (IsaacAdc(), WaldenAdc(), MurmannAdc(), ZigzagAdc(),
                                                        NeurosimSarAdc())}


def adc_model(name: str) -> AdcModel:
    try:
        return ADC_MODELS[name]
    except KeyError:
        raise CodesignError(f"unknown ADC model '{name}'; choose one of {', '.join(ADC_MODELS)}") from None


# --- other components (ISAAC table, 32 nm) ------------------------------------------------------

ISAAC_CYCLE_NS = 100.0       #: ISAAC's crossbar read cycle.
ISAAC_CONVERSION_RATE = 8 * ISAAC_RATE_HZ  #: conversions per second of one ISAAC IMA (8 ADCs).


@dataclass(frozen=True)
class Component:
    """One non-ADC component from ISAAC's table at 32 nm, per the unit named in ``per``."""

    name: str
    energy_pj: float
    energy_per: str
    area_um2: float
    area_per: str
    derivation: str


def _per_cycle(power_w: float, count: float) -> float:
    """pJ per unit per 100 ns crossbar cycle from an IMA total power shared by ``count`` units."""
    return power_w * ISAAC_CYCLE_NS * 1e-9 / count * 1e12


#: ISAAC IMA (8 crossbars of 128×128, 8 ADCs, 8×128 DACs and S+H, 4 shift-adds), Shafiee et al. Table.
COMPONENTS: dict[str, Component] = {c.name: c for c in (
    Component("dac", _per_cycle(4e-3, 8 * 128), "row per input cycle (1-bit DAC; ×2^(v−1) for v bits)",
              170.0 / (8 * 128), "row", "4 mW and 0.00017 mm² for 8×128 DACs; energy = P × 100 ns / 1024"),
    Component("sample_hold", 10e-6 / ISAAC_CONVERSION_RATE * 1e12, "conversion", 40.0 / (8 * 128),
              "physical column", "10 µW and 0.00004 mm² for 8×128 S+H; energy = P / (8 ADCs × 1.2 GS/s)"),
    Component("array", _per_cycle(2.4e-3, 8), "128×128 crossbar per input cycle (∝ R·C)", 200.0 / 8,
              "128×128 crossbar (∝ R·C)", "2.4 mW and 0.0002 mm² for 8 arrays; energy = P × 100 ns / 8"),
    Component("shift_add", 0.2e-3 / ISAAC_CONVERSION_RATE * 1e12, "conversion", 240.0 / 8, "ADC",
              "0.2 mW and 4 × 60 µm² per IMA of 8 ADCs; energy = P / (8 ADCs × 1.2 GS/s) = 0.021 pJ"),
    Component("registers", _per_cycle(1.24e-3 + 0.23e-3, 8), "crossbar per input cycle (input ∝ R, output ∝ C)",
              (2100.0 + 770.0) / 8, "crossbar (input ∝ R, output ∝ C)",
              "input 2 KB 1.24 mW 0.0021 mm², output 256 B 0.23 mW 0.00077 mm² per IMA of 8 crossbars"),
)}
#: Input register's share of the ``registers`` energy and area (the rest is the output register).
_INPUT_REG_ENERGY = 1.24 / (1.24 + 0.23)
_INPUT_REG_AREA = 2100.0 / (2100.0 + 770.0)


# --- accounting ---------------------------------------------------------------------------------

DESIGNS = ("uniform", "per_crossbar", "per_column", "calibrated")
DESIGN_LABELS = {
    "uniform": "uniform full-resolution ADC",
    "per_crossbar": "per-crossbar lossless (D.U.B.)",
    "per_column": "per-column lossless",
    "calibrated": "per-column calibrated",
}


@dataclass
class LayerTiles:
    """ADC bits of one layer's tiles: ``bits[t, p]`` for tile ``t`` and tile-local physical column
    ``p`` (0 beyond the tile's ``width[t]`` physical columns); ``rows[t]`` wordlines in use;
    ``periphery``, when known, the layer's periphery (:class:`~codesign.hw.periphery.PeripheryParams`
    with ``Bmax`` high enough for every design), which times each design."""

    geometry: Geometry
    positions: Optional[int]
    bits: np.ndarray
    width: np.ndarray
    rows: np.ndarray
    periphery: Optional[object] = None

    @classmethod
    def from_config(cls, layer: LayerConfig, geometry: Geometry, periphery: Optional[object] = None) -> "LayerTiles":
        P = geometry.logical_cols * geometry.phys_per_logical
        bits = np.zeros((len(layer.tiles), P), dtype=np.int64)
        width = np.empty(len(layer.tiles), dtype=np.int64)
        for t, tile in enumerate(layer.tiles):
            width[t] = len(tile.adc_bits)
            bits[t, :width[t]] = tile.adc_bits
        rows = np.array([tile.row_count for tile in layer.tiles], dtype=np.int64)
        return cls(geometry, layer.positions, bits, width, rows, periphery)

    @classmethod
    def from_row_blocks(cls, block_bits: np.ndarray, geometry: Geometry, matrix_rows: int,
                        positions: Optional[int]) -> "LayerTiles":
        """From ``bits[row_block, layer-wide physical column]`` of the default tiling."""
        blocks, total = block_bits.shape
        P = geometry.logical_cols * geometry.phys_per_logical
        col_blocks = ceil_div(total, P)
        padded = np.zeros((blocks, col_blocks * P), dtype=np.int64)
        padded[:, :total] = block_bits
        width = np.minimum(P, total - np.arange(col_blocks) * P)
        rows = np.minimum(geometry.rows, matrix_rows - np.arange(blocks) * geometry.rows)
        return cls(geometry, positions, padded.reshape(blocks * col_blocks, P),
                   np.tile(width, blocks), np.repeat(rows, col_blocks))

    def design_bits(self, design: str) -> np.ndarray:
        """Resolution of every column under ``design`` (``calibrated`` is built from its own config)."""
        present = np.arange(self.bits.shape[1])[None, :] < self.width[:, None]
        if design == "uniform":
            return np.where(present, self.geometry.uniform_bits, 0)
        if design == "per_crossbar":
            return np.where(present, self.bits.max(axis=1, keepdims=True), 0)
        return self.bits


@dataclass
class DesignCounts:
    """Model-independent counts of one design for one layer, per input cycle of one MVM.

    ``columns[b]``: columns converted at ``b`` bits; ``adcs[b]``: ADCs sized for ``b`` bits (an ADC
    exists when one of its columns is converted and is sized for the largest of them);
    ``cycles``: clock cycles of all the layer's MVMs on its slowest tile (0 without a periphery).
    """

    columns: np.ndarray
    adcs: np.ndarray
    live_tiles: int
    live_rows: int
    live_columns: int
    cycles: int


def layer_cycles(tiles: LayerTiles, bits: np.ndarray) -> int:
    """Clock cycles of the layer's ``positions`` MVMs (1 when unknown) on its slowest tile: a tile
    takes its latency for the first vector and its back-to-back period for each further one
    (:class:`~codesign.hw.periphery.Timing`, from the same schedule as the generated RTL)."""
    from .hw.periphery import tile_timing

    if tiles.periphery is None or not bits.size:
        return 0
    more = (tiles.positions or 1) - 1
    cycles = 0
    for row, width in zip(bits, tiles.width):
        timing = tile_timing(tiles.periphery, row[:width].tolist())
        cycles = max(cycles, timing.latency + more * timing.period)
    return cycles


def count_design(tiles: LayerTiles, bits: np.ndarray) -> DesignCounts:
    """Conversions, ADCs, live crossbars and cycles of one design from its per-column bits ``[tiles, P]``."""
    geo = tiles.geometry
    live = bits.max(axis=1) > 0
    P = bits.shape[1]
    group = ceil_div(P, geo.adcs)
    grouped = np.zeros((bits.shape[0], geo.adcs * group), dtype=np.int64)
    grouped[:, :P] = bits
    grouped = grouped.reshape(bits.shape[0], geo.adcs, group)
    adc_bits = grouped.max(axis=2)
    width = int(bits.max(initial=0)) + 1
    return DesignCounts(
        columns=np.bincount(bits[bits > 0], minlength=width),
        adcs=np.bincount(adc_bits[adc_bits > 0], minlength=width),
        live_tiles=int(live.sum()),
        live_rows=int(tiles.rows[live].sum()),
        live_columns=int(tiles.width[live].sum()),
        cycles=layer_cycles(tiles, bits),
    )


@dataclass
class DesignCost:
    """Cost of one design for one layer (or a sum of layers): per inference, by component."""

    energy_pj: dict[str, float]
    area_um2: dict[str, float]
    conversions: int
    latency_cycles: int

    @property
    def total_energy_pj(self) -> float:
        return sum(self.energy_pj.values())

    @property
    def total_area_um2(self) -> float:
        return sum(self.area_um2.values())

    def __add__(self, other: "DesignCost") -> "DesignCost":
        return DesignCost({k: v + other.energy_pj[k] for k, v in self.energy_pj.items()},
                          {k: v + other.area_um2[k] for k, v in self.area_um2.items()},
                          self.conversions + other.conversions, self.latency_cycles + other.latency_cycles)

    def to_json(self, clock_hz: float) -> dict:
        return {"adc_energy_pj": self.energy_pj["adc"], "adc_area_um2": self.area_um2["adc"],
                "energy_pj": self.total_energy_pj, "area_um2": self.total_area_um2,
                "energy_by_component_pj": self.energy_pj, "area_by_component_um2": self.area_um2,
                "conversions": self.conversions, "latency_cycles": self.latency_cycles,
                "latency_ns": self.latency_cycles / clock_hz * 1e9}


def price(counts: DesignCounts, geometry: Geometry, positions: int, adc: AdcTable, tech_nm: float) -> DesignCost:
    """Energy per inference and area of one layer's design under one ADC table."""
    e_scale, a_scale = energy_scale(ISAAC_NODE_NM, tech_nm), area_scale(ISAAC_NODE_NM, tech_nm)
    mvm_cycles = positions * geometry.input_cycles
    conversions = int(counts.columns.sum()) * mvm_cycles
    arrays = counts.live_tiles * geometry.rows * geometry.cols / (128 * 128)  # in 128×128 equivalents
    inputs, outputs = counts.live_tiles * geometry.rows / 128, counts.live_tiles * geometry.cols / 128
    regs_energy = COMPONENTS["registers"].energy_pj * (_INPUT_REG_ENERGY * inputs + (1 - _INPUT_REG_ENERGY) * outputs)
    regs_area = COMPONENTS["registers"].area_um2 * (_INPUT_REG_AREA * inputs + (1 - _INPUT_REG_AREA) * outputs)
    dac_scale = 2.0 ** (geometry.dac_bits - 1)
    energy = {
        "adc": float(counts.columns @ adc.energy_pj[:len(counts.columns)]) * mvm_cycles,
        "dac": COMPONENTS["dac"].energy_pj * dac_scale * counts.live_rows * mvm_cycles * e_scale,
        "sample_hold": COMPONENTS["sample_hold"].energy_pj * conversions * e_scale,
        "array": COMPONENTS["array"].energy_pj * arrays * mvm_cycles * e_scale,
        "shift_add": COMPONENTS["shift_add"].energy_pj * conversions * e_scale,
        "registers": regs_energy * mvm_cycles * e_scale,
    }
    area = {
        "adc": float(counts.adcs @ adc.area_um2[:len(counts.adcs)]),
        "dac": COMPONENTS["dac"].area_um2 * dac_scale * counts.live_rows * a_scale,
        "sample_hold": COMPONENTS["sample_hold"].area_um2 * counts.live_columns * a_scale,
        "array": COMPONENTS["array"].area_um2 * arrays * a_scale,
        "shift_add": COMPONENTS["shift_add"].area_um2 * int(counts.adcs.sum()) * a_scale,
        "registers": regs_area * a_scale,
    }
    return DesignCost(energy, area, conversions, counts.cycles)


@lru_cache(maxsize=64)
def _cached_table(model: str, settings: CostSettings, bits_used: tuple[int, ...]) -> AdcTable:
    return adc_model(model).table(settings, bits_used)


def layer_total_cost(tiles: LayerTiles, design: str, settings: CostSettings = CostSettings()) -> DesignCost:
    """Cost of one layer's design under ``settings.adc_model`` (used by the crossbar-size search)."""
    bits = tiles.design_bits(design)
    table = _cached_table(settings.adc_model, settings, tuple(range(1, int(bits.max(initial=0)) + 1)))
    return price(count_design(tiles, bits), tiles.geometry, tiles.positions or 1, table, settings.tech_nm)


@dataclass
class Estimate:
    """Every design of every layer priced under every ADC model (see :func:`estimate`).

    ``costs[model][design]`` is the list of per-layer :class:`DesignCost` in config order.
    """

    settings: CostSettings
    designs: tuple[str, ...]
    layers: list[str]
    tables: dict[str, AdcTable]
    bits_used: list[int]
    costs: dict[str, dict[str, list[DesignCost]]]
    warnings: list[str] = field(default_factory=list)

    def total(self, model: str, design: str) -> DesignCost:
        layers = self.costs[model][design]
        result = layers[0]
        for cost in layers[1:]:
            result = result + cost
        return result

    def adc_energy(self, model: str, design: str) -> float:
        """ADC energy per inference in pJ, summed over layers."""
        return self.total(model, design).energy_pj["adc"]

    def ratio(self, model: str, design: str, baseline: str, what: str = "adc_energy") -> float:
        """``baseline`` / ``design`` (how many times cheaper ``design`` is) for ``what`` in
        ``adc_energy``, ``energy``, ``adc_area``, ``area``, ``latency``."""
        def value(d: str) -> float:
            cost = self.total(model, d)
            return {"adc_energy": cost.energy_pj["adc"], "energy": cost.total_energy_pj,
                    "adc_area": cost.area_um2["adc"], "area": cost.total_area_um2,
                    "latency": float(cost.latency_cycles)}[what]
        mine = value(design)
        return value(baseline) / mine if mine else math.inf

    def band(self, design: str) -> dict:
        """Min, median and max over ADC models of the ADC energy and of its ratio to uniform."""
        return {"adc_energy_pj": band({m: self.adc_energy(m, design) for m in self.tables}),
                "vs_uniform": band({m: self.ratio(m, design, "uniform") for m in self.tables})}


def band(values: dict[str, float]) -> dict:
    """Min, median and max of per-model values, naming the models at the extremes."""
    ordered = sorted(values.values())
    return {"min": ordered[0], "median": statistics.median(ordered), "max": ordered[-1],
            "min_model": min(values, key=values.__getitem__), "max_model": max(values, key=values.__getitem__),
            "by_model": dict(values)}


def _check_same_tiling(config: HardwareConfig, calibrated: HardwareConfig) -> None:
    mine = [(layer.key, [(t.row_start, t.row_count, t.col_start, t.col_count) for t in layer.tiles])
            for layer in config.layers]
    theirs = [(layer.key, [(t.row_start, t.row_count, t.col_start, t.col_count) for t in layer.tiles])
              for layer in calibrated.layers]
    for (key, tiles), (other_key, other_tiles) in zip(mine, theirs):
        if key != other_key or tiles != other_tiles:
            raise CodesignError(f"the calibrated config differs from hw_config.json at layer '{key}' "
                                f"(layers and tiles must match); calibrate against this folder's config")
    if len(mine) != len(theirs):
        raise CodesignError(f"the calibrated config has {len(theirs)} layers, hw_config.json {len(mine)}; "
                            f"calibrate against this folder's config")
    for layer, other in zip(config.layers, calibrated.layers):
        if config.geometry(layer) != calibrated.geometry(other):
            raise CodesignError(f"the calibrated config maps layer '{layer.key}' on another crossbar; "
                                f"calibrate against this folder's config")


def layer_periphery(config: HardwareConfig, layer: LayerConfig, calibrated: Optional[LayerConfig] = None) -> object:
    """The periphery that times every design of ``layer``: the module ``codesign generate`` builds
    (:func:`codesign.rtl.module_groups`), with ``Bmax`` raised to the uniform design's ``Wy``."""
    from .hw.periphery import PeripheryParams
    from .rtl import chain_length

    geometry, periphery = config.geometry(layer), config.periphery
    bits = [b for source in (layer, calibrated) if source is not None for tile in source.tiles for b in tile.adc_bits]
    try:
        return PeripheryParams(geometry, max([geometry.uniform_bits, *bits]), chain_length(layer),
                               periphery.adc_interface, periphery.conversion_cycles, periphery.stream_bits)
    except ValueError as exc:
        raise CodesignError(f"layer '{layer.key}': {exc}") from None


def estimate(config: HardwareConfig, calibrated: Optional[HardwareConfig] = None,
             settings: Optional[CostSettings] = None, models: Iterable[str] = tuple(ADC_MODELS)) -> Estimate:
    """Price the designs of ``config`` (taken as the per-column lossless config) under ``models``.

    ``calibrated`` (same layers and tiles, bits at or below lossless) adds the ``calibrated`` design.
    Layers whose ``positions`` is unknown count one MVM per inference (a warning says so).
    """
    settings = settings or CostSettings()
    models = [adc_model(name).name for name in models]
    if not config.layers:
        raise CodesignError("the config has no layers: nothing to estimate")
    if calibrated is not None:
        _check_same_tiling(config, calibrated)
    designs = DESIGNS if calibrated is not None else DESIGNS[:3]
    warnings = []
    unknown = [layer.key for layer in config.layers if layer.positions is None]
    if unknown:
        warnings.append(f"positions (MVMs per inference) unknown for {len(unknown)} layer(s) ({', '.join(unknown[:3])}"
                        f"{'…' if len(unknown) > 3 else ''}): counted as 1; save the model as a codesign "
                        f"checkpoint with its architecture to get per-inference figures")
    counts: dict[str, list[DesignCounts]] = {d: [] for d in designs}
    geometries = []
    for index, layer in enumerate(config.layers):
        geo = config.geometry(layer)
        geometries.append(geo)
        periphery = layer_periphery(config, layer, calibrated.layers[index] if calibrated is not None else None)
        tiles = LayerTiles.from_config(layer, geo, periphery)
        for design in designs:
            source = (LayerTiles.from_config(calibrated.layers[index], geo, periphery) if design == "calibrated"
                      else tiles)
            counts[design].append(count_design(source, source.design_bits(design)))
    bits_used = sorted({int(b) for per_layer in counts.values() for c in per_layer
                        for b in (*np.nonzero(c.columns)[0], *np.nonzero(c.adcs)[0])})
    tables = {m: adc_model(m).table(settings, bits_used) for m in models}
    for table in tables.values():
        warnings.extend(table.warnings)
    if not node_in_range(settings.tech_nm):
        warnings.append(f"components: {settings.tech_nm:g} nm outside {NODE_RANGE_NM[0]:g}–{NODE_RANGE_NM[1]:g} nm: "
                        f"technology factors extrapolated")
    costs = {m: {d: [price(c, geo, layer.positions or 1, tables[m], settings.tech_nm)
                     for c, geo, layer in zip(counts[d], geometries, config.layers)]
                 for d in designs} for m in models}
    return Estimate(settings, designs, [layer.key for layer in config.layers], tables, bits_used, costs, warnings)


def adc_energy_ratios(config: HardwareConfig, models: Iterable[str] = ("walden", "isaac"),
                      settings: Optional[CostSettings] = None) -> dict[str, dict[str, float]]:
    """ADC energy per inference of the per-crossbar and per-column lossless designs, and how many
    times cheaper each is than dense-uniform and than per-crossbar, for each model.

    The default models are the 2^N model (``walden``) and the report's default (``isaac``).
    """
    est = estimate(config, settings=settings, models=models)
    return {m: {"uniform_pj": est.adc_energy(m, "uniform"),
                "per_crossbar_pj": est.adc_energy(m, "per_crossbar"),
                "per_column_pj": est.adc_energy(m, "per_column"),
                "per_crossbar_vs_uniform": est.ratio(m, "per_crossbar", "uniform"),
                "per_column_vs_uniform": est.ratio(m, "per_column", "uniform"),
                "per_column_vs_per_crossbar": est.ratio(m, "per_column", "per_crossbar")}
            for m in est.tables}


def dub_levels(config: HardwareConfig) -> dict:
    """Tiles per D.U.B. level (docs/design.md §8.1): level ``k`` = uniform bits − the tile's lossless bits
    (its largest column), ``k`` = 0 … uniform − 1, plus empty tiles (every column skipped). Levels
    are relative to each layer's own uniform resolution."""
    levels = [0] * max(config.geometry(layer).uniform_bits for layer in config.layers)
    empty = 0
    for layer in config.layers:
        uniform = config.geometry(layer).uniform_bits
        for tile in layer.tiles:
            top = max(tile.adc_bits, default=0)
            if top == 0:
                empty += 1
            else:
                levels[max(uniform - top, 0)] += 1
    return {"levels": levels, "empty": empty}
