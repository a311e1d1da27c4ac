"""The installed package carries a working viewer: ``pip install .`` into a fresh environment outside
the checkout, then ``cim serve`` serves the viewer, CesiumJS and the city from the installed files.

The wheel is built from the checkout (without build isolation: setuptools and wheel come from the
test environment, so no network is needed), installed with ``--no-deps`` into a new virtual
environment that finds the dependencies (numpy, GDAL, ...) through a ``.pth`` line to this
environment's site-packages (lines of a ``.pth`` file only extend ``sys.path``: the checkout's
editable-install hook there is not run), and run from a folder outside the checkout.
"""

from __future__ import annotations

import json
import os
import re
import site
import socket
import subprocess
import sys
import time
import urllib.request
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CESIUM = REPO / "viewer" / "node_modules" / "cesium" / "Build" / "Cesium" / "Cesium.js"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.status, dict(r.headers), r.read()


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the wheel of this checkout installed; its folder."""
    if not CESIUM.is_file():
        pytest.skip(f"{CESIUM} is missing (make test runs `npm ci` in viewer/): the wheel would carry no CesiumJS")
    pytest.importorskip("wheel", reason="the wheel package (a test dependency) is needed to build the wheel")
    root = tmp_path_factory.mktemp("install")
    dist = root / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(REPO)],
        check=True,
        cwd=root,
        capture_output=True,
        text=True,
    )
    wheel = next(dist.glob("cim-*.whl"))
    env = root / "venv"
    venv.EnvBuilder(with_pip=False).create(env)
    python = env / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
        check=True,
        capture_output=True,
        text=True,
    )
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], check=True, capture_output=True, text=True
    ).stdout.strip()
    Path(purelib, "_test_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return env


def test_the_wheel_carries_the_viewer_and_the_layer_kinds(installed: Path) -> None:
    python = installed / "bin" / "python"
    code = (
        "import json, cim, cim.server.app as a; from importlib.metadata import entry_points;"
        "print(json.dumps({'cim': cim.__file__, 'viewer': str(a.default_viewer_dir()),"
        " 'kinds': sorted(e.name for e in entry_points(group='cim.layers'))}))"
    )
    out = json.loads(subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True, cwd=installed).stdout)
    assert Path(out["cim"]).is_relative_to(installed), "cim was imported from the checkout, not the installed wheel"
    viewer = Path(out["viewer"])
    assert viewer.is_relative_to(installed) and (viewer / "index.html").is_file()
    assert (viewer / "node_modules" / "cesium" / "Build" / "Cesium" / "Cesium.js").is_file()
    assert out["kinds"] == ["bim", "buildings", "cityjson", "imagery", "mesh", "pointcloud", "terrain"]


def test_cim_serve_from_the_installed_package_serves_a_working_viewer(installed: Path, tiny_city: Path) -> None:
    """Every script the page loads, every ES module it imports, CesiumJS and the city come back,
    from the installed package (not the checkout)."""
    port = _free_port()
    log = installed / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(installed / "bin" / "cim"), "serve", str(tiny_city), "--port", str(port)],
            cwd=installed,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                _get(f"{base}/api/health")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"cim serve did not start:\n{log.read_text()}")
                time.sleep(0.2)
        status, headers, page = _get(f"{base}/")
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        viewer = installed / "lib"
        packaged = next(viewer.glob("python*/site-packages/cim/viewer/index.html"))
        assert page == packaged.read_bytes()
        # the page's scripts, and every module reachable from them by import
        todo = re.findall(rb'<script[^>]+src="([^"]+)"', page)
        seen: set[bytes] = set()
        while todo:
            src = todo.pop()
            if src in seen:
                continue
            seen.add(src)
            status, headers, body = _get(base + src.decode())
            assert status == 200 and "javascript" in headers["Content-Type"], src
            if src.endswith(b".js") and not src.startswith(b"/cesium/"):
                here = src.rsplit(b"/", 1)[0]
                for target in re.findall(rb'^import [^;]*?from "(\.[^"]+)"', body, flags=re.M):
                    todo.append(os.path.normpath((here + b"/" + target).decode()).encode())
        assert b"/cesium/Cesium.js" in seen and b"/main.js" in seen and len(seen) > 3
        status, _, city = _get(f"{base}/api/city")
        assert {layer["kind"] for layer in json.loads(city)["layers"]} >= {"buildings", "terrain"}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
