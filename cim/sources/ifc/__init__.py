"""IFC reader: where a model stands, its elements and attributes, and their triangles.

The package is split along its seams:

- :mod:`~cim.sources.ifc.file` opens a file and holds the helpers every module shares (units,
  attribute access, placements).
- :mod:`~cim.sources.ifc.georef`: :func:`read_georeference` reads where a model stands.
- :mod:`~cim.sources.ifc.elements`: :class:`IfcElementIndex` indexes the relationships once
  (containment, aggregation, voids, types, property sets, materials) and gives each element's
  attributes as typed columns.
- :mod:`~cim.sources.ifc.geometry`: :class:`GeometryStream` and :func:`iter_element_geometry`
  stream per-element triangle meshes in world coordinates (metres) from ifcopenshell's
  multi-threaded geometry iterator, run in a separate process so that a pathological element can
  be stopped: an element that takes longer than ``element_timeout`` seconds is killed with its
  process, reported, and the rest continue.
- :mod:`~cim.sources.ifc.kernel` runs the kernel: a geometry process, or this process for a tiny
  model of simple planar solids that :mod:`~cim.sources.ifc.simple` admits.

Units: the iterator gives metres whatever the project's length unit; attribute lengths, areas and
volumes are converted to m, m², m³.
"""

from cim.sources.ifc.elements import ElementAttributes, IfcElementIndex
from cim.sources.ifc.file import BODY_IDENTIFIERS, EXCLUDED_CLASSES, SPATIAL_CLASSES, length_unit, model_context, open_ifc, schema_name
from cim.sources.ifc.geometry import ElementGeometry, GeometryLog, GeometryOptions, GeometryStream, iter_element_geometry
from cim.sources.ifc.georef import IfcGeoreference, check_map_conversion, read_georeference
from cim.sources.ifc.kernel import peak_rss_mb

__all__ = [
    "BODY_IDENTIFIERS",
    "EXCLUDED_CLASSES",
    "SPATIAL_CLASSES",
    "ElementAttributes",
    "ElementGeometry",
    "GeometryLog",
    "GeometryOptions",
    "GeometryStream",
    "check_map_conversion",
    "IfcElementIndex",
    "IfcGeoreference",
    "iter_element_geometry",
    "length_unit",
    "model_context",
    "open_ifc",
    "peak_rss_mb",
    "read_georeference",
    "schema_name",
]
