"""Small synthetic scenes with known answers, built in numpy (no city build)."""

from __future__ import annotations

import numpy as np
import shapely

from cim.analysis.model import SurfaceModel, model_from_polygons

#: a corner of the sample city's area in EPSG:4544 (about 105.78 E, 34.57 N)
X0, Y0 = 566000.0, 3827400.0
GROUND = 1100.0


def boxes_model(
    boxes: list[tuple[float, float, float, float, float]],
    *,
    size: float = 400.0,
    res: float = 1.0,
    uses: list[str] | None = None,
    dem: np.ndarray | None = None,
) -> SurfaceModel:
    """Boxes ``(xmin, ymin, xmax, ymax, height)`` in metres from the scene's south-west corner,
    on flat ground at :data:`GROUND` (or ``dem``) over a ``size`` × ``size`` m grid."""
    n = int(round(size / res))
    grid = np.full((n, n), GROUND, dtype=np.float32) if dem is None else dem.astype(np.float32)
    polys = np.array([shapely.box(X0 + a, Y0 + b, X0 + c, Y0 + d) for a, b, c, d, _ in boxes], dtype=object)
    heights = np.array([h for *_, h in boxes], dtype=np.float64)
    ids = np.array([f"b{i}" for i in range(len(boxes))], dtype=object)
    use = np.array(uses if uses is not None else ["residential"] * len(boxes), dtype=object)
    return model_from_polygons(polys, heights, ids, use, grid, X0, Y0 + n * res, res, "EPSG:4544")
