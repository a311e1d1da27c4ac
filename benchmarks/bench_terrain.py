"""Terrain (DEM → quantized-mesh pyramid) on the sample city's DEM, and the TIN beside pydelatin.

1. The whole pyramid, end to end (read the DEM, resample, fill, mesh, encode, gzip, write), in a
   fresh child process building into an empty folder, ``--repeat`` times: DEM cells/s and tiles/s
   on the wall clock, CPU seconds (user and system, all threads), bytes, peak memory (the child's
   RSS). Numba compiles (or loads its cache) on a small DEM first, outside the timing.
   The machine is shared: each run also prints the load average before it and how busy the
   machine's cores were with other work during it (from /proc/stat), and the best and median runs
   are shown. The system time is mostly file creation (one file a tile), whose cost on these
   disks swings from about 40 µs to over 1 ms a file with what else writes to the file system.
2. The TIN kernel beside pydelatin (Delatin, greedy insertion: the reference method) on the same
   65 × 65 tile windows of the layer's own lattice, at the same error bound (the level's): vertex
   counts, the largest error each leaves (measured the same way, at every sample), and speed.

pydelatin is a benchmark-only tool (``pip install pydelatin``), never a dependency of cim.

    .venv/bin/python benchmarks/bench_terrain.py                  # the city preset (7500 × 4000 at 2 m)
    .venv/bin/python benchmarks/bench_terrain.py --preset tiny --windows 50 --repeat 1
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"

CHILD = r"""
import json, os, sys, time, resource, tempfile
from pathlib import Path
import numpy as np, rasterio
from rasterio.transform import from_origin
import cim
warm = Path(tempfile.mkdtemp())
with rasterio.open(warm / "w.tif", "w", driver="GTiff", width=200, height=200, count=1, dtype="float32", nodata=-9999.0,
                   crs="EPSG:4544", transform=from_origin(566000, 3830000, 2, 2)) as d:
    d.write(np.random.default_rng(0).random((200, 200), dtype=np.float32) * 10 + 1000, 1)
cim.build_layer("terrain", warm / "w.tif", warm / "t", min_zoom=12)
def busy():  # (busy, all) clock ticks of the machine's cores so far
    try:
        ticks = [int(v) for v in open("/proc/stat").readline().split()[1:]]
    except OSError:
        return None
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks)
b0 = busy()
r0 = resource.getrusage(resource.RUSAGE_SELF)
t0 = time.perf_counter()
r = cim.build_layer("terrain", sys.argv[1], sys.argv[2])
wall = time.perf_counter() - t0
r1 = resource.getrusage(resource.RUSAGE_SELF)
b1 = busy()
user, system = r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime
others = None
if b0 and b1 and b1[1] > b0[1]:
    hz, cores = os.sysconf("SC_CLK_TCK"), os.cpu_count() or 1
    others = max(0.0, ((b1[0] - b0[0]) / hz - user - system) / (wall * cores))
print(json.dumps({"wall": wall, "cells": r.count, "tiles": r.tiles, "bytes": r.bytes, "triangles": r.triangles,
                  "maxzoom": r.info.maxzoom, "user": user, "sys": system, "others_busy": others,
                  "peak_rss_mb": r1.ru_maxrss / 1024.0}))
"""


def ensure_dem(preset: str) -> Path:
    dem = OUT / preset / "data" / "dem.tif"
    if not dem.exists():
        print(f"generating the {preset} preset into {dem.parent.parent} (once)...", flush=True)
        cli = Path(sys.executable).parent / "cim"
        subprocess.run([str(cli), "sample", "--preset", preset, str(dem.parent.parent)], check=True)
    return dem


def run_pyramid(dem: Path, dest: Path) -> dict:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    proc = subprocess.run([sys.executable, "-c", CHILD, str(dem), str(dest)], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(proc.stderr)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["load_before"] = load
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
    ap.add_argument("--repeat", type=int, default=3, help="pyramid builds (best and median shown)")
    ap.add_argument("--skip-pyramid", action="store_true", help="only the TIN comparison")
    ap.add_argument("--json", action="store_true", help="also print one JSON line")
    args = ap.parse_args()
    if __package__ is None:
        sys.path.insert(0, str(HERE.parent))
    from cim.layers.terrain import level_error

    dem = ensure_dem(args.preset)
    report: dict = {"bench": "terrain", "preset": args.preset}
    if not args.skip_pyramid:
        # every run builds into a new folder, and old outputs are removed only after the runs:
        # creating files right after removing thousands is slow on these disks for a while
        # (system time of a build 0.5 s -> 6 s), which would time the cleanup, not the build
        final = OUT / f"{args.preset}-terrain"
        trash = OUT / f".trash-terrain-{os.getpid()}"
        trash.mkdir(parents=True, exist_ok=True)
        for old in OUT.glob(f"{args.preset}-terrain*"):
            old.rename(trash / old.name)
        runs, dests = [], []
        for i in range(args.repeat):
            dests.append(OUT / f"{args.preset}-terrain.run{i + 1}")
            p = run_pyramid(dem, dests[-1])
            runs.append(p)
            busy = "" if p["others_busy"] is None else f", other work kept the cores {100 * p['others_busy']:.0f} % busy"
            load = "" if p["load_before"] is None else f"load {p['load_before']:.1f} before"
            print(
                f"  run {i + 1}: wall {p['wall']:.2f} s, CPU {p['user'] + p['sys']:.2f} s (user {p['user']:.2f}, system {p['sys']:.2f})"
                f" -> {p['cells'] / p['wall'] / 1e6:.1f} M cells/s  ({load}{busy})",
                flush=True,
            )
        dests[-1].rename(final)
        for d in dests[:-1]:
            d.rename(trash / d.name)
        shutil.rmtree(trash, ignore_errors=True)
        best = min(runs, key=lambda r: r["wall"])
        median = sorted(runs, key=lambda r: r["wall"])[len(runs) // 2]
        report["pyramid"] = {"runs": runs, "best": best, "median": median}
        p = best
        print(
            f"\nterrain pyramid, preset {args.preset}: {p['cells']:,} DEM cells → levels 0–{p['maxzoom']}, "
            f"{p['tiles']:,} tiles, {p['bytes'] / 1e6:.2f} MB"
        )
        for label, r in (("best", best), ("median", median)):
            print(
                f"  {label:<7} wall {r['wall']:.2f} s  CPU {r['user'] + r['sys']:.2f} s (user {r['user']:.2f}, system {r['sys']:.2f})"
                f"  {r['cells'] / r['wall'] / 1e6:.2f} M DEM cells/s  {r['tiles'] / r['wall']:,.0f} tiles/s"
            )
        print(f"  CPU work    {p['cells'] / (p['user'] + p['sys']) / 1e6:.2f} M DEM cells per CPU second (best run)")
        print(f"  output      {p['bytes'] / p['tiles']:,.0f} bytes/tile (gzip), {p['triangles']:,} triangles at level {p['maxzoom']}")
        print(f"  peak memory {max(r['peak_rss_mb'] for r in runs):,.0f} MB RSS")
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
    print(
        f"  {'level':>5} {'windows':>7} {'bound m':>8} | {'cim verts':>9} {'max err':>8} {'Mcells/s':>8} {'batch':>6} | "
        f"{'pydelatin':>9} {'max err':>8} {'Mcells/s':>8} | {'verts ratio':>11}"
    )
    for z, r in rows:
        o, t = r["cim"], r["pydelatin"]
        print(
            f"  {z:>5} {r['windows']:>7} {r['max_error']:>8.3f} | {o['vertices']:>9,} {o['error']:>8.3f} {o['cells_per_s'] / 1e6:>8.1f} "
            f"{o['batch_cells_per_s'] / 1e6:>6.1f} | {t['vertices']:>9,} {t['error']:>8.3f} {t['cells_per_s'] / 1e6:>8.1f} | "
            f"{o['vertices'] / t['vertices']:>11.3f}"
        )
    if args.json:
        print(json.dumps(report))


if __name__ == "__main__":
    main()
