"""Buildings end to end (read footprints → LOD1 tiles on disk) on the sample city.

Runs ``cim.convert("buildings", ...)`` as ``cim convert buildings`` does (read and repair the
footprints, heights, DEM bases, extrusion, tiles; then the search index and ``city.json``) and
prints buildings/s for file → tiles on disk (the layer's own time), the time the search index adds, triangles/s, bytes per
building and peak memory (RSS of the build process), with pg2b3dm's published throughput beside
them for scale. Each run is a fresh child process
building into an empty folder, so nothing is resumed and memory is the build's own.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"

CHILD = r"""
import json, sys, time
from pathlib import Path
import cim
from cim.recipe import load_recipe
from cim.runtime import process_policy
recipe = load_recipe(sys.argv[1])
spec = next(s for s in recipe.layers if s.kind == "buildings")
read = []
def progress(stage, done, total):  # the extrusion starts once the footprints are read
    if stage.endswith("extrude") and not read:
        read.append(time.perf_counter())
with process_policy(fork=True, pause_gc=True):  # as `cim convert buildings` runs it
    t0 = time.perf_counter()
    report = cim.convert("buildings", spec.source, sys.argv[2], dem=spec.base / spec.options["dem"], progress=progress)
    t3 = time.perf_counter()
layer = report.layers[0]
# file -> tiles on disk is the layer's own time; then the search index (written meanwhile) and city.json
print(json.dumps({"wall": layer.seconds, "read": read[0] - t0, "index": (t3 - t0) - layer.seconds, "count": layer.count, "tiles": layer.tiles, "triangles": layer.triangles, "bytes": layer.bytes}))
"""

#: pg2b3dm's published runs: 9.7 M buildings in 1 h 54 min, 46 M in 3 h 21 min
PEER = {"pg2b3dm (published)": (9.7e6 / (114 * 60), 46e6 / (201 * 60))}


def ensure_sources(preset: str) -> Path:
    recipe = OUT / preset / "city.toml"
    if not recipe.exists():
        print(f"generating the {preset} preset into {recipe.parent} (once)...", flush=True)
        subprocess.run([sys.executable, "-m", "cim", "sample", "--preset", preset, str(recipe.parent)], check=True)
    return recipe


def run_once(recipe: Path, dest: Path) -> dict:
    shutil.rmtree(dest, ignore_errors=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, str(recipe), str(dest)], capture_output=True, text=True, check=True)
    total = time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_wall"] = total
    result["peak_rss_mb"] = max(peak_kb, before) / 1024.0
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--preset", default="city", choices=["tiny", "district", "city"])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="also print one JSON line")
    args = ap.parse_args()
    if __package__ is None:
        sys.path.insert(0, str(HERE.parent))
    recipe = ensure_sources(args.preset)
    runs = [run_once(recipe, OUT / f"{args.preset}-tiles") for _ in range(args.repeat)]
    best = min(runs, key=lambda r: r["wall"])
    n, tri, size = best["count"], best["triangles"], best["bytes"]
    print(f"\nbuildings, preset {args.preset}: {n:,} buildings, {best['tiles']} tiles, {tri:,} leaf triangles, {size / 1e6:.1f} MB")
    print(
        f"  wall (best of {len(runs)}): {best['wall']:.2f} s file → tiles on disk (read {best['read']:.2f} s); then {best['index']:.2f} s more to finish the search index (written meanwhile) and city.json; {best['process_wall']:.2f} s in all with interpreter start and imports"
    )
    median = statistics.median(r["wall"] for r in runs)
    print(
        f"  throughput:   {n / best['wall']:,.0f} buildings/s   {tri / best['wall']:,.0f} triangles/s   (median run: {n / median:,.0f} buildings/s)"
    )
    print(f"  output:       {size / n:,.0f} bytes/building")
    print(f"  peak memory:  {max(r['peak_rss_mb'] for r in runs):,.0f} MB RSS")
    print("  all runs (s): " + ", ".join(f"{r['wall']:.2f}" for r in runs))
    for name, (lo, hi) in PEER.items():
        print(f"  peer {name}: {lo:,.0f}–{hi:,.0f} buildings/s → cim is {n / best['wall'] / hi:,.0f}–{n / best['wall'] / lo:,.0f}× that")
    if args.json:
        print(
            json.dumps(
                {
                    "bench": "buildings",
                    "preset": args.preset,
                    "buildings_per_s": n / best["wall"],
                    "triangles_per_s": tri / best["wall"],
                    "bytes_per_building": size / n,
                    "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
                    **best,
                }
            )
        )


if __name__ == "__main__":
    main()
