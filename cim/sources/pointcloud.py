"""LAS/LAZ reader: headers, CRS, chunked point batches, and the source CRS → city ENU transform.

Reading goes through laspy (LAS 1.0–1.4, point formats 0–10) with the lazrs backend for LAZ, in
its single-threaded mode: lazrs' multi-threaded decoder and ``fork()``ed processes can deadlock,
and cim parallelises across files and point ranges with its own (spawn/forkserver) processes.

Reprojection is never done point by point through pyproj (≈ 3.6 M points/s a core). For each
batch, :class:`LocalTransform` fits a quadratic of the source coordinates to the exact
pyproj → ECEF → ENU result at control points over the batch's box, checks it against pyproj at
other points (box grid and points of the batch), and uses it when it is within ``tol`` (1 mm);
else it splits the box in four and tries again, and falls back to exact pyproj where a small box
still fails. Over 8 km of EPSG:4544 the quadratic stays within 0.4 mm.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import laspy
import numpy as np
from pyproj import CRS

from cim.crs import crs_label, parse_crs, transformer
from cim.errors import CimCRSError, CimInputError, CimIOError
from cim.kernels.frames import LocalFrame

log = logging.getLogger("cim.pointcloud")

POINTCLOUD_SUFFIXES = (".las", ".laz")
ECEF = "EPSG:4978"


@dataclass(frozen=True)
class PointCloudSource:
    """What a LAS/LAZ header says, plus the CRS cim will use (picklable: CRS kept as WKT).

    Attributes
    ----------
    path : the file
    count : number of points
    version : LAS version, e.g. ``"1.4"``
    point_format : 0–10
    compressed : LAZ
    crs_wkt : the horizontal CRS (WKT2) of x and y
    z_factor : metres per unit of z (feet for a CRS in feet)
    scales, offsets : header scale and offset of X, Y, Z
    mins, maxs : header bounds (source units)
    has_rgb : the point format stores colour
    color_shift : 8 when colours use the 16-bit range, else 0
    laz_chunk : LAZ chunk size (points), 0 when not seekable by chunk
    crs_from : ``"header"`` or ``"argument"``
    """

    path: Path
    count: int
    version: str
    point_format: int
    compressed: bool
    crs_wkt: str
    z_factor: float
    scales: tuple[float, float, float]
    offsets: tuple[float, float, float]
    mins: tuple[float, float, float]
    maxs: tuple[float, float, float]
    has_rgb: bool
    color_shift: int
    laz_chunk: int
    crs_from: str

    @property
    def crs(self) -> CRS:
        return CRS.from_wkt(self.crs_wkt)


@dataclass
class PointBatch:
    """A run of points of one file, in the file's CRS.

    ``X``, ``Y``, ``Z`` are the raw int32 records; ``x = X * scale + offset`` (source units).
    """

    X: np.ndarray
    Y: np.ndarray
    Z: np.ndarray
    scales: tuple[float, float, float]
    offsets: tuple[float, float, float]
    rgb: np.ndarray | None  # (n, 3) uint8
    intensity: np.ndarray  # (n,) uint16
    classification: np.ndarray  # (n,) uint8
    return_number: np.ndarray  # (n,) uint8

    def __len__(self) -> int:
        return len(self.X)

    def positions(self) -> np.ndarray:
        """(n, 3) float64 coordinates in the source CRS."""
        out = np.empty((len(self.X), 3))
        for i, a in enumerate((self.X, self.Y, self.Z)):
            out[:, i] = a * self.scales[i] + self.offsets[i]
        return out


def list_pointcloud_files(sources: Sequence[str | Path] | str | Path) -> list[Path]:
    """Expand files and folders (their ``*.las``/``*.laz``, sorted) into one list of files.

    Raises
    ------
    CimIOError
        A path that does not exist, or a folder with no LAS/LAZ file.
    """
    if isinstance(sources, (str, Path)):
        sources = [sources]
    files: list[Path] = []
    for s in sources:
        p = Path(s)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in POINTCLOUD_SUFFIXES)
            if not found:
                raise CimIOError(f"{p}: no .las or .laz file in this folder")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise CimIOError(f"{p}: no such file or folder")
    if not files:
        raise CimInputError("no point cloud given")
    return files


def _open(path: Path) -> laspy.LasReader:
    try:
        return laspy.open(path, laz_backend=laspy.LazBackend.Lazrs)
    except FileNotFoundError:
        raise CimIOError(f"{path}: no such file") from None
    except (laspy.errors.LaspyException, ValueError, OSError) as exc:
        raise CimInputError(f"{path}: not a LAS/LAZ file laspy can read ({exc})") from None


def _z_factor(crs: CRS) -> tuple[CRS, float]:
    """The horizontal CRS of ``crs`` and metres per z unit.

    A compound CRS gives its vertical axis' unit; a 2D projected CRS in feet is taken to have z
    in the same feet (the LAS habit); geographic and metric CRSs give metres.
    """
    if crs.is_compound:
        horizontal, vertical = crs.sub_crs_list[0], crs.sub_crs_list[-1]
        factor = vertical.axis_info[0].unit_conversion_factor if vertical.axis_info else 1.0
        return horizontal, float(factor)
    if crs.is_projected and crs.axis_info:
        return crs, float(crs.axis_info[0].unit_conversion_factor)
    return crs, 1.0


def open_pointcloud(path: str | Path, crs: object = None, *, crs_override: bool = False) -> PointCloudSource:
    """Read a LAS/LAZ header and settle its CRS.

    Parameters
    ----------
    path : a .las or .laz file
    crs : the CRS to assume when the file declares none (``"EPSG:2994"``, WKT, a pyproj CRS)
    crs_override : use ``crs`` even when the file declares one (for files whose header is wrong)

    Raises
    ------
    CimCRSError
        The file declares no CRS (or one pyproj cannot read) and none is given; the message
        names the file.
    CimIOError, CimInputError
        Missing or unreadable file.
    """
    path = Path(path)
    with _open(path) as reader:
        h = reader.header
        try:
            header_crs = h.parse_crs()
        except Exception as exc:  # laspy raises a variety of errors on malformed VLRs
            log.warning("%s: cannot parse the header's CRS (%s)", path, exc)
            header_crs = None
        if crs is not None and (crs_override or header_crs is None):
            use, crs_from = parse_crs(crs, what=str(path)), "argument"
        elif header_crs is not None:
            use, crs_from = header_crs, "header"
        else:
            raise CimCRSError(
                f"{path}: the LAS header declares no CRS (no WKT or GeoTIFF keys VLR); give one (crs=..., --crs EPSG:XXXX)"
            )
        horizontal, zf = _z_factor(use)
        dims = set(h.point_format.dimension_names)
        has_rgb = {"red", "green", "blue"} <= dims
        laz_chunk = 0
        if h.are_points_compressed:
            for vlr in h.vlrs:
                if vlr.__class__.__name__ == "LasZipVlr":
                    import lazrs

                    lv = lazrs.LazVlr(vlr.record_data)
                    laz_chunk = 0 if lv.uses_variable_size_chunks() else int(lv.chunk_size())
        shift = 0
        if has_rgb and h.point_count:
            sample = reader.read_points(min(h.point_count, 65536)).array
            if max(int(sample["red"].max()), int(sample["green"].max()), int(sample["blue"].max())) > 255:
                shift = 8
        return PointCloudSource(
            path=path,
            count=int(h.point_count),
            version=f"{h.version.major}.{h.version.minor}",
            point_format=int(h.point_format.id),
            compressed=bool(h.are_points_compressed),
            crs_wkt=horizontal.to_wkt(),
            z_factor=zf,
            scales=tuple(float(v) for v in h.scales),
            offsets=tuple(float(v) for v in h.offsets),
            mins=tuple(float(v) for v in h.mins),
            maxs=tuple(float(v) for v in h.maxs),
            has_rgb=has_rgb,
            color_shift=shift,
            laz_chunk=laz_chunk,
            crs_from=crs_from,
        )


def read_batches(src: PointCloudSource, start: int = 0, count: int | None = None, batch: int = 1 << 19) -> Iterator[PointBatch]:
    """Stream points ``[start, start + count)`` of a file in batches of at most ``batch``.

    LAZ files seek to ``start`` through their chunk table (decoding from the chunk's start).
    """
    count = src.count - start if count is None else min(count, src.count - start)
    with _open(src.path) as reader:
        if start:
            reader.seek(start)
        fmt = src.point_format
        left = count
        while left > 0:
            pts = reader.read_points(min(batch, left))
            n = len(pts)
            if n == 0:
                raise CimInputError(f"{src.path}: the file holds fewer points than its header says ({src.count})")
            left -= n
            a = pts.array
            if fmt >= 6:
                cls = a["classification"]
                ret = a["bit_fields"] & np.uint8(0x0F)
            else:
                cls = a["raw_classification"] & np.uint8(0x1F)
                ret = a["bit_fields"] & np.uint8(0x07)
            rgb = None
            if src.has_rgb:
                rgb = np.empty((n, 3), dtype=np.uint8)
                for i, c in enumerate(("red", "green", "blue")):
                    rgb[:, i] = a[c] >> src.color_shift if src.color_shift else a[c]
            yield PointBatch(a["X"], a["Y"], a["Z"], src.scales, src.offsets, rgb, a["intensity"], cls, ret)


# --- source CRS → city ENU ---------------------------------------------------------------


def exact_enu(crs: CRS, frame: LocalFrame, x: np.ndarray, y: np.ndarray, z: np.ndarray, z_factor: float = 1.0) -> np.ndarray:
    """Exact ENU (n, 3) of source points: pyproj to ECEF (EPSG:4978), then the frame's rotation.

    ``z * z_factor`` is taken as the ellipsoidal height (heights are what the source says).
    """
    t = transformer(crs, ECEF)
    X, Y, Z = t.transform(
        np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64), np.asarray(z, dtype=np.float64) * z_factor
    )
    return frame.from_ecef(np.stack([np.asarray(X), np.asarray(Y), np.asarray(Z)], axis=1))


_TERMS = 9  # 1, u, v, w, u², uv, v², uw, vw


def _basis(u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(9, n) rows of the quadratic basis (no w²: heights enter linearly, tilted by the curve)."""
    b = np.empty((_TERMS, len(u)))
    b[0] = 1.0
    b[1], b[2], b[3] = u, v, w
    np.multiply(u, u, out=b[4])
    np.multiply(u, v, out=b[5])
    np.multiply(v, v, out=b[6])
    np.multiply(u, w, out=b[7])
    np.multiply(v, w, out=b[8])
    return b


@dataclass
class _Fit:
    centre: np.ndarray  # (3,) source units
    half: np.ndarray  # (3,) source units
    coef: np.ndarray  # (3, 9)
    error: float  # metres, max over check points


class LocalTransform:
    """Source CRS → ENU of a :class:`LocalFrame`, by local quadratic fits checked against pyproj.

    Parameters
    ----------
    crs : the source (horizontal) CRS
    frame : the city's ENU frame
    z_factor : metres per unit of z
    tol : largest accepted error of a fit (m), checked at control points
    what : a name for error messages (the file)
    """

    def __init__(self, crs: CRS, frame: LocalFrame, z_factor: float = 1.0, tol: float = 1e-3, what: str = "") -> None:
        self.crs = crs
        self.frame = frame
        self.z_factor = float(z_factor)
        self.tol = float(tol)
        self.what = what
        self.fits = 0
        self.exact_points = 0
        self.max_error = 0.0

    def exact(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Exact (n, 3) ENU through pyproj; raises CimCRSError on points the CRS cannot place."""
        enu = exact_enu(self.crs, self.frame, x, y, z, self.z_factor)
        if not np.isfinite(enu).all():
            bad = ~np.isfinite(enu).all(axis=1)
            i = int(np.flatnonzero(bad)[0])
            raise CimCRSError(
                f"{self.what}: coordinates ({float(np.asarray(x)[i])}, {float(np.asarray(y)[i])}) are outside what "
                f"{crs_label(self.crs)} can place; is the file's CRS right? (give crs=... with crs_override)"
            )
        return enu

    def fit(self, lo: np.ndarray, hi: np.ndarray, sample: np.ndarray | None = None) -> _Fit:
        """Fit the quadratic over the box ``[lo, hi]`` (source units) and measure its error.

        ``sample`` (m, 3) are extra check points (points of the data)."""
        lo = np.asarray(lo, dtype=np.float64)
        hi = np.asarray(hi, dtype=np.float64)
        centre = (lo + hi) / 2.0
        half = np.maximum((hi - lo) / 2.0, 1e-6)
        g = np.linspace(-1.0, 1.0, 5)
        gz = np.linspace(-1.0, 1.0, 3)
        U, V, W = (a.ravel() for a in np.meshgrid(g, g, gz, indexing="ij"))
        pts = centre + np.stack([U, V, W], axis=1) * half
        enu = self.exact(pts[:, 0], pts[:, 1], pts[:, 2])
        coef, *_ = np.linalg.lstsq(_basis(U, V, W).T, enu, rcond=None)
        coef = np.ascontiguousarray(coef.T)
        # check between the control points and at points of the data
        c = (np.linspace(-1.0, 1.0, 5)[:-1] + 0.25)
        CU, CV, CW = (a.ravel() for a in np.meshgrid(c, c, np.array([-0.5, 0.5]), indexing="ij"))
        chk = centre + np.stack([CU, CV, CW], axis=1) * half
        if sample is not None and len(sample):
            chk = np.concatenate([chk, sample])
        uvw = (chk - centre) / half
        approx = (coef @ _basis(uvw[:, 0], uvw[:, 1], uvw[:, 2])).T
        err = float(np.abs(approx - self.exact(chk[:, 0], chk[:, 1], chk[:, 2])).max())
        self.fits += 1
        return _Fit(centre, half, coef, err)

    def apply(self, x: np.ndarray, y: np.ndarray, z: np.ndarray, _depth: int = 0) -> np.ndarray:
        """ENU of source points as a (3, n) float64 array (rows east, north, up).

        The quadratic over the points' box is used where it is within ``tol`` of pyproj;
        failing boxes are split in four (three times at most), then transformed exactly.
        """
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        z = np.asarray(z, dtype=np.float64)
        n = len(x)
        if n == 0:
            return np.empty((3, 0))
        if n <= 256:
            self.exact_points += n
            return np.ascontiguousarray(self.exact(x, y, z).T)
        lo = np.array([x.min(), y.min(), z.min()])
        hi = np.array([x.max(), y.max(), z.max()])
        pick = np.linspace(0, n - 1, 32).astype(np.int64)
        f = self.fit(lo, hi, np.stack([x[pick], y[pick], z[pick]], axis=1))
        if f.error <= self.tol:
            self.max_error = max(self.max_error, f.error)
            return self._evaluate(f, x, y, z)
        if _depth >= 3:
            self.exact_points += n
            return np.ascontiguousarray(self.exact(x, y, z).T)
        out = np.empty((3, n))
        east = x >= f.centre[0]
        north = y >= f.centre[1]
        for m in (~east & ~north, east & ~north, ~east & north, east & north):
            if m.any():
                out[:, m] = self.apply(x[m], y[m], z[m], _depth + 1)
        return out

    def apply_raw(self, X: np.ndarray, Y: np.ndarray, Z: np.ndarray, scales: Sequence[float], offsets: Sequence[float]) -> np.ndarray:
        """:meth:`apply` on raw LAS integers (``x = X * scale + offset``), as (3, n) ENU."""
        n = len(X)
        if n <= 256:
            return self.apply(X * scales[0] + offsets[0], Y * scales[1] + offsets[1], Z * scales[2] + offsets[2])
        raw_lo = np.array([X.min(), Y.min(), Z.min()], dtype=np.float64)
        raw_hi = np.array([X.max(), Y.max(), Z.max()], dtype=np.float64)
        s = np.asarray(scales, dtype=np.float64)
        o = np.asarray(offsets, dtype=np.float64)
        lo = np.minimum(raw_lo * s + o, raw_hi * s + o)
        hi = np.maximum(raw_lo * s + o, raw_hi * s + o)
        pick = np.linspace(0, n - 1, 32).astype(np.int64)
        sample = np.stack([X[pick] * s[0] + o[0], Y[pick] * s[1] + o[1], Z[pick] * s[2] + o[2]], axis=1)
        f = self.fit(lo, hi, sample)
        if f.error > self.tol:
            return self.apply(X * s[0] + o[0], Y * s[1] + o[1], Z * s[2] + o[2])
        self.max_error = max(self.max_error, f.error)
        # fold scale/offset and the box normalisation into one multiply-add per axis
        a = s / f.half
        b = (o - f.centre) / f.half
        basis = np.empty((_TERMS, n))
        basis[0] = 1.0
        for i, col in enumerate((X, Y, Z)):
            np.multiply(col, a[i], out=basis[1 + i])
            basis[1 + i] += b[i]
        u, v, w = basis[1], basis[2], basis[3]
        np.multiply(u, u, out=basis[4])
        np.multiply(u, v, out=basis[5])
        np.multiply(v, v, out=basis[6])
        np.multiply(u, w, out=basis[7])
        np.multiply(v, w, out=basis[8])
        return f.coef @ basis

    def _evaluate(self, f: _Fit, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        u = (x - f.centre[0]) / f.half[0]
        v = (y - f.centre[1]) / f.half[1]
        w = (z - f.centre[2]) / f.half[2]
        return f.coef @ _basis(u, v, w)

    def to_enu(self, xyz: np.ndarray) -> np.ndarray:
        """(n, 3) source coordinates → (n, 3) ENU metres."""
        xyz = np.asarray(xyz, dtype=np.float64)
        return np.ascontiguousarray(self.apply(xyz[:, 0], xyz[:, 1], xyz[:, 2]).T)


def source_transform(src: PointCloudSource, frame: LocalFrame, tol: float = 1e-3) -> LocalTransform:
    """The :class:`LocalTransform` of one file into ``frame``."""
    return LocalTransform(src.crs, frame, src.z_factor, tol, what=str(src.path))


def header_box_enu(src: PointCloudSource, frame: LocalFrame) -> tuple[np.ndarray, np.ndarray]:
    """ENU bounds of a file's header box (a 9 x 9 x 2 grid over it, exact pyproj)."""
    g = np.linspace(0.0, 1.0, 9)
    U, V, W = (a.ravel() for a in np.meshgrid(g, g, np.array([0.0, 1.0]), indexing="ij"))
    lo, hi = np.array(src.mins), np.array(src.maxs)
    pts = lo + np.stack([U, V, W], axis=1) * (hi - lo)
    enu = source_transform(src, frame).exact(pts[:, 0], pts[:, 1], pts[:, 2])
    return enu.min(axis=0), enu.max(axis=0)


def frame_for(sources: Sequence[PointCloudSource]) -> LocalFrame:
    """An ENU frame at the centre of the files' header boxes (mid height)."""
    lons, lats, hs = [], [], []
    for src in sources:
        lo, hi = np.array(src.mins), np.array(src.maxs)
        c = (lo + hi) / 2.0
        t = transformer(src.crs, "EPSG:4326")
        lon, lat = t.transform(np.array([lo[0], hi[0], c[0]]), np.array([lo[1], hi[1], c[1]]))
        if not (np.isfinite(lon).all() and np.isfinite(lat).all()):
            raise CimCRSError(f"{src.path}: its header box is outside what {crs_label(src.crs)} can place; is the CRS right?")
        lons += list(lon[:2])
        lats += list(lat[:2])
        hs += [lo[2] * src.z_factor, hi[2] * src.z_factor]
    return LocalFrame((min(lons) + max(lons)) / 2.0, (min(lats) + max(lats)) / 2.0, (min(hs) + max(hs)) / 2.0)
