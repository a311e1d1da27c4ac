"""The options of a BIM layer (recipe keys and ``cim convert bim`` flags)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cim.errors import CimInputError
from cim.layers.base import LayerOptions, option
from cim.sources.ifc import GeometryOptions

__all__ = ["BimOptions", "VIEWER_PROPERTIES"]

#: the attribute names viewers group and filter BIM elements by
VIEWER_PROPERTIES = {"class": "IfcClass", "storey": "Storey", "id": "GlobalId", "name": "Name", "type": "Type", "model": "Model"}


@dataclass
class BimOptions(LayerOptions):
    """How IFC models are placed, meshed and tiled."""

    crs: str | None = option(None, help="CRS of --origin, and of a model whose map conversion names none [default: the city's].")
    origin: tuple[float, float, float] | None = option(None, help="E N H (in --crs) or lon lat h where each model's local origin goes.")
    rotation: float | None = option(None, help="Degrees counter-clockwise from grid east to the models' +X.")
    element_timeout: float = option(60.0, help="Seconds one element may take before it is stopped and reported.")
    max_voids: int = option(256, help="An element with more openings is drawn without them (0: subtract them all).")
    threads: int | None = option(None, help="Geometry iterator threads [default: the number of cores, at most 8].", key=False)
    geometry_library: Literal["opencascade", "manifold"] = option("opencascade", help="ifcopenshell's geometry kernel.")
    start: Literal["auto", "process", "spawn"] = option(
        "auto",
        help="Where the geometry kernel runs: auto (tiny models in this process), process, or spawn (a fresh interpreter).",
        key=False,
    )
    in_process_elements: int = option(8, help="The most elements a model made in this process may have (0: never).", key=False)
    max_triangles: int = option(300_000, help="Most triangles in one storey or detail tile.")
    min_storey_size: float = option(0.5, help="Elements smaller than this (m, box diagonal) wait for the detail tiles.")
    max_properties: int = option(256, help="Most property-set columns per model (the most common first).")

    def check(self, where: str) -> None:
        if not self.element_timeout > 0:
            raise CimInputError(f"{where}: option 'element_timeout' must be positive, got {self.element_timeout}")
        for name in ("max_voids", "in_process_elements"):
            if getattr(self, name) < 0:
                raise CimInputError(f"{where}: option {name!r} must not be negative, got {getattr(self, name)}")
        for name in ("max_triangles", "max_properties"):
            if getattr(self, name) < 1:
                raise CimInputError(f"{where}: option {name!r} must be at least 1, got {getattr(self, name)}")
        if self.threads is not None and self.threads < 1:
            raise CimInputError(f"{where}: option 'threads' must be at least 1, got {self.threads}")

    def geometry(self) -> GeometryOptions:
        """The kernel's options."""
        return GeometryOptions(
            threads=self.threads,
            element_timeout=self.element_timeout,
            max_voids=self.max_voids,
            geometry_library=self.geometry_library,
            start=self.start,
            in_process_elements=self.in_process_elements,
        )
