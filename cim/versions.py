"""Versions of a built city: every ``cim build`` records one, and old ones stay servable.

Layout, inside the city's admin folder (``CITY/.cim``, which the server never serves as files)::

    CITY/.cim/versions/000003.json     one record a build: id "v3", time, recipe, source digests,
                                       and every file of the city with its SHA-256 digest
    CITY/.cim/objects/ab/cdef….glb     each distinct file content of a kept version, once

Why a content-addressed store of **hard links**, rather than a directory per version:

- the live city stays a plain folder that any static server (or ``cim serve``) serves as it is;
  a version costs no disk for the files it shares with others, and one link for each file
  content it adds: an unchanged tile is linked once whatever the number of versions, where a
  directory per version needs a link per file per version;
- the build never changes a published file in place: it replaces it by a rename (a new inode,
  see :mod:`cim.store`), or leaves it alone when its bytes are unchanged (incremental builds),
  so the object linked to the old inode keeps the old bytes for as long as a version needs them;
- a record is written after every object it names exists, so a version is whole or absent; and
  :func:`prune` removes records first, then the objects no kept record names.

Where hard links are refused (another filesystem, a platform without them) objects are copied.
Objects keep their file's suffix (``.glb``, ``.json.gz``), so the server picks the content type
and the precompressed fallback as it does for live files.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cim.access import ACCESS_DIR
from cim.errors import CimInputError, CimIOError, CimNotFound
from cim.store import atomic_write_json, content_digest

__all__ = [
    "VERSIONS_DIR",
    "OBJECTS_DIR",
    "Version",
    "record_version",
    "list_versions",
    "get_version",
    "object_path",
    "version_file",
    "prune",
    "PruneReport",
]

VERSIONS_DIR = f"{ACCESS_DIR}/versions"
OBJECTS_DIR = f"{ACCESS_DIR}/objects"


@dataclass
class Version:
    """One build of a city, as its record says.

    Attributes
    ----------
    id : ``v<number>``
    number : the build's place in the city's history, from 1
    time : when the build finished (UTC, ISO 8601)
    recipe : the recipe's path, digest and text, when the build had one
    sources : the SHA-256 digest of every source file (path as the recipe gives it)
    files : every file of the city (path relative to it) → its SHA-256 digest
    layers : per layer: files rewritten, files made (encoded), files in all, seconds
    generator : the cim version that built it
    """

    id: str
    number: int
    time: str
    recipe: dict[str, Any] | None = None
    sources: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict, repr=False)
    layers: dict[str, dict[str, Any]] = field(default_factory=dict)
    generator: str = ""

    @property
    def rewritten(self) -> int:
        """Files of the layers the build wrote (the others were left as the previous build made them)."""
        return sum(int(v.get("rewritten", 0)) for v in self.layers.values())

    def summary(self) -> dict[str, Any]:
        """The record without its file map (what ``cim versions`` and ``/api/versions`` show)."""
        return {
            "id": self.id,
            "number": self.number,
            "time": self.time,
            "generator": self.generator,
            "files": len(self.files),
            "rewritten": self.rewritten,
            "layers": self.layers,
            "recipe": {k: v for k, v in (self.recipe or {}).items() if k != "text"} or None,
            "sources": self.sources,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "number": self.number,
            "time": self.time,
            "generator": self.generator,
            "recipe": self.recipe,
            "sources": self.sources,
            "layers": self.layers,
            "files": self.files,
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Version:
        return cls(
            id=str(doc["id"]),
            number=int(doc["number"]),
            time=str(doc["time"]),
            recipe=doc.get("recipe"),
            sources=dict(doc.get("sources") or {}),
            files=dict(doc.get("files") or {}),
            layers=dict(doc.get("layers") or {}),
            generator=str(doc.get("generator", "")),
        )


def _record_path(city: Path, number: int) -> Path:
    return city / VERSIONS_DIR / f"{number:06d}.json"


def _suffix(name: str) -> str:
    """The suffix an object keeps: the last one, and the one before a ``.gz``."""
    suffixes = Path(name).suffixes
    if not suffixes:
        return ""
    if suffixes[-1] == ".gz" and len(suffixes) > 1:
        return "".join(suffixes[-2:])
    return suffixes[-1]


def object_path(city: str | Path, digest: str, name: str) -> Path:
    """Where the content ``digest`` of a file called ``name`` is kept."""
    return Path(city) / OBJECTS_DIR / digest[:2] / f"{digest[2:]}{_suffix(name)}"


def _city_files(city: Path) -> Iterator[str]:
    """Paths (relative, ``/``-separated) of the city's visible files: what the server serves."""
    for folder, dirs, names in os.walk(city):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = os.path.relpath(folder, city)
        for name in sorted(names):
            if not name.startswith("."):
                yield name if rel == "." else f"{rel}/{name}".replace(os.sep, "/")


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _link(src: Path, dst: Path) -> None:
    if dst.exists():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except FileExistsError:
        return
    except OSError:  # no hard links here: copy (atomically, so a torn copy is never an object)
        tmp = dst.with_name(f".{dst.name}.{os.getpid()}.copy.tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)


def list_versions(city: str | Path) -> list[Version]:
    """The city's versions, oldest first (none for a city built before versions existed)."""
    folder = Path(city) / VERSIONS_DIR
    out = []
    for path in sorted(folder.glob("[0-9]*.json")) if folder.is_dir() else []:
        try:
            out.append(Version.from_dict(json.loads(path.read_text(encoding="utf-8"))))
        except (ValueError, KeyError, TypeError) as exc:
            raise CimIOError(f"{path}: not a version record ({exc})") from exc
    return out


def get_version(city: str | Path, version: str) -> Version:
    """One version by id (``v3``, ``3``) or ``latest``.

    Raises
    ------
    CimNotFound
        The city has no such version (the message lists the ones it has).
    """
    versions = list_versions(city)
    if not versions:
        raise CimNotFound(f"{city}: no versions recorded (build the city with cim build)")
    if version == "latest":
        return versions[-1]
    wanted = version[1:] if version[:1] in ("v", "V") else version
    for v in versions:
        if str(v.number) == wanted:
            return v
    raise CimNotFound(f"{city}: no version {version!r} (it has {', '.join(v.id for v in versions)})")


def version_file(city: str | Path, version: Version, path: str) -> Path:
    """The stored file of ``path`` (relative to the city) in ``version``.

    Raises
    ------
    CimNotFound
        The version has no such file.
    """
    digest = version.files.get(path)
    if digest is None:
        raise CimNotFound(f"version {version.id} has no file {path}")
    return object_path(city, digest, path)


def record_version(
    city: str | Path,
    *,
    known: Mapping[str, str] | None = None,
    recipe: Path | None = None,
    sources: Iterable[Path] = (),
    layers: Mapping[str, Mapping[str, Any]] | None = None,
    generator: str = "",
    now: _dt.datetime | None = None,
) -> Version:
    """Record the city as it is now as its next version.

    Parameters
    ----------
    city : the built city's folder
    known : digests already computed for some files (relative path → digest: what the layers'
        stores logged), so that only the others are read
    recipe : the recipe the city was built from (its text is kept in the record)
    sources : the source files and folders (every file below a folder is hashed)
    layers : per layer: what the record keeps of its build (files rewritten, made, files, seconds)
    generator : the program that built it
    now : the build's time (default: now)

    Returns
    -------
    Version
        The new version; its objects exist before its record is written.
    """
    city = Path(city)
    known = known or {}
    (city / ACCESS_DIR).mkdir(mode=0o700, exist_ok=True)  # private, as cim.access makes it
    files: dict[str, str] = {}
    for rel in _city_files(city):
        digest = known.get(rel) or _file_digest(city / rel)
        files[rel] = digest
        _link(city / rel, object_path(city, digest, rel))
    existing = list_versions(city)
    number = existing[-1].number + 1 if existing else 1
    source_digests: dict[str, str] = {}
    for src in sources:
        paths = sorted(p for p in Path(src).rglob("*") if p.is_file()) if Path(src).is_dir() else [Path(src)]
        for p in paths:
            if p.is_file():
                source_digests[str(p)] = _file_digest(p)
    recipe_doc = None
    if recipe is not None and Path(recipe).is_file():
        data = Path(recipe).read_bytes()
        recipe_doc = {"path": str(recipe), "sha256": content_digest(data), "text": data.decode("utf-8", "replace")}
    when = (now or _dt.datetime.now(_dt.UTC)).astimezone(_dt.UTC).isoformat(timespec="seconds")
    version = Version(
        id=f"v{number}",
        number=number,
        time=when,
        recipe=recipe_doc,
        sources=source_digests,
        files=files,
        layers={k: dict(v) for k, v in (layers or {}).items()},
        generator=generator,
    )
    atomic_write_json(_record_path(city, number), version.to_dict(), pretty=False)
    return version


@dataclass
class PruneReport:
    """What :func:`prune` removed and kept."""

    removed: list[str]
    kept: list[str]
    objects_removed: int
    bytes_freed: int


def prune(city: str | Path, keep: int) -> PruneReport:
    """Remove all but the ``keep`` newest versions, and every stored file no kept version needs.

    The live city is never touched (its files are separate links), and an object is removed only
    when no kept record names it. Records go first, so an interrupted prune leaves objects no
    record names, which the next prune removes.

    Raises
    ------
    CimInputError
        ``keep`` is below 1 (the newest version is always kept).
    """
    if keep < 1:
        raise CimInputError(f"prune --keep {keep}: keep at least 1 version (the current one)")
    city = Path(city)
    versions = list_versions(city)
    drop, kept = versions[:-keep], versions[-keep:]
    for v in drop:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(_record_path(city, v.number))
    needed = {f"{d[:2]}/{d[2:]}{_suffix(rel)}" for v in kept for rel, d in v.files.items()}
    removed = freed = 0
    root = city / OBJECTS_DIR
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if not folder.is_dir():
            continue
        for obj in folder.iterdir():
            if f"{folder.name}/{obj.name}" not in needed:
                freed += obj.stat().st_size if obj.stat().st_nlink == 1 else 0
                obj.unlink()
                removed += 1
        with contextlib.suppress(OSError):
            folder.rmdir()  # empty now
    return PruneReport([v.id for v in drop], [v.id for v in kept], removed, freed)
