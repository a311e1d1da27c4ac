"""Point clouds: LAS/LAZ files read in batches, and the source CRS → city ENU transform.

- :mod:`~cim.sources.pointcloud.las` reads headers and CRS (:func:`open_pointcloud`) and point
  batches (:func:`read_batches`) through laspy and lazrs, on threads: lazrs' multi-threaded
  decoder and ``fork()``ed processes can deadlock, so nothing is forked.
- :mod:`~cim.sources.pointcloud.transform` reprojects into the city frame: exact (pyproj,
  :func:`exact_enu`) and fitted (:class:`LocalTransform`, :class:`PiecewiseFit`: piecewise
  quadratics checked against pyproj).
"""

from cim.sources.pointcloud.las import (
    POINTCLOUD_SUFFIXES,
    PointBatch,
    PointCloudSource,
    frame_for,
    header_box_enu,
    list_pointcloud_files,
    open_pointcloud,
    read_batches,
    source_transform,
)
from cim.sources.pointcloud.transform import LocalTransform, PiecewiseFit, exact_enu

__all__ = [
    "POINTCLOUD_SUFFIXES",
    "LocalTransform",
    "PiecewiseFit",
    "PointBatch",
    "PointCloudSource",
    "exact_enu",
    "frame_for",
    "header_box_enu",
    "list_pointcloud_files",
    "open_pointcloud",
    "read_batches",
    "source_transform",
]
