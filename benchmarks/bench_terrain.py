"""Terrain (DEM → quantized-mesh pyramid) on the sample city's DEM, and the TIN beside pydelatin.

1. The whole pyramid, end to end (read the DEM, resample, fill, mesh, encode, gzip, write), in a
   fresh child process building into an empty folder: DEM cells/s, tiles/s, bytes, peak memory.
   Numba compiles (or loads its cache) on a small DEM first, outside the timing.
2. The TIN kernel beside pydelatin (Delatin, greedy insertion: the reference method) on the same
   65 × 65 tile windows of the layer's own lattice, at the same error bound (the level's): vertex
   counts, the largest error each leaves (measured the same way, at every sample), and speed.

pydelatin is a benchmark-only tool (``pip install pydelatin``), never a dependency of cim.

    .venv/bin/python benchmarks/bench_terrain.py                  # the city preset (7500 × 4000 at 2 m)
    .venv/bin/python benchmarks/bench_terrain.py --preset tiny --windows 50
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"

CHILD = r"""
import json, sys, time, resource, tempfile
from pathlib import Path
import numpy as np, rasterio
from rasterio.transform import from_origin
from cim.layers.terrain import build_terrain_layer
warm = Path(tempfile.mkdtemp())
with rasterio.open(warm / "w.tif", "w", driver="GTiff", width=200, height=200, count=1, dtype="float32",
                   crs="EPSG:4544", transform=from_origin(566000, 3830000, 2, 2)) as d:
    d.write(np.random.default_rng(0).random((200, 200), dtype=np.float32) * 10 + 1000, 1)
build_terrain_layer(warm / "w.tif", warm / "t", min_zoom=12)
r0 = resource.getrusage(resource.RUSAGE_SELF)
t0 = time.perf_counter()
r = build_terrain_layer(sys.argv[1], sys.argv[2])
wall = time.perf_counter() - t0
r1 = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"wall": wall, "cells": r.count, "tiles": r.tiles, "bytes": r.bytes, "triangles": r.triangles,
                  "maxzoom": r.extra["maxzoom"], "user": r1.ru_utime - r0.ru_utime, "sys": r1.ru_stime - r0.ru_stime}))
"""


def ensure_dem(preset: str) -> Path:
    dem = OUT / preset / "data" / "dem.tif"
    if not dem.exists():
        print(f"generating the {preset} preset into {dem.parent.parent} (once)...", flush=True)
        cli = Path(sys.executable).parent / "cim"
        subprocess.run([str(cli), "sample", "--preset", preset, str(dem.parent.parent)], check=True)
    return dem


def run_pyramid(dem: Path, dest: Path) -> dict:
    shutil.rmtree(dest, ignore_errors=True)
    proc = subprocess.run([sys.executable, "-c", CHILD, str(dem), str(dest)], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(proc.stderr)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    return result


def tile_windows(dem: Path, z: int, count: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` random full tiles of level ``z`` inside the DEM, sampled as the layer samples them."""
    from cim.sources.dem_grid import TerrainDem
    from cim.tiling.geographic import SAMPLES, sample_degrees, tile_bounds, tiles_covering

    rng = np.random.default_rng(seed)
    out = []
    with TerrainDem(dem) as src:
        x0, y0, x1, y1 = tiles_covering(src.bounds, z)
        tries = 0
        while len(out) < count and tries < 20 * count:
            tries += 1
            x, y = int(rng.integers(x0, x1 + 1)), int(rng.integers(y0, y1 + 1))
            w, s, _, _ = tile_bounds(z, x, y)
            g = src.sample(w, s, sample_degrees(z), (SAMPLES, SAMPLES))
            if np.isfinite(g).all():
                out.append(g)
    return out


def compare_tins(windows: list[np.ndarray], max_error: float) -> dict:
    import pydelatin

    from cim.kernels.tin import error_bounded_tin, tin_error

    ours = {"vertices": 0, "error": 0.0, "seconds": 0.0}
    theirs = {"vertices": 0, "error": 0.0, "seconds": 0.0}
    error_bounded_tin(windows[0], max_error)  # compiled before timing
    for g in windows:
        t0 = time.perf_counter()
        v, t, _ = error_bounded_tin(g, max_error)
        t1 = time.perf_counter()
        d = pydelatin.Delatin(g, max_error=max_error)
        t2 = time.perf_counter()
        ours["seconds"] += t1 - t0
        theirs["seconds"] += t2 - t1
        ours["vertices"] += len(v)
        theirs["vertices"] += len(d.vertices)
        ours["error"] = max(ours["error"], tin_error(g, v, t))
        # pydelatin counts rows from the other end; orient its triangles counter-clockwise
        dv = d.vertices[:, :2].astype(np.int64)
        dv[:, 1] = g.shape[0] - 1 - dv[:, 1]
        dt = d.triangles.astype(np.int64)
        a, b, c = dv[dt[:, 0]], dv[dt[:, 1]], dv[dt[:, 2]]
        flip = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]) < 0
        dt[flip] = dt[flip][:, ::-1]
        theirs["error"] = max(theirs["error"], tin_error(g, dv, dt))
    cells = sum(g.size for g in windows)
    for r in (ours, theirs):
        r["cells_per_s"] = cells / r["seconds"]
    # the layer meshes a block's tiles in one call: the same windows stacked in one grid
    from cim.kernels.tin import error_bounded_tins

    stack = np.concatenate(windows)
    rows0 = np.arange(len(windows)) * windows[0].shape[0]
    t0 = time.perf_counter()
    error_bounded_tins(stack, rows0, np.zeros_like(rows0), windows[0].shape[0], max_error)
    ours["batch_cells_per_s"] = cells / (time.perf_counter() - t0)
    return {"windows": len(windows), "cells": cells, "max_error": max_error, "cim": ours, "pydelatin": theirs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="city", choices=["tiny", "district", "city"])
    ap.add_argument("--windows", type=int, default=200, help="tile windows a level for the TIN comparison")
    ap.add_argument("--skip-pyramid", action="store_true", help="only the TIN comparison")
    ap.add_argument("--json", action="store_true", help="also print one JSON line")
    args = ap.parse_args()
    if __package__ is None:
        sys.path.insert(0, str(HERE.parent))
    from cim.layers.terrain import level_error

    dem = ensure_dem(args.preset)
    report: dict = {"bench": "terrain", "preset": args.preset}
    if not args.skip_pyramid:
        p = run_pyramid(dem, OUT / f"{args.preset}-terrain")
        report["pyramid"] = p
        print(f"\nterrain pyramid, preset {args.preset}: {p['cells']:,} DEM cells → levels 0–{p['maxzoom']}, "
              f"{p['tiles']:,} tiles, {p['bytes'] / 1e6:.1f} MB")
        print(f"  wall          {p['wall']:.2f} s   (CPU user {p['user']:.2f} s, system {p['sys']:.2f} s)")
        print(f"  throughput    {p['cells'] / p['wall'] / 1e6:.2f} M DEM cells/s   {p['tiles'] / p['wall']:,.0f} tiles/s")
        print(f"  output        {p['bytes'] / p['tiles']:,.0f} bytes/tile (gzip), {p['triangles']:,} triangles at level {p['maxzoom']}")
        print(f"  peak memory   {p['peak_rss_mb']:,.0f} MB RSS")
        zmax = p["maxzoom"]
    else:
        from cim.sources.dem_grid import TerrainDem
        from cim.tiling.geographic import level_for_resolution

        with TerrainDem(dem) as src:
            zmax = level_for_resolution(src.cell_size, src.centre_lat)
    rows = []
    for z in (zmax, zmax - 2):
        windows = tile_windows(dem, z, args.windows)
        if windows:
            rows.append((z, compare_tins(windows, level_error(z))))
    report["tin"] = {str(z): r for z, r in rows}
    print("\nTIN on the same 65 × 65 tile windows at the same error bound (cim: greedy insertion + vertex removal)")
    print("  (Mcells/s: one call a window; 'batch': cim's windows in one call, as the layer does; one core)")
    print(f"  {'level':>5} {'windows':>7} {'bound m':>8} | {'cim verts':>9} {'max err':>8} {'Mcells/s':>8} {'batch':>6} | "
          f"{'pydelatin':>9} {'max err':>8} {'Mcells/s':>8} | {'verts ratio':>11}")
    for z, r in rows:
        o, t = r["cim"], r["pydelatin"]
        print(f"  {z:>5} {r['windows']:>7} {r['max_error']:>8.3f} | {o['vertices']:>9,} {o['error']:>8.3f} {o['cells_per_s'] / 1e6:>8.1f} "
              f"{o['batch_cells_per_s'] / 1e6:>6.1f} | {t['vertices']:>9,} {t['error']:>8.3f} {t['cells_per_s'] / 1e6:>8.1f} | "
              f"{o['vertices'] / t['vertices']:>11.3f}")
    if args.json:
        print(json.dumps(report))


if __name__ == "__main__":
    main()
