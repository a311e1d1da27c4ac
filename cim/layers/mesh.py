"""The mesh layer: reality meshes and generic models (OBJ + MTL + textures, PLY, STL, glTF/GLB) →
a 3D Tiles 1.1 tree of textured GLB tiles with levels of detail.

- **Leaves** are the source's tiles at full resolution (a photogrammetry export's
  ``Data/Tile_*/*.obj``, or one file); a tile of more than ``max_triangles`` is split by a median
  cut of its triangles. A leaf keeps its source's materials, one primitive each, with their
  textures re-encoded (``texture_format``) and halved in linear light while larger than
  ``max_texture``.
- **Parents** group up to four neighbouring tiles of the level below (a median cut of their
  centres), weld and merge them, and decimate the result to a quarter of its triangles
  (quadric edge collapse, :mod:`cim.kernels.simplify`). A parent's texture is a new atlas baked
  from its children at twice their texel size (:mod:`cim.kernels.atlas`): the simplified
  triangles cross the children's UV charts and textures, so keeping per-material textures
  would mean texturing triangles that no longer lie on their charts; one atlas also makes a
  parent one draw call. Refinement is REPLACE.
- **Geometric error** is measured: the distance from the children's surface (every vertex, edge
  midpoint and triangle centroid) to the parent's, an upper bound found through a k-d tree of
  the parent's triangles (:func:`cim.kernels.simplify.distance_to_surface`), plus the children's
  own error (so it bounds the deviation from the full-resolution source, the leaves, by the
  triangle inequality, up to the sampling of the children's triangles), and at least the
  parent's texel size (detail its texture no longer holds). Leaves have error 0.

Coordinates: the file's coordinates plus the origin (``metadata.xml``'s ``SRSOrigin``, an
offset file or the ``origin`` option) are eastings, northings and heights in the CRS
(``metadata.xml``'s ``SRS`` or the ``crs`` option, else the city's); they go through pyproj to
longitude and latitude, then to ECEF and the city's ENU frame, in float64. Tiles hold float32
positions relative to their centre, glTF y up.

Tile jobs: each leaf job reads one source file and writes its leaves; each parent job reads its
children's GLBs back from the layer's folder, so levels are jobs of their own and a resumed
build starts where it stopped (a tile's box, triangles, error and texel size are kept in the
build log's notes).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from cim.crs import check_area_of_use, crs_label, parse_crs, to_lonlat
from cim.errors import CimCRSError, CimInputError
from cim.formats.glb_textured import TexturedPrimitive, encode_textured_mesh, read_textured_glb
from cim.formats.imagery import decode_tile, encode_tile
from cim.formats.tileset import enu_to_gltf, replace_tree, tileset_document, transform_list
from cim.kernels.atlas import atlas_layout, bake_atlas, downsample_linear, texel_size, to_linear
from cim.kernels.color import srgb_to_linear
from cim.kernels.frames import LocalFrame, ecef_to_geodetic, geodetic_to_ecef
from cim.kernels.mesh import chunk_by_budget
from cim.kernels.simplify import TriangleLocator, distance_to_surface, simplify_mesh, surface_samples, weld_vertices
from cim.layers.base import LayerBuilder, LayerInfo, LayerOptions, LayerOutput, LayerPlan, LayerRun, option
from cim.sources.mesh import MeshGeoreference, SourceMesh, mesh_files, read_georeference, read_mesh
from cim.sources.plausible import check_heights
from cim.store import TileSink, build_key, file_fingerprint
from cim.warnings import FeatureSkippedWarning, GeometryWarning, GeoreferenceWarning

__all__ = ["MeshLayer", "MeshOptions", "MeshInfo", "MeshPlan", "leaf_job", "parent_job", "source_to_enu"]

log = logging.getLogger("cim.mesh")

#: children a parent groups
FAN_OUT = 4
#: a parent keeps this share of its children's triangles
REDUCTION = 0.25
#: a parent keeps at least this many triangles
MIN_TRIANGLES = 64


@dataclass
class MeshOptions(LayerOptions):
    """Where a mesh stands and how its tiles are made."""

    crs: str | None = option(None, help="CRS of the mesh's coordinates, e.g. EPSG:4544 [default: metadata.xml's SRS, else the city's].")
    origin: tuple[float, float, float] | None = option(
        None, help="X Y Z added to the file's coordinates, in the CRS [default: metadata.xml's SRSOrigin or an offset file, else 0 0 0]."
    )
    up_axis: Literal["auto", "z", "y"] = option("auto", help="The files' up axis: auto (glTF y, OBJ/PLY/STL z), z or y.")
    max_triangles: int = option(200_000, help="Most triangles in a leaf tile (larger source tiles are split).")
    texture_format: Literal["webp", "png", "jpeg"] = option("webp", help="Texture encoding in the tiles.")
    quality: int = option(85, help="WebP/JPEG texture quality, 1-100.")
    max_texture: int = option(2048, help="Largest texture side in pixels (leaf textures are halved until they fit; parent atlases too).")

    def check(self, where: str) -> None:
        if self.max_triangles < 100:
            raise CimInputError(f"{where}: option 'max_triangles' must be at least 100, got {self.max_triangles}")
        if not 1 <= self.quality <= 100:
            raise CimInputError(f"{where}: option 'quality' must be in 1..100, got {self.quality}")
        if self.max_texture < 16:
            raise CimInputError(f"{where}: option 'max_texture' must be at least 16, got {self.max_texture}")


@dataclass
class MeshInfo(LayerInfo):
    """What a mesh layer adds to its ``city.json`` entry."""

    source_files: int
    levels: int
    textured: bool
    texture_format: str
    #: where the georeference came from: a metadata file, an offset file, or the options
    georeference: str | None = None


@dataclass
class MeshPlan(LayerPlan):
    files: list[Path] = field(default_factory=list)
    crs_wkt: str = ""
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    frame: LocalFrame | None = None
    options: MeshOptions = field(default_factory=MeshOptions)
    georeference: str | None = None


@dataclass(frozen=True)
class _State:
    """What every tile job of a mesh layer shares."""

    files: tuple[str, ...]
    crs_wkt: str
    origin: tuple[float, float, float]
    frame: LocalFrame
    up: str
    max_triangles: int
    texture_format: str
    quality: int
    max_texture: int
    sink: TileSink


@dataclass
class _Tile:
    """A tile of the tree: its name (``tiles/<name>.glb``), children and what its job measured."""

    name: str
    lo: np.ndarray
    hi: np.ndarray
    triangles: int
    error: float
    texel: float
    children: list[_Tile] = field(default_factory=list)

    @property
    def geometric_error(self) -> float:
        return self.error


def source_to_enu(positions: np.ndarray, origin: tuple[float, float, float], crs: Any, frame: LocalFrame) -> np.ndarray:
    """(n, 3) file coordinates + origin (easting, northing, height in ``crs``) → (n, 3) float64
    ENU metres in ``frame`` (pyproj to longitude/latitude, then ECEF)."""
    x = positions[:, 0] + origin[0]
    y = positions[:, 1] + origin[1]
    h = positions[:, 2] + origin[2]
    lon, lat = to_lonlat(x, y, crs)
    return frame.from_ecef(geodetic_to_ecef(lon, lat, h))


def _encode_image(image: np.ndarray, fmt: str, quality: int) -> bytes:
    rgba = np.empty((*image.shape[:2], 4), dtype=np.uint8)
    rgba[..., :3] = image[..., :3]
    rgba[..., 3] = 255
    return encode_tile(rgba, fmt, quality)


def _leaf_primitives(
    mesh: SourceMesh, enu: np.ndarray, tris: np.ndarray, centre: np.ndarray, images: dict[int, bytes], fmt: str
) -> list[TexturedPrimitive]:
    """One primitive per material of the triangles ``tris`` (rows of the mesh)."""
    prims = []
    for m in np.unique(mesh.material[tris]):
        rows = tris[mesh.material[tris] == m]
        corner = mesh.triangles[rows]
        used, inverse = np.unique(corner.ravel(), return_inverse=True)
        local = enu_to_gltf(enu[used] - centre).astype(np.float32)
        mat = mesh.materials[int(m)]
        textured = int(m) in images
        uv = None
        if textured:
            uv = np.column_stack([mesh.uv[used, 0], 1.0 - mesh.uv[used, 1]]).astype(np.float32)
        prims.append(
            TexturedPrimitive(
                local,
                inverse.reshape(-1, 3),
                uv,
                mat.color if not textured else (*mat.color[:3], 1.0),
                images.get(int(m)),
                fmt,
                False,
                mat.name,
            )
        )
    return prims


def leaf_job(state: _State, index: int) -> dict[str, Any]:
    """The leaf job: read source file ``index``, place it, split it under ``max_triangles`` and
    write its leaves ``tiles/0/<index>-<k>.glb``. Returns ``{"leaves": [...], "notes": [...],
    "skipped": message or None, "missing_textures": n, "missing_materials": n}``."""
    first = f"tiles/0/{index}-0.glb"
    if state.sink.is_done(first):
        meta = state.sink.meta(first) or {}
        return meta["job"]
    path = Path(state.files[index])
    try:
        mesh = read_mesh(path, state.up)
    except CimInputError as exc:
        return {"leaves": [], "notes": [], "skipped": str(exc), "missing_textures": 0, "missing_materials": 0}
    from pyproj import CRS

    enu = source_to_enu(mesh.positions, state.origin, CRS.from_wkt(state.crs_wkt), state.frame)
    images: dict[int, bytes] = {}
    sizes: dict[int, tuple[int, int]] = {}
    for m, mat in enumerate(mesh.materials):
        if mat.image is not None:
            img = downsample_linear(mat.image, state.max_texture)
            images[m] = _encode_image(img, state.texture_format, state.quality)
            sizes[m] = (img.shape[1], img.shape[0])
    corners = enu[mesh.triangles]
    if len(mesh.triangles) > state.max_triangles:
        pieces = chunk_by_budget(corners.mean(axis=1)[:, :2], np.ones(len(mesh.triangles)), state.max_triangles)
    else:
        pieces = [np.arange(len(mesh.triangles))]
    textured = np.array([int(m) in sizes for m in mesh.material])
    wh = np.array([sizes.get(int(m), (0, 0)) for m in range(len(mesh.materials))], dtype=np.float64).reshape(-1, 2)
    leaves = []
    outputs = []
    for k, rows in enumerate(pieces):
        pts = corners[rows].reshape(-1, 3)
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        centre = (lo + hi) / 2.0
        prims = _leaf_primitives(mesh, enu, rows, centre, images, state.texture_format)
        glb = encode_textured_mesh(prims, enu_to_gltf(centre))
        t_rows = rows[textured[rows]]
        texel = 0.0
        if len(t_rows):
            uv = mesh.uv[mesh.triangles[t_rows]]
            texel = texel_size(corners[t_rows], uv, wh[mesh.material[t_rows]])
        name = f"0/{index}-{k}"
        leaves.append({"name": name, "lo": lo.tolist(), "hi": hi.tolist(), "triangles": len(rows), "texel": texel})
        outputs.append((f"tiles/{name}.glb", glb))
    result = {
        "leaves": leaves,
        "notes": mesh.notes,
        "skipped": None,
        "missing_textures": mesh.missing_textures,
        "missing_materials": mesh.missing_materials,
    }
    # the first leaf is written last, with the job's result: a resumed build trusts it only then
    for rel, glb in outputs[1:]:
        state.sink.write(rel, glb)
    state.sink.write(outputs[0][0], outputs[0][1], meta={"job": result})
    return result


def _read_children(state: _State, names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray | None], np.ndarray]:
    """The children's triangles, merged: corners (t, 3, 3) ENU, uv (t, 3, 2), material (t,),
    images (linear float32, per material) and colours ((materials, 3) linear)."""
    corners, uvs, mats = [], [], []
    images: list[np.ndarray | None] = []
    colours = []
    for name in names:
        data = Path(state.sink.root, f"tiles/{name}.glb").read_bytes()
        translation, prims = read_textured_glb(data)
        for p in prims:
            enu = _gltf_to_enu(p.positions.astype(np.float64) + translation)
            tri = p.triangles
            corners.append(enu[tri])
            uvs.append(p.uv[tri].astype(np.float64) if p.uv is not None else np.zeros((len(tri), 3, 2)))
            mats.append(np.full(len(tri), len(images), dtype=np.int64))
            images.append(to_linear(decode_tile(p.image)) if p.image is not None else None)
            colours.append(srgb_to_linear(np.asarray(p.color[:3])))
    return np.concatenate(corners), np.concatenate(uvs), np.concatenate(mats), images, np.asarray(colours, dtype=np.float32)


def _gltf_to_enu(v: np.ndarray) -> np.ndarray:
    """glTF axes (e, u, -n) → ENU."""
    return np.column_stack([v[:, 0], -v[:, 2], v[:, 1]])


def parent_job(state: _State, key: tuple[str, tuple[str, ...], float, float, int]) -> dict[str, Any]:
    """The parent job: merge the children (read back from the layer's folder), decimate, measure
    the error, bake the atlas, write ``tiles/<name>.glb``. ``key``: (name, children's names, their
    largest error, their largest texel size, their triangles). Returns its box, triangles, error
    and texel size."""
    name, children, child_error, child_texel, _ = key
    rel = f"tiles/{name}.glb"
    if state.sink.is_done(rel):
        return (state.sink.meta(rel) or {})["tile"]
    corners, uv, material, images, colours = _read_children(state, list(children))
    lo, hi = corners.reshape(-1, 3).min(axis=0), corners.reshape(-1, 3).max(axis=0)
    centre = (lo + hi) / 2.0
    positions, triangles = weld_vertices(corners.reshape(-1, 3) - centre, np.arange(len(corners) * 3).reshape(-1, 3))
    target = max(int(len(corners) * REDUCTION), MIN_TRIANGLES)
    simple_p, simple_t = simplify_mesh(positions, triangles, target)
    deviation = distance_to_surface(surface_samples(positions, triangles), simple_p, simple_t)
    measured = float(deviation.max()) if len(deviation) else 0.0
    textured = any(img is not None for img in images)
    texel = 2.0 * child_texel if textured and child_texel > 0 else 0.0
    s_corners = simple_p[simple_t]  # centred
    if textured:
        layout = atlas_layout(s_corners, texel, state.max_texture)
        texel = layout.texel
        locate = TriangleLocator(corners.reshape(-1, 3) - centre, np.arange(len(corners) * 3).reshape(-1, 3))
        atlas = bake_atlas(layout, s_corners, locate, uv, material, images, colours)
        prim = TexturedPrimitive(
            enu_to_gltf(s_corners.reshape(-1, 3)).astype(np.float32),
            np.arange(len(simple_t) * 3).reshape(-1, 3),
            layout.uv.reshape(-1, 2),
            (1.0, 1.0, 1.0, 1.0),
            _encode_image(atlas, state.texture_format, state.quality),
            state.texture_format,
            True,
            "atlas",
        )
    else:
        from cim.kernels.color import linear_to_srgb

        areas = np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
        weight = np.bincount(material, weights=areas, minlength=len(colours))
        mean = (colours * weight[:, None]).sum(axis=0) / max(weight.sum(), 1e-12)
        rgb = linear_to_srgb(mean)
        prim = TexturedPrimitive(
            enu_to_gltf(simple_p).astype(np.float32), simple_t, None, (float(rgb[0]), float(rgb[1]), float(rgb[2]), 1.0), name="mesh"
        )
    glb = encode_textured_mesh([prim], enu_to_gltf(centre))
    # rounded up to the millimetre: the tileset states errors to 3 decimals and must not understate
    error = math.ceil(max(measured + child_error, texel) * 1000.0) / 1000.0
    tile = {
        "lo": lo.tolist(),
        "hi": hi.tolist(),
        "triangles": len(simple_t),
        "error": error,
        "measured": measured,
        "texel": texel,
    }
    state.sink.write(rel, glb, meta={"tile": tile})
    return tile


class MeshLayer(LayerBuilder[MeshOptions, MeshPlan]):
    """Reality meshes and generic models (OBJ + MTL + textures, PLY, STL, glTF/GLB; one file or a
    folder of tiles) → 3D Tiles with simplified, re-textured levels of detail (see the module
    notes)."""

    kind = "mesh"
    Options = MeshOptions
    order = 45
    cim_level = 3
    summary = "Tile reality meshes and models (OBJ+MTL+textures, PLY, STL, glTF/GLB; a file or a folder of tiles) into 3D Tiles with LODs."

    def plan(self, sources: list[Path], options: MeshOptions, run: LayerRun) -> MeshPlan:
        source = sources[0]
        files = mesh_files(source)
        declared = read_georeference(source)
        crs_text, origin, georef = _resolve_georeference(source, declared, options, run)
        full = parse_crs(crs_text, what=f"{georef or f'layer {run.id}'}: crs")
        crs = full.sub_crs_list[0] if full.is_compound else full  # heights: the vertical part, below
        frame = run.propose_frame(lambda: _frame_for(files, origin, crs, options.up_axis, georef or str(source)))
        dz = run.height_offset(full, np.array([frame.lon]), np.array([frame.lat]), georef or source.name)
        if dz is not None:  # heights in another vertical datum than the city's (see cim.datum)
            origin = (origin[0], origin[1], origin[2] + float(dz[0]))
        fingerprints = [file_fingerprint(f) for f in files]
        extras = sorted(
            {p for f in files for p in f.parent.iterdir() if p.is_file() and p.suffix.lower() not in (".obj",) and p not in files}
        )
        key = build_key("mesh-1", fingerprints, [file_fingerprint(p) for p in extras], crs.to_wkt(), origin, frame.to_dict(), options.key())
        return MeshPlan(
            key,
            list(range(len(files))),
            files=files,
            crs_wkt=crs.to_wkt(),
            origin=origin,
            frame=frame,
            options=options,
            georeference=georef,
        )

    def build(self, plan: MeshPlan, run: LayerRun) -> LayerOutput:
        assert run.store is not None and plan.frame is not None
        opts = plan.options
        state = _State(
            tuple(map(str, plan.files)),
            plan.crs_wkt,
            plan.origin,
            plan.frame,
            opts.up_axis,
            opts.max_triangles,
            opts.texture_format,
            opts.quality,
            opts.max_texture,
            run.store.sink(),
        )
        leaves: list[_Tile] = []
        skipped: list[str] = []
        missing_tex = missing_mtl = 0
        notes: list[str] = []
        for result in run.map(leaf_job, state, plan.jobs, stage="leaves"):
            if result["skipped"]:
                skipped.append(result["skipped"])
                continue
            missing_tex += result["missing_textures"]
            missing_mtl += result["missing_materials"]
            notes += result["notes"]
            for leaf in result["leaves"]:
                leaves.append(_Tile(leaf["name"], np.array(leaf["lo"]), np.array(leaf["hi"]), leaf["triangles"], 0.0, leaf["texel"]))
        if not leaves:
            raise CimInputError(f"layer {run.id}: no mesh could be read ({skipped[0] if skipped else 'no file'})")
        if skipped:
            run.warn(FeatureSkippedWarning, f"skipped {len(skipped)} of {len(plan.files)} mesh file(s): {'; '.join(skipped[:5])}")
        lost = [n for n in notes if "left out" in n or "mid-line" in n]
        if lost:
            run.warn(FeatureSkippedWarning, "; ".join(lost[:5]) + ("; ..." if len(lost) > 5 else ""))
            notes = [n for n in notes if n not in lost]
        if missing_mtl or missing_tex:
            shown = "; ".join(notes[:5]) + ("; ..." if len(notes) > 5 else "")
            run.warn(
                GeometryWarning,
                f"{missing_mtl} material librar{'y' if missing_mtl == 1 else 'ies'} and {missing_tex} texture(s) missing, "
                f"drawn untextured: {shown}",
            )
        level_tiles = leaves
        level = 0
        while len(level_tiles) > 1:
            level += 1
            centres = np.array([(t.lo[:2] + t.hi[:2]) / 2.0 for t in level_tiles])
            groups = chunk_by_budget(centres, np.ones(len(level_tiles)), FAN_OUT)
            parents = [
                _Tile(f"{level}/{j}", np.zeros(3), np.zeros(3), 0, 0.0, 0.0, [level_tiles[i] for i in g]) for j, g in enumerate(groups)
            ]
            keys = [
                (
                    p.name,
                    tuple(c.name for c in p.children),
                    max(c.error for c in p.children),
                    max(c.texel for c in p.children),
                    sum(c.triangles for c in p.children),
                )
                for p in parents
            ]
            for p, tile in zip(parents, run.map(parent_job, state, keys, stage=f"level {level}")):
                p.lo, p.hi = np.array(tile["lo"]), np.array(tile["hi"])
                p.triangles, p.error, p.texel = tile["triangles"], tile["error"], tile["texel"]
            level_tiles = parents
        root = level_tiles[0]
        bounds = {t.name: (t.lo, t.hi) for t in _walk(root)}
        root_json, lo, hi = replace_tree(root, bounds, lambda t: t.error)
        root_json["transform"] = transform_list(plan.frame.matrix())
        diagonal = float(np.linalg.norm(hi - lo))
        corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
        lon, lat, h = ecef_to_geodetic(plan.frame.to_ecef(corners))
        return LayerOutput(
            index=tileset_document(root_json, max(diagonal, 2.0 * root.error, 1.0)),
            count=len(plan.files) - len(skipped),
            tiles=sum(1 for _ in _walk(root)),
            triangles=sum(t.triangles for t in leaves),
            bounds={
                "west": float(lon.min()),
                "south": float(lat.min()),
                "east": float(lon.max()),
                "north": float(lat.max()),
                "min_height": float(h.min()),
                "max_height": float(h.max()),
            },
            skipped=len(skipped),
            crs=crs_label(parse_crs(plan.crs_wkt)),
            info=MeshInfo(
                source_files=len(plan.files),
                levels=level + 1,
                textured=any(t.texel > 0 for t in leaves),
                texture_format=opts.texture_format,
                georeference=plan.georeference,
            ),
        )


def _walk(tile: _Tile) -> list[_Tile]:
    out = [tile]
    for c in tile.children:
        out += _walk(c)
    return out


def _resolve_georeference(
    source: Path, declared: MeshGeoreference | None, options: MeshOptions, run: LayerRun
) -> tuple[str, tuple[float, float, float], str | None]:
    """(CRS text, origin, where they came from): the options over the source's own files over
    the city's CRS."""
    crs = options.crs
    origin = options.origin
    where = None
    if declared is not None:
        where = str(declared.source.name) if declared.source is not None else None
        if crs is not None and declared.crs is not None and parse_crs(crs) != parse_crs(declared.crs, what=str(declared.source)):
            run.warn(GeoreferenceWarning, f"the crs option {crs} overrides {declared.crs} of {declared.source}")
        if origin is not None and tuple(origin) != declared.origin:
            run.warn(GeoreferenceWarning, f"the origin option {tuple(origin)} overrides {declared.origin} of {declared.source}")
        crs = crs if crs is not None else declared.crs
        origin = origin if origin is not None else declared.origin
    if crs is None:
        crs = run.crs(None)
        where = where or ("the city's CRS" if crs is not None else None)
    if crs is None:
        raise CimCRSError(
            f"{source}: the mesh declares no CRS (no metadata.xml with <SRS>); give one with --crs (and --origin if its "
            "coordinates are relative to one)"
        )
    return crs, (tuple(float(v) for v in origin) if origin is not None else (0.0, 0.0, 0.0)), where  # type: ignore[return-value]


def _frame_for(files: list[Path], origin: tuple[float, float, float], crs: Any, up: str, where: str) -> LocalFrame:
    """A frame at the centre of the first readable file, on its lowest point.

    Raises
    ------
    CimCRSError, CimInputError
        The file, placed by ``where`` (its georeference), lands outside the CRS's area of use
        or at a height no place has.
    """
    first: CimInputError | None = None
    for f in files:
        try:
            mesh = read_mesh(f, up)
        except CimInputError as exc:
            first = first or exc
            continue
        lo, hi = mesh.positions.min(axis=0), mesh.positions.max(axis=0)
        x, y = np.array([(lo[0] + hi[0]) / 2 + origin[0]]), np.array([(lo[1] + hi[1]) / 2 + origin[1]])
        lon, lat = to_lonlat(x, y, crs)
        placed = f"{f} placed by {where}"
        check_area_of_use(crs, (float(lon[0]), float(lat[0]), float(lon[0]), float(lat[0])), placed)
        check_heights(np.array([lo[2] + origin[2], hi[2] + origin[2]]), placed)
        return LocalFrame(float(lon[0]), float(lat[0]), float(lo[2] + origin[2]))
    assert first is not None
    raise first
