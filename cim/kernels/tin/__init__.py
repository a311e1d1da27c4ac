"""Error-bounded triangulated irregular networks (TINs) from height grids.

Two steps, both compiled with numba (sequential loops that numpy cannot vectorise; ``nogil``, so
tiles mesh in parallel threads). Almost all of the time goes to scanning triangles for their worst
sample (about 2 ns a sample): a tile of the sample city's level 17 (8–11 vertices) costs 60–100 µs,
some eight scans of its 4,225 samples. (Measured there: work arrays allocated once a batch, not
once a tile, -20 µs a tile; the triangle's row bounds by float division instead of three int64
divisions a row, and one pass a row instead of a max then a search, -40 %; the removal step
keeping each triangle's error instead of scanning the final TIN again, -10 %.)

1. greedy insertion (:mod:`cim.kernels.tin.insert`; Garland & Heckbert 1995, the method of
   Delatin/pydelatin): insert the worst sample until every sample is within the bound;
2. removal of redundant vertices (:mod:`cim.kernels.tin.decimate`): take out each vertex whose
   removal keeps the bound. Measured on 65 × 65 and 257 × 257 windows of the sample city's DEM
   and of the Lyon DEM at the same error: 10–25 % fewer vertices than pydelatin.

Both steps share :mod:`cim.kernels.tin.primitives` (exact predicates, the half-edge link, the
scan of a triangle for its worst sample); :mod:`cim.kernels.tin.bounded` runs them over windows.

The error is the largest vertical distance between the TIN and a grid sample, measured at every
sample (where the grid is defined). Coordinates are grid indices ``(x = column, y = row)``;
triangles are counter-clockwise in that frame, so a grid whose row index grows northwards gives
counter-clockwise triangles seen from above. Many tiles of one grid mesh in one call
(:func:`error_bounded_tins`), which keeps per-tile interpreter overhead out of the loop.
"""

from cim.kernels.tin.bounded import REMOVAL_PASSES, error_bounded_tin, error_bounded_tins, tin_error

__all__ = ["REMOVAL_PASSES", "error_bounded_tin", "error_bounded_tins", "tin_error"]
