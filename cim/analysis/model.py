"""The surface model the analyses run on: a DSM raster and the buildings as prisms.

Built with the city (``cim build`` runs :func:`build_model` after the layers) into
``CITY/analysis/``, or later from the recipe with ``cim analyse model``; loaded by
:func:`load_model`. Everything is in the city's projected CRS, in metres.

- **Rasters** on one north-up grid: ``dem`` (terrain), ``dsm`` (terrain, and each building's
  roof over the cells whose centre its footprint covers) and ``owner`` (the building whose roof
  a cell holds, -1 for ground). The grid is the DEM's own where the DEM is in the city's CRS and
  its cells are 1–2 m (the sample city's are 2 m), so the terrain is not resampled; otherwise
  cells of 2 m (1 m for finer DEMs). 2 m puts three cells across the narrowest house of the
  sample (about 6 m) and keeps a 120 km² city at 30 M cells, 12 bytes each; exact answers where
  a metre matters (line of sight) come from the prisms.
- **Prisms**: each building's footprint rings (exterior counter-clockwise, holes clockwise),
  its base (the lowest ground under the footprint, as the buildings layer stands it) and top,
  its id and use. A footprint that a BIM model replaces in the tiles keeps its prism here: it
  stands for the model (its footprint and height attribute), in place of the model's mesh.

The files are ``.npy`` arrays and a ``model.json``, each written atomically; the same sources
give the same bytes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from pyproj import CRS

from cim.crs import crs_label, from_lonlat, parse_crs, to_lonlat
from cim.errors import CimInputError, CimIOError, CimNotFound
from cim.kernels.raster import bilinear_sample
from cim.kernels.rays import block_max
from cim.store import atomic_path, atomic_write_json

__all__ = [
    "MODEL_DIR",
    "MODEL_VERSION",
    "Prisms",
    "SurfaceModel",
    "build_model",
    "load_model",
    "model_from_polygons",
    "write_model",
]

MODEL_DIR = "analysis"
MODEL_VERSION = 1
#: cells a side of the tiles whose highest point lets rays skip them
BLOCK = 16
_ARRAYS = ("dem", "dsm", "owner", "xy", "ring_offsets", "polygon_offsets", "polygon_feature", "base", "top")


@dataclass
class Prisms:
    """Buildings as extruded footprints.

    Attributes
    ----------
    xy : (k, 2) float64, closed rings one after another (exterior CCW, holes CW)
    ring_offsets : (r + 1,) int64, coordinates of each ring
    polygon_offsets : (p + 1,) int64, rings of each polygon
    polygon_feature : (p,) int64, the building each polygon belongs to
    base, top : (n,) float64, floor and roof heights
    ids, uses : (n,) object, str ids and uses (None when unknown)
    """

    xy: np.ndarray
    ring_offsets: np.ndarray
    polygon_offsets: np.ndarray
    polygon_feature: np.ndarray
    base: np.ndarray
    top: np.ndarray
    ids: np.ndarray
    uses: np.ndarray

    def __len__(self) -> int:
        return len(self.base)

    @cached_property
    def edges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Walls: ``(a, b, prism)``, (e, 2), (e, 2), (e,) non-decreasing prism index."""
        ring_of_coord = np.repeat(np.arange(len(self.ring_offsets) - 1), np.diff(self.ring_offsets))
        last = np.zeros(len(self.xy), dtype=bool)
        last[self.ring_offsets[1:] - 1] = True  # a ring's closing coordinate starts no edge
        start = np.flatnonzero(~last)
        poly_of_ring = np.repeat(np.arange(len(self.polygon_offsets) - 1), np.diff(self.polygon_offsets))
        prism = self.polygon_feature[poly_of_ring[ring_of_coord[start]]]
        order = np.argsort(prism, kind="stable")
        start = start[order]
        return self.xy[start], self.xy[start + 1], prism[order]

    @cached_property
    def footprints(self) -> np.ndarray:
        """(n,) shapely Polygon/MultiPolygon of each building."""
        polys = shapely.from_ragged_array(shapely.GeometryType.POLYGON, self.xy, (self.ring_offsets, self.polygon_offsets))
        out = np.empty(len(self), dtype=object)
        counts = np.bincount(self.polygon_feature, minlength=len(self))
        first = np.searchsorted(self.polygon_feature, np.arange(len(self)))
        single = np.flatnonzero(counts == 1)
        out[single] = polys[first[single]]
        for i in np.flatnonzero(counts > 1):
            out[i] = shapely.multipolygons(polys[self.polygon_feature == i])
        return out

    @cached_property
    def tree(self) -> shapely.STRtree:
        """A spatial index of :attr:`footprints`."""
        return shapely.STRtree(self.footprints)

    def take(self, rows: np.ndarray) -> Prisms:
        """The buildings ``rows`` (in that order)."""
        return prisms_from_polygons(self.footprints[rows], self.base[rows], self.top[rows], self.ids[rows], self.uses[rows])


def prisms_from_polygons(
    polygons: np.ndarray, base: np.ndarray, top: np.ndarray, ids: np.ndarray, uses: np.ndarray | None = None
) -> Prisms:
    """Prisms from footprint polygons (valid Polygon/MultiPolygon) and their heights."""
    from cim.sources.footprints import footprint_rings

    polygons = np.asarray(polygons, dtype=object)
    n = len(polygons)
    if n:
        xy, ring_offsets, polygon_offsets, polygon_feature = footprint_rings(polygons)
    else:
        xy, ring_offsets, polygon_offsets, polygon_feature = (
            np.zeros((0, 2)),
            np.zeros(1, np.int64),
            np.zeros(1, np.int64),
            np.zeros(0, np.int64),
        )
    return Prisms(
        np.asarray(xy, dtype=np.float64),
        np.asarray(ring_offsets, dtype=np.int64),
        np.asarray(polygon_offsets, dtype=np.int64),
        np.asarray(polygon_feature, dtype=np.int64),
        np.asarray(base, dtype=np.float64),
        np.asarray(top, dtype=np.float64),
        np.asarray(ids, dtype=object),
        np.asarray(uses if uses is not None else [None] * n, dtype=object),
    )


@dataclass
class SurfaceModel:
    """A city's surface: rasters on one grid, and the buildings as prisms.

    Attributes
    ----------
    crs : the projected CRS of every coordinate
    x0, y0 : west and north edges of the grid
    res : cell size (metres)
    dem, dsm : (rows, cols) float32, terrain and surface heights (NaN: no data)
    owner : (rows, cols) int32, the building whose roof a cell holds (-1: ground)
    prisms : the buildings
    true_north : the grid azimuth of true north at the grid's centre (degrees)
    """

    crs: CRS
    x0: float
    y0: float
    res: float
    dem: np.ndarray
    dsm: np.ndarray
    owner: np.ndarray
    prisms: Prisms
    true_north: float = 0.0
    name: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        rows, cols = self.dem.shape
        return int(rows), int(cols)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) of the grid."""
        rows, cols = self.shape
        return self.x0, self.y0 - rows * self.res, self.x0 + cols * self.res, self.y0

    @cached_property
    def centre_lonlat(self) -> tuple[float, float]:
        xmin, ymin, xmax, ymax = self.bounds
        lon, lat = to_lonlat(np.array([(xmin + xmax) / 2]), np.array([(ymin + ymax) / 2]), self.crs)
        return float(lon[0]), float(lat[0])

    @cached_property
    def blocks(self) -> list[tuple[int, np.ndarray]]:
        """``(n, the highest DSM cell of each n × n tile)`` for n = BLOCK and 8 × BLOCK, for
        rays to skip what they pass above."""
        fine = block_max(self.dsm, BLOCK)
        return [(BLOCK, fine), (8 * BLOCK, block_max(fine, 8))]

    def to_xy(self, lon: Any, lat: Any) -> tuple[np.ndarray, np.ndarray]:
        """Longitude/latitude degrees → grid CRS metres."""
        return from_lonlat(np.atleast_1d(np.asarray(lon, dtype=np.float64)), np.atleast_1d(np.asarray(lat, dtype=np.float64)), self.crs)

    def to_lonlat(self, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        """Grid CRS metres → longitude/latitude degrees."""
        return to_lonlat(np.atleast_1d(np.asarray(x, dtype=np.float64)), np.atleast_1d(np.asarray(y, dtype=np.float64)), self.crs)

    def cells(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row, column and whether each point lies on the grid."""
        c = np.floor((np.asarray(x) - self.x0) / self.res).astype(np.int64)
        r = np.floor((self.y0 - np.asarray(y)) / self.res).astype(np.int64)
        rows, cols = self.shape
        inside = (r >= 0) & (r < rows) & (c >= 0) & (c < cols)
        return r, c, inside

    def ground(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Terrain height (bilinear) at points; NaN off the grid."""
        return bilinear_sample(np.asarray(self.dem, dtype=np.float32), self.x0, self.y0, self.res, self.res, np.asarray(x), np.asarray(y))

    def cell_centres(self, r: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.x0 + (np.asarray(c) + 0.5) * self.res, self.y0 - (np.asarray(r) + 0.5) * self.res

    def window(self, bounds: tuple[float, float, float, float]) -> tuple[slice, slice]:
        """Rows and columns of the cells under ``bounds`` (clipped to the grid)."""
        xmin, ymin, xmax, ymax = bounds
        rows, cols = self.shape
        c0 = int(np.clip(np.floor((xmin - self.x0) / self.res), 0, cols))
        c1 = int(np.clip(np.ceil((xmax - self.x0) / self.res), 0, cols))
        r0 = int(np.clip(np.floor((self.y0 - ymax) / self.res), 0, rows))
        r1 = int(np.clip(np.ceil((self.y0 - ymin) / self.res), 0, rows))
        return slice(r0, r1), slice(c0, c1)

    def mask(self, geometry: shapely.Geometry, window: tuple[slice, slice]) -> np.ndarray:
        """Cells of ``window`` whose centre lies in ``geometry`` (bool, the window's shape)."""
        from rasterio.features import geometry_mask
        from rasterio.transform import from_origin

        rs, cs = window
        shape = (rs.stop - rs.start, cs.stop - cs.start)
        if shape[0] <= 0 or shape[1] <= 0:
            return np.zeros((max(shape[0], 0), max(shape[1], 0)), dtype=bool)
        transform = from_origin(self.x0 + cs.start * self.res, self.y0 - rs.start * self.res, self.res, self.res)
        return ~geometry_mask([shapely.geometry.mapping(geometry)], out_shape=shape, transform=transform)

    def with_prisms(self, prisms: Prisms, changed: tuple[float, float, float, float] | None = None) -> SurfaceModel:
        """A copy with other buildings: the DSM and owners are burnt again under ``changed``
        (the box of every footprint added or removed; default the whole grid)."""
        dsm, owner = self.dsm, self.owner
        win = self.window(changed) if changed is not None else (slice(0, self.shape[0]), slice(0, self.shape[1]))
        dsm = np.array(dsm, copy=True)
        owner = np.array(owner, copy=True)
        sub_dsm, sub_owner = _burn(self.dem[win], prisms, self.x0 + win[1].start * self.res, self.y0 - win[0].start * self.res, self.res)
        dsm[win], owner[win] = sub_dsm, sub_owner
        return replace(self, dsm=dsm, owner=owner, prisms=prisms, meta=dict(self.meta))


def _burn(dem: np.ndarray, prisms: Prisms, x0: float, y0: float, res: float) -> tuple[np.ndarray, np.ndarray]:
    """DSM and owner rasters of ``prisms`` over a terrain grid (tallest roof wins a cell)."""
    from rasterio.features import rasterize
    from rasterio.transform import from_origin

    owner = np.full(dem.shape, -1, dtype=np.int32)
    dsm = np.array(dem, dtype=np.float32, copy=True)
    if len(prisms) and dem.size:
        rows, cols = dem.shape
        box = shapely.box(x0, y0 - rows * res, x0 + cols * res, y0)
        near = prisms.tree.query(box, predicate="intersects")
        if len(near):
            near = near[np.argsort(prisms.top[near], kind="stable")]  # later shapes overwrite: tallest last
            owner = rasterize(
                ((shapely.geometry.mapping(prisms.footprints[i]), int(i)) for i in near),
                out_shape=dem.shape,
                transform=from_origin(x0, y0, res, res),
                fill=-1,
                dtype="int32",
            )
            built = owner >= 0
            roofs = prisms.top[owner[built]].astype(np.float32)
            dsm[built] = np.fmax(dsm[built], roofs)
    return dsm, owner


def _true_north(crs: CRS, x: float, y: float) -> float:
    """Grid azimuth of true north at (x, y): the direction a small step north moves in the grid."""
    lon, lat = to_lonlat(np.array([x]), np.array([y]), crs)
    gx, gy = from_lonlat(np.array([lon[0], lon[0]]), np.array([lat[0], lat[0] + 1e-4]), crs)
    return float(np.degrees(np.arctan2(gx[1] - gx[0], gy[1] - gy[0])))


def model_from_polygons(
    polygons: np.ndarray,
    heights: np.ndarray,
    ids: np.ndarray,
    uses: np.ndarray | None,
    dem: np.ndarray,
    x0: float,
    y0: float,
    res: float,
    crs: object = "EPSG:4544",
    *,
    bases: np.ndarray | None = None,
    name: str = "",
) -> SurfaceModel:
    """A surface model from footprints and a terrain grid (the one way both the build and the
    tests make one).

    Parameters
    ----------
    polygons : (n,) shapely Polygon/MultiPolygon, in ``crs``
    heights : (n,) float, building heights (metres above the base)
    ids, uses : (n,) str ids and uses (uses may be None)
    dem : (rows, cols) float, terrain on the grid (NaN: no data)
    x0, y0, res : the grid's west and north edges and cell size
    bases : (n,) float, floor heights (default: the lowest terrain under each footprint's
        vertices, bilinear, as the buildings layer stands them)
    """
    crs = parse_crs(crs)
    dem = np.asarray(dem, dtype=np.float32)
    polygons = np.asarray(polygons, dtype=object)
    heights = np.asarray(heights, dtype=np.float64)
    if bases is None:
        bases = _lowest_ground(polygons, dem, x0, y0, res)
    bases = np.asarray(bases, dtype=np.float64)
    prisms = prisms_from_polygons(polygons, bases, bases + heights, np.asarray(ids, dtype=object), uses)
    dsm, owner = _burn(dem, prisms, x0, y0, res)
    rows, cols = dem.shape
    return SurfaceModel(
        crs, float(x0), float(y0), float(res), dem, dsm, owner, prisms, _true_north(crs, x0 + cols * res / 2, y0 - rows * res / 2), name
    )


def _lowest_ground(polygons: np.ndarray, dem: np.ndarray, x0: float, y0: float, res: float) -> np.ndarray:
    n = len(polygons)
    if n == 0:
        return np.zeros(0)
    xy, index = shapely.get_coordinates(polygons, return_index=True)
    z = bilinear_sample(dem, x0, y0, res, res, xy[:, 0], xy[:, 1])
    base = np.full(n, np.inf)
    np.fmin.at(base, index, z)
    fill = float(np.nanmedian(dem)) if np.isfinite(dem).any() else 0.0
    base[~np.isfinite(base)] = fill  # off the terrain: the median ground
    return base


# -- the city's model: build from a recipe, write, load -----------------------------------------


def build_model(recipe: Any, city_dir: str | Path, *, resolution: float | None = None) -> SurfaceModel:
    """Build the surface model of a city from its recipe and write it to ``CITY/analysis/``.

    The buildings are every ``buildings`` layer of the recipe (footprints and heights as the
    layer reads them: height attribute, else floors × storey height, else the default); the
    terrain is the first ``terrain`` layer's DEM, else a buildings layer's ``dem``, else flat
    ground at 0 m around the footprints.

    Parameters
    ----------
    recipe : a ``city.toml`` path or a loaded :class:`cim.recipe.Recipe`
    city_dir : the built city's folder
    resolution : cell size in metres (default: the DEM's, kept within 1–2 m)
    """
    from cim.layers import registry
    from cim.layers.buildings import building_heights
    from cim.recipe import Recipe, load_recipe
    from cim.sources.footprints import read_footprints

    rec = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    crs = parse_crs(rec.crs) if rec.crs else None
    polygons: list[np.ndarray] = []
    heights: list[np.ndarray] = []
    ids: list[np.ndarray] = []
    uses: list[np.ndarray] = []
    dem_path: Path | None = None
    for spec in rec.layers:
        if spec.kind == "terrain" and dem_path is None:
            dem_path = Path(spec.source)
    for spec in rec.layers:
        if spec.kind != "buildings":
            continue
        opts: Any = registry.get("buildings").options(spec.options, where=f"layer {spec.id}", base=spec.base)
        table = read_footprints(
            spec.source, crs=opts.crs or rec.crs, layer=opts.layer, id_attr=opts.id_attr, crs_override=opts.crs_override
        )
        if crs is None:
            crs = table.crs
        geoms = table.geometries
        if not table.crs.equals(crs):
            from cim.crs import transformer

            t = transformer(table.crs, crs)
            geoms = shapely.transform(geoms, lambda xy, t=t: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))
        h, _ = building_heights(table, opts)
        polygons.append(geoms)
        heights.append(h)
        prefix = f"{spec.id}/" if _several(rec, "buildings") else ""
        ids.append(np.array([f"{prefix}{i}" for i in table.ids], dtype=object))
        use = table.columns.get("use")
        uses.append(np.asarray(use, dtype=object) if use is not None else np.full(len(table), None, dtype=object))
        if dem_path is None and opts.dem is not None:
            dem_path = Path(opts.dem)
    if crs is None:
        raise CimInputError(f"{rec.path or 'recipe'}: no CRS for the surface model (give [city] crs)")
    all_polygons = np.concatenate(polygons) if polygons else np.empty(0, dtype=object)
    dem, x0, y0, res = _terrain_grid(dem_path, crs, all_polygons, resolution)
    model = model_from_polygons(
        all_polygons,
        np.concatenate(heights) if heights else np.zeros(0),
        np.concatenate(ids) if ids else np.empty(0, dtype=object),
        np.concatenate(uses) if uses else np.empty(0, dtype=object),
        dem,
        x0,
        y0,
        res,
        crs,
        name=rec.name,
    )
    write_model(model, city_dir)
    return model


def _several(rec: Any, kind: str) -> bool:
    return sum(1 for spec in rec.layers if spec.kind == kind) > 1


def _terrain_grid(
    dem_path: Path | None, crs: CRS, polygons: np.ndarray, resolution: float | None
) -> tuple[np.ndarray, float, float, float]:
    """The terrain on the model's grid: the DEM's own grid when it is in ``crs`` with cells of
    1–2 m (or the cell size asked for), else resampled (bilinear) over its extent."""
    import rasterio
    from rasterio.warp import Resampling, reproject, transform_bounds

    if dem_path is None:
        if not len(polygons):
            raise CimInputError("the surface model needs buildings or a DEM")
        xmin, ymin, xmax, ymax = shapely.total_bounds(polygons)
        res = float(resolution or 2.0)
        pad = 100.0
        x0, y0 = np.floor((xmin - pad) / res) * res, np.ceil((ymax + pad) / res) * res
        cols, rows = int(np.ceil((xmax + pad - x0) / res)), int(np.ceil((y0 - ymin + pad) / res))
        return np.zeros((rows, cols), dtype=np.float32), float(x0), float(y0), res
    if not dem_path.exists():
        raise CimIOError(f"{dem_path}: no such DEM")
    with rasterio.open(dem_path) as ds:
        if ds.crs is None:
            raise CimInputError(f"{dem_path}: the DEM declares no CRS")
        t = ds.transform
        if t.b != 0 or t.d != 0:
            raise CimInputError(f"{dem_path}: rotated geotransforms are not supported")
        same = parse_crs(ds.crs.to_wkt()).equals(crs)
        own = abs(t.a)
        res = float(resolution or min(max(own, 1.0), 2.0))
        if same and abs(t.a) == abs(t.e) == res:
            grid = ds.read(1, masked=True).filled(np.nan).astype(np.float32)
            return grid, float(t.c), float(t.f), res
        xmin, ymin, xmax, ymax = transform_bounds(ds.crs, crs.to_wkt(), *ds.bounds) if not same else tuple(ds.bounds)
        x0, y0 = float(np.floor(xmin / res) * res), float(np.ceil(ymax / res) * res)
        cols, rows = int(np.ceil((xmax - x0) / res)), int(np.ceil((y0 - ymin) / res))
        grid = np.full((rows, cols), np.nan, dtype=np.float32)
        from rasterio.transform import from_origin

        reproject(
            rasterio.band(ds, 1),
            grid,
            dst_transform=from_origin(x0, y0, res, res),
            dst_crs=crs.to_wkt(),
            dst_nodata=np.nan,
            resampling=Resampling.bilinear,
        )
        return grid, x0, y0, res


def write_model(model: SurfaceModel, city_dir: str | Path) -> Path:
    """Write ``model`` to ``CITY/analysis/`` (each file atomically, ``model.json`` last)."""
    folder = Path(city_dir) / MODEL_DIR
    folder.mkdir(parents=True, exist_ok=True)
    p = model.prisms
    arrays = {
        "dem": model.dem.astype(np.float32),
        "dsm": model.dsm.astype(np.float32),
        "owner": model.owner.astype(np.int32),
        "xy": p.xy,
        "ring_offsets": p.ring_offsets,
        "polygon_offsets": p.polygon_offsets,
        "polygon_feature": p.polygon_feature,
        "base": p.base,
        "top": p.top,
    }
    for name, array in arrays.items():
        with atomic_path(folder / f"{name}.npy") as tmp, open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(array), allow_pickle=False)
    atomic_write_json(
        folder / "buildings.json", {"ids": [str(i) for i in p.ids], "uses": [None if u is None else str(u) for u in p.uses]}, pretty=False
    )
    rows, cols = model.shape
    atomic_write_json(
        folder / "model.json",
        {
            "version": MODEL_VERSION,
            "name": model.name,
            "crs": crs_label(model.crs),
            "crs_wkt": model.crs.to_wkt(),
            "x0": model.x0,
            "y0": model.y0,
            "res": model.res,
            "rows": rows,
            "cols": cols,
            "true_north": round(model.true_north, 9),
            "buildings": len(p),
        },
    )
    _CACHE.pop(str(folder.resolve()), None)
    return folder


_CACHE: dict[str, tuple[tuple[int, int], SurfaceModel]] = {}


def load_model(city_dir: str | Path) -> SurfaceModel:
    """The surface model of a built city (cached while ``model.json`` is unchanged).

    Raises
    ------
    CimNotFound
        The city has no ``analysis/`` model (build it again, or run ``cim analyse model``).
    """
    folder = (Path(city_dir) / MODEL_DIR).resolve()
    meta_path = folder / "model.json"
    try:
        st = os.stat(meta_path)
    except FileNotFoundError:
        raise CimNotFound(
            f"{city_dir}: this city has no surface model for analyses ({MODEL_DIR}/model.json); "
            "build it again with cim build, or run cim analyse model RECIPE CITY_DIR"
        ) from None
    stamp = (st.st_mtime_ns, st.st_size)
    cached = _CACHE.get(str(folder))
    if cached is not None and cached[0] == stamp:
        return cached[1]
    meta = json.loads(meta_path.read_text())
    if meta.get("version") != MODEL_VERSION:
        raise CimNotFound(f"{meta_path}: a surface model of version {meta.get('version')}, not {MODEL_VERSION}: build it again")
    arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r" if name in ("dem", "dsm", "owner") else None) for name in _ARRAYS}
    names = json.loads((folder / "buildings.json").read_text())
    prisms = Prisms(
        arrays["xy"],
        arrays["ring_offsets"],
        arrays["polygon_offsets"],
        arrays["polygon_feature"],
        arrays["base"],
        arrays["top"],
        np.array(names["ids"], dtype=object),
        np.array(names["uses"], dtype=object),
    )
    model = SurfaceModel(
        parse_crs(meta["crs_wkt"]),
        float(meta["x0"]),
        float(meta["y0"]),
        float(meta["res"]),
        arrays["dem"],
        arrays["dsm"],
        arrays["owner"],
        prisms,
        float(meta["true_north"]),
        str(meta.get("name", "")),
        meta,
    )
    _CACHE[str(folder)] = (stamp, model)
    return model
