"""The ports of a generated tile module, read from its ``<module>.json`` (``Component.metadata``).

Port names, widths and directions, and every parameter the stream formats depend on, come from
that file: :class:`PortMap` rebuilds the module's
:class:`~codesign.hw.periphery.PeripheryParams`, whose functions pack input planes and ``acc``
values into beats and unpack result beats (:mod:`codesign.hw.periphery`, "port formats").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from codesign.hw.periphery import PeripheryParams
from codesign.mapping import Geometry

#: Key of the tile annotation in ``interface.annotations`` (:class:`codesign.hw.tile.TileAnnotation`).
ANNOTATION = "urn:codesign:tile-periphery:2"


def flatten_ports(members: dict) -> Iterator[dict]:
    """Every port of a ``Component.metadata`` member tree, in declaration order."""
    for member in members.values():
        for item in (member if isinstance(member, list) else [member]):
            if item["type"] == "port":
                yield item
            else:
                yield from flatten_ports(item["members"])


class PortMap:
    """Ports, parameters and stream formats of one tile module.

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
                             f"not a codesign tile module of this version") from None
        self.ports: dict[str, dict] = {port["name"]: port for port in flatten_ports(interface["members"])}
        self.parameters: dict[str, int] = dict(annotation["parameters"])
        self.interface: str = annotation["interface"]
        p = self.parameters
        geometry = Geometry(rows=p["rows"], cols=p["cols"], cell_bits=p["cell_bits"], dac_bits=p["dac_bits"],
                            weight_bits=p["weight_bits"], input_bits=p["input_bits"], adcs=p["adcs"])
        self.params = PeripheryParams(geometry, p["bmax"], p["chain"], self.interface, p["conversion_cycles"],
                                      p["stream_width"])

    @classmethod
    def load(cls, path: str | Path) -> "PortMap":
        return cls(json.loads(Path(path).read_text()))

    def width(self, port: str) -> int:
        return self.ports[port]["width"]

    @property
    def adcs(self) -> int:
        return self.parameters["adcs"]
