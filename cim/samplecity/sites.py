"""Where the sample city's BIM buildings and lidar survey go."""

from __future__ import annotations

import numpy as np
import shapely

from cim.samplecity.terrain import CENTRE_E, CENTRE_N

__all__ = ["bim_sites", "lidar_bounds"]


def bim_sites(geoms: list, attrs: dict[str, np.ndarray], count: int, min_floors: int = 4, max_floors: int = 16) -> list[dict]:
    """The ``count`` largest rectangular footprints with ``min_floors``–``max_floors`` floors,
    as IFC building sites.

    Returns one dict per site: the footprint's index and id, its centre (easting, northing),
    width and depth (m), rotation (degrees, counter-clockwise from east) and storeys.
    """
    geoms_a = np.array(geoms, dtype=object)
    simple = (shapely.get_type_id(geoms_a) == 3) & (shapely.get_num_interior_rings(geoms_a) == 0)
    four = shapely.get_num_coordinates(geoms_a) == 5
    floors = attrs["floors"].astype(int)
    candidates = np.flatnonzero(simple & four & (floors >= min_floors) & (floors <= max_floors))
    order = candidates[np.argsort(-shapely.area(geoms_a[candidates]), kind="stable")]
    sites = []
    for i in order[:count]:
        ring = np.asarray(geoms_a[i].exterior.coords)[:4]
        e0, e1 = ring[1] - ring[0], ring[2] - ring[1]
        width, depth = float(np.hypot(*e0)), float(np.hypot(*e1))
        centre = ring.mean(axis=0)
        sites.append(
            {
                "index": int(i),
                "id": str(attrs["id"][i]),
                "easting": float(centre[0]),
                "northing": float(centre[1]),
                "width": width,
                "depth": depth,
                "rotation": float(np.degrees(np.arctan2(e0[1], e0[0]))),
                "storeys": int(floors[i]),
                "name": str(attrs["name"][i]),
            }
        )
    return sites


def lidar_bounds(bounds: tuple[float, float, float, float], preset: str) -> tuple[float, float, float, float]:
    """The surveyed part of the preset: all of it, except the city where a 5 km × 2.5 km
    stretch of the valley centre is flown (8 pts/m² there makes 100 M points); ``survey`` flies
    the whole city."""
    if preset != "city":
        return bounds
    return (CENTRE_E - 2500.0, CENTRE_N - 1250.0, CENTRE_E + 2500.0, CENTRE_N + 1250.0)
