"""Point clouds end to end, cim beside py3dtiles, on synthetic LAS files of the sample city.

For each size (10 M and 30 M points by default) it writes one LAS file of the ``district`` preset
with :func:`cim.samplecity.pointcloud.write_sample_pointcloud` (into ``benchmarks/out/``, once),
then runs, each in a fresh process:

- the floor: laspy reading the same file (chunked, no work), points/s;
- cim: :func:`cim.convert` (what ``cim convert pointcloud`` runs, with its process policy and exit) with
  2 workers, ``--repeat`` times
  (the best wall is reported with the median: the machine is shared);
- py3dtiles 12 (``py3dtiles convert --srs_in 4544 --srs_out 4978 --pyproj-always-xy
  --spec-version 1.1 --jobs 2``): EPSG:4544 declares northing first, so without always-xy
  py3dtiles puts Tianshui near 4° N 134° E.

It prints wall time (of the whole process: imports included), points/s, the CPU time of the
run (user + system of every thread and process: a cost the machine's other load does not inflate
much), how busy other work kept the cores during the run, peak memory summed over every process
of the run (the RSS of the process tree, polled from /proc every 20 ms; forked workers count the
pages they share), output bytes/point and the ratios to py3dtiles.

The points are the sample city's survey (coloured from its orthophoto, 16-bit intensities with
scanner noise); files written by an older generator are not rewritten (delete them to refresh).

py3dtiles pins numpy < 2.4 and numba < 0.64, which would downgrade the project's environment:
it is installed into its own virtualenv, ``benchmarks/out/py3dtiles-venv`` (benchmark only,
never a cim dependency). ``--kernels`` adds the measurement behind cim's numba kernels: the same
per-point passes written with numpy.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
PY3DTILES_VENV = OUT / "py3dtiles-venv"
PRESET = "district"
SURVEY_TILE = 500.0

CIM_CHILD = r"""
import gc, json, resource, sys, time
import cim
from cim.runtime import process_policy
if __name__ == "__main__":
    # what `cim convert pointcloud LAS OUT` runs (GC paused during the build, frozen before exit)
    t0 = time.perf_counter()
    with process_policy(fork=True, pause_gc=True):
        r = cim.convert("pointcloud", [sys.argv[1]], sys.argv[2], workers=int(sys.argv[3])).layers[0]
    u = resource.getrusage(resource.RUSAGE_SELF)  # every thread of the build, imports included
    print(json.dumps({"wall": time.perf_counter() - t0, "points": r.count, "tiles": r.tiles, "bytes": r.bytes,
                      "user": u.ru_utime, "sys": u.ru_stime}))
    gc.freeze()
"""

FLOOR_CHILD = r"""
import json, sys, time, laspy
t0 = time.perf_counter()
n = 0
with laspy.open(sys.argv[1]) as f:
    for pts in f.chunk_iterator(1 << 20):
        n += len(pts)
print(json.dumps({"wall": time.perf_counter() - t0, "points": n}))
"""


# --- measuring a process tree -----------------------------------------------------------------


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d))
    return kids


def _tree(root: int) -> tuple[int, dict[int, int]]:
    """RSS summed over a process tree (bytes), and each process's CPU time so far (ticks)."""
    kids = _children()
    todo, total, cpu = [root], 0, {}
    while todo:
        pid = todo.pop()
        todo += kids.get(pid, [])
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            cpu[pid] = int(fields[11]) + int(fields[12])  # utime + stime
        except (OSError, IndexError, ValueError):
            pass
    return total, cpu


def _machine_ticks() -> tuple[int, int]:
    """(busy, all) clock ticks of the machine's cores so far (/proc/stat)."""
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return sum(ticks) - idle, sum(ticks)


def run_measured(cmd: list[str], env: dict | None = None) -> dict:
    """Run a command: wall time, the peak of the RSS summed over its process tree, the CPU
    time of the tree (the last value seen of each process: a load-independent cost), and how
    busy other work kept the machine's cores meanwhile (the machine is shared: a wall time
    measured while others ran says little)."""
    b0 = _machine_ticks()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak = 0
    cpu: dict[int, int] = {}
    stop = threading.Event()

    def poll() -> None:
        nonlocal peak
        while not stop.is_set():
            rss, ticks = _tree(proc.pid)
            peak = max(peak, rss)
            for pid, t in ticks.items():
                cpu[pid] = max(cpu.get(pid, 0), t)
            time.sleep(0.02)

    th = threading.Thread(target=poll, daemon=True)
    th.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    stop.set()
    th.join()
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd[:3])}... failed:\n{err[-3000:]}")
    cpu_s = sum(cpu.values()) / os.sysconf("SC_CLK_TCK")
    b1 = _machine_ticks()
    others = max(0.0, (b1[0] - b0[0]) - sum(cpu.values())) / max(1, b1[1] - b0[1])
    return {"process_wall": wall, "peak_rss_mb": peak / 2**20, "cpu_s": cpu_s, "others_busy": others, "stdout": out, "stderr": err}


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# --- inputs and peers -------------------------------------------------------------------------


def ensure_city() -> Path:
    root = OUT / PRESET
    if not (root / "city.toml").exists():
        import cim

        print(f"generating the {PRESET} preset into {root} (once)...", flush=True)
        cim.sample(PRESET, root)
    return root


def ensure_las(points: int) -> Path:
    """One LAS file of about ``points`` points over the preset (survey tiles written one after
    the other, as a merged survey)."""
    root = ensure_city()
    name = f"{PRESET}-{points // 1_000_000}M.las"
    path = root / "lidar" / name
    if path.exists():
        return path
    import rasterio

    from cim.samplecity.pointcloud import write_sample_pointcloud

    with rasterio.open(root / "data" / "dem.tif") as ds:
        b = ds.bounds
    area = (b.right - b.left) * (b.top - b.bottom)
    print(f"writing {path} ({points:,} points, once)...", flush=True)
    t0 = time.perf_counter()
    write_sample_pointcloud(
        path.parent,
        (b.left, b.bottom, b.right, b.top),
        root / "data" / "dem.tif",
        root / "data" / "buildings.gpkg",
        root / "data" / "ortho.tif",
        points / area * 1.02,
        SURVEY_TILE,
        0,
        compress=False,
        merge=name,
    )
    print(f"  {time.perf_counter() - t0:.0f} s", flush=True)
    return path


def ensure_py3dtiles() -> Path:
    exe = PY3DTILES_VENV / "bin" / "py3dtiles"
    if not exe.exists():
        print(f"installing py3dtiles 12 into {PY3DTILES_VENV} (once; its pins would downgrade the project venv)...", flush=True)
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(PY3DTILES_VENV)], check=True)
        subprocess.run([str(PY3DTILES_VENV / "bin" / "pip"), "install", "-q", "py3dtiles[las]>=12,<13"], check=True)
    return exe


# --- runs -------------------------------------------------------------------------------------


def run_floor(las: Path) -> dict:
    r = run_measured([sys.executable, "-c", FLOOR_CHILD, str(las)])
    res = json.loads(r["stdout"].strip().splitlines()[-1])
    return {**res, "peak_rss_mb": r["peak_rss_mb"], "cpu_s": r["cpu_s"]}


def run_cim(las: Path, workers: int, repeat: int = 1) -> dict:
    """The best (shortest wall) of ``repeat`` fresh builds, with the median wall beside it."""
    dest = OUT / f"{las.stem}-cim"
    runs = []
    for _ in range(repeat):
        shutil.rmtree(dest, ignore_errors=True)
        r = run_measured([sys.executable, "-c", CIM_CHILD, str(las), str(dest), str(workers)])
        res = json.loads(r["stdout"].strip().splitlines()[-1])
        runs.append(
            {
                **res,
                "process_wall": r["process_wall"],
                "peak_rss_mb": r["peak_rss_mb"],
                "cpu_s": res["user"] + res["sys"],
                "others_busy": r["others_busy"],
                "out_bytes": dir_bytes(dest),
            }
        )
    walls = sorted(x["process_wall"] for x in runs)
    best = min(runs, key=lambda x: x["process_wall"])
    return {**best, "median_wall": walls[len(walls) // 2], "runs": len(runs), "peak_rss_mb": max(x["peak_rss_mb"] for x in runs)}


def run_py3dtiles(las: Path, workers: int) -> dict:
    exe = ensure_py3dtiles()
    dest = OUT / f"{las.stem}-py3dtiles"
    shutil.rmtree(dest, ignore_errors=True)
    cmd = [
        str(exe),
        "convert",
        str(las),
        "--out",
        str(dest),
        "--overwrite",
        "--jobs",
        str(workers),
        "--srs_in",
        "4544",
        "--srs_out",
        "4978",
        "--pyproj-always-xy",
        "--spec-version",
        "1.1",
    ]
    r = run_measured(cmd)
    return {
        "wall": r["process_wall"],
        "process_wall": r["process_wall"],
        "peak_rss_mb": r["peak_rss_mb"],
        "cpu_s": r["cpu_s"],
        "out_bytes": dir_bytes(dest),
    }


# --- kernels: the numba passes against numpy formulations ------------------------------------


def bench_kernels() -> None:
    """Time cim's compiled per-point passes against the same work written with numpy."""
    import numpy as np

    from cim.formats.meshopt import meshopt_encode_attributes
    from cim.kernels.octree import stage_points

    rng = np.random.default_rng(0)
    n = 1 << 19
    las = np.zeros(
        n,
        dtype=[("X", "<i4"), ("Y", "<i4"), ("Z", "<i4"), ("i", "<u2"), ("b", "u1"), ("c", "u1"), ("r", "<u2"), ("g", "<u2"), ("bl", "<u2")],
    )
    for k in ("X", "Y"):
        las[k] = rng.integers(-1_000_000, 1_000_000, n)
    las["Z"] = rng.integers(0, 300_000, n)
    coef = rng.random((3, 9)) * 1e-3
    coef[0, 1] = coef[1, 2] = coef[2, 3] = 1000.0
    a, b = np.full(3, 1e-6), np.zeros(3)
    origin = np.full(3, -(2**24), dtype=np.int64)

    def numba_stage() -> None:
        words = np.empty((n, 5), np.uint32)
        keys = np.empty(n, np.uint64)
        lohi = np.zeros((2, 3), np.int64)
        stage_points(
            las["X"],
            las["Y"],
            las["Z"],
            a,
            b,
            coef,
            1e4,
            origin,
            25,
            15,
            las["r"],
            las["g"],
            las["bl"],
            8,
            las["i"],
            las["c"],
            0xFF,
            las["b"],
            0x0F,
            19,
            words,
            keys,
            lohi,
            np.zeros(256, np.int64),
        )

    def numpy_stage() -> None:
        basis = np.empty((9, n))
        basis[0] = 1.0
        for k, col in enumerate(("X", "Y", "Z")):
            np.multiply(las[col], a[k], out=basis[1 + k])
            basis[1 + k] += b[k]
        u, v, w = basis[1], basis[2], basis[3]
        np.multiply(u, u, out=basis[4])
        np.multiply(u, v, out=basis[5])
        np.multiply(v, v, out=basis[6])
        np.multiply(u, w, out=basis[7])
        np.multiply(v, w, out=basis[8])
        enu = coef @ basis
        q = np.rint(enu * 1e4).astype(np.int64)
        off = (np.clip(q - origin[:, None], 0, 2**25 - 1) >> 10).astype(np.uint64)
        off[2] = np.uint64(2**15 - 1) - off[2]
        cell = (_np_spread(off[0]) << np.uint64(2)) | (_np_spread(off[1]) << np.uint64(1)) | _np_spread(off[2])
        words = np.empty((n, 5), np.uint32)
        words[:, :3] = q.T.astype(np.uint32)
        words[:, 3] = (
            (las["r"] >> 8) | ((las["g"] >> 8) << 8) | ((las["bl"] >> 8).astype(np.uint32) << 16) | (las["c"].astype(np.uint32) << 24)
        )
        words[:, 4] = las["i"] | ((las["b"] & 0x0F).astype(np.uint32) << 16)
        _ = (cell << np.uint64(19)) | np.arange(n, dtype=np.uint64)

    data = np.zeros((n // 4, 24), np.uint8)
    data[:, :6] = rng.integers(0, 256, (n // 4, 6))
    data[:, 8:11] = rng.integers(100, 110, (n // 4, 3))

    def numba_meshopt() -> None:
        meshopt_encode_attributes(data)

    def numpy_meshopt() -> None:
        _numpy_meshopt_groups(data)

    def best(f) -> float:
        f()
        t = []
        for _ in range(3):
            t0 = time.perf_counter()
            f()
            t.append(time.perf_counter() - t0)
        return min(t)

    print("\nkernels (ns/point, best of 3):")
    for name, fast, slow, count in (
        ("stage (reproject, quantize, key)", numba_stage, numpy_stage, n),
        ("meshopt attribute encode (24 B/pt)", numba_meshopt, numpy_meshopt, n // 4),
    ):
        tf, ts = best(fast) / count * 1e9, best(slow) / count * 1e9
        print(f"  {name:38s} numba {tf:7.1f}   numpy {ts:7.1f}   {ts / tf:5.1f}x")


def _np_spread(x):
    import numpy as np

    for shift, mask in (
        (32, 0x1F00000000FFFF),
        (16, 0x1F0000FF0000FF),
        (8, 0x100F00F00F00F00F),
        (4, 0x10C30C30C30C30C3),
        (2, 0x1249249249249249),
    ):
        x = (x | (x << np.uint64(shift))) & np.uint64(mask)
    return x


def _numpy_meshopt_groups(data) -> int:
    """The size-choosing half of the meshopt attribute encoder in numpy (deltas, zigzag, per-group
    counts and modes): a lower bound of a numpy encoder's cost, which must also pack the bits."""
    import numpy as np

    n, stride = data.shape
    zz = np.empty_like(data)
    zz[0] = 0
    np.subtract(data[1:], data[:-1], out=zz[1:])
    zz = (zz << np.uint8(1)) ^ (np.uint8(0) - (zz >> np.uint8(7)))
    be = 256
    full = n // be * be
    g = np.ascontiguousarray(zz[:full].reshape(-1, be, stride).transpose(0, 2, 1)).reshape(-1, 16)
    c3 = (g >= 3).sum(axis=1)
    c15 = (g >= 15).sum(axis=1)
    size = np.minimum(np.minimum(4 + c3, 8 + c15), 16)
    size[~g.any(axis=1)] = 0
    esc = np.cumsum((g >= 3).ravel())
    return int(size.sum() + esc[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10,30", help="millions of points, comma-separated")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1, help="cim builds per size: the best wall is reported, with the median")
    ap.add_argument("--no-peer", action="store_true", help="skip py3dtiles")
    ap.add_argument("--kernels", action="store_true", help="also time the numba kernels against numpy")
    ap.add_argument("--json", action="store_true", help="also print one JSON line")
    args = ap.parse_args()
    if __package__ is None:
        sys.path.insert(0, str(HERE.parent))
    rows = []
    for m in (int(s) for s in args.sizes.split(",") if s):
        las = ensure_las(m * 1_000_000)
        floor = run_floor(las)
        cim_r = run_cim(las, args.workers, args.repeat)
        peer = None if args.no_peer else run_py3dtiles(las, args.workers)
        rows.append((las, floor, cim_r, peer))
    print(f"\npoint clouds, {PRESET} preset of the sample city, {args.workers} workers, cim best of {args.repeat} run(s), the others once:")
    print(f"  {'file':16s} {'points':>11s} {'tool':10s} {'wall s':>7s} {'M pts/s':>8s} {'CPU s':>7s} {'peak MB':>8s} {'B/point':>8s}")
    out = []
    for las, floor, c, p in rows:
        n = c["points"]
        line = {
            "file": las.name,
            "points": n,
            "floor_pts_s": n / floor["wall"],
            "cim_wall": c["process_wall"],
            "cim_build_wall": c["wall"],
            "cim_pts_s": n / c["process_wall"],
            "cim_peak_mb": c["peak_rss_mb"],
            "cim_bytes_per_point": c["out_bytes"] / n,
            "cim_tiles": c["tiles"],
            "cim_cpu_s": c["cpu_s"],
            "cim_median_wall": c["median_wall"],
            "cim_others_busy": c["others_busy"],
        }
        print(
            f"  {las.name:16s} {n:11,d} {'laspy read':10s} {floor['wall']:7.2f} {n / floor['wall'] / 1e6:8.2f} {floor['cpu_s']:7.2f} {floor['peak_rss_mb']:8.0f} {'':>8s}"
        )
        print(
            f"  {'':16s} {'':11s} {'cim':10s} {c['process_wall']:7.2f} {n / c['process_wall'] / 1e6:8.2f} {c['cpu_s']:7.2f} {c['peak_rss_mb']:8.0f} {c['out_bytes'] / n:8.2f}"
            f"   (build call {c['wall']:.2f} s, {c['tiles']} tiles; best of {c['runs']}, median wall {c['median_wall']:.2f} s;"
            f" other work kept the cores {100 * c['others_busy']:.0f} % busy)"
        )
        if p is not None:
            print(
                f"  {'':16s} {'':11s} {'py3dtiles':10s} {p['wall']:7.2f} {n / p['wall'] / 1e6:8.2f} {p['cpu_s']:7.2f} {p['peak_rss_mb']:8.0f} {p['out_bytes'] / n:8.2f}"
            )
            print(
                f"  {'':16s} {'':11s} cim is {p['wall'] / c['process_wall']:.1f}x faster ({p['cpu_s'] / c['cpu_s']:.1f}x less CPU), "
                f"{p['out_bytes'] / c['out_bytes']:.1f}x smaller"
            )
            line.update(
                py3dtiles_wall=p["wall"],
                py3dtiles_pts_s=n / p["wall"],
                py3dtiles_peak_mb=p["peak_rss_mb"],
                py3dtiles_cpu_s=p["cpu_s"],
                py3dtiles_bytes_per_point=p["out_bytes"] / n,
                speedup=p["wall"] / c["process_wall"],
            )
        out.append(line)
    if args.kernels:
        bench_kernels()
    if args.json:
        print(json.dumps({"bench": "pointcloud", "workers": args.workers, "runs": out}))


if __name__ == "__main__":
    main()
