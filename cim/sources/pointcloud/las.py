"""LAS/LAZ reader: headers, CRS, chunked point batches, and each file's transform to city ENU.

Reading goes through laspy (LAS 1.1–1.4, point formats 0–10; LAS 1.0, whose header differs from
1.1 only in its version byte, is read as 1.1) with the lazrs backend for LAZ, in its
multi-threaded mode when points are read (:func:`read_batches`): lazrs' multi-threaded decoder
and ``fork()``ed processes can deadlock, so the point-cloud layer works on threads and forks
nothing. Uncompressed point records are read directly into a reused buffer.

The transform itself (fitted, checked against pyproj) is :mod:`cim.sources.pointcloud.transform`.
"""

from __future__ import annotations

import io
import logging
import math
import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import laspy
import numpy as np
from pyproj import CRS

from cim.crs import check_area_of_use, crs_label, parse_crs, to_lonlat
from cim.errors import CimCRSError, CimError, CimInputError, CimIOError
from cim.kernels.frames import LocalFrame
from cim.sources.plausible import MAX_HEIGHT, MIN_HEIGHT
from cim.sources.pointcloud.transform import LocalTransform

__all__ = [
    "POINTCLOUD_SUFFIXES",
    "PointCloudSource",
    "PointBatch",
    "list_pointcloud_files",
    "open_pointcloud",
    "read_batches",
    "source_transform",
    "header_box_enu",
    "frame_for",
]

log = logging.getLogger("cim.pointcloud")

POINTCLOUD_SUFFIXES = (".las", ".laz")


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
    crs_from : ``"header"``, ``"argument"`` (the header declares none) or ``"override"`` (the
        argument replaced the header's, see ``crs_override``)
    full_crs_wkt : the CRS as declared or given (WKT2), vertical part included (see
        :mod:`cim.datum`)
    data_offset, record_size : where the point records start and their size (bytes)
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
    data_offset: int = 0
    record_size: int = 0
    full_crs_wkt: str = ""

    @property
    def crs(self) -> CRS:
        return CRS.from_wkt(self.crs_wkt)

    @property
    def resolution(self) -> float:
        """The finest coordinate step the file can record, in metres (its LAS scales)."""
        crs = self.crs
        if crs.is_geographic:
            xy = 111_320.0  # metres per degree of latitude: the finer of the two
        else:
            xy = float(crs.axis_info[0].unit_conversion_factor) if crs.axis_info else 1.0
        return float(min(self.scales[0] * xy, self.scales[1] * xy, self.scales[2] * self.z_factor))


@dataclass
class PointBatch:
    """A run of points of one file, in the file's CRS, as laspy's raw columns (views, no copy).

    ``x = X * scale + offset`` (source units); colour ``R >> color_shift`` (8 bits); class
    ``classification_raw & class_mask``; return number ``bit_fields & return_mask``.
    """

    X: np.ndarray
    Y: np.ndarray
    Z: np.ndarray
    scales: tuple[float, float, float]
    offsets: tuple[float, float, float]
    colors_raw: tuple[np.ndarray, np.ndarray, np.ndarray] | None  # uint16 R, G, B
    color_shift: int
    intensity: np.ndarray  # (n,) uint16
    classification_raw: np.ndarray  # (n,) uint8
    class_mask: int
    bit_fields: np.ndarray  # (n,) uint8
    return_mask: int

    def __len__(self) -> int:
        return len(self.X)

    def positions(self) -> np.ndarray:
        """(n, 3) float64 coordinates in the source CRS."""
        out = np.empty((len(self.X), 3))
        for i, a in enumerate((self.X, self.Y, self.Z)):
            out[:, i] = a * self.scales[i] + self.offsets[i]
        return out

    @property
    def rgb(self) -> np.ndarray | None:
        """(n, 3) uint8 colours, or None."""
        if self.colors_raw is None:
            return None
        return np.stack([(c >> self.color_shift).astype(np.uint8) for c in self.colors_raw], axis=1)

    @property
    def classification(self) -> np.ndarray:
        return self.classification_raw & np.uint8(self.class_mask)

    @property
    def return_number(self) -> np.ndarray:
        return self.bit_fields & np.uint8(self.return_mask)


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


class _Las10(io.RawIOBase):
    """A LAS 1.0 file seen as LAS 1.1, which laspy reads: the two share the header layout and
    point formats 0 and 1; only the version byte (offset 25) differs."""

    def __init__(self, path: Path) -> None:
        self._f = open(path, "rb")  # noqa: SIM115 - a file object laspy reads through; closed by close()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def readinto(self, b) -> int:
        pos = self._f.tell()
        n = self._f.readinto(b)
        if n and pos <= 25 < pos + n:
            memoryview(b).cast("B")[25 - pos] = 1
        return n

    def close(self) -> None:
        self._f.close()
        super().close()


def _open(path: Path, parallel: bool = False, selection: laspy.DecompressionSelection | None = None) -> laspy.LasReader:
    """A laspy reader; ``parallel`` decodes LAZ with lazrs' multi-threaded decoder; ``selection``
    decodes only those fields of a LAZ file of point format 6-10 (the others read as zeros)."""
    backend = laspy.LazBackend.LazrsParallel if parallel else laspy.LazBackend.Lazrs
    select = laspy.DecompressionSelection.all() if selection is None else selection
    try:
        with open(path, "rb") as f:
            head = f.read(375)
        _check_header_bytes(path, head)
        if head[:4] == b"LASF" and head[24:26] == b"\x01\x00":
            return laspy.open(io.BufferedReader(_Las10(path)), laz_backend=backend, closefd=True, decompression_selection=select)
        return laspy.open(path, laz_backend=backend, decompression_selection=select)
    except FileNotFoundError:
        raise CimIOError(f"{path}: no such file") from None
    except CimError:
        raise
    except (laspy.errors.LaspyException, ValueError, OSError, RuntimeError) as exc:
        raise CimInputError(f"{path}: not a LAS/LAZ file laspy can read ({exc})") from None


#: bytes of a point record of each LAS point format (0-10)
_RECORD_SIZES = (20, 28, 26, 34, 57, 63, 30, 36, 38, 59, 67)
#: uncompressed point bytes per byte of a LAZ file beyond which its header is not believed (LAZ
#: compresses real point clouds 5-15:1; identical points might reach a few hundred)
_MAX_LAZ_RATIO = 10_000


def _check_header_bytes(path: Path, head: bytes) -> None:
    """Refuse a LAS/LAZ public header that cannot describe its file, before laspy trusts it:
    a size, offset or count that points past the file's end (laspy would loop over two billion
    VLRs, or read points that are not there), a record length its point format cannot have,
    scales and offsets that are not finite numbers.

    Raises
    ------
    CimInputError
        Naming the file and the field.
    """
    if len(head) < 4 or head[:4] != b"LASF":
        return  # laspy says what it is not
    if len(head) < 227:
        raise CimInputError(f"{path}: the LAS header is truncated ({len(head)} of at least 227 bytes)")
    header_size, data_offset, n_vlrs = struct.unpack_from("<HII", head, 94)
    fmt_byte, record_len = struct.unpack_from("<BH", head, 104)
    fmt = fmt_byte & 0x3F
    compressed = bool(fmt_byte & 0xC0)
    scales = struct.unpack_from("<3d", head, 131)
    offsets = struct.unpack_from("<3d", head, 155)
    size = path.stat().st_size
    count = struct.unpack_from("<I", head, 107)[0]
    if head[24] == 1 and head[25] >= 4 and len(head) >= 255:
        count = max(count, struct.unpack_from("<Q", head, 247)[0])
    problem = None
    if header_size < 227 or header_size > size:
        problem = f"its header size of {header_size} bytes is impossible"
    elif data_offset < header_size or data_offset > size:
        problem = f"its points start at byte {data_offset:,}, outside the file's {size:,} bytes"
    elif n_vlrs * 54 > data_offset - header_size:
        problem = f"it declares {n_vlrs:,} VLRs in {data_offset - header_size:,} bytes"
    elif fmt >= len(_RECORD_SIZES) or record_len < _RECORD_SIZES[fmt]:
        problem = f"point format {fmt} with records of {record_len} bytes is not LAS"
    elif not all(math.isfinite(v) and v != 0.0 for v in scales):
        problem = f"its scales {scales} are not finite, non-zero numbers"
    elif not all(math.isfinite(v) for v in offsets):
        problem = f"its offsets {offsets} are not finite numbers"
    elif not compressed and data_offset + count * record_len > size:
        held = (size - data_offset) // record_len
        problem = f"it declares {count:,} points and holds {held:,} (the file is truncated, or the count lies)"
    elif compressed and count * record_len > _MAX_LAZ_RATIO * max(1, size - data_offset):
        problem = f"it declares {count:,} points in {size - data_offset:,} compressed bytes (the count lies)"
    if problem is not None:
        raise CimInputError(f"{path}: {problem}")


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


def _xyz(values: np.ndarray) -> tuple[float, float, float]:
    """A header's x, y, z triple (scales, offsets, bounds) as floats."""
    x, y, z = values
    return float(x), float(y), float(z)


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
            use, crs_from = parse_crs(crs, what=str(path)), "argument" if header_crs is None else "override"
        elif header_crs is not None:
            use, crs_from = header_crs, "header"
        else:
            raise CimCRSError(f"{path}: the LAS header declares no CRS (no WKT or GeoTIFF keys VLR); give one (crs=..., --crs EPSG:XXXX)")
        horizontal, zf = _z_factor(use)
        _check_header_box(path, h, horizontal, zf)
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
            try:
                sample = reader.read_points(min(h.point_count, 4096)).array
            except Exception as exc:  # lazrs and laspy raise their own kinds on damaged chunks
                raise CimInputError(f"{path}: cannot decode its first points: the file is truncated or corrupt ({exc})") from None
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
            scales=_xyz(h.scales),
            offsets=_xyz(h.offsets),
            mins=_xyz(h.mins),
            maxs=_xyz(h.maxs),
            has_rgb=has_rgb,
            color_shift=shift,
            laz_chunk=laz_chunk,
            crs_from=crs_from,
            data_offset=int(h.offset_to_point_data),
            record_size=int(h.point_format.size),
            full_crs_wkt=use.to_wkt(),
        )


def _check_header_box(path: Path, h: laspy.LasHeader, crs: CRS, z_factor: float) -> None:
    """Refuse a header whose box cannot lie where its CRS is used (metres tagged as degrees, a
    longitude of 226, the wrong zone), or whose heights no place has: the box's corners, and
    every height the header's z scale and offset can express.

    Raises
    ------
    CimCRSError, CimInputError
    """
    lo, hi = np.asarray(h.mins, dtype=np.float64), np.asarray(h.maxs, dtype=np.float64)
    if h.point_count and np.isfinite(lo).all() and np.isfinite(hi).all():
        with np.errstate(invalid="ignore", over="ignore"):
            lon, lat = to_lonlat(np.array([lo[0], hi[0], lo[0], hi[0]]), np.array([lo[1], lo[1], hi[1], hi[1]]), crs)
        check_area_of_use(crs, (float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max())), f"{path} (header bounds)")
    # every Z the header can express: offset + scale × int32
    scale, offset = float(h.scales[2]), float(h.offsets[2])
    ends = sorted([(offset + scale * -(2.0**31)) * z_factor, (offset + scale * (2.0**31 - 1)) * z_factor])
    if ends[1] < MIN_HEIGHT or ends[0] > MAX_HEIGHT:
        raise CimInputError(
            f"{path}: its z scale {scale:g} and offset {offset:g} put every point between {ends[0]:.6g} and {ends[1]:.6g} m: "
            "no place has such heights"
        )


def read_batches(
    src: PointCloudSource,
    start: int = 0,
    count: int | None = None,
    batch: int = 1 << 19,
    buffer: np.ndarray | None = None,
    selection: laspy.DecompressionSelection | None = None,
) -> Iterator[PointBatch]:
    """Stream points ``[start, start + count)`` of a file in batches of at most ``batch``.

    LAZ files go through laspy and lazrs, seeking to ``start`` through their chunk table
    (decoding from the chunk's start), with lazrs' multi-threaded decoder: its Python binding
    holds the GIL while it decodes, so threads reading LAZ side by side are no faster than one,
    while one batch of several LAZ chunks decodes on every core (safe here: cim starts no
    process after it). Uncompressed files are read straight into one reused buffer (laspy
    allocates each batch anew, in fresh pages), so a batch's arrays are only valid until the next
    one is asked for. ``buffer``, a uint8 array of at least ``batch * src.record_size`` bytes, is
    used for that when given. ``selection`` names the only fields a LAZ file of point format 6-10
    needs to decode (e.g. ``XY_RETURNS_CHANNEL | Z | CLASSIFICATION``); the others are zeros.
    """
    count = src.count - start if count is None else min(count, src.count - start)
    fmt = src.point_format
    if fmt >= 6:
        cls_field, cmask, rmask = "classification", 0xFF, 0x0F
    else:
        cls_field, cmask, rmask = "raw_classification", 0x1F, 0x07

    def batch_of(a: np.ndarray) -> PointBatch:
        colors = (a["red"], a["green"], a["blue"]) if src.has_rgb else None
        return PointBatch(
            a["X"],
            a["Y"],
            a["Z"],
            src.scales,
            src.offsets,
            colors,
            src.color_shift,
            a["intensity"],
            a[cls_field],
            cmask,
            a["bit_fields"],
            rmask,
        )

    if not src.compressed and src.record_size:
        yield from (batch_of(a) for a in _read_raw(src, start, count, batch, buffer))
        return
    with _open(src.path, parallel=True, selection=selection) as reader:
        left = count
        while left > 0:
            try:
                if start and left == count:
                    reader.seek(start)
                pts = reader.read_points(min(batch, left))
            except Exception as exc:  # lazrs and laspy raise their own kinds on damaged chunks
                raise CimInputError(
                    f"{src.path}: cannot decode points after point {start + count - left:,} of {src.count:,}: "
                    f"the file is truncated or corrupt ({exc})"
                ) from None
            n = len(pts)
            if n == 0:
                raise CimInputError(f"{src.path}: the file holds fewer points than its header says ({src.count})")
            left -= n
            yield batch_of(pts.array)


def _read_raw(src: PointCloudSource, start: int, count: int, batch: int, buffer: np.ndarray | None) -> Iterator[np.ndarray]:
    """Raw records of an uncompressed file, ``batch`` at a time, in one reused buffer."""
    std = laspy.PointFormat(src.point_format).dtype()
    fields = {name: (std.fields[name][0], std.fields[name][1]) for name in std.names}
    dtype = np.dtype(
        {
            "names": list(fields),
            "formats": [f[0] for f in fields.values()],
            "offsets": [f[1] for f in fields.values()],
            "itemsize": src.record_size,
        }
    )
    size = min(batch, max(count, 1))
    if buffer is not None and buffer.nbytes >= size * src.record_size:
        buf = buffer[: size * src.record_size].view(dtype)
    else:
        buf = np.empty(size, dtype=dtype)
    raw = buf.view(np.uint8).data
    try:
        fd = os.open(src.path, os.O_RDONLY)
    except FileNotFoundError:
        raise CimIOError(f"{src.path}: no such file") from None
    try:
        done = 0
        while done < count:
            n = min(len(buf), count - done)
            want = n * src.record_size
            got = os.preadv(fd, [raw[:want]], src.data_offset + (start + done) * src.record_size)
            if got != want:
                raise CimInputError(f"{src.path}: the file holds fewer points than its header says ({src.count})")
            done += n
            yield buf[:n]
    finally:
        os.close(fd)


# --- source CRS → city ENU (cim.sources.pointcloud_transform) -------------------------------


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
        lon, lat = to_lonlat(np.array([lo[0], hi[0], lo[0], hi[0]]), np.array([lo[1], lo[1], hi[1], hi[1]]), src.crs)
        if not (np.isfinite(lon).all() and np.isfinite(lat).all()) or np.abs(lat).max() > 90.0:
            raise CimCRSError(f"{src.path}: its header box is outside what {crs_label(src.crs)} can place; is the CRS right?")
        lons += list(lon)
        lats += list(lat)
        hs += [lo[2] * src.z_factor, hi[2] * src.z_factor]
    return LocalFrame((min(lons) + max(lons)) / 2.0, (min(lats) + max(lats)) / 2.0, (min(hs) + max(hs)) / 2.0)
