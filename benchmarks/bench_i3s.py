"""I3S export: a built buildings layer → scene layer package (``cim export i3s``).

Exports the layer ``--repeat`` times in this process and prints the best and median wall time,
features/s and triangles/s, the package's bytes (and bytes a feature) and the process's peak
memory. The layer is ``--layer DIR`` (any built mesh layer), else the buildings of the
``--preset`` sample city, converted once into ``benchmarks/out/<preset>-tiles`` as
``bench_buildings.py`` does.

    .venv/bin/python benchmarks/bench_i3s.py --preset district
    .venv/bin/python benchmarks/bench_i3s.py --layer benchmarks/out/city-tiles --repeat 3
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"


def ensure_layer(preset: str) -> Path:
    recipe = OUT / preset / "city.toml"
    if not recipe.exists():
        print(f"generating the {preset} preset into {recipe.parent} (once)...", flush=True)
        subprocess.run([sys.executable, "-m", "cim", "sample", "--preset", preset, str(recipe.parent)], check=True)
    layer = OUT / f"{preset}-tiles"
    if not (layer / "tileset.json").exists():
        print(f"converting its buildings into {layer} (once)...", flush=True)
        data = recipe.parent / "data"
        subprocess.run(
            [sys.executable, "-m", "cim", "convert", "buildings", str(data / "buildings.gpkg"), str(layer), "--dem", str(data / "dem.tif")],
            check=True,
        )
    return layer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="district", choices=["tiny", "district", "city"])
    ap.add_argument("--layer", type=Path, default=None, help="a built mesh layer to export instead of the preset's buildings")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="print one JSON line")
    args = ap.parse_args()
    layer = args.layer or ensure_layer(args.preset)

    from cim.export.i3s import export_i3s

    out = OUT / f"{layer.name}.slpk"
    walls, result = [], None
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        result = export_i3s(layer, out)
        walls.append(time.perf_counter() - t0)
    assert result is not None
    best, median = min(walls), statistics.median(walls)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row = {
        "layer": str(layer),
        "nodes": result.nodes,
        "features": result.features,
        "triangles": result.triangles,
        "bytes": result.bytes,
        "best_s": round(best, 2),
        "median_s": round(median, 2),
        "features_per_s": round(result.features / best),
        "triangles_per_s": round(result.triangles / best),
        "bytes_per_feature": round(result.bytes / max(result.features, 1), 1),
        "peak_rss_mb": round(peak_mb),
    }
    if args.json:
        print(json.dumps(row))
        return
    print(
        f"{result.layer_type}: {result.nodes} nodes, {result.features:,} features, {result.triangles:,} triangles → "
        f"{result.bytes / 1e6:.1f} MB ({row['bytes_per_feature']} B/feature)\n"
        f"best {best:.2f} s (median {median:.2f} s of {args.repeat}): {row['features_per_s']:,} features/s, "
        f"{row['triangles_per_s']:,} triangles/s; peak RSS {row['peak_rss_mb']} MB"
    )


if __name__ == "__main__":
    main()
