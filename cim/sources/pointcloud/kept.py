"""A point-cloud layer's building points, kept for the buildings layer's link to them.

The buildings layer links each building to the building-class (6) points its footprint covers
(:func:`cim.layers.building_heights.point_links`). Reading them again from the LAS/LAZ files
means decoding every point of the survey a second time, which costs about as much CPU as the
point-cloud layer's own pass. So when a later layer will link, the point-cloud layer's stage
jobs, which decode every point anyway, keep the raw records of the building points on the
side: per stage job (a range of points of one file) one file of blocks, each block one batch's
building points as the file stores them (raw int32 X, Y, Z, before any scale, offset or
reprojection), so the link reads exactly the values a pass over the file would have given it.

Layout, in the point-cloud layer's folder (a hidden working folder, never served, removed by
the next build that opens the layer's store and by the link once it has read it)::

    LAYER/.cim-tmp-links/part-00012.i32     blocks: int64 m, then X, Y, Z (m int32 each);
                                            last: int64 -1, then 256 int64 class counts
    LAYER/.cim-tmp-links/manifest.json      written last: each file's fingerprint and parts

Every file appears whole or not at all (written under a temporary name, then renamed), and the
manifest only after every part: a killed build leaves nothing the link would trust. The link
uses the kept points only when the manifest names every one of its files with the same
fingerprint (path, size, modification time) and parts covering all of its points; otherwise it
reads the files, with the same result.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cim.kernels.footprint_points import class_records
from cim.store import atomic_write_text, file_fingerprint

__all__ = ["KEPT_DIR", "KeptPart", "KeptWriter", "write_kept_manifest", "kept_parts", "kept_blocks", "drop_kept"]

#: the working folder in a point-cloud layer's folder (``.cim-tmp-*``: removed when a build
#: opens the layer's store)
KEPT_DIR = ".cim-tmp-links"
_MANIFEST = "manifest.json"
_VERSION = 1
#: the class kept (ASPRS building)
_BUILDING = 6


def _part_name(job: int) -> str:
    return f"part-{job:05d}.i32"


class KeptWriter:
    """Writes one stage job's building points: :meth:`add` each batch, then :meth:`close`.

    Parameters
    ----------
    folder : the kept-points folder (created when missing)
    job : the stage job's number (names its part)
    """

    def __init__(self, folder: str | Path, job: int) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / _part_name(job)
        self.tmp = self.folder / f".{self.path.name}.{os.getpid()}.tmp"
        self.file = open(self.tmp, "wb")  # noqa: SIM115 - closed by close()
        self.classes = np.zeros(256, dtype=np.int64)
        self.points = 0

    def add(self, X: np.ndarray, Y: np.ndarray, Z: np.ndarray, cls_raw: np.ndarray, cls_mask: int, classes: np.ndarray) -> None:
        """One batch: raw coordinates and classification bytes of all its points, and the
        batch's class counts (every point's class, as the stage pass counted them)."""
        block = class_records(X, Y, Z, cls_raw, cls_mask, _BUILDING)
        m = len(block) // 3
        self.classes += classes
        self.points += m
        if not m:
            return
        np.array([m], dtype=np.int64).tofile(self.file)
        block.tofile(self.file)

    def close(self) -> None:
        """Write the class counts and give the part its name."""
        np.array([-1], dtype=np.int64).tofile(self.file)
        self.classes.tofile(self.file)
        self.file.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        """Drop the unfinished part."""
        self.file.close()
        self.tmp.unlink(missing_ok=True)


def write_kept_manifest(folder: str | Path, files: Sequence[Path], jobs: Sequence[tuple[int, int, int, int]]) -> None:
    """Name every part once all of them are written.

    Parameters
    ----------
    folder : the kept-points folder
    files : the layer's files, in its order
    jobs : the stage jobs' keys ``(job, file index, start, count)``
    """
    entries = []
    for i, f in enumerate(files):
        parts = [[start, count, _part_name(job)] for job, fi, start, count in jobs if fi == i]
        entries.append({"fingerprint": file_fingerprint(f), "parts": parts})
    atomic_write_text(Path(folder) / _MANIFEST, json.dumps({"version": _VERSION, "files": entries}))


@dataclass
class KeptPart:
    """The parts kept of one file, in point order, and the file's point count they cover."""

    paths: list[Path] = field(default_factory=list)
    points: int = 0


def kept_parts(folders: Sequence[Path], files: Sequence[Path], counts: Sequence[int]) -> list[KeptPart] | None:
    """Each file's kept parts, when the folders' manifests name every file of ``files`` as it
    is now (same fingerprint) with parts covering its ``counts`` points; else None."""
    found: dict[str, tuple[dict, list[Path], int]] = {}
    for folder in folders:
        try:
            doc = json.loads((folder / _MANIFEST).read_text())
        except (OSError, ValueError):
            return None
        if doc.get("version") != _VERSION:
            return None
        for entry in doc["files"]:
            covered = 0
            for start, count, _ in sorted(entry["parts"]):
                covered = covered + count if start == covered else -1
            paths = [folder / name for _, _, name in sorted(entry["parts"])]
            found[entry["fingerprint"]["path"]] = (entry["fingerprint"], paths, covered)
    out: list[KeptPart] = []
    for f, count in zip(files, counts):
        try:
            now = file_fingerprint(f)
        except OSError:
            return None
        got = found.get(str(now["path"]))
        if got is None or got[0] != now or got[2] != count or not all(p.exists() for p in got[1]):
            return None
        out.append(KeptPart(got[1], count))
    return out


def kept_blocks(part: KeptPart, classes: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """A file's building points, block by block: raw ``(X, Y, Z)`` int32 arrays; adds the
    file's class counts to ``classes`` (256,) once read through.

    Raises
    ------
    ValueError
        A part is cut short (a kept file damaged after its manifest was written).
    """
    for path in part.paths:
        with open(path, "rb") as f:
            while True:
                head = np.fromfile(f, dtype=np.int64, count=1)
                if len(head) != 1:
                    raise ValueError(f"{path}: cut short")
                m = int(head[0])
                if m < 0:
                    counts = np.fromfile(f, dtype=np.int64, count=256)
                    if len(counts) != 256:
                        raise ValueError(f"{path}: cut short")
                    classes += counts
                    break
                block = np.fromfile(f, dtype=np.int32, count=3 * m)
                if len(block) != 3 * m:
                    raise ValueError(f"{path}: cut short")
                yield block[:m], block[m : 2 * m], block[2 * m :]


def drop_kept(folder: str | Path) -> None:
    """Remove a kept-points folder (nothing when there is none)."""
    shutil.rmtree(folder, ignore_errors=True)
