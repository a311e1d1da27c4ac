"""The whole city: ``cim sample`` and ``cim build`` of a preset, per layer and in total.

For each layer: wall seconds, CPU seconds (user + system of every process of the build: the
build's own threads, its forked or spawned workers, live or finished), the peak memory of all
those processes together (the sum of their RSS, sampled every 0.2 s), output bytes and tiles.
The build runs in a fresh child process (so its figures are its own), into an empty folder.

Figures come from the build's own progress callback: a layer's span runs from its first
progress report to the next layer's first (the sampler attributes each 0.2 s sample to the layer
then reporting), so the per-layer CPU and peak lines are sampled, not exact; the totals are.

    .venv/bin/python benchmarks/bench_city.py                        # the city preset (sources in benchmarks/out/city)
    .venv/bin/python benchmarks/bench_city.py --preset district --sample   # time the generator too
    .venv/bin/python benchmarks/bench_city.py --preset survey        # the opt-in survey-density city (8 GB + as much built)
    .venv/bin/python benchmarks/bench_city.py --engine processes --workers 2

The issue's moonshot for ``survey`` on 2 cores: the build in at most 10 minutes and 4 GB peak.
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

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"

CHILD = r"""
import json, os, sys, threading, time
from pathlib import Path

import cim
from cim.runtime import process_policy

recipe, out, engine, workers = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
me = os.getpid()


def tree():
    # (rss bytes, cpu seconds) of this process, its finished children and its live descendants
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                f = open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            kids.setdefault(int(f[1]), []).append((int(d), f))
    rss, cpu, todo = 0, 0.0, [me]
    own = open(f"/proc/{me}/stat").read().rsplit(")", 1)[1].split()
    cpu += (int(own[11]) + int(own[12]) + int(own[13]) + int(own[14])) / TICK  # self + reaped children
    rss += int(own[21]) * PAGE
    while todo:
        for pid, f in kids.get(todo.pop(), []):
            cpu += (int(f[11]) + int(f[12])) / TICK
            rss += int(f[21]) * PAGE
            todo.append(pid)
    return rss, cpu


state = {"layer": "(start)"}
spans = {}
stop = threading.Event()


def sample():
    while not stop.is_set():
        rss, cpu = tree()
        now = time.perf_counter()
        span = spans.setdefault(state["layer"], {"start": now, "cpu0": cpu, "peak": 0})
        span.update(end=now, cpu1=cpu, peak=max(span["peak"], rss))
        stop.wait(0.2)


def progress(stage, done, total):
    state["layer"] = stage.split(":", 1)[0]


threading.Thread(target=sample, daemon=True).start()
t0 = time.perf_counter()
with process_policy(fork=True, pause_gc=True):
    report = cim.build(recipe, out, engine=None if engine == "local" else engine, workers=workers or None, progress=progress)
wall = time.perf_counter() - t0
stop.set()
time.sleep(0.05)
rss, cpu = tree()
layers = [
    {"id": lr.id, "kind": lr.kind, "seconds": lr.seconds, "tiles": lr.tiles, "count": lr.count, "bytes": lr.bytes}
    for lr in report.layers
]
for layer in layers:
    span = spans.get(layer["id"], {})
    layer["cpu"] = span.get("cpu1", 0.0) - span.get("cpu0", 0.0)
    layer["peak"] = span.get("peak", 0)
print(json.dumps({"wall": wall, "cpu": cpu, "peak": max([s["peak"] for s in spans.values()] + [rss]), "layers": layers}))
"""


def _python() -> str:
    venv = HERE.parent / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="city", choices=["tiny", "district", "city", "survey"])
    ap.add_argument("--sources", type=Path, default=None, help="the preset's sources [benchmarks/out/<preset>]")
    ap.add_argument("--sample", action="store_true", help="(re)generate the sources and time the generator")
    ap.add_argument("--engine", default="local", help="local (threads) | processes | any engine cim.build accepts")
    ap.add_argument("--workers", type=int, default=0, help="tile workers [one a core]")
    ap.add_argument("--keep", action="store_true", help="keep the built city (else removed after measuring)")
    args = ap.parse_args()

    sources = args.sources or OUT / args.preset
    py = _python()
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; preset {args.preset}; engine {args.engine}")
    if args.sample or not (sources / "city.toml").is_file():
        if sources.exists():
            shutil.rmtree(sources)
        t0 = time.perf_counter()
        cmd = [py, "-m", "cim", "sample", "--preset", args.preset, str(sources), "-q"]
        subprocess.run(cmd, check=True)
        took = time.perf_counter() - t0
        size = sum(f.stat().st_size for f in sources.rglob("*") if f.is_file())
        print(f"sample {args.preset}: {took:.1f} s, {size / 1e9:.2f} GB of sources")

    out = OUT / f"{args.preset}-built"
    if out.exists():
        shutil.rmtree(out)
    proc = subprocess.run(
        [py, "-c", CHILD, str(sources / "city.toml"), str(out), args.engine, str(args.workers)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        sys.exit(f"the build failed:\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print("\n| layer | kind | wall s | CPU s | peak RSS (all processes) | tiles | features | output |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for layer in result["layers"]:
        print(
            f"| {layer['id']} | {layer['kind']} | {layer['seconds']:.1f} | {layer['cpu']:.1f} | {layer['peak'] / 2**20:,.0f} MB "
            f"| {layer['tiles']:,} | {layer['count']:,} | {layer['bytes'] / 1e6:,.1f} MB |"
        )
    total = sum(layer["bytes"] for layer in result["layers"])
    print(
        f"| **total** | | **{result['wall']:.1f}** | **{result['cpu']:.1f}** | **{result['peak'] / 2**20:,.0f} MB** "
        f"| {sum(layer['tiles'] for layer in result['layers']):,} | | **{total / 1e6:,.1f} MB** |"
    )
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
