"""CityJSON 1.0, 1.1 and 2.0 files and CityJSONSeq streams (``.city.jsonl``): city objects, their
attributes and the surfaces of one level of detail, as ragged arrays.

The reader does reading and validation only (no triangulation, no tiling). It returns a
:class:`CityModel`:

- one row per city object (id, type, first parent, attributes), in a canonical order that does
  not depend on how the file orders them: each top-level object (sorted by id) followed by its
  descendants, children in the order the parent lists them. A CityJSON file and a CityJSONSeq
  made from it therefore give the same rows, and the same tiles;
- the surfaces of each object's chosen geometry (see *Levels of detail*), GeoArrow style: the
  real-world coordinates of every vertex (``transform`` applied), the vertex indices of every
  ring (open: no closing repeat), ring offsets, surface offsets (a surface's first ring is its
  outer ring, the others its holes), and per surface its object and semantic surface code
  (:data:`SURFACE_TYPES`);
- the CRS: ``metadata.referenceSystem`` (``https://www.opengis.net/def/crs/EPSG/0/7415``,
  ``urn:ogc:def:crs:EPSG::7415``, ...) unless the caller overrides it;
- what was left out, counted by reason (:attr:`CityModel.issues`).

Geometry types: ``MultiSurface``, ``CompositeSurface``, ``Solid``, ``MultiSolid``,
``CompositeSolid`` and ``GeometryInstance`` (a template of ``geometry-templates`` placed by its
reference vertex and 4x4 matrix). Points and lines (``MultiPoint``, ``MultiLineString``) have no
surface and are counted, not read.

Levels of detail: every LoD the file holds is listed (:attr:`CityModel.lods`). Each object takes
the geometry of the LoD asked for, else its highest LoD below it (counted as a fallback); with no
LoD asked for, its highest. An object whose every geometry lies above the LoD asked for is left
out (counted).

Streaming: a CityJSONSeq is read line by line, each feature's vertices and surfaces appended to
the arrays as it comes, so its JSON is never held whole; a CityJSON file is one JSON document
and is parsed whole.
"""

from cim.sources.cityjson.attributes import attribute_columns
from cim.sources.cityjson.reader import CityModel, read_cityjson
from cim.sources.cityjson.vocabulary import (
    SUPPORTED_VERSIONS,
    SURFACE_NONE,
    SURFACE_OTHER,
    SURFACE_TYPES,
    horizontal_crs,
    lod_key,
    parse_reference_system,
    surface_code,
)

__all__ = [
    "SUPPORTED_VERSIONS",
    "SURFACE_TYPES",
    "SURFACE_NONE",
    "SURFACE_OTHER",
    "surface_code",
    "lod_key",
    "parse_reference_system",
    "horizontal_crs",
    "CityModel",
    "read_cityjson",
    "attribute_columns",
]
