"""Typed warnings: what a build noticed about its inputs and carried on with.

Every warning a layer reports is an instance of :class:`CimWarning` (a ``UserWarning``), so a
caller can filter or escalate a kind of them the usual way, as with rasterio's
``NotGeoreferencedWarning``::

    import warnings
    import cim
    from cim.warnings import FeatureSkippedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("error", FeatureSkippedWarning)   # a skipped footprint fails the build
        cim.build("city.toml", "tiles/city")

A build also keeps them in its report (``LayerResult.warnings``) for the command line's summary;
``str(w)`` is the message.
"""

from __future__ import annotations

__all__ = [
    "CimWarning",
    "FeatureSkippedWarning",
    "FeatureRepairedWarning",
    "DefaultValueWarning",
    "OutsideDataWarning",
    "ReprojectionWarning",
    "GeoreferenceWarning",
    "GeometryWarning",
    "AttributeWarning",
    "PointsLinkWarning",
]


class CimWarning(UserWarning):
    """Base class of every warning cim reports."""


class FeatureSkippedWarning(CimWarning):
    """Input features were left out (an invalid footprint, a zero-area polygon)."""


class FeatureRepairedWarning(CimWarning):
    """Input features were mended before use (an invalid polygon made valid)."""


class DefaultValueWarning(CimWarning):
    """A value was missing and a rule or a default filled it (a building's height)."""


class OutsideDataWarning(CimWarning):
    """Features lie outside a raster they are placed on (buildings off the DEM), or outside the
    bounds their file declares (points outside a LAS header's box)."""


class ReprojectionWarning(CimWarning):
    """Coordinates took a slower or less certain path between reference systems."""


class GeoreferenceWarning(CimWarning):
    """A model's georeference was missing, contradictory or overridden."""


class GeometryWarning(CimWarning):
    """Elements whose geometry could not be made, or was simplified (a BIM element that failed or
    timed out, a wall drawn without its openings)."""


class AttributeWarning(CimWarning):
    """Attributes were left out of the output (property columns beyond the limit)."""


class PointsLinkWarning(CimWarning):
    """Buildings were left without their link to the city's lidar points (points without a
    building class, or not overlapping the footprints)."""
