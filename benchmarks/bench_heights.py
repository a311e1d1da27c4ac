"""Building heights from the lidar (issue 16) on the sample city: every footprint against every
LAS/LAZ file of the survey.

Runs :func:`cim.sources.pointcloud.heights.footprint_heights` (what ``heights_from`` does in the
buildings layer) in a fresh child process and prints points/s and footprints/s of the whole
pass (read + match + exact percentiles), the time reading the footprints takes before it, CPU,
peak memory (RSS of the child); beside it, the floor
(decoding the same fields of the same files with laspy and nothing else) and a simple reference:
shapely 2's STRtree join (what ``geopandas.sjoin`` runs) of the ground and building points of a
few files with the footprints, then ``numpy.percentile`` per footprint, timed on that subset and
extrapolated linearly to all the points (stated as such).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"

CHILD = r"""
import json, os, resource, sys, time
from pathlib import Path
from cim.sources.footprints import read_footprints
from cim.sources.pointcloud.heights import footprint_heights
root, memory = Path(sys.argv[1]), int(sys.argv[2])
t0 = time.perf_counter()
table = read_footprints(root / "data" / "buildings.gpkg")
t1 = time.perf_counter()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
c0 = os.times()
found = footprint_heights(table.geometries, table.crs, [root / "data" / "lidar"], memory=memory)
t2 = time.perf_counter()
c1 = os.times()
print(json.dumps({
    "read_footprints": t1 - t0, "heights": t2 - t1, "footprints": len(table), "points": found.points, "used": found.used,
    "with_roof": int((found.n_roof > 0).sum()), "roof_pairs": int(found.n_roof.sum()), "ground_pairs": int(found.n_ground.sum()),
    "files": len(found.files), "cpu": (c1.user - c0.user) + (c1.system - c0.system), "rss_after_read_mb": base / 1024,
}))
"""

FLOOR = r"""
import json, os, sys, time, laspy
from pathlib import Path
sel = laspy.DecompressionSelection.XY_RETURNS_CHANNEL | laspy.DecompressionSelection.Z | laspy.DecompressionSelection.CLASSIFICATION
t0 = time.perf_counter(); n = 0; c0 = os.times()
for f in sorted((Path(sys.argv[1]) / "data" / "lidar").glob("*.la[sz]")):
    with laspy.open(f, laz_backend=laspy.LazBackend.LazrsParallel, decompression_selection=sel) as r:
        for pts in r.chunk_iterator(1 << 19):
            n += len(pts); pts.array["classification"].max()
c1 = os.times()
print(json.dumps({"seconds": time.perf_counter() - t0, "points": n, "cpu": (c1.user - c0.user) + (c1.system - c0.system)}))
"""

REFERENCE = r"""
import json, os, sys, time
from pathlib import Path
import laspy, numpy as np, shapely
from cim.sources.footprints import read_footprints
root, nfiles = Path(sys.argv[1]), int(sys.argv[2])
table = read_footprints(root / "data" / "buildings.gpkg")
files = sorted((root / "data" / "lidar").glob("*.la[sz]"))
# the files in the middle of the survey (the densest built-up ones)
files = files[len(files) // 2 - nfiles // 2 : len(files) // 2 - nfiles // 2 + nfiles]
t0 = time.perf_counter(); c0 = os.times()
las = [laspy.read(f) for f in files]
x = np.concatenate([np.asarray(a.x) for a in las]); y = np.concatenate([np.asarray(a.y) for a in las])
z = np.concatenate([np.asarray(a.z) for a in las]); c = np.concatenate([np.asarray(a.classification) for a in las])
t1 = time.perf_counter()
tree = shapely.STRtree(table.geometries)
roof, ground = c == 6, c == 2
rp, rf = tree.query(shapely.points(x[roof], y[roof]), predicate="intersects")
gpts = shapely.points(x[ground], y[ground])
gp, gf = tree.query(gpts, predicate="dwithin", distance=3.0)
outside = ~shapely.covers(table.geometries[gf], gpts[gp])
gp, gf = gp[outside], gf[outside]
t2 = time.perf_counter()
zr, zg = z[roof][rp], z[ground][gp]
for f in np.unique(rf):
    np.percentile(zr[rf == f], [50.0, 90.0])
for f in np.unique(gf):
    np.percentile(zg[gf == f], 10.0)
t3 = time.perf_counter(); c1 = os.times()
print(json.dumps({"points": len(x), "read": t1 - t0, "join": t2 - t1, "percentiles": t3 - t2, "footprints_hit": int(len(np.union1d(rf, gf))),
                  "cpu": (c1.user - c0.user) + (c1.system - c0.system)}))
"""


def child(code: str, *args: object) -> tuple[dict, float, float]:
    """Run ``code`` in a fresh interpreter: (its JSON line, wall seconds, its peak RSS in MB)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(proc.stderr)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return json.loads(proc.stdout.strip().splitlines()[-1]), wall, max(peak, before) / 1024.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--root", type=Path, default=OUT / "city", help="a sample city folder (city.toml, data/)")
    ap.add_argument("--memory", type=int, default=256 << 20, help="bytes of keys held before spilling")
    ap.add_argument("--reference-files", type=int, default=2, help="LAZ files the shapely reference runs on (0: skip it)")
    ap.add_argument("--no-floor", action="store_true", help="skip the laspy decode floor")
    ap.add_argument("--json", action="store_true", help="also print one JSON line")
    args = ap.parse_args()
    if not (args.root / "data" / "lidar").is_dir():
        raise SystemExit(f"{args.root}: no data/lidar; generate a sample city there first (cim sample --preset city {args.root})")
    load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"
    r, wall, peak = child(CHILD, args.root, args.memory)
    n, pts = r["footprints"], r["points"]
    print(
        f"\nheights from lidar, {args.root}: {n:,} footprints ({r['with_roof']:,} with roof points), {pts:,} points in {r['files']} files"
    )
    print(f"  pass: {r['heights']:.1f} s (read + match + percentiles; footprints read before it in {r['read_footprints']:.1f} s)")
    print(f"  throughput: {pts / r['heights'] / 1e6:.2f} M points/s, {n / r['heights']:,.0f} footprints/s")
    print(f"  pairs: {r['roof_pairs']:,} (roof point, footprint), {r['ground_pairs']:,} (ground point, footprint ring)")
    print(f"  CPU {r['cpu']:.1f} s ({r['cpu'] / r['heights']:.2f} cores busy); load average at start {load}")
    print(f"  peak memory: {peak:,.0f} MB RSS ({r['rss_after_read_mb']:,.0f} MB of it before the pass: interpreter, GDAL, footprints)")
    print(f"  whole child process: {wall:.1f} s with interpreter start and imports")
    out = {"bench": "heights", "root": str(args.root), "peak_rss_mb": peak, "process_wall": wall, **r}
    if not args.no_floor:
        f, _, _ = child(FLOOR, args.root)
        print(
            f"  floor: laspy decodes x, y, z, class of the same files in {f['seconds']:.1f} s ({f['points'] / f['seconds'] / 1e6:.2f} M points/s), "
            f"CPU {f['cpu']:.1f} s: cim's pass costs {r['cpu'] / f['cpu']:.2f}x the decoding alone in CPU"
        )
        out["floor"] = f
    if args.reference_files:
        ref, _, ref_peak = child(REFERENCE, args.root, args.reference_files)
        per_point = (ref["join"] + ref["percentiles"]) / ref["points"]
        est = per_point * pts + ref["read"] / ref["points"] * pts
        print(
            f"  reference (shapely STRtree join + numpy.percentile per footprint), {args.reference_files} files, {ref['points']:,} points: "
            f"read {ref['read']:.1f} s, join {ref['join']:.1f} s, percentiles {ref['percentiles']:.1f} s, peak {ref_peak:,.0f} MB"
        )
        est_cpu = ref["cpu"] / ref["points"] * pts
        print(
            f"    extrapolated linearly to {pts:,} points: ~{est:,.0f} s wall, ~{est_cpu:,.0f} s CPU (memory grows with the points: it holds them "
            f"all) → cim ~{est / r['heights']:.0f}x faster in wall, ~{est_cpu / r['cpu']:.0f}x in CPU (an extrapolation, not a measurement)"
        )
        out["reference"] = {**ref, "extrapolated_seconds": est, "extrapolated_cpu": est_cpu, "peak_rss_mb": ref_peak}
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
