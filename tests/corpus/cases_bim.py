"""Damaged IFC models: files cut short, broken entity lines, missing and cyclic references,
contradictory or impossible georeferencing."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from tests.corpus.bases import Bases
from tests.corpus.make_corpus import ANY, ERROR, LOSSY, OK, Made, byte_damage, case, output_cases

__all__: list[str] = []

KIND = "bim"

byte_damage(KIND, "ifc", lambda b: b.ifc, header=300, truncated=LOSSY, seed=41, flips=5, size_hint=35_000, last_byte_optional=True)
byte_damage(
    KIND,
    "real-wall",
    lambda b: b.real("ifc/ifcos-files_revit2011_wall1.ifc"),
    header=300,
    truncated=LOSSY,
    seed=42,
    flips=3,
    realdata=True,
    last_byte_optional=True,
)


def _ifc_case(name: str, expect: str, edit: Callable[[str], str], *, args: tuple[str, ...] = ()) -> None:
    @case(KIND, name, expect)
    def _(b: Bases, folder: Path) -> Made:
        text = b.ifc.read_text()
        edited = edit(text)
        assert edited != text, f"case {name} changed nothing"
        path = folder / "building.ifc"
        path.write_text(edited)
        return Made([path], list(args), (path.name,))


def _line(text: str, pattern: str) -> re.Match:
    m = re.search(rf"^(#\d+)=({pattern})\((.*)\);$", text, re.MULTILINE)
    assert m is not None, pattern
    return m


def _replace_line(pattern: str, fn: Callable[[re.Match], str], nth: int = 0) -> Callable[[str], str]:
    def edit(text: str) -> str:
        ms = list(re.finditer(rf"^(#\d+)=({pattern})\((.*)\);$", text, re.MULTILINE))
        m = ms[nth]
        return text[: m.start()] + fn(m) + text[m.end() :]

    return edit


def _args(m: re.Match) -> list[str]:
    """The top-level arguments of an entity line (no nested lists are split)."""
    out, depth, cur = [], 0, ""
    for ch in m.group(3):
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
            continue
        depth += ch == "("
        depth -= ch == ")"
        cur += ch
    out.append(cur)
    return out


def _with_args(index_values: dict[int, str]) -> Callable[[re.Match], str]:
    def fn(m: re.Match) -> str:
        a = _args(m)
        for i, v in index_values.items():
            a[i] = v
        return f"{m.group(1)}={m.group(2)}({','.join(a)});"

    return fn


def _map_conversion(values: dict[int, str]) -> Callable[[str], str]:
    # IfcMapConversion(Source, Target, Eastings, Northings, OrthogonalHeight, XAxisAbscissa, XAxisOrdinate, Scale)
    return _replace_line("IFCMAPCONVERSION", _with_args(values))


def _projected_crs(values: dict[int, str]) -> Callable[[str], str]:
    # IfcProjectedCRS(Name, Description, GeodeticDatum, VerticalDatum, MapProjection, MapZone, MapUnit)
    return _replace_line("IFCPROJECTEDCRS", _with_args(values))


def _delete(pattern: str, nth: int = 0) -> Callable[[str], str]:
    return _replace_line(pattern, lambda m: "", nth)


def _garble(pattern: str, nth: int = 0) -> Callable[[str], str]:
    return _replace_line(pattern, lambda m: f"{m.group(1)}={m.group(2)}('broken,,(($$;", nth)


# damaged entity lines: the element is lost and must be counted
_ifc_case("wall-line-garbled", LOSSY, _garble("IFCWALL"))
_ifc_case("two-walls-garbled", LOSSY, lambda t: _garble("IFCWALL", 1)(_garble("IFCWALL")(t)))
_ifc_case("slab-line-garbled", LOSSY, _garble("IFCSLAB"))
_ifc_case("wall-shape-missing", LOSSY, lambda t: _delete_ref(t, "IFCWALL", 6))
_ifc_case("wall-placement-missing", LOSSY, lambda t: _delete_ref(t, "IFCWALL", 5))
_ifc_case("extrusion-missing", LOSSY, _delete("IFCEXTRUDEDAREASOLID"))
_ifc_case("profile-missing", LOSSY, _delete("IFCARBITRARYCLOSEDPROFILEDEF"))
_ifc_case("cartesian-point-missing", LOSSY, _delete("IFCCARTESIANPOINT", 3))
_ifc_case("containment-missing", ANY, _delete("IFCRELCONTAINEDINSPATIALSTRUCTURE"))
_ifc_case("unknown-entity", ANY, lambda t: t.replace("ENDSEC;\nEND-ISO", "#999999=IFCNOSUCHTHING('x');\nENDSEC;\nEND-ISO"))
_ifc_case(
    "duplicate-id",
    ANY,
    lambda t: t.replace("ENDSEC;\nEND-ISO", f"{_line(t, 'IFCWALL').group(1)}=IFCWALL('dup',$,'dup',$,$,$,$,$,$);\nENDSEC;\nEND-ISO"),
)
_ifc_case("no-end-iso", ANY, lambda t: t.replace("END-ISO-10303-21;", ""))
_ifc_case("no-data-endsec", LOSSY, lambda t: t[: t.rindex("ENDSEC;")])
_ifc_case("schema-unknown", ERROR, lambda t: t.replace("FILE_SCHEMA(('IFC4'));", "FILE_SCHEMA(('IFC9'));"))
_ifc_case("no-header", ERROR, lambda t: t[t.index("DATA;") :])
_ifc_case("coordinate-1e300", LOSSY, _replace_line("IFCCARTESIANPOINT", lambda m: f"{m.group(1)}=IFCCARTESIANPOINT((1.E300,0.,0.));", 5))
_ifc_case("coordinate-overflow", LOSSY, _replace_line("IFCCARTESIANPOINT", lambda m: f"{m.group(1)}=IFCCARTESIANPOINT((1.E999,0.,0.));", 5))
_ifc_case("extrusion-depth-zero", ANY, _replace_line("IFCEXTRUDEDAREASOLID", _with_args({3: "0."})))


def _delete_ref(text: str, pattern: str, arg: int) -> str:
    """Delete the entity line an element's argument ``arg`` refers to."""
    ref = _args(_line(text, pattern))[arg]
    return re.sub(rf"^{re.escape(ref)}=.*$\n", "", text, count=1, flags=re.MULTILINE)


# cycles: placements and aggregation that refer back to themselves
def _placement_cycle(text: str) -> str:
    m = _line(text, "IFCLOCALPLACEMENT")  # the site's: IFCLOCALPLACEMENT($,#20)
    last = list(re.finditer(r"^(#\d+)=IFCLOCALPLACEMENT\(", text, re.MULTILINE))[-1].group(1)
    return text.replace(m.group(0), f"{m.group(1)}=IFCLOCALPLACEMENT({last},{_args(m)[1]});")


_ifc_case("placement-cycle", LOSSY, _placement_cycle)
_ifc_case(
    "placement-self", LOSSY, _replace_line("IFCLOCALPLACEMENT", lambda m: f"{m.group(1)}=IFCLOCALPLACEMENT({m.group(1)},{_args(m)[1]});", 3)
)


def _aggregation_cycle(text: str) -> str:
    site = _line(text, "IFCSITE").group(1)
    building = _line(text, "IFCBUILDING").group(1)
    return text.replace(
        "ENDSEC;\nEND-ISO", f"#999998=IFCRELAGGREGATES('0cycle0000000000000000',$,$,$,{building},({site}));\nENDSEC;\nEND-ISO"
    )


_ifc_case("aggregation-cycle", ANY, _aggregation_cycle)

# georeferencing
_ifc_case("map-conversion-singular", ERROR, _map_conversion({5: "0.", 6: "0."}))
_ifc_case("map-conversion-scale-zero", ERROR, _map_conversion({7: "0."}))
_ifc_case("map-conversion-scale-negative", ERROR, _map_conversion({7: "-0.001"}))
_ifc_case("map-conversion-eastings-1e12", ERROR, _map_conversion({2: "1.E12"}))
_ifc_case("map-conversion-height-1e12", ERROR, _map_conversion({4: "1.E12"}))
_ifc_case("map-conversion-height-3e38", ERROR, _map_conversion({4: "3.E38"}))
_ifc_case("map-conversion-overflow", ERROR, _map_conversion({2: "1.E999"}))
_ifc_case("map-conversion-other-zone", ERROR, _map_conversion({2: "9564800."}))
_ifc_case("map-conversion-target-missing", ERROR, _delete("IFCPROJECTEDCRS"))
_ifc_case("crs-unknown-epsg", ERROR, _projected_crs({0: "'EPSG:999999'"}))
_ifc_case("crs-garbage-name", ERROR, _projected_crs({0: "'my local grid'"}))
_ifc_case("crs-geographic", ERROR, _projected_crs({0: "'EPSG:4326'"}))
_ifc_case("crs-empty-name", ERROR, _projected_crs({0: "''"}))
_ifc_case("no-georeference", ANY, lambda t: _delete("IFCPROJECTEDCRS")(_delete("IFCMAPCONVERSION")(t)))
_ifc_case(
    "site-latitude-95",
    ERROR,
    lambda t: _replace_line("IFCSITE", _with_args({9: "(95,0,0,0)", 10: "(105,0,0,0)"}))(
        _delete("IFCPROJECTEDCRS")(_delete("IFCMAPCONVERSION")(t))
    ),
)
_ifc_case("length-unit-missing", ANY, _delete("IFCSIUNIT"))
_ifc_case("sound", OK, lambda t: t + "\n")


@case(KIND, "not-ifc-json", ERROR)
def _(b: Bases, folder: Path) -> Made:
    path = folder / "model.ifc"
    path.write_text('{"type": "CityJSON"}')
    return Made([path], [], (path.name,))


@case(KIND, "folder-one-damaged", LOSSY)
def _(b: Bases, folder: Path) -> Made:
    (folder / "models").mkdir()
    text = b.ifc.read_text()
    (folder / "models" / "a.ifc").write_text(text)
    (folder / "models" / "b.ifc").write_text(text[: len(text) // 2])
    return Made([folder / "models"], [], ("b.ifc",))


@case(KIND, "real-acad-cut", LOSSY, realdata=True)
def _(b: Bases, folder: Path) -> Made:
    text = b.real("ifc/ifcos-files_acad2010_objects.ifc").read_text(errors="replace")
    path = folder / "acad.ifc"
    path.write_text(text[: len(text) * 3 // 4])
    return Made([path], [], (path.name,))


output_cases(KIND, lambda b: b.ifc)
