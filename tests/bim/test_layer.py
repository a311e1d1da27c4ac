"""The BIM layer on sample IFC buildings: placement, materials, metadata, levels of detail."""

from __future__ import annotations

import math

import ifcopenshell
import ifcopenshell.util.element
import numpy as np
import pytest
import shapely

import cim
from cim.formats.glb import read_accessor, read_glb
from cim.layers.bim import BimInfo
from cim.samplecity.bim import ROOF, write_sample_ifc
from cim.warnings import GeometryWarning
from tests.helpers.bim import all_ecef, city_frame, elements_of, layer_tiles, map_to_ecef, nearest, read_tile, walk_layer
from tests.helpers.gltf import validate_glbs

A = dict(
    easting=566000.0, northing=3827000.0, base_height=1150.0, rotation_deg=30.0, width=24.0, depth=14.0, storeys=4, name="Sample A", seed=1
)
B = dict(
    easting=566120.0, northing=3826960.0, base_height=1148.5, rotation_deg=-20.0, width=16.0, depth=10.0, storeys=2, name="Sample B", seed=3
)


# -- the sample layer --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample_layer(tmp_path_factory):
    src = tmp_path_factory.mktemp("bim-src")
    a = write_sample_ifc(src / "sample_a.ifc", **A)
    b = write_sample_ifc(src / "sample_b.ifc", **B, schema="IFC4X3")
    out = tmp_path_factory.mktemp("bim-out") / "bim"
    result = cim.build_layer("bim", [a, b], out, frame=city_frame(), crs="EPSG:4544")
    return out, result, (a, b)


def _corners(spec: dict, z: float) -> np.ndarray:
    """A sample building's outer corners at model height ``z``, in EPSG:4544."""
    hx, hy = spec["width"] / 2, spec["depth"] / 2
    th = math.radians(spec["rotation_deg"])
    local = np.array([[-hx, -hy], [hx, -hy], [hx, hy], [-hx, hy]])
    e = spec["easting"] + local[:, 0] * math.cos(th) - local[:, 1] * math.sin(th)
    n = spec["northing"] + local[:, 0] * math.sin(th) + local[:, 1] * math.cos(th)
    return np.stack([e, n, np.full(4, spec["base_height"] + z)], axis=1)


@pytest.mark.parametrize("spec, model", [(A, "sample_a"), (B, "sample_b")])
def test_sample_placement_matches_requested_position(sample_layer, spec, model):
    """The building's ground and roof corners land where EPSG:4544 → ECEF puts them (pyproj alone)."""
    out, _, _ = sample_layer
    pts = all_ecef(out, model)
    top = (4.2 + 3.3 * (spec["storeys"] - 1) if spec["storeys"] > 1 else 3.3) + ROOF
    corners = np.concatenate([_corners(spec, 0.0), _corners(spec, top)])
    expected = map_to_ecef(corners[:, 0], corners[:, 1], corners[:, 2])
    assert nearest(pts, expected).max() < 0.01
    # and nothing sticks out of the building's box
    lo = map_to_ecef(*[np.array([v]) for v in (spec["easting"], spec["northing"], spec["base_height"])])[0]
    assert np.sqrt(((pts - lo) ** 2).sum(axis=1)).max() < math.hypot(spec["width"] / 2, spec["depth"] / 2, top) + 0.5


def test_windows_are_transparent_and_blended(sample_layer):
    out, _, _ = sample_layer
    seen_window = False
    for _, _, _, t in layer_tiles(out):
        classes = t["table"]["IfcClass"]
        for p in t["prims"]:
            cls = {classes[r] for r in np.unique(p["rows"])}
            if p["alpha_mode"] == "BLEND":
                assert (p["alpha"] < 1.0).all()
                assert cls <= {"IfcWindow", "IfcSpace"}
                seen_window |= "IfcWindow" in cls
            else:
                assert (p["alpha"] == 1.0).all()
                assert "IfcSpace" not in cls
    assert seen_window


def _srgb_eotf(c):
    """The sRGB transfer function, written out here rather than taken from cim."""
    c = np.asarray(c, dtype=np.float64)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _surface_styles(f: ifcopenshell.file, guid: str) -> set[tuple[float, float, float, float]]:
    """The (red, green, blue, 1 - transparency) of the IfcSurfaceStyleRendering an element's body
    shows: its items' styles, else its material's. Read from the IFC's entities, not the kernel."""
    el = f.by_guid(guid)
    styles = [st for rep in el.Representation.Representations for it in rep.Items for si in it.StyledByItem or () for st in si.Styles]
    if not styles:
        mat = ifcopenshell.util.element.get_material(el)
        styles = [st for dr in mat.HasRepresentation for r in dr.Representations for it in r.Items for st in it.Styles]
    out = set()
    for style in styles:
        rendering = next(s for s in style.Styles if s.is_a("IfcSurfaceStyleRendering"))
        c = rendering.SurfaceColour
        out.add((c.Red, c.Green, c.Blue, 1.0 - (rendering.Transparency or 0.0)))
    return out


def test_colours_are_the_ifc_surface_colours_made_linear(sample_layer):
    """Every element's COLOR_0 is the linear value of its IfcColourRgb (glTF's COLOR_0 is linear;
    the IFC's colours are sRGB), and its alpha 1 - Transparency as given: a brick wall keeps the
    model's brick red and a plaster wall its near-white once a client converts back to sRGB."""
    out, _, paths = sample_layer
    files = {p.stem: ifcopenshell.open(str(p)) for p in paths}
    got: dict[tuple[str, str], set] = {}
    for _, path, _, t in layer_tiles(out):
        doc, binary = read_glb(path.read_bytes())
        for prim, p in zip(doc["meshes"][0]["primitives"], t["prims"]):
            rgba = np.round(read_accessor(doc, binary, prim["attributes"]["COLOR_0"]) * 65535.0).astype(int)
            for row in np.unique(p["rows"]):
                key = (t["table"]["Model"][row], t["table"]["GlobalId"][row])
                got.setdefault(key, set()).update(map(tuple, rgba[p["rows"] == row].tolist()))
    walls = 0
    for (model, guid), colours in got.items():
        ifc = _surface_styles(files[model], guid)
        want = {tuple(np.round(np.append(_srgb_eotf(c[:3]), c[3]) * 65535.0).astype(int).tolist()) for c in ifc}
        assert colours == want, (model, guid, colours, want)
        if files[model].by_guid(guid).is_a("IfcWall"):
            walls += 1
            # what a client shows after its linear → sRGB step: the IFC's colour, well within one
            # 8-bit display level (16-bit linear keeps the darks an 8-bit linear value would merge)
            (stored,) = colours
            v = np.array(stored[:3]) / 65535.0
            shown = np.where(v <= 0.0031308, 12.92 * v, 1.055 * v ** (1 / 2.4) - 0.055)
            np.testing.assert_allclose(shown, next(iter(ifc))[:3], atol=0.1 / 255)
    assert walls >= 10 and any(alpha < 65535 for c in got.values() for *_, alpha in c)


def test_attributes_are_typed_columns(sample_layer):
    out, result, _ = sample_layer
    schema = result.schema
    assert schema["Pset_WallCommon.IsExternal"] == "BOOLEAN"
    assert schema["Pset_WallCommon.ThermalTransmittance"] == "FLOAT64"
    assert schema["Pset_WallCommon.FireRating"] == "STRING"
    assert schema["CIM_Asset.InstallYear"] == "INT32"
    assert schema["CIM_Asset.UnitCost"] == "FLOAT64"
    assert schema["StoreyElevation"] == "FLOAT64"
    els = elements_of(out)
    walls = [e for e in els.values() if e["IfcClass"] == "IfcWall"]
    assert {w["Type"] for w in walls} == {"EXT-250 brick", "INT-120 partition"}
    assert all(w["Pset_WallCommon_IsExternal"] == (w["Type"] == "EXT-250 brick") for w in walls)
    windows = [e for e in els.values() if e["IfcClass"] == "IfcWindow"]
    assert windows and all(w["Material"] == "Glass" and w["Pset_WindowCommon_IsExternal"] for w in windows)
    spaces = [e for e in els.values() if e["IfcClass"] == "IfcSpace"]
    assert spaces and all(s["cim_level"] == 5 for s in spaces)
    assert all(e["cim_level"] == 6 for e in els.values() if e["IfcClass"] != "IfcSpace")
    # lengths and areas in SI whatever the project unit (millimetres here)
    assert all(0 < s["Qto_SpaceBaseQuantities_Height"] < 5 for s in spaces)


def test_storeys_present(sample_layer):
    out, result, _ = sample_layer
    els = elements_of(out)
    by_model: dict[str, set] = {}
    for e in els.values():
        by_model.setdefault(e["Model"], set()).add((e["Storey"], round(e["StoreyElevation"], 3)))
    assert by_model["sample_a"] == {("Ground floor", 0.0), ("Level 1", 4.2), ("Level 2", 7.5), ("Level 3", 10.8)}
    assert by_model["sample_b"] == {("Ground floor", 0.0), ("Level 1", 4.2)}
    models = {m["model"]: m for m in result.info.models}
    assert [s["name"] for s in models["sample_a"]["storeys"]] == ["Ground floor", "Level 1", "Level 2", "Level 3"]
    assert result.info.storey_names == ["Ground floor", "Level 1", "Level 2", "Level 3"]  # both models' storeys, by elevation
    # one storey tile (and its detail) per storey under the exterior
    names = [tile["content"]["uri"] for tile, base, _, _, _ in walk_layer(out) if "sample_a" in base.as_posix()]
    assert {n for n in names if n.endswith(("s00-0.glb", "s01-0.glb", "s02-0.glb", "s03-0.glb"))} == {
        f"tiles/s0{i}-0.glb" for i in range(4)
    }


def test_every_element_once_per_level_and_counts(sample_layer):
    out, result, paths = sample_layer
    import ifcopenshell

    expected, classes = set(), set()
    for p in paths:
        f = ifcopenshell.open(str(p))
        drawn = [x for x in f.by_type("IfcProduct") if x.Representation is not None and not x.is_a("IfcOpeningElement")]
        expected |= {x.GlobalId for x in drawn}
        classes |= {x.is_a() for x in drawn}
    assert set(elements_of(out)) == expected
    assert result.count == len(expected) and result.info.classes == sorted(classes)
    assert result.skipped == 0 and not [w for w in result.warnings if isinstance(w, GeometryWarning) or "failed" in str(w)]
    # at full detail (each leaf with the tiles it adds to) a model draws every element exactly
    # once: a detail tile adds what its storey tile leaves out and repeats none of it
    for model in ("sample_a", "sample_b"):
        tiles = [(tile, t) for tile, path, _, t in layer_tiles(out) if f"/{model}/" in path.as_posix()]
        shown = []
        for tile, t in tiles:
            if tile.get("refine") == "ADD" or "children" not in tile:
                shown += list(t["table"]["GlobalId"])
        assert len(shown) == len(set(shown))
        assert set(shown) == {g for _, t in tiles for g in t["table"]["GlobalId"]}
        added = [tile for tile, _ in tiles if tile.get("refine") == "ADD"]
        assert added and all(len(tile["children"]) == 1 for tile in added)


def test_levels_of_detail_errors_are_measured(sample_layer):
    """A tile's geometric error is the size of the largest element its subtree adds."""
    out, _, _ = sample_layer
    tiles = walk_layer(out)
    boxes: dict[str, tuple[np.ndarray, np.ndarray, str]] = {}
    for _, _, _, t in layer_tiles(out):
        for p in t["prims"]:
            for r in np.unique(p["rows"]):
                gid = t["table"]["GlobalId"][r]
                pts = p["enu"][p["rows"] == r]
                lo, hi, cls = boxes.get(gid, (pts.min(0), pts.max(0), t["table"]["IfcClass"][r]))
                boxes[gid] = (np.minimum(lo, pts.min(0)), np.maximum(hi, pts.max(0)), cls)

    def size(gid):
        lo, hi, cls = boxes[gid]
        return (hi - lo).min() if cls == "IfcSpace" else np.linalg.norm(hi - lo)

    def content_ids(tile, base):
        uri = tile.get("content", {}).get("uri", "")
        return set(read_tile(base / uri)["table"]["GlobalId"]) if uri.endswith(".glb") else set()

    def subtree_ids(tile, base):
        ids = content_ids(tile, base)
        for c in tile.get("children", []):
            ids |= subtree_ids(c, base)
        return ids

    checked = 0
    for tile, base, _, _, _ in tiles:
        if not tile.get("content", {}).get("uri", "").endswith(".glb"):
            continue
        omitted = subtree_ids(tile, base) - content_ids(tile, base)
        expected = max((size(g) for g in omitted), default=0.0)
        assert tile["geometricError"] == pytest.approx(expected, abs=0.02), tile["content"]["uri"]
        for c in tile.get("children", []):
            assert c["geometricError"] <= tile["geometricError"]
        checked += 1
    assert checked > 8
    # the far view holds the envelope, not the interior
    root_tile = next(
        t for t, base, _, _, _ in tiles if t.get("content", {}).get("uri") == "tiles/exterior.glb" and "sample_a" in base.as_posix()
    )
    base = next(b for t, b, _, _, _ in tiles if t is root_tile)
    root = read_tile(base / "tiles/exterior.glb")["table"]
    classes = set(root["IfcClass"])
    assert {"IfcWall", "IfcWindow", "IfcSlab", "IfcRoof"} <= classes and "IfcSpace" not in classes
    assert "INT-120 partition" not in root["Type"]


def test_bounding_volumes_contain_content_and_children(sample_layer):
    out, _, _ = sample_layer
    from cim.formats.tileset import box_bounds

    tiles = walk_layer(out)
    for tile, base, _, _, parent in tiles:
        lo, hi = box_bounds(tile["boundingVolume"]["box"])
        uri = tile.get("content", {}).get("uri", "")
        if uri.endswith(".glb"):
            for p in read_tile(base / uri)["prims"]:
                assert (p["enu"] >= lo - 1e-3).all() and (p["enu"] <= hi + 1e-3).all(), uri
        if parent is not None:
            plo, phi = box_bounds(parent["boundingVolume"]["box"])
            assert (lo >= plo - 1e-3).all() and (hi <= phi + 1e-3).all()


def test_glbs_validate(sample_layer):
    out, _, _ = sample_layer
    reports = validate_glbs(sorted(out.rglob("*.glb")))
    bad = [r for r in reports if r["errors"]]
    assert not bad, bad[:3]


def test_footprints_in_city_crs(sample_layer):
    _, result, _ = sample_layer
    assert isinstance(result.info, BimInfo)
    fps = {f["model"]: f for f in result.info.footprints}
    for spec, model in ((A, "sample_a"), (B, "sample_b")):
        fp = fps[model]
        assert fp["crs"] == "EPSG:4544"
        poly = shapely.from_wkt(fp["wkt"])
        assert poly.contains(shapely.Point(spec["easting"], spec["northing"]))
        assert poly.area == pytest.approx(spec["width"] * spec["depth"], rel=0.01)
    assert set(result.info.viewer_properties.values()) >= {"IfcClass", "Storey", "GlobalId"}
    assert result.search is not None and len(result.search.ids) == result.count


def test_second_build_resumes(sample_layer, tmp_path):
    out, result, paths = sample_layer
    again = cim.build_layer("bim", list(paths), out, frame=city_frame(), crs="EPSG:4544")
    assert again.resumed_tiles >= result.tiles
    assert again.count == result.count and again.info.footprints == result.info.footprints and again.info.models == result.info.models


def test_tiles_carry_only_columns_with_values(sample_layer):
    """A tile's property table leaves out the columns none of its elements has a value in (the
    model's schema still lists them); the columns it keeps hold a value in some row."""
    out, result, _ = sample_layer
    kept_somewhere: set[str] = set()
    for _, _, _, t in layer_tiles(out):
        table = t["table"]
        assert len(table) < len(result.schema)  # some property columns were left out
        for name, values in table.items():
            if name in ("cim_level", "Model") or all(isinstance(v, bool) for v in values):
                continue  # BOOLEAN columns: false where absent (kept when any row has the property)
            assert any(v not in (None, "") for v in values), name
            kept_somewhere.add(name)
    assert {"GlobalId", "IfcClass", "Storey", "Pset_WallCommon_ThermalTransmittance"} <= kept_somewhere
