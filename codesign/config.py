"""``HardwareConfig``: the contract between the stages (DESIGN.md section 4).

A pydantic model written as ``hw_config.json``. Users may edit it and feed it back with
``--config``; :func:`load_config` turns any schema violation into one line that names the layer
and tile, and :func:`check_against_model` checks an edited config against the model it is used with.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import CodesignError
from .mapping import Geometry, TileRange, adcs_problem

SCHEMA_VERSION = 1
MAX_ADC_BITS = 16   #: Largest ADC resolution a config may ask for.
MAX_ADC_SHIFT = 31  #: Largest ADC input shift ``k`` (column values are below 2^20).

AdcBits = Annotated[int, Field(ge=0, le=MAX_ADC_BITS)]
AdcShift = Annotated[int, Field(ge=0, le=MAX_ADC_SHIFT)]


class _Model(BaseModel):
    # strict: 3 is a number of bits, "3", 3.0 and true are not
    model_config = ConfigDict(extra="forbid", strict=True)


class CrossbarConfig(_Model):
    """Crossbar geometry shared by every tile it applies to (DESIGN 3)."""

    rows: int = Field(128, ge=1, le=4096, description="Wordlines per crossbar (R).")
    cols: int = Field(128, ge=2, le=4096, description="Physical bitlines per crossbar (C).")
    cell_bits: int = Field(2, ge=1, le=4, description="Bits per cell (c).")
    dac_bits: int = Field(1, ge=1, le=16, description="Input bits applied per cycle (v).")
    signed: Literal["differential"] = Field(
        "differential", description="Signed-weight encoding: P = max(q,0) and M = max(-q,0) on separate columns.")
    adcs: int = Field(1, ge=1, le=4096, description="SAR ADCs per crossbar; its columns are shared among them.")


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


class ModelInfo(_Model):
    """Where the weights came from, so later stages can reload them and detect a different model."""

    path: str = Field(description="Model file as given, or 'bundled:<file>' for the bundled model.")
    sha256: str
    format: Literal["state_dict", "checkpoint", "torchscript", "module"]
    arch: Optional[str] = None
    per_channel: bool = False


class HardwareConfig(_Model):
    schema_version: Literal[1] = SCHEMA_VERSION
    crossbar: CrossbarConfig
    layers: list[LayerConfig]
    model: Optional[ModelInfo] = None

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
    message = err["msg"].removeprefix("Value error, ")
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
