"""Serving tiles under load: cim's server beside nginx on the same folder, in one run (issue 12).

1. Picks a few hundred real tile URLs of a built city (``--per-kind`` each of GLB, quantized-mesh
   ``.terrain``, imagery and ``tileset.json``, spread evenly over the sorted file list).
2. Starts nginx (when installed) with a generated config on a free loopback port serving the same
   folder: ``sendfile``, keep-alive, no access log, ``worker_processes auto``; ``gzip_static
   always`` + ``gunzip on`` for tiles stored only as ``X.gz``; ``Content-Encoding: gzip`` added to
   ``.terrain`` answers when every terrain tile of the city is stored gzip-compressed (cim flags
   them by their magic bytes, nginx cannot); the project's content types for the tile suffixes.
3. Starts ``python -m cim.server`` on another port (``--server-args`` are passed on, e.g.
   ``--workers 2``; ``--cim-src DIR`` serves with another checkout's code, for before/after).
4. Runs the load generator, wrk with a Lua script cycling the URLs (``Accept-Encoding: gzip``, as
   a browser sends), ``--connections`` connections for ``--seconds`` seconds, against each: prints
   requests/s, p50/p99 latency, errors (socket errors and non-2xx/3xx answers), bytes/s, the
   server's peak RSS summed over all its processes, and cim's ratio to nginx. Without wrk a small
   asyncio generator of this file takes its place (it saturates a core itself: its figures are
   lower bounds, and the peer is skipped).
5. The same with access control on (``--no-acl`` skips it): a hard-linked copy of the city whose
   buildings layer is restricted to a role, requests carrying a token of a user with that role,
   so each tile of that layer is checked and audited.
6. ``--soak SECONDS``: cim alone at ``--soak-connections`` (256) connections: errors, RSS at the
   start and the end.

The machine is shared and small: the load generator runs on the same cores as the server, and
every figure carries the load average before the run.

    .venv/bin/python benchmarks/bench_server.py --city benchmarks/out/district/tiles
    .venv/bin/python benchmarks/bench_server.py --city DIR --cim-src /work/main   # an older checkout
    .venv/bin/python benchmarks/bench_server.py --city DIR --before /work/main    # both, in one run
    .venv/bin/python benchmarks/bench_server.py --city DIR --soak 60 --no-acl --no-peer
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "out"
IMAGERY = (".webp", ".png", ".jpg", ".jpeg")
GZIP_MAGIC = b"\x1f\x8b"

WRK_SCRIPT = r"""
local urls = {%(urls)s}
local i = 0
wrk.headers["Accept-Encoding"] = "gzip"
%(headers)s
function init(args)
  i = math.random(#urls)
end
function request()
  i = i %% #urls + 1
  return wrk.format("GET", urls[i])
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %%d, "duration_us": %%d, "bytes": %%d, "p50_us": %%d, "p99_us": %%d, "max_us": %%d, ' ..
    '"connect": %%d, "read": %%d, "write": %%d, "status": %%d, "timeout": %%d}\n',
    summary.requests, summary.duration, summary.bytes, latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""

NGINX_CONF = """
worker_processes auto;
daemon off;
pid %(tmp)s/nginx.pid;
error_log %(tmp)s/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  keepalive_timeout 75s;
  client_body_temp_path %(tmp)s/body;
  proxy_temp_path %(tmp)s/proxy;
  fastcgi_temp_path %(tmp)s/fastcgi;
  uwsgi_temp_path %(tmp)s/uwsgi;
  scgi_temp_path %(tmp)s/scgi;
  types {
    application/json json;
    model/gltf-binary glb;
    application/vnd.quantized-mesh terrain;
    application/octet-stream subtree pnts b3dm;
    image/webp webp;
    image/png png;
    image/jpeg jpg jpeg;
  }
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:%(port)d;
    root %(root)s;
    gzip_static always;
    gunzip on;
    location ~ \\.json$ { add_header Cache-Control no-cache; }
    location ~ \\.terrain$ { %(terrain)s add_header Cache-Control "public, max-age=3600"; }
    location / { add_header Cache-Control "public, max-age=3600"; }
  }
}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pick_urls(city: Path, per_kind: int) -> tuple[list[str], dict[str, int], bool]:
    """Up to ``per_kind`` URL paths (relative to the city) of each kind, and whether every
    ``.terrain`` tile is stored gzip-compressed."""
    kinds: dict[str, list[str]] = {"glb": [], "terrain": [], "imagery": [], "tileset": []}
    terrain_gzip = True
    for path in sorted(city.rglob("*")):
        rel = path.relative_to(city).as_posix()
        if rel.startswith(".") or not path.is_file():
            continue
        name = rel[:-3] if rel.endswith(".gz") and not path.with_suffix("").exists() else rel
        if name.endswith(".glb"):
            kinds["glb"].append(name)
        elif name.endswith(".terrain"):
            kinds["terrain"].append(name)
            with open(path, "rb") as f:
                terrain_gzip &= f.read(2) == GZIP_MAGIC
        elif name.endswith(IMAGERY):
            kinds["imagery"].append(name)
        elif name.endswith("tileset.json"):
            kinds["tileset"].append(name)
    urls: list[str] = []
    counts = {}
    for kind, names in kinds.items():
        step = max(1, len(names) // per_kind) if names else 1
        chosen = names[::step][:per_kind]
        counts[kind] = len(chosen)
        urls += chosen
    return urls, counts, terrain_gzip and bool(kinds["terrain"])


def tree_cpu(root_pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and all its live descendants."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in _tree(root_pid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total


def _tree(root_pid: int) -> list[int]:
    """A process and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def tree_rss(root_pid: int) -> int:
    """Resident bytes of a process and all its descendants (from /proc)."""
    total = 0
    for pid in _tree(root_pid):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


class RssSampler:
    """Samples a process tree's RSS every ``interval`` seconds in a thread."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self.pid, self.interval = pid, interval
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(tree_rss(self.pid))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}: {proc.args}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:  # an answer, whatever its status: the server is up
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"no answer from {url} within {timeout} s")


@contextlib.contextmanager
def running(args: list[str], ready_url: str, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    log = tempfile.TemporaryFile()  # noqa: SIM115 - read back when the server has ended
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    try:
        wait_ready(ready_url, proc)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.seek(0)
        tail = log.read().decode(errors="replace").strip().splitlines()[-5:]
        log.close()
        if proc.returncode not in (0, -15):
            print(f"  note: {args[0]} ended with {proc.returncode}: {' | '.join(tail)}")


@contextlib.contextmanager
def nginx(city: Path, terrain_gzip: bool) -> Iterator[tuple[str, int]]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
    port = free_port()
    terrain = "add_header Content-Encoding gzip; add_header Vary Accept-Encoding;" if terrain_gzip else ""
    (tmp / "nginx.conf").write_text(NGINX_CONF % {"tmp": tmp, "port": port, "root": city, "terrain": terrain})
    base = f"http://127.0.0.1:{port}/"
    try:
        with running([shutil.which("nginx") or "nginx", "-c", str(tmp / "nginx.conf"), "-e", str(tmp / "error.log")], base) as proc:
            yield base, proc.pid
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def cim_server(city: Path, server_args: list[str], cim_src: Path | None) -> Iterator[tuple[str, int]]:
    port = free_port()
    env = dict(os.environ)
    if cim_src is None:
        args = [sys.executable, "-m", "cim.server", str(city), "--port", str(port), *server_args]
    else:  # an editable install's import hook outranks PYTHONPATH: drop it, put the checkout first
        boot = (
            "import sys, runpy; sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in type(f).__name__.lower()];"
            f"sys.path.insert(0, {str(cim_src)!r}); sys.argv[0] = 'cim.server'; runpy.run_module('cim.server', run_name='__main__')"
        )
        args = [sys.executable, "-c", boot, str(city), "--port", str(port), *server_args]
    with running(args, f"http://127.0.0.1:{port}/api/health", env) as proc:
        yield f"http://127.0.0.1:{port}/city/", proc.pid


def run_wrk(base: str, urls: list[str], connections: int, seconds: float, headers: dict[str, str]) -> dict:
    prefix = "/" + base.split("/", 3)[3]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(
            WRK_SCRIPT
            % {
                "urls": ",".join(json.dumps(prefix + u) for u in urls),
                "headers": "\n".join(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()),
            }
        )
    try:
        out = subprocess.run(
            ["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds:.0f}s", "--timeout", "10s", "-s", f.name, base],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(f.name)
    raw = json.loads(next(line for line in out.splitlines() if line.startswith("WRKJSON ")).split(" ", 1)[1])
    secs = raw["duration_us"] / 1e6
    return {
        "rps": raw["requests"] / secs,
        "p50_ms": raw["p50_us"] / 1e3,
        "p99_ms": raw["p99_us"] / 1e3,
        "errors": sum(raw[k] for k in ("connect", "read", "write", "status", "timeout")),
        "bytes_per_s": raw["bytes"] / secs,
        "requests": raw["requests"],
    }


async def _own_load(base: str, urls: list[str], connections: int, seconds: float, headers: dict[str, str]) -> dict:
    """A bounded keep-alive HTTP/1.1 generator: ``connections`` sockets, one request at a time each."""
    host, port = base.split("/")[2].split(":")
    prefix = "/" + base.split("/", 3)[3]
    extra = "".join(f"{k}: {v}\r\n" for k, v in {"Accept-Encoding": "gzip", **headers}.items())
    latencies: list[float] = []
    counts = {"errors": 0, "bytes": 0}
    stop_at = time.monotonic() + seconds

    async def one(k: int) -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        i = k
        while time.monotonic() < stop_at:
            i = (i + 1) % len(urls)
            t0 = time.perf_counter()
            writer.write(f"GET {prefix}{urls[i]} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:"))
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            counts["bytes"] += len(head) + length
            if head[9:10] not in (b"2", b"3"):
                counts["errors"] += 1
        writer.close()

    t0 = time.monotonic()
    results = await asyncio.gather(*(one(k * 7) for k in range(connections)), return_exceptions=True)
    secs = time.monotonic() - t0
    counts["errors"] += sum(isinstance(r, BaseException) for r in results)
    latencies.sort()
    n = len(latencies)
    return {
        "rps": n / secs,
        "p50_ms": latencies[n // 2] * 1e3 if n else 0.0,
        "p99_ms": latencies[min(n - 1, int(n * 0.99))] * 1e3 if n else 0.0,
        "errors": counts["errors"],
        "bytes_per_s": counts["bytes"] / secs,
        "requests": n,
    }


def load(base: str, urls: list[str], connections: int, seconds: float, headers: dict[str, str] | None = None) -> dict:
    headers = headers or {}
    if shutil.which("wrk"):
        return run_wrk(base, urls, connections, seconds, headers)
    return asyncio.run(_own_load(base, urls, connections, seconds, headers))


def measure(name: str, server: contextlib.AbstractContextManager, urls: list[str], args: argparse.Namespace, headers=None) -> dict:
    with server as (base, pid):
        load(base, urls, min(args.connections, 16), 2, headers)  # warm: caches, page cache, connections
        load_avg = os.getloadavg()[0]
        cpu = tree_cpu(pid)
        with RssSampler(pid) as rss:
            result = load(base, urls, args.connections, args.seconds, headers)
        # the server's own CPU time a request (its threads included): steadier than req/s
        # on a shared machine, where other work takes the cores from both server and client
        result["cpu_us"] = (tree_cpu(pid) - cpu) / max(result["requests"], 1) * 1e6
        result["peak_rss_mb"] = max(rss.samples) / 2**20 if rss.samples else 0.0
        result["load_avg"] = load_avg
    print(
        f"  {name:<24} {result['rps']:>9,.0f} req/s  p50 {result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:7.2f} ms  "
        f"errors {result['errors']:>5}  {result['bytes_per_s'] / 2**20:7.1f} MiB/s  peak RSS {result['peak_rss_mb']:6.1f} MiB  "
        f"CPU {result['cpu_us']:5.1f} us a request (load avg before {load_avg:.1f})",
        flush=True,
    )
    return result


def acl_copy(city: Path, restrict: str | None = None) -> tuple[Path, dict[str, str], str]:
    """A hard-linked copy of ``city`` with the layer ``restrict`` (default: its buildings layer,
    else the first) restricted."""
    from cim.access import AccessControl

    copy = Path(tempfile.mkdtemp(prefix="bench-acl-")) / "city"
    shutil.copytree(city, copy, copy_function=os.link, ignore=shutil.ignore_patterns(".cim"))
    layers = [layer["id"] for layer in json.loads((copy / "city.json").read_text())["layers"]]
    layer = restrict or ("buildings" if "buildings" in layers else layers[0])
    if layer not in layers:
        raise SystemExit(f"--restrict {layer}: the city has no such layer ({', '.join(layers)})")
    acl = AccessControl.open(copy, create=True)
    acl.add_user("bench", role="planner")
    acl.restrict(layer, ["planner"])
    return copy, {"Authorization": f"Bearer {acl.new_token('bench')}"}, layer


def audit_summary(city: Path) -> dict:
    """The audit trail a run left: records, reads they account for (a burst record counts its
    reads), and whether its chain verifies."""
    from cim.audit import AuditLog

    trail = AuditLog(city)
    if not trail.path.is_file():
        return {"audit_records": 0, "audit_reads": 0, "audit_ok": None}
    records = [r for _, r, _ in trail.records() if r is not None]
    reads = sum(int((r.get("detail") or {}).get("count", 1)) for r in records if r.get("action") == "read")
    ok = trail.verify().ok
    print(f"  audit trail: {len(records):,} records for {reads:,} restricted reads, chain {'intact' if ok else 'BROKEN'}", flush=True)
    return {"audit_records": len(records), "audit_reads": reads, "audit_ok": ok}


def soak(city: Path, urls: list[str], args: argparse.Namespace, server_args: list[str]) -> dict:
    with cim_server(city, server_args, args.cim_src) as (base, pid):
        load(base, urls, 16, 2)
        start_rss = tree_rss(pid)
        with RssSampler(pid, interval=1.0) as rss:
            result = load(base, urls, args.soak_connections, args.soak)
        end_rss = tree_rss(pid)
    result.update(rss_start_mb=start_rss / 2**20, rss_end_mb=end_rss / 2**20, rss_peak_mb=max(rss.samples) / 2**20)
    print(
        f"  soak {args.soak:.0f} s at {args.soak_connections} connections: {result['requests']:,} requests, "
        f"{result['rps']:,.0f} req/s, p99 {result['p99_ms']:.2f} ms, errors {result['errors']}, RSS start "
        f"{result['rss_start_mb']:.1f} MiB, end {result['rss_end_mb']:.1f} MiB, peak {result['rss_peak_mb']:.1f} MiB",
        flush=True,
    )
    return result


def default_city() -> Path:
    """The ``district`` preset built under benchmarks/out (generated and built once)."""
    tiles = OUT / "district" / "tiles"
    if not (tiles / "city.json").is_file():
        import cim

        print("building the district preset into", tiles, "(once)", flush=True)
        sample = cim.sample("district", OUT / "district")
        cim.build(sample.recipe, tiles)
    return tiles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--city", type=Path, default=None, help="a built city (default: the district preset under benchmarks/out)")
    parser.add_argument("--per-kind", type=int, default=100, help="URLs of each kind (GLB, terrain, imagery, tileset.json)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--server-args", default="", help="extra arguments of python -m cim.server, e.g. '--workers 2'")
    parser.add_argument("--cim-src", type=Path, default=None, help="serve with the cim package of this checkout (before/after)")
    parser.add_argument("--before", type=Path, default=None, help="also measure cim with this checkout's code, in the same run")
    parser.add_argument("--no-peer", action="store_true", help="skip nginx")
    parser.add_argument("--no-acl", action="store_true", help="skip the run with access control on")
    parser.add_argument(
        "--restrict", default=None, help="the layer restricted in the access-control run [buildings]; e.g. lidar, whose tiles are many"
    )
    parser.add_argument("--soak", type=float, default=0.0, help="seconds of the soak run (0: none)")
    parser.add_argument("--soak-connections", type=int, default=256)
    parser.add_argument("--json", action="store_true", help="print one JSON line of the figures at the end")
    args = parser.parse_args()

    city = (args.city or default_city()).resolve()
    urls, counts, terrain_gzip = pick_urls(city, args.per_kind)
    server_args = args.server_args.split()
    generator = "wrk" if shutil.which("wrk") else "the built-in asyncio generator (no wrk: figures are lower bounds)"
    print(f"city {city}: {len(urls)} URLs {counts}; terrain stored gzip: {terrain_gzip}", flush=True)
    print(f"load: {generator}, {args.connections} connections, {args.seconds:.0f} s; {os.cpu_count()} CPUs", flush=True)
    print(f"cim: python -m cim.server {' '.join(server_args)}" + (f" (code from {args.cim_src})" if args.cim_src else ""), flush=True)
    figures: dict[str, dict] = {}
    if not args.no_peer:
        if shutil.which("nginx") is None:
            print("  nginx: not installed, the peer is skipped (apt-get install nginx)")
        elif not shutil.which("wrk"):
            print("  nginx: skipped without wrk (the built-in generator would measure itself)")
        else:
            figures["nginx"] = measure("nginx", nginx(city, terrain_gzip), urls, args)
    figures["cim"] = measure("cim", cim_server(city, server_args, args.cim_src), urls, args)
    if "nginx" in figures:
        ratio = figures["cim"]["rps"] / figures["nginx"]["rps"]
        figures["cim"]["ratio_to_nginx"] = ratio
        print(f"  cim / nginx: {ratio:.2f}x requests/s")
    if args.before is not None:
        figures["cim_before"] = measure(f"cim before ({args.before})", cim_server(city, server_args, args.before), urls, args)
        if "nginx" in figures:
            ratio = figures["cim_before"]["rps"] / figures["nginx"]["rps"]
            figures["cim_before"]["ratio_to_nginx"] = ratio
            print(f"  cim before / nginx: {ratio:.2f}x requests/s")
    if not args.no_acl:
        copy, headers, layer = acl_copy(city, args.restrict)
        try:
            figures["cim_acl"] = measure(f"cim, {layer} restricted", cim_server(copy, server_args, args.cim_src), urls, args, headers)
            figures["cim_acl"].update(audit_summary(copy))
        finally:
            shutil.rmtree(copy.parent, ignore_errors=True)
        cost = 1 - figures["cim_acl"]["rps"] / figures["cim"]["rps"]
        share = figures["cim_acl"].get("audit_reads", 0) / max(figures["cim_acl"]["requests"], 1)
        print(
            f"  access control costs {cost * 100:.1f} % of requests/s (token on every request, "
            f"{share * 100:.1f} % of requests restricted reads, audited)"
        )
        cpu_cost = figures["cim_acl"]["cpu_us"] / figures["cim"]["cpu_us"] - 1
        print(f"  access control costs {cpu_cost * 100:.1f} % more server CPU a request")
    if args.soak > 0:
        figures["soak"] = soak(city, urls, args, server_args)
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
