"""A boolean property that an element's property sets do not give has no value in the tiles (not
``false``): EXT_structural_metadata's BOOLEAN cannot carry noData, so the BIM layer writes such a
column as an ENUM with noData (cim.formats.glb.BOOLEAN_ENUM). Checked on the tiny city's IFC
models against ifcopenshell's own reading of their property sets, and with the Khronos validator
(the 3D Tiles validator runs over the same tiles in tests/test_tileset_validation.py)."""

from __future__ import annotations

import ifcopenshell
import ifcopenshell.util.element

from cim.formats.glb import BOOLEAN_ENUM, BOOLEAN_ENUM_NO_DATA, read_glb, read_property_table
from tests.helpers.gltf import validate_glbs


def test_an_absent_boolean_has_no_value_and_a_given_one_its_value(tiny_sources, tiny_city):
    psets: dict[str, dict] = {}
    for path in tiny_sources.ifc:
        model = ifcopenshell.open(str(path))
        for element in model.by_type("IfcProduct"):
            psets[element.GlobalId] = ifcopenshell.util.element.get_psets(element)
    glbs = sorted((tiny_city / "bim").rglob("*.glb"))
    assert glbs
    seen = {"absent": 0, "true": 0, "false": 0}
    for glb in glbs:
        doc, binary = read_glb(glb.read_bytes())
        ext = doc.get("extensions", {}).get("EXT_structural_metadata")
        if not ext:
            continue
        for i, table in enumerate(ext["propertyTables"]):
            definitions = ext["schema"]["classes"][table["class"]]["properties"]
            values = read_property_table(doc, binary, i)
            for pid, definition in definitions.items():
                if definition["type"] == "BOOLEAN":  # every element of the model gives it
                    assert all(isinstance(v, bool) for v in values[pid])
                if definition["type"] != "ENUM":
                    continue
                assert definition["enumType"] == BOOLEAN_ENUM and definition["noData"] == BOOLEAN_ENUM_NO_DATA
                pset, name = definition["name"].split(".", 1)
                for gid, value in zip(values["GlobalId"], values[pid]):
                    given = psets[gid].get(pset, {}).get(name)
                    assert value == given, (glb.name, gid, definition["name"])
                    seen["absent" if given is None else str(bool(given)).lower()] += 1
    # the sample's doors and walls give IsExternal, its slabs and spaces other sets: all three occur
    assert min(seen.values()) > 0, seen
    reports = validate_glbs(glbs)
    assert not [r for r in reports if r["errors"]], [r for r in reports if r["errors"]][:2]
