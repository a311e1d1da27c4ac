"""The layer contract: a kind defined here, outside cim, gets everything the built-in kinds get
(options, the tile store, resume, clean-up, city.json, the server) from :func:`run_layer`; and
every built-in kind's conversion gives a city the server opens."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

import cim
from cim.engines import LocalEngine
from cim.errors import CimInputError
from cim.layers import registry
from cim.layers.base import City, LayerBuilder, LayerOptions, LayerOutput, LayerPlan, LayerRun, option, run_layer
from cim.server import create_app
from cim.store import LOG_NAME, TileSink, build_key, file_fingerprint
from cim.tiling.webmercator import tiles_covering

KIND = "testnotes"
BOUNDS = {"west": 105.70, "south": 34.57, "east": 105.72, "north": 34.59, "min_height": 1100.0, "max_height": 1150.0}

#: what the tile job did, for the tests to read: keys it was called for, tiles it wrote, and
#: whether the layer's index existed when it wrote each one
CALLS: list[int] = []
WRITES: list[str] = []
INDEX_SEEN: list[bool] = []
#: the key on which the job raises (None: never)
CONTROL: dict[str, int | None] = {"fail_at": None}
_lock = threading.Lock()


@dataclass
class NoteOptions(LayerOptions):
    tiles: int = option(5, help="How many tiles.")
    text: str = option("note", help="What each tile says.")

    def check(self, where: str) -> None:
        if self.tiles < 1:
            raise CimInputError(f"{where}: option 'tiles' must be at least 1, got {self.tiles}")


@dataclass
class NotePlan(LayerPlan):
    text: str = ""


@dataclass(frozen=True)
class NoteState:
    sink: TileSink
    text: str
    index: str
    fail_at: int | None


def note_job(state: NoteState, key: int) -> int:
    """The tile job: one small file per key, through the sink; skips what an earlier run of the
    same build finished."""
    with _lock:
        CALLS.append(key)
    if key == state.fail_at:
        raise RuntimeError(f"tile {key} failed")
    rel = f"tiles/{key}.txt"
    data = f"{state.text} {key}\n".encode()
    if not state.sink.is_done(rel):
        index_there = os.path.exists(state.index)
        state.sink.write(rel, data)
        with _lock:
            WRITES.append(rel)
            INDEX_SEEN.append(index_there)
    return len(data)


class NoteLayer(LayerBuilder[NoteOptions, NotePlan]):
    """A text file of the source in N tiles."""

    kind = KIND
    Options = NoteOptions
    summary = "Notes, for the contract's tests."

    def plan(self, sources: list[Path], options: NoteOptions, run: LayerRun) -> NotePlan:
        source = sources[0]
        key = build_key("notes-1", file_fingerprint(source), options.tiles, options.text)
        return NotePlan(key, list(range(options.tiles)), text=f"{source.read_text().strip()}/{options.text}")

    def build(self, plan: NotePlan, run: LayerRun) -> LayerOutput:
        assert run.store is not None
        state = NoteState(run.store.sink(), plan.text, str(run.out / self.index), CONTROL["fail_at"])
        sizes = list(run.map(note_job, state, plan.jobs, stage="notes"))
        region = [BOUNDS["west"], BOUNDS["south"], BOUNDS["east"], BOUNDS["north"], BOUNDS["min_height"], BOUNDS["max_height"]]
        index = {
            "asset": {"version": "1.1"},
            "geometricError": 10.0,
            "root": {
                "boundingVolume": {"region": region},
                "geometricError": 0.0,
                "refine": "ADD",
                "children": [
                    {"boundingVolume": {"region": region}, "geometricError": 0.0, "content": {"uri": f"tiles/{k}.txt"}} for k in plan.jobs
                ],
            },
        }
        return LayerOutput(index=index, count=len(sizes), tiles=len(sizes), bounds=dict(BOUNDS), schema={"note": "string"})


@pytest.fixture
def notes():
    """The kind, registered for one test; what its job did, cleared."""
    registry.register(NoteLayer)
    for record in (CALLS, WRITES, INDEX_SEEN):
        record.clear()
    yield NoteLayer
    registry.unregister(KIND)
    assert KIND not in registry.kinds()


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "src" / "notes.txt"
    path.parent.mkdir()
    path.write_text("hello\n")
    return path


def tiles_of(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted((out / "tiles").rglob("*")) if p.is_file()}


def build_log(out: Path) -> tuple[str, dict[str, int]]:
    lines = [json.loads(line) for line in (out / LOG_NAME).read_text().splitlines()]
    return lines[0]["key"], {e["file"]: e["size"] for e in lines[1:]}


def forget() -> None:
    for record in (CALLS, WRITES, INDEX_SEEN):
        record.clear()


# -- a kind defined outside cim ------------------------------------------------------------------


async def test_convert_writes_every_tile_then_the_index_and_a_city(notes, source, tmp_path, aiohttp_client):
    out = tmp_path / "out"
    stages: list[tuple[str, int, int]] = []
    report = cim.convert(KIND, source, out, workers=2, tiles=5, text="a", progress=lambda *s: stages.append(s))

    assert tiles_of(out) == {f"tiles/{k}.txt": f"hello/a {k}\n".encode() for k in range(5)}
    assert len(INDEX_SEEN) == 5 and not any(INDEX_SEEN)  # no index while a tile was being written
    index_time = (out / "tileset.json").stat().st_mtime_ns
    assert all(index_time >= (out / rel).stat().st_mtime_ns for rel in tiles_of(out))
    assert json.loads((out / "tileset.json").read_text())["root"]["children"][4]["content"]["uri"] == "tiles/4.txt"
    assert stages[-1] == (f"{KIND}: notes", 5, 5)

    key, logged = build_log(out)
    assert logged == {f"tiles/{k}.txt": len(f"hello/a {k}\n") for k in range(5)}
    assert key == build_key("notes-1", file_fingerprint(source), 5, "a")

    (layer,) = report.layers
    assert (layer.kind, layer.id, layer.count, layer.tiles, layer.resumed_tiles) == (KIND, KIND, 5, 5, 0)
    assert layer.bytes == sum(len(b) for b in tiles_of(out).values()) + (out / "tileset.json").stat().st_size

    city = json.loads((out / "city.json").read_text())
    assert city["name"] == "notes"
    (entry,) = city["layers"]
    assert (entry["id"], entry["kind"], entry["format"], entry["url"]) == (KIND, KIND, "3dtiles", "tileset.json")
    assert entry["bounds"] == BOUNDS and entry["count"] == 5 and entry["stats"]["tiles"] == 5
    assert entry["cim_level"] == NoteLayer.cim_level and entry["schema"] == {"note": "string"}
    # no other layer fixed the city's frame: the layer's bounds did
    assert city["origin"] == pytest.approx({"lon": 105.71, "lat": 34.58, "height": 1100.0})

    client = await aiohttp_client(create_app(out))
    response = await client.get("/api/city")
    assert response.status == 200
    assert (await response.json())["layers"][0]["kind"] == KIND
    response = await client.get(f"/city/{entry['url']}")
    assert response.status == 200
    response = await client.get("/city/tiles/3.txt")
    assert response.status == 200 and await response.read() == b"hello/a 3\n"


def test_the_same_build_again_resumes_every_tile(notes, source, tmp_path):
    out = tmp_path / "out"
    cim.convert(KIND, source, out, tiles=5, text="a")
    before = {rel: ((out / rel).stat().st_mtime_ns, (out / rel).stat().st_ino) for rel in tiles_of(out)}
    city = json.loads((out / "city.json").read_text())
    forget()

    report = cim.convert(KIND, source, out, tiles=5, text="a")
    assert report.layers[0].resumed_tiles == 5
    assert WRITES == []  # every job found its tile done
    assert {rel: ((out / rel).stat().st_mtime_ns, (out / rel).stat().st_ino) for rel in tiles_of(out)} == before
    again = json.loads((out / "city.json").read_text())
    for doc in (city, again):
        doc["layers"][0]["stats"].pop("seconds")
    assert again == city


def test_another_build_removes_the_tiles_it_no_longer_writes(notes, source, tmp_path):
    out = tmp_path / "out"
    cim.convert(KIND, source, out, tiles=5, text="a")
    first_key, _ = build_log(out)
    (out / "README.txt").write_text("the user's own file, outside the layer's content folder")
    forget()

    report = cim.convert(KIND, source, out, tiles=3, text="b")
    assert report.layers[0].resumed_tiles == 0
    assert sorted(WRITES) == [f"tiles/{k}.txt" for k in range(3)]
    assert tiles_of(out) == {f"tiles/{k}.txt": f"hello/b {k}\n".encode() for k in range(3)}
    key, logged = build_log(out)
    assert key != first_key and set(logged) == {f"tiles/{k}.txt" for k in range(3)}
    assert (out / "README.txt").exists()
    assert len(json.loads((out / "tileset.json").read_text())["root"]["children"]) == 3
    assert json.loads((out / "city.json").read_text())["layers"][0]["count"] == 3

    # a changed source is another build too
    source.write_text("changed\n")
    os.utime(source, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns + 10**9))
    report = cim.convert(KIND, source, out, tiles=3, text="b")
    assert report.layers[0].resumed_tiles == 0
    assert tiles_of(out)["tiles/0.txt"] == b"changed/b 0\n"


@pytest.mark.parametrize("workers", [1, 2])
def test_an_interrupted_build_publishes_nothing_and_resumes(notes, source, tmp_path, monkeypatch, workers):
    out = tmp_path / "out"
    monkeypatch.setitem(CONTROL, "fail_at", 3)
    with pytest.raises(RuntimeError, match="tile 3 failed"):
        cim.convert(KIND, source, out, workers=workers, tiles=6, text="a")
    assert not (out / "tileset.json").exists()
    assert not (out / "city.json").exists()
    _, logged = build_log(out)
    assert set(logged) == {f"tiles/{k}.txt" for k in range(3)}  # results are logged in key order

    monkeypatch.setitem(CONTROL, "fail_at", None)
    forget()
    report = cim.convert(KIND, source, out, workers=workers, tiles=6, text="a")
    assert report.layers[0].resumed_tiles == 3
    assert sorted(WRITES) == [f"tiles/{k}.txt" for k in range(3, 6)]
    assert tiles_of(out) == {f"tiles/{k}.txt": f"hello/a {k}\n".encode() for k in range(6)}
    assert (out / "tileset.json").exists() and (out / "city.json").exists()
    _, logged = build_log(out)
    assert set(logged) == {f"tiles/{k}.txt" for k in range(6)}


def test_a_recipe_builds_the_kind_next_to_builtin_ones(notes, source, tmp_path, tiny_sources):
    recipe = tmp_path / "city.toml"
    recipe.write_text(
        f'[city]\nname = "mixed"\ncrs = "EPSG:4544"\n\n'
        f'[[layers]]\nid = "notes"\nkind = "{KIND}"\nsource = "{source.as_posix()}"\ntiles = 2\ntext = "r"\n\n'
        f'[[layers]]\nid = "ground"\nkind = "terrain"\nsource = "{tiny_sources.dem.as_posix()}"\n'
    )
    out = tmp_path / "out"
    report = cim.build(recipe, out)
    assert [layer.id for layer in report.layers] == ["notes", "ground"]  # recipe order in the report
    assert tiles_of(out / "notes") == {"tiles/0.txt": b"hello/r 0\n", "tiles/1.txt": b"hello/r 1\n"}
    city = json.loads((out / "city.json").read_text())
    assert [(e["id"], e["kind"], e["url"]) for e in city["layers"]] == [
        ("notes", KIND, "notes/tileset.json"),
        ("ground", "terrain", "ground/"),
    ]
    # terrain (order 10) built first and fixed the city's frame from its bounds, not the notes' bounds
    b = city["layers"][1]["bounds"]
    expected = {"lon": (b["west"] + b["east"]) / 2, "lat": (b["south"] + b["north"]) / 2, "height": b["min_height"]}
    assert city["origin"] == pytest.approx(expected)
    assert city["origin"]["height"] != pytest.approx(BOUNDS["min_height"])
    assert create_app(out) is not None


# -- run_layer -------------------------------------------------------------------------------


def test_run_layer_fixes_the_city_frame_from_the_bounds(notes, source, tmp_path):
    city = City(tmp_path / "city", LocalEngine(1))
    result = run_layer(NoteLayer(), "n", [source], NoteOptions(tiles=2), city)
    assert result.path == tmp_path / "city" / "n"
    assert (result.path / "tileset.json").exists()
    assert city.built == [result]
    assert (city.frame.lon, city.frame.lat, city.frame.h) == pytest.approx((105.71, 34.58, 1100.0))

    from cim.kernels.frames import LocalFrame

    fixed = LocalFrame(100.0, 30.0, 5.0)
    city = City(tmp_path / "other", LocalEngine(1), frame=fixed)
    run_layer(NoteLayer(), "n", [source], NoteOptions(tiles=2), city, out=tmp_path / "elsewhere")
    assert city.frame is fixed
    assert (tmp_path / "elsewhere" / "tiles" / "1.txt").exists()


def test_run_layer_checks_the_number_of_sources_before_planning(notes, source, tmp_path):
    city = City(tmp_path / "city", LocalEngine(1))
    with pytest.raises(CimInputError, match="no source"):
        run_layer(NoteLayer(), "n", [], NoteOptions(), city)
    with pytest.raises(CimInputError, match=f"the {KIND} kind takes one source, got 2"):
        run_layer(NoteLayer(), "n", [source, source], NoteOptions(), city)
    assert CALLS == [] and not (tmp_path / "city").exists()


def test_unregister_forgets_the_kind(notes, source, tmp_path):
    registry.unregister(KIND)
    with pytest.raises(CimInputError, match=rf"unknown layer kind '{KIND}' \(known: .*terrain"):
        cim.convert(KIND, source, tmp_path / "out")
    registry.register(NoteLayer)  # for the fixture's teardown
    assert registry.get(KIND).kind == KIND


# -- every built-in kind --------------------------------------------------------------------


def test_terrain_coarser_than_its_dem_converts(tiny_sources, tmp_path):
    """A terrain whose finest level is coarse for its DEM (zoom 12: about 76 m between samples
    over a 520 m DEM) still has data at every level it writes: the conversion works (and a
    problem would be a CimInputError, never a kernel's ValueError)."""
    report = cim.convert("terrain", tiny_sources.dem, tmp_path / "t", max_zoom=12)
    assert report.layers[0].tiles >= 13  # a tile at each level 0..12
    assert json.loads((tmp_path / "t" / "city.json").read_text())["layers"][0]["kind"] == "terrain"


def builtin_sources(tiny_sources, kind: str, tmp_path: Path) -> tuple[object, dict]:
    if kind == "cityjson":  # the sample city has no CityJSON: a small one near it
        from tests.helpers import cityjson

        return cityjson.write(tmp_path / "two.city.json", cityjson.two_lod_city()), {}
    return {
        "terrain": (tiny_sources.dem, {}),
        "imagery": (tiny_sources.ortho, {"format": "png", "max_zoom": 16}),
        "buildings": (tiny_sources.buildings, {"dem": tiny_sources.dem}),
        "bim": (tiny_sources.ifc[:1], {}),
        "pointcloud": (tiny_sources.lidar, {}),
        "mesh": (tiny_sources.reality, {}),
    }[kind]


@pytest.mark.parametrize("kind", sorted(registry.BUILTIN))
async def test_every_builtin_kind_converts_to_a_city_the_server_opens(kind, tiny_sources, tmp_path, aiohttp_client):
    src, options = builtin_sources(tiny_sources, kind, tmp_path)
    out = tmp_path / kind
    report = cim.convert(kind, src, out, **options)
    (layer,) = report.layers
    assert layer.kind == kind and layer.tiles > 0 and layer.bytes > 0

    city = json.loads((out / "city.json").read_text())
    (entry,) = city["layers"]
    assert entry["kind"] == kind and entry["id"] == kind and entry["stats"]["tiles"] == layer.tiles
    builder = registry.get(kind)
    assert (out / builder.index).is_file()
    assert entry["format"] == builder.format

    client = await aiohttp_client(create_app(out))
    response = await client.get("/api/city")
    assert response.status == 200 and (await response.json())["layers"][0]["kind"] == kind
    if entry["format"] == "3dtiles":
        url = entry["url"]
    elif entry["format"] == "quantized-mesh":
        url = entry["url"] + "layer.json"
    else:  # an XYZ template: a tile of the coarsest level
        meta = json.loads((out / builder.index).read_text())
        x, y, _, _ = tiles_covering(*meta["bounds"], meta["minzoom"])
        url = entry["url"].format(z=meta["minzoom"], x=x, y=y)
    response = await client.get(f"/city/{url}")
    assert response.status == 200, url
    body = await response.read()
    if url.endswith(".json"):
        assert json.loads(body)
    elif url.endswith(".png"):
        assert body.startswith(b"\x89PNG\r\n\x1a\n")
    if city.get("search"):
        assert (out / city["search"]["url"]).is_file()
