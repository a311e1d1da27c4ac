"""Incremental rebuilds: a full ``cim build`` of the sample city, then rebuilds after one edit.

Copies the preset's sources into a scratch folder (the shared sample is never written), builds
the city (``cim build``, a child process), then:

1. grows the footprints of one district by 10 % and raises them 3 m, and rebuilds;
2. replaces one LAZ tile by a copy with other intensities and rebuilds;

and prints, per build, the wall time, the files made (encoded: a tile whose inputs are those of
the previous build is kept, not made) and the files rewritten (made with other bytes) out of
the files in all, per layer (from the version each build records), and checks that the city
after the last rebuild is the clean full build of the edited sources, file for file
(``--no-check`` skips that last full build). ``--layers buildings,lidar`` keeps only those
layers of the recipe (a shorter run on a busy machine; ``--origin`` then pins the city's frame).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"


def ensure_sources(preset: str) -> Path:
    recipe = OUT / preset / "city.toml"
    if not recipe.exists():
        print(f"generating the {preset} preset into {recipe.parent} (once)...", flush=True)
        subprocess.run([sys.executable, "-m", "cim", "sample", "--preset", preset, str(recipe.parent)], check=True)
    return recipe


def build(recipe: Path, out: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cim", "build", str(recipe), "--out", str(out), "-q"], check=True)
    return time.perf_counter() - t0


def edit_district(gpkg: Path) -> tuple[str, int]:
    """Grow the footprints of one district by 10 % and raise them 3 m; returns (district, count).

    The smallest value of the ``district`` attribute, or, when the sample has a single one, the
    south-west sixteenth of the city (a block of the size of a district of the full city)."""
    import numpy as np
    import pyogrio.raw
    import shapely

    meta, _, geometry, fields = pyogrio.raw.read(gpkg)
    names = list(meta["fields"])
    district = fields[names.index("district")]
    counts = collections.Counter(district.tolist())
    shapes = shapely.from_wkb(geometry)
    if len(counts) > 1:
        name = str(min(counts, key=lambda k: (counts[k], str(k))))
        chosen = district == name
    else:
        xy = shapely.get_coordinates(shapely.centroid(shapes))
        lo, hi = xy.min(axis=0), xy.max(axis=0)
        chosen = np.all(xy < lo + (hi - lo) / 4, axis=1)
        name = "south-west sixteenth"
    shapes[chosen] = np.array([shapely.affinity.scale(g, 1.1, 1.1) for g in shapes[chosen]], dtype=object)
    height = fields[names.index("height")].astype(float)
    height[chosen] += 3.0
    fields[names.index("height")] = height
    tmp = gpkg.with_name("edited.gpkg")
    pyogrio.raw.write(
        tmp, shapely.to_wkb(shapes), fields, fields=names, crs=meta["crs"], geometry_type=meta["geometry_type"], layer="buildings"
    )
    os.replace(tmp, gpkg)
    return name, int(np.count_nonzero(chosen))


def reintensify(laz: Path) -> None:
    import laspy
    import numpy as np

    las = laspy.read(laz)
    las.intensity = (np.asarray(las.intensity, dtype=np.int64) * 7 + 11) % 65535
    tmp = laz.with_name("edited.laz")
    las.write(tmp)
    os.replace(tmp, laz)


def last_version(out: Path) -> dict:
    records = sorted((out / ".cim" / "versions").glob("*.json"))
    return json.loads(records[-1].read_text())


def counts(out: Path) -> dict[str, tuple[int, int, int, float]]:
    """Per layer of the last build: (files made, files rewritten, files, seconds)."""
    return {k: (v.get("made", v["files"]), v["rewritten"], v["files"], v["seconds"]) for k, v in last_version(out)["layers"].items()}


def keep_layers(recipe: str, ids: set[str]) -> str:
    """The recipe's text with only the ``[[layers]]`` tables whose id is in ``ids``."""
    head, *tables = recipe.split("[[layers]]")
    kept = [
        t
        for t in tables
        if any(line.split("=", 1)[1].split("#")[0].strip().strip('"') in ids for line in t.splitlines() if line.startswith("id "))
    ]
    return head + "".join("[[layers]]" + t for t in kept)


def named_paths(recipe: str) -> list[str]:
    """The relative paths a recipe's ``source`` and ``dem`` keys name (what a trimmed recipe needs)."""
    out = []
    for line in recipe.splitlines():
        key, _, value = line.partition("=")
        if key.strip() in ("source", "dem") and value:
            out.append(value.split("#")[0].strip().strip('"'))
    return out


#: JSON keys that measure the run (a BIM model's tileset and city.json carry them), and a layer's
#: bytes in city.json (a BIM model's tileset holds its timings: their text changes its size)
TIMING = {"seconds", "kernel_peak_mb", "kernel_processes", "bytes"}


def _untimed(doc: object) -> object:
    if isinstance(doc, dict):
        return {k: _untimed(v) for k, v in doc.items() if k not in TIMING}
    if isinstance(doc, list):
        return [_untimed(v) for v in doc]
    return doc


def same_city(a: Path, b: Path) -> list[str]:
    """Files that differ between two built cities (the timings JSON files carry and SQLite pages
    aside, as in tests/test_determinism.py)."""

    def files(root: Path) -> set[str]:
        rels = (p.relative_to(root) for p in root.rglob("*") if p.is_file())
        return {r.as_posix() for r in rels if not any(part.startswith(".") for part in r.parts)}  # builds' logs, versions

    def rows(p: Path) -> list[str]:
        con = sqlite3.connect(p)
        try:
            return list(con.iterdump())
        finally:
            con.close()

    fa, fb = files(a), files(b)
    differ = sorted(fa ^ fb)
    for rel in sorted(fa & fb):
        x, y = (a / rel).read_bytes(), (b / rel).read_bytes()
        if x == y:
            continue
        if rel.endswith(".sqlite"):
            if rows(a / rel) != rows(b / rel):
                differ.append(rel)
        elif not rel.endswith(".json") or _untimed(json.loads(x)) != _untimed(json.loads(y)):
            differ.append(rel)
    return differ


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--preset", default="district", choices=["tiny", "district", "city"])
    ap.add_argument("--no-check", action="store_true", help="skip the clean full build that checks the result")
    ap.add_argument("--json", action="store_true", help="also print one JSON line")
    ap.add_argument("--sources", type=Path, default=None, help="a sample city's folder (city.toml, data/), read only")
    ap.add_argument("--layers", default=None, help="comma-separated layer ids to keep (default: all)")
    ap.add_argument(
        "--origin",
        default=None,
        help="LON,LAT,HEIGHT: fix the city's frame (a trimmed recipe's first layer would otherwise take it from its own "
        "extent, which an edit at the edge moves, and every tile with it)",
    )
    args = ap.parse_args()
    recipe = args.sources / "city.toml" if args.sources else ensure_sources(args.preset)
    with tempfile.TemporaryDirectory(prefix="bench-incremental-") as scratch:
        work = Path(scratch)
        text = recipe.read_text(encoding="utf-8")
        if args.layers:
            text = keep_layers(text, set(args.layers.split(",")))
            for rel in named_paths(text):  # only what the kept layers read
                (work / rel).parent.mkdir(parents=True, exist_ok=True)
                (shutil.copytree if (recipe.parent / rel).is_dir() else shutil.copy)(recipe.parent / rel, work / rel)
        else:
            shutil.copytree(recipe.parent / "data", work / "data")
        if args.origin:
            text = text.replace("[city]\n", f"[city]\norigin = [{args.origin}]\n", 1)
        (work / "city.toml").write_text(text, encoding="utf-8")
        out = work / "city"
        rows: list[dict] = []

        def record(step: str, seconds: float) -> None:
            layers = counts(out)
            total = sum(t for _, _, t, _ in layers.values())
            made = sum(m for m, _, _, _ in layers.values())
            done = sum(r for _, r, _, _ in layers.values())
            rows.append({"step": step, "seconds": round(seconds, 2), "made": made, "rewritten": done, "files": total, "layers": layers})
            per_layer = ", ".join(f"{k} {m}/{r}/{t} {sec:.1f} s" for k, (m, r, t, sec) in layers.items())
            print(
                f"{step:<28} {seconds:7.1f} s   files made {made:>6,}, rewritten {done:>6,} / {total:<6,}  (made/rewritten/all, seconds: {per_layer})",
                flush=True,
            )

        record("full build", build(work / "city.toml", out))
        district, n = edit_district(work / "data" / "buildings.gpkg")
        record(f"one district ({n} bldgs)", build(work / "city.toml", out))
        lazs = sorted((work / "data" / "lidar").glob("*.laz"))
        if lazs:
            reintensify(lazs[len(lazs) // 2])
            record("one LAZ tile replaced", build(work / "city.toml", out))
        check = None
        if not args.no_check:
            clean = work / "clean"
            seconds = build(work / "city.toml", clean)
            check = same_city(out, clean)
            print(f"{'clean build of the result':<28} {seconds:7.1f} s   differing files: {len(check)} {check[:5]}")
        if args.json:
            print(json.dumps({"preset": args.preset, "district": district, "steps": rows, "differing": check}))


if __name__ == "__main__":
    main()
