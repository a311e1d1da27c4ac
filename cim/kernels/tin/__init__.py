"""Error-bounded triangulated irregular networks (TINs) from height grids.

Two steps, both compiled with numba (sequential loops that numpy cannot vectorise; ``nogil``, so
tiles mesh in parallel threads). Almost all of the time goes to scanning triangles for their worst
sample, so that scan is kept tight: work arrays allocated once a batch, not once a tile; a
triangle's row bounds by float division, one pass a row; the removal step keeps each triangle's
error rather than scanning the final TIN again (the measured gains: ``benchmarks/README.md``).

1. greedy insertion (:mod:`cim.kernels.tin.insert`; Garland & Heckbert 1995, the method of
   Delatin/pydelatin): insert the worst sample until every sample is within the bound;
2. removal of redundant vertices (:mod:`cim.kernels.tin.decimate`): take out each vertex whose
   removal keeps the bound, so at the same error the TIN has fewer vertices than greedy insertion
   alone (pydelatin) gives.

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
