"""BIM end to end (IFC → 3D Tiles on disk) beside ifcopenshell's own multi-core geometry
iterator over the same file, which is the floor: cim cannot be faster than the kernel it drives.

For each file, fresh processes run, alternately, (a) the iterator alone: open the file, iterate
every element with the settings cim uses (world coordinates, unwelded vertices, the same classes
excluded, as many threads as ``--threads``) and touch its buffers; (b) cim's whole conversion:
georeference, attributes, geometry (its geometry process; or cim's own process for a tiny model
of simple solids, see ``cim.sources.ifc.simple``), spool, LOD plan, GLB tiles, tilesets and
search rows. Both clocks start after the imports (``import ifcopenshell`` and ``import
cim.layers.bim``) and stop when the last byte is written; ``proc s`` is the whole process, the
interpreter and imports included, measured from outside. A file converts ``--repeat`` times
at least, and more when short, until the iterator's runs add up to ``--min-seconds`` (the
one-element file takes 0.05 s and its kernel alone varies by ±30 % from run to run here: a
median of 5 such runs moved by 0.2 of ratio between invocations).

Printed: elements/s and triangles/s; the ratio cim / iterator (target ≤ 1.25), the median of
the ratios of runs made one after the other (the machine is shared and its load drifts: pairing
cancels the drift better than a ratio of medians, printed in ``--json`` as ``ratio_of_medians``);
peak memory (cim's process + what its geometry process added to the memory it shares with it,
fork being copy-on-write, 0 when cim made the model in its own process / the iterator's
process); CPU seconds (cim's process and its geometry process / the iterator's process); how
busy other work kept the machine's cores meanwhile; and the number of rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out" / "bim"
REALDATA = HERE.parent.parent / "shared" / "realdata" / "ifc"

ITERATOR = r"""
import json, resource, sys, time
import ifcopenshell, ifcopenshell.geom
from cim.sources.ifc.kernel import excluded_classes, kernel_settings, peak_rss_mb
t0 = time.perf_counter()
f = ifcopenshell.open(sys.argv[1])
it = ifcopenshell.geom.iterator(kernel_settings(256), f, int(sys.argv[2]), exclude=excluded_classes(f))
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
from cim.pipeline import build_layer
from cim.kernels.frames import LocalFrame
from cim.runtime import process_policy
from cim.layers import registry
from cim.sources.ifc import peak_rss_mb
registry.get("bim")  # the layer's modules imported before the clock starts, as for the iterator's ifcopenshell
t0 = time.perf_counter()
with process_policy(fork=True, pause_gc=True):  # as the cim command runs it
    r = build_layer("bim", [Path(sys.argv[1])], Path(sys.argv[2]), frame=LocalFrame(105.78, 34.57, 1100.0), crs="EPSG:4544",
                        threads=int(sys.argv[3]))
wall = time.perf_counter() - t0
me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"wall": wall, "elements": r.count, "triangles": r.triangles, "tiles": r.tiles, "bytes": r.bytes,
                  "cpu": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime, "kernel_cpu": kids.ru_utime + kids.ru_stime,
                  "rss_mb": peak_rss_mb(), "child_rss_mb": r.info.models[0]["kernel_peak_mb"], "warnings": len(r.warnings)}))
"""

#: sample buildings: (name, width, depth, storeys)
SAMPLES = [
    ("sample-small", 24.0, 14.0, 4),
    ("sample-office", 40.0, 24.0, 8),
    ("sample-tower", 60.0, 40.0, 12),
    ("sample-block", 90.0, 50.0, 16),
]


def ensure_samples() -> list[Path]:
    from cim.samplecity.bim import write_sample_ifc

    OUT.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (name, w, d, n) in enumerate(SAMPLES):
        path = OUT / f"{name}.ifc"
        if not path.exists():
            print(f"writing {path.name} (once)...", flush=True)
            write_sample_ifc(
                path,
                easting=566000.0 + 100 * i,
                northing=3827000.0,
                base_height=1150.0,
                rotation_deg=15.0 * i,
                width=w,
                depth=d,
                storeys=n,
                name=name,
                seed=i,
            )
        paths.append(path)
    return paths


def _busy() -> tuple[int, int] | None:
    """(busy, all) clock ticks of the machine's cores so far (Linux), else None."""
    try:
        with open("/proc/stat") as fh:
            ticks = [int(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    return sum(ticks) - idle, sum(ticks)


def run(code: str, *args: str) -> dict:
    b0, t0 = _busy(), time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True, cwd=HERE.parent)
    proc_s, b1 = time.perf_counter() - t0, _busy()
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["proc_s"] = proc_s
    if b0 is not None and b1 is not None:
        hz = os.sysconf("SC_CLK_TCK")
        own = out["cpu"]  # this run's processes (cim's geometry process included)
        out["others_busy"] = max(0.0, ((b1[0] - b0[0]) / hz - own) / (proc_s * (os.cpu_count() or 1)))
    return out


def bench(path: Path, threads: int, repeat: int, min_seconds: float = 0.0) -> dict:
    """``repeat`` rounds (an iterator run, then a cim run), more for a short file: until the
    iterator runs add up to ``min_seconds`` (a one-element file converts in 0.05 s, and the
    kernel alone varies by ±30 % from run to run on these machines: the median needs many)."""
    it_runs, cim_runs = [], []
    while len(it_runs) < repeat or sum(r["wall"] for r in it_runs) < min_seconds:
        it_runs.append(run(ITERATOR, str(path), str(threads)))
        dest = OUT / "tiles" / path.stem
        shutil.rmtree(dest, ignore_errors=True)
        cim_runs.append(run(CIM, str(path), str(dest), str(threads)))
    med = lambda runs, k: statistics.median(r[k] for r in runs)  # noqa: E731
    it_wall, cim_wall = med(it_runs, "wall"), med(cim_runs, "wall")
    c = cim_runs[-1]
    others = [r["others_busy"] for r in it_runs + cim_runs if "others_busy" in r]
    return {
        "file": path.name,
        "rounds": len(it_runs),
        "mb": round(path.stat().st_size / 1e6, 2),
        "elements": c["elements"],
        "triangles": c["triangles"],
        "iterator_s": round(it_wall, 3),
        "iterator_cpu_s": round(med(it_runs, "cpu"), 3),
        "iterator_proc_s": round(med(it_runs, "proc_s"), 3),
        "cim_s": round(cim_wall, 3),
        "cim_cpu_s": round(med(cim_runs, "cpu"), 3),
        "cim_kernel_cpu_s": round(med(cim_runs, "kernel_cpu"), 3),
        "cim_proc_s": round(med(cim_runs, "proc_s"), 3),
        "ratio": round(statistics.median(cr["wall"] / ir["wall"] for ir, cr in zip(it_runs, cim_runs)), 3),
        "ratio_of_medians": round(cim_wall / it_wall, 3),
        "ratios": [round(cr["wall"] / ir["wall"], 2) for ir, cr in zip(it_runs, cim_runs)],
        "cim_elements_per_s": round(c["elements"] / cim_wall, 1),
        "cim_triangles_per_s": round(c["triangles"] / cim_wall),
        "iterator_elements_per_s": round(it_runs[-1]["elements"] / it_wall, 1),
        "iterator_triangles_per_s": round(it_runs[-1]["triangles"] / it_wall),
        "iterator_rss_mb": round(max(r["rss_mb"] for r in it_runs), 1),
        "cim_rss_mb": round(max(r["rss_mb"] for r in cim_runs), 1),
        "cim_kernel_rss_mb": round(max(r["child_rss_mb"] for r in cim_runs), 1),
        "others_busy": round(statistics.median(others), 2) if others else None,
        "tiles": c["tiles"],
        "bytes": c["bytes"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5, help="rounds per file (at least)")
    ap.add_argument("--min-seconds", type=float, default=5.0, help="more rounds for a short file, until its iterator runs add up to this")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--json", action="store_true", help="print one JSON line per file")
    ap.add_argument("files", nargs="*", type=Path, help="IFC files (default: the sample buildings and ../shared/realdata/ifc)")
    args = ap.parse_args()
    files = args.files or ensure_samples() + sorted(REALDATA.glob("*.ifc"))
    print(
        f"{'file':36} {'elements':>8} {'triangles':>9} {'iter s':>7} {'cim s':>7} {'ratio':>6} {'cim el/s':>9} {'cim tri/s':>9} "
        f"{'peak MB cim+kernel/iter':>24} {'CPU s cim+kernel/iter':>22} {'proc s cim/iter':>16} {'others':>6} {'rounds':>6}"
    )
    for path in files:
        r = bench(path, args.threads, args.repeat, args.min_seconds)
        if args.json:
            print(json.dumps(r))
        others = "" if r["others_busy"] is None else f"{100 * r['others_busy']:.0f} %"
        print(
            f"{r['file'][:36]:36} {r['elements']:8,} {r['triangles']:9,} {r['iterator_s']:7.2f} {r['cim_s']:7.2f} {r['ratio']:6.2f} "
            f"{r['cim_elements_per_s']:9.1f} {r['cim_triangles_per_s']:9,} "
            f"{r['cim_rss_mb']:12.0f}+{r['cim_kernel_rss_mb']:.0f} / {r['iterator_rss_mb']:.0f} "
            f"{r['cim_cpu_s'] - r['cim_kernel_cpu_s']:10.2f}+{r['cim_kernel_cpu_s']:.2f} / {r['iterator_cpu_s']:.2f} "
            f"{r['cim_proc_s']:9.2f} / {r['iterator_proc_s']:.2f} {others:>6} {r['rounds']:6}",
            flush=True,
        )
    print(
        f"({args.threads} threads; medians of at least {args.repeat} alternating rounds, more for short files (until the iterator's add up to "
        f"{args.min_seconds:g} s); ratio = median of paired ratios; "
        "'others' = how busy other work kept the cores)"
    )


if __name__ == "__main__":
    main()
