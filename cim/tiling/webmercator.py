"""The Web Mercator (EPSG:3857) XYZ tile grid: what CesiumJS's ``WebMercatorTilingScheme`` and
``UrlTemplateImageryProvider`` expect by default (y counts from the north)."""

from __future__ import annotations

import math

__all__ = [
    "ORIGIN",
    "TILE_SIZE",
    "MAX_LAT",
    "tile_of",
    "tile_bounds",
    "tiles_covering",
    "ground_resolution",
    "zoom_for_resolution",
]

ORIGIN = 20037508.342789244  # half the projected width of the world, metres
TILE_SIZE = 256
MAX_LAT = 85.0511287798066


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    """The (x, y) of the tile holding a point at zoom ``z``."""
    lat = max(-MAX_LAT, min(MAX_LAT, lat))
    n = 1 << z
    x = int((lon + 180.0) / 360.0 * n)
    phi = math.radians(lat)
    y = int((1.0 - math.log(math.tan(phi) + 1.0 / math.cos(phi)) / math.pi) / 2.0 * n)
    return min(max(x, 0), n - 1), min(max(y, 0), n - 1)


def tile_bounds(x: int, y: int, z: int) -> tuple[float, float, float, float]:
    """(xmin, ymin, xmax, ymax) of a tile in EPSG:3857 metres."""
    size = 2.0 * ORIGIN / (1 << z)
    return -ORIGIN + x * size, ORIGIN - (y + 1) * size, -ORIGIN + (x + 1) * size, ORIGIN - y * size


def tiles_covering(west: float, south: float, east: float, north: float, z: int) -> tuple[int, int, int, int]:
    """(xmin, ymin, xmax, ymax) inclusive tile index ranges covering a lon/lat box at zoom ``z``."""
    x0, y0 = tile_of(west, north, z)
    x1, y1 = tile_of(east, south, z)
    return x0, y0, x1, y1


def ground_resolution(lat: float, z: int) -> float:
    """Metres on the ground per pixel of a 256-pixel tile at latitude ``lat`` and zoom ``z``."""
    return math.cos(math.radians(lat)) * 2.0 * ORIGIN / (TILE_SIZE * (1 << z))


def zoom_for_resolution(res: float, lat: float) -> int:
    """The smallest zoom whose pixels are at least as fine as ``res`` metres (capped at 22)."""
    for z in range(23):
        if ground_resolution(lat, z) <= res * 1.0001:
            return z
    return 22
