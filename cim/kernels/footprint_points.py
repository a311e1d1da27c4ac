"""Points against building footprints: which footprint covers a point, which footprints' ground
ring a point lies in, and exact per-footprint percentiles of the heights so selected.

Footprints are ragged arrays (:func:`cim.sources.footprints.footprint_rings`: one coordinate
array, ring offsets, polygon offsets, each polygon's feature). A :class:`FootprintGrid` buckets
every footprint's bounding box, grown by the ground ring's width, into square cells (a CSR
table: cell → footprints); :func:`assign_points` then looks each point up in its one cell and
tests only the footprints listed there, with exact predicates, in one compiled loop over all
points and footprints at once.

The rules (checked against shapely in the tests):

- a footprint is a **closed** set: a point inside it or on its boundary (an edge or a vertex)
  belongs to it, as ``shapely.covers`` says; a point on an edge two footprints share belongs
  to both. Inside is the even-odd rule over every ring of the feature (exteriors, holes and the
  parts of a multipolygon, which are disjoint in a valid footprint);
- a ground point lies in a footprint's **ground ring** when it is not covered by the footprint
  and lies within ``buffer`` of it (``shapely.dwithin(fp, p, buffer) & ~shapely.covers(fp, p)``);
  a courtyard (a hole) is ground of the building around it.

Heights are reduced by sorting one ``uint64`` key a point: the footprint in the high 32 bits,
the height (float32, relative to a reference) in an order-preserving 32-bit code below it, so one
sort orders by footprint and then by height; :func:`group_percentiles` reads numpy's default
("linear") percentiles off the sorted runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from cim.kernels import JitOptions

__all__ = [
    "class_records",
    "select_points",
    "FootprintGrid",
    "feature_rings",
    "assign_points",
    "height_keys",
    "decode_keys",
    "group_percentiles",
]

JIT: JitOptions = {"nogil": True, "cache": True}

#: a footprint is at most this many cells of the grid across (grown boxes of very large
#: footprints are listed in every cell they cover; the cell size keeps that bounded)
_MAX_CELLS = 1 << 22


def feature_rings(ring_offsets: np.ndarray, polygon_offsets: np.ndarray, polygon_feature: np.ndarray, n: int) -> np.ndarray:
    """Each feature's first ring: ``(n + 1,) int64``, feature ``f`` owns rings ``[r[f], r[f+1])``.

    Parameters
    ----------
    ring_offsets, polygon_offsets, polygon_feature : as :func:`~cim.sources.footprints.footprint_rings`
        returns them (``polygon_feature`` non-decreasing)
    n : the number of features
    """
    first_poly = np.searchsorted(polygon_feature, np.arange(n + 1), side="left")
    return np.asarray(polygon_offsets[first_poly], dtype=np.int64)


@dataclass(frozen=True)
class FootprintGrid:
    """A bucket index of footprint boxes grown by ``buffer``.

    Attributes
    ----------
    x0, y0 : the grid's lower-left corner
    cell : the cell side (same units as the coordinates)
    nx, ny : cells across and up
    start : (nx * ny + 1,) int64, CSR offsets into ``items``
    items : (m,) int32, the footprints listed in each cell (ascending within a cell)
    box : (n, 4) float64, each footprint's own box (xmin, ymin, xmax, ymax), not grown
    buffer : the ground ring's width the boxes were grown by
    """

    x0: float
    y0: float
    cell: float
    nx: int
    ny: int
    start: np.ndarray
    items: np.ndarray
    box: np.ndarray
    buffer: float

    @classmethod
    def build(
        cls, xy: np.ndarray, ring_offsets: np.ndarray, rings_of: np.ndarray, buffer: float, cell: float | None = None
    ) -> FootprintGrid:
        """The grid of footprints given as ragged rings.

        Parameters
        ----------
        xy : (k, 2) float64 ring coordinates
        ring_offsets : (r + 1,) int64
        rings_of : (n + 1,) int64, from :func:`feature_rings`
        buffer : metres (coordinate units) the boxes are grown by; 0 for roofs only
        cell : the cell side; default: twice the median grown box side, at least the extent over
            2048 (so the table stays small)
        """
        n = len(rings_of) - 1
        first = ring_offsets[rings_of[:-1]]
        last = ring_offsets[rings_of[1:]]
        if n == 0 or len(xy) == 0:
            raise ValueError("no footprints")
        box = np.empty((n, 4))
        box[:, 0] = np.minimum.reduceat(xy[:, 0], first)
        box[:, 1] = np.minimum.reduceat(xy[:, 1], first)
        box[:, 2] = np.maximum.reduceat(xy[:, 0], first)
        box[:, 3] = np.maximum.reduceat(xy[:, 1], first)
        assert np.all(last > first)
        x0, y0 = float(box[:, 0].min() - buffer), float(box[:, 1].min() - buffer)
        x1, y1 = float(box[:, 2].max() + buffer), float(box[:, 3].max() + buffer)
        extent = max(x1 - x0, y1 - y0, 1e-9)
        if cell is None:
            side = np.maximum(box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]) + 2 * buffer
            cell = max(2.0 * float(np.median(side)), extent / 2048.0)
        cell = max(float(cell), extent / np.sqrt(_MAX_CELLS))
        nx = int(np.floor((x1 - x0) / cell)) + 1
        ny = int(np.floor((y1 - y0) / cell)) + 1
        cx0 = np.clip(np.floor((box[:, 0] - buffer - x0) / cell).astype(np.int64), 0, nx - 1)
        cy0 = np.clip(np.floor((box[:, 1] - buffer - y0) / cell).astype(np.int64), 0, ny - 1)
        cx1 = np.clip(np.floor((box[:, 2] + buffer - x0) / cell).astype(np.int64), 0, nx - 1)
        cy1 = np.clip(np.floor((box[:, 3] + buffer - y0) / cell).astype(np.int64), 0, ny - 1)
        w, h = cx1 - cx0 + 1, cy1 - cy0 + 1
        count = w * h
        feature = np.repeat(np.arange(n, dtype=np.int64), count)
        k = np.arange(len(feature)) - np.repeat(np.cumsum(count) - count, count)  # index within a feature's cells
        wf = np.repeat(w, count)
        cells = (np.repeat(cy0, count) + k // wf) * nx + np.repeat(cx0, count) + k % wf
        order = np.lexsort((feature, cells))  # by cell, then footprint: deterministic
        start = np.zeros(nx * ny + 1, dtype=np.int64)
        np.cumsum(np.bincount(cells, minlength=nx * ny), out=start[1:])
        return cls(x0, y0, cell, nx, ny, start, feature[order].astype(np.int32), box, float(buffer))


@njit(**JIT)
def _covers(px, py, xy, ring_offsets, r0, r1):  # pragma: no cover - compiled
    """0 outside, 1 inside, 2 on the boundary of the feature with rings [r0, r1)."""
    inside = False
    for r in range(r0, r1):
        for i in range(ring_offsets[r], ring_offsets[r + 1] - 1):
            ax, ay = xy[i, 0], xy[i, 1]
            bx, by = xy[i + 1, 0], xy[i + 1, 1]
            cross = (bx - ax) * (py - ay) - (by - ay) * (px - ax)
            if cross == 0.0 and min(ax, bx) <= px <= max(ax, bx) and min(ay, by) <= py <= max(ay, by):
                return 2
            # an edge counts when it straddles the point's horizontal line (half-open in y) and
            # crosses it right of the point: the point is left of the edge taken upward
            if (ay <= py) != (by <= py) and (cross > 0.0) == (by > ay):
                inside = not inside
    return 1 if inside else 0


@njit(**JIT)
def _within(px, py, xy, ring_offsets, r0, r1, d2):  # pragma: no cover - compiled
    """Whether a point lies within sqrt(d2) of a ring of the feature with rings [r0, r1)."""
    for r in range(r0, r1):
        for i in range(ring_offsets[r], ring_offsets[r + 1] - 1):
            ax, ay = xy[i, 0], xy[i, 1]
            ex, ey = xy[i + 1, 0] - ax, xy[i + 1, 1] - ay
            qx, qy = px - ax, py - ay
            ll = ex * ex + ey * ey
            t = 0.0
            if ll > 0.0:
                t = min(1.0, max(0.0, (qx * ex + qy * ey) / ll))
            dx, dy = qx - t * ex, qy - t * ey
            if dx * dx + dy * dy <= d2:
                return True
    return False


@njit(**JIT)
def _assign(
    x,
    y,
    kind,
    x0,
    y0,
    cell,
    nx,
    ny,
    start,
    items,
    box,
    buffer,
    xy,
    ring_offsets,
    rings_of,
    roof_point,
    roof_feature,
    ground_point,
    ground_feature,
):  # pragma: no cover - compiled
    nr = 0
    ng = 0
    cap_r = len(roof_point)
    cap_g = len(ground_point)
    d2 = buffer * buffer
    inv = 1.0 / cell
    for p in range(len(x)):
        k = kind[p]
        if k == 0:
            continue
        px, py = x[p], y[p]
        fx = (px - x0) * inv
        fy = (py - y0) * inv
        if not (fx >= 0.0 and fy >= 0.0):  # also NaN
            continue
        cx, cy = int(fx), int(fy)
        if cx >= nx or cy >= ny:
            continue
        c = cy * nx + cx
        for j in range(start[c], start[c + 1]):
            f = items[j]
            if k == 1:  # roof: covered by the footprint
                if px < box[f, 0] or px > box[f, 2] or py < box[f, 1] or py > box[f, 3]:
                    continue
                if _covers(px, py, xy, ring_offsets, rings_of[f], rings_of[f + 1]) > 0:
                    if nr < cap_r:
                        roof_point[nr] = p
                        roof_feature[nr] = f
                    nr += 1
            else:  # ground: in the ring around the footprint
                if px < box[f, 0] - buffer or px > box[f, 2] + buffer or py < box[f, 1] - buffer or py > box[f, 3] + buffer:
                    continue
                r0, r1 = rings_of[f], rings_of[f + 1]
                if _within(px, py, xy, ring_offsets, r0, r1, d2) and _covers(px, py, xy, ring_offsets, r0, r1) == 0:
                    if ng < cap_g:
                        ground_point[ng] = p
                        ground_feature[ng] = f
                    ng += 1
    return nr, ng


def assign_points(
    grid: FootprintGrid,
    xy: np.ndarray,
    ring_offsets: np.ndarray,
    rings_of: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    kind: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pair points with the footprints they belong to.

    Parameters
    ----------
    grid : the footprints' :class:`FootprintGrid` (its ``buffer`` is the ground ring's width)
    xy, ring_offsets, rings_of : the footprints' rings (see :func:`feature_rings`)
    x, y : (n,) float64 point coordinates, in the footprints' CRS
    kind : (n,) uint8: 0 ignore, 1 roof (matched to footprints covering it), 2 ground (matched to
        footprints whose ground ring holds it)

    Returns
    -------
    roof_point, roof_feature : (a,) int64 and int32, one pair for every (roof point, footprint
        covering it), in point order
    ground_point, ground_feature : (b,) the same for ground points in a footprint's ring
    """
    n = len(x)
    cap_r, cap_g = n, 2 * n + 16
    while True:
        rp = np.empty(cap_r, dtype=np.int64)
        rf = np.empty(cap_r, dtype=np.int32)
        gp = np.empty(cap_g, dtype=np.int64)
        gf = np.empty(cap_g, dtype=np.int32)
        nr, ng = _assign(
            np.ascontiguousarray(x, dtype=np.float64),
            np.ascontiguousarray(y, dtype=np.float64),
            np.ascontiguousarray(kind, dtype=np.uint8),
            grid.x0,
            grid.y0,
            grid.cell,
            grid.nx,
            grid.ny,
            grid.start,
            grid.items,
            grid.box,
            grid.buffer,
            xy,
            ring_offsets,
            rings_of,
            rp,
            rf,
            gp,
            gf,
        )
        if nr <= cap_r and ng <= cap_g:
            return rp[:nr], rf[:nr], gp[:ng], gf[:ng]
        cap_r, cap_g = max(cap_r, nr), max(cap_g, ng)  # rare: points shared by many footprints


@njit(**JIT)
def _select(
    X, Y, Z, cls_raw, cls_mask, roof_class, ground_class, scales, offsets, z_factor, box, classes, x, y, z, kind
):  # pragma: no cover
    k = 0
    for i in range(len(X)):
        c = cls_raw[i] & cls_mask
        classes[c] += 1
        if c == roof_class:
            t = 1
        elif c == ground_class:
            t = 2
        else:
            continue
        px = X[i] * scales[0] + offsets[0]
        py = Y[i] * scales[1] + offsets[1]
        if px < box[0] or px > box[2] or py < box[1] or py > box[3]:
            continue
        x[k] = px
        y[k] = py
        z[k] = (Z[i] * scales[2] + offsets[2]) * z_factor
        kind[k] = t
        k += 1
    return k


def select_points(
    X: np.ndarray,
    Y: np.ndarray,
    Z: np.ndarray,
    cls_raw: np.ndarray,
    cls_mask: int,
    scales: tuple[float, float, float],
    offsets: tuple[float, float, float],
    z_factor: float,
    box: tuple[float, float, float, float],
    classes: np.ndarray,
    roof_class: int = 6,
    ground_class: int | None = 2,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The roof and ground points of a batch of raw LAS records that lie in ``box``, scaled, in
    one pass (counting every point's class into ``classes``).

    Parameters
    ----------
    X, Y, Z : (n,) int32 raw coordinates (views into the records are fine)
    cls_raw : (n,) uint8 raw classification byte; ``cls_mask`` selects the class bits
    scales, offsets : the LAS header's; ``z_factor`` turns z into metres
    box : (xmin, ymin, xmax, ymax) of the points kept (infinite: keep all)
    classes : (256,) int64, incremented in place
    roof_class, ground_class : the classes kept (kind 1 and 2); ``ground_class`` None: roofs only

    Returns
    -------
    x, y, z : (m,) float64, new arrays
    kind : (m,) uint8, 1 roof, 2 ground
    """
    n = len(X)
    x, y, z = np.empty(n), np.empty(n), np.empty(n)
    kind = np.empty(n, dtype=np.uint8)
    m = _select(
        X,
        Y,
        Z,
        cls_raw,
        np.uint8(cls_mask),
        roof_class,
        -1 if ground_class is None else ground_class,
        np.asarray(scales, dtype=np.float64),
        np.asarray(offsets, dtype=np.float64),
        float(z_factor),
        np.asarray(box, dtype=np.float64),
        classes,
        x,
        y,
        z,
        kind,
    )
    return x[:m].copy(), y[:m].copy(), z[:m].copy(), kind[:m].copy()


@njit(**JIT)
def _class_records(X, Y, Z, cls_raw, cls_mask, wanted, out):  # pragma: no cover - compiled
    n = len(X)
    k = 0
    for i in range(n):
        if cls_raw[i] & cls_mask == wanted:
            out[k] = X[i]
            out[n + k] = Y[i]
            out[2 * n + k] = Z[i]
            k += 1
    return k


def class_records(X: np.ndarray, Y: np.ndarray, Z: np.ndarray, cls_raw: np.ndarray, cls_mask: int, wanted: int) -> np.ndarray:
    """The raw coordinates of the records of one class, in their order, as one block
    ``X[:m], Y[:m], Z[:m]`` (``(3 m,) int32``), in one pass over the records.

    Parameters
    ----------
    X, Y, Z : (n,) int32 raw coordinates (views into the records are fine)
    cls_raw : (n,) uint8 raw classification byte; ``cls_mask`` selects the class bits
    wanted : the class kept
    """
    n = len(X)
    out = np.empty(3 * n, dtype=np.int32)
    m = _class_records(X, Y, Z, cls_raw, np.uint8(cls_mask), np.uint8(wanted), out)
    return np.concatenate([out[:m], out[n : n + m], out[2 * n : 2 * n + m]])


def height_keys(feature: np.ndarray, z: np.ndarray, z_ref: float) -> np.ndarray:
    """Sort keys ``(feature << 32) | code(float32(z - z_ref))``: sorting them orders by feature,
    then by height.

    The height is rounded to float32 once: its error is at most ``2**-24 * |z - z_ref|``
    (round to nearest), 0.06 mm for heights within 1,000 m of ``z_ref``; a percentile (a sort and
    a convex combination of two values) moves by no more than that.

    Parameters
    ----------
    feature : (n,) non-negative integers below 2**32
    z : (n,) float64 heights
    z_ref : the reference height
    """
    bits = (np.asarray(z, dtype=np.float64) - z_ref).astype(np.float32).view(np.uint32)
    # order-preserving code of an IEEE float: flip all bits of negatives, the sign bit of the rest
    code = np.where(bits & np.uint32(0x80000000), ~bits, bits | np.uint32(0x80000000))
    return (np.asarray(feature, dtype=np.uint64) << np.uint64(32)) | code.astype(np.uint64)


def decode_keys(keys: np.ndarray, z_ref: float) -> tuple[np.ndarray, np.ndarray]:
    """The features ``(n,) int64`` and heights ``(n,) float64`` of :func:`height_keys`' keys."""
    code = (keys & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    bits = np.where(code & np.uint32(0x80000000), code & np.uint32(0x7FFFFFFF), ~code)
    z = bits.view(np.float32).astype(np.float64) + z_ref
    return (keys >> np.uint64(32)).astype(np.int64), z


def group_percentiles(feature: np.ndarray, z: np.ndarray, n: int, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Percentiles of each feature's heights, as ``numpy.percentile`` computes them (its default,
    "linear", method), from runs sorted by feature and then height.

    Parameters
    ----------
    feature : (m,) int64, sorted
    z : (m,) float64, sorted within each feature's run
    n : the number of features
    q : (k,) percentiles in [0, 100]

    Returns
    -------
    values : (n, k) float64, NaN for a feature with no heights
    count : (n,) int64, heights a feature
    """
    q = np.asarray(q, dtype=np.float64) / 100.0
    first = np.searchsorted(feature, np.arange(n + 1), side="left")
    count = np.diff(first)
    values = np.full((n, len(q)), np.nan)
    has = count > 0
    if not has.any():
        return values, count
    s, c = first[:-1][has], count[has].astype(np.float64)
    for j, qj in enumerate(q):
        # numpy's virtual index of the "linear" method, and its two-sided interpolation
        pos = (c - 1.0) * qj
        lo = np.floor(pos)
        t = pos - lo
        lo_i = np.clip(lo.astype(np.int64), 0, count[has] - 1)
        hi_i = np.clip(lo_i + 1, 0, count[has] - 1)
        a, b = z[s + lo_i], z[s + hi_i]
        diff = b - a
        v = np.where(t >= 0.5, b - diff * (1.0 - t), a + diff * t)
        values[has, j] = v
    return values, count
