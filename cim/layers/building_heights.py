"""Heights of a buildings layer taken from a classified point cloud (the ``heights_from`` and
``heights_layer`` options of :class:`~cim.layers.buildings.BuildingsOptions`).

Per footprint (see :mod:`cim.sources.pointcloud.heights`): the ground, as the
``ground_percentile`` of ground points (class 2) in a ring ``ground_buffer`` wide around it, or
the DEM under it (``ground_from = "dem"``: its lowest ground, where the layer stands it); the
roof, as each of ``roof_percentiles`` of building points (class 6) it covers. They become the
attributes ``h_ground``, ``h_roof_<p>`` and ``n_points`` of every building, and its height is
``roof_height`` minus ``h_ground``. A value from fewer than ``min_points`` points is left null;
a footprint without both values (or with a roof not above its ground) takes ``default_height``
(or, with ``heights_fallback = "attributes"``, the layer's height and floors rules, e.g. for a
survey that covers part of the city); one warning counts them and names the first.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cim.errors import CimInputError
from cim.sources.dem import DemPrefetch, read_dem_window
from cim.sources.footprints import FLOAT64, INT32, FootprintTable, footprint_rings
from cim.sources.pointcloud.heights import FootprintHeights, expand_sources, footprint_heights
from cim.sources.pointcloud.kept import KEPT_DIR, drop_kept, kept_parts
from cim.sources.pointcloud.las import open_pointcloud
from cim.store import file_fingerprint
from cim.warnings import CimWarning, DefaultValueWarning, PointsLinkWarning

if TYPE_CHECKING:
    from pyproj import CRS

    from cim.layers.base import LayerRun
    from cim.layers.buildings import BuildingsOptions

__all__ = ["HEIGHT_OPTIONS", "LINK_PERCENTILES", "PointHeights", "roof_attribute", "point_sources", "heights_from_points", "point_links"]

#: the buildings options that decide heights from points (for the layer's build key)
HEIGHT_OPTIONS = (
    "heights_from",
    "heights_layer",
    "roof_percentiles",
    "ground_percentile",
    "ground_from",
    "ground_buffer",
    "min_points",
    "roof_height",
    "heights_fallback",
)


#: the roof percentiles :func:`point_links` keeps (0 and 100: the lowest and highest point)
LINK_PERCENTILES = (0.0, 50.0, 90.0, 100.0)


def roof_attribute(p: float) -> str:
    """The attribute name of a roof percentile: 50 → ``h_roof_50``, 97.5 → ``h_roof_97.5``."""
    return f"h_roof_{p:g}"


@dataclass
class PointHeights:
    """What the points gave a buildings layer.

    Attributes
    ----------
    heights : (n,) float64 extrusion heights (``default_height`` where too few points)
    base : (n,) float64 ground heights to stand the buildings on when the layer has no DEM
        (``h_ground``; the median of the known ones where unknown), else None
    fallback : (n,) bool, the footprints that took the default height
    notes : warnings for the layer to report
    fingerprint : the point files, for the build key
    """

    heights: np.ndarray
    base: np.ndarray | None
    fallback: np.ndarray
    notes: list[tuple[type[CimWarning], str]]
    fingerprint: list[dict[str, object]]


def point_sources(opts: BuildingsOptions, run: LayerRun) -> tuple[list[Path], str | None]:
    """The point files of ``heights_from`` and of the city's point-cloud layer ``heights_layer``,
    and the CRS to assume for files that declare none.

    Raises
    ------
    CimInputError
        ``heights_layer`` names no point-cloud layer built before this one.
    """
    given = opts.heights_from
    sources: list[Path] = [] if given is None else [given] if isinstance(given, Path) else list(given)
    crs = run.crs(opts.crs)
    if opts.heights_layer is not None:
        found = [r for r in run.city.built if r.id == opts.heights_layer]
        if not found or found[0].kind != "pointcloud":
            known = ", ".join(r.id for r in run.city.results("pointcloud")) or "none"
            raise CimInputError(
                f"layer {run.id}: heights_layer {opts.heights_layer!r} is not a point-cloud layer of this city "
                f"(point-cloud layers built before it: {known})"
            )
        sources += found[0].sources
        crs = found[0].crs or crs  # the CRS that layer read its files in, when they share one
    return sources, crs


def heights_from_points(table: FootprintTable, opts: BuildingsOptions, run: LayerRun, prefetch: DemPrefetch | None = None) -> PointHeights:
    """Heights of every footprint of ``table`` from the points; adds the attribute columns
    ``h_ground``, ``h_roof_<p>`` and ``n_points`` to ``table`` (NaN where unknown).

    Raises
    ------
    CimInputError, CimCRSError, CimIOError
        As :func:`~cim.sources.pointcloud.heights.footprint_heights`; ``ground_from = "dem"``
        without a ``dem``.
    """
    sources, crs = point_sources(opts, run)
    where = f"layer {run.id}"
    from_dem = opts.ground_from == "dem"
    if from_dem and opts.dem is None:
        raise CimInputError(f"{where}: ground_from = 'dem' needs the dem option")
    files = expand_sources(sources)
    run.progress("heights", 0, len(files))
    found: FootprintHeights = footprint_heights(
        table.geometries,
        table.crs,
        files,
        crs=crs,
        roof_percentiles=opts.roof_percentiles,
        ground_percentile=opts.ground_percentile,
        buffer=opts.ground_buffer,
        need_ground=not from_dem,
        memory=opts.heights_memory,
        progress=lambda done, total: run.progress("heights", done, total),
        where=where,
    )
    n = len(table)
    # fewer than min_points points tell nothing: their percentiles are left null
    roofs = np.where((found.n_roof >= opts.min_points)[:, None], found.roof, np.nan)
    ground = _dem_ground(table, opts, prefetch) if from_dem else np.where(found.n_ground >= opts.min_points, found.ground, np.nan)
    heights = roofs[:, list(opts.roof_percentiles).index(opts.roof_height_percentile)] - ground
    fallback = ~(heights > 0)  # also NaN: too few points, or off the DEM
    heights[fallback] = opts.default_height
    notes: list[tuple[type[CimWarning], str]] = []
    if fallback.any():
        ids = ", ".join(map(str, table.ids[fallback][:10]))
        ground_rule = "" if from_dem else f" or ground points within {opts.ground_buffer:g} m"
        used = f"used the default {opts.default_height} m" if opts.heights_fallback == "default" else "used their attributes"
        notes.append(
            (
                DefaultValueWarning,
                f"{int(fallback.sum())} of {n} building(s) have fewer than {opts.min_points} roof points{ground_rule} "
                f"(or a roof not above the ground); {used} ({ids}{', ...' if fallback.sum() > 10 else ''})",
            )
        )
    _add_column(table, "h_ground", ground, FLOAT64)
    for j, p in enumerate(opts.roof_percentiles):
        _add_column(table, roof_attribute(p), roofs[:, j], FLOAT64)
    _add_column(table, "n_points", found.n_roof, INT32)
    base = None
    if opts.dem is None:
        base = ground.copy()
        known = np.isfinite(base)
        base[~known] = float(np.median(base[known])) if known.any() else 0.0
    return PointHeights(heights, base, fallback, notes, [file_fingerprint(f) for f in files])


def _add_column(table: FootprintTable, name: str, values: np.ndarray, kind: str) -> None:
    table.columns[name] = values.astype(np.int64) if kind == INT32 else np.asarray(values, dtype=np.float64)
    table.types[name] = kind


def _dem_ground(table: FootprintTable, opts: BuildingsOptions, prefetch: DemPrefetch | None) -> np.ndarray:
    """Each footprint's lowest DEM height at its corners (the base the layer stands it on,
    before any terrain error offset); NaN off the DEM."""
    assert opts.dem is not None
    dem = prefetch.window(table.bounds, table.crs) if prefetch is not None else read_dem_window(opts.dem, table.bounds, table.crs)
    coords, ring_offsets, poly_offsets, part_feature = footprint_rings(table.geometries)
    starts = ring_offsets[poly_offsets[np.searchsorted(part_feature, np.arange(len(table)))]]
    z = dem.sample(coords[:, 0], coords[:, 1], table.crs)
    with np.errstate(invalid="ignore"):
        return np.fmin.reduceat(z, starts)


def point_links(geometries: np.ndarray, footprint_crs: CRS, run: LayerRun) -> dict[str, np.ndarray] | None:
    """Each building's link to the city's lidar: the building-class (6) points of the point-cloud
    layers built before this one that its footprint covers (the rule of
    :mod:`cim.kernels.footprint_points`), counted, and their height percentiles
    :data:`LINK_PERCENTILES`, in one streaming pass over the building points those layers kept
    while they read their files (:mod:`cim.sources.pointcloud.kept`; removed once read), else,
    when none were kept or the files changed since, over the files themselves: the same result.
    ``geometries``: (n,) footprints in ``footprint_crs``.

    Returns the columns ``n_points`` and ``h_roof_<p>`` (NaN for a building without points) for
    the search index, or None when the city has no point-cloud layer, or its points cannot be
    matched to the footprints (no building class, no overlap: a warning says so; the layer
    builds on without the link).
    """
    from cim.errors import CimCRSError, CimIOError

    layers = run.city.results("pointcloud")
    if not layers or not len(geometries):
        return None
    files: list[Path] = []
    for layer in layers:
        files += expand_sources(layer.sources)
    crs = next((layer.crs for layer in layers if layer.crs), None) or run.crs(None)
    names = ", ".join(layer.id for layer in layers)
    # the building points the point-cloud layers kept while they read the files, when they
    # are those of the files as they are now (else the files are read again: same result)
    folders = [layer.path / KEPT_DIR for layer in layers]
    try:
        counts = [open_pointcloud(f, crs).count for f in files]
        kept = kept_parts(folders, files, counts)
    except (CimInputError, CimCRSError, CimIOError):
        kept = None  # footprint_heights says what is wrong with the files
    link = partial(
        footprint_heights,
        geometries,
        footprint_crs,
        files,
        crs=crs,
        roof_percentiles=LINK_PERCENTILES,
        need_ground=False,
        progress=lambda done, total: run.progress("points link", done, total),
        where=f"layer {run.id}",
    )
    try:
        try:
            found = link(kept=kept)
        except ValueError:  # a kept part damaged since it was written
            if kept is None:
                raise
            found = link()
    except (CimInputError, CimCRSError, CimIOError) as exc:
        run.warn(PointsLinkWarning, f"no link to the points of {names}: {exc}")
        return None
    finally:
        for folder in folders:
            drop_kept(folder)
    columns = {"n_points": found.n_roof.astype(np.int64)}
    for j, p in enumerate(LINK_PERCENTILES):
        columns[roof_attribute(p)] = np.where(found.n_roof > 0, found.roof[:, j], np.nan)
    return columns
