"""Planning analyses over 1 km² of a city's surface model: seconds per analysis.

Each analysis of :mod:`cim.analysis.service` (what ``/api/analysis/{kind}`` and ``cim analyse``
run, GeoJSON answer included) over the square kilometre around the median residential building
of the city: sunlight for every residential building meeting it (大寒, 8–16 h true solar time,
10-minute steps), the hourly shadow of the whole square, a line of sight across its diagonal, a
viewshed of the disc of the same area (r = 564 m), the skyline from its centre (2 km, 0.5°), the
height limit of the square, a flood of the square. Target: ≤ 1 s each on this 2-core machine. Wall and CPU seconds are both printed: on a shared
machine the CPU time of this (single-threaded) process is the steadier figure.

The surface model is built once (``cim analyse model``) from the recipe's sources, without the
tiles (``--recipe``, default the ``city`` preset the other benchmarks generate)::

    .venv/bin/python benchmarks/bench_analysis.py --recipe /work/lead/benchmarks/out/city/city.toml
    .venv/bin/python benchmarks/bench_analysis.py --model /tmp/cim-analysis-city --repeat 3 --json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

from cim.analysis.files import MODEL_DIR, build_model, load_model
from cim.analysis.service import run_analysis
from cim.analysis.sunlight import RESIDENTIAL


def _requests(model) -> tuple[dict[str, dict], dict[str, float]]:
    res = np.array([u is not None and str(u).lower() in RESIDENTIAL for u in model.prisms.uses])
    import shapely

    centres = shapely.get_coordinates(shapely.centroid(model.prisms.footprints[res]))
    cx, cy = np.median(centres[:, 0]), np.median(centres[:, 1])
    half = 500.0
    lon, lat = model.to_lonlat([cx - half, cx + half, cx + half, cx - half], [cy - half, cy - half, cy + half, cy + half])
    ring = [[float(a), float(b)] for a, b in zip(lon, lat)]
    centre = [float(lon.mean()), float(lat.mean())]
    r, c, _ = model.cells(np.array([cx]), np.array([cy]))
    ground = float(model.dem[r[0], c[0]])
    reqs = {
        "sunlight": {"area": ring, "date": "2026-01-20"},
        "shadow": {"area": ring, "date": "2026-01-20"},
        "sightline": {"from": [*ring[0], 1.6], "to": [*ring[2], 1.6]},
        "viewshed": {"observer": centre, "radius": 564},
        "skyline": {"viewpoint": centre},
        "heightlimit": {"zone": ring, "limit": 24},
        "flood": {"region": ring, "level": ground + 3.0},
    }
    return reqs, {"x": float(cx), "y": float(cy)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", type=Path, default=Path("/work/lead/benchmarks/out/city/city.toml"))
    ap.add_argument("--model", type=Path, default=Path("/tmp/cim-analysis-city"), help="Folder holding (or to hold) analysis/.")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not (args.model / MODEL_DIR / "model.json").is_file():
        t0 = time.perf_counter()
        args.model.mkdir(parents=True, exist_ok=True)
        build_model(args.recipe, args.model)
        print(f"surface model built in {time.perf_counter() - t0:.1f} s → {args.model / MODEL_DIR}")
    t0 = time.perf_counter()
    model = load_model(args.model)
    load_s = time.perf_counter() - t0
    rows, cols = model.shape
    reqs, where = _requests(model)
    print(
        f"model: {len(model.prisms):,} buildings, {rows:,} × {cols:,} cells of {model.res:g} m; "
        f"loaded in {load_s:.2f} s; 1 km² around ({where['x']:.0f}, {where['y']:.0f}); load average {os.getloadavg()[0]:.1f}"
    )
    results = {}
    for kind, req in reqs.items():
        times, cpu = [], []
        for _ in range(args.repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            answer = run_analysis(model, kind, req)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        size = len(json.dumps(answer))
        s = answer["summary"]
        note = {
            "sunlight": lambda s: f"{s['count']} residential buildings, {s['points']:,} façade points, {s['below_count']} below 2 h",
            "shadow": lambda s: f"{len(s['hours'])} hours, mean sun {s['mean_sun_hours']} h",
            "sightline": lambda s: f"visible={s['visible']}, {s['length']:.0f} m",
            "viewshed": lambda s: f"visible {s['visible_share'] * 100:.1f} %, {len(s['buildings'])} buildings seen",
            "skyline": lambda s: f"{len(s['azimuths'])} azimuths, {len(s['buildings'])} buildings form it",
            "heightlimit": lambda s: f"{s['checked']} buildings checked, {s['exceeding_count']} above 24 m",
            "flood": lambda s: f"{s['area_m2'] / 1e6:.3f} km² flooded, {s['buildings_count']} buildings reached",
        }[kind](s)
        results[kind] = {"best_s": min(times), "median_s": statistics.median(times), "cpu_s": min(cpu), "answer_bytes": size}
        print(
            f"{kind:12s} wall best {min(times):6.2f} s (median {statistics.median(times):6.2f} s)  cpu {min(cpu):6.2f} s  "
            f"answer {size / 1e6:5.2f} MB  {note}"
        )
    if args.json:
        print(
            json.dumps(
                {
                    "bench": "analysis",
                    "buildings": len(model.prisms),
                    "res": model.res,
                    "load_average": os.getloadavg()[0],
                    "results": results,
                }
            )
        )


if __name__ == "__main__":
    main()
