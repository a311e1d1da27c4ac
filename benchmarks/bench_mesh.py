"""Reality meshes end to end (OBJ tiles + MTL + textures → textured 3D Tiles with LODs).

The inputs are the sample city's reality mesh (:mod:`cim.samplecity.mesh`) made at several
sizes over the tiny preset's DEM, buildings and orthophoto: ``tiles`` × ``tiles`` OBJ tiles of
60 m at ``res`` metres a vertex (two triangles a cell) with 256-pixel textures. Each size is
converted ``--repeat`` times, each in a fresh process (``cim.convert("mesh", ...)``, the default
engine); the clock starts after the imports and stops when ``tileset.json`` is written.

Printed per size: source triangles, wall seconds (median), source triangles/s, peak RSS of the
converting process, output bytes and bytes a source triangle, tiles and levels.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out" / "mesh"

RUN = r"""
import json, resource, sys, time
import cim
from cim.layers.mesh import MeshLayer
t0 = time.perf_counter()
report = cim.convert("mesh", sys.argv[1], sys.argv[2])
wall = time.perf_counter() - t0
layer = report.layers[0]
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"wall": wall, "triangles": layer.triangles, "tiles": layer.tiles, "bytes": layer.bytes,
                  "levels": layer.info.levels, "rss_mb": rss}))
"""

SIZES = [(3, 1.0), (4, 0.5), (6, 0.5)]


def sources() -> Path:
    """The tiny sample city's sources (made once)."""
    root = OUT / "tiny"
    if not (root / "city.toml").exists():
        import cim

        cim.sample("tiny", root)
    return root


def make_mesh(root: Path, tiles: int, res: float) -> Path:
    import pyogrio
    import shapely

    from cim.samplecity.generate import PRESETS
    from cim.samplecity.mesh import write_sample_mesh
    from cim.samplecity.terrain import CENTRE_E, CENTRE_N

    folder = OUT / f"reality-{tiles}x{tiles}-{res:g}m"
    if (folder / "metadata.xml").exists():
        return folder
    p = PRESETS["tiny"]
    data = root / "data"
    meta, _, wkb, fields = pyogrio.raw.read(str(data / "buildings.gpkg"))
    heights = fields[list(meta["fields"]).index("height")]
    write_sample_mesh(
        folder,
        (CENTRE_E + p.dx, CENTRE_N + p.dy),
        data / "dem.tif",
        list(shapely.from_wkb(wkb)),
        heights,
        data / "ortho.tif",
        tiles=tiles,
        res=res,
    )
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="print one JSON line per size")
    args = ap.parse_args()
    root = sources()
    print(
        f"{'tiles':>6} {'res m':>6} {'triangles':>10} {'wall s':>7} {'tri/s':>9} {'peak MB':>8} {'MB out':>7} {'B/tri':>6} {'tiles':>6} {'levels':>6}"
    )
    for tiles, res in SIZES:
        src = make_mesh(root, tiles, res)
        runs = []
        for k in range(args.repeat):
            out = OUT / f"out-{tiles}-{res:g}-{k}"
            shutil.rmtree(out, ignore_errors=True)
            proc = subprocess.run([sys.executable, "-c", RUN, str(src), str(out)], capture_output=True, text=True, check=True)
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            shutil.rmtree(out, ignore_errors=True)
        wall = statistics.median(r["wall"] for r in runs)
        r0 = runs[0]
        row = {
            "tiles": tiles,
            "res": res,
            "triangles": r0["triangles"],
            "wall": wall,
            "triangles_per_s": r0["triangles"] / wall,
            "rss_mb": max(r["rss_mb"] for r in runs),
            "bytes": r0["bytes"],
            "bytes_per_triangle": r0["bytes"] / r0["triangles"],
            "out_tiles": r0["tiles"],
            "levels": r0["levels"],
        }
        if args.json:
            print(json.dumps(row))
        else:
            print(
                f"{tiles:>6} {res:>6g} {row['triangles']:>10,} {wall:>7.2f} {row['triangles_per_s']:>9,.0f} {row['rss_mb']:>8.0f} "
                f"{row['bytes'] / 1e6:>7.2f} {row['bytes_per_triangle']:>6.1f} {row['out_tiles']:>6} {row['levels']:>6}"
            )


if __name__ == "__main__":
    main()
