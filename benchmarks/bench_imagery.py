"""Imagery: the sample city's orthophoto → Web Mercator tiles with the overview pyramid.

Prints source pixels/s (pixels of the orthophoto consumed per second), tile pixels/s written at
the finest zoom, tiles/s, bytes and peak memory of the build process.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import rasterio

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"

CHILD = r"""
import json, sys, time
import cim
t0 = time.perf_counter()
r = cim.build_layer("imagery", sys.argv[1], sys.argv[2], format=sys.argv[3])
print(json.dumps({"wall": time.perf_counter() - t0, "tiles": r.tiles, "bytes": r.bytes, "pixels": r.info.pixels, "minzoom": r.info.minzoom, "maxzoom": r.info.maxzoom}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--preset", default="city", choices=["tiny", "district", "city"])
    ap.add_argument("--format", default="webp", choices=["webp", "png", "jpeg"])
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    ortho = OUT / args.preset / "data" / "ortho.tif"
    if not ortho.exists():
        print(f"generating the {args.preset} preset into {ortho.parent.parent} (once)...", flush=True)
        subprocess.run([sys.executable, "-m", "cim", "sample", "--preset", args.preset, str(ortho.parent.parent)], check=True)
    with rasterio.open(ortho) as ds:
        src_pixels = ds.width * ds.height
    runs = []
    for _ in range(args.repeat):
        dest = OUT / f"{args.preset}-imagery"
        shutil.rmtree(dest, ignore_errors=True)
        proc = subprocess.run([sys.executable, "-c", CHILD, str(ortho), str(dest), args.format], capture_output=True, text=True, check=True)
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    best = min(runs, key=lambda r: r["wall"])
    print(
        f"\nimagery, preset {args.preset}, {args.format}: {src_pixels / 1e6:.1f} M source pixels → {best['tiles']} tiles (zoom {best['minzoom']}–{best['maxzoom']}), {best['bytes'] / 1e6:.1f} MB"
    )
    print(f"  wall (best of {len(runs)}): {best['wall']:.2f} s")
    print(
        f"  throughput:  {src_pixels / best['wall'] / 1e6:.1f} M source pixels/s, {best['pixels'] / best['wall'] / 1e6:.1f} M tile pixels/s, {best['tiles'] / best['wall']:.0f} tiles/s"
    )
    print(f"  peak memory: {peak:.0f} MB RSS")


if __name__ == "__main__":
    main()
