"""Point-cloud test helpers: small LAS/LAZ files with known points, and readers of a point-cloud layer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import laspy
import numpy as np
from pyproj import CRS

from cim.formats.points import decode_points_glb
from tests.helpers import REALDATA

#: the real third-party point clouds
REAL_POINTCLOUDS = REALDATA / "pointcloud"


def write_las(
    path: Path,
    xyz: np.ndarray,
    *,
    crs: str | None = "EPSG:4544",
    point_format: int = 3,
    version: str = "1.2",
    rgb: np.ndarray | None = None,
    intensity: np.ndarray | None = None,
    classification: np.ndarray | None = None,
    return_number: np.ndarray | None = None,
    scale: float = 0.001,
) -> Path:
    """A small LAS/LAZ file (by suffix) with the given points and attributes."""
    n = len(xyz)
    h = laspy.LasHeader(point_format=point_format, version=version)
    h.scales = np.array([scale, scale, scale])
    h.offsets = np.floor(xyz.min(axis=0))
    if crs is not None:
        h.add_crs(CRS.from_user_input(crs))
    las = laspy.LasData(h)
    las.x, las.y, las.z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    if intensity is not None:
        las.intensity = intensity
    if classification is not None:
        las.classification = classification
    if return_number is not None:
        las.return_number = return_number
        las.number_of_returns = np.maximum(return_number, 1)
    if rgb is not None:
        las.red, las.green, las.blue = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    las.write(path)
    assert laspy.read(path).header.point_count == n
    return path


def id_points(
    n: int, seed: int = 0, centre: tuple[float, float, float] = (566062.0, 3828235.0, 1150.0), size: float = 300.0
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points over a hilly patch and an id in 0..n-1 for each, carried as 8-bit RGB."""
    rng = np.random.default_rng(seed)
    x = centre[0] + rng.uniform(-size / 2, size / 2, n)
    y = centre[1] + rng.uniform(-size / 2, size / 2, n)
    z = centre[2] + 10 * np.sin(x / 40.0) + 5 * np.cos(y / 25.0) + rng.exponential(2.0, n)
    ids = np.arange(n)
    rgb = np.stack([ids & 255, (ids >> 8) & 255, (ids >> 16) & 255], axis=1).astype(np.uint16)
    return np.stack([x, y, z], axis=1), rgb


def walk(tile: dict, parent: dict | None = None) -> Iterator[tuple[dict, dict | None]]:
    """Every tile of a tileset with its parent."""
    yield tile, parent
    for child in tile.get("children", []):
        yield from walk(child, tile)


def load_layer(layer: Path) -> tuple[dict, dict[str, dict[str, np.ndarray]]]:
    """The tileset and every tile decoded, by content uri."""
    ts = json.loads((layer / "tileset.json").read_text())
    tiles = {}
    for tile, _ in walk(ts["root"]):
        if "content" in tile:
            uri = tile["content"]["uri"]
            tiles[uri] = decode_points_glb((layer / uri).read_bytes())
    return ts, tiles


def quantization_step(glb: bytes) -> float:
    """Largest position step (m) of a tile: 16-bit quantized, 24-bit mantissas (the meshopt
    EXPONENTIAL filter: a power of two), or float32 rounding."""
    from cim.formats.glb import read_glb
    from cim.formats.meshopt import meshopt_decode_attributes

    doc, binary = read_glb(glb)
    acc = doc["accessors"][doc["meshes"][0]["primitives"][0]["attributes"]["POSITION"]]
    if acc["componentType"] != 5126:
        return max(doc["nodes"][0]["scale"]) / 65535.0
    ext = doc["bufferViews"][acc["bufferView"]].get("extensions", {}).get("EXT_meshopt_compression", {})
    if ext.get("filter") == "EXPONENTIAL":
        raw = meshopt_decode_attributes(binary[ext["byteOffset"] : ext["byteOffset"] + ext["byteLength"]], ext["count"], ext["byteStride"])
        return float(2.0 ** int((raw.view("<i4") >> 24).max()))
    # float32 relative to the node: twice its rounding, or the power-of-two step the values lie on
    from cim.formats.glb import read_accessor

    values = np.abs(read_accessor(doc, binary, doc["meshes"][0]["primitives"][0]["attributes"]["POSITION"]).astype(np.float64))
    step = 2 * float(values.max()) * 2.0**-23
    for k in range(10, -30, -1):
        if (values / 2.0**k == np.round(values / 2.0**k)).all():
            return max(step, 2.0**k)
    return step


def nearest_distance(a: np.ndarray, b: np.ndarray, window: float) -> np.ndarray:
    """For each point of ``a`` (n, 3), its distance to the nearest point of ``b`` whose x lies
    within ``window`` of it (inf when there is none). Vectorised: sort ``b`` by x, gather each
    point's window of candidates."""
    order = np.argsort(b[:, 0], kind="stable")
    bs = b[order]
    lo = np.searchsorted(bs[:, 0], a[:, 0] - window)
    hi = np.searchsorted(bs[:, 0], a[:, 0] + window, side="right")
    counts = hi - lo
    out = np.full(len(a), np.inf)
    has = counts > 0
    if not has.any():
        return out
    owner = np.repeat(np.flatnonzero(has), counts[has])
    first = np.repeat(lo[has], counts[has])
    offs = np.arange(len(owner)) - np.repeat(np.cumsum(counts[has]) - counts[has], counts[has])
    cand = bs[first + offs]
    d = np.linalg.norm(cand - a[owner], axis=1)
    starts = np.concatenate([[0], np.cumsum(counts[has])[:-1]])
    out[has] = np.minimum.reduceat(d, starts)
    return out
