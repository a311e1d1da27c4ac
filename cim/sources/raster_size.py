"""Is a raster as big as it says? The work a header declares, against the bytes behind it.

A 16 KB GeoTIFF can declare 65535 × 65535 cells: GDAL reads the missing blocks as zeros, and a
tiler that trusts the header writes hundreds of thousands of tiles from nothing. Before any work
starts, :func:`check_declared_size` compares the header with the file:

- more cells than ``max_cells`` (an option of the layer; the default is about a 45 km square at
  1 m) is refused, so a typo in a header or a wrong file cannot start a day-long job;
- a file smaller than its uncompressed cells by more than :data:`MAX_RATIO` is refused as damaged
  or lying: no codec GDAL writes comes near that on measured data (DEFLATE cannot exceed about
  1030:1 even on constant input; LZW, JPEG and WebP stay far below; only a constant raster under
  ZSTD or LERC might, and that raster holds nothing worth tiling). Overviews and sidecar files
  are not counted: the check errs on the side of refusing a file that claims too much.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cim.errors import CimInputError

__all__ = ["DEFAULT_MAX_CELLS", "MAX_RATIO", "check_declared_size", "gdal_reason"]

#: cells per band a layer takes by default (44,721² ≈ a 45 km square at 1 m)
DEFAULT_MAX_CELLS = 2_000_000_000
#: uncompressed bytes per byte on disk beyond which a header is not believed
MAX_RATIO = 10_000


def check_declared_size(path: Path, width: int, height: int, bands: int, dtype: str, *, max_cells: int, option: str = "max_cells") -> None:
    """Refuse a raster that declares more than ``max_cells`` cells, or far more than it holds.

    Raises
    ------
    CimInputError
        Naming the file, what it declares and what it holds.
    """
    cells = int(width) * int(height)
    if cells > max_cells:
        raise CimInputError(
            f"{path}: declares {width} × {height} = {cells:,} cells, more than the limit of {max_cells:,} "
            f"(raise the layer's option {option!r} if the raster really is this big)"
        )
    try:
        on_disk = Path(path).stat().st_size
    except OSError:
        return  # a GDAL virtual path (/vsicurl/, a VRT's sources): nothing to weigh here
    declared = cells * int(bands) * np.dtype(dtype).itemsize
    if on_disk * MAX_RATIO < declared:
        raise CimInputError(
            f"{path}: declares {width} × {height} cells ({declared:,} bytes uncompressed) but holds only {on_disk:,} bytes: "
            "the header is damaged or lying (no compression comes near that ratio)"
        )


def gdal_reason(exc: BaseException) -> str:
    """GDAL's own words for a failed read: rasterio raises "Read failed. See previous exception"
    and keeps the reason in the exception's cause."""
    reasons: list[str] = []
    e: BaseException | None = exc
    while e is not None and len(reasons) < 3:
        text = str(e).strip()
        if text and "See previous exception" not in text and text not in reasons:
            reasons.append(text)
        e = e.__cause__ or e.__context__
    return "; ".join(reasons) or type(exc).__name__
