"""``cim sample`` stage by stage: when each stage ran, its wall and CPU seconds, and the CPU of
the whole process tree.

The generator runs as ``cim sample`` does (its worker processes included). Each stage's CPU is
that of the process that ran it, measured there (:attr:`cim.samplecity.generate.SampleCity.stages`:
the lidar's is its tiles' CPU summed over the workers); the total CPU is sampled every 0.2 s
from ``/proc`` over this process and every descendant, live or reaped. Stages overlap (the DEM
beside the footprints, the BIM models beside the orthophoto, the mesh beside the lidar), so
their walls do not add up to the total. Compare runs under the same load: the machine's load
average is printed before and after.

``--window W H`` generates a W x H km window of the preset instead, at its resolutions and lidar
density, centred on one column of its 500 m survey tiles (``--window 0.5 8``: the city's
south-north transect, hills, valley, river and buildings in their proportions), and
extrapolates the whole preset from it: per-area stages (DEM, orthophoto, lidar) scaled by the
area, the footprints, BIM and mesh taken from a measured run of the whole ``city`` (the same
code and footprints: ``--city-stages`` with the figures of a ``city`` run, CPU seconds).

    .venv/bin/python benchmarks/bench_sample.py district /tmp/sample-district
    .venv/bin/python benchmarks/bench_sample.py city /tmp/sample-city
    .venv/bin/python benchmarks/bench_sample.py survey /tmp/survey-window --window 0.5 8 --city-stages 5.0 9.0 0.5
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import threading
import time
from pathlib import Path

import cim.samplecity.generate as generate
from cim.samplecity.terrain import CENTRE_E

__all__ = ["main", "tree_cpu"]

TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu(root: int) -> float:
    """CPU seconds (user + system) of ``root``, its reaped children, and every live descendant
    with its own reaped children (a worker reaped by the forkserver counts in the forkserver)."""
    stats: dict[int, list[str]] = {}
    parent: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(d)] = fields
            parent[int(d)] = int(fields[1])
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        f = stats.get(pid)
        if f is not None:
            total += (int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])) / TICK
        todo.extend(child for child, p in parent.items() if p == pid)
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("preset", choices=list(generate.PRESETS))
    ap.add_argument("out", type=Path, help="folder to write the sources to (emptied first)")
    ap.add_argument("--window", type=float, nargs=2, metavar=("W", "H"), help="a window of the preset, km")
    ap.add_argument(
        "--city-stages",
        type=float,
        nargs=3,
        metavar=("FOOTPRINTS", "BIM", "MESH"),
        help="CPU s of these stages in a whole city run (for --window's estimate)",
    )
    ap.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    args = ap.parse_args()
    preset = args.preset
    whole = generate.PRESETS[preset]
    if args.window:
        w, h = args.window[0] * 1000.0, args.window[1] * 1000.0
        # one column of survey tiles at the centre: its western edge on a tile boundary
        tile = whole.lidar_tile
        x0 = (CENTRE_E + whole.dx) // tile * tile
        window = dataclasses.replace(whole, name=f"{preset}-window", width=w, height=h, dx=x0 + w / 2 - CENTRE_E, disk=0, bim_count=0)
        preset = window.name
        generate.PRESETS[preset] = window
    shutil.rmtree(args.out, ignore_errors=True)
    print(f"load average before: {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)")
    me, peak = os.getpid(), [0.0]
    stop = threading.Event()

    def sampler() -> None:
        while not stop.wait(0.2):
            peak[0] = max(peak[0], tree_cpu(me))

    thread = threading.Thread(target=sampler, daemon=True)
    c0 = tree_cpu(me)
    thread.start()
    t0 = time.monotonic()
    city = generate.sample(preset, args.out)
    wall = time.monotonic() - t0
    stop.set()
    thread.join()
    cpu = max(peak[0], tree_cpu(me)) - c0
    stages = getattr(city, "stages", {})  # an older generator has none
    for name, s in sorted(stages.items(), key=lambda kv: kv[1].start):
        print(f"{name:12s} {s.start - t0:6.1f} -> {s.end - t0:6.1f} s  wall {s.end - s.start:6.1f} s  cpu {s.cpu:6.1f} s")
    points = 0
    if city.lidar:
        import laspy

        for path in city.lidar:
            with laspy.open(path) as r:
                points += r.header.point_count
    size = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(
        f"{'total':12s} wall {wall:6.1f} s  cpu {cpu:6.1f} s (process tree)  {city.n_buildings:,} buildings  {points:,} points  {size / 1e6:,.0f} MB"
    )
    load_after = os.getloadavg()[0]
    print(f"load average after: {load_after:.1f}")
    figures: dict = {
        "preset": preset,
        "wall": wall,
        "cpu": cpu,
        "load_after": load_after,
        "buildings": city.n_buildings,
        "points": points,
        "bytes": size,
        "stages": {k: {"start": s.start - t0, "end": s.end - t0, "cpu": s.cpu} for k, s in stages.items()},
    }
    if args.window:
        k = whole.width * whole.height / (window.width * window.height)
        area = sum(stages[s].cpu for s in ("dem", "ortho", "lidar") if s in stages)
        fixed = sum(args.city_stages) if args.city_stages else float("nan")
        est = k * area + fixed
        print(
            f"{whole.name}: {k:.1f} x this window: {points * k / 1e9:.2f} billion points, about {size * k / 1e9:.1f} GB; "
            f"CPU about {k:.1f} x {area:.1f} (DEM, orthophoto, lidar) + {fixed:.1f} (footprints, BIM, mesh of city) = {est:.0f} s, "
            f"so about {est / (os.cpu_count() or 1) / 60:.1f} min on {os.cpu_count()} idle cores"
        )
        figures["estimate"] = {"preset": whole.name, "points": points * k, "bytes": size * k, "cpu": est}
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
