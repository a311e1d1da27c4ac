"""Texture atlases for simplified meshes: lay every triangle out in its own cell, then bake the
colours of a finer textured mesh into it.

A simplified mesh no longer matches its source's UV charts (edge collapses cross chart seams,
and merged tiles bring several textures), so a parent tile gets a new texture instead: each
triangle is laid flat in a cell of the atlas at one texel size (its longest edge along the
cell's top, its shape kept: no distortion), cells are packed on shelves, and a margin of two
texels around each triangle is filled with the colours just beyond its edges (its plane
extended), so bilinear filtering and the finest mipmaps do not bleed one cell into the next.

Baking: every texel centre is mapped to its 3D point on the simplified triangle, the nearest
point on the finer mesh is found (:class:`cim.kernels.simplify.TriangleLocator`), and that
point's texture coordinates sample the finer texture bilinearly. Colours are averaged in linear
light (sRGB decoded first, encoded again at the end), as glTF defines base colour textures as
sRGB-encoded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cim.kernels.color import linear_to_srgb, srgb_to_linear

__all__ = ["AtlasLayout", "atlas_layout", "bake_atlas", "sample_bilinear", "downsample_linear", "texel_size"]

#: texels around each triangle in its cell: lossy encoders subsample colour 2 × 2 (WebP, JPEG),
#: so one texel would let a neighbouring cell bleed in
MARGIN = 2.0

_SRGB_TO_LINEAR = srgb_to_linear(np.arange(256) / 255.0).astype(np.float32)


@dataclass
class AtlasLayout:
    """Where each triangle is in the atlas.

    Attributes
    ----------
    width, height : the atlas's size in texels (powers of two)
    uv : (t, 3, 2) float32, glTF texture coordinates of each triangle's corners (origin top left)
    cell : (t, 2) int64, each cell's top-left texel (column, row)
    size : (t, 2) int64, each cell's width and height in texels
    flat : (t, 3, 2) float64, the corners in texels within the cell
    texel : metres a texel
    """

    width: int
    height: int
    uv: np.ndarray
    cell: np.ndarray
    size: np.ndarray
    flat: np.ndarray
    texel: float


def _flatten(corners: np.ndarray) -> np.ndarray:
    """Each triangle in 2D, shape kept: (t, 3, 2) with its longest edge from (0, 0) along +x.

    The corners' order (winding) is kept: the corner rows say where each input corner went.
    """
    t = len(corners)
    edges = np.linalg.norm(corners - np.roll(corners, -1, axis=1), axis=2)  # edge k: corner k → k+1
    k = np.argmax(edges, axis=1)
    rows = np.arange(t)
    a, b, c = corners[rows, k], corners[rows, (k + 1) % 3], corners[rows, (k + 2) % 3]
    ab = b - a
    length = np.linalg.norm(ab, axis=1)
    unit = ab / np.where(length > 0, length, 1.0)[:, None]
    x = np.einsum("ij,ij->i", c - a, unit)
    h = np.linalg.norm((c - a) - x[:, None] * unit, axis=1)
    flat = np.zeros((t, 3, 2))
    flat[rows, (k + 1) % 3, 0] = length
    flat[rows, (k + 2) % 3] = np.column_stack([x, h])
    return flat


def _pow2(n: float) -> int:
    return int(2 ** np.ceil(np.log2(max(n, 1.0))))


def _shelves(widths: np.ndarray, heights: np.ndarray, width: int) -> tuple[np.ndarray, int]:
    """Shelf packing: cells (tallest first, then widest, then in input order) left to right in
    rows of ``width`` texels. Returns each cell's (column, row) and the rows used."""
    n = len(widths)
    order = np.lexsort((np.arange(n), -widths, -heights))
    wo, ho = widths[order], heights[order]
    at = np.zeros((n, 2), dtype=np.int64)
    pos = top = 0
    per = max(1, width // max(int(wo.min()), 1))
    while pos < n:
        cum = np.cumsum(wo[pos : pos + per])
        k = max(int(np.searchsorted(cum, width, side="right")), 1)
        at[order[pos : pos + k], 0] = cum[:k] - wo[pos : pos + k]
        at[order[pos : pos + k], 1] = top
        top += int(ho[pos])
        pos += k
    return at, top


def atlas_layout(corners: np.ndarray, texel: float, max_size: int = 2048) -> AtlasLayout:
    """Cells for triangles at ``texel`` metres a texel, coarsened (by a quarter at a time)
    until the atlas fits in ``max_size`` × ``max_size``.

    Each triangle's cell is the box of its flattened shape plus a margin; cells are packed on
    shelves (a long thin triangle takes a long thin cell, not a square one).

    Parameters
    ----------
    corners : (t, 3, 3) float, each triangle's corners in metres
    texel : the texel size wanted, metres
    """
    corners = np.asarray(corners, dtype=np.float64)
    flat_m = _flatten(corners)
    w_m, h_m = flat_m[:, :, 0].max(axis=1), flat_m[:, :, 1].max(axis=1)
    texel = max(float(texel), 1e-6)
    while True:
        cw = np.maximum(np.ceil(w_m / texel + 2.0 * MARGIN), 3).astype(np.int64)
        ch = np.maximum(np.ceil(h_m / texel + 2.0 * MARGIN), 3).astype(np.int64)
        area = float((cw * ch).sum())
        if cw.max() <= max_size and area <= max_size * max_size:
            width = min(_pow2(max(np.sqrt(area * 1.1), float(cw.max()))), max_size)
            cell, used = _shelves(cw, ch, width)
            if used <= max_size:
                break
        texel *= 1.25
    height = _pow2(used)
    flat = flat_m / texel + MARGIN
    texels = cell[:, None, :] + flat
    uv = (texels / np.array([width, height], dtype=np.float64)).astype(np.float32)
    return AtlasLayout(width, height, uv, cell, np.column_stack([cw, ch]), flat, texel)


def sample_bilinear(linear: np.ndarray, uv: np.ndarray, wrap: bool = True) -> np.ndarray:
    """Sample an image at glTF texture coordinates.

    Parameters
    ----------
    linear : (h, w, 3) float32, linear colours
    uv : (p, 2) float, texture coordinates (origin top left); wrapped (REPEAT) or clamped

    Returns
    -------
    (p, 3) float32
    """
    h, w = linear.shape[:2]
    u, v = uv[:, 0], uv[:, 1]
    if wrap:  # REPEAT, except on [0, 1] itself: a coordinate of exactly 1 is the far edge, not 0
        u = np.where((u < 0.0) | (u > 1.0), u - np.floor(u), u)
        v = np.where((v < 0.0) | (v > 1.0), v - np.floor(v), v)
    x = np.clip(u * w - 0.5, 0.0, w - 1.0)
    y = np.clip(v * h - 0.5, 0.0, h - 1.0)
    x0 = np.minimum(np.floor(x).astype(np.int64), w - 2 if w > 1 else 0)
    y0 = np.minimum(np.floor(y).astype(np.int64), h - 2 if h > 1 else 0)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx = (x - x0).astype(np.float32)[:, None]
    fy = (y - y0).astype(np.float32)[:, None]
    top = linear[y0, x0] * (1 - fx) + linear[y0, x1] * fx
    bottom = linear[y1, x0] * (1 - fx) + linear[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def to_linear(image: np.ndarray) -> np.ndarray:
    """(h, w, 3+) uint8 sRGB → (h, w, 3) float32 linear."""
    return _SRGB_TO_LINEAR[np.asarray(image)[..., :3]]


def to_srgb8(linear: np.ndarray) -> np.ndarray:
    """(..., 3) linear → uint8 sRGB, rounded."""
    return np.clip(np.round(linear_to_srgb(np.clip(linear, 0.0, 1.0)) * 255.0), 0, 255).astype(np.uint8)


def downsample_linear(image: np.ndarray, max_size: int) -> np.ndarray:
    """Halve an sRGB (h, w, 3) uint8 image by 2×2 averaging in linear light until both sides are
    at most ``max_size`` (an odd side loses its last row or column)."""
    img = np.asarray(image)[..., :3]
    if max(img.shape[:2]) <= max_size:
        return img
    lin = to_linear(img)
    while max(lin.shape[:2]) > max_size:
        h, w = lin.shape[0] // 2, lin.shape[1] // 2
        lin = lin[: 2 * h, : 2 * w].reshape(h, 2, w, 2, 3).mean(axis=(1, 3))
    return to_srgb8(lin)


def texel_size(corners: np.ndarray, uv: np.ndarray, image_sizes: np.ndarray) -> float:
    """The texel size of a textured mesh, metres: sqrt(3D area / texture area in texels) over
    all its textured triangles.

    Parameters
    ----------
    corners : (t, 3, 3) float, metres
    uv : (t, 3, 2) float, texture coordinates
    image_sizes : (t, 2) int, the (width, height) of each triangle's texture
    """
    area3 = 0.5 * np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
    px = uv * image_sizes[:, None, :]
    d1, d2 = px[:, 1] - px[:, 0], px[:, 2] - px[:, 0]
    area2 = 0.5 * np.abs(d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0])
    total = float(area2.sum())
    return float(np.sqrt(area3.sum() / total)) if total > 0 else 0.0


def bake_atlas(
    layout: AtlasLayout,
    corners: np.ndarray,
    locate: object,
    source_uv: np.ndarray,
    source_material: np.ndarray,
    images: list[np.ndarray | None],
    colours: np.ndarray,
    chunk: int = 262_144,
) -> np.ndarray:
    """Bake a finer mesh's colours into an atlas (see the module notes).

    Parameters
    ----------
    layout : the simplified triangles' cells (:func:`atlas_layout`)
    corners : (t, 3, 3) float, the simplified triangles' corners
    locate : a :class:`cim.kernels.simplify.TriangleLocator` over the finer mesh
    source_uv : (s, 3, 2) float, the finer triangles' texture coordinates (glTF convention)
    source_material : (s,) int, each finer triangle's material
    images : per material, (h, w, 3) float32 linear texture, or None
    colours : (materials, 3) float linear colour of each material (multiplies its texture)

    Returns
    -------
    (height, width, 3) uint8 sRGB atlas.
    """
    out = np.zeros((layout.height, layout.width, 3), dtype=np.float32)
    corners = np.asarray(corners, dtype=np.float64)
    owner = np.full((layout.height, layout.width), -1, dtype=np.int64)
    for k, ((x0, y0), (w, h)) in enumerate(zip(layout.cell.tolist(), layout.size.tolist())):
        owner[y0 : y0 + h, x0 : x0 + w] = k
    rows, cols = np.nonzero(owner >= 0)
    done = np.zeros(owner.shape, dtype=bool)
    for s in range(0, len(rows), chunk):
        r, c = rows[s : s + chunk], cols[s : s + chunk]
        t = owner[r, c]
        flat = layout.flat[t]  # (n, 3, 2)
        # barycentric of each texel centre in its triangle's flat layout: outside the triangle
        # (the margin) they extend it in its plane, and the nearest point of the finer surface
        # there gives the colour just beyond its edge
        a, v0, v1 = flat[:, 0], flat[:, 1] - flat[:, 0], flat[:, 2] - flat[:, 0]
        rel = np.column_stack([c - layout.cell[t, 0] + 0.5, r - layout.cell[t, 1] + 0.5]) - a
        d = v0[:, 0] * v1[:, 1] - v0[:, 1] * v1[:, 0]
        flat_ok = np.abs(d) > 1e-9
        d = np.where(flat_ok, d, 1.0)
        wb = np.where(flat_ok, (rel[:, 0] * v1[:, 1] - rel[:, 1] * v1[:, 0]) / d, 1.0 / 3.0)
        wc = np.where(flat_ok, (v0[:, 0] * rel[:, 1] - v0[:, 1] * rel[:, 0]) / d, 1.0 / 3.0)
        bary = np.column_stack([1.0 - wb - wc, wb, wc])
        # texels farther outside the triangle than its margin are never sampled: left out
        # (searching the finer surface from far off its plane costs the most)
        lengths = np.linalg.norm(flat[:, [2, 0, 1]] - flat[:, [1, 2, 0]], axis=2)  # edge opposite each corner
        heights = np.abs(d)[:, None] / np.maximum(lengths, 1e-12)
        near = (np.max(-bary * heights, axis=1) <= MARGIN + 0.75) | ~flat_ok
        r, c, t, bary = r[near], c[near], t[near], bary[near]
        points = np.einsum("pk,pkd->pd", bary, corners[t])
        tri, w, _ = locate.nearest(points, exact=False)  # type: ignore[attr-defined]
        uv = np.einsum("pk,pkd->pd", w, source_uv[tri])
        mat = source_material[tri]
        colour = np.empty((len(points), 3), dtype=np.float32)
        for m in np.unique(mat):
            sel = mat == m
            img = images[int(m)]
            tint = np.asarray(colours[int(m)], dtype=np.float32)
            colour[sel] = tint if img is None else sample_bilinear(img, uv[sel]) * tint
        out[r, c] = colour
        done[r, c] = True
    if done.any() and not done.all():  # the unused rest: the mean, for the coarse mipmaps
        out[~done] = out[done].mean(axis=0)
    return to_srgb8(out)
