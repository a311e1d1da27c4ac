"""A whole city build on the local engine and on a Dask cluster of this machine: the Dask engine's
overhead.

Builds a sample preset's recipe (``district`` by default) as ``cim build`` does, in a fresh child
process per run and engine, into an empty folder: ``--engine local`` (threads of the process) and
``--engine dask`` (a ``LocalCluster`` of ``--dask-workers`` single-threaded worker processes on
127.0.0.1, started by the child; its start-up is reported apart). Prints each layer's seconds,
the total wall time, CPU of the child and its worker processes, and the ratio dask / local.

``--scheduler tcp://host:8786`` runs the dask side on that cluster instead (its workers must see
this machine's paths).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"

CHILD = r"""
import json, sys, time
import cim
from cim.engines import LocalEngine
from cim.runtime import process_policy
if __name__ == "__main__":
    recipe, out, engine_name, workers, scheduler, layers = sys.argv[1:7]
    from cim.recipe import load_recipe
    rec = load_recipe(recipe)
    if layers:
        rec.layers = [s for s in rec.layers if s.id in layers.split(",")]
    t0 = time.perf_counter()
    if engine_name == "dask":
        from cim.engines_dask import DaskEngine
        engine = DaskEngine(scheduler or None, workers=int(workers))
    else:
        engine = LocalEngine()
    start = time.perf_counter() - t0
    with process_policy(fork=True, pause_gc=True), engine:  # as `cim build` runs it
        t1 = time.perf_counter()
        report = cim.build(rec, out, engine=engine)
        wall = time.perf_counter() - t1
    print(json.dumps({"start": start, "wall": wall, "bytes": report.bytes, "layers": {l.id: l.seconds for l in report.layers}}))
"""


def run_once(recipe: Path, out: Path, engine: str, workers: int, scheduler: str, layers: str) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(recipe), str(out), engine, str(workers), scheduler, layers], capture_output=True, text=True
    )
    total = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"{engine} build failed:\n{proc.stderr[-3000:]}")
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    got["process"] = total
    got["cpu"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="district")
    ap.add_argument("--layers", default="", help="only these layer ids, comma-separated [default: all]")
    ap.add_argument("--dask-workers", type=int, default=2)
    ap.add_argument("--scheduler", default="", help="a running Dask scheduler instead of a local cluster")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--src", type=Path, default=None, help="the preset's folder [default: benchmarks/out/PRESET, generated once]")
    ap.add_argument("--out", type=Path, default=None, help="where the builds go [default: a temporary folder, removed]")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    src = args.src or OUT / args.preset
    work = args.out or Path(tempfile.mkdtemp(prefix="cim-bench-engines-"))
    if not (src / "city.toml").exists():
        import cim

        print(f"generating the {args.preset} preset into {src} ...", file=sys.stderr)
        cim.sample(args.preset, src)
    runs: dict[str, list[dict]] = {"local": [], "dask": []}
    for _ in range(args.repeat):
        for engine in runs:
            runs[engine].append(
                run_once(src / "city.toml", work / f"{args.preset}-{engine}", engine, args.dask_workers, args.scheduler, args.layers)
            )
    if args.out is None:
        shutil.rmtree(work, ignore_errors=True)
    best = {engine: min(r, key=lambda x: x["wall"]) for engine, r in runs.items()}
    ids = list(best["local"]["layers"])
    print(
        f"{args.preset}: best of {args.repeat}, seconds (dask: {args.scheduler or f'LocalCluster, {args.dask_workers} workers x 1 thread'})"
    )
    print(f"{'layer':<12} {'local':>8} {'dask':>8} {'ratio':>6}")
    for lid in ids:
        a, b = best["local"]["layers"][lid], best["dask"]["layers"][lid]
        print(f"{lid:<12} {a:8.2f} {b:8.2f} {b / a:6.2f}")
    a, b = best["local"], best["dask"]
    print(f"{'build':<12} {a['wall']:8.2f} {b['wall']:8.2f} {b['wall'] / a['wall']:6.2f}")
    print(f"{'start':<12} {a['start']:8.2f} {b['start']:8.2f}   (engine / cluster start-up)")
    print(f"{'process':<12} {a['process']:8.2f} {b['process']:8.2f}   (whole child process, imports included)")
    print(f"{'cpu':<12} {a['cpu']:8.2f} {b['cpu']:8.2f}   (user + system, the child and its processes)")
    print(f"{'MB':<12} {a['bytes'] / 1e6:8.1f} {b['bytes'] / 1e6:8.1f}")
    if args.json:
        print(json.dumps({"preset": args.preset, "local": runs["local"], "dask": runs["dask"]}))


if __name__ == "__main__":
    main()
