"""Query latency of the planner query service (issue 13) on a built city.

Generates the buildings of a preset of the sample city (``--preset city``: about 78,000, with
Chinese names and addresses; only the footprint file, not the whole sample), converts them once
(``cim.convert("buildings", ...)``, which writes ``search.sqlite`` with the feature store), then
times:

- the feature store's share of the build: the index written with and without the footprints
  (WKB, points inside, areas) and the schema, on the same rows, best of ``--repeat``;
- loading the store (first query after a server start);
- 1,000 seeded mixed queries, each one page of 50 JSON results as ``/api/query`` renders them
  (``cim.query.output.render``, in process: no HTTP): Chinese substrings of 1–6 characters,
  Latin words (a fifth of them misspelt: the fuzzy path), polygons, point + radius, combined
  conditions, box + condition; p50/p99/max overall and per kind. Target: p99 ≤ 50 ms.

Usage::

    .venv/bin/python benchmarks/bench_query.py                 # city preset, into /tmp/cim-bench-query
    .venv/bin/python benchmarks/bench_query.py --preset district --json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

__all__ = ["main"]


def make_buildings(preset: str, folder: Path) -> Path:
    """Just the preset's footprint file (as ``cim sample`` writes it)."""
    from cim.samplecity import generate as g
    from cim.samplecity.buildings import attributes, generate_footprints

    gpkg = folder / f"{preset}-buildings.gpkg"
    if gpkg.exists():
        return gpkg
    p = g.PRESETS[preset]
    cx, cy = g.CENTRE_E + p.dx, g.CENTRE_N + p.dy
    xmin, ymin = round(cx - p.width / 2), round(cy - p.height / 2)
    geoms, cols = generate_footprints(xmin, ymin, xmin + p.width, ymin + p.height, 0)
    g._write_footprints(gpkg, geoms, attributes(geoms, cols, g.CENTRE_E, 0))
    return gpkg


def index_cost(gpkg: Path, repeat: int) -> dict[str, float]:
    """Seconds to write the index of the same rows with and without the feature store's parts."""
    from cim.layers.buildings import BuildingsOptions, origin_for, prepare_buildings, search_rows
    from cim.searchindex import write_search_index
    from cim.sources.footprints import read_footprints

    table = read_footprints(gpkg)
    prep = prepare_buildings(table, origin_for(table), BuildingsOptions())
    rows = search_rows("buildings", table, prep)
    bare = dataclasses.replace(rows, rings=None, areas=None)
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, r in (("without", bare), ("with", rows)):
            best = float("inf")
            for k in range(repeat):
                t0 = time.perf_counter()
                write_search_index(Path(tmp) / f"{name}{k}.sqlite", [r])
                best = min(best, time.perf_counter() - t0)
            out[name] = best
            out[f"{name}_bytes"] = (Path(tmp) / f"{name}0.sqlite").stat().st_size
    return out


def queries(store, n: int, seed: int) -> list[tuple[str, object]]:  # type: ignore[no-untyped-def]
    """A seeded mix of queries around the city's own buildings."""
    from cim.query import Query

    rnd = random.Random(seed)
    b = np.flatnonzero(store.layer == "buildings")
    names, addresses, english = store.columns["name"], store.columns["address"], store.columns["name_en"]
    uses = sorted({u for u in store.columns["use"][b].tolist() if u})
    kinds = ["chinese"] * 30 + ["latin"] * 10 + ["polygon"] * 20 + ["where"] * 20 + ["radius"] * 10 + ["bbox_where"] * 10
    out: list[tuple[str, object]] = []
    for _ in range(n):
        kind = rnd.choice(kinds)
        i = int(b[rnd.randrange(len(b))])
        lon, lat = float(store.anchor[i, 0]), float(store.anchor[i, 1])
        if kind == "chinese":
            text = str(rnd.choice([names[i], addresses[i]]))
            size = rnd.randint(1, 6)
            start = rnd.randrange(max(1, len(text) - size))
            q = Query(text=text[start : start + size])
        elif kind == "latin":
            word = str(english[i])
            if rnd.random() < 0.2:  # a typo: one letter dropped
                k = rnd.randrange(1, len(word) - 1)
                word = word[:k] + word[k + 1 :]
            q = Query(text=word)
        elif kind == "polygon":
            r = rnd.uniform(0.002, 0.008)  # about 200-800 m
            corners = rnd.randint(3, 8)
            angles = sorted(rnd.uniform(0, 2 * np.pi) for _ in range(corners))
            coords = [c for a in angles for c in (lon + r * np.cos(a), lat + 0.8 * r * np.sin(a))]
            q = Query(polygon=coords)
        elif kind == "where":
            template = rnd.choice(
                [
                    "height > {h} AND use = '{u}'",
                    "year_built BETWEEN {y} AND {y2}",
                    "(use = '{u}' OR floors >= {f}) AND NOT district = '秦州区'",
                    "use IN ('{u}', 'commercial') AND height <= {h}",
                ]
            )
            y = rnd.randint(1960, 2015)
            q = Query(where=template.format(h=rnd.randint(10, 80), u=rnd.choice(uses), y=y, y2=y + 10, f=rnd.randint(3, 20)))
        elif kind == "radius":
            q = Query(point=(lon, lat), radius=rnd.uniform(50, 500))
        else:
            d = rnd.uniform(0.002, 0.01)
            q = Query(bbox=(lon - d, lat - d, lon + d, lat + d), where=f"floors > {rnd.randint(1, 10)}")
        out.append((kind, q))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="city", choices=["tiny", "district", "city"])
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "cim-bench-query")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--repeat", type=int, default=2, help="Index writes per variant (best taken).")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import cim
    from cim.query import open_store
    from cim.query.output import render
    from cim.runtime import process_policy

    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    gpkg = make_buildings(args.preset, args.work)
    generated = time.perf_counter() - t0
    city = args.work / f"{args.preset}-city"
    shutil.rmtree(city, ignore_errors=True)
    with process_policy(fork=True, pause_gc=True):
        t0 = time.perf_counter()
        report = cim.convert("buildings", gpkg, city)
        built = time.perf_counter() - t0
    cost = index_cost(gpkg, args.repeat)
    t0 = time.perf_counter()
    store = open_store(city)
    loaded = time.perf_counter() - t0

    mix = queries(store, args.queries, args.seed)
    for _, q in mix[:20]:  # warm: first calls compile regexes, fill SQLite's page cache
        render(store, q, "json", 50, 0)
    times: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    totals: list[int] = []
    for kind, q in mix:
        t, c = time.perf_counter(), time.thread_time()
        _, total, _ = render(store, q, "json", 50, 0)
        cpu.setdefault(kind, []).append((time.thread_time() - c) * 1000.0)
        times.setdefault(kind, []).append((time.perf_counter() - t) * 1000.0)
        totals.append(total)
    every = np.concatenate([np.array(v) for v in times.values()])
    every_cpu = np.concatenate([np.array(v) for v in cpu.values()])

    def pct(values: np.ndarray | list[float]) -> dict[str, float]:
        a = np.asarray(values)
        return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)), "max": float(a.max()), "n": len(a)}

    result = {
        "preset": args.preset,
        "features": len(store),
        "generate_s": generated,
        "convert_s": built,
        "layer_s": report.layers[0].seconds,
        "index_s_without_store": cost["without"],
        "index_s_with_store": cost["with"],
        "index_bytes_without_store": cost["without_bytes"],
        "index_bytes_with_store": cost["with_bytes"],
        "store_load_s": loaded,
        "all": pct(every),
        "all_cpu": pct(every_cpu),
        "by_kind": {k: pct(v) for k, v in sorted(times.items())},
        "by_kind_cpu": {k: pct(v) for k, v in sorted(cpu.items())},
        "load_average": os.getloadavg()[0],
        "median_total": float(np.median(totals)),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.preset}: {len(store):,} features; convert {built:.1f} s (layer {report.layers[0].seconds:.1f} s)")
    print(
        f"  index written alone: {cost['without']:.2f} s without the feature store, {cost['with']:.2f} s with it "
        f"(+{cost['with'] - cost['without']:.2f} s); {cost['without_bytes'] / 1e6:.1f} MB → {cost['with_bytes'] / 1e6:.1f} MB"
    )
    print(f"  store load (first query after start): {loaded:.2f} s")
    a, c = result["all"], result["all_cpu"]
    print(
        f"  {len(every)} queries, one page of 50 JSON results each (load average {result['load_average']:.1f}): "
        f"wall p50 {a['p50']:.1f} ms, p99 {a['p99']:.1f} ms, max {a['max']:.1f} ms; "
        f"CPU p50 {c['p50']:.1f} ms, p99 {c['p99']:.1f} ms (target p99 ≤ 50 ms)"
    )
    for kind, w in result["by_kind"].items():
        k = result["by_kind_cpu"][kind]
        print(
            f"    {kind:<11} n={w['n']:<4} wall p50 {w['p50']:6.1f} p99 {w['p99']:6.1f} max {w['max']:6.1f} ms | CPU p50 {k['p50']:6.1f} p99 {k['p99']:6.1f} ms"
        )


if __name__ == "__main__":
    main()
