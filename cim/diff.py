"""Differences between two versions of a city: features added, removed and changed.

A feature is known by its layer and id, the id the layers already give it (a building's id
attribute, a BIM element's GlobalId, a CityJSON object's id), as the city's search index holds
it (:mod:`cim.searchindex`). Each version's index is read from the version's stored files
(:mod:`cim.versions`), so any two kept versions compare, the current one included.

A feature has changed when its **geometry** moved or changed size (its longitude/latitude box
by more than about a centimetre, or its base or top height by more than a centimetre) or when
**attributes** differ (which ones are listed). The index keeps a feature's box and heights, not
its full geometry: a reshaped footprint that keeps its box and heights is not seen.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cim.errors import CimNotFound
from cim.searchindex import INDEX_NAME
from cim.store import atomic_write_json
from cim.versions import Version, get_version, version_file

__all__ = ["FeatureChange", "Diff", "diff_versions"]

#: degrees (about 1 cm) and metres below which a box or a height counts as unchanged
ANGLE_TOLERANCE = 1e-7
HEIGHT_TOLERANCE = 0.01


@dataclass
class FeatureChange:
    """One feature that differs between two versions.

    Attributes
    ----------
    layer, id, title : the feature
    change : ``added``, ``removed`` or ``changed``
    geometry : its box or heights changed (``changed`` only)
    attributes : the attributes whose values differ, sorted (``changed`` only)
    bbox : (west, south, east, north) in degrees: the newer state's, the older one's when removed
    base, top : its lowest and highest heights (m), of the same state
    """

    layer: str
    id: str
    title: str
    change: str
    bbox: tuple[float, float, float, float]
    geometry: bool = False
    attributes: list[str] = field(default_factory=list)
    base: float | None = None
    top: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "id": self.id,
            "title": self.title,
            "change": self.change,
            "geometry": self.geometry,
            "attributes": self.attributes,
            "bbox": list(self.bbox),
            "base": self.base,
            "top": self.top,
        }

    def line(self) -> str:
        """One line of text: ``+`` added, ``-`` removed, ``~`` changed (and what)."""
        mark = {"added": "+", "removed": "-", "changed": "~"}[self.change]
        what = []
        if self.geometry:
            what.append("geometry")
        if self.attributes:
            what.append("attributes: " + ", ".join(self.attributes))
        return f"{mark} {self.layer}/{self.id}  {self.title}" + (f"  ({'; '.join(what)})" if what else "")


@dataclass
class Diff:
    """What :func:`diff_versions` found, features sorted by layer and id."""

    old: str
    new: str
    changes: list[FeatureChange]

    def count(self, change: str) -> int:
        return sum(1 for c in self.changes if c.change == change)

    def summary(self) -> str:
        return f"{self.old} → {self.new}: {self.count('added')} added, {self.count('removed')} removed, {self.count('changed')} changed"

    def text(self) -> str:
        """The diff as text: one line a feature, then the summary."""
        return "\n".join([*(c.line() for c in self.changes), self.summary()]) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {
            "from": self.old,
            "to": self.new,
            "added": self.count("added"),
            "removed": self.count("removed"),
            "changed": self.count("changed"),
            "features": [c.to_dict() for c in self.changes],
        }

    def geojson(self) -> dict[str, Any]:
        """A FeatureCollection: each feature's box as a polygon, with what changed."""
        features = []
        for c in self.changes:
            w, s, e, n = c.bbox
            props = {k: v for k, v in c.to_dict().items() if k != "bbox"}
            features.append(
                {
                    "type": "Feature",
                    "id": f"{c.layer}/{c.id}",
                    "properties": props,
                    "geometry": {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]},
                }
            )
        return {"type": "FeatureCollection", "properties": {"from": self.old, "to": self.new}, "features": features}

    def write_geojson(self, path: str | Path) -> None:
        """Write :meth:`geojson` to ``path`` (atomically)."""
        atomic_write_json(path, self.geojson())


_Row = tuple[str, float, float, float, float, float, float, dict[str, Any]]


def _features(path: Path, exclude: Iterable[str] = ()) -> dict[tuple[str, str], _Row]:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = con.execute(
            "SELECT layer, fid, title, west, south, east, north, base, top, properties FROM features ORDER BY rowid"
        ).fetchall()
    finally:
        con.close()
    skip = set(exclude)
    out: dict[tuple[str, str], _Row] = {}
    for layer, fid, title, w, s, e, n, base, top, props in rows:
        if layer in skip:
            continue
        key, k = (layer, str(fid)), 1
        while key in out:  # an id repeated within a layer: the repeats are told apart by their order
            k += 1
            key = (layer, f"{fid}#{k}")
        out[key] = (title or str(fid), w, s, e, n, base, top, json.loads(props) if props else {})
    return out


def _index_of(city: Path, version: Version) -> Path:
    try:
        return version_file(city, version, INDEX_NAME)
    except CimNotFound:
        raise CimNotFound(f"version {version.id} of {city} has no search index (no layer with features)") from None


def _differs(a: Any, b: Any, tolerance: float) -> bool:
    if a is None or b is None:
        return a is not b
    return abs(float(a) - float(b)) > tolerance


def diff_versions(city: str | Path, old: str, new: str, *, exclude: Iterable[str] = ()) -> Diff:
    """Features added, removed and changed from version ``old`` to version ``new`` of ``city``.

    Parameters
    ----------
    city : the built city's folder
    old, new : version ids (``v1``, ``2``, ``latest``; see :func:`cim.versions.get_version`)
    exclude : layer ids left out (those a reader may not see)

    Raises
    ------
    CimNotFound
        A version does not exist, or has no search index.
    """
    city = Path(city)
    va, vb = get_version(city, old), get_version(city, new)
    a, b = _features(_index_of(city, va), exclude), _features(_index_of(city, vb), exclude)
    changes: list[FeatureChange] = []
    for key in sorted(set(a) | set(b)):
        ra, rb = a.get(key), b.get(key)
        if ra is None:
            assert rb is not None
            changes.append(FeatureChange(key[0], key[1], rb[0], "added", (rb[1], rb[2], rb[3], rb[4]), base=rb[5], top=rb[6]))
        elif rb is None:
            changes.append(FeatureChange(key[0], key[1], ra[0], "removed", (ra[1], ra[2], ra[3], ra[4]), base=ra[5], top=ra[6]))
        else:
            geometry = any(_differs(x, y, ANGLE_TOLERANCE) for x, y in zip(ra[1:5], rb[1:5])) or any(
                _differs(x, y, HEIGHT_TOLERANCE) for x, y in zip(ra[5:7], rb[5:7])
            )
            pa, pb = ra[7], rb[7]
            attributes = sorted(k for k in set(pa) | set(pb) if pa.get(k) != pb.get(k))
            if geometry or attributes:
                box = (rb[1], rb[2], rb[3], rb[4])
                changes.append(FeatureChange(key[0], key[1], rb[0], "changed", box, geometry, attributes, base=rb[5], top=rb[6]))
    return Diff(va.id, vb.id, changes)
