"""Generic and reality meshes (OBJ + MTL + textures, PLY, STL, glTF/GLB) read through trimesh.

A source is one file or a folder of tiles as photogrammetry software exports them
(``Data/Tile_+000_+001/Tile_+000_+001.obj``; every mesh file under the folder, in sorted path
order). Where the mesh stands comes from, in this order:

- a ContextCapture ``metadata.xml`` in the folder (or beside the file, or up to two folders
  above it): ``<SRS>EPSG:4544</SRS>`` and ``<SRSOrigin>x,y,z</SRSOrigin>``;
- an offset file (``offset.txt``, ``<name>.offset.txt`` or ``<name>_offset.txt``: three numbers,
  the origin; the CRS then comes from the options);
- the ``crs`` and ``origin`` options, which override both.

The file's coordinates plus the origin are the CRS's easting, northing and height. OBJ, PLY and
STL are taken as z up (as photogrammetry exports are); glTF is y up by its specification and is
turned to z up (``up`` overrides both).

:func:`read_mesh` returns a :class:`SourceMesh`: float64 positions, triangles, per-vertex UVs and
per-triangle materials, each material with its sRGB texture when it has one. A material whose MTL
file or texture image is missing is kept untextured (its ``Kd`` colour) and reported.
"""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cim.errors import CimInputError, CimIOError

__all__ = [
    "MESH_SUFFIXES",
    "MeshMaterial",
    "SourceMesh",
    "MeshGeoreference",
    "mesh_files",
    "read_georeference",
    "read_mesh",
]

MESH_SUFFIXES = (".obj", ".ply", ".stl", ".glb", ".gltf")
_ZERO_INDEX = re.compile(rb"^f[ \t](?:[^\n]*[ \t])?0(?:/|[ \t]|\r?$)", re.MULTILINE)
_MTLLIB = re.compile(rb"^[ \t]*mtllib[ \t]+(.+?)[ \t]*\r?$", re.MULTILINE)
_MAP_KD = re.compile(r"^[ \t]*map_Kd[ \t]+(?:-\S+(?:[ \t]+[-\d.]+)*[ \t]+)*(.+?)[ \t]*$", re.MULTILINE)


@dataclass
class MeshMaterial:
    """One material: its name, sRGB display colour with alpha in [0, 1], and texture.

    ``image`` is (h, w, 3 or 4) uint8, sRGB, row 0 at the top, or None.
    """

    name: str
    color: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    image: np.ndarray | None = None


@dataclass
class SourceMesh:
    """A mesh file's triangles in its own coordinates (z up).

    Attributes
    ----------
    positions : (n, 3) float64, the file's coordinates (before the origin is added)
    triangles : (m, 3) int64
    uv : (n, 2) float64, texture coordinates with v up (OBJ's convention); 0 where a vertex has none
    material : (m,) int64, the material of each triangle
    materials : the materials
    notes : what was wrong and carried on with (missing MTL or textures): messages
    """

    path: Path
    positions: np.ndarray
    triangles: np.ndarray
    uv: np.ndarray
    material: np.ndarray
    materials: list[MeshMaterial]
    missing_materials: int = 0
    missing_textures: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class MeshGeoreference:
    """Where a mesh's coordinates are: the CRS (text pyproj reads) and the origin added to them."""

    crs: str | None
    origin: tuple[float, float, float]
    source: Path | None = None


def mesh_files(source: Path) -> list[Path]:
    """The mesh files of a source: the file itself, or every mesh file under the folder (sorted)."""
    if not source.exists():
        raise CimIOError(f"{source}: no such file or folder")
    if source.is_file():
        if source.suffix.lower() not in MESH_SUFFIXES:
            raise CimInputError(f"{source}: not a mesh file (expected one of {', '.join(MESH_SUFFIXES)})")
        return [source]
    files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in MESH_SUFFIXES)
    if not files:
        raise CimInputError(f"{source}: no mesh file ({', '.join(MESH_SUFFIXES)}) in the folder")
    return files


def read_georeference(source: Path) -> MeshGeoreference | None:
    """The georeference a source's files declare (see the module notes), or None."""
    base = source if source.is_dir() else source.parent
    folders = [base, base.parent, base.parent.parent]
    for folder in folders:
        meta = folder / "metadata.xml"
        if meta.is_file():
            return _read_metadata_xml(meta)
    names = ["offset.txt"] + ([f"{source.stem}.offset.txt", f"{source.stem}_offset.txt"] if source.is_file() else [])
    for folder in folders:
        for name in names:
            p = folder / name
            if p.is_file():
                return MeshGeoreference(None, _read_offset(p), p)
    return None


def _read_metadata_xml(path: Path) -> MeshGeoreference:
    try:
        root = ET.fromstring(path.read_bytes())
    except ET.ParseError as exc:
        raise CimInputError(f"{path}: not a readable metadata.xml ({exc})") from None
    srs = (root.findtext("SRS") or "").strip() or None
    if srs is not None and srs.upper().startswith("ENU:"):
        raise CimInputError(f"{path}: local ENU frames ({srs}) are not supported; give crs and origin instead")
    text = (root.findtext("SRSOrigin") or "0,0,0").strip()
    try:
        values = [float(v) for v in re.split(r"[,\s]+", text) if v]
    except ValueError:
        raise CimInputError(f"{path}: SRSOrigin {text!r} is not numbers") from None
    if len(values) == 2:
        values.append(0.0)
    if len(values) != 3:
        raise CimInputError(f"{path}: SRSOrigin {text!r} should hold x,y,z")
    if not all(np.isfinite(values)):
        raise CimInputError(f"{path}: SRSOrigin {text!r} is not finite numbers")
    return MeshGeoreference(srs, (values[0], values[1], values[2]), path)


def _read_offset(path: Path) -> tuple[float, float, float]:
    try:
        values = [float(v) for v in re.split(r"[,;\s]+", path.read_text().strip()) if v]
    except ValueError:
        raise CimInputError(f"{path}: an offset file holds three numbers (x y z)") from None
    if len(values) != 3:
        raise CimInputError(f"{path}: an offset file holds three numbers (x y z), found {len(values)}")
    if not all(np.isfinite(values)):
        raise CimInputError(f"{path}: the offset {values} is not finite numbers")
    return values[0], values[1], values[2]


def _obj_checks(path: Path, data: bytes) -> tuple[int, int, list[str]]:
    """(missing MTL files, materials with a missing texture, messages) of an OBJ."""
    missing_mtl = missing_tex = 0
    notes: list[str] = []
    for m in _MTLLIB.finditer(data):
        name = m.group(1).decode("utf-8", "replace")
        mtl = path.parent / name
        if not mtl.is_file():
            missing_mtl += 1
            notes.append(f"{path.name}: material library {name} is missing; drawn untextured")
            continue
        for t in _MAP_KD.finditer(mtl.read_text(errors="replace")):
            tex = t.group(1)
            if not (mtl.parent / tex).is_file():
                missing_tex += 1
                notes.append(f"{path.name}: texture {tex} is missing; drawn in its material's colour")
                continue
            problem = _unreadable_image(mtl.parent / tex)
            if problem is not None:
                missing_tex += 1
                notes.append(f"{path.name}: texture {tex} cannot be decoded ({problem}); drawn in its material's colour")
    return missing_mtl, missing_tex, notes


def _unreadable_image(path: Path) -> str | None:
    """Why an image cannot be decoded (empty, cut short, not an image), or None. The image is
    decoded in full: a truncated JPEG or PNG opens and fails only on its missing rows."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, ... on broken images
        return f"{type(exc).__name__}: {exc}"
    return None


#: a coordinate beyond this (in the file's units) is a damaged number, not a place: projected
#: eastings and northings stay below 1e8, geocentric coordinates below 1e7
MAX_COORDINATE = 1e8


def _face_lines(data: bytes) -> int:
    """Face records (``f`` lines) of an OBJ."""
    return data.count(b"\nf ") + data.count(b"\nf\t") + (1 if data[:2] in (b"f ", b"f\t") else 0)


def read_mesh(path: Path, up: str = "auto") -> SourceMesh:
    """Read one mesh file (see the module notes).

    Parameters
    ----------
    path : an .obj, .ply, .stl, .glb or .gltf file
    up : ``"auto"`` (glTF y up, the others z up), ``"z"`` or ``"y"``

    Raises
    ------
    CimInputError
        The file is not a mesh trimesh can read, or holds no triangle.
    """
    import trimesh

    suffix = path.suffix.lower()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CimIOError(f"{path}: cannot read ({exc})") from None
    missing_mtl = missing_tex = 0
    notes: list[str] = []
    libraries = 0
    if suffix == ".obj":
        libraries = len(_MTLLIB.findall(data))
        missing_mtl, missing_tex, notes = _obj_checks(path, data)
    try:
        resolver = trimesh.resolvers.FilePathResolver(str(path))
        scene: Any = trimesh.load(
            io.BytesIO(data), file_type=suffix[1:], force="scene", resolver=resolver, process=False, maintain_order=True
        )
        return _from_scene(scene, path, data, up, libraries, missing_mtl, missing_tex, notes)
    except CimInputError:
        raise
    except Exception as exc:  # trimesh raises many kinds on a broken file, some only when its parts are used
        raise CimInputError(f"{path}: not a mesh trimesh can read ({type(exc).__name__}: {exc})") from None


def _from_scene(
    scene: Any, path: Path, data: bytes, up: str, libraries: int, missing_mtl: int, missing_tex: int, notes: list[str]
) -> SourceMesh:
    """The :class:`SourceMesh` of a loaded trimesh scene (see :func:`read_mesh`)."""
    import trimesh

    suffix = path.suffix.lower()
    y_up = suffix in (".glb", ".gltf") if up == "auto" else up == "y"
    positions, triangles, uvs, mats = [], [], [], []
    materials: list[MeshMaterial] = []
    offset = 0
    for node in scene.graph.nodes_geometry:
        transform, geom_name = scene.graph[node]
        geom = scene.geometry[geom_name]
        if not isinstance(geom, trimesh.Trimesh) or len(geom.faces) == 0:
            continue
        v = np.asarray(geom.vertices, dtype=np.float64)
        v = v @ np.asarray(transform, dtype=np.float64)[:3, :3].T + np.asarray(transform, dtype=np.float64)[:3, 3]
        f = np.asarray(geom.faces, dtype=np.int64)
        material, uv = _material(geom, f"{path.stem}-{len(materials)}")
        if libraries and missing_mtl == libraries:  # trimesh puts a placeholder image where no MTL was found
            material, uv = MeshMaterial(material.name), None
        if v.ndim != 2 or v.shape[1] != 3:
            raise CimInputError(f"{path}: vertices are not (x, y, z) triples")
        if not np.isfinite(v).all():
            raise CimInputError(f"{path}: vertices that are not finite numbers")
        if len(v) and float(np.abs(v).max()) > MAX_COORDINATE:
            raise CimInputError(f"{path}: a vertex at {float(np.abs(v).max()):.3g}: not a coordinate (a damaged number?)")
        outside = (f < 0).any(axis=1) | (f >= len(v)).any(axis=1)
        if outside.any():  # a damaged index buffer (trimesh does not look with process=False)
            notes.append(f"{path.name}: {int(outside.sum())} triangle(s) left out (vertex indices out of range)")
            f = f[~outside]
            if len(f) == 0:
                continue
        positions.append(v)
        triangles.append(f + offset)
        uvs.append(uv if uv is not None else np.zeros((len(v), 2)))
        mats.append(np.full(len(f), len(materials), dtype=np.int64))
        materials.append(material)
        offset += len(v)
    if not triangles:
        raise CimInputError(f"{path}: the mesh holds no triangle")
    if suffix == ".obj":
        # trimesh drops faces whose indices point nowhere, or that have fewer than three
        # corners, without a word: count them (each face makes at least one triangle)
        lost = _face_lines(data) - sum(len(t) for t in triangles)
        if lost > 0:
            notes.append(f"{path.name}: at least {lost} face(s) left out (indices out of range or fewer than three corners)")
        zero = len(_ZERO_INDEX.findall(data))
        if zero:
            notes.append(f"{path.name}: {zero} face(s) with vertex index 0 (OBJ counts from 1) left out or misdrawn")
        if not data.endswith(b"\n"):
            notes.append(f"{path.name}: the file ends mid-line (cut short?): its last record may be lost")
    pos = np.concatenate(positions)
    if y_up:  # glTF's (x, y up, z) → (x, -z, y): east, north, up
        pos = np.column_stack([pos[:, 0], -pos[:, 2], pos[:, 1]])
    return SourceMesh(
        path, pos, np.concatenate(triangles), np.concatenate(uvs), np.concatenate(mats), materials, missing_mtl, missing_tex, notes
    )


def _material(geom: object, fallback: str) -> tuple[MeshMaterial, np.ndarray | None]:
    """A trimesh geometry's material (its texture as sRGB bytes) and its UVs (None untextured)."""
    from trimesh.visual.material import PBRMaterial, SimpleMaterial
    from trimesh.visual.texture import TextureVisuals

    visual = getattr(geom, "visual", None)
    if not isinstance(visual, TextureVisuals) or visual.material is None:
        colour = (0.8, 0.8, 0.8, 1.0)
        if getattr(visual, "kind", None) in ("face", "vertex"):
            rgba = np.asarray(visual.main_color, dtype=np.float64) / 255.0  # type: ignore[union-attr]
            colour = (float(rgba[0]), float(rgba[1]), float(rgba[2]), float(rgba[3]))
        return MeshMaterial(fallback, colour), None
    m = visual.material
    image = None
    colour = (1.0, 1.0, 1.0, 1.0)
    if isinstance(m, PBRMaterial):
        image = m.baseColorTexture
        if m.baseColorFactor is not None:  # linear in glTF: back to display values
            from cim.kernels.color import linear_to_srgb

            f = np.asarray(m.baseColorFactor, dtype=np.float64)[:4] / 255.0
            rgb = linear_to_srgb(f[:3])
            colour = (float(rgb[0]), float(rgb[1]), float(rgb[2]), float(f[3]) if len(f) > 3 else 1.0)
    elif isinstance(m, SimpleMaterial):
        image = m.image
        colour = tuple(float(c) / 255.0 for c in np.asarray(m.diffuse)[:4])  # type: ignore[assignment]
    name = str(getattr(m, "name", None) or fallback)
    uv = visual.uv
    if image is None or uv is None or len(uv) != len(geom.vertices):  # type: ignore[attr-defined]
        return MeshMaterial(name, colour), None
    try:
        img = image.convert("RGBA" if image.mode in ("RGBA", "LA", "P") and "A" in image.getbands() else "RGB")
    except Exception:  # a texture that cannot be decoded (read_mesh's checks counted it): untextured
        return MeshMaterial(name, colour), None
    return MeshMaterial(name, colour, np.asarray(img, dtype=np.uint8)), np.asarray(uv, dtype=np.float64)
