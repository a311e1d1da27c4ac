"""Building footprints from GeoPackage, GeoJSON or Shapefile (pyogrio + shapely 2).

The reader returns a :class:`FootprintTable`: one shapely (multi)polygon per building, typed
attribute columns, and a report of what was repaired or skipped. Invalid footprints are repaired
with ``shapely.make_valid`` where that yields a polygonal area, else skipped; both are listed by
id, never dropped silently.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyogrio
import shapely
from pyproj import CRS

from cim.crs import AREA_OF_USE_MARGIN, area_of_use, area_of_use_problem, check_area_of_use, crs_label, parse_crs, to_lonlat
from cim.engines import helper_threads
from cim.errors import CimCRSError, CimInputError, CimIOError

__all__ = ["FeatureIssue", "FootprintTable", "read_footprints", "issue_ids", "footprint_rings"]

log = logging.getLogger("cim.sources.footprints")

#: metadata type names (EXT_structural_metadata) for the attribute columns we keep
STRING, BOOLEAN, INT32, INT64, FLOAT64 = "STRING", "BOOLEAN", "INT32", "INT64", "FLOAT64"


@dataclass
class FeatureIssue:
    """One feature that was repaired or skipped, and why."""

    id: str
    reason: str


@dataclass
class FootprintTable:
    """Footprints of one layer.

    Attributes
    ----------
    geometries : (n,) object array of shapely Polygon/MultiPolygon, in ``crs``
    ids : (n,) object array of str, the feature ids
    columns : name → (n,) array; STRING columns are object arrays (None for null), numeric
        columns float64/int64 (NaN for a null number)
    types : name → metadata type (STRING, BOOLEAN, INT32, INT64, FLOAT64)
    crs : the footprints' CRS
    source : the file read
    repaired, skipped : features mended with make_valid, and features left out
    """

    geometries: np.ndarray
    ids: np.ndarray
    columns: dict[str, np.ndarray]
    types: dict[str, str]
    crs: CRS
    source: Path
    repaired: list[FeatureIssue] = field(default_factory=list)
    skipped: list[FeatureIssue] = field(default_factory=list)
    #: the CRS the file declares, when ``crs_override`` put another in its place
    overridden_crs: str | None = None

    def __len__(self) -> int:
        return len(self.geometries)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) in ``crs``."""
        b = shapely.bounds(self.geometries)
        return (float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max()))

    def take(self, index: np.ndarray) -> FootprintTable:
        """A new table with the rows ``index`` (reports are kept)."""
        return FootprintTable(
            self.geometries[index],
            self.ids[index],
            {k: v[index] for k, v in self.columns.items()},
            dict(self.types),
            self.crs,
            self.source,
            list(self.repaired),
            list(self.skipped),
        )


def _column_type(values: np.ndarray, declared: str) -> tuple[np.ndarray, str]:
    """Normalise one pyogrio column to (array, metadata type)."""
    kind = values.dtype.kind
    if kind == "b":
        return values.astype(bool), BOOLEAN
    if kind in "iu":
        v = values.astype(np.int64)
        small = v.size == 0 or (v.min() >= -(2**31) + 1 and v.max() < 2**31)
        return v, INT32 if small else INT64
    if kind == "f":
        v = values.astype(np.float64)
        if declared.startswith("int") and np.all(np.isnan(v) | (v == np.round(v))):
            return v, INT32  # an integer field with nulls comes back as float
        return v, FLOAT64
    if kind == "M":
        return np.array([None if np.isnat(t) else str(t) for t in values], dtype=object), STRING
    if values.dtype == object:  # pyogrio gives str (or None for null) for string fields
        return values, STRING
    return np.array([None if x is None else str(x) for x in values], dtype=object), STRING


def read_footprints(
    path: str | Path,
    *,
    crs: object = None,
    layer: str | int | None = None,
    id_attr: str | None = "id",
    crs_override: bool = False,
) -> FootprintTable:
    """Read building footprints.

    Parameters
    ----------
    path : a GeoPackage, GeoJSON or Shapefile
    crs : the CRS to assume when the file declares none (a file's own CRS wins)
    crs_override : take ``crs`` even when the file declares one (a header known to be wrong);
        the table's ``overridden_crs`` names the declared one
    layer : the layer of a multi-layer source
    id_attr : the attribute holding feature ids; when missing, ids are ``"<file stem>-<row>"``

    Raises
    ------
    CimIOError
        The file cannot be opened.
    CimCRSError
        The file has no CRS and none was given.
    CimInputError
        The file holds no polygon footprints.
    """
    path = Path(path)
    if not path.exists():
        raise CimIOError(f"{path}: no such file")
    if path.suffix.lower() == ".shp":
        _check_shapefile(path)
    elif path.suffix.lower() == ".gpkg":
        _check_sqlite_size(path)
    try:
        meta, wkb, field_data = _read_columns(path, layer)
    except Exception as exc:  # pyogrio raises DataSourceError, DataLayerError, ...
        parts = [p.name for p in (_sidecar(path, ".shx"), _sidecar(path, ".dbf")) if p is not None] if path.suffix.lower() == ".shp" else []
        files = f" (the shapefile's {', '.join([path.name, *parts])})" if parts else ""
        raise CimIOError(f"{path}: cannot read footprints{files}: {exc}") from None
    overridden = None
    if crs_override and crs is None:
        raise CimCRSError(f"{path}: crs_override needs a crs to put in the file's place")
    if meta.get("crs") and not crs_override:
        file_crs = parse_crs(meta["crs"], what=str(path))
    elif crs is not None:
        if meta.get("crs"):
            overridden = crs_label(parse_crs(meta["crs"], what=str(path)))
        file_crs = parse_crs(crs, what=str(path))
    else:
        raise CimCRSError(f"{path}: the file declares no CRS; give one (--crs EPSG:XXXX or crs= in the recipe)")
    if wkb is None or len(wkb) == 0:
        raise CimInputError(f"{path}: no features")

    names = list(meta["fields"])
    declared = [str(t) for t in meta.get("dtypes", ["object"] * len(names))]
    columns: dict[str, np.ndarray] = {}
    types: dict[str, str] = {}
    for name, values, dt in zip(names, field_data, declared):
        columns[name], types[name] = _column_type(np.asarray(values), dt)

    n = len(wkb)
    if id_attr and id_attr in columns:
        ids = _ids_from(columns[id_attr], path.stem)
    else:
        ids = np.array([f"{path.stem}-{i}" for i in range(n)], dtype=object)
        if id_attr:
            columns = {id_attr: ids.copy(), **columns}
            types = {id_attr: STRING, **types}

    with np.errstate(invalid="ignore"):  # NaN coordinates: _clean reports and skips them, by feature
        geoms = shapely.from_wkb(np.asarray(wkb, dtype=object), on_invalid="ignore")
        geoms, keep, repaired, skipped = _clean(geoms, ids, path)
    misplaced = _misplaced(geoms, keep, file_crs)
    if misplaced:
        if len(misplaced) == int(keep.sum()):
            everywhere = shapely.total_bounds(geoms[keep])
            lon, lat = to_lonlat(everywhere[[0, 2, 0, 2]], everywhere[[1, 1, 3, 3]], file_crs)
            check_area_of_use(file_crs, (float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max())), str(path))
            raise CimCRSError(
                f"{path}: no footprint lies where {crs_label(file_crs)} is used, or each spans over {MAX_FOOTPRINT_SPAN / 1000:g} km"
            )
        for i, reason in misplaced.items():
            keep[i] = False
            skipped.append(FeatureIssue(str(ids[i]), reason))
    table = FootprintTable(geoms[keep], ids[keep], {k: v[keep] for k, v in columns.items()}, types, file_crs, path)
    table.repaired = repaired
    table.skipped = skipped
    table.overridden_crs = overridden
    if len(table) == 0:
        raise CimInputError(f"{path}: no usable polygon footprints (skipped {len(skipped)})")
    log.info("%s: %d footprints in %s", path.name, len(table), crs_label(file_crs))
    return table


def _sidecar(path: Path, ext: str) -> Path | None:
    for p in (path.with_suffix(ext), path.with_suffix(ext.upper())):
        if p.is_file():
            return p
    return None


def _check_shapefile(path: Path) -> None:
    """Refuse a shapefile whose attribute table (``.dbf``) is cut short, lies about its record
    count or disagrees with the shape index (``.shx``): GDAL reads such a table without a word,
    leaving records' attributes empty or dropping them.

    Raises
    ------
    CimInputError
        Naming the ``.dbf`` and what is wrong with it.
    """
    dbf = _sidecar(path, ".dbf")
    if dbf is None:
        return  # GDAL reads the shapes alone; missing heights are reported as such
    size = dbf.stat().st_size
    with dbf.open("rb") as fh:
        head = fh.read(32)
    if len(head) < 32:
        raise CimInputError(f"{dbf}: the attribute table is truncated ({size} bytes, shorter than a dBase header)")
    records = int.from_bytes(head[4:8], "little")
    header_len = int.from_bytes(head[8:10], "little")
    record_len = int.from_bytes(head[10:12], "little")
    if header_len < 33 or record_len < 1 or (header_len - 1) % 32 != 0:
        raise CimInputError(f"{dbf}: not a dBase attribute table (header of {header_len} bytes, records of {record_len})")
    held = max(0, size - header_len) // record_len
    if held < records:
        raise CimInputError(f"{dbf}: the attribute table is truncated: it declares {records:,} records and holds {held:,}")
    shx = _sidecar(path, ".shx")
    if shx is not None and shx.stat().st_size >= 100:
        shapes = (shx.stat().st_size - 100) // 8
        if shapes != records:
            raise CimInputError(
                f"{dbf}: {records:,} attribute records for {shapes:,} shapes in {shx.name}: the files do not belong together or one is damaged"
            )


def _check_sqlite_size(path: Path) -> None:
    """Refuse a GeoPackage shorter than the pages its SQLite header declares (a copy cut short:
    SQLite reads the pages that remain and stops on the missing ones only when it meets them)."""
    with path.open("rb") as fh:
        head = fh.read(100)
    if len(head) < 100 or not head.startswith(b"SQLite format 3\x00"):
        return  # GDAL says what it is not
    page = int.from_bytes(head[16:18], "big")
    page = 65536 if page == 1 else page
    pages = int.from_bytes(head[28:32], "big")
    valid = head[24:28] == head[92:96]  # the in-header size is kept up to date (SQLite ≥ 3.7.0)
    size = path.stat().st_size
    if valid and pages and size < page * pages:
        raise CimInputError(
            f"{path}: the file is truncated: its header declares {pages:,} pages of {page:,} bytes ({page * pages:,} bytes), it holds {size:,}"
        )


def _read_columns(path: Path, layer: str | int | None) -> tuple[dict, np.ndarray | None, list[np.ndarray]]:
    """(meta, WKB object array or None without a geometry column, field arrays) through GDAL's
    columnar Arrow stream.

    The Arrow path reads a GeoPackage several times faster than feature-by-feature reading;
    without pyarrow, fall back to pyogrio's row reader (same results).
    """
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        meta, _, wkb, fields = pyogrio.raw.read(path, layer=layer)
        return meta, wkb, list(fields)
    meta, table = pyogrio.raw.read_arrow(path, layer=layer)
    geom_name = meta.get("geometry_name") or "wkb_geometry"
    names = [str(n) for n in meta["fields"]]
    wkb = table.column(geom_name).to_numpy(zero_copy_only=False) if geom_name in table.column_names else None
    fields = [table.column(n).to_numpy(zero_copy_only=False) for n in names]
    return meta, wkb, fields


def _ids_from(values: np.ndarray, stem: str) -> np.ndarray:
    """Feature ids as strings; a null id becomes ``<file stem>-<row>``."""
    if values.dtype == object:
        ids = values.copy()
        # numpy's stubs take no None operand; on an object array it compares each item
        for i in np.flatnonzero(np.equal(ids, None)):  # type: ignore[call-overload]
            ids[i] = f"{stem}-{i}"
        return ids
    if values.dtype.kind == "f":
        return np.array([f"{stem}-{i}" if np.isnan(v) else str(int(v)) for i, v in enumerate(values)], dtype=object)
    return values.astype(str).astype(object)


def issue_ids(issues: list[FeatureIssue], most: int = 10) -> str:
    """The first ``most`` issues as text: ``id (reason), ...``."""
    shown = ", ".join(f"{i.id} ({i.reason})" for i in issues[:most])
    return shown + (f" and {len(issues) - most} more" if len(issues) > most else "")


def _polygonal(g: shapely.Geometry) -> shapely.Geometry | None:
    """The polygonal part of a geometry (make_valid may return a collection), or None."""
    parts = [p for p in shapely.get_parts(g) if p.geom_type in ("Polygon", "MultiPolygon")]
    if not parts:
        return None
    merged = shapely.union_all(parts) if len(parts) > 1 else parts[0]
    return merged if merged.geom_type in ("Polygon", "MultiPolygon") and merged.area > 0 else None


def _is_valid(geoms: np.ndarray, chunk: int = 20000) -> np.ndarray:
    """``shapely.is_valid`` on threads: GEOS checks each geometry without the GIL, and the
    check is the costliest step of reading footprints."""
    if len(geoms) <= chunk:
        return shapely.is_valid(geoms)
    parts = np.array_split(geoms, min(os.cpu_count() or 1, -(-len(geoms) // chunk)))
    with helper_threads(len(parts), "validity") as pool:
        return np.concatenate(list(pool.map(shapely.is_valid, parts)))


def _clean(geoms: np.ndarray, ids: np.ndarray, path: Path) -> tuple[np.ndarray, np.ndarray, list[FeatureIssue], list[FeatureIssue]]:
    """Repair or skip bad footprints; returns (geoms, keep mask, repaired, skipped)."""
    geoms = np.asarray(geoms, dtype=object).copy()
    n = len(geoms)
    keep = np.ones(n, dtype=bool)
    repaired: list[FeatureIssue] = []
    skipped: list[FeatureIssue] = []
    missing = shapely.is_missing(geoms)
    types = shapely.get_type_id(geoms)
    polygonal = (types == 3) | (types == 6)
    empty = np.zeros(n, dtype=bool)
    empty[~missing] = shapely.is_empty(geoms[~missing])
    ok = ~missing & ~empty
    valid = np.zeros(n, dtype=bool)
    valid[ok & polygonal] = _is_valid(geoms[ok & polygonal])
    # NaN or infinite coordinates: GEOS reports them invalid ("Invalid Coordinate"), so only the
    # geometries that fail (or are not polygons) need their coordinates looked at
    has_nan = np.zeros(n, dtype=bool)
    suspect = ok & ~valid
    if suspect.any():
        coords, index = shapely.get_coordinates(geoms[suspect], return_index=True)
        bad = ~np.isfinite(coords).all(axis=1)
        if bad.any():
            has_nan[np.flatnonzero(suspect)[np.unique(index[bad])]] = True
    check = ok & polygonal & ~has_nan
    area = np.zeros(n)
    area[check] = shapely.area(geoms[check])
    for i in np.flatnonzero(~(valid & (area > 0))):
        fid = str(ids[i])
        if missing[i] or empty[i]:
            reason = "no geometry" if missing[i] else "empty geometry"
        elif has_nan[i]:
            reason = "NaN or infinite coordinates"
        elif not polygonal[i]:
            reason = f"not a polygon ({shapely.get_type_id(geoms[i]) and geoms[i].geom_type})"
        else:
            fixed = _polygonal(shapely.make_valid(geoms[i])) if not valid[i] else None
            if fixed is not None:
                geoms[i] = fixed
                repaired.append(FeatureIssue(fid, "invalid polygon, repaired with make_valid"))
                continue
            reason = "zero area" if valid[i] or area[i] == 0 else "invalid polygon that cannot be repaired"
        keep[i] = False
        skipped.append(FeatureIssue(fid, reason))
    return geoms, keep, repaired, skipped


def _inside_area_of_use(b: np.ndarray, crs: CRS) -> np.ndarray:
    """(n,) bool: footprint boxes ``b`` ((n, 4) xmin, ymin, xmax, ymax) whose corners project
    within the CRS's area of use (by :data:`~cim.crs.AREA_OF_USE_MARGIN` degrees)."""
    xs, ys = b[:, [0, 2, 0, 2]].ravel(), b[:, [1, 1, 3, 3]].ravel()
    with np.errstate(invalid="ignore", over="ignore"):
        lon, lat = to_lonlat(xs, ys, crs)
    lon, lat = lon.reshape(-1, 4), lat.reshape(-1, 4)
    area = area_of_use(crs)
    m = AREA_OF_USE_MARGIN
    finite = np.isfinite(lon).all(axis=1) & np.isfinite(lat).all(axis=1)
    with np.errstate(invalid="ignore"):
        inside = finite & (np.abs(lon) <= 180.0).all(axis=1) & (np.abs(lat) <= 90.0).all(axis=1)
        if area is not None and area.west <= area.east:
            inside &= (lon >= area.west - m).all(axis=1) & (lon <= area.east + m).all(axis=1)
            inside &= (lat >= area.south - m).all(axis=1) & (lat <= area.north + m).all(axis=1)
    return inside


#: metres: a footprint wider than this is not a building (a stray vertex, a wrong unit)
MAX_FOOTPRINT_SPAN = 10_000.0


def _misplaced(geoms: np.ndarray, keep: np.ndarray, crs: CRS) -> dict[int, str]:
    """Kept footprints that cannot be where they say: outside the CRS's area of use (by more than
    :data:`~cim.crs.AREA_OF_USE_MARGIN` degrees), not projecting to a longitude/latitude, or
    spanning more than :data:`MAX_FOOTPRINT_SPAN`; ``row → reason``."""
    rows = np.flatnonzero(keep)
    if len(rows) == 0:
        return {}
    b = shapely.bounds(geoms[rows])
    with np.errstate(invalid="ignore"):
        if crs.is_geographic:
            span = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) * 111_320.0
        else:
            factor = crs.axis_info[0].unit_conversion_factor if crs.axis_info else 1.0
            span = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) * factor
    # the whole file's box first: when it lies where the CRS is used, so does every footprint
    total = (b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max())
    with np.errstate(invalid="ignore", over="ignore"):
        tlon, tlat = to_lonlat(np.array(total)[[0, 2, 0, 2]], np.array(total)[[1, 1, 3, 3]], crs)
    whole = (float(tlon.min()), float(tlat.min()), float(tlon.max()), float(tlat.max()))
    if area_of_use_problem(crs, whole) is None:
        inside = np.ones(len(rows), dtype=bool)
    else:
        inside = _inside_area_of_use(b, crs)
    bad: dict[int, str] = {}
    for k in np.flatnonzero(~inside):
        bad[int(rows[k])] = f"outside the area of use of {crs_label(crs)}"
    for k in np.flatnonzero(inside & ~(span <= MAX_FOOTPRINT_SPAN)):
        bad[int(rows[k])] = f"spans {span[k] / 1000:.4g} km"
    return bad


def footprint_rings(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Polygons as oriented ragged arrays: exterior rings counter-clockwise, holes clockwise.

    Parameters
    ----------
    geoms : (n,) Polygon or MultiPolygon geometries (valid, as :func:`read_footprints` leaves them)

    Returns
    -------
    xy : (k, 2) float64, closed rings one after another
    ring_offsets : (r + 1,) int64, coordinate offsets of the rings
    polygon_offsets : (p + 1,) int64, ring offsets of the polygons
    polygon_feature : (p,) int64, the geometry each polygon belongs to (non-decreasing)

    Notes
    -----
    ``shapely.to_ragged_array`` after ``get_parts`` and ``orient_polygons`` gives the same arrays,
    but builds a Python object for every part and ring, holding the GIL throughout. Here only geometries with holes or several parts go through the
    object path; a simple polygon's one ring is its coordinate run, so the common case reads
    ``get_coordinates`` once and orients rings by the sign of their shoelace area in numpy.
    """
    geoms = np.asarray(geoms, dtype=object)
    n = len(geoms)
    xy = shapely.get_coordinates(geoms)
    n_coords = shapely.get_num_coordinates(geoms).astype(np.int64)
    simple = (shapely.get_type_id(geoms) == 3) & (shapely.get_num_interior_rings(geoms) == 0)
    # rings and polygons per geometry; a complex geometry's rings from its parts, in
    # get_coordinates order (each polygon's exterior, then its holes)
    rings_per_geom = np.ones(n, dtype=np.int64)
    polys_per_geom = np.ones(n, dtype=np.int64)
    complex_idx = np.flatnonzero(~simple)
    ring_len_complex = np.zeros(0, dtype=np.int64)
    rings_per_poly_complex = np.zeros(0, dtype=np.int64)
    if len(complex_idx):
        parts, part_of = shapely.get_parts(geoms[complex_idx], return_index=True)
        rings, ring_of_part = shapely.get_rings(parts, return_index=True)
        ring_len_complex = shapely.get_num_coordinates(rings).astype(np.int64)
        rings_per_poly_complex = np.bincount(ring_of_part, minlength=len(parts)).astype(np.int64)
        polys_per_geom[complex_idx] = np.bincount(part_of, minlength=len(complex_idx))
        rings_per_geom[complex_idx] = np.bincount(part_of, weights=rings_per_poly_complex, minlength=len(complex_idx)).astype(np.int64)
    # ring lengths in geometry order: simple geometries contribute one ring each
    ring_first = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(rings_per_geom, out=ring_first[1:])
    ring_len = np.empty(int(ring_first[-1]), dtype=np.int64)
    ring_len[ring_first[:-1][simple]] = n_coords[simple]
    if len(complex_idx):
        complex_slots = np.repeat(ring_first[complex_idx], rings_per_geom[complex_idx])
        complex_slots += np.arange(len(complex_slots)) - np.repeat(
            np.cumsum(rings_per_geom[complex_idx]) - rings_per_geom[complex_idx], rings_per_geom[complex_idx]
        )
        ring_len[complex_slots] = ring_len_complex
    # rings per polygon in geometry order
    poly_first = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(polys_per_geom, out=poly_first[1:])
    rings_per_poly = np.ones(int(poly_first[-1]), dtype=np.int64)
    if len(complex_idx):
        complex_polys = np.repeat(poly_first[complex_idx], polys_per_geom[complex_idx])
        complex_polys += np.arange(len(complex_polys)) - np.repeat(
            np.cumsum(polys_per_geom[complex_idx]) - polys_per_geom[complex_idx], polys_per_geom[complex_idx]
        )
        rings_per_poly[complex_polys] = rings_per_poly_complex
    ring_offsets = np.zeros(len(ring_len) + 1, dtype=np.int64)
    np.cumsum(ring_len, out=ring_offsets[1:])
    polygon_offsets = np.zeros(len(rings_per_poly) + 1, dtype=np.int64)
    np.cumsum(rings_per_poly, out=polygon_offsets[1:])
    polygon_feature = np.repeat(np.arange(n, dtype=np.int64), polys_per_geom)

    # orientation: twice the signed area of each ring (shoelace over its closed coordinates)
    if len(ring_len):
        x, y = xy[:, 0], xy[:, 1]
        x0 = np.repeat(x[ring_offsets[:-1]], ring_len)  # shift to the ring's first vertex for precision
        y0 = np.repeat(y[ring_offsets[:-1]], ring_len)
        dx, dy = x - x0, y - y0
        cross = dx[:-1] * dy[1:] - dx[1:] * dy[:-1]
        cross = np.append(cross, 0.0)
        cross[ring_offsets[1:] - 1] = 0.0  # no term across ring boundaries
        area2 = np.add.reduceat(cross, ring_offsets[:-1]) if len(cross) else np.zeros(0)
        exterior = np.zeros(len(ring_len), dtype=bool)
        exterior[polygon_offsets[:-1]] = True
        flip = np.where(exterior, area2 < 0, area2 > 0)
        if flip.any():
            index = np.arange(len(xy))
            ring_id = np.repeat(np.arange(len(ring_len)), ring_len)
            on = flip[ring_id]
            start, end = ring_offsets[:-1][ring_id[on]], ring_offsets[1:][ring_id[on]]
            index[on] = start + (end - 1 - index[on])
            xy = xy[index]
    return xy, ring_offsets, polygon_offsets, polygon_feature
