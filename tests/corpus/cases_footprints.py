"""Damaged building footprints: GeoJSON, Shapefile (each of its files) and GeoPackage."""

from __future__ import annotations

import json
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

from tests.corpus.bases import Bases, map_coords, write_geojson
from tests.corpus.make_corpus import ANY, ERROR, LOSSY, OK, Made, byte_damage, case, output_cases

__all__: list[str] = []

KIND = "buildings"
ARGS = ("--height-attr", "height")


def _geojson_case(name: str, expect: str, edit: Callable[[list[dict]], list[dict] | dict], *, args: tuple[str, ...] = ARGS) -> None:
    @case(KIND, f"geojson-{name}", expect)
    def _(b: Bases, folder: Path) -> Made:
        feats = b.lonlat_features()
        doc = edit(feats)
        path = folder / "footprints.geojson"
        if isinstance(doc, list):
            write_geojson(path, doc)
        else:
            path.write_text(json.dumps(doc))
        return Made([path], list(args), (path.name,))


def _set_first_coord(value: tuple[float, float], index: int = 0) -> Callable[[list[dict]], list[dict]]:
    def edit(feats: list[dict]) -> list[dict]:
        ring = feats[index]["geometry"]["coordinates"][0]
        if isinstance(ring[0][0], list):  # MultiPolygon
            ring = ring[0]
        ring[1] = list(value)
        return feats

    return edit


def _every(fn: Callable[[float, float], list[float]]) -> Callable[[list[dict]], list[dict]]:
    def edit(feats: list[dict]) -> list[dict]:
        for f in feats:
            f["geometry"] = map_coords(f["geometry"], fn)
        return feats

    return edit


def _geometry(index: int, geom: dict | None) -> Callable[[list[dict]], list[dict]]:
    def edit(feats: list[dict]) -> list[dict]:
        feats[index]["geometry"] = geom
        return feats

    return edit


def _height(value: object, index: int = 0) -> Callable[[list[dict]], list[dict]]:
    def edit(feats: list[dict]) -> list[dict]:
        feats[index]["properties"]["height"] = value
        return feats

    return edit


_geojson_case("nan-coordinate", LOSSY, _set_first_coord((float("nan"), 34.5)))
_geojson_case("inf-coordinate", LOSSY, _set_first_coord((float("inf"), 34.5)))
_geojson_case("every-coordinate-nan", ERROR, _every(lambda x, y: [float("nan"), float("nan")]))
_geojson_case("longitude-200-one", LOSSY, _set_first_coord((200.0, 34.5)))
_geojson_case("longitude-200-all", ERROR, _every(lambda x, y: [x + 95.0, y]))
_geojson_case("latitude-95-all", ERROR, _every(lambda x, y: [x, y + 60.5]))
_geojson_case("far-from-the-rest", LOSSY, _set_first_coord((-70.0, -30.0)))
_geojson_case("null-geometry", LOSSY, _geometry(0, None))
_geojson_case("point-geometry", LOSSY, _geometry(0, {"type": "Point", "coordinates": [105.0, 34.5]}))
_geojson_case("line-geometry", LOSSY, _geometry(0, {"type": "LineString", "coordinates": [[105.0, 34.5], [105.001, 34.5]]}))
_geojson_case("empty-polygon", LOSSY, _geometry(0, {"type": "Polygon", "coordinates": []}))
_geojson_case("two-point-ring", LOSSY, _geometry(0, {"type": "Polygon", "coordinates": [[[105.0, 34.5], [105.001, 34.5], [105.0, 34.5]]]}))
_geojson_case(
    "bowtie",
    LOSSY,
    _geometry(
        0,
        {"type": "Polygon", "coordinates": [[[104.7, 34.57], [104.7002, 34.5702], [104.7002, 34.57], [104.7, 34.5702], [104.7, 34.57]]]},
    ),
)
_geojson_case(
    "unclosed-ring", ANY, _geometry(0, {"type": "Polygon", "coordinates": [[[104.7, 34.57], [104.7002, 34.57], [104.7002, 34.5702]]]})
)
_geojson_case("height-nan", LOSSY, _height(float("nan")))
_geojson_case("height-negative", LOSSY, _height(-25.0))
_geojson_case("height-1e12", LOSSY, _height(1e12))
_geojson_case("height-3e38", LOSSY, _height(3e38))
_geojson_case("height-inf", LOSSY, _height(float("inf")))
_geojson_case("height-text", LOSSY, _height("tall"))
_geojson_case("height-null", LOSSY, _height(None))
_geojson_case("duplicate-ids", ANY, lambda fs: [dict(f, properties=dict(f["properties"], id="same")) for f in fs])
_geojson_case("no-features", ERROR, lambda fs: [])
_geojson_case("not-geojson", ERROR, lambda fs: {"hello": "world"})
_geojson_case("metres-as-degrees", ERROR, lambda fs: {"type": "FeatureCollection", "features": _metres(fs)})
_geojson_case("missing-height-attribute", LOSSY, lambda fs: fs, args=("--height-attr", "no_such_column"))
_geojson_case("sound", OK, lambda fs: fs)


def _metres(feats: list[dict]) -> list[dict]:
    """The features with their EPSG:4544 metres written where degrees belong."""
    from pyproj import Transformer

    tr = Transformer.from_crs("EPSG:4326", "EPSG:4544", always_xy=True)
    return _every(lambda x, y: list(tr.transform(x, y)))(feats)


@case(KIND, "geojson-a-list", ERROR)
def _(b: Bases, folder: Path) -> Made:
    path = folder / "footprints.geojson"
    path.write_text(json.dumps(b.lonlat_features()))
    return Made([path], list(ARGS), (path.name,))


byte_damage(KIND, "geojson", lambda b: b.geojson, header=200, truncated=ERROR, args=ARGS, seed=21, flips=4)
byte_damage(
    KIND,
    "gpkg",
    lambda b: b.gpkg,
    header=100,
    truncated=LOSSY,
    args=ARGS,
    seed=22,
    flips=4,
    size_hint=100_000,
)


def _shapefile_copy(b: Bases, folder: Path) -> Path:
    for ext in (".shp", ".shx", ".dbf", ".prj"):
        shutil.copyfile(b.shapefile.with_suffix(ext), folder / f"footprints{ext}")
    return folder / "footprints.shp"


def _in_shapefile(ext: str) -> Callable[[Bases, Path, bytes], Path]:
    def place(b: Bases, folder: Path, data: bytes) -> Path:
        shp = _shapefile_copy(b, folder)
        shp.with_suffix(ext).write_bytes(data)
        return shp

    return place


for _ext, _header, _cut in ((".shp", 100, LOSSY), (".dbf", 32 + 32 * 4, LOSSY), (".shx", 100, LOSSY)):
    byte_damage(
        KIND,
        f"shapefile{_ext}",
        lambda b, _ext=_ext: b.shapefile.with_suffix(_ext),
        header=_header,
        truncated=_cut,
        args=ARGS,
        seed=23,
        flips=3,
        size_hint=1500,
        place=_in_shapefile(_ext),
        last_byte_optional=_ext == ".dbf",
    )


def _shapefile_case(name: str, expect: str, edit: Callable[[Path], None], args: tuple[str, ...] = ARGS) -> None:
    @case(KIND, f"shapefile-{name}", expect)
    def _(b: Bases, folder: Path) -> Made:
        shp = _shapefile_copy(b, folder)
        edit(shp)
        return Made([shp], list(args), ("footprints",))


def _patch(ext: str, offset: int, fmt: str, value: object) -> Callable[[Path], None]:
    def edit(shp: Path) -> None:
        p = shp.with_suffix(ext)
        data = bytearray(p.read_bytes())
        struct.pack_into(fmt, data, offset, value)
        p.write_bytes(bytes(data))

    return edit


_shapefile_case("no-prj", ERROR, lambda shp: shp.with_suffix(".prj").unlink())
_shapefile_case("garbage-prj", ERROR, lambda shp: shp.with_suffix(".prj").write_text("PROJCS[nonsense"))
_shapefile_case(
    "prj-says-4326",
    ERROR,
    lambda shp: shp.with_suffix(".prj").write_text(
        'GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563]],PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433]]'
    ),
)
_shapefile_case("no-dbf", LOSSY, lambda shp: shp.with_suffix(".dbf").unlink())
_shapefile_case("no-shx", ANY, lambda shp: shp.with_suffix(".shx").unlink())
_shapefile_case("dbf-lying-record-count", LOSSY, _patch(".dbf", 4, "<I", 4_000_000_000))
_shapefile_case("dbf-fewer-records", LOSSY, _patch(".dbf", 4, "<I", 5))
_shapefile_case("shp-lying-file-length", ANY, _patch(".shp", 24, ">i", 2**30))
_shapefile_case("shp-bbox-nan", ANY, _patch(".shp", 36, "<d", float("nan")))
_shapefile_case("shp-first-x-1e12", LOSSY, _patch(".shp", 100 + 8 + 44, "<d", 1e12))
_shapefile_case("shp-first-x-nan", LOSSY, _patch(".shp", 100 + 8 + 44, "<d", float("nan")))
_shapefile_case("shp-num-points-lying", LOSSY, _patch(".shp", 100 + 8 + 40, "<i", 2**30))
_shapefile_case("shp-num-parts-lying", LOSSY, _patch(".shp", 100 + 8 + 36, "<i", 2**30))
_shapefile_case("sound", OK, lambda shp: None)


@case(KIND, "gpkg-no-such-layer", ERROR)
def _(b: Bases, folder: Path) -> Made:
    return Made([b.gpkg], [*ARGS, "--layer", "nope"], ("nope",))


@case(KIND, "gpkg-zero-features", ERROR)
def _(b: Bases, folder: Path) -> Made:
    import sqlite3

    path = folder / "footprints.gpkg"
    shutil.copyfile(b.gpkg, path)
    with sqlite3.connect(path) as db:
        table = db.execute("select table_name from gpkg_contents").fetchone()[0]
        db.execute(f'delete from "{table}"')
    return Made([path], list(ARGS), (path.name,))


@case(KIND, "dem-truncated", ERROR)
def _(b: Bases, folder: Path) -> Made:
    dem = folder / "dem.tif"
    data = (b.sample / "data" / "dem.tif").read_bytes()  # the cut in Bases.dem lies beside the footprints
    dem.write_bytes(data[: len(data) // 2])
    return Made([b.gpkg], [*ARGS, "--dem", str(dem)], ("dem.tif",))


@case(KIND, "real-dbf-cut", LOSSY, realdata=True)
def _(b: Bases, folder: Path) -> Made:
    src = b.real("vector/osgearth_dcbuildings.shp")
    for ext in (".shp", ".shx", ".dbf", ".prj"):
        shutil.copyfile(src.with_suffix(ext), folder / f"dc{ext}")
    dbf = folder / "dc.dbf"
    dbf.write_bytes(dbf.read_bytes()[: dbf.stat().st_size // 3])
    return Made([folder / "dc.shp"], [], ("dc",))


@case(KIND, "real-shp-cut", LOSSY, realdata=True)
def _(b: Bases, folder: Path) -> Made:
    src = b.real("vector/osgearth_dcbuildings.shp")
    for ext in (".shp", ".shx", ".dbf", ".prj"):
        shutil.copyfile(src.with_suffix(ext), folder / f"dc{ext}")
    shp = folder / "dc.shp"
    shp.write_bytes(shp.read_bytes()[: shp.stat().st_size // 2])
    return Made([shp], [], ("dc",))


output_cases(KIND, lambda b: b.gpkg, ARGS)
