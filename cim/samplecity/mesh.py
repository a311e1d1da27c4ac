"""The sample city's reality mesh: a few blocks as a photogrammetry package would export them.

A 2.5D surface (the DEM, with each building's roof at its base plus its height) over a square of
the city, cut into tiles of ``tile`` metres the way ContextCapture writes them::

    reality/metadata.xml                      <SRS>EPSG:4544</SRS>, <SRSOrigin>E,N,H</SRSOrigin>
    reality/Data/Tile_+000_+000/Tile_+000_+000.obj   (+ .mtl + a JPEG or PNG texture)

Vertices are on a regular grid (walls are the slanted faces between a roof's edge and the ground
next to it, as in a surface reconstructed from above); OBJ coordinates are relative to the
SRSOrigin. Each tile's texture is the orthophoto over the tile, so the mesh lines up with the
imagery, the terrain and the buildings. A survey target (a square of :data:`TARGET_COLOUR`,
``TARGET_SIZE`` metres) is painted at the centre of the area, a known colour for tests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from rasterio.enums import Resampling
from rasterio.features import rasterize
from rasterio.transform import from_origin
from rasterio.windows import from_bounds

from cim.store import atomic_path, atomic_write_bytes, atomic_write_text

__all__ = ["TARGET_COLOUR", "TARGET_SIZE", "write_sample_mesh"]

#: the survey target's sRGB colour
TARGET_COLOUR = (228, 36, 150)
#: its side in metres
TARGET_SIZE = 12.0


def write_sample_mesh(
    folder: Path,
    centre: tuple[float, float],
    dem: Path,
    footprints: list,
    heights: np.ndarray,
    ortho: Path,
    *,
    tiles: int = 3,
    tile: float = 60.0,
    res: float = 1.0,
    texture: int = 256,
    crs: str = "EPSG:4544",
) -> Path:
    """Write ``tiles`` × ``tiles`` OBJ tiles of the surface around ``centre`` (E, N) into ``folder``;
    returns the folder. Even tiles get JPEG textures, odd ones PNG (both as exporters write)."""
    size = tiles * tile
    x0, y0 = round(centre[0] - size / 2), round(centre[1] - size / 2)
    n = int(round(tile / res))
    xs = x0 + np.arange(int(round(size / res)) + 1) * res
    ys = y0 + np.arange(int(round(size / res)) + 1) * res
    gx, gy = np.meshgrid(xs, ys)
    ground = _sample(dem, gx, gy)
    roofs = _roof_heights(footprints, heights, x0, y0, size, res, dem)
    surface = np.where(np.isnan(roofs), ground, roofs)
    origin = (float(x0), float(y0), float(np.floor(np.nanmin(ground))))
    texture_px = texture * tiles
    rgb = _texture(ortho, x0, y0, size, texture_px)
    _paint_target(rgb, centre, x0, y0, size)
    data = folder / "Data"
    for j in range(tiles):
        for i in range(tiles):
            name = f"Tile_+{i:03d}_+{j:03d}"
            sub = data / name
            sub.mkdir(parents=True, exist_ok=True)
            ext = "jpg" if (i + j) % 2 == 0 else "png"
            image = rgb[(tiles - 1 - j) * texture : (tiles - j) * texture, i * texture : (i + 1) * texture]
            _write_texture(sub / f"{name}_0.{ext}", image, ext)
            block = surface[j * n : (j + 1) * n + 1, i * n : (i + 1) * n + 1]
            _write_tile(sub, name, ext, xs[i * n : (i + 1) * n + 1], ys[j * n : (j + 1) * n + 1], block, origin)
    atomic_write_text(
        folder / "metadata.xml",
        '<?xml version="1.0" encoding="utf-8"?>\n<ModelMetadata version="1">\n'
        f"\t<!--Spatial Reference System-->\n\t<SRS>{crs}</SRS>\n"
        f"\t<!--Origin in Spatial Reference System-->\n\t<SRSOrigin>{origin[0]:.0f},{origin[1]:.0f},{origin[2]:.0f}</SRSOrigin>\n"
        "\t<Texture>\n\t\t<ColorSource>Visible</ColorSource>\n\t</Texture>\n</ModelMetadata>\n",
    )
    return folder


def _sample(dem: Path, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    from pyproj import CRS

    from cim.sources.dem import sample_dem

    with rasterio.open(dem) as ds:
        crs = CRS.from_user_input(ds.crs.to_wkt())
    return sample_dem(dem, x.ravel(), y.ravel(), crs).reshape(x.shape)


def _roof_heights(footprints: list, heights: np.ndarray, x0: float, y0: float, size: float, res: float, dem: Path) -> np.ndarray:
    """Roof height at each vertex (NaN off the buildings): a building's lowest ground plus its height."""
    import shapely

    m = int(round(size / res)) + 1
    box = shapely.box(x0 - res, y0 - res, x0 + size + res, y0 + size + res)
    inside = [k for k, g in enumerate(footprints) if g.intersects(box)]
    if not inside:
        return np.full((m, m), np.nan)
    tops = []
    for k in inside:
        ring = shapely.get_coordinates(footprints[k])
        tops.append(float(np.nanmin(_sample(dem, ring[:, 0], ring[:, 1]))) + float(heights[k]))
    # vertices are the centres of a raster whose rows run north: burn each footprint's roof
    transform = from_origin(x0 - res / 2, y0 + size + res / 2, res, res)
    burnt = rasterize([(footprints[k], i + 1) for i, k in enumerate(inside)], out_shape=(m, m), transform=transform, fill=0, dtype="int32")[
        ::-1
    ]
    out = np.full((m, m), np.nan)
    on = burnt > 0
    out[on] = np.asarray(tops)[burnt[on] - 1]
    return out


def _texture(ortho: Path, x0: float, y0: float, size: float, px: int) -> np.ndarray:
    """(px, px, 3) uint8 of the orthophoto over the square (north up)."""
    with rasterio.open(ortho) as ds:
        window = from_bounds(x0, y0, x0 + size, y0 + size, ds.transform)
        bands = ds.read(window=window, out_shape=(3, px, px), resampling=Resampling.bilinear, boundless=True, fill_value=0)
    return np.ascontiguousarray(np.moveaxis(bands, 0, -1))


def _paint_target(rgb: np.ndarray, centre: tuple[float, float], x0: float, y0: float, size: float) -> None:
    px = rgb.shape[0] / size
    c0 = int(round((centre[0] - TARGET_SIZE / 2 - x0) * px))
    r0 = int(round((y0 + size - centre[1] - TARGET_SIZE / 2) * px))
    k = int(round(TARGET_SIZE * px))
    rgb[r0 : r0 + k, c0 : c0 + k] = TARGET_COLOUR


def _write_texture(path: Path, image: np.ndarray, ext: str) -> None:
    import io

    buf = io.BytesIO()
    if ext == "jpg":
        Image.fromarray(np.ascontiguousarray(image)).save(buf, "JPEG", quality=92)
    else:
        Image.fromarray(np.ascontiguousarray(image)).save(buf, "PNG", compress_level=6)
    atomic_write_bytes(path, buf.getvalue())


def _write_tile(sub: Path, name: str, ext: str, xs: np.ndarray, ys: np.ndarray, z: np.ndarray, origin: tuple[float, float, float]) -> None:
    """One OBJ + MTL: a grid of vertices (rows south to north), two triangles a cell, planar UVs."""
    ny, nx = z.shape
    gx, gy = np.meshgrid(xs - origin[0], ys - origin[1])
    pos = np.column_stack([gx.ravel(), gy.ravel(), z.ravel() - origin[2]])
    u = (np.arange(nx) / (nx - 1))[None, :].repeat(ny, 0)
    v = (np.arange(ny) / (ny - 1))[:, None].repeat(nx, 1)
    uv = np.column_stack([u.ravel(), v.ravel()])
    idx = np.arange(ny * nx).reshape(ny, nx)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, 1:].ravel(), idx[1:, :-1].ravel()
    faces = np.concatenate([np.column_stack([a, b, c]), np.column_stack([a, c, d])]) + 1
    lines = [f"# cim sample reality mesh tile {name}", f"mtllib {name}.mtl"]
    lines += [f"v {x:.3f} {y:.3f} {h:.3f}" for x, y, h in pos]
    lines += [f"vt {s:.6f} {t:.6f}" for s, t in uv]
    lines.append("usemtl Material_0")
    lines += [f"f {p}/{p} {q}/{q} {r}/{r}" for p, q, r in faces]
    with atomic_path(sub / f"{name}.obj") as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    atomic_write_text(
        sub / f"{name}.mtl",
        f"newmtl Material_0\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nillum 1\nmap_Kd {name}_0.{ext}\n",
    )
