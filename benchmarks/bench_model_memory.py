"""The surface model's build alone: peak memory and CPU seconds of ``build_model``.

``cim.analysis.files.build_model`` (what ``cim build`` runs last, for ``CITY/analysis/``) on a
recipe, in this process: its peak RSS (``ru_maxrss``, the process's whole life; the RSS before
the build is printed beside it), CPU and wall seconds, and a digest of every file it wrote (to
compare two versions of the code: the files must be the same bytes). The build needs only the
recipe's sources (terrain, buildings, BIM layers), not its tiles; a recipe of those three layers
of the survey's sources (``/work/survey/src``, its ``city.toml`` without the other layers, the
paths made absolute) measures the 1 m, 120 M-cell grid::

    .venv/bin/python benchmarks/bench_model_memory.py /work/lead/benchmarks/out/city/city.toml /tmp/cim-model-city
    .venv/bin/python benchmarks/bench_model_memory.py scratch/survey.toml /tmp/cim-model-survey --json
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

from cim.analysis.files import MODEL_DIR, build_model
from cim.versions import _file_digest as _digest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipe", type=Path)
    ap.add_argument("city_dir", type=Path, help="where analysis/ is written")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    from cim.recipe import load_recipe

    recipe = load_recipe(args.recipe)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    cpu0, wall0 = time.process_time(), time.perf_counter()
    model = build_model(recipe, args.city_dir)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    files = {p.name: {"bytes": p.stat().st_size, "sha256": _digest(p)} for p in sorted((args.city_dir / MODEL_DIR).iterdir())}
    rows, cols = model.shape
    result = {
        "cells": rows * cols,
        "buildings": len(model.prisms),
        "rss_before_mb": round(before / 1e6),
        "peak_rss_mb": round(peak / 1e6),
        "cpu_s": round(cpu, 2),
        "wall_s": round(wall, 2),
        "files": files,
    }
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(
        f"build_model: {rows:,} x {cols:,} cells, {len(model.prisms):,} buildings: peak RSS {result['peak_rss_mb']:,} MB "
        f"(before {result['rss_before_mb']:,} MB), {cpu:.1f} CPU s, {wall:.1f} s"
    )
    for name, f in files.items():
        print(f"  {name:22} {f['bytes']:>12,} B  {f['sha256'][:16]}")


if __name__ == "__main__":
    main()
