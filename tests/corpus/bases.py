"""The sound inputs the corpus damages: small cuts of the tiny sample city (so that a case
converts in a fraction of a second) and the real third-party files of ``../shared/realdata``.

Each input is made once per corpus folder by :class:`Bases`, deterministically (seeded), and
read-only afterwards: a case copies what it damages.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from functools import cached_property
from pathlib import Path

import numpy as np

__all__ = ["Bases", "TINY_CRS"]

_GUID = re.compile(r"(=IFC[A-Z0-9]+)\('[0-9A-Za-z_$]{22}'")

#: the sample city's CRS (CGCS2000 / 3-degree Gauss-Kruger CM 105E)
TINY_CRS = "EPSG:4544"


class Bases:
    """The sound inputs, made on first use under ``root/base``.

    Parameters
    ----------
    root : the corpus folder
    sample : the tiny sample city's folder (``cim sample --preset tiny``)
    realdata : ``../shared/realdata`` or None when absent
    """

    def __init__(self, root: Path, sample: Path, realdata: Path | None) -> None:
        self.root = root / "base"
        self.root.mkdir(parents=True, exist_ok=True)
        self.sample = sample
        self.realdata = realdata

    def real(self, rel: str) -> Path:
        """A real file (the caller checked that ``realdata`` is set)."""
        assert self.realdata is not None
        return self.realdata / rel

    # ---------------------------------------------------------------- rasters
    @cached_property
    def dem(self) -> Path:
        """A 40 × 32 cut of the sample DEM at 4 m (float32, tiled 16 × 16, DEFLATE, nodata -9999)."""
        import rasterio
        from rasterio.enums import Resampling

        with rasterio.open(self.sample / "data" / "dem.tif") as src:
            grid = src.read(1, out_shape=(100, 130), resampling=Resampling.average)[:32, :40]
            t = src.transform
        path = self.root / "dem.tif"
        write_raster(path, grid[None].astype(np.float32), (t.c, t.f, 4.0), TINY_CRS, nodata=-9999.0, compress="deflate")
        return path

    @cached_property
    def ortho(self) -> Path:
        """A 48 × 40 cut of the sample orthophoto at 2 m (RGB uint8, tiled 16 × 16, DEFLATE)."""
        import rasterio
        from rasterio.enums import Resampling

        with rasterio.open(self.sample / "data" / "ortho.tif") as src:
            rgb = src.read(out_shape=(3, 200, 260), resampling=Resampling.average)[:, :40, :48]
            t = src.transform
        path = self.root / "ortho.tif"
        write_raster(path, rgb, (t.c, t.f, 2.0), TINY_CRS, compress="deflate")
        return path

    # ---------------------------------------------------------------- footprints
    @cached_property
    def footprints(self) -> list[dict]:
        """The first 12 sample footprints: GeoJSON features in EPSG:4544 metres."""
        import shapely

        names, geoms, columns = self._footprint_columns()
        feats = []
        for k, geom in enumerate(geoms):
            props = {"id": str(columns["id"][k]), "name": str(columns["name"][k]), "height": float(columns["height"][k])}
            props["floors"] = int(columns["floors"][k])
            feats.append({"type": "Feature", "properties": props, "geometry": json.loads(shapely.to_geojson(geom))})
        return feats

    def _footprint_columns(self) -> tuple[list[str], list, dict[str, np.ndarray]]:
        import pyogrio.raw
        import shapely

        meta, _, wkb, values = pyogrio.raw.read(self.sample / "data" / "buildings.gpkg", max_features=12)
        names = list(meta["fields"])
        columns = {n: v for n, v in zip(names, values) if n in ("id", "name", "height", "floors")}
        geoms = [shapely.set_precision(g, 0.001) for g in shapely.from_wkb(wkb)]
        return list(columns), geoms, columns

    def lonlat_features(self) -> list[dict]:
        """:attr:`footprints` in longitude/latitude (RFC 7946 GeoJSON), fresh copies."""
        from pyproj import Transformer

        tr = Transformer.from_crs(TINY_CRS, "EPSG:4326", always_xy=True)
        feats = json.loads(json.dumps(self.footprints))
        for f in feats:
            f["geometry"] = _map_coords(f["geometry"], lambda x, y: [round(v, 9) for v in tr.transform(x, y)])
        return feats

    @cached_property
    def geojson(self) -> Path:
        """12 footprints as RFC 7946 GeoJSON (longitude/latitude) with a ``height`` attribute."""
        path = self.root / "footprints.geojson"
        write_geojson(path, self.lonlat_features())
        return path

    @cached_property
    def shapefile(self) -> Path:
        """12 footprints as an ESRI Shapefile (.shp .shx .dbf .prj) in EPSG:4544."""
        return self._ogr("footprints.shp", "ESRI Shapefile")

    @cached_property
    def gpkg(self) -> Path:
        """12 footprints as a GeoPackage in EPSG:4544."""
        return self._ogr("footprints.gpkg", "GPKG")

    def _ogr(self, name: str, driver: str) -> Path:
        import pyogrio.raw
        import shapely

        names, geoms, columns = self._footprint_columns()
        path = self.root / name
        pyogrio.raw.write(
            path,
            np.array(shapely.to_wkb(geoms), dtype=object),
            [columns[n] for n in names],
            names,
            driver=driver,
            geometry_type="Polygon",
            crs=TINY_CRS,
        )
        # GDAL stamps the day into both formats: fixed, so that the corpus is the same bytes
        if driver == "GPKG":
            import sqlite3

            with sqlite3.connect(path) as db:
                db.execute("update gpkg_contents set last_change = '2026-01-01T00:00:00.000Z'")
            db.close()
        else:
            dbf = path.with_suffix(".dbf")
            data = bytearray(dbf.read_bytes())
            data[1:4] = bytes((126, 1, 1))  # last update: 2026-01-01
            dbf.write_bytes(bytes(data))
        return path

    # ---------------------------------------------------------------- point clouds
    @cached_property
    def laz(self) -> Path:
        """The smallest sample lidar tile: LAS 1.4, format 7, 1,207 points, WKT CRS, LAZ."""
        src = self.sample / "data" / "lidar" / "tianshui_565000_3828250.laz"
        path = self.root / "points.laz"
        shutil.copyfile(src, path)
        return path

    @cached_property
    def las(self) -> Path:
        """:attr:`laz` uncompressed (LAS 1.4, format 7)."""
        import laspy

        path = self.root / "points.las"
        las = laspy.read(self.laz)
        las.write(path)
        return path

    # ---------------------------------------------------------------- IFC
    @cached_property
    def ifc(self) -> Path:
        """A one-storey 4 m × 4 m IFC4 building with an IfcMapConversion (EPSG:4544)."""
        from cim.samplecity.bim import write_sample_ifc

        path = write_sample_ifc(
            self.root / "building.ifc",
            easting=564800.0,
            northing=3828100.0,
            base_height=1110.0,
            rotation_deg=10.0,
            width=4.0,
            depth=4.0,
            storeys=1,
            name="corpus",
        )
        # the writer stamps the time and draws the project's GlobalId: fixed here, so that the
        # corpus is the same bytes run after run
        text = re.sub(r"FILE_NAME\('([^']*)','[^']*'", r"FILE_NAME('\1','2026-01-01T00:00:00+00:00'", path.read_text(), count=1)
        counter = iter(range(1, 1 << 30))
        text = _GUID.sub(lambda m: f"{m.group(1)}('{next(counter):022d}'", text)
        path.write_text(text)
        return path

    # ---------------------------------------------------------------- CityJSON
    def cityjson_doc(self) -> dict:
        """A CityJSON 2.0 document: four LoD1 block buildings in EPSG:4544, quantized (fresh copy)."""
        verts: list[list[int]] = []
        objects: dict[str, dict] = {}
        for i in range(4):
            x0, y0, h = 1000 * 20 * i, 0, 9000 + 3000 * i  # millimetres, as the transform's scale says
            base = len(verts)
            for z in (0, h):
                verts += [[x0, y0, z], [x0 + 12000, y0, z], [x0 + 12000, y0 + 9000, z], [x0, y0 + 9000, z]]
            b = base
            shell = [
                [[b + 0, b + 3, b + 2, b + 1]],
                [[b + 4, b + 5, b + 6, b + 7]],
                [[b + 0, b + 1, b + 5, b + 4]],
                [[b + 1, b + 2, b + 6, b + 5]],
                [[b + 2, b + 3, b + 7, b + 6]],
                [[b + 3, b + 0, b + 4, b + 7]],
            ]
            objects[f"B{i}"] = {
                "type": "Building",
                "attributes": {"measuredHeight": h / 1000, "name": f"block {i}"},
                "geometry": [{"type": "Solid", "lod": "1", "boundaries": [shell]}],
            }
        return {
            "type": "CityJSON",
            "version": "2.0",
            "transform": {"scale": [0.001, 0.001, 0.001], "translate": [564700.0, 3828050.0, 1100.0]},
            "metadata": {"referenceSystem": "https://www.opengis.net/def/crs/EPSG/0/4544"},
            "CityObjects": objects,
            "vertices": verts,
        }

    @cached_property
    def cityjson(self) -> Path:
        path = self.root / "blocks.city.json"
        path.write_text(json.dumps(self.cityjson_doc()))
        return path

    # ---------------------------------------------------------------- meshes
    @cached_property
    def mesh(self) -> Path:
        """A photogrammetry-style folder: ``metadata.xml`` and one textured 12 × 12 OBJ tile."""
        folder = self.root / "mesh"
        tile = folder / "Data" / "Tile_+000_+000"
        tile.mkdir(parents=True, exist_ok=True)
        (folder / "metadata.xml").write_text(metadata_xml("EPSG:4544", "564672,3828015,1116"))
        (tile / "Tile_+000_+000.mtl").write_text("newmtl Material_0\nKd 1 1 1\nmap_Kd Tile_+000_+000_0.png\n")
        write_png(tile / "Tile_+000_+000_0.png", 8)
        (tile / "Tile_+000_+000.obj").write_text(grid_obj(12))
        return folder

    @cached_property
    def glb(self) -> Path:
        """The same grid as one GLB with an ``offset.txt`` beside it (y up)."""
        import trimesh

        folder = self.root / "glb"
        folder.mkdir(exist_ok=True)
        n = 12
        xs, ys = np.meshgrid(np.arange(n + 1, dtype=float), np.arange(n + 1, dtype=float))
        z = 2.0 + 0.1 * np.sin(xs / 3.0)
        verts = np.column_stack([xs.ravel(), z.ravel(), -ys.ravel()])  # glTF: y up
        faces = _grid_faces(n)
        path = folder / "grid.glb"
        path.write_bytes(trimesh.Trimesh(verts, faces, process=False).export(file_type="glb"))
        (folder / "offset.txt").write_text("564672 3828015 1116\n")
        return path


def write_raster(
    path: Path,
    bands: np.ndarray,
    origin: tuple[float, float, float],
    crs: str | None,
    *,
    nodata: float | None = None,
    compress: str | None = "deflate",
    block: int = 16,
    transform: object = None,
) -> Path:
    """Write ``bands`` ((count, h, w)) as a tiled GeoTIFF, north up, ``origin`` = (x0, y0, cell)."""
    import rasterio
    from rasterio.transform import Affine

    count, h, w = bands.shape
    x0, y0, cell = origin
    profile: dict = {
        "driver": "GTiff",
        "width": w,
        "height": h,
        "count": count,
        "dtype": bands.dtype.name,
        "crs": crs,
        "transform": transform if transform is not None else Affine(cell, 0.0, x0, 0.0, -cell, y0),
        "nodata": nodata,
    }
    if w >= block and h >= block:
        profile.update(tiled=True, blockxsize=block, blockysize=block)
    if compress:
        profile["compress"] = compress
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(bands)
    return path


def write_geojson(path: Path, features: list[dict], extra: dict | None = None) -> Path:
    """Write a FeatureCollection (NaN and infinities as JSON's non-standard tokens, as some
    writers do)."""
    doc = {"type": "FeatureCollection", "features": features, **(extra or {})}
    path.write_text(json.dumps(doc))
    return path


def metadata_xml(srs: str, origin: str) -> str:
    """A ContextCapture ``metadata.xml``."""
    return f'<?xml version="1.0" encoding="utf-8"?>\n<ModelMetadata version="1">\n\t<SRS>{srs}</SRS>\n\t<SRSOrigin>{origin}</SRSOrigin>\n</ModelMetadata>\n'


def _grid_faces(n: int) -> np.ndarray:
    i, j = np.meshgrid(np.arange(n), np.arange(n))
    a = (j * (n + 1) + i).ravel()
    b, c, d = a + 1, a + n + 2, a + n + 1
    return np.concatenate([np.column_stack([a, b, c]), np.column_stack([a, c, d])])


def grid_obj(n: int, *, faces: np.ndarray | None = None, vertex_lines: list[str] | None = None) -> str:
    """An OBJ grid of ``n`` × ``n`` cells (z up, 1 m cells) with UVs and one material."""
    lines = ["mtllib Tile_+000_+000.mtl"]
    if vertex_lines is None:
        vertex_lines = []
        for j in range(n + 1):
            for i in range(n + 1):
                vertex_lines.append(f"v {i:.3f} {j:.3f} {2.0 + 0.1 * math.sin(i / 3.0):.3f}")
    lines += vertex_lines
    for j in range(n + 1):
        for i in range(n + 1):
            lines.append(f"vt {i / n:.4f} {j / n:.4f}")
    lines.append("usemtl Material_0")
    for a, b, c in _grid_faces(n) if faces is None else faces:
        lines.append(f"f {a + 1}/{a + 1} {b + 1}/{b + 1} {c + 1}/{c + 1}")
    return "\n".join(lines) + "\n"


def write_png(path: Path, size: int) -> Path:
    """A small seeded RGB PNG texture."""
    from PIL import Image

    rng = np.random.default_rng(7)
    Image.fromarray(rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)).save(path)
    return path


def _map_coords(geom: dict, fn) -> dict:
    def walk(c):
        if isinstance(c[0], (int, float)):
            return fn(c[0], c[1])
        return [walk(v) for v in c]

    return {"type": geom["type"], "coordinates": walk(geom["coordinates"])}


map_coords = _map_coords
