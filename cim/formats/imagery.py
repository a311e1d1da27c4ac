"""Imagery tile encoders (Pillow): WebP (default, lossy with alpha), PNG, JPEG."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

__all__ = ["FORMATS", "EXTENSIONS", "encode_tile", "decode_tile", "downsample_2x"]

FORMATS = {"webp": "image/webp", "png": "image/png", "jpeg": "image/jpeg"}
EXTENSIONS = {"webp": "webp", "png": "png", "jpeg": "jpg"}


def encode_tile(rgba: np.ndarray, fmt: str = "webp", quality: int = 85) -> bytes:
    """Encode one (h, w, 4) uint8 RGBA tile.

    WebP and PNG keep transparency (no-data); JPEG has none, so transparent pixels turn black:
    choose JPEG only for imagery without holes.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown imagery format {fmt!r}; choose one of {', '.join(FORMATS)}")
    opaque = bool((rgba[..., 3] == 255).all())
    buf = io.BytesIO()
    if fmt == "jpeg" or (opaque and fmt == "webp"):
        img = Image.fromarray(np.ascontiguousarray(rgba[..., :3]), "RGB")
    else:
        img = Image.fromarray(np.ascontiguousarray(rgba), "RGBA")
    if fmt == "webp":
        img.save(buf, "WEBP", quality=quality, method=2)
    elif fmt == "png":
        img.save(buf, "PNG", optimize=False, compress_level=6)
    else:
        img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def decode_tile(data: bytes) -> np.ndarray:
    """Decode a tile to (h, w, 4) uint8 RGBA (for tests and tools)."""
    img = Image.open(io.BytesIO(data))
    return np.asarray(img.convert("RGBA"))


def downsample_2x(rgba: np.ndarray) -> np.ndarray:
    """Halve a (2h, 2w, 4) RGBA image by alpha-weighted 2×2 averaging (no-data does not bleed)."""
    a = rgba[..., 3].astype(np.float32)
    h, w = rgba.shape[0] // 2, rgba.shape[1] // 2
    wsum = a.reshape(h, 2, w, 2).sum(axis=(1, 3))
    out = np.zeros((h, w, 4), dtype=np.uint8)
    for c in range(3):
        weighted = (rgba[..., c].astype(np.float32) * a).reshape(h, 2, w, 2).sum(axis=(1, 3))
        out[..., c] = np.where(wsum > 0, np.round(weighted / np.maximum(wsum, 1e-6)), 0).astype(np.uint8)
    out[..., 3] = np.round(wsum / 4.0).astype(np.uint8)
    return out
