"""The surface model's files: built from a city's recipe, written to ``CITY/analysis/``, loaded.

``.npy`` arrays (the rasters, and the prisms' ragged rings and heights), ``buildings.json``
(ids and uses) and ``model.json`` (the grid, the CRS, the version; written last), each written
atomically; the same sources give the same bytes. :func:`load_model` maps the rasters from
disk and keeps one model per city folder while ``model.json`` is unchanged.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from pyproj import CRS

from cim.analysis.model import Prisms, SurfaceModel, model_from_polygons
from cim.crs import crs_label, parse_crs
from cim.errors import CimInputError, CimIOError, CimNotFound
from cim.store import json_bytes_of, write_if_changed

__all__ = ["MODEL_DIR", "MODEL_VERSION", "SOURCE_FILE", "build_model", "load_model", "record_conversion", "write_model"]

MODEL_DIR = "analysis"
#: 2: BIM models burnt into the DSM by their meshes, ``meshed.npy``
MODEL_VERSION = 2
#: what ``cim convert`` converted (a one-layer recipe, JSON), for building the model on first use
SOURCE_FILE = "source.json"
#: the layer kinds a surface model is made of
MODEL_KINDS = ("buildings", "terrain")
_ARRAYS = ("dem", "dsm", "owner", "xy", "ring_offsets", "polygon_offsets", "polygon_feature", "base", "top")


def build_model(recipe: Any, city_dir: str | Path, *, resolution: float | None = None, block_cells: int | None = None) -> SurfaceModel:
    """Build the surface model of a city from its recipe and write it to ``CITY/analysis/``.

    The buildings are every ``buildings`` layer of the recipe (footprints and heights as the
    layer reads them: height attribute, else floors × storey height, else the default; a layer
    whose heights come from a point cloud is given its attribute heights here, with a
    :class:`~cim.warnings.DefaultValueWarning`); the
    terrain is the first ``terrain`` layer's DEM, else a buildings layer's ``dem``, else flat
    ground at 0 m around the footprints.

    Parameters
    ----------
    recipe : a ``city.toml`` path or a loaded :class:`cim.recipe.Recipe`
    city_dir : the built city's folder
    resolution : cell size in metres (default: the DEM's, kept within 1–2 m)
    block_cells : cells of the grid read and burnt at a time (default
        :data:`~cim.analysis.model.BURN_CELLS`): the working set beyond the model's three
        rasters is a strip of this many cells; the model does not depend on it
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
        if opts.uses_points:
            import warnings

            from cim.warnings import DefaultValueWarning

            warnings.warn(
                f"layer {spec.id}: the surface model takes heights from the attributes, not the point cloud the tiles use",
                DefaultValueWarning,
                stacklevel=2,
            )
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
    dem, x0, y0, res = _terrain_grid(dem_path, crs, all_polygons, resolution, block_cells)
    folder = Path(city_dir) / MODEL_DIR
    folder.mkdir(parents=True, exist_ok=True)
    _remove_stale(folder)
    streamed = _Streamed(folder, dem.shape)
    try:
        model = _build(rec, crs, all_polygons, heights, ids, uses, dem, x0, y0, res, block_cells, streamed)
        # the DSM and owners are in their files: the model maps them from there
        _write_model(model, city_dir, streamed.commit())
    finally:
        streamed.discard()
    model.dsm = np.load(folder / "dsm.npy", mmap_mode="r")
    model.owner = np.load(folder / "owner.npy", mmap_mode="r")
    return model


def _build(
    rec: Any,
    crs: CRS,
    all_polygons: np.ndarray,
    heights: list[np.ndarray],
    ids: list[np.ndarray],
    uses: list[np.ndarray],
    dem: np.ndarray,
    x0: float,
    y0: float,
    res: float,
    block_cells: int | None,
    streamed: _Streamed,
) -> SurfaceModel:
    """The model of :func:`build_model` with its DSM and owner rasters burnt strip by strip into
    ``streamed``'s files (mapped read-write, for the BIM models' meshes)."""
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
        block_cells=block_cells,
        rasters=streamed.write,
    )
    _burn_bim_layers(rec, model)
    return model


def _burn_bim_layers(rec: Any, model: SurfaceModel) -> None:
    """Every ``bim`` layer's IFC models into the DSM by their meshes (placed as the layer
    places them: by their georeferencing, or the layer's crs/origin/rotation); a model that cannot be read
    or placed keeps the prism of its footprint, with a :class:`~cim.warnings.GeometryWarning`
    naming it."""
    import warnings

    from cim.analysis.meshes import burn_meshes, ifc_triangles
    from cim.layers import registry
    from cim.layers.bim import ifc_files
    from cim.warnings import GeometryWarning

    meshes = []
    for spec in rec.layers:
        if spec.kind != "bim":
            continue
        opts: Any = registry.get("bim").options(spec.options, where=f"layer {spec.id}", base=spec.base)
        placing = (opts.crs or rec.crs, opts.origin, opts.rotation)
        for path in ifc_files([Path(spec.source)]):
            try:
                meshes.append(ifc_triangles(path.read_bytes(), path.name, model, placing=placing))
            except CimInputError as exc:
                warnings.warn(f"layer {spec.id}: {exc}; the surface model keeps its footprint's prism", GeometryWarning, stacklevel=3)
    if meshes:
        burn_meshes(model, meshes)


def _several(rec: Any, kind: str) -> bool:
    return sum(1 for spec in rec.layers if spec.kind == kind) > 1


def _terrain_grid(
    dem_path: Path | None, crs: CRS, polygons: np.ndarray, resolution: float | None, block_cells: int | None = None
) -> tuple[np.ndarray, float, float, float]:
    """The terrain on the model's grid: the DEM's own grid when it is in ``crs`` with cells of
    1–2 m (or the cell size asked for), read strip by strip into the grid (no full-size
    temporaries), else resampled (bilinear) over its extent."""
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
            return _read_grid(dem_path, ds, block_cells), float(t.c), float(t.f), res
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


def _read_grid(path: Path, ds: Any, block_cells: int | None) -> np.ndarray:
    """Band 1 of the raster at ``path`` (open as ``ds``) as float32, no data as NaN, read a
    strip of rows at a time (strips of whole blocks of the file) into the grid: the cells of
    one strip are the only copy made. Each strip is read through a dataset of its own, closed
    after it, so that GDAL's block cache (up to 5 % of the machine's memory) never holds more
    than a strip of the file."""
    import rasterio
    from rasterio.windows import Window

    from cim.analysis.model import BURN_CELLS

    rows, cols = ds.height, ds.width
    grid = np.empty((rows, cols), dtype=np.float32)
    step = max(1, int(block_cells or BURN_CELLS) // max(cols, 1))
    block = ds.block_shapes[0][0] if block_cells is None else 1
    step = max(block, step - step % block)
    for r0 in range(0, rows, step):
        h = min(step, rows - r0)
        with rasterio.open(path) as part:
            grid[r0 : r0 + h] = part.read(1, window=Window(0, r0, cols, h), masked=True).filled(np.nan)
    return grid


def _write_array(path: Path, array: np.ndarray) -> None:
    """Write ``array`` as ``.npy`` to ``path`` the way ``np.save`` does, atomically, unless the
    file already holds exactly those bytes; the bytes are streamed from the array (a large
    raster is never copied into one ``bytes`` object)."""
    array = np.ascontiguousarray(array)
    same = _Compare(path)
    np.save(same, array, allow_pickle=False)
    if same.equal():
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)  # as cim.store writes files
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, array, allow_pickle=False)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
    except OSError as exc:
        raise CimIOError(f"{path}: cannot write ({exc.strerror or exc})") from exc


class _Compare:
    """A write-only file that compares what is written with a file's bytes, chunk by chunk."""

    def __init__(self, path: Path) -> None:
        try:
            self._file: Any = open(path, "rb")  # noqa: SIM115 - closed by equal()
            self._size = os.fstat(self._file.fileno()).st_size
        except FileNotFoundError:
            self._file, self._size = None, -1
        self._seen = 0
        self._same = self._file is not None

    def write(self, data: bytes) -> int:
        n = len(data)
        if self._same:
            self._same = self._file.read(n) == data
        self._seen += n
        return n

    def equal(self) -> bool:
        """Whether every byte written is the file's and nothing more (closes the file)."""
        if self._file is not None:
            self._file.close()
        return self._same and self._seen == self._size


class _Streamed:
    """The DSM and owner rasters of a model being built, written to temporary ``.npy`` files
    beside their final names strip by strip as they are burnt (the process never holds them
    whole), mapped read-write for the BIM meshes, then renamed into place (or dropped where
    the file there already holds the same bytes)."""

    def __init__(self, folder: Path, shape: tuple[int, int]) -> None:
        self.folder = folder
        self.shape = (int(shape[0]), int(shape[1]))
        tag = f"{os.getpid()}.{threading.get_ident()}"
        self.tmp = {name: folder / f".{name}.npy.{tag}.tmp" for name in ("dsm", "owner")}
        self.maps: list[np.memmap] = []

    def write(self, strips: Iterator[tuple[int, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        """Write the strips ``(first row, DSM, owners)`` of :func:`~cim.analysis.model.burn_strips`
        to the two files, as ``np.save`` would write the whole rasters; the rasters mapped
        read-write from them."""
        dtypes = {"dsm": np.dtype(np.float32), "owner": np.dtype(np.int32)}
        files: dict[str, Any] = {}
        try:
            for name, path in self.tmp.items():
                files[name] = os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), "wb")
                files[name].write(_npy_header(dtypes[name], self.shape))
            done = 0
            for r0, dsm, owner in strips:
                if r0 != done or dsm.shape[1:] != self.shape[1:]:
                    raise ValueError(f"strip at row {r0} of shape {dsm.shape} does not follow row {done} of {self.shape}")
                files["dsm"].write(np.ascontiguousarray(dsm, dtype=np.float32).data)
                files["owner"].write(np.ascontiguousarray(owner, dtype=np.int32).data)
                done += len(dsm)
            if done != self.shape[0]:
                raise ValueError(f"strips end at row {done} of {self.shape[0]}")
        except OSError as exc:
            raise CimIOError(f"{self.folder}: cannot write the surface model ({exc.strerror or exc})") from exc
        finally:
            for f in files.values():
                f.close()
        self.maps = [np.lib.format.open_memmap(self.tmp[name], mode="r+") for name in ("dsm", "owner")]
        return self.maps[0], self.maps[1]

    def commit(self) -> dict[str, Path]:
        """Flush the mapped rasters and let them go; the files to put in place, by name."""
        for m in self.maps:
            m.flush()
        self.maps = []
        return dict(self.tmp)

    def discard(self) -> None:
        """Remove whichever temporary file is left (the build failed, or a file was unchanged)."""
        self.maps = []
        for path in self.tmp.values():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def _remove_stale(folder: Path) -> None:
    """Remove the temporary rasters a build killed midway left in ``folder`` (those of
    processes no longer running)."""
    for path in folder.glob(".*.npy.*.tmp"):
        try:
            pid = int(path.name.split(".")[3])
            os.kill(pid, 0)
        except (ValueError, IndexError, ProcessLookupError):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        except PermissionError:
            pass  # another user's process


def _npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    """The header ``np.save`` writes before a C-ordered array of ``dtype`` and ``shape``."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(shape)}
    )
    return buffer.getvalue()


def _put_file(tmp: Path, path: Path) -> None:
    """Rename ``tmp`` to ``path`` unless ``path`` already holds exactly its bytes (then ``tmp``
    is removed): an unchanged file is left alone, as :func:`cim.store.write_if_changed` does."""
    try:
        if _same_bytes(tmp, path):
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except OSError as exc:
        raise CimIOError(f"{path}: cannot write ({exc.strerror or exc})") from exc


def _same_bytes(a: Path, b: Path, chunk: int = 1 << 24) -> bool:
    try:
        with open(a, "rb") as fa, open(b, "rb") as fb:
            if os.fstat(fa.fileno()).st_size != os.fstat(fb.fileno()).st_size:
                return False
            while block := fa.read(chunk):
                if block != fb.read(chunk):
                    return False
            return True
    except FileNotFoundError:
        return False


def write_model(model: SurfaceModel, city_dir: str | Path) -> Path:
    """Write ``model`` to ``CITY/analysis/`` (each file atomically, ``model.json`` last)."""
    return _write_model(model, city_dir, {})


def _write_model(model: SurfaceModel, city_dir: str | Path, written: dict[str, Path]) -> Path:
    """:func:`write_model`, but the arrays named in ``written`` are already in files of theirs
    (temporary names in the folder, put in place here)."""
    folder = Path(city_dir) / MODEL_DIR
    folder.mkdir(parents=True, exist_ok=True)
    p = model.prisms
    arrays = {
        "dem": np.asarray(model.dem, dtype=np.float32),
        "dsm": np.asarray(model.dsm, dtype=np.float32),
        "owner": np.asarray(model.owner, dtype=np.int32),
        "xy": p.xy,
        "ring_offsets": p.ring_offsets,
        "polygon_offsets": p.polygon_offsets,
        "polygon_feature": p.polygon_feature,
        "base": p.base,
        "top": p.top,
        "meshed": np.asarray(model.meshed, dtype=np.int64),
    }
    # a file whose bytes are those already there is left alone (an incremental rebuild of the
    # city rewrites nothing the model did not change)
    for name, array in arrays.items():
        if name in written:
            _put_file(written[name], folder / f"{name}.npy")
        else:
            _write_array(folder / f"{name}.npy", array)
    write_if_changed(
        folder / "buildings.json",
        json_bytes_of({"ids": [str(i) for i in p.ids], "uses": [None if u is None else str(u) for u in p.uses]}),
    )
    rows, cols = model.shape
    write_if_changed(
        folder / "model.json",
        json_bytes_of(
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
            pretty=True,
        ),
    )
    _CACHE.pop(str(folder.resolve()), None)
    return folder


_CACHE: dict[str, tuple[tuple[int, int], SurfaceModel]] = {}
_BUILDING = threading.Lock()


def _plain(value: Any) -> Any:
    """An option's value as JSON: paths as absolute text, tuples as lists."""
    if isinstance(value, Path):
        return str(value.resolve())
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def record_conversion(
    city_dir: str | Path, kind: str, source: str | Path, options: dict[str, Any], *, name: str, crs: str | None
) -> Path | None:
    """Remember what ``cim convert`` made a city of (``CITY/analysis/source.json``: a one-layer
    recipe with absolute paths), so that :func:`load_model` can build its surface model on first
    use. Only kinds the model is made of (buildings, terrain) are recorded; None otherwise.
    """
    if kind not in MODEL_KINDS:
        return None
    layer = {"id": kind, "kind": kind, "source": str(Path(source).resolve()), **{k: _plain(v) for k, v in options.items() if v is not None}}
    doc = {"city": {"name": name, **({"crs": crs} if crs else {})}, "layers": [layer]}
    folder = Path(city_dir) / MODEL_DIR
    folder.mkdir(parents=True, exist_ok=True)
    write_if_changed(folder / SOURCE_FILE, json_bytes_of(doc, pretty=True))
    return folder / SOURCE_FILE


def _build_on_first_use(city_dir: str | Path) -> bool:
    """Build the model of a converted city from its ``source.json`` (once per process at a time;
    each file written atomically, ``model.json`` last); False when the city records no source."""
    from cim.recipe import recipe_from_dict

    source = Path(city_dir) / MODEL_DIR / SOURCE_FILE
    if not source.is_file():
        return False
    with _BUILDING:
        if (Path(city_dir) / MODEL_DIR / "model.json").is_file():
            return True  # another request built it meanwhile
        try:
            doc = json.loads(source.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CimIOError(f"{source}: unreadable ({exc})") from None
        build_model(recipe_from_dict(doc, Path(city_dir), where=str(source)), city_dir)
    return True


def load_model(city_dir: str | Path) -> SurfaceModel:
    """The surface model of a built city (cached while ``model.json`` is unchanged). A city
    made by ``cim convert`` (buildings or terrain) gets its model built here on first use, from
    the sources it recorded (:func:`record_conversion`), and written beside its tiles.

    Raises
    ------
    CimNotFound
        The city has no ``analysis/`` model (build it again, or run ``cim analyse model``).
    """
    folder = (Path(city_dir) / MODEL_DIR).resolve()
    meta_path = folder / "model.json"
    if not meta_path.is_file():
        _build_on_first_use(city_dir)
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
        np.load(folder / "meshed.npy") if (folder / "meshed.npy").is_file() else np.zeros(0, dtype=np.int64),
    )
    _CACHE[str(folder)] = (stamp, model)
    return model
