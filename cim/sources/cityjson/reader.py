"""Reading a CityJSON file or CityJSONSeq into a :class:`CityModel` (see :mod:`cim.sources.cityjson`)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pyproj import CRS

from cim.errors import CimInputError, CimIOError
from cim.kernels.surfaces import place_template, transform_vertices
from cim.sources.cityjson.vocabulary import (
    SUPPORTED_VERSIONS,
    SURFACE_NONE,
    SURFACE_OTHER,
    SURFACE_TYPES,
    lod_key,
    lod_label,
    parse_reference_system,
    surface_code,
)

__all__ = ["CityModel", "read_cityjson"]

#: nesting depth of the surface lists in ``boundaries`` (0: a list of surfaces)
_SURFACE_DEPTH = {"MultiSurface": 0, "CompositeSurface": 0, "Solid": 1, "MultiSolid": 2, "CompositeSolid": 2}
_NO_SURFACES = ("MultiPoint", "MultiLineString")


@dataclass
class CityModel:
    """What :func:`read_cityjson` read (see the module notes).

    Attributes
    ----------
    source : the file
    version : its CityJSON version (``"2.0"``)
    crs : the CRS its coordinates are in (the caller's, else the file's), None when neither says
    crs_declared : the file's ``metadata.referenceSystem``, as written, or None
    lods : every LoD in the file, lowest first
    lod : the LoD asked for, or None for each object's highest
    ids, types : (n,) object arrays, each city object's id and type
    parents : (n,) object array, each object's first parent id, None for a top-level object
    attributes : one dict per object (its ``attributes``, as the file has them)
    object_lod : (n,) object array, the LoD of each object's surfaces (None: no surfaces)
    fallback : (n,) bool, the object took a LoD below the one asked for (or below the file's
        highest)
    coords : (v, 3) float64, vertex coordinates in ``crs`` (heights as given)
    ring_indices : (k,) int64, the vertices of every ring, ring after ring (open rings)
    ring_offsets : (r + 1,) int64, ring ``i`` is ``ring_indices[ring_offsets[i]:ring_offsets[i + 1]]``
    surface_offsets : (s + 1,) int64, surface ``j`` holds rings ``surface_offsets[j]`` to
        ``surface_offsets[j + 1]``, the first its outer ring
    surface_object : (s,) int64, the object row of each surface (non-decreasing)
    surface_semantic : (s,) uint8, each surface's semantic code (:data:`SURFACE_TYPES`)
    geometry_types : how many geometries of each type the objects' chosen LoDs hold
    issues : what was left out, ``reason → count`` (surfaces, geometries, objects, lines)
    """

    source: Path
    version: str
    crs: CRS | None
    crs_declared: str | None
    lods: list[str]
    lod: str | None
    ids: np.ndarray
    types: np.ndarray
    parents: np.ndarray
    attributes: list[dict[str, Any]]
    object_lod: np.ndarray
    fallback: np.ndarray
    coords: np.ndarray
    ring_indices: np.ndarray
    ring_offsets: np.ndarray
    surface_offsets: np.ndarray
    surface_object: np.ndarray
    surface_semantic: np.ndarray
    geometry_types: Counter = field(default_factory=Counter)
    issues: Counter = field(default_factory=Counter)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_surfaces(self) -> int:
        return len(self.surface_object)

    def roots(self) -> np.ndarray:
        """(n,) int64, the row of each object's top-level ancestor."""
        row = {oid: i for i, oid in enumerate(self.ids.tolist())}
        out = np.arange(len(self.ids), dtype=np.int64)
        for i in range(len(out)):  # parents come before their children (canonical order)
            p = self.parents[i]
            if p is not None and p in row:
                out[i] = out[row[p]]
        return out

    def semantic_counts(self) -> dict[str, int]:
        """Surfaces of each semantic type, ``name → count``, in code order."""
        counts = np.bincount(self.surface_semantic, minlength=256)
        return {SURFACE_TYPES[c]: int(counts[c]) for c in SURFACE_TYPES if counts[c]}


# -- reading ---------------------------------------------------------------------------------


def read_cityjson(path: str | Path, *, lod: str | None = None, crs: object = None) -> CityModel:
    """Read a CityJSON file (``.json``, ``.city.json``) or a CityJSONSeq (``.jsonl``,
    ``.city.jsonl``, or any file whose first line is a ``CityJSON`` header followed by
    ``CityJSONFeature`` lines).

    Parameters
    ----------
    path : the file
    lod : the LoD to read (``"2.2"``); None: each object's highest
    crs : a CRS that overrides the file's (anything :func:`cim.crs.parse_crs` reads)

    Raises
    ------
    CimInputError
        Not CityJSON, an unsupported version, invalid JSON, no ``transform`` where the version
        requires one, no city object with surfaces at or below ``lod``.
    CimIOError
        The file cannot be read.
    """
    path = Path(path)
    if lod is not None and lod_label(lod) is None:
        raise CimInputError(f"{path}: LoD {lod!r} is not a LoD label such as 2, 1.2 or 2.2")
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
    except OSError as exc:
        raise CimIOError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not head.strip():
        raise CimInputError(f"{path}: the file is empty")
    first_line = head.split(b"\n", 1)[0]
    seq = path.name.lower().endswith(".jsonl") or _is_seq_header(first_line)
    builder = _Builder(path, lod)
    if seq:
        _read_seq(path, builder)
    else:
        _read_document(path, builder)
    return builder.finish(crs)


def _is_seq_header(line: bytes) -> bool:
    try:
        doc = json.loads(line)
    except (ValueError, RecursionError):
        return False
    return isinstance(doc, dict) and doc.get("type") == "CityJSON" and not doc.get("CityObjects")


def _read_document(path: Path, builder: _Builder) -> None:
    try:
        with open(path, "rb") as f:
            doc = json.load(f)
    except OSError as exc:
        raise CimIOError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise CimInputError(f"{path}: not valid JSON ({exc})") from None
    except RecursionError:
        raise CimInputError(f"{path}: JSON nested deeper than any CityJSON (a damaged or hostile file)") from None
    builder.header(doc)
    objects = doc.get("CityObjects")
    if not isinstance(objects, dict):
        raise CimInputError(f"{path}: no CityObjects")
    builder.feature(objects, doc.get("vertices"), where="")


def _read_seq(path: Path, builder: _Builder) -> None:
    try:
        with open(path, "rb") as f:
            header_seen = False
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    doc = json.loads(line)
                except (ValueError, UnicodeDecodeError, RecursionError) as exc:
                    if not header_seen:
                        raise CimInputError(f"{path}: line {number}: the CityJSON header is not valid JSON ({exc})") from None
                    builder.issues["invalid CityJSONFeature line (not JSON)"] += 1
                    continue
                if not header_seen:
                    builder.header(doc, seq=True)
                    header_seen = True
                    continue
                if not isinstance(doc, dict) or doc.get("type") != "CityJSONFeature" or not isinstance(doc.get("CityObjects"), dict):
                    builder.issues["invalid CityJSONFeature line (not a CityJSONFeature)"] += 1
                    continue
                builder.feature(doc["CityObjects"], doc.get("vertices"), where=f"line {number}: ")
    except OSError as exc:
        raise CimIOError(f"{path}: cannot read ({exc.strerror or exc})") from None


class _Builder:
    """Accumulates the objects and surfaces of a file, feature by feature."""

    def __init__(self, path: Path, lod: str | None) -> None:
        self.path = path
        self.lod = lod_label(lod) if lod is not None else None
        self.want = lod_key(self.lod) if self.lod is not None else None
        self.version = ""
        self.scale = np.ones(3)
        self.translate = np.zeros(3)
        self.has_transform = False
        self.crs_declared: str | None = None
        self.templates: list[dict] = []
        self.template_vertices = np.zeros((0, 3))
        self.coords: list[np.ndarray] = []
        self.n_coords = 0
        self.feature_vertices = np.zeros((0, 3))
        self.objects: dict[str, dict[str, Any]] = {}
        self.lods: set[str] = set()
        self.issues: Counter = Counter()
        self.geometry_types: Counter = Counter()
        #: each object's surfaces: ring vertex indices, ring lengths, rings per surface, semantic codes
        self.surfaces: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}

    # -- the header ---------------------------------------------------------------------------

    def header(self, doc: object, seq: bool = False) -> None:
        where = f"{self.path}"
        if not isinstance(doc, dict) or doc.get("type") != "CityJSON":
            raise CimInputError(f"{where}: not a CityJSON file (its type is {doc.get('type') if isinstance(doc, dict) else None!r})")
        version = str(doc.get("version", ""))
        major_minor = ".".join(version.split(".")[:2])
        if major_minor not in SUPPORTED_VERSIONS:
            raise CimInputError(f"{where}: CityJSON version {version!r} is not supported (cim reads {', '.join(SUPPORTED_VERSIONS)})")
        self.version = major_minor
        transform = doc.get("transform")
        if transform is None:
            if seq or major_minor != "1.0":
                what = "a CityJSONSeq header" if seq else f"CityJSON {major_minor}"
                raise CimInputError(f"{where}: no 'transform' ({what} requires one: vertices are integers scaled and translated by it)")
        else:
            try:
                self.scale = np.asarray(transform["scale"], dtype=np.float64).reshape(3)
                self.translate = np.asarray(transform["translate"], dtype=np.float64).reshape(3)
            except (KeyError, TypeError, ValueError):
                raise CimInputError(f"{where}: 'transform' needs 'scale' and 'translate', three numbers each") from None
            if not (np.all(np.isfinite(self.scale)) and np.all(np.isfinite(self.translate)) and np.all(self.scale != 0)):
                raise CimInputError(f"{where}: 'transform' has a zero or non-finite scale or translate")
            self.has_transform = True
        metadata = doc.get("metadata")
        if isinstance(metadata, dict) and metadata.get("referenceSystem") is not None:
            self.crs_declared = str(metadata["referenceSystem"])
        templates = doc.get("geometry-templates")
        if isinstance(templates, dict):
            self.templates = [t for t in templates.get("templates") or [] if isinstance(t, dict)]
            try:
                tv = np.asarray(templates.get("vertices-templates") or [], dtype=np.float64)
                self.template_vertices = tv.reshape(-1, 3)
            except (TypeError, ValueError):
                self.issues["geometry-templates with invalid vertices (templates not used)"] += 1
                self.templates = []

    # -- features -----------------------------------------------------------------------------

    def feature(self, objects: dict[str, Any], vertices: object, where: str) -> None:
        """One CityJSONFeature (or a whole file's CityObjects) and its vertices."""
        try:
            v = np.asarray(vertices if vertices is not None else [], dtype=np.float64).reshape(-1, 3)
        except (TypeError, ValueError):
            raise CimInputError(f"{self.path}: {where}'vertices' is not a list of [x, y, z]") from None
        base = self.n_coords
        #: this feature's vertices (GeometryInstances take their reference points from them)
        self.feature_vertices = transform_vertices(v, self.scale, self.translate) if self.has_transform else v
        self.coords.append(self.feature_vertices)
        self.n_coords += len(v)
        limit = (base, base + len(v))
        for oid, obj in objects.items():
            if not isinstance(obj, dict):
                self.issues["city objects that are not JSON objects"] += 1
                continue
            oid = str(oid)
            if oid in self.objects:
                self.issues["city objects repeated (first kept)"] += 1
                continue
            parents = obj.get("parents") or []
            children = obj.get("children") or []
            attrs = obj.get("attributes")
            self.objects[oid] = {
                "type": str(obj.get("type", "")),
                "parent": str(parents[0]) if isinstance(parents, list) and parents else None,
                "children": [str(c) for c in children] if isinstance(children, list) else [],
                "attributes": attrs if isinstance(attrs, dict) else {},
                "lod": None,
            }
            geometries = obj.get("geometry") or []
            if not isinstance(geometries, list):
                self.issues["city objects whose geometry is not a list"] += 1
            elif geometries:
                self._object_geometry(oid, geometries, limit)

    def _geometry_lod(self, g: dict) -> str | None:
        if g.get("type") == "GeometryInstance":
            t = g.get("template")
            if isinstance(t, int) and 0 <= t < len(self.templates):
                return lod_label(self.templates[t].get("lod"))
            return None
        return lod_label(g.get("lod"))

    def _object_geometry(self, oid: str, geometries: list, limit: tuple[int, int]) -> None:
        """Choose the object's geometry (see the module notes) and read its surfaces."""
        candidates: list[tuple[tuple[int, ...], int, str]] = []
        for k, g in enumerate(geometries):
            if not isinstance(g, dict):
                self.issues["geometries that are not JSON objects"] += 1
                continue
            label = self._geometry_lod(g)
            if label is None:
                self.issues["geometries without a valid lod"] += 1
                continue
            self.lods.add(label)
            gtype = g.get("type")
            if gtype in _NO_SURFACES:
                self.issues[f"{gtype} geometries (no surfaces)"] += 1
                continue
            if gtype not in _SURFACE_DEPTH and gtype != "GeometryInstance":
                self.issues[f"geometries of unknown type {gtype!r}"] += 1
                continue
            candidates.append((lod_key(label), k, label))
        if not candidates:
            return
        usable = [c for c in candidates if self.want is None or c[0] <= self.want]
        if not usable:
            self.issues[f"city objects with no LoD at or below {self.lod}"] += 1
            return
        best = max(c[0] for c in usable)
        _, k, label = next(c for c in usable if c[0] == best)  # the first geometry of that LoD
        g = geometries[k]
        obj = self.objects[oid]
        obj["lod"] = label
        self.geometry_types[g["type"]] += 1
        try:
            if g["type"] == "GeometryInstance":
                surfaces, values, semantic_surfaces, lo, hi = self._instance(g, limit)
            else:
                surfaces, values = _flatten(g["boundaries"], g.get("semantics"), _SURFACE_DEPTH[g["type"]])
                semantic_surfaces = (g.get("semantics") or {}).get("surfaces") or [] if isinstance(g.get("semantics"), dict) else []
                lo, hi = limit
        except _Malformed as exc:
            self.issues[f"{g['type']} geometries with malformed {exc}"] += 1
            return
        if not surfaces:
            self.issues[f"{g['type']} geometries with no surfaces"] += 1
            return
        self._add_surfaces(oid, surfaces, values, semantic_surfaces, lo, hi)

    def _instance(self, g: dict, limit: tuple[int, int]) -> tuple[list, list, list, int, int]:
        """A GeometryInstance: its template's surfaces over new vertices (matrix, then reference
        point)."""
        template = self.templates[g["template"]]
        gtype = template.get("type")
        if gtype not in _SURFACE_DEPTH:
            raise _Malformed(f"template (type {gtype!r})")
        ref = g.get("boundaries")
        if not (isinstance(ref, list) and len(ref) == 1 and isinstance(ref[0], int) and not isinstance(ref[0], bool)):
            raise _Malformed("boundaries (one reference vertex expected)")
        if not limit[0] <= limit[0] + ref[0] < limit[1] or ref[0] < 0:
            raise _Malformed("boundaries (reference vertex index out of range)")
        try:
            matrix = np.asarray(g.get("transformationMatrix"), dtype=np.float64).reshape(4, 4)
        except (TypeError, ValueError):
            raise _Malformed("transformationMatrix (16 numbers expected)") from None
        surfaces, values = _flatten(template["boundaries"], template.get("semantics"), _SURFACE_DEPTH[gtype])
        used = sorted({i for s in surfaces for r in s for i in r})
        if used and (used[0] < 0 or used[-1] >= len(self.template_vertices)):
            raise _Malformed("template (vertex index out of range)")
        reference = self.feature_vertices[ref[0]]
        tv = self.template_vertices[used] if used else np.zeros((0, 3))
        placed = place_template(tv, matrix, reference)
        base = self.n_coords
        self.coords.append(placed)
        self.n_coords += len(placed)
        remap = {old: base + new for new, old in enumerate(used)}
        surfaces = [[[remap[i] - limit[0] for i in r] for r in s] for s in surfaces]  # relative to the feature's vertices
        semantics = template.get("semantics")
        semantic_surfaces = semantics.get("surfaces") or [] if isinstance(semantics, dict) else []
        return surfaces, values, semantic_surfaces, limit[0], base + len(placed)

    def _add_surfaces(self, oid: str, surfaces: list, values: list, semantic_surfaces: list, lo: int, hi: int) -> None:
        """Keep an object's surfaces (vertex indices offset by ``lo``, which must stay below
        ``hi``); surfaces with an index out of range or a malformed ring are counted and left out."""
        kinds = [surface_code(s.get("type")) if isinstance(s, dict) else SURFACE_OTHER for s in semantic_surfaces]
        codes = np.array(
            [kinds[v] if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < len(kinds) else SURFACE_NONE for v in values],
            dtype=np.uint8,
        )
        rings = np.array([len(surface) for surface in surfaces], dtype=np.int64)
        lengths = np.array([len(r) for surface in surfaces for r in surface], dtype=np.int64)
        try:
            flat = np.array([i for surface in surfaces for r in surface for i in r])
        except (ValueError, TypeError):  # a ring holding lists
            flat = np.array(["?"])
        if len(flat) and (flat.dtype.kind not in "iu" or flat.ndim != 1):  # an index that is no whole number: find its surfaces
            whole = [all(isinstance(i, int) and not isinstance(i, bool) for r in surface for i in r) for surface in surfaces]
            if not any(whole):
                self.issues["surfaces with a vertex index out of range or a malformed ring"] += len(surfaces)
                return
            keep = np.array(whole)
            surfaces = [surf for surf, w in zip(surfaces, whole) if w]
            self.issues["surfaces with a vertex index out of range or a malformed ring"] += int((~keep).sum())
            self._add_surfaces_ok(oid, surfaces, codes[keep], lo, hi)
            return
        self._keep(oid, flat.astype(np.int64), lengths, rings, codes, lo, hi)

    def _add_surfaces_ok(self, oid: str, surfaces: list, codes: np.ndarray, lo: int, hi: int) -> None:
        rings = np.array([len(surface) for surface in surfaces], dtype=np.int64)
        lengths = np.array([len(r) for surface in surfaces for r in surface], dtype=np.int64)
        flat = np.array([i for surface in surfaces for r in surface for i in r], dtype=np.int64)
        self._keep(oid, flat, lengths, rings, codes, lo, hi)

    def _keep(self, oid: str, flat: np.ndarray, lengths: np.ndarray, rings: np.ndarray, codes: np.ndarray, lo: int, hi: int) -> None:
        ring_of = np.repeat(np.arange(len(lengths)), lengths)
        surface_of_ring = np.repeat(np.arange(len(rings)), rings)
        bad = np.zeros(len(rings), dtype=bool)
        out = (flat < 0) | (flat + lo >= hi)
        bad[surface_of_ring[ring_of[out]]] = True
        bad[surface_of_ring[lengths == 0]] = True
        bad |= rings == 0
        if bad.any():
            self.issues["surfaces with a vertex index out of range or a malformed ring"] += int(bad.sum())
            keep_ring = ~bad[surface_of_ring]
            flat = flat[keep_ring[ring_of]]
            lengths, rings, codes = lengths[keep_ring], rings[~bad], codes[~bad]
        if len(rings):
            self.surfaces[oid] = (flat + lo, lengths, rings, codes)

    # -- the result ---------------------------------------------------------------------------

    def finish(self, crs: object) -> CityModel:
        if not self.version:
            raise CimInputError(f"{self.path}: no CityJSON header")
        order = self._canonical_order()
        ids = np.array(order, dtype=object)
        objs = [self.objects[o] for o in order]
        row = {o: i for i, o in enumerate(order)}
        kept = [(row[oid], self.surfaces[oid]) for oid in order if oid in self.surfaces]
        parts = list(zip(*(s for _, s in kept))) if kept else [[np.zeros(0, np.int64)]] * 3 + [[np.zeros(0, np.uint8)]]
        ring_idx, ring_len, surf_rings, surf_code = (np.concatenate(p) for p in parts)
        surf_obj = np.repeat([r for r, _ in kept], [len(s[2]) for _, s in kept]) if kept else np.zeros(0, np.int64)
        idx, ring_offsets = _open_rings(ring_idx.astype(np.int64), ring_len.astype(np.int64))
        surface_offsets = np.zeros(len(surf_rings) + 1, dtype=np.int64)
        np.cumsum(surf_rings, out=surface_offsets[1:])
        coords = np.concatenate(self.coords) if self.coords else np.zeros((0, 3))
        target = self.want if self.want is not None else max((lod_key(x) for x in self.lods), default=())
        return CityModel(
            source=self.path,
            version=self.version,
            crs=self._crs(crs),
            crs_declared=self.crs_declared,
            lods=sorted(self.lods, key=lod_key),
            lod=self.lod,
            ids=ids,
            types=np.array([o["type"] for o in objs], dtype=object),
            parents=np.array([o["parent"] if o["parent"] in row else None for o in objs], dtype=object),
            attributes=[o["attributes"] for o in objs],
            object_lod=np.array([o["lod"] for o in objs], dtype=object),
            fallback=np.array([o["lod"] is not None and lod_key(o["lod"]) < target for o in objs], dtype=bool),
            coords=np.ascontiguousarray(coords, dtype=np.float64),
            ring_indices=idx,
            ring_offsets=ring_offsets,
            surface_offsets=surface_offsets,
            surface_object=np.asarray(surf_obj, dtype=np.int64),
            surface_semantic=np.asarray(surf_code, dtype=np.uint8),
            geometry_types=self.geometry_types,
            issues=self.issues,
        )

    def _crs(self, given: object) -> CRS | None:
        if given is not None and given != "":
            from cim.crs import parse_crs

            return parse_crs(given, what=f"{self.path}: crs")
        if self.crs_declared is not None:
            return parse_reference_system(self.crs_declared, where=str(self.path))
        return None

    def _canonical_order(self) -> list[str]:
        """Top-level objects by id, each followed by its descendants (children in the order the
        parent lists them, then any other object naming it as parent, by id)."""
        kids: dict[str, list[str]] = {}
        for oid, obj in self.objects.items():
            p = obj["parent"]
            if p is not None and p in self.objects:
                kids.setdefault(p, []).append(oid)
        order: list[str] = []
        seen: set[str] = set()

        def visit(oid: str) -> None:
            stack = [oid]
            while stack:
                o = stack.pop()
                if o in seen:
                    continue
                seen.add(o)
                order.append(o)
                listed = [c for c in self.objects[o]["children"] if c in self.objects and self.objects[c]["parent"] == o]
                rest = sorted(set(kids.get(o, [])) - set(listed))
                stack.extend(reversed(listed + rest))

        for oid in sorted(o for o, obj in self.objects.items() if obj["parent"] is None or obj["parent"] not in self.objects):
            visit(oid)
        for oid in sorted(self.objects):  # cycles of parents: what is left, by id
            visit(oid)
        return order


class _Malformed(Exception):
    """A geometry whose boundaries or semantics do not have the shape its type says."""


def _flatten(boundaries: object, semantics: object, depth: int) -> tuple[list, list]:
    """The surfaces of a geometry's boundaries (``depth`` levels of nesting above the surfaces)
    and each surface's semantic ``values`` entry (None where there is none)."""
    values = semantics.get("values") if isinstance(semantics, dict) else None
    parts: list[tuple[object, object]] = [(boundaries, values)]
    for _ in range(depth):  # down to lists of surfaces, values alongside
        deeper: list[tuple[object, object]] = []
        for b, v in parts:
            if not isinstance(b, list):
                raise _Malformed("boundaries")
            deeper += [(part, v[i] if isinstance(v, list) and i < len(v) else None) for i, part in enumerate(b)]
        parts = deeper
    surfaces: list = []
    vals: list = []
    for b, v in parts:
        if not isinstance(b, list):
            raise _Malformed("boundaries")
        for i, surface in enumerate(b):
            if not isinstance(surface, list) or not all(isinstance(r, list) for r in surface):
                raise _Malformed("boundaries")
            surfaces.append(surface)
            vals.append(v[i] if isinstance(v, list) and i < len(v) else None)
    return surfaces, vals


def _open_rings(idx: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rings with repeated consecutive vertices and a closing repeat of the first removed:
    (vertex indices, ring offsets)."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if len(idx) == 0:
        return idx, offsets
    ring = np.repeat(np.arange(len(lengths)), lengths)
    starts = offsets[:-1][ring]
    prev = np.where(np.arange(len(idx)) == starts, -1, np.roll(idx, 1))
    first = idx[starts]
    is_last = np.arange(len(idx)) == offsets[1:][ring] - 1
    keep = (idx != prev) & ~(is_last & (idx == first) & (np.arange(len(idx)) != starts))
    kept = np.bincount(ring[keep], minlength=len(lengths))
    out = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(kept, out=out[1:])
    return idx[keep], out
