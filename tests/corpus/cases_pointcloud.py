"""Damaged point clouds: LAS and LAZ headers that lie, files cut short, wrong or missing CRSs."""

from __future__ import annotations

import shutil
import struct
from collections.abc import Callable
from pathlib import Path

from tests.corpus.bases import Bases
from tests.corpus.make_corpus import ANY, ERROR, LOSSY, OK, Made, byte_damage, case, output_cases

__all__: list[str] = []

KIND = "pointcloud"

# LAS 1.4 public header block: offset of each field patched below
VERSION_MINOR, HEADER_SIZE, POINT_OFFSET, N_VLRS, POINT_FORMAT, RECORD_LENGTH = 25, 94, 96, 100, 104, 105
SCALE_X, SCALE_Z, OFFSET_X, OFFSET_Z, MAX_X, MIN_X = 131, 147, 155, 171, 179, 187
POINT_COUNT_14 = 247

byte_damage(KIND, "las", lambda b: b.las, header=375, truncated=LOSSY, seed=31, size_hint=40_000)
byte_damage(KIND, "laz", lambda b: b.laz, header=375, truncated=LOSSY, seed=32, size_hint=14_000)


def _header_case(name: str, expect: str, patches: list[tuple[int, str, object]], *, laz: bool = False, args: tuple[str, ...] = ()) -> None:
    @case(KIND, f"{'laz' if laz else 'las'}-{name}", expect)
    def _(b: Bases, folder: Path) -> Made:
        src = b.laz if laz else b.las
        data = bytearray(src.read_bytes())
        for offset, fmt, value in patches:
            struct.pack_into(fmt, data, offset, value)
        path = folder / src.name
        path.write_bytes(bytes(data))
        return Made([path], list(args), (src.name,))


for _laz in (False, True):
    _header_case("offset-nan", ERROR, [(OFFSET_X, "<d", float("nan"))], laz=_laz)
    _header_case("scale-inf", ERROR, [(SCALE_X, "<d", float("inf"))], laz=_laz)
    _header_case("scale-zero", ERROR, [(SCALE_X, "<d", 0.0)], laz=_laz)
    _header_case("scale-huge", ERROR, [(SCALE_X, "<d", 1e6)], laz=_laz)
    _header_case("z-offset-1e12", ERROR, [(OFFSET_Z, "<d", 1e12)], laz=_laz)
    _header_case("z-offset-3e38", ERROR, [(OFFSET_Z, "<d", 3e38)], laz=_laz)
    _header_case("z-scale-nan", ERROR, [(SCALE_Z, "<d", float("nan"))], laz=_laz)
    _header_case("count-huge", LOSSY, [(POINT_COUNT_14, "<Q", 2**40)], laz=_laz)
    _header_case("count-plus-100", LOSSY, [(POINT_COUNT_14, "<Q", 1207 + 100)], laz=_laz)
    _header_case("count-zero", ANY, [(POINT_COUNT_14, "<Q", 0)], laz=_laz)
    _header_case("point-format-99", ERROR, [(POINT_FORMAT, "<B", 99)], laz=_laz)
    _header_case("record-length-3", ERROR, [(RECORD_LENGTH, "<H", 3)], laz=_laz)
    _header_case("point-offset-past-end", ERROR, [(POINT_OFFSET, "<I", 2**31)], laz=_laz)
    _header_case("header-size-10", ERROR, [(HEADER_SIZE, "<H", 10)], laz=_laz)
    _header_case("version-1-9", ANY, [(VERSION_MINOR, "<B", 9)], laz=_laz)
    _header_case("vlr-count-huge", ERROR, [(N_VLRS, "<I", 2**31)], laz=_laz)
    _header_case("bounds-lying", ANY, [(MAX_X, "<d", 1e7), (MIN_X, "<d", -1e7)], laz=_laz)
    _header_case("bounds-nan", ANY, [(MAX_X, "<d", float("nan"))], laz=_laz)

_header_case("count-minus-100", ANY, [(POINT_COUNT_14, "<Q", 1207 - 100)])


def _rewritten(name: str, expect: str, edit: Callable[[object], None], *, args: tuple[str, ...] = (), laz: bool = False) -> None:
    """A case whose file laspy rewrites after ``edit(las)``."""

    @case(KIND, name, expect)
    def _(b: Bases, folder: Path) -> Made:
        import laspy

        las = laspy.read(b.las)
        edit(las)
        path = folder / ("points.laz" if laz else "points.las")
        las.write(path)
        return Made([path], list(args), (path.name,))


def _crs(code: str | None) -> Callable[[object], None]:
    def edit(las) -> None:
        from pyproj import CRS

        las.header.vlrs.clear()
        if code is not None:
            las.header.add_crs(CRS(code))

    return edit


def _shift(dx: float, dy: float, code: str | None = None) -> Callable[[object], None]:
    def edit(las) -> None:
        import numpy as np

        x, y = np.asarray(las.x) + dx, np.asarray(las.y) + dy
        las.header.offsets = [las.header.offsets[0] + dx, las.header.offsets[1] + dy, las.header.offsets[2]]
        las.x, las.y = x, y
        if code is not None:
            _crs(code)(las)

    return edit


_rewritten("metres-tagged-4326", ERROR, _crs("EPSG:4326"))
_rewritten("metres-tagged-4326-laz", ERROR, _crs("EPSG:4326"), laz=True)
_rewritten("no-crs", ERROR, _crs(None))
_rewritten("no-crs-given-one", OK, _crs(None), args=("--crs", "EPSG:4544"))
_rewritten("override-to-another-zone", ANY, lambda las: None, args=("--crs", "EPSG:4545", "--crs-override"))
_rewritten("outside-area-of-use", ERROR, _shift(8_000_000.0, 0.0))
_rewritten("longitude-200", ERROR, _shift(0.0, 0.0, "EPSG:4326"))


@case(KIND, "wkt-vlr-garbage", ERROR)
def _(b: Bases, folder: Path) -> Made:
    data = bytearray(b.las.read_bytes())
    at = data.find(b"PROJCS[")
    if at < 0:
        at = data.find(b"PROJCRS[")
    data[at : at + 40] = b"#" * 40
    path = folder / "points.las"
    path.write_bytes(bytes(data))
    return Made([path], [], (path.name,))


@case(KIND, "laz-without-laszip-vlr", ERROR)
def _(b: Bases, folder: Path) -> Made:
    data = bytearray(b.laz.read_bytes())
    at = data.find(b"laszip encoded")
    data[at : at + 14] = b"something else"
    path = folder / "points.laz"
    path.write_bytes(bytes(data))
    return Made([path], [], (path.name,))


@case(KIND, "laz-chunk-table-offset", LOSSY)
def _(b: Bases, folder: Path) -> Made:
    data = bytearray(b.laz.read_bytes())
    start = struct.unpack_from("<I", data, POINT_OFFSET)[0]
    struct.pack_into("<q", data, start, 2**40)
    path = folder / "points.laz"
    path.write_bytes(bytes(data))
    return Made([path], [], (path.name,))


@case(KIND, "two-cities-in-one-folder", ERROR)
def _(b: Bases, folder: Path) -> Made:
    import laspy

    shutil.copyfile(b.laz, folder / "a.laz")
    las = laspy.read(b.las)
    _shift(0.0, 900_000.0)(las)
    las.write(folder / "b.laz")
    return Made([folder], [], ("b.laz", "a.laz", "apart"))


@case(KIND, "folder-one-cut", LOSSY)
def _(b: Bases, folder: Path) -> Made:
    shutil.copyfile(b.laz, folder / "a.laz")
    data = b.laz.read_bytes()
    (folder / "b.laz").write_bytes(data[: len(data) * 2 // 3])
    return Made([folder], [], ("b.laz",))


@case(KIND, "folder-empty", ERROR)
def _(b: Bases, folder: Path) -> Made:
    (folder / "lidar").mkdir()
    return Made([folder / "lidar"], [], ("lidar",))


@case(KIND, "folder-of-text", ERROR)
def _(b: Bases, folder: Path) -> Made:
    (folder / "lidar").mkdir()
    (folder / "lidar" / "notes.las").write_text("not points\n")
    return Made([folder / "lidar"], [], ("notes.las",))


@case(KIND, "real-simple-sound", OK, realdata=True)
def _(b: Bases, folder: Path) -> Made:
    return Made([b.real("pointcloud/laspy_simple.las")], ["--crs", "EPSG:2992"], ("laspy_simple.las",))


@case(KIND, "real-simple-cut", LOSSY, realdata=True)
def _(b: Bases, folder: Path) -> Made:
    data = b.real("pointcloud/laspy_simple.las").read_bytes()
    path = folder / "laspy_simple.las"
    path.write_bytes(data[: len(data) // 2])
    return Made([path], ["--crs", "EPSG:2992"], (path.name,))


@case(KIND, "real-simple-laz-cut", LOSSY, realdata=True)
def _(b: Bases, folder: Path) -> Made:
    data = b.real("pointcloud/laspy_simple.laz").read_bytes()
    path = folder / "laspy_simple.laz"
    path.write_bytes(data[: len(data) // 2])
    return Made([path], ["--crs", "EPSG:2992"], (path.name,))


@case(KIND, "real-degrees-of-226", ERROR, realdata=True)
def _(b: Bases, folder: Path) -> Made:  # a real file: WGS 84 declared, x from 1 to 226
    path = b.real("pointcloud/laspy_simple1_4.las")
    return Made([path], [], (path.name,))


output_cases(KIND, lambda b: b.laz)
