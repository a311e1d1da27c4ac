"""Damaged meshes: OBJ tiles cut short or with faces that point nowhere, missing and broken
materials and textures, lying georeference files, damaged GLB."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from tests.corpus.bases import Bases, metadata_xml
from tests.corpus.make_corpus import ANY, ERROR, LOSSY, OK, Made, byte_damage, case, output_cases

__all__: list[str] = []

KIND = "mesh"
TILE = Path("Data") / "Tile_+000_+000"
OBJ = TILE / "Tile_+000_+000.obj"


def _folder_copy(b: Bases, folder: Path) -> Path:
    dst = folder / "mesh"
    shutil.copytree(b.mesh, dst)
    return dst


def _in_folder(rel: Path) -> Callable[[Bases, Path, bytes], Path]:
    def place(b: Bases, folder: Path, data: bytes) -> Path:
        dst = _folder_copy(b, folder)
        (dst / rel).write_bytes(data)
        return dst

    return place


byte_damage(KIND, "obj", lambda b: b.mesh / OBJ, header=200, truncated=ANY, seed=61, flips=4, size_hint=12_000, place=_in_folder(OBJ))


def _glb_place(b: Bases, folder: Path, data: bytes) -> Path:
    shutil.copyfile(b.glb.parent / "offset.txt", folder / "offset.txt")
    (folder / "grid.glb").write_bytes(data)
    return folder / "grid.glb"


byte_damage(
    KIND,
    "glb",
    lambda b: b.glb,
    header=200,
    truncated=LOSSY,
    args=("--crs", "EPSG:4544"),
    seed=62,
    flips=4,
    size_hint=10_000,
    place=_glb_place,
)
byte_damage(
    KIND,
    "texture",
    lambda b: b.mesh / TILE / "Tile_+000_+000_0.png",
    header=60,
    truncated=ANY,  # a PNG cut in its last chunk still decodes: texture-cut-half checks the loss
    seed=63,
    flips=2,
    size_hint=300,
    place=_in_folder(TILE / "Tile_+000_+000_0.png"),
    broken=LOSSY,
)


def _obj_case(name: str, expect: str, edit: Callable[[str], str], *, args: tuple[str, ...] = ()) -> None:
    @case(KIND, f"obj-{name}", expect)
    def _(b: Bases, folder: Path) -> Made:
        dst = _folder_copy(b, folder)
        text = (dst / OBJ).read_text()
        edited = edit(text)
        assert edited != text, name
        (dst / OBJ).write_text(edited)
        return Made([dst], list(args), ("Tile_+000_+000.obj",))


def _first(prefix: str, replacement: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        lines = text.split("\n")
        k = next(i for i, line in enumerate(lines) if line.startswith(prefix))
        lines[k] = replacement
        return "\n".join(lines)

    return edit


_obj_case("face-index-out-of-range", LOSSY, _first("f ", "f 1/1 2/2 99999/3"))
_obj_case("face-index-zero", LOSSY, _first("f ", "f 0/1 2/2 3/3"))
_obj_case("face-index-negative-far", LOSSY, _first("f ", "f -99999/1 2/2 3/3"))
_obj_case("face-index-text", LOSSY, _first("f ", "f a/1 b/2 c/3"))
_obj_case("face-two-vertices", LOSSY, _first("f ", "f 1/1 2/2"))
_obj_case("vertex-nan", LOSSY, _first("v ", "v nan 0 0"))
_obj_case("vertex-inf", LOSSY, _first("v ", "v inf 0 0"))
_obj_case("vertex-1e12", LOSSY, _first("v ", "v 1e12 0 0"))
_obj_case("vertex-text", LOSSY, _first("v ", "v x y z"))
_obj_case("vertex-short", LOSSY, _first("v ", "v 1"))
_obj_case("every-vertex-1e12", ERROR, lambda t: "\n".join(("v 1e12 1e12 0" if line.startswith("v ") else line) for line in t.split("\n")))
_obj_case("no-faces", ERROR, lambda t: "\n".join(line for line in t.split("\n") if not line.startswith("f ")))
_obj_case("only-comments", ERROR, lambda t: "# nothing here\n")
_obj_case("mtllib-missing-file", LOSSY, lambda t: t.replace("mtllib Tile_+000_+000.mtl", "mtllib nowhere.mtl"))
_obj_case("usemtl-unknown", ANY, lambda t: t.replace("usemtl Material_0", "usemtl NoSuchMaterial"))
_obj_case("cut-mid-line", LOSSY, lambda t: t[: t.rindex("f ") + 7])
_obj_case("sound", OK, lambda t: t + "\n")


def _meta_case(name: str, expect: str, text: str | None, *, args: tuple[str, ...] = ()) -> None:
    @case(KIND, f"metadata-{name}", expect)
    def _(b: Bases, folder: Path) -> Made:
        dst = _folder_copy(b, folder)
        if text is None:
            (dst / "metadata.xml").unlink()
        else:
            (dst / "metadata.xml").write_text(text)
        return Made([dst], list(args), ("metadata.xml",) if text is not None else ("mesh", "crs", "CRS"))


_meta_case("truncated", ERROR, metadata_xml("EPSG:4544", "564672,3828015,1116")[:90])
_meta_case("srs-unknown", ERROR, metadata_xml("EPSG:999999", "564672,3828015,1116"))
_meta_case("srs-garbage", ERROR, metadata_xml("my grid", "564672,3828015,1116"))
_meta_case("srs-4326-metres", ERROR, metadata_xml("EPSG:4326", "564672,3828015,1116"))
_meta_case("srs-other-hemisphere", ERROR, metadata_xml("EPSG:4544", "9564672,3828015,1116"))
_meta_case("origin-nan", ERROR, metadata_xml("EPSG:4544", "nan,3828015,1116"))
_meta_case("origin-inf", ERROR, metadata_xml("EPSG:4544", "inf,3828015,1116"))
_meta_case("origin-height-1e12", ERROR, metadata_xml("EPSG:4544", "564672,3828015,1e12"))
_meta_case("origin-text", ERROR, metadata_xml("EPSG:4544", "here,there"))
_meta_case("origin-four-numbers", ERROR, metadata_xml("EPSG:4544", "1,2,3,4"))
_meta_case("enu", ERROR, metadata_xml("ENU:34.5,105.7", "0,0,0"))
_meta_case("missing", ERROR, None)
_meta_case("missing-crs-given", ERROR, None, args=("--crs", "EPSG:4544"))
_meta_case("not-xml", ERROR, "\x00\x01binary")


@case(KIND, "texture-cut-half", LOSSY)
def _(b: Bases, folder: Path) -> Made:
    dst = _folder_copy(b, folder)
    png = dst / TILE / "Tile_+000_+000_0.png"
    png.write_bytes(png.read_bytes()[: png.stat().st_size // 2])
    return Made([dst], [], ("Tile_+000_+000",))


@case(KIND, "texture-missing", LOSSY)
def _(b: Bases, folder: Path) -> Made:
    dst = _folder_copy(b, folder)
    (dst / TILE / "Tile_+000_+000_0.png").unlink()
    return Made([dst], [], ("Tile_+000_+000",))


@case(KIND, "mtl-missing", LOSSY)
def _(b: Bases, folder: Path) -> Made:
    dst = _folder_copy(b, folder)
    (dst / TILE / "Tile_+000_+000.mtl").unlink()
    return Made([dst], [], ("Tile_+000_+000",))


@case(KIND, "mtl-garbage", ANY)
def _(b: Bases, folder: Path) -> Made:
    dst = _folder_copy(b, folder)
    (dst / TILE / "Tile_+000_+000.mtl").write_bytes(b"\x00\xff" * 50)
    return Made([dst], [], ("Tile_+000_+000",))


@case(KIND, "empty-folder", ERROR)
def _(b: Bases, folder: Path) -> Made:
    (folder / "mesh").mkdir()
    return Made([folder / "mesh"], [], ("mesh",))


@case(KIND, "glb-offset-nan", ERROR)
def _(b: Bases, folder: Path) -> Made:
    shutil.copyfile(b.glb, folder / "grid.glb")
    (folder / "offset.txt").write_text("nan 3828015 1116\n")
    return Made([folder / "grid.glb"], ["--crs", "EPSG:4544"], ("offset.txt",))


@case(KIND, "glb-sound", OK)
def _(b: Bases, folder: Path) -> Made:
    return Made([b.glb], ["--crs", "EPSG:4544"], ("grid.glb",))


@case(KIND, "ply-garbage", ERROR)
def _(b: Bases, folder: Path) -> Made:
    (folder / "m.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 4000000000\nend_header\n\x00\x01")
    return Made([folder / "m.ply"], ["--crs", "EPSG:4544", "--origin", "564672", "3828015", "1116"], ("m.ply",))


@case(KIND, "stl-lying-count", ERROR)
def _(b: Bases, folder: Path) -> Made:
    (folder / "m.stl").write_bytes(b"\x00" * 80 + (4_000_000_000).to_bytes(4, "little") + b"\x00" * 100)
    return Made([folder / "m.stl"], ["--crs", "EPSG:4544", "--origin", "564672", "3828015", "1116"], ("m.stl",))


output_cases(KIND, lambda b: b.mesh)
