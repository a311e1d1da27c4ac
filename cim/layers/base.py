"""What every layer builder shares: the result it reports and the progress callback it takes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

#: progress callback: ``progress(stage, done, total)``; the CLI draws it as a bar
Progress = Callable[[str, int, int], None]


@dataclass
class LayerResult:
    """What a layer build produced, for the city manifest and the CLI summary."""

    id: str
    kind: str  # buildings | terrain | imagery | pointcloud | bim
    path: Path
    count: int
    tiles: int
    triangles: int
    bytes: int
    bounds: dict[str, float]
    schema: dict[str, str]
    seconds: float
    resumed_tiles: int = 0
    skipped: int = 0
    repaired: int = 0
    warnings: list[str] = field(default_factory=list)
    #: how city.json links the layer: "3dtiles" (url to tileset.json), "quantized-mesh" (url to
    #: the folder holding layer.json), "imagery" (url template); and extra manifest keys
    format: str = "3dtiles"
    url: str = "tileset.json"
    extra: dict = field(default_factory=dict)
    #: rows for the city's search index (cim.searchindex.SearchRows), when the layer has features
    search: object | None = field(default=None, repr=False)


