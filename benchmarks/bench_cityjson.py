"""CityJSON end to end (file → tiles on disk) on a synthetic LoD2 city, as CityJSON and as
CityJSONSeq.

The city is a grid of gabled houses (CityJSON 2.0, EPSG:7415 coordinates in Rotterdam): each a
Solid of a ground, two roof quads, two rectangular walls and two pentagonal gable walls (earcut),
with semantics and five attributes, plus a LoD 1.2 box. Each run is a fresh child process
converting into an empty folder; it prints objects/s and surfaces/s for the layer's own time, the
time reading took (to the first progress report), bytes per object and peak memory (RSS).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out" / "cityjson"

CHILD = r"""
import json, sys, time
import cim
from cim.runtime import process_policy
read = []
def progress(stage, done, total):
    if stage.endswith("triangulate") and not read:
        read.append(time.perf_counter())
with process_policy(fork=True, pause_gc=True):
    t0 = time.perf_counter()
    report = cim.convert("cityjson", sys.argv[1], sys.argv[2], progress=progress)
layer = report.layers[0]
print(json.dumps({"wall": layer.seconds, "read": read[0] - t0, "count": layer.count, "tiles": layer.tiles, "triangles": layer.triangles, "bytes": layer.bytes}))
"""


def house(x: float, y: float, v: list[list[int]]) -> tuple[dict, dict]:
    """A gabled house (LoD 2.2) and its box (LoD 1.2) at (x, y) metres; vertices in mm."""
    b = len(v)
    w, d, h, r = 8.0, 10.0, 6.0, 9.0
    pts = [(0, 0, 0), (w, 0, 0), (w, d, 0), (0, d, 0), (0, 0, h), (w, 0, h), (w, d, h), (0, d, h), (w / 2, 0, r), (w / 2, d, r)]
    pts += [(0, 0, r - 1), (w, 0, r - 1), (w, d, r - 1), (0, d, r - 1)]
    v += [[round((x + px) * 1000), round((y + py) * 1000), round(pz * 1000)] for px, py, pz in pts]
    g = [[b + 0, b + 3, b + 2, b + 1]]
    roof = [[b + 4, b + 8, b + 9, b + 7], [b + 5, b + 6, b + 9, b + 8]]
    walls = [[b + 1, b + 2, b + 6, b + 5], [b + 3, b + 0, b + 4, b + 7]]
    gables = [[b + 0, b + 1, b + 5, b + 8, b + 4], [b + 2, b + 3, b + 7, b + 9, b + 6]]
    lod22 = {
        "type": "Solid",
        "lod": "2.2",
        "boundaries": [[[s] for s in [g[0], *roof, *walls, *gables]]],
        "semantics": {
            "surfaces": [{"type": "GroundSurface"}, {"type": "RoofSurface"}, {"type": "WallSurface"}],
            "values": [[0, 1, 1, 2, 2, 2, 2]],
        },
    }
    box = [[b + 0, b + 3, b + 2, b + 1], [b + 10, b + 11, b + 12, b + 13]]
    box += [[b + 0, b + 1, b + 11, b + 10], [b + 1, b + 2, b + 12, b + 11], [b + 2, b + 3, b + 13, b + 12], [b + 3, b + 0, b + 10, b + 13]]
    lod12 = {"type": "Solid", "lod": "1.2", "boundaries": [[[s] for s in box]]}
    return lod12, lod22


def synthetic_city(n: int) -> dict:
    v: list[list[int]] = []
    objects = {}
    side = int(n**0.5) + 1
    for i in range(n):
        lod12, lod22 = house((i % side) * 15.0, (i // side) * 15.0, v)
        objects[f"house-{i:06d}"] = {
            "type": "Building",
            "attributes": {"name": f"House {i}", "storeys": 2, "height": 9.0, "listed": i % 7 == 0, "use": "residential"},
            "geometry": [lod12, lod22],
        }
    return {
        "type": "CityJSON",
        "version": "2.0",
        "transform": {"scale": [0.001, 0.001, 0.001], "translate": [90000.0, 435000.0, 0.0]},
        "metadata": {"referenceSystem": "https://www.opengis.net/def/crs/EPSG/0/7415"},
        "CityObjects": objects,
        "vertices": v,
    }


def to_seq(doc: dict) -> str:
    header = {k: doc[k] for k in ("type", "version", "transform", "metadata")} | {"CityObjects": {}, "vertices": []}
    lines = [json.dumps(header)]
    for oid, obj in doc["CityObjects"].items():
        used: dict[int, int] = {}

        def renumber(b, used=used):
            return [renumber(x) for x in b] if isinstance(b, list) else used.setdefault(b, len(used))

        geoms = [{**g, "boundaries": renumber(g["boundaries"])} for g in obj["geometry"]]
        vertices = [doc["vertices"][i] for i in sorted(used, key=used.get)]
        lines.append(
            json.dumps({"type": "CityJSONFeature", "id": oid, "CityObjects": {oid: {**obj, "geometry": geoms}}, "vertices": vertices})
        )
    return "\n".join(lines) + "\n"


def run_once(source: Path, dest: Path) -> dict:
    shutil.rmtree(dest, ignore_errors=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.run([sys.executable, "-c", CHILD, str(source), str(dest)], capture_output=True, text=True, check=True)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["peak_mb"] = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before) / 1024
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--buildings", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    print(f"{'input':<28}{'objects/s':>12}{'surfaces/s':>12}{'read s':>9}{'layer s':>9}{'B/object':>10}{'tiles':>7}{'peak MB':>9}")
    for n in args.buildings:
        doc = synthetic_city(n)
        src = OUT / f"houses-{n}.city.json"
        src.write_text(json.dumps(doc))
        seq = OUT / f"houses-{n}.city.jsonl"
        seq.write_text(to_seq(doc))
        for source in (src, seq):
            runs = [run_once(source, OUT / f"tiles-{source.name}") for _ in range(args.runs)]
            best = min(runs, key=lambda r: r["wall"])
            med = statistics.median(r["wall"] for r in runs)
            print(
                f"{source.name + f' ({source.stat().st_size / 1e6:.0f} MB)':<28}{n / best['wall']:>12,.0f}{7 * n / best['wall']:>12,.0f}"
                f"{best['read']:>9.2f}{best['wall']:>9.2f}{best['bytes'] / n:>10,.0f}{best['tiles']:>7}{best['peak_mb']:>9.0f}"
                f"   (median {med:.2f} s)"
            )


if __name__ == "__main__":
    main()
