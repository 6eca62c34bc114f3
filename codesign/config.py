"""``HardwareConfig``: the contract between the stages (docs/design.md §4).

A pydantic model written as ``hw_config.json``. Users may edit it and feed it back with
``--config``; :func:`load_config` turns any schema violation into one line that names the layer
and tile, and :func:`check_against_model` checks an edited config against the model it is used with.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import CodesignError, validation_message
from .mapping import Geometry, TileRange, adcs_problem, max_adcs

SCHEMA_VERSION = 1
MAX_ADC_BITS = 16   #: Largest ADC resolution a config may ask for.
MAX_ADC_SHIFT = 31  #: Largest ADC input shift ``k`` (column values are below 2^20).

AdcBits = Annotated[int, Field(ge=0, le=MAX_ADC_BITS)]
AdcShift = Annotated[int, Field(ge=0, le=MAX_ADC_SHIFT)]


class _Model(BaseModel):
    # strict: 3 is a number of bits, "3", 3.0 and true are not
    model_config = ConfigDict(extra="forbid", strict=True)


class CrossbarConfig(_Model):
    """Crossbar geometry shared by every tile it applies to (docs/design.md §3)."""

    rows: int = Field(128, ge=1, le=4096, description="Wordlines per crossbar (R).")
    cols: int = Field(128, ge=2, le=4096, description="Physical bitlines per crossbar (C).")
    cell_bits: int = Field(2, ge=1, le=4, description="Bits per cell (c).")
    dac_bits: int = Field(1, ge=1, le=16, description="Input bits applied per cycle (v).")
    signed: Literal["differential"] = Field(
        "differential", description="Signed-weight encoding: P = max(q,0) and M = max(-q,0) on separate columns.")
    adcs: int = Field(1, ge=1, le=4096, description=(
        "ADCs per crossbar, 1 … cols; the converted columns are dealt to them at generate time "
        "(docs/periphery.md, 'Lanes')."))

    @model_validator(mode="after")
    def _adcs_fit(self) -> "CrossbarConfig":
        if self.adcs > max_adcs(self.cols):
            raise ValueError(f"adcs {self.adcs} exceeds the {self.cols} physical columns of a crossbar: "
                             f"at most one ADC per column")
        return self


#: Fastest digital clock of the periphery.
MAX_CLOCK_HZ = 1e9


class PeripheryConfig(_Model):
    """The digital periphery of every tile (docs/periphery.md)."""

    adc_interface: Literal["macro", "sar"] = Field("macro", description=(
        "macro: each ADC is an asynchronous macro the periphery starts once per conversion and that "
        "answers with the code; sar: the periphery's synchronous SAR controller, one comparison per cycle."))
    clock_hz: float = Field(MAX_CLOCK_HZ, gt=0, le=MAX_CLOCK_HZ, description="Digital clock of the periphery in Hz.")
    adc_sample_rate_hz: float = Field(1.2e9, gt=0, le=1e11, description=(
        "macro: conversions per second of one ADC macro (ISAAC's: 1.2 GS/s); a conversion takes "
        "ceil(clock_hz / adc_sample_rate_hz) clock cycles, at least one."))
    stream_bits: int = Field(128, ge=8, le=128, description=(
        "Data width of the AXI4-Stream ports in bits; one result must fit in a beat."))

    @property
    def conversion_cycles(self) -> int:
        """Clock cycles per conversion: ``ceil(clock / sample rate)`` (macro, at least 1); 1 (sar)."""
        if self.adc_interface == "sar":
            return 1
        return max(1, math.ceil(self.clock_hz / self.adc_sample_rate_hz - 1e-9))


class MatrixShape(_Model):
    rows: int = Field(ge=1, description="K: matrix rows (layer inputs, wordlines).")
    cols: int = Field(ge=1, description="N: matrix columns (layer outputs).")


class TileConfig(_Model):
    """One crossbar: a block of the layer matrix and the ADC setting of each physical column."""

    row_start: int = Field(ge=0)
    row_count: int = Field(ge=1)
    col_start: int = Field(ge=0, description="First logical column (output) held by the tile.")
    col_count: int = Field(ge=1, description="Logical columns held by the tile (at most L).")
    adc_bits: list[AdcBits] = Field(
        description="ADC resolution b per physical column p = (j·S + s)·2 + pol; 0 = skipped.")
    adc_shift: list[AdcShift] = Field(
        description="ADC input shift k per physical column: code = min(y >> k, 2^b − 1).")

    @property
    def range(self) -> TileRange:
        return TileRange(self.row_start, self.row_count, self.col_start, self.col_count)


class LayerConfig(_Model):
    name: str = Field(min_length=1, description="Module name in the model, e.g. 'features.3'.")
    kind: Literal["conv2d", "linear"]
    group: int = Field(0, ge=0, description="Convolution group whose matrix this is.")
    weight_bits: int = Field(ge=2, le=16)
    input_bits: int = Field(ge=1, le=16)
    matrix: MatrixShape
    crossbar: Optional[CrossbarConfig] = Field(None, description="Per-layer override of the global crossbar.")
    positions: Optional[int] = Field(
        None, ge=1, description="Matrix-vector products per inference (output pixels of a conv); null if unknown.")
    tiles: list[TileConfig]

    def geometry(self, default: CrossbarConfig) -> Geometry:
        xbar = self.crossbar or default
        return Geometry(rows=xbar.rows, cols=xbar.cols, cell_bits=xbar.cell_bits, dac_bits=xbar.dac_bits,
                        weight_bits=self.weight_bits, input_bits=self.input_bits, adcs=xbar.adcs)

    @property
    def key(self) -> str:
        """Unique name: the module name, with ``#g`` appended for groups other than 0."""
        return self.name if self.group == 0 else f"{self.name}#{self.group}"


BUNDLED_PREFIX = "bundled:"


class ModelInfo(_Model):
    """Where the weights came from, so later stages can reload them and detect a different model.

    In a written ``hw_config.json`` the path is relative to the folder holding the file
    (docs/design.md §4); in memory, fresh from ingest, it is the path as given on the command line.
    """

    path: str = Field(description="Model file relative to the folder of this hw_config.json (as given, in a config "
                                  "printed to stdout), or 'bundled:<file>' for the bundled model.")
    absolute_path: Optional[str] = Field(
        None, description="The model file's absolute path when the config was written: the fallback when the "
                          "folder has moved without the model.")
    sha256: str
    format: Literal["state_dict", "checkpoint", "torchscript", "module", "pt2", "onnx", "safetensors"]
    arch: Optional[str] = None
    per_channel: bool = False

    @property
    def bundled(self) -> bool:
        return self.path.startswith(BUNDLED_PREFIX)

    def written_in(self, folder: Path) -> "ModelInfo":
        """This info as a config in ``folder`` stores it: ``path`` relative to ``folder``, and absolute."""
        if self.bundled:
            return self
        file = Path(self.absolute_path) if self.absolute_path else Path(self.path).resolve()
        return self.model_copy(update={"path": Path(os.path.relpath(file, Path(folder).resolve())).as_posix(),
                                       "absolute_path": str(file)})

    def locate(self, folder: Path) -> Optional[Path]:
        """The model file of a config that sits in ``folder`` (None: the bundled model): ``folder/path``,
        else ``absolute_path``, else ``path`` from the working directory (configs printed to stdout)."""
        if self.bundled:
            return None
        candidates = [Path(folder) / self.path, *([Path(self.absolute_path)] if self.absolute_path else []),
                      Path(self.path)]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            tried = ", ".join(dict.fromkeys(str(c) for c in candidates))
            raise CodesignError(f"the model of {Path(folder) / 'hw_config.json'} is not found (tried {tried}): "
                                f"pass --model FILE")
        return found


Percent = float  #: A share in percent (a name of its own: a field below is called 'float').


class SplitAccuracy(_Model):
    """Top-1 accuracy (percent) on one split, as ``codesign calibrate`` measured it."""

    images: int = Field(ge=0)
    searched: bool = Field(description="Whether the budget was enforced on this split (in-sample).")
    float: Percent = Field(description="The float model as stored.")
    ideal: Percent = Field(description="Integer-quantized with exact products (every lossless design).")
    crossbar: Percent = Field(description="Under this config's ADC bits and shifts.")
    drop: Percent = Field(description="ideal − crossbar, in percentage points.")
    flip_rate: Percent = Field(description="Share of images (percent) whose prediction differs from ideal.")


class CalibrationRecord(_Model):
    """What ``codesign calibrate`` chose these bits for and measured with them (docs/design.md §3.15)."""

    data: str = Field(description="Dataset spec (--data).")
    budget: float = Field(ge=0, description="Largest flip rate allowed on the search split, in percent.")
    search_split: Literal["train", "val", "test"]
    tolerance: Optional[float] = Field(description="The chosen τ; null: not even τ = 0 met the budget.")
    accuracy: dict[str, SplitAccuracy] = Field(description="Per split: accuracies three ways.")


class HardwareConfig(_Model):
    schema_version: Literal[1] = SCHEMA_VERSION
    crossbar: CrossbarConfig
    periphery: PeripheryConfig = Field(default_factory=PeripheryConfig,
                                       description="The digital periphery (docs/periphery.md).")
    layers: list[LayerConfig]
    model: Optional[ModelInfo] = None
    calibration: Optional[CalibrationRecord] = Field(
        None, description="Set by 'codesign calibrate': the budget these bits were chosen for and the accuracies measured.")

    @model_validator(mode="after")
    def _consistent(self) -> "HardwareConfig":
        seen: set[str] = set()
        for layer in self.layers:
            if layer.key in seen:
                raise ValueError(f"layer '{layer.key}' appears twice")
            seen.add(layer.key)
            try:
                geo = layer.geometry(self.crossbar)
            except ValueError as exc:
                raise ValueError(f"layer '{layer.key}': {exc}") from None
            if problem := adcs_problem(geo):
                raise ValueError(f"layer '{layer.key}': {problem}")
            for index, tile in enumerate(layer.tiles):
                where = f"layer '{layer.key}' tile {index}"
                expected = tile.col_count * geo.phys_per_logical
                for field in ("adc_bits", "adc_shift"):
                    if len(getattr(tile, field)) != expected:
                        raise ValueError(
                            f"{where}: {field} has {len(getattr(tile, field))} entries, expected "
                            f"{expected} (col_count {tile.col_count} × 2S = {geo.phys_per_logical})")
                if tile.row_count > geo.rows:
                    raise ValueError(f"{where}: row_count {tile.row_count} exceeds the crossbar's {geo.rows} rows")
                if tile.col_count > geo.logical_cols:
                    raise ValueError(f"{where}: col_count {tile.col_count} exceeds the crossbar's "
                                     f"{geo.logical_cols} logical columns")
                if (tile.row_start + tile.row_count > layer.matrix.rows
                        or tile.col_start + tile.col_count > layer.matrix.cols):
                    raise ValueError(f"{where}: reaches outside the {layer.matrix.rows}×{layer.matrix.cols} matrix")
        return self

    def layer(self, key: str) -> LayerConfig:
        for layer in self.layers:
            if layer.key == key or layer.name == key:
                return layer
        names = ", ".join(layer.key for layer in self.layers)
        raise CodesignError(f"no layer '{key}' in the config; layers are: {names}")

    def geometry(self, layer: LayerConfig) -> Geometry:
        return layer.geometry(self.crossbar)

    def written_in(self, folder: Path) -> "HardwareConfig":
        """This config as a file in ``folder`` holds it: the model path relative to ``folder``."""
        return self.model_copy(update={"model": self.model.written_in(folder)}) if self.model else self

    def to_json(self) -> str:
        """Deterministic JSON: two-space indentation, lists of numbers on one line."""
        return _dumps(self.model_dump(mode="json")) + "\n"


def _dumps(value: Any, indent: str = "") -> str:
    if isinstance(value, dict):
        if not value:
            return "{}"
        inner = indent + "  "
        items = (f"{inner}{json.dumps(k)}: {_dumps(v, inner)}" for k, v in value.items())
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(value, list) and value and isinstance(value[0], (dict, list)):
        inner = indent + "  "
        return "[\n" + ",\n".join(inner + _dumps(v, inner) for v in value) + "\n" + indent + "]"
    if isinstance(value, list):
        return json.dumps(value, separators=(",", ":"))
    return json.dumps(value)


def schema_json() -> str:
    """The JSON Schema of ``hw_config.json``."""
    schema = HardwareConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "codesign hw_config.json"
    return json.dumps(schema, indent=2) + "\n"


def field_range(model: type[BaseModel], name: str) -> tuple[Optional[int], Optional[int]]:
    """The inclusive ``(low, high)`` bounds of an integer field (None where unbounded): the command
    line's options use them, so a rule lives in one place."""
    low = high = None
    for rule in model.model_fields[name].metadata:
        if hasattr(rule, "ge"):
            low = rule.ge
        if hasattr(rule, "gt"):
            low = rule.gt + 1
        if hasattr(rule, "le"):
            high = rule.le
        if hasattr(rule, "lt"):
            high = rule.lt - 1
    return low, high


def parse_config(text: str, source: str = "config") -> HardwareConfig:
    """Validate JSON text; any problem becomes one :class:`CodesignError` line."""
    from .files import parse_json

    data = parse_json(text, source, "give a hw_config.json as 'codesign analyze --json' writes it")
    try:
        return HardwareConfig.model_validate(data)
    except ValidationError as exc:
        raise CodesignError(f"{source}: {_describe(exc, data)}") from None


def load_config(path: str | Path) -> HardwareConfig:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise CodesignError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CodesignError(f"cannot read config {path}: {exc}") from None
    return parse_config(text, str(path))


def _describe(exc: ValidationError, data: Any) -> str:
    """First validation error as 'layer 'x' tile 3 adc_bits[5]: message'."""
    err = exc.errors()[0]
    loc = list(err["loc"])
    parts: list[str] = []
    node = data
    while loc:
        key = loc.pop(0)
        if key == "layers" and loc and isinstance(node, dict) and isinstance(loc[0], int):
            index = loc.pop(0)
            node = node["layers"][index] if index < len(node.get("layers", [])) else {}
            name = node.get("name") if isinstance(node, dict) else None
            parts.append(f"layer '{name}'" if name else f"layer {index}")
        elif key == "tiles" and loc and isinstance(loc[0], int):
            index = loc.pop(0)
            node = node["tiles"][index] if isinstance(node, dict) and index < len(node.get("tiles", [])) else {}
            parts.append(f"tile {index}")
        elif isinstance(key, int) and parts:
            parts[-1] += f"[{key}]"
        else:
            parts.append(str(key))
            node = node.get(key, {}) if isinstance(node, dict) else {}
    message = validation_message(err)
    return (" ".join(parts) + ": " if parts else "") + message


def check_against_model(config: HardwareConfig, layers: list[Any]) -> None:
    """Check that ``config`` fits the model's layers (names, kinds, shapes, tile coverage).

    ``layers`` are :class:`codesign.ingest.LayerSpec` objects; errors name the layer and tile.
    """
    by_key = {layer.key: layer for layer in config.layers}
    model_keys = [spec.key for spec in layers]
    missing = [key for key in model_keys if key not in by_key]
    if missing:
        raise CodesignError(f"config has no entry for layer '{missing[0]}' of the model "
                            f"(regenerate it with 'codesign analyze --json')")
    extra = [key for key in by_key if key not in set(model_keys)]
    if extra:
        raise CodesignError(f"config layer '{extra[0]}' is not in the model; model layers: {', '.join(model_keys)}")
    for spec in layers:
        layer = by_key[spec.key]
        K, N = spec.q.shape
        if layer.kind != spec.kind:
            raise CodesignError(f"layer '{spec.key}': config says {layer.kind}, the model has a {spec.kind}")
        if (layer.matrix.rows, layer.matrix.cols) != (K, N):
            raise CodesignError(f"layer '{spec.key}': config matrix is {layer.matrix.rows}×{layer.matrix.cols}, "
                                f"the model's is {K}×{N}")
        check_coverage(layer)


def check_coverage(layer: LayerConfig) -> None:
    """Every matrix element must be held by exactly one tile."""
    K, N = layer.matrix.rows, layer.matrix.cols
    count = np.zeros((K, N), dtype=np.uint16)
    for tile in layer.tiles:
        count[tile.row_start:tile.row_start + tile.row_count, tile.col_start:tile.col_start + tile.col_count] += 1
    if (count == 1).all():
        return
    rows, cols = np.nonzero(count != 1)
    r, c = int(rows[0]), int(cols[0])
    if count[r, c] == 0:
        raise CodesignError(f"layer '{layer.key}': the tiles do not cover the matrix — row {r}, column {c} "
                            f"is in no tile (tiles must partition the {K}×{N} matrix)")
    owners = [i for i, t in enumerate(layer.tiles)
              if t.row_start <= r < t.row_start + t.row_count and t.col_start <= c < t.col_start + t.col_count]
    raise CodesignError(f"layer '{layer.key}': tiles {owners[0]} and {owners[1]} overlap at row {r}, column {c}")
