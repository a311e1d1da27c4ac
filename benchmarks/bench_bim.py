"""BIM end to end (IFC → 3D Tiles on disk) beside ifcopenshell's own multi-core geometry
iterator over the same file, which is the floor: cim cannot be faster than the kernel it drives.

For each file, fresh child processes run (a) the iterator alone: open the file, iterate every
element with the settings cim uses (world coordinates, unwelded vertices, openings excluded) and
touch its buffers; (b) cim's whole conversion: georeference, attributes, geometry, spool, LOD
plan, GLB tiles and tilesets. Prints elements/s, triangles/s, the ratio cim / iterator (target
≤ 1.25) and peak memory (cim's process plus its geometry process; the iterator's process).
Wall times on a shared machine are noisy: the median of ``--repeat`` runs is shown, and CPU
seconds beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out" / "bim"
REALDATA = HERE.parent.parent / "shared" / "realdata" / "ifc"

ITERATOR = r"""
import json, resource, sys, time
import ifcopenshell, ifcopenshell.geom
from cim.sources.ifc import EXCLUDED_CLASSES, _schema_has, _settings, peak_rss_mb
t0 = time.perf_counter()
f = ifcopenshell.open(sys.argv[1])
it = ifcopenshell.geom.iterator(_settings(256), f, int(sys.argv[2]), exclude=[c for c in EXCLUDED_CLASSES if _schema_has(f, c)])
n = tri = 0
if it.initialize():
    while True:
        g = it.get().geometry
        n += 1
        tri += len(g.faces_buffer) // 12
        _ = g.verts_buffer, g.normals_buffer, g.material_ids_buffer
        if not it.next():
            break
wall = time.perf_counter() - t0
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"wall": wall, "elements": n, "triangles": tri, "cpu": ru.ru_utime + ru.ru_stime, "rss_mb": peak_rss_mb()}))
"""

CIM = r"""
import json, resource, sys, time
from pathlib import Path
from cim.kernels.frames import LocalFrame
from cim.layers.bim import BimOptions, build_bim_layer
from cim.sources.ifc import GeometryOptions, peak_rss_mb
t0 = time.perf_counter()
r = build_bim_layer([Path(sys.argv[1])], Path(sys.argv[2]), LocalFrame(105.78, 34.57, 1100.0), crs="EPSG:4544",
                    options=BimOptions(geometry=GeometryOptions(threads=int(sys.argv[3]))))
wall = time.perf_counter() - t0
me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"wall": wall, "elements": r.count, "triangles": r.triangles, "tiles": r.tiles, "bytes": r.bytes,
                  "cpu": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime,
                  "rss_mb": peak_rss_mb(), "child_rss_mb": r.extra["models"][0]["kernel_peak_mb"], "warnings": len(r.warnings)}))
"""

#: sample buildings: (name, width, depth, storeys)
SAMPLES = [("sample-small", 24.0, 14.0, 4), ("sample-office", 40.0, 24.0, 8), ("sample-tower", 60.0, 40.0, 12), ("sample-block", 90.0, 50.0, 16)]


def ensure_samples() -> list[Path]:
    from cim.samplecity.bim import write_sample_ifc

    OUT.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (name, w, d, n) in enumerate(SAMPLES):
        path = OUT / f"{name}.ifc"
        if not path.exists():
            print(f"writing {path.name} (once)...", flush=True)
            write_sample_ifc(path, easting=566000.0 + 100 * i, northing=3827000.0, base_height=1150.0, rotation_deg=15.0 * i,
                             width=w, depth=d, storeys=n, name=name, seed=i)
        paths.append(path)
    return paths


def run(code: str, *args: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True, cwd=HERE.parent)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench(path: Path, threads: int, repeat: int) -> dict:
    it_runs, cim_runs = [], []
    for _ in range(repeat):
        it_runs.append(run(ITERATOR, str(path), str(threads)))
        dest = OUT / "tiles" / path.stem
        shutil.rmtree(dest, ignore_errors=True)
        cim_runs.append(run(CIM, str(path), str(dest), str(threads)))
    it_wall = statistics.median(r["wall"] for r in it_runs)
    cim_wall = statistics.median(r["wall"] for r in cim_runs)
    c = cim_runs[-1]
    return {
        "file": path.name,
        "mb": round(path.stat().st_size / 1e6, 2),
        "elements": c["elements"],
        "triangles": c["triangles"],
        "iterator_s": round(it_wall, 3),
        "iterator_cpu_s": round(statistics.median(r["cpu"] for r in it_runs), 3),
        "cim_s": round(cim_wall, 3),
        "cim_cpu_s": round(statistics.median(r["cpu"] for r in cim_runs), 3),
        "ratio": round(cim_wall / it_wall, 3),
        "cim_elements_per_s": round(c["elements"] / cim_wall, 1),
        "cim_triangles_per_s": round(c["triangles"] / cim_wall),
        "iterator_elements_per_s": round(it_runs[-1]["elements"] / it_wall, 1),
        "iterator_triangles_per_s": round(it_runs[-1]["triangles"] / it_wall),
        "iterator_rss_mb": round(max(r["rss_mb"] for r in it_runs), 1),
        "cim_rss_mb": round(max(r["rss_mb"] for r in cim_runs), 1),
        "cim_kernel_rss_mb": round(max(r["child_rss_mb"] for r in cim_runs), 1),
        "tiles": c["tiles"],
        "bytes": c["bytes"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--json", action="store_true", help="print one JSON line per file")
    ap.add_argument("files", nargs="*", type=Path, help="IFC files (default: the sample buildings and ../shared/realdata/ifc)")
    args = ap.parse_args()
    files = args.files or ensure_samples() + sorted(REALDATA.glob("*.ifc"))
    print(f"{'file':40} {'elements':>8} {'triangles':>9} {'iterator s':>10} {'cim s':>7} {'ratio':>6} {'cim el/s':>9} {'cim tri/s':>10} {'peak MB cim+kernel / iter':>26}")
    for path in files:
        r = bench(path, args.threads, args.repeat)
        if args.json:
            print(json.dumps(r))
        print(
            f"{r['file'][:40]:40} {r['elements']:8,} {r['triangles']:9,} {r['iterator_s']:10.2f} {r['cim_s']:7.2f} {r['ratio']:6.2f} "
            f"{r['cim_elements_per_s']:9.1f} {r['cim_triangles_per_s']:10,} {r['cim_rss_mb']:8.0f}+{r['cim_kernel_rss_mb']:.0f} / {r['iterator_rss_mb']:.0f}",
            flush=True,
        )
    print(f"({args.threads} threads; median of {args.repeat} runs; CPU seconds in --json)")


if __name__ == "__main__":
    main()
