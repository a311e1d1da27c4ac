"""The surface model built strip by strip: the same model, whatever the strips' size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cim.analysis.files import MODEL_DIR, build_model, load_model
from cim.analysis.model import _burn
from cim.kernels.raster import nan_median


def test_a_model_built_in_tiny_strips_is_the_model_built_whole(tiny_sources, tmp_path) -> None:
    """Strips of a few rows (not a divisor of the grid's, DEM read and footprints burnt per
    strip) give every file of ``analysis/`` byte for byte; and the DSM and owners are those of
    the footprints burnt over the whole grid at once (one strip)."""
    whole, strips = tmp_path / "whole", tmp_path / "strips"
    build_model(tiny_sources.recipe, whole)
    model = build_model(tiny_sources.recipe, strips, block_cells=3 * 97)
    rows, cols = model.shape
    assert rows > 20 and cols > 97  # many strips of a few rows each
    names = sorted(p.name for p in (whole / MODEL_DIR).iterdir())
    assert {"dem.npy", "dsm.npy", "owner.npy", "model.json"} <= set(names)
    assert names == sorted(p.name for p in (strips / MODEL_DIR).iterdir())  # no temporary file left
    for name in names:
        assert (whole / MODEL_DIR / name).read_bytes() == (strips / MODEL_DIR / name).read_bytes(), name

    loaded = load_model(whole)
    dem = np.asarray(loaded.dem)
    dsm, owner = _burn(dem, loaded.prisms, loaded.x0, loaded.y0, loaded.res, block_cells=dem.size)
    meshed = np.isin(np.asarray(loaded.owner), loaded.meshed) | np.isin(owner, loaded.meshed)
    assert (owner >= 0).sum() > 1000  # buildings burnt
    # away from the BIM models burnt in after the footprints, the rasters are the whole grid's
    np.testing.assert_array_equal(np.asarray(loaded.owner)[~meshed], owner[~meshed])
    np.testing.assert_array_equal(np.asarray(loaded.dsm)[~meshed], dsm[~meshed])
    # the model returned maps the files it wrote
    np.testing.assert_array_equal(np.asarray(model.dsm), np.asarray(loaded.dsm))
    np.testing.assert_array_equal(np.asarray(model.owner), np.asarray(loaded.owner))


def test_a_rebuild_leaves_the_unchanged_rasters_alone(tiny_sources, tmp_path) -> None:
    """A rebuild replaces no unchanged file, and removes the temporary rasters of a build
    that was killed (its process gone)."""
    build_model(tiny_sources.recipe, tmp_path)
    before = {p.name: p.stat().st_ino for p in (tmp_path / MODEL_DIR).iterdir()}
    dead = next(pid for pid in range(4_000_000, 4_100_000) if not Path(f"/proc/{pid}").exists())
    stale = tmp_path / MODEL_DIR / f".dsm.npy.{dead}.1234.tmp"
    stale.write_bytes(b"torn")
    build_model(tiny_sources.recipe, tmp_path, block_cells=1000)
    after = {p.name: p.stat().st_ino for p in (tmp_path / MODEL_DIR).iterdir()}
    assert after == before  # same files, not replaced; no temporary left


@pytest.mark.parametrize("seed", range(6))
def test_nan_median_is_numpys(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for shape in [(1, 1), (2, 3), (17, 29), (64, 40)]:
        for values in (
            rng.normal(1500.0, 300.0, shape),  # terrain heights
            rng.integers(-3, 4, shape).astype(float),  # ties, negatives, zeros
            rng.normal(0.0, 1e-30, shape),  # tiny values of both signs
            np.full(shape, 7.25),
        ):
            grid = values.astype(np.float32)
            grid[rng.random(shape) < 0.3] = np.nan
            if np.isnan(grid).all():
                assert np.isnan(nan_median(grid))
                continue
            want = float(np.nanmedian(grid))
            assert nan_median(grid, block_cells=int(rng.integers(1, 60))) == want
            assert nan_median(grid) == want


def test_nan_median_of_other_grids() -> None:
    assert nan_median(np.array([[1.0, np.nan, 3.0, 10.0]])) == 3.0  # float64: numpy's own
    assert np.isnan(nan_median(np.full((3, 3), np.nan, dtype=np.float32)))


def test_overlapping_footprints_burn_alike_in_strips() -> None:
    """Overlapping footprints (equal roofs among them): in strips of any size, each cell goes
    to the footprint the whole grid's burn gives it (the tallest, the first of equal ones)."""
    import shapely

    rng = np.random.default_rng(3)
    n, res, x0, y0 = 300, 1.0, 500000.0, 3800120.0
    cx, cy = rng.uniform(x0, x0 + 200, n), rng.uniform(y0 - 120, y0, n)
    w, h = rng.uniform(3, 25, (2, n))
    polygons = shapely.box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
    rotated = [shapely.affinity.rotate(p, float(a)) for p, a in zip(polygons, rng.uniform(0, 90, n), strict=True)]
    heights = rng.choice([6.0, 9.0, 12.0, 30.0], n)  # many ties
    dem = rng.normal(1200.0, 2.0, (120, 200)).astype(np.float32)
    dem[:5, :7] = np.nan
    ids = np.array([f"b{i}" for i in range(n)], dtype=object)
    from cim.analysis.model import model_from_polygons

    whole = model_from_polygons(np.array(rotated, dtype=object), heights, ids, None, dem, x0, y0, res, block_cells=dem.size)
    owner = np.asarray(whole.owner)
    assert len(np.unique(owner)) > 150  # most footprints own cells
    # a cell is the tallest roof's of the footprints over its centre
    r, c = np.indices(dem.shape).reshape(2, -1)
    centres = shapely.points(x0 + (c + 0.5) * res, y0 - (r + 0.5) * res)
    cell, building = whole.prisms.tree.query(centres, predicate="within")
    tallest = np.full(dem.size, -np.inf)
    np.maximum.at(tallest, cell, whole.prisms.top[building])
    flat = owner.reshape(-1)
    covered = np.isfinite(tallest)
    assert covered.sum() > 5000
    np.testing.assert_array_equal(flat[~covered], -1)
    np.testing.assert_array_equal(whole.prisms.top[flat[covered]], tallest[covered])
    for cells in (1, 200, 333, 1999):
        dsm, owner_s = _burn(dem, whole.prisms, x0, y0, res, block_cells=cells)
        np.testing.assert_array_equal(owner_s, owner)
        np.testing.assert_array_equal(dsm, np.asarray(whole.dsm))
