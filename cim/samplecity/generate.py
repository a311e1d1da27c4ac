"""``cim sample``: write the synthetic Tianshui sources and their recipe.

Every preset is a window of one deterministic city (seeded), so ``tiny`` is a corner of
``district``, which is a corner of ``city``.

Stages and their CPU seconds on ``city`` (2 shared cores, ``benchmarks/bench_sample.py``): DEM
9.1 (in a worker process, beside the footprints), footprints 6.5, orthophoto 11.6, BIM 9.9 (in
a worker, beside the orthophoto), lidar 52.6 (its tiles in the two workers; LAZ compression
three quarters of it), reality mesh 0.6 (beside the lidar): about 93 CPU seconds, which two
idle cores would take in about 47 s. :attr:`SampleCity.stages` has each stage's times.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

import numpy as np
import pyogrio
import rasterio
import shapely
from rasterio.transform import from_origin

from cim.errors import CimInputError, CimIOError
from cim.samplecity.buildings import attributes, generate_footprints
from cim.samplecity.mesh import write_sample_mesh
from cim.samplecity.ortho import write_orthophoto
from cim.samplecity.pointcloud import make_tile, survey_jobs
from cim.samplecity.sites import bim_sites, lidar_bounds
from cim.samplecity.terrain import CENTRE_E, CENTRE_N, dem_grid
from cim.store import atomic_path, atomic_write_text

__all__ = ["BIM_ASIDE_PIXELS", "CRS", "Preset", "PRESETS", "SampleCity", "Stage", "sample"]

log = logging.getLogger("cim.sample")
T = TypeVar("T")
CRS = "EPSG:4544"
#: from this many orthophoto pixels on (``district``: 16 M), the BIM models are written in a
#: second process while the orthophoto is made (starting it costs about 1 s of CPU)
BIM_ASIDE_PIXELS = 4_000_000


@dataclass(frozen=True)
class Preset:
    """A window of the city: its size (m), centre offset (m) and DEM resolution (m)."""

    name: str
    width: float
    height: float
    dem_res: float
    ortho_res: float
    bim_count: int = 3
    bim_floors: tuple[int, int] = (4, 16)
    lidar_density: float = 1.0  # points per m² over lidar_bounds (the generator: about 1.5 M points/s on 2 cores)
    lidar_tile: float = 500.0
    dx: float = 0.0
    dy: float = 0.0
    description: str = ""
    #: disk the sources take (bytes, measured on the written city; checked before writing)
    disk: int = 0


PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        "tiny", 520.0, 400.0, 1.0, 0.5, 2, (2, 3), 1.0, 250.0, dx=-1300.0, dy=-130.0, description="a few blocks; builds in seconds"
    ),
    "district": Preset("district", 2000.0, 2000.0, 1.0, 0.5, dy=-300.0, description="about 4 km² of the centre"),
    # 8.2 pts/m² over the surveyed 12.5 km² (see lidar_bounds): 100 M points once the river has
    # swallowed most of its returns
    "city": Preset("city", 15000.0, 8000.0, 2.0, 2.0, lidar_density=8.2, description="the whole city, 120 km²", disk=920_000_000),
    # the whole 120 km² flown at survey density: 8 pts/m² everywhere (about 0.93 billion points
    # once the river has swallowed most of its returns: 8.4 bytes a point as LAZ, as measured
    # on `city`), a 1 m DEM (120 M cells) and a 0.5 m orthophoto (480 M pixels). Opt-in: it takes
    # about 8 GB of disk and its build as much again.
    "survey": Preset(
        "survey",
        15000.0,
        8000.0,
        1.0,
        0.5,
        lidar_density=8.0,
        description="the whole city at survey density (about 0.93 billion lidar points; 8 GB of disk)",
        disk=8_200_000_000,
    ),
}


@dataclass
class SampleCity:
    """What :func:`sample` wrote."""

    preset: str
    root: Path
    recipe: Path
    dem: Path
    buildings: Path
    ortho: Path
    n_buildings: int
    bounds: tuple[float, float, float, float]
    seconds: float
    ifc: list[Path]
    lidar: list[Path]
    reality: Path | None = None
    #: when each stage ran and its CPU seconds: ``dem``, ``footprints``, ``ortho``, ``bim``,
    #: ``lidar`` (its tiles' CPU summed over the workers), ``mesh``
    stages: dict[str, Stage] = field(default_factory=dict)


def sample(preset: str, out_dir: str | Path, seed: int = 0) -> SampleCity:
    """Generate a preset of the synthetic Tianshui into ``out_dir``.

    Writes ``data/dem.tif`` (float32, EPSG:4544), ``data/buildings.gpkg``, ``data/ortho.tif``
    (RGB) and ``city.toml``.

    Parameters
    ----------
    preset : ``"tiny"``, ``"district"``, ``"city"`` or ``"survey"`` (opt-in: 8 GB, see :data:`PRESETS`)
    out_dir : folder to write (created)
    seed : the city's random seed; the same seed gives byte-identical sources

    Examples
    --------
    >>> import cim
    >>> city = cim.sample("tiny", "/tmp/tianshui")          # doctest: +SKIP
    >>> cim.build(city.recipe, "/tmp/tianshui/tiles")       # doctest: +SKIP
    """
    if preset not in PRESETS:
        raise CimInputError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    t0 = time.perf_counter()
    p = PRESETS[preset]
    root = Path(out_dir)
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    _check_disk(data, p)
    cx, cy = CENTRE_E + p.dx, CENTRE_N + p.dy
    xmin, ymin = round(cx - p.width / 2), round(cy - p.height / 2)
    xmax, ymax = xmin + p.width, ymin + p.height
    stages: dict[str, Stage] = {}
    dem_path = data / "dem.tif"
    gpkg = data / "buildings.gpkg"
    ortho = data / "ortho.tif"
    # past the small presets, two worker processes (forkserver: no fork after lazrs or GDAL
    # started threads) take what does not need this process: the DEM while the footprints are
    # made here, the BIM models (ifcopenshell, Python-bound) while the orthophoto is, then the
    # lidar's tiles; this process makes the reality mesh meanwhile
    pool = None
    if p.width * p.height / p.ortho_res**2 >= BIM_ASIDE_PIXELS and (os.cpu_count() or 1) > 1:
        method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        pool = ProcessPoolExecutor(min(os.cpu_count() or 1, 2), mp_context=mp.get_context(method))
    try:
        make_dem = partial(_write_dem, dem_path, xmin, ymin, xmax, ymax, p.dem_res, seed)
        dem_job = pool.submit(_timed, make_dem) if pool is not None else None
        if dem_job is None:
            stages["dem"] = _timed(make_dem)[1]
        here = _clock()
        geoms, cols = generate_footprints(xmin, ymin, xmax, ymax, seed)
        attrs = attributes(geoms, cols, CENTRE_E, seed)
        _write_footprints(gpkg, geoms, attrs)
        stages["footprints"] = here.stop()
        if dem_job is not None:
            stages["dem"] = dem_job.result()[1]
        # only the sites travel to the worker, not the city's footprints
        sites = bim_sites(geoms, attrs, p.bim_count, p.bim_floors[0], p.bim_floors[1])
        rings = [np.asarray(geoms[site["index"]].exterior.coords) for site in sites]
        make_bim = partial(_write_bim, data / "bim", sites, rings, dem_path, seed)
        bim_job = pool.submit(_timed, make_bim) if pool is not None else None
        here = _clock()
        write_orthophoto(ortho, (xmin, ymin, xmax, ymax), p.ortho_res, geoms, attrs["use"], dem_path, seed)
        stages["ortho"] = here.stop()
        if bim_job is None:
            ifcs, stages["bim"] = _timed(make_bim)
        here = _clock()
        survey = survey_jobs(
            data / "lidar", lidar_bounds((xmin, ymin, xmax, ymax), preset), dem_path, gpkg, ortho, p.lidar_density, p.lidar_tile, seed
        )
        # in this process (small presets), the tiles are made now; else the workers make them
        lidar_start, lidar_cpu = here.start, here.stop().cpu  # the tiles' own CPU is added below
        tiles = [pool.submit(make_tile, job) for job in survey] if pool is not None else None
        done = [make_tile(job) for job in survey] if tiles is None else []
        lidar_end = time.monotonic()
        here = _clock()
        reality = write_sample_mesh(data / "reality", (cx, cy), dem_path, geoms, attrs["height"], ortho)
        stages["mesh"] = here.stop()
        if tiles is not None:
            done = [f.result() for f in tiles]
            lidar_end = time.monotonic()
        lidar = [Path(job.path) for job, (n, _) in zip(survey, done) if n and job.path is not None]
        stages["lidar"] = Stage(lidar_start, lidar_end, lidar_cpu + sum(cpu for _, cpu in done))
        if bim_job is not None:  # timed in its worker
            ifcs, stages["bim"] = bim_job.result()
        log.info("sample point cloud: %d tile(s) in %s", len(lidar), data / "lidar")
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)

    recipe = root / "city.toml"
    atomic_write_text(recipe, _recipe_text(preset, seed))
    took = time.perf_counter() - t0
    log.info("sample %s: %d buildings, DEM %s m, in %.1f s", preset, len(geoms), p.dem_res, took)
    return SampleCity(preset, root, recipe, dem_path, gpkg, ortho, len(geoms), (xmin, ymin, xmax, ymax), took, ifcs, lidar, reality, stages)


@dataclass(frozen=True)
class Stage:
    """When a stage of :func:`sample` ran (``time.monotonic`` seconds, the same clock in every
    process) and the CPU seconds (user + system) of the process that ran it meanwhile."""

    start: float
    end: float
    cpu: float


class _clock:
    def __init__(self) -> None:
        self.start, self.cpu0 = time.monotonic(), _cpu()

    def stop(self) -> Stage:
        return Stage(self.start, time.monotonic(), _cpu() - self.cpu0)


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def _timed(fn: Callable[[], T]) -> tuple[T, Stage]:
    """``fn()`` and its :class:`Stage` (in a worker process: that process's CPU)."""
    c = _clock()
    result = fn()
    return result, c.stop()


def _check_disk(folder: Path, p: Preset) -> None:
    """Refuse to start a preset the disk cannot hold (what is already there counts as free:
    rewriting a city replaces its files)."""
    if p.disk <= 0:
        return
    have = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    free = shutil.disk_usage(folder).free + have
    if free < p.disk * 1.05:
        raise CimIOError(
            f"{folder}: the {p.name} preset needs about {p.disk / 1e9:.1f} GB of disk, and only {free / 1e9:.1f} GB is free there"
        )


def _write_bim(folder: Path, sites: list[dict], corners: list[np.ndarray], dem: Path, seed: int) -> list[Path]:
    """A few IFC4 buildings (ifcopenshell.api) on sites of LOD1 buildings they will replace
    (:func:`bim_sites`; ``corners``: each site's footprint's exterior ring)."""
    from pyproj import CRS as _CRS

    from cim.samplecity.bim import write_sample_ifc
    from cim.sources.dem import sample_dem

    paths = []
    for site, ring in zip(sites, corners):
        ground = float(np.nanmin(sample_dem(dem, ring[:, 0], ring[:, 1], _CRS.from_user_input(CRS))))
        name = f"{site['id']}-{site['name'].replace(' ', '-').lower()}"
        paths.append(
            write_sample_ifc(
                folder / f"{name}.ifc",
                easting=site["easting"],
                northing=site["northing"],
                base_height=ground,
                rotation_deg=site["rotation"],
                width=site["width"],
                depth=site["depth"],
                storeys=site["storeys"],
                name=site["name"],
                seed=seed,
            )
        )
    return paths


def _write_dem(path: Path, xmin: float, ymin: float, xmax: float, ymax: float, res: float, seed: int) -> None:
    grid = dem_grid(xmin, ymin, xmax, ymax, res, seed)
    profile = {
        "driver": "GTiff",
        "width": grid.shape[1],
        "height": grid.shape[0],
        "count": 1,
        "dtype": "float32",
        "crs": CRS,
        "transform": from_origin(xmin, ymax, res, res),
        "nodata": -9999.0,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "zstd",  # decodes several times faster than deflate
        "predictor": 3,
    }
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(grid, 1)
        dst.update_tags(source="cim synthetic Tianshui", seed=str(seed))


def _write_footprints(path: Path, geoms: list, attrs: dict[str, np.ndarray]) -> None:
    wkb = shapely.to_wkb(np.array(geoms, dtype=object))
    fields = list(attrs)
    # GDAL stamps a GeoPackage with the time it was written unless told the date: same inputs,
    # same bytes
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": "2026-01-01T00:00:00Z"})
    try:
        with atomic_path(path) as tmp:
            pyogrio.raw.write(
                str(tmp),
                geometry=wkb,
                field_data=[attrs[k] for k in fields],
                fields=fields,
                layer="buildings",
                driver="GPKG",
                geometry_type="Unknown",
                crs=CRS,
                promote_to_multi=False,
            )
    finally:
        pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": None})


def _recipe_text(preset: str, seed: int) -> str:
    return f"""# The synthetic Tianshui sample city, preset "{preset}" (seed {seed}), written by `cim sample`.
# Build it with:  cim build city.toml --out tiles/tianshui

[city]
name = "tianshui"
title = "Tianshui (synthetic, {preset})"
crs = "{CRS}"              # CGCS2000 / 3-degree Gauss-Kruger CM 105E

[[layers]]
id = "terrain"
kind = "terrain"
title = "Terrain"
source = "data/dem.tif"     # quantized-mesh; zoom levels from the DEM's resolution
cim_level = 1

[[layers]]
id = "buildings"
kind = "buildings"
title = "Buildings (LOD1)"
source = "data/buildings.gpkg"
height = "height"           # metres; else floors x storey_height; else default_height
floors = "floors"
storey_height = 3.0
dem = "data/dem.tif"        # bases sampled from the DEM so buildings stand on the ground
cim_level = 2

[[layers]]
id = "bim"
kind = "bim"
title = "BIM models (IFC)"
source = "data/bim"         # every .ifc in the folder; georeferenced with IfcMapConversion
cim_level = 6

[[layers]]
id = "lidar"
kind = "pointcloud"
title = "Lidar (classified)"
source = "data/lidar"       # every .las/.laz in the folder makes one layer
visible = false             # the viewer opens with it hidden: tick it in the layer list
cim_level = 1

[[layers]]
id = "imagery"
kind = "imagery"
title = "Orthophoto"
source = "data/ortho.tif"
format = "webp"             # webp (with transparency) | png | jpeg
cim_level = 1

[[layers]]
id = "reality"
kind = "mesh"
title = "Reality mesh (photogrammetry)"
source = "data/reality"     # OBJ tiles + MTL + textures; CRS and origin from metadata.xml
visible = false             # it covers the buildings and the ground it was made from: tick it to see it
cim_level = 3
"""
