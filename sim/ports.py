"""The ports of a generated tile module, read from its ``<module>.json`` (``Component.metadata``).

Widths, directions, signedness and the bit fields of the packed ports (``i_stream__payload``,
``o_stream__payload``, ``wordline``, ``config__data``) all come from that file, never from
constants here: :class:`PortMap` packs Python integers into port values and unpacks them back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

#: Key of the tile annotation in ``interface.annotations`` (:class:`codesign.hw.tile.TileAnnotation`).
ANNOTATION = "urn:codesign:tile-periphery:1"


def flatten_ports(members: dict) -> Iterator[dict]:
    """Every port of a ``Component.metadata`` member tree, in declaration order."""
    for member in members.values():
        for item in (member if isinstance(member, list) else [member]):
            if item["type"] == "port":
                yield item
            else:
                yield from flatten_ports(item["members"])


@dataclass(frozen=True)
class Field:
    """One field of a packed port: ``count`` elements of ``width`` bits from bit ``offset``."""

    name: str
    offset: int
    count: int
    width: int
    signed: bool

    def pack(self, values: Sequence[int]) -> int:
        """The field's bits (at their offset) for ``values``, two's complement if signed."""
        if len(values) > self.count:
            raise ValueError(f"field {self.name} holds {self.count} elements, not {len(values)}")
        mask = (1 << self.width) - 1
        return sum((int(v) & mask) << (self.offset + i * self.width) for i, v in enumerate(values))

    def unpack(self, word: int) -> list[int]:
        """The ``count`` elements of the field in ``word``, sign-extended if signed."""
        width = self.width
        values = [(word >> (self.offset + i * width)) & ((1 << width) - 1) for i in range(self.count)]
        return [v - (1 << width) if self.signed and v >> (width - 1) else v for v in values]


class PortMap:
    """Ports, parameters and packed-port fields of one tile module.

    Parameters
    ----------
    metadata : dict
        The module's ``<module>.json``.
    """

    def __init__(self, metadata: dict):
        interface = metadata["interface"]
        try:
            annotation = interface["annotations"][ANNOTATION]
        except KeyError:
            raise ValueError(f"the port description has no {ANNOTATION} annotation: "
                             f"not a codesign tile module") from None
        self.ports: dict[str, dict] = {port["name"]: port for port in flatten_ports(interface["members"])}
        self.parameters: dict[str, int] = dict(annotation["parameters"])
        self.fields: dict[str, dict[str, Field]] = {
            port: {f["name"]: Field(**f) for f in fields} for port, fields in annotation["fields"].items()}

    @classmethod
    def load(cls, path: str | Path) -> "PortMap":
        return cls(json.loads(Path(path).read_text()))

    def field(self, port: str, name: str) -> Field:
        return self.fields[port][name]

    def width(self, port: str) -> int:
        return self.ports[port]["width"]

    @property
    def adcs(self) -> int:
        return self.parameters["adcs"]

    def pack_vector(self, x: Sequence[int], acc: Sequence[int]) -> int:
        """``i_stream__payload`` for activations ``x[R]`` and starting values ``acc[L]``."""
        return self.field("i_stream__payload", "x").pack(x) | self.field("i_stream__payload", "acc").pack(acc)

    def unpack_results(self, word: int) -> list[int]:
        """The ``L`` signed results of an ``o_stream__payload``."""
        return self.field("o_stream__payload", "results").unpack(word)

    def pack_wordline(self, digits: Sequence[int]) -> int:
        """``wordline`` for per-row input digits ``x_t[R]``."""
        return self.field("wordline", "x_t").pack(digits)
