"""The aiohttp server against a small synthetic city and viewer, over real sockets."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import os
import re
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import pytest
from aiohttp import web

from cim.errors import CimNotFound
from cim.server import CITY_DIR, VIEWER_DIR, create_app
from cim.server.workers import default_workers

SECRET = b"TOP-SECRET-OUTSIDE-THE-ROOT"
GLB = b"glTF" + bytes(range(256)) * 4  # 1028 bytes
TERRAIN = b"quantized-mesh-tile " * 50
TILESET = {"asset": {"version": "1.1"}, "geometricError": 100.0, "root": {"refine": "ADD"}}
CITY = {"name": "testville", "layers": ["buildings"], "crs": "EPSG:4978"}


def _write(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)


@pytest.fixture
def city_dir(tmp_path: Path) -> Path:
    _write(tmp_path / "secret.txt", SECRET)
    city = tmp_path / "city"
    _write(city / "city.json", json.dumps(CITY))
    _write(city / "buildings" / "tileset.json", json.dumps(TILESET))
    _write(city / "buildings" / "tiles" / "0.glb", GLB)
    for name in [
        "a.gltf",
        "a.b3dm",
        "a.i3dm",
        "a.pnts",
        "a.cmpt",
        "a.subtree",
        "a.png",
        "a.jpg",
        "a.jpeg",
        "a.webp",
        "a.ktx2",
        "a.svg",
        "a.wasm",
        "a.mjs",
        "a.txt",
        "a.zzunknown",
        "a.plain.terrain",
        ".hidden.json",
    ]:
        _write(city / "kinds" / name, b"x" * 10)
    _write(city / "terrain" / "0" / "0" / "0.terrain.gz", gzip.compress(TERRAIN))
    _write(city / "terrain" / "1" / "0" / "0.terrain", gzip.compress(TERRAIN))
    _write(city / "terrain" / "layer.json", '{"format": "quantized-mesh-1.0"}')
    (city / "leak.txt").symlink_to(tmp_path / "secret.txt")
    (city / "leakdir").symlink_to(tmp_path)
    (city / "alias.json").symlink_to(city / "city.json")
    return city


@pytest.fixture
def viewer_dir(tmp_path: Path) -> Path:
    viewer = tmp_path / "viewer"
    _write(viewer / "index.html", "<!doctype html><title>cim viewer</title>")
    _write(viewer / "main.js", "console.log('cim');")
    _write(viewer / "style.css", "body { margin: 0 }")
    _write(viewer / "lib" / "util.js", "export const x = 1;")
    _write(viewer / "package.json", '{"name": "cim-viewer"}')
    _write(viewer / "package-lock.json", '{"lockfileVersion": 3}')
    _write(viewer / "tsconfig.json", '{"compilerOptions": {"checkJs": true}, "name": "cim-viewer"}')
    _write(viewer / "types" / "globals.d.ts", "// cim-viewer types")
    cesium = viewer / "node_modules" / "cesium"
    _write(cesium / "package.json", '{"name": "cesium"}')
    _write(cesium / "Build" / "Cesium" / "Cesium.js", "window.Cesium = {};")
    _write(cesium / "Build" / "Cesium" / "Widgets" / "widgets.css", ".cesium-widget {}")
    return viewer


@pytest.fixture
def app(city_dir: Path, viewer_dir: Path) -> web.Application:
    return create_app(city_dir, viewer_dir)


@pytest.fixture
async def client(aiohttp_client, app):
    # no auto-decompression: the tests check the bytes actually sent
    return await aiohttp_client(app, auto_decompress=False)


async def raw_get(server, target: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """Send ``target`` byte for byte (a client library would normalise ``..`` away)."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(f"{method} {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    return int(status_line.split()[1]), headers, body


def _mime(response) -> str:
    return response.headers["Content-Type"].split(";")[0].strip()


# --- app factory --------------------------------------------------------------------------------


def test_create_app_state(app, city_dir, viewer_dir):
    assert app[CITY_DIR] == city_dir.resolve()
    assert app[VIEWER_DIR] == viewer_dir.resolve()


def test_create_app_without_city_json(tmp_path):
    with pytest.raises(CimNotFound, match="city.json"):
        create_app(tmp_path)


REPO = Path(__file__).resolve().parents[2]
#: browsers run module scripts and module workers only when served with a JavaScript MIME type
JS_TYPES = {"text/javascript", "application/javascript"}
#: static ``import ... from "x"``, ``import "x"`` and ``export ... from "x"`` at the start of a line
_STATIC_IMPORT = re.compile(r"""^\s*(?:import|export)\b(?:[^;'"]*?\bfrom)?\s*["']([^"']+)["']""", re.M)


class _PageRefs(HTMLParser):
    """The classic scripts, module scripts and stylesheets an HTML page loads."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.modules: list[str] = []
        self.styles: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "script" and a.get("src"):
            (self.modules if a.get("type") == "module" else self.scripts).append(a["src"])
        elif tag == "link" and "stylesheet" in (a.get("rel") or "").split() and a.get("href"):
            self.styles.append(a["href"])


async def test_default_viewer_runs_from_the_checkout(aiohttp_client, city_dir):
    """Created without a viewer_dir, the server serves this checkout's viewer with what a browser
    needs to run it: the page, its scripts, its ES modules and every module they import (refused
    by browsers unless typed as JavaScript), its stylesheets, CesiumJS and Cesium's module workers."""
    cesium = REPO / "viewer" / "node_modules" / "cesium" / "Build" / "Cesium"
    if not (cesium / "Cesium.js").exists():
        pytest.skip("CesiumJS is not installed in viewer/node_modules (make viewer-deps)")
    client = await aiohttp_client(create_app(city_dir))
    page = await client.get("/")
    assert page.status == 200 and _mime(page) == "text/html"
    assert await page.read() == (REPO / "viewer" / "index.html").read_bytes()
    refs = _PageRefs()
    refs.feed(await page.text())
    assert refs.modules, "the viewer page loads no ES module"

    worker = min((cesium / "Workers").glob("*.js"), default=None)
    scripts = [*refs.scripts, "/cesium/Cesium.js"] + ([f"/cesium/Workers/{worker.name}"] if worker else [])
    for src in dict.fromkeys(urljoin("/", s) for s in scripts):
        response = await client.get(src)
        assert response.status == 200 and _mime(response) in JS_TYPES, (src, response.status, response.headers.get("Content-Type"))
    for href in dict.fromkeys(urljoin("/", h) for h in [*refs.styles, "/cesium/Widgets/widgets.css"]):
        response = await client.get(href)
        assert response.status == 200 and _mime(response) == "text/css", (href, response.status, response.headers.get("Content-Type"))

    todo, seen = [urljoin("/", m) for m in refs.modules], set()
    while todo:
        url = todo.pop()
        if url in seen:
            continue
        seen.add(url)
        response = await client.get(url)
        assert response.status == 200 and _mime(response) in JS_TYPES, (url, response.status, response.headers.get("Content-Type"))
        todo += [urljoin(url, spec) for spec in _STATIC_IMPORT.findall(await response.text()) if spec.startswith(("/", "./", "../"))]


# --- API ------------------------------------------------------------------------------------


async def test_api_health(client):
    response = await client.get("/api/health")
    assert response.status == 200
    assert await response.json() == {"status": "ok", "worker": os.getpid()}  # the process that answered


async def test_api_city(client):
    response = await client.get("/api/city")
    assert response.status == 200
    assert _mime(response) == "application/json"
    assert await response.json() == CITY


async def test_api_city_invalid_json_is_500(client, city_dir):
    (city_dir / "city.json").write_text("{not json")
    response = await client.get("/api/city")
    assert response.status == 500
    body = await response.json()
    assert body["status"] == 500 and "not valid JSON" in body["error"]


# --- content types and caching ------------------------------------------------------------------


def _content_uris(tileset: dict) -> list[str]:
    """The content URIs of a tileset's tiles, breadth first."""
    uris, tiles = [], [tileset["root"]]
    while tiles:
        tile = tiles.pop(0)
        tiles += tile.get("children", [])
        uris += [c["uri"] for c in ([tile["content"]] if "content" in tile else []) + tile.get("contents", [])]
    return uris


async def test_tiles_of_every_kind_come_back_decodable(aiohttp_client, tiny_city):
    """Each kind of file of a real built city (city.json, tileset.json and its external tilesets,
    GLB, quantized-mesh terrain, imagery) comes back typed for what it is, and a client that
    honours Content-Encoding (a browser) ends up with the decoded bytes: terrain is stored
    gzip-compressed and must be flagged so, everything else is sent as stored."""
    raw = await aiohttp_client(create_app(tiny_city), auto_decompress=False)
    browser = await aiohttp_client(create_app(tiny_city))  # decodes Content-Encoding, as a browser does

    def stored(url: str) -> bytes:
        path = tiny_city / unquote(urlsplit(url).path.removeprefix("/city/"))
        return path.read_bytes() if path.exists() else path.with_name(path.name + ".gz").read_bytes()

    async def fetch(url: str, **kwargs) -> tuple[object, bytes, bytes]:
        """The response, the bytes sent and the bytes a browser decodes."""
        response = await raw.get(url, **kwargs)
        sent = await response.read()
        decoded = await (await browser.get(url, **kwargs)).read()
        assert response.status == 200, (url, response.status)
        return response, sent, decoded

    async def plain(url: str, mime: str) -> bytes:
        response, sent, decoded = await fetch(url)
        assert _mime(response) == mime, (url, response.headers["Content-Type"])
        assert "Content-Encoding" not in response.headers, url
        assert sent == decoded == stored(url), url
        return sent

    city = json.loads(await plain("/city/city.json", "application/json"))
    assert {"3dtiles", "quantized-mesh", "imagery"} <= {layer["format"] for layer in city["layers"]}
    for layer in city["layers"]:
        base = f"/city/{layer['url']}"
        if layer["format"] == "3dtiles":
            # the tileset, then its external tilesets, down to the first GLB content
            url, glb = base, None
            while glb is None:
                uris = _content_uris(json.loads(await plain(url, "application/json")))
                glbs = [u for u in uris if u.endswith(".glb")]
                glb = urljoin(url, glbs[0]) if glbs else None
                url = url if glbs else urljoin(url, next(u for u in uris if u.endswith(".json")))
            assert (await plain(glb, "model/gltf-binary"))[:4] == b"glTF", glb
        elif layer["format"] == "quantized-mesh":
            meta = json.loads(await plain(urljoin(base, "layer.json"), "application/json"))
            url = urljoin(base, meta["tiles"][0].format(z=0, x=0, y=0, version=meta.get("version", "")))
            accept = {"Accept": "application/vnd.quantized-mesh;extensions=octvertexnormals,application/octet-stream;q=0.9,*/*;q=0.01"}
            response, sent, decoded = await fetch(url, headers=accept)
            assert _mime(response) == "application/vnd.quantized-mesh", response.headers["Content-Type"]
            assert response.headers["Content-Encoding"] == "gzip"
            assert sent == stored(url) and gzip.decompress(sent) == decoded
            # a quantized-mesh tile: an 88-byte header, then the vertex count and its u, v, heights
            vertices = struct.unpack_from("<I", decoded, 88)[0]
            assert vertices >= 3 and len(decoded) >= 92 + 6 * vertices
        elif layer["format"] == "imagery":
            path = min(tiny_city.glob(layer["url"].format(z="*", x="*", y="*")), default=None)
            assert path is not None, f"no imagery tile matches {layer['url']}"
            url = "/city/" + path.relative_to(tiny_city).as_posix()
            response, sent, decoded = await fetch(url)
            from PIL import Image

            image = Image.open(io.BytesIO(decoded))
            assert _mime(response) == image.get_format_mimetype(), (url, response.headers["Content-Type"])
            assert "Content-Encoding" not in response.headers and sent == decoded == stored(url)
            assert image.size[0] > 0


async def test_file_bodies(client, viewer_dir):
    response = await client.get("/city/buildings/tiles/0.glb")
    assert await response.read() == GLB
    assert response.headers["Content-Length"] == str(len(GLB))
    response = await client.get("/")
    assert await response.read() == (viewer_dir / "index.html").read_bytes()
    response = await client.get("/cesium/Cesium.js")
    assert await response.read() == b"window.Cesium = {};"


async def test_cache_control(client):
    json_response = await client.get("/city/buildings/tileset.json")
    assert json_response.headers["Cache-Control"] == "no-cache"
    glb_response = await client.get("/city/buildings/tiles/0.glb")
    assert glb_response.headers["Cache-Control"] == "public, max-age=3600"


async def test_etag_and_304(client, city_dir):
    response = await client.get("/city/buildings/tiles/0.glb")
    etag = response.headers["ETag"]
    stat = (city_dir / "buildings" / "tiles" / "0.glb").stat()
    assert etag == f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"'
    assert response.headers["Last-Modified"].endswith("GMT")
    again = await client.get("/city/buildings/tiles/0.glb", headers={"If-None-Match": etag})
    assert again.status == 304
    assert await again.read() == b""
    assert again.headers["ETag"] == etag
    listed = await client.get("/city/buildings/tiles/0.glb", headers={"If-None-Match": f'"nope", W/{etag}'})
    assert listed.status == 304
    stale = await client.get("/city/buildings/tiles/0.glb", headers={"If-None-Match": '"old"'})
    assert stale.status == 200
    assert await stale.read() == GLB


async def test_etag_changes_when_file_changes(client, city_dir):
    path = city_dir / "buildings" / "tiles" / "0.glb"
    first = (await client.get("/city/buildings/tiles/0.glb")).headers["ETag"]
    path.write_bytes(GLB + b"more")
    os.utime(path, ns=(1, 1))
    second = await client.get("/city/buildings/tiles/0.glb", headers={"If-None-Match": first})
    assert second.status == 200
    assert second.headers["ETag"] != first
    assert await second.read() == GLB + b"more"


async def test_if_modified_since(client):
    response = await client.get("/city/buildings/tiles/0.glb")
    since = response.headers["Last-Modified"]
    again = await client.get("/city/buildings/tiles/0.glb", headers={"If-Modified-Since": since})
    assert again.status == 304
    old = "Mon, 01 Jan 1990 00:00:00 GMT"
    again = await client.get("/city/buildings/tiles/0.glb", headers={"If-Modified-Since": old})
    assert again.status == 200


# --- ranges and HEAD ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "start", "stop"),
    [
        ("bytes=0-3", 0, 4),
        ("bytes=100-199", 100, 200),
        ("bytes=1000-", 1000, 1028),
        ("bytes=-8", 1020, 1028),
        ("bytes=1020-5000", 1020, 1028),
    ],
)
async def test_range_206(client, header, start, stop):
    response = await client.get("/city/buildings/tiles/0.glb", headers={"Range": header})
    assert response.status == 206
    assert await response.read() == GLB[start:stop]
    assert response.headers["Content-Range"] == f"bytes {start}-{stop - 1}/{len(GLB)}"
    assert response.headers["Content-Length"] == str(stop - start)
    assert response.headers["Accept-Ranges"] == "bytes"


@pytest.mark.parametrize("header", ["bytes=5000-", "bytes=1028-1030", "bytes=-0"])
async def test_range_416(client, header):
    response = await client.get("/city/buildings/tiles/0.glb", headers={"Range": header})
    assert response.status == 416
    assert response.headers["Content-Range"] == f"bytes */{len(GLB)}"
    assert (await response.json())["status"] == 416


@pytest.mark.parametrize("header", ["bytes=0-1,5-6", "items=0-3", "bytes=9-2"])
async def test_range_ignored_sends_whole_file(client, header):
    response = await client.get("/city/buildings/tiles/0.glb", headers={"Range": header})
    assert response.status == 200
    assert await response.read() == GLB


async def test_if_range_mismatch_sends_whole_file(client):
    headers = {"Range": "bytes=0-3", "If-Range": '"stale"'}
    response = await client.get("/city/buildings/tiles/0.glb", headers=headers)
    assert response.status == 200
    assert await response.read() == GLB


async def test_head(client):
    response = await client.head("/city/buildings/tiles/0.glb")
    assert response.status == 200
    assert response.headers["Content-Length"] == str(len(GLB))
    assert _mime(response) == "model/gltf-binary"
    assert "ETag" in response.headers
    assert await response.read() == b""


async def test_head_raw_has_no_body(aiohttp_server, app):
    server = await aiohttp_server(app)
    status, headers, body = await raw_get(server, "/city/buildings/tiles/0.glb", "HEAD")
    assert status == 200
    assert headers["content-length"] == str(len(GLB))
    assert body == b""


# --- CORS ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/health", "/city/city.json", "/", "/cesium/Cesium.js", "/city/missing.glb"])
async def test_cors_on_every_response(client, path):
    response = await client.get(path)
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "ETag" in response.headers["Access-Control-Expose-Headers"]


async def test_cors_on_304(client):
    etag = (await client.get("/city/city.json")).headers["ETag"]
    response = await client.get("/city/city.json", headers={"If-None-Match": etag})
    assert response.status == 304
    assert response.headers["Access-Control-Allow-Origin"] == "*"


async def test_options_preflight(client):
    headers = {
        "Origin": "http://example.test",
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "range, if-none-match",
    }
    response = await client.options("/city/buildings/tiles/0.glb", headers=headers)
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "GET" in response.headers["Access-Control-Allow-Methods"]
    assert response.headers["Access-Control-Allow-Headers"] == "range, if-none-match"


async def test_post_is_405_json(client):
    response = await client.post("/api/health")
    assert response.status == 405
    assert (await response.json())["status"] == 405
    assert response.headers["Access-Control-Allow-Origin"] == "*"


# --- precompressed files ------------------------------------------------------------------------


async def test_gz_fallback(client):
    response = await client.get("/city/terrain/0/0/0.terrain")
    assert response.status == 200
    assert response.headers["Content-Encoding"] == "gzip"
    assert _mime(response) == "application/vnd.quantized-mesh"
    assert gzip.decompress(await response.read()) == TERRAIN


async def test_gz_fallback_decoded_by_a_client(aiohttp_client, app):
    client = await aiohttp_client(app)  # auto-decompressing, as a browser would
    response = await client.get("/city/terrain/0/0/0.terrain")
    assert await response.read() == TERRAIN


async def test_gz_fallback_head_and_etag(client):
    response = await client.head("/city/terrain/0/0/0.terrain")
    assert response.status == 200
    assert response.headers["Content-Encoding"] == "gzip"
    assert int(response.headers["Content-Length"]) == len(gzip.compress(TERRAIN))
    etag = response.headers["ETag"]
    again = await client.get("/city/terrain/0/0/0.terrain", headers={"If-None-Match": etag})
    assert again.status == 304


async def test_gzip_magic_terrain(client):
    response = await client.get("/city/terrain/1/0/0.terrain")
    assert response.status == 200
    assert response.headers["Content-Encoding"] == "gzip"
    assert _mime(response) == "application/vnd.quantized-mesh"
    assert gzip.decompress(await response.read()) == TERRAIN


@pytest.mark.parametrize("accept", ["identity", "", "br, deflate", "gzip;q=0", "*;q=0"])
async def test_gzip_terrain_is_decompressed_for_clients_that_refuse_gzip(client, accept):
    for url in ("/city/terrain/0/0/0.terrain", "/city/terrain/1/0/0.terrain"):
        response = await client.get(url, headers={"Accept-Encoding": accept})
        assert response.status == 200, (url, accept)
        assert "Content-Encoding" not in response.headers
        assert response.headers["Vary"] == "Accept-Encoding"
        assert await response.read() == TERRAIN
        # a ranged read of the decoded bytes, and revalidation by the decoded file's own ETag
        part = await client.get(url, headers={"Accept-Encoding": accept, "Range": "bytes=2-5"})
        assert part.status == 206 and await part.read() == TERRAIN[2:6]
        etag = response.headers["ETag"]
        again = await client.get(url, headers={"Accept-Encoding": accept, "If-None-Match": etag})
        assert again.status == 304
        gzipped = await client.get(url, headers={"Accept-Encoding": "gzip, deflate"})
        assert gzipped.headers["Content-Encoding"] == "gzip" and gzipped.headers["ETag"] != etag


async def test_plain_terrain_not_flagged(client):
    response = await client.get("/city/kinds/a.plain.terrain")
    assert response.status == 200
    assert "Content-Encoding" not in response.headers
    assert await response.read() == b"x" * 10


async def test_gz_file_itself(client):
    response = await client.get("/city/terrain/0/0/0.terrain.gz")
    assert response.status == 200
    assert _mime(response) == "application/gzip"
    assert "Content-Encoding" not in response.headers


# --- not found ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/city/missing.glb",
        "/city/buildings",
        "/city/",
        "/cesium/missing.js",
        "/missing.html",
        "/city/kinds/.hidden.json",
        "/city/city.json/x",
    ],
)
async def test_missing_is_404_json(client, path):
    response = await client.get(path)
    assert response.status == 404
    assert _mime(response) == "application/json"
    body = await response.json()
    assert body["status"] == 404
    assert body["error"]


async def test_error_body_leaks_no_filesystem_path(client, city_dir):
    response = await client.get("/city/missing.glb")
    assert str(city_dir) not in await response.text()


# --- path safety --------------------------------------------------------------------------------


async def test_raw_helper_fetches_a_real_file(aiohttp_server, app):
    server = await aiohttp_server(app)
    status, headers, body = await raw_get(server, "/city/city.json")
    assert status == 200
    assert json.loads(body) == CITY
    assert headers["access-control-allow-origin"] == "*"


@pytest.mark.parametrize(
    "target",
    [
        "/city/../secret.txt",
        "/city/buildings/../../secret.txt",
        "/city/%2e%2e/secret.txt",
        "/city/%2e%2e%2fsecret.txt",
        "/city/%2E%2E%2Fsecret.txt",
        "/city/..%2fsecret.txt",
        "/city/%252e%252e%252fsecret.txt",
        "/city/..%252fsecret.txt",
        "/../secret.txt",
        "/..%2fsecret.txt",
        "/cesium/../../../../../secret.txt",
        "/cesium/..%2f..%2f..%2f..%2f..%2fsecret.txt",
        "//etc/passwd",
        "/city//etc/passwd",
        "/city/%2fetc/passwd",
        "/city/..\\secret.txt",
        "/city/%5c..%5csecret.txt",
        "/city/city.json%00.png",
        "/city/leak.txt",
        "/city/leakdir/secret.txt",
        "/node_modules/cesium/Build/Cesium/Cesium.js",
        "/node_modules/cesium/package.json",
        "/./node_modules/cesium/package.json",
        "/lib/../node_modules/cesium/package.json",
        "/%6eode_modules/cesium/package.json",
        "/package.json",
        "/package-lock.json",
        "/tsconfig.json",
        "/types/globals.d.ts",
        "/Types/globals.d.ts",
        "/cesium/../../package.json",
        "/cesium/../../../package.json",
    ],
)
async def test_path_escape_refused(aiohttp_server, app, target):
    server = await aiohttp_server(app)
    status, headers, body = await raw_get(server, target)
    assert status in (403, 404), (target, status)
    assert json.loads(body) == {"error": json.loads(body)["error"], "status": status}
    assert SECRET not in body
    assert b"root:" not in body
    assert b"cim-viewer" not in body and b'"cesium"' not in body and b"Cesium = " not in body and b"checkJs" not in body


@pytest.mark.parametrize("target", ["/city/../secret.txt", "/city/leak.txt", "/city/..%2fsecret.txt"])
async def test_path_escape_is_403(aiohttp_server, app, target):
    server = await aiohttp_server(app)
    status, _, body = await raw_get(server, target)
    assert status == 403
    assert json.loads(body)["status"] == 403


async def test_symlink_inside_root_allowed(client):
    response = await client.get("/city/alias.json")
    assert response.status == 200
    assert await response.json() == CITY


# --- the real process -------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _fetch(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read()


def test_python_m_cim_server(city_dir, viewer_dir):
    port = _free_port()
    command = [sys.executable, "-m", "cim.server", str(city_dir), "--host", "127.0.0.1", "--port", str(port), "--viewer", str(viewer_dir)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                status, body = _fetch(f"http://127.0.0.1:{port}/api/health")
                break
            except OSError:
                if process.poll() is not None:
                    raise AssertionError(process.stderr.read().decode()) from None
                if time.monotonic() > deadline:
                    raise AssertionError("server did not answer in 20 s") from None
                time.sleep(0.1)
        assert status == 200
        health = json.loads(body)
        assert health["status"] == "ok"
        assert (health["worker"] == process.pid) == (default_workers() == 1)  # else a forked worker answers
        status, body = _fetch(f"http://127.0.0.1:{port}/city/city.json")
        assert status == 200
        assert json.loads(body) == CITY
    finally:
        process.terminate()
        try:
            out, _ = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            out, _ = process.communicate()
    assert f"http://127.0.0.1:{port}/".encode() in out


def test_python_m_cim_server_without_city_json(tmp_path):
    command = [sys.executable, "-m", "cim.server", str(tmp_path), "--port", str(_free_port())]
    result = subprocess.run(command, capture_output=True, timeout=30)
    assert result.returncode == 1
    assert b"city.json" in result.stderr
