"""Synthetic IFC4 buildings for the sample city, written with ``ifcopenshell.api``.

Each building is a rectangular block of storeys: floor slabs, four external walls with window
and door openings (windows have a frame and a transparent glazing pane), one internal wall with
a door, two spaces a storey and a flat roof, with types, materials, colours and property sets
(the standard ``Pset_*Common`` ones and a custom ``CIM_Asset``). The project works in
millimetres, as many real models do, and is georeferenced with ``IfcMapConversion`` to an
``IfcProjectedCRS`` (EPSG:4544 by default): the model's origin, the centre of the footprint at
ground-floor level, lands on the requested easting, northing and height, and the model's +X axis
points ``rotation_deg`` counter-clockwise from grid east.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Literal

import ifcopenshell
import ifcopenshell.api.aggregate
import ifcopenshell.api.context
import ifcopenshell.api.feature
import ifcopenshell.api.geometry
import ifcopenshell.api.georeference
import ifcopenshell.api.material
import ifcopenshell.api.project
import ifcopenshell.api.pset
import ifcopenshell.api.root
import ifcopenshell.api.spatial
import ifcopenshell.api.style
import ifcopenshell.api.type
import ifcopenshell.api.unit
import ifcopenshell.guid
import numpy as np
from ifcopenshell.util.shape_builder import ShapeBuilder

from cim.store import atomic_path

__all__ = ["MM", "WALL", "INNER_WALL", "SLAB", "ROOF", "write_sample_ifc"]

MM = 1000.0  # project units (millimetres) per metre
WALL = 0.25  # external wall thickness (m)
INNER_WALL = 0.12
SLAB = 0.2
ROOF = 0.3


class _Writer:
    """Holds the file, the body context and the shared styles while a building is written."""

    def __init__(self, name: str, rng: np.random.Generator, schema: Literal["IFC4", "IFC4X3"] = "IFC4") -> None:
        self.f = ifcopenshell.api.project.create_file(version=schema)
        self.rng = rng
        self.project = ifcopenshell.api.root.create_entity(self.f, ifc_class="IfcProject", name=name)
        length = ifcopenshell.api.unit.add_si_unit(self.f, unit_type="LENGTHUNIT", prefix="MILLI")
        area = ifcopenshell.api.unit.add_si_unit(self.f, unit_type="AREAUNIT")
        volume = ifcopenshell.api.unit.add_si_unit(self.f, unit_type="VOLUMEUNIT")
        angle = ifcopenshell.api.unit.add_si_unit(self.f, unit_type="PLANEANGLEUNIT")
        ifcopenshell.api.unit.assign_unit(self.f, units=[length, area, volume, angle])
        model = ifcopenshell.api.context.add_context(self.f, context_type="Model")
        self.body = ifcopenshell.api.context.add_context(
            self.f, context_type="Model", context_identifier="Body", target_view="MODEL_VIEW", parent=model
        )
        self.builder = ShapeBuilder(self.f)

    # -- geometry ---------------------------------------------------------------------------
    def box(self, size: tuple[float, float, float], at: tuple[float, float, float] = (0.0, 0.0, 0.0)):
        """An extruded rectangle ``size`` metres with its minimum corner at ``at`` (object coords)."""
        sx, sy, sz = (v * MM for v in size)
        x, y, z = (v * MM for v in at)
        profile = self.builder.rectangle(size=(sx, sy), position=(x, y))
        return self.builder.extrude(profile, magnitude=sz, position=(0.0, 0.0, z))

    def frame(self, width: float, height: float, depth: float, bar: float, y: float):
        """A rectangular window frame (a profile with a hole), ``depth`` deep along +Y at ``y``."""
        w, h, b = width * MM, height * MM, bar * MM
        outer = self.builder.polyline([(0, 0), (w, 0), (w, h), (0, h)], closed=True)
        inner = self.builder.polyline([(b, b), (w - b, b), (w - b, h - b), (b, h - b)], closed=True)
        profile = self.builder.profile(outer, inner_curves=[inner])
        # the profile lies in the wall's XZ plane: extrude along +Y
        return self.builder.extrude(
            profile,
            magnitude=depth * MM,
            position=(0.0, y * MM, 0.0),
            position_z_axis=(0.0, -1.0, 0.0),
            position_x_axis=(1.0, 0.0, 0.0),
            extrusion_vector=(0.0, 0.0, 1.0),
        )

    def represent(self, product, items: list, styles: list | None = None) -> None:
        rep = self.builder.get_representation(self.body, items)
        ifcopenshell.api.geometry.assign_representation(self.f, product=product, representation=rep)
        for item, style in zip(items, styles or []):
            if style is not None:
                ifcopenshell.api.style.assign_item_style(self.f, item=item, style=style)

    def place(self, product, x: float, y: float, z: float, angle: float = 0.0) -> None:
        """Place ``product`` at (x, y, z) metres, its X axis turned ``angle`` radians about Z."""
        m = np.eye(4)
        c, s = math.cos(angle), math.sin(angle)
        m[:3, :3] = [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]
        m[:3, 3] = (x, y, z)
        ifcopenshell.api.geometry.edit_object_placement(self.f, product=product, matrix=m, is_si=True)

    # -- semantics --------------------------------------------------------------------------
    def style(self, name: str, rgb: tuple[float, float, float], transparency: float = 0.0):
        style = ifcopenshell.api.style.add_style(self.f, name=name)
        ifcopenshell.api.style.add_surface_style(
            self.f,
            style=style,
            ifc_class="IfcSurfaceStyleRendering",
            attributes={
                "SurfaceColour": {"Name": None, "Red": rgb[0], "Green": rgb[1], "Blue": rgb[2]},
                "Transparency": transparency,
                "ReflectanceMethod": "NOTDEFINED",
            },
        )
        return style

    def material(self, name: str, category: str, style) -> object:
        mat = ifcopenshell.api.material.add_material(self.f, name=name, category=category)
        ifcopenshell.api.style.assign_material_style(self.f, material=mat, style=style, context=self.body)
        return mat

    def pset(self, product, name: str, props: dict) -> None:
        pset = ifcopenshell.api.pset.add_pset(self.f, product=product, name=name)
        ifcopenshell.api.pset.edit_pset(self.f, pset=pset, properties=props)

    def element(self, ifc_class: str, name: str, container, *, predefined_type: str | None = None, type_=None, material=None):
        el = ifcopenshell.api.root.create_entity(self.f, ifc_class=ifc_class, name=name, predefined_type=predefined_type)
        if container is not None:
            ifcopenshell.api.spatial.assign_container(self.f, products=[el], relating_structure=container)
        if type_ is not None:
            ifcopenshell.api.type.assign_type(self.f, related_objects=[el], relating_type=type_, should_map_representations=False)
        if material is not None:
            ifcopenshell.api.material.assign_material(self.f, products=[el], type="IfcMaterial", material=material)
        return el


def write_sample_ifc(
    path: Path,
    *,
    easting: float,
    northing: float,
    base_height: float,
    rotation_deg: float,
    width: float,
    depth: float,
    storeys: int,
    name: str,
    seed: int = 0,
    crs: str = "EPSG:4544",
    schema: Literal["IFC4", "IFC4X3"] = "IFC4",
) -> Path:
    """Write a georeferenced IFC building (IFC4 by default) and return ``path``.

    Parameters
    ----------
    path : the ``.ifc`` file to write (atomically)
    easting, northing, base_height : where the model's origin (the footprint's centre at
        ground-floor level) lands, in ``crs`` metres
    rotation_deg : angle from grid east to the model's +X axis, counter-clockwise (degrees)
    width, depth : footprint along the model's X and Y axes (metres)
    storeys : number of storeys (at least 1)
    name : project and building name
    seed : varies colours, window rhythm and property values, deterministically
    crs : the ``IfcProjectedCRS`` name
    schema : "IFC4" or "IFC4X3"
    """
    if schema not in ("IFC4", "IFC4X3"):
        raise ValueError(f"write_sample_ifc writes IFC4 or IFC4X3, not {schema!r}")
    if storeys < 1 or width < 4.0 or depth < 4.0:
        raise ValueError("a sample building needs at least 1 storey and a 4 m × 4 m footprint")
    rng = np.random.default_rng(seed)
    w = _Writer(name, rng, schema)
    f = w.f

    site = ifcopenshell.api.root.create_entity(f, ifc_class="IfcSite", name=f"{name} site")
    building = ifcopenshell.api.root.create_entity(f, ifc_class="IfcBuilding", name=name)
    ifcopenshell.api.aggregate.assign_object(f, products=[site], relating_object=w.project)
    ifcopenshell.api.aggregate.assign_object(f, products=[building], relating_object=site)
    for product in (site, building):
        w.place(product, 0.0, 0.0, 0.0)
    w.pset(building, "Pset_BuildingCommon", {"BuildingID": name, "YearOfConstruction": str(2000 + seed % 24)})

    ifcopenshell.api.georeference.add_georeferencing(f, ifc_class="IfcMapConversion", name=crs)
    metre = ifcopenshell.api.unit.add_si_unit(f, unit_type="LENGTHUNIT")
    angle = math.radians(rotation_deg)
    ifcopenshell.api.georeference.edit_georeferencing(
        f,
        projected_crs={"Name": crs, "Description": "CGCS2000 / 3-degree Gauss-Kruger CM 105E", "MapUnit": metre},
        coordinate_operation={
            "Eastings": float(easting),
            "Northings": float(northing),
            "OrthogonalHeight": float(base_height),
            "XAxisAbscissa": math.cos(angle),
            "XAxisOrdinate": math.sin(angle),
            "Scale": 1.0 / MM,  # project millimetres → map metres
        },
    )

    hue = rng.uniform(0.0, 1.0)
    facade = w.style("Facade render", _facade_colour(hue))
    concrete_style = w.style("Concrete", (0.62, 0.62, 0.60))
    plaster_style = w.style("Plaster", (0.93, 0.91, 0.86))
    roof_style = w.style("Roof membrane", (0.30, 0.31, 0.33))
    frame_style = w.style("Window frame", (0.22, 0.23, 0.25))
    glass_style = w.style("Glazing", (0.55, 0.72, 0.85), transparency=0.7)
    wood_style = w.style("Door leaf", (0.55, 0.38, 0.22))
    space_style = w.style("Space", (0.40, 0.75, 0.45), transparency=0.85)

    brick = w.material("Brick masonry", "brick", facade)
    concrete = w.material("Reinforced concrete", "concrete", concrete_style)
    plaster = w.material("Plasterboard partition", "gypsum", plaster_style)
    bitumen = w.material("Bituminous membrane", "bitumen", roof_style)
    glass = w.material("Glass", "glass", glass_style)
    timber = w.material("Timber", "wood", wood_style)

    ext_wall_t = ifcopenshell.api.root.create_entity(f, ifc_class="IfcWallType", name="EXT-250 brick", predefined_type="SOLIDWALL")
    int_wall_t = ifcopenshell.api.root.create_entity(f, ifc_class="IfcWallType", name="INT-120 partition", predefined_type="PARTITIONING")
    slab_t = ifcopenshell.api.root.create_entity(f, ifc_class="IfcSlabType", name="FLR-200 concrete", predefined_type="FLOOR")
    win_w, win_h = float(rng.choice([1.2, 1.5, 1.8])), 1.5
    win_t = ifcopenshell.api.root.create_entity(
        f, ifc_class="IfcWindowType", name=f"WIN {win_w * 1000:.0f}x{win_h * 1000:.0f}", predefined_type="WINDOW"
    )
    door_t = ifcopenshell.api.root.create_entity(f, ifc_class="IfcDoorType", name="DOOR 1000x2100", predefined_type="DOOR")
    w.pset(ext_wall_t, "Pset_WallCommon", {"Reference": "EXT-250", "AcousticRating": "Rw 52"})
    w.pset(win_t, "Pset_WindowCommon", {"Reference": "WIN-A", "GlazingAreaFraction": 0.78})

    heights = [4.2 if i == 0 and storeys > 1 else 3.3 for i in range(storeys)]
    elevations = np.concatenate([[0.0], np.cumsum(heights)])
    hx, hy = width / 2.0, depth / 2.0
    # corners counter-clockwise: each wall runs from one to the next, its interior on the left
    corners = [(-hx, -hy), (hx, -hy), (hx, hy), (-hx, hy)]
    code = 0

    def asset(el, category: str) -> None:
        nonlocal code
        code += 1
        w.pset(
            el,
            "CIM_Asset",
            {
                "AssetCode": f"{name[:8].upper()}-{category}-{code:04d}",
                "InstallYear": int(rng.integers(1995, 2024)),
                "UnitCost": round(float(rng.uniform(50.0, 5000.0)), 2),
                "Inspected": bool(rng.random() < 0.5),
            },
        )

    for level, (z0, h) in enumerate(zip(elevations[:-1], heights)):
        storey = ifcopenshell.api.root.create_entity(f, ifc_class="IfcBuildingStorey", name=_storey_name(level))
        storey.Elevation = z0 * MM
        ifcopenshell.api.aggregate.assign_object(f, products=[storey], relating_object=building)
        w.place(storey, 0.0, 0.0, z0)

        slab = w.element("IfcSlab", f"Floor slab {_storey_name(level)}", storey, predefined_type="FLOOR", type_=slab_t, material=concrete)
        w.represent(slab, [w.box((width, depth, SLAB), (-hx, -hy, -SLAB))])
        w.place(slab, 0.0, 0.0, z0)
        w.pset(slab, "Pset_SlabCommon", {"IsExternal": level == 0, "LoadBearing": True, "FireRating": "REI120"})
        asset(slab, "SLB")

        for side in range(4):
            (x0, y0), (x1, y1) = corners[side], corners[(side + 1) % 4]
            length = math.hypot(x1 - x0, y1 - y0)
            heading = math.atan2(y1 - y0, x1 - x0)
            wall = w.element(
                "IfcWall", f"External wall {level}-{'SENW'[side]}", storey, predefined_type="SOLIDWALL", type_=ext_wall_t, material=brick
            )
            w.represent(wall, [w.box((length, WALL, h), (0.0, 0.0, 0.0))])
            w.place(wall, x0, y0, z0, heading)
            w.pset(wall, "Pset_WallCommon", {"IsExternal": True, "LoadBearing": True, "FireRating": "REI90", "ThermalTransmittance": 0.28})
            asset(wall, "WAL")
            n_win = max(1, int((length - 1.0) // 3.6))
            slots = (np.arange(n_win) + 0.5) * length / n_win
            door_slot = n_win // 2 if (level == 0 and side == 0) else None
            for k, centre in enumerate(slots):
                is_door = k == door_slot
                ow, oh = (1.0, 2.1) if is_door else (win_w, win_h)
                sill = 0.0 if is_door else 0.9
                if centre - ow / 2 < WALL + 0.2 or centre + ow / 2 > length - WALL - 0.2:
                    continue
                opening = ifcopenshell.api.root.create_entity(
                    f, ifc_class="IfcOpeningElement", name=f"Opening {wall.Name} {k}", predefined_type="OPENING"
                )
                w.represent(opening, [w.box((ow, WALL + 0.2, oh), (0.0, -0.1, 0.0))])
                ox, oy = x0 + math.cos(heading) * (centre - ow / 2), y0 + math.sin(heading) * (centre - ow / 2)
                w.place(opening, ox, oy, z0 + sill, heading)
                ifcopenshell.api.feature.add_feature(f, feature=opening, element=wall)
                if is_door:
                    fill = w.element("IfcDoor", f"Entrance door {k}", storey, predefined_type="DOOR", type_=door_t, material=timber)
                    fill.OverallWidth, fill.OverallHeight = ow * MM, oh * MM
                    w.represent(fill, [w.box((ow, 0.06, oh), (0.0, WALL / 2 - 0.03, 0.0))], [wood_style])
                    w.pset(fill, "Pset_DoorCommon", {"IsExternal": True, "FireRating": "EI30", "HandicapAccessible": True})
                else:
                    fill = w.element("IfcWindow", f"Window {wall.Name} {k}", storey, predefined_type="WINDOW", type_=win_t, material=glass)
                    fill.OverallWidth, fill.OverallHeight = ow * MM, oh * MM
                    items = [
                        w.frame(ow, oh, 0.08, 0.07, WALL / 2 - 0.04),
                        w.box((ow - 0.14, 0.024, oh - 0.14), (0.07, WALL / 2 - 0.012, 0.07)),
                    ]
                    w.represent(fill, items, [frame_style, glass_style])
                    w.pset(fill, "Pset_WindowCommon", {"IsExternal": True, "ThermalTransmittance": 1.1, "Infiltration": 0.3})
                w.place(fill, ox, oy, z0 + sill, heading)
                ifcopenshell.api.feature.add_filling(f, opening=opening, element=fill)
                asset(fill, "DOR" if is_door else "WIN")

        # one partition across the depth, with a door, splitting the storey into two spaces
        split = -hx + width * float(rng.uniform(0.4, 0.6))
        inner = w.element("IfcWall", f"Partition {level}", storey, predefined_type="PARTITIONING", type_=int_wall_t, material=plaster)
        inner_len = depth - 2 * WALL
        w.represent(inner, [w.box((inner_len, INNER_WALL, h - SLAB), (0.0, -INNER_WALL / 2, 0.0))])
        w.place(inner, split, -hy + WALL, z0, math.pi / 2)
        w.pset(inner, "Pset_WallCommon", {"IsExternal": False, "LoadBearing": False, "FireRating": "EI30"})
        asset(inner, "WAL")
        opening = ifcopenshell.api.root.create_entity(
            f, ifc_class="IfcOpeningElement", name=f"Opening partition {level}", predefined_type="OPENING"
        )
        w.represent(opening, [w.box((0.9, INNER_WALL + 0.2, 2.1), (0.0, -INNER_WALL / 2 - 0.1, 0.0))])
        w.place(opening, split, -hy + WALL + inner_len / 2 - 0.45, z0, math.pi / 2)
        ifcopenshell.api.feature.add_feature(f, feature=opening, element=inner)
        door = w.element("IfcDoor", f"Internal door {level}", storey, predefined_type="DOOR", type_=door_t, material=timber)
        door.OverallWidth, door.OverallHeight = 0.9 * MM, 2.1 * MM
        w.represent(door, [w.box((0.9, 0.05, 2.1), (0.0, -0.025, 0.0))], [wood_style])
        w.place(door, split, -hy + WALL + inner_len / 2 - 0.45, z0, math.pi / 2)
        ifcopenshell.api.feature.add_filling(f, opening=opening, element=door)
        w.pset(door, "Pset_DoorCommon", {"IsExternal": False, "FireRating": "EI30"})

        for r, (xa, xb) in enumerate([(-hx + WALL, split - INNER_WALL / 2), (split + INNER_WALL / 2, hx - WALL)]):
            space = ifcopenshell.api.root.create_entity(f, ifc_class="IfcSpace", name=f"{level:02d}{r + 1:02d}", predefined_type="INTERNAL")
            space.LongName = ["Office", "Meeting room"][r] if level else ["Lobby", "Shop"][r]
            ifcopenshell.api.aggregate.assign_object(f, products=[space], relating_object=storey)
            w.represent(space, [w.box((xb - xa, depth - 2 * WALL, h - SLAB), (xa, -hy + WALL, 0.0))], [space_style])
            w.place(space, 0.0, 0.0, z0)
            w.pset(space, "Pset_SpaceCommon", {"IsExternal": False, "Reference": space.LongName})
            qto = ifcopenshell.api.pset.add_qto(f, product=space, name="Qto_SpaceBaseQuantities")
            ifcopenshell.api.pset.edit_qto(
                f, qto=qto, properties={"NetFloorArea": round((xb - xa) * (depth - 2 * WALL), 2), "Height": h - SLAB}
            )

    top = float(elevations[-1])
    roof_storey = storey  # the roof belongs to the top storey
    roof = w.element("IfcRoof", f"{name} roof", roof_storey, predefined_type="FLAT_ROOF", material=bitumen)
    w.represent(roof, [w.box((width, depth, ROOF), (-hx, -hy, 0.0))])
    w.place(roof, 0.0, 0.0, top)
    w.pset(roof, "Pset_RoofCommon", {"IsExternal": True, "ProjectedArea": round(width * depth, 2)})
    asset(roof, "ROF")

    _make_deterministic(f, name, seed)
    path = Path(path)
    with atomic_path(path) as tmp:
        f.write(str(tmp))
    return path


def _make_deterministic(f: ifcopenshell.file, name: str, seed: int) -> None:
    """Same inputs, same bytes: ifcopenshell.api gives every rooted entity a random GlobalId and
    the header the time of writing; here each GlobalId follows from the building, the seed and
    the entity's place in the file, and the header's time stamp is fixed."""
    for entity in f.by_type("IfcRoot"):
        digest = hashlib.sha256(f"cim sample {seed} {name} #{entity.id()}".encode()).hexdigest()[:32]
        entity.GlobalId = ifcopenshell.guid.compress(digest)
    f.header.file_name.time_stamp = "2026-01-01T00:00:00"
    # relationships' member sets, and the project's units, come out of ifcopenshell.api in a
    # Python set's order (objects hashed by their address: it changes with what the process did
    # before): sort them (IfcRelNests is the one whose members are an ordered list)
    for rel in [*f.by_type("IfcRelationship"), *f.by_type("IfcUnitAssignment")]:
        if rel.is_a("IfcRelNests"):
            continue
        for i in range(len(rel)):
            value = rel[i]
            if isinstance(value, tuple) and len(value) > 1 and all(isinstance(v, ifcopenshell.entity_instance) for v in value):
                setattr(rel, rel.attribute_name(i), tuple(sorted(value, key=lambda e: e.id())))


def _storey_name(level: int) -> str:
    return "Ground floor" if level == 0 else f"Level {level}"


def _facade_colour(hue: float) -> tuple[float, float, float]:
    """A muted render colour: warm sand to brick red to grey-blue."""
    palette = np.array([[0.82, 0.74, 0.60], [0.70, 0.42, 0.33], [0.60, 0.64, 0.68], [0.86, 0.82, 0.74]])
    i = hue * (len(palette) - 1)
    a, t = int(i), i - int(i)
    c = palette[a] * (1 - t) + palette[min(a + 1, len(palette) - 1)] * t
    return float(c[0]), float(c[1]), float(c[2])
