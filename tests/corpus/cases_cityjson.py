"""Damaged CityJSON: broken JSON, indices that point nowhere, lying transforms, wrong CRSs,
cyclic parent/child links."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tests.corpus.bases import Bases
from tests.corpus.make_corpus import ANY, ERROR, LOSSY, OK, Made, byte_damage, case, output_cases

__all__: list[str] = []

KIND = "cityjson"

byte_damage(KIND, "blocks", lambda b: b.cityjson, header=200, truncated=ERROR, seed=51, flips=4, size_hint=3000)
byte_damage(
    KIND,
    "real-dh",
    lambda b: b.real("cityjson/cjio_DH_01_subs.city.json"),
    header=200,
    truncated=ERROR,
    args=("--crs", "EPSG:7415"),
    seed=52,
    flips=2,
    realdata=True,
)


def _doc_case(name: str, expect: str, edit: Callable[[dict], object], *, args: tuple[str, ...] = ()) -> None:
    """A case of the blocks document edited in place by ``edit`` (which may instead return the
    file's text)."""

    @case(KIND, name, expect)
    def _(b: Bases, folder: Path) -> Made:
        doc = b.cityjson_doc()
        out = edit(doc)
        path = folder / "blocks.city.json"
        path.write_text(out if isinstance(out, str) else json.dumps(doc))
        return Made([path], list(args), (path.name,))


def _boundaries(doc: dict, oid: str = "B0") -> list:
    return doc["CityObjects"][oid]["geometry"][0]["boundaries"]


def _set_index(value: object) -> Callable[[dict], None]:
    def edit(doc: dict) -> None:
        _boundaries(doc)[0][0][0][0] = value

    return edit


_doc_case("index-out-of-range", LOSSY, _set_index(10_000))
_doc_case("index-negative", LOSSY, _set_index(-3))
_doc_case("index-text", LOSSY, _set_index("seven"))
_doc_case("index-float", LOSSY, _set_index(1.5))
_doc_case("index-null", LOSSY, _set_index(None))
_doc_case("every-index-out-of-range", ERROR, lambda d: _all_indices(d, 10_000))
_doc_case("scale-zero", ERROR, lambda d: d["transform"].update(scale=[0.0, 0.001, 0.001]))
_doc_case("scale-nan", ERROR, lambda d: d["transform"].update(scale=[float("nan"), 0.001, 0.001]))
_doc_case("scale-negative", ANY, lambda d: d["transform"].update(scale=[-0.001, 0.001, 0.001]))
_doc_case("translate-nan", ERROR, lambda d: d["transform"].update(translate=[float("nan"), 3828050.0, 1100.0]))
_doc_case("translate-1e12", ERROR, lambda d: d["transform"].update(translate=[1e12, 3828050.0, 1100.0]))
_doc_case("height-1e12", ERROR, lambda d: d["transform"].update(translate=[564700.0, 3828050.0, 1e12]))
_doc_case("transform-missing", ERROR, lambda d: d.pop("transform") and None)
_doc_case("transform-not-object", ERROR, lambda d: d.update(transform=[1, 2, 3]))
_doc_case("vertex-nan", LOSSY, lambda d: d["vertices"].__setitem__(0, [float("nan"), 0, 0]))
_doc_case("vertex-huge", LOSSY, lambda d: d["vertices"].__setitem__(0, [10**15, 0, 0]))
_doc_case("vertex-short", LOSSY, lambda d: d["vertices"].__setitem__(0, [1, 2]))
_doc_case("vertex-text", LOSSY, lambda d: d["vertices"].__setitem__(0, ["a", "b", "c"]))
_doc_case("vertices-missing", ERROR, lambda d: d.pop("vertices") and None)
_doc_case("vertices-not-list", ERROR, lambda d: d.update(vertices={"a": 1}))
_doc_case("cityobjects-missing", ERROR, lambda d: d.pop("CityObjects") and None)
_doc_case("cityobjects-list", ERROR, lambda d: d.update(CityObjects=[1, 2]))
_doc_case("cityobjects-empty", ERROR, lambda d: d.update(CityObjects={}))
_doc_case("type-foo", ERROR, lambda d: d.update(type="Foo"))
_doc_case("version-9", ERROR, lambda d: d.update(version="9.9"))
_doc_case("crs-unknown", ERROR, lambda d: d["metadata"].update(referenceSystem="https://www.opengis.net/def/crs/EPSG/0/999999"))
_doc_case("crs-garbage", ERROR, lambda d: d["metadata"].update(referenceSystem="my own grid"))
_doc_case("crs-4326-metres", ERROR, lambda d: d["metadata"].update(referenceSystem="https://www.opengis.net/def/crs/EPSG/0/4326"))
_doc_case("crs-other-zone", ANY, lambda d: d["metadata"].update(referenceSystem="https://www.opengis.net/def/crs/EPSG/0/4545"))
_doc_case("crs-far-zone", ANY, lambda d: d["metadata"].update(referenceSystem="https://www.opengis.net/def/crs/EPSG/0/32618"))
_doc_case("no-crs", ERROR, lambda d: d.pop("metadata") and None)
_doc_case("no-crs-given", OK, lambda d: d.pop("metadata") and None, args=("--crs", "EPSG:4544"))
_doc_case("geometry-type-unknown", LOSSY, lambda d: d["CityObjects"]["B0"]["geometry"][0].update(type="Blob"))
_doc_case("geometry-depth-wrong", LOSSY, lambda d: d["CityObjects"]["B0"]["geometry"][0].update(type="MultiSurface"))
_doc_case("geometry-boundaries-empty", LOSSY, lambda d: d["CityObjects"]["B0"]["geometry"][0].update(boundaries=[]))
_doc_case("geometry-boundaries-number", LOSSY, lambda d: d["CityObjects"]["B0"]["geometry"][0].update(boundaries=7))
_doc_case("geometry-not-list", LOSSY, lambda d: d["CityObjects"]["B0"].update(geometry={"type": "Solid"}))
_doc_case("lod-missing", ANY, lambda d: d["CityObjects"]["B0"]["geometry"][0].pop("lod") and None)
_doc_case("object-type-unknown", ANY, lambda d: d["CityObjects"]["B0"].update(type="Spaceship"))
_doc_case("object-not-dict", LOSSY, lambda d: d["CityObjects"].update(B0=[1, 2, 3]))
_doc_case("semantics-out-of-range", ANY, lambda d: _semantics(d, 99))
_doc_case(
    "instance-template-missing",
    LOSSY,
    lambda d: d["CityObjects"]["B0"].update(
        geometry=[
            {
                "type": "GeometryInstance",
                "template": 4,
                "boundaries": [0],
                "transformationMatrix": [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1],
            }
        ]
    ),
)
_doc_case("children-cycle", ANY, lambda d: _link(d, [("B0", "B1"), ("B1", "B0")]))
_doc_case("child-of-itself", ANY, lambda d: _link(d, [("B0", "B0")]))
_doc_case("child-missing", ANY, lambda d: _link(d, [("B0", "NOPE")]))
_doc_case(
    "deep-nesting",
    ERROR,
    lambda d: (
        json.dumps(d).replace('"boundaries": [[[[0', '"boundaries": ' + "[" * 5000 + "[[[[0", 1).replace("]]]]", "]]]]" + "]" * 5000, 1)
    ),
)
_doc_case("sound", OK, lambda d: None)


def _all_indices(doc: dict, base: int) -> None:
    for obj in doc["CityObjects"].values():
        for shell in obj["geometry"][0]["boundaries"]:
            for surface in shell:
                for ring in surface:
                    ring[:] = [base + v for v in ring]


def _semantics(doc: dict, value: int) -> None:
    g = doc["CityObjects"]["B0"]["geometry"][0]
    g["semantics"] = {"surfaces": [{"type": "RoofSurface"}], "values": [[value] * 6]}


def _link(doc: dict, pairs: list[tuple[str, str]]) -> None:
    for parent, child in pairs:
        doc["CityObjects"][parent].setdefault("children", []).append(child)
        if child in doc["CityObjects"]:
            doc["CityObjects"][child].setdefault("parents", []).append(parent)


@case(KIND, "seq-truncated", LOSSY)
def _(b: Bases, folder: Path) -> Made:
    doc = b.cityjson_doc()
    header = {k: v for k, v in doc.items() if k not in ("CityObjects", "vertices")}
    header["CityObjects"], header["vertices"] = {}, []
    lines = [json.dumps(header)]
    for oid, obj in doc["CityObjects"].items():
        lines.append(json.dumps({"type": "CityJSONFeature", "id": oid, "CityObjects": {oid: obj}, "vertices": doc["vertices"]}))
    text = "\n".join(lines) + "\n"
    path = folder / "blocks.city.jsonl"
    path.write_text(text[: len(text) - 200])
    return Made([path], [], (path.name,))


@case(KIND, "real-rotterdam-sound", OK, realdata=True)
def _(b: Bases, folder: Path) -> Made:
    return Made([b.real("cityjson/cjio_rotterdam_subset.json")], ["--crs", "EPSG:7415"], ("rotterdam",))


@case(KIND, "real-dh-wrong-crs", ERROR, realdata=True)
def _(b: Bases, folder: Path) -> Made:
    return Made([b.real("cityjson/cjio_DH_01_subs.city.json")], ["--crs", "EPSG:4544"], ("cjio_DH_01_subs",))


output_cases(KIND, lambda b: b.cityjson)
