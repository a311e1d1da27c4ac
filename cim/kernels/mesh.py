"""Triangle-mesh kernels for per-element meshes (BIM): normals, material splits, gathers, and
grouping elements under a triangle budget. Pure numpy; shapes and dtypes in each docstring."""

from __future__ import annotations

import numpy as np

__all__ = [
    "unit_vectors",
    "vertex_normals",
    "split_vertices_by_material",
    "range_index",
    "chunk_by_budget",
]


def unit_vectors(v: np.ndarray, fallback: tuple[float, float, float] = (0.0, 0.0, 1.0)) -> np.ndarray:
    """Normalise rows; rows of (near) zero length become ``fallback``.

    Parameters
    ----------
    v : (n, 3) float

    Returns
    -------
    (n, 3) float32, every row of unit length (glTF validators reject anything else).
    """
    v = np.asarray(v, dtype=np.float64)
    length = np.sqrt(np.einsum("ij,ij->i", v, v))
    bad = ~(length > 1e-12)
    out = v / np.where(bad, 1.0, length)[:, None]
    out[bad] = fallback
    return out.astype(np.float32)


def vertex_normals(positions: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals (not normalised: see :func:`unit_vectors`).

    Parameters
    ----------
    positions : (v, 3) float
    triangles : (t, 3) int

    Returns
    -------
    (v, 3) float64; unreferenced vertices get zero.
    """
    p = np.asarray(positions, dtype=np.float64)
    tri = np.asarray(triangles, dtype=np.int64)
    fn = np.cross(p[tri[:, 1]] - p[tri[:, 0]], p[tri[:, 2]] - p[tri[:, 0]])
    out = np.zeros_like(p)
    for k in range(3):
        np.add.at(out, tri[:, k], fn)
    return out


def split_vertices_by_material(
    triangles: np.ndarray, tri_material: np.ndarray, n_vertices: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Give every vertex one material, duplicating vertices shared by triangles of two.

    Parameters
    ----------
    triangles : (t, 3) int, indices into ``n_vertices`` vertices
    tri_material : (t,) int, material of each triangle (>= 0)
    n_vertices : number of vertices

    Returns
    -------
    source : (v',) int64, the original vertex of each new vertex
    new_triangles : (t, 3) uint32, indices into the new vertices
    vertex_material : (v',) int64, the material of each new vertex
    """
    tri = np.asarray(triangles, dtype=np.int64)
    mat = np.asarray(tri_material, dtype=np.int64)
    n_mat = int(mat.max()) + 1 if len(mat) else 1
    key = tri * n_mat + mat[:, None]
    if n_mat == 1:
        # one material: keep the vertices as they are (no unique pass)
        return np.arange(n_vertices, dtype=np.int64), tri.astype(np.uint32), np.zeros(n_vertices, dtype=np.int64)
    uniq, inverse = np.unique(key.ravel(), return_inverse=True)
    return uniq // n_mat, inverse.reshape(-1, 3).astype(np.uint32), uniq % n_mat


def range_index(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(start, start + count)`` for each pair, as one int64 array.

    Parameters
    ----------
    starts, counts : (n,) int
    """
    starts = np.asarray(starts, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.zeros(len(counts), dtype=np.int64)
    np.cumsum(counts[:-1], out=offsets[1:])
    return np.repeat(starts - offsets, counts) + np.arange(total, dtype=np.int64)


def chunk_by_budget(centres: np.ndarray, weights: np.ndarray, budget: float) -> list[np.ndarray]:
    """Split items into spatially compact groups whose weights sum to at most ``budget``.

    A recursive median cut along the longest axis of the group's centres; an item heavier than
    the budget is a group of its own.

    Parameters
    ----------
    centres : (n, k) float, item positions
    weights : (n,) float, e.g. triangle counts
    budget : the most weight a group may carry

    Returns
    -------
    A list of (m,) int64 index arrays into the items, together covering each item once.
    """
    centres = np.asarray(centres, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    out: list[np.ndarray] = []
    stack = [np.arange(len(weights), dtype=np.int64)]
    while stack:
        idx = stack.pop()
        if len(idx) == 0:
            continue
        if len(idx) == 1 or weights[idx].sum() <= budget:
            out.append(np.sort(idx))
            continue
        c = centres[idx]
        axis = int(np.argmax(c.max(axis=0) - c.min(axis=0)))
        order = idx[np.argsort(c[:, axis], kind="stable")]
        # cut where the running weight crosses half, so both halves carry weight
        cum = np.cumsum(weights[order])
        cut = int(np.searchsorted(cum, cum[-1] / 2.0)) + 1
        cut = min(max(cut, 1), len(order) - 1)
        stack += [order[cut:], order[:cut]]
    return out[::-1]
