"""``cim sample`` stage by stage: wall and CPU seconds of each stage of the generator.

CPU is this process's user + system time plus its reaped children's. The lidar's worker
processes are the forkserver's children, not this process's, so by default the lidar runs in
this process (``--lidar-workers 1``: its CPU counted, its wall time that of one core); the BIM
models of ``district`` and larger are written in a second process (the same), so their CPU is
timed again here in this process after the run (``--no-bim-again`` to skip). Compare runs of the
same preset under the same load: the machine's load average is printed before and after.

    .venv/bin/python benchmarks/bench_sample.py district /tmp/sample-district
    .venv/bin/python benchmarks/bench_sample.py city /tmp/sample-city --lidar-workers 0   # lidar in parallel (its CPU not counted)
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import tempfile
from pathlib import Path

import cim.samplecity.generate as generate

__all__ = ["main"]

STAGES = [
    "_write_dem",
    "generate_footprints",
    "attributes",
    "_write_footprints",
    "write_orthophoto",
    "_write_bim",
    "write_sample_pointcloud",
    "write_sample_mesh",
]


def _cpu(t0: os.times_result, t1: os.times_result) -> float:
    return (t1.user - t0.user) + (t1.system - t0.system) + (t1.children_user - t0.children_user) + (t1.children_system - t0.children_system)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("preset", choices=list(generate.PRESETS))
    ap.add_argument("out", type=Path, help="folder to write the sources to (emptied first)")
    ap.add_argument("--lidar-workers", type=int, default=1, help="lidar worker processes (0: the generator's default)")
    ap.add_argument("--no-bim-again", action="store_true", help="do not time the BIM models again in this process")
    args = ap.parse_args()
    rows: list[tuple[str, float, float]] = []

    def timed(name: str, fn):  # type: ignore[no-untyped-def]
        @functools.wraps(fn)
        def run(*a, **k):  # type: ignore[no-untyped-def]
            t0 = os.times()
            result = fn(*a, **k)
            t1 = os.times()
            rows.append((name, t1.elapsed - t0.elapsed, _cpu(t0, t1)))
            return result

        return run

    for name in STAGES:
        fn = getattr(generate, name)
        if name == "write_sample_pointcloud" and args.lidar_workers > 0:
            fn = functools.partial(fn, workers=args.lidar_workers)
        setattr(generate, name, timed(name, fn))
    shutil.rmtree(args.out, ignore_errors=True)
    print(f"load average before: {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)")
    t0 = os.times()
    generate.sample(args.preset, args.out)
    t1 = os.times()
    for name, wall, cpu in rows:
        print(f"{name:26s} wall {wall:7.1f} s  cpu {cpu:7.1f} s")
    print(f"{'total':26s} wall {t1.elapsed - t0.elapsed:7.1f} s  cpu {_cpu(t0, t1):7.1f} s  (the BIM process's CPU not included)")
    if not args.no_bim_again and not any(name == "_write_bim" for name, _, _ in rows):
        with tempfile.TemporaryDirectory() as tmp:
            p = generate.PRESETS[args.preset]
            # the BIM ran in the other process: write its models again here, timed
            from cim.samplecity.buildings import attributes, generate_footprints
            from cim.samplecity.terrain import CENTRE_E, CENTRE_N

            cx, cy = CENTRE_E + p.dx, CENTRE_N + p.dy
            xmin, ymin = round(cx - p.width / 2), round(cy - p.height / 2)
            geoms, cols = generate_footprints(xmin, ymin, xmin + p.width, ymin + p.height, 0)
            attrs = attributes(geoms, cols, CENTRE_E, 0)
            b0 = os.times()
            generate._write_bim(Path(tmp), geoms, attrs, args.out / "data" / "dem.tif", p, 0)
            b1 = os.times()
            print(f"{'_write_bim (again, here)':26s} wall {b1.elapsed - b0.elapsed:7.1f} s  cpu {_cpu(b0, b1):7.1f} s")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
