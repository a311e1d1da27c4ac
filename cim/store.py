"""Atomic writes and a resumable tile store: the one way a tile reaches the disk.

Every file appears whole or not at all: it is written to a temporary name in the same folder,
flushed, then renamed over the target (``os.replace`` is atomic on POSIX). A layer's finished
tiles are logged in ``.cim-build.jsonl`` with the build key they were made for (and their size,
checked when a build resumes), so an interrupted build started again with the same inputs and
options skips what is already done. The layer's index (``tileset.json``, ``layer.json``) is
written last, by :meth:`TileStore.finish`, after every tile it names exists; ``finish`` alone
publishes a layer and clears the files of earlier builds.

Tiles are written in two places:

- by the layer's own code, with :meth:`TileStore.write`, :meth:`TileStore.write_many` or the
  overlapping :meth:`TileStore.writer`;
- by tile jobs, wherever they run (a thread, a forked process, a cluster worker), through the
  store's :class:`TileSink`: a small picklable object that writes to the shared folder and notes
  each file in the running job's journal. The layer's run (:func:`journaled`) hands those notes
  back with the job's result and logs them here.

While a layer's index does not exist yet (a first build), nothing names its tiles, so they are
written straight to their names (no temporary name and rename, a second directory operation a
file); a tile is logged only once it is whole, so a torn one is written again on resume. Once
the index exists every tile replaces its old self atomically.

Incremental rebuilds: every logged file carries the SHA-256 digest of its bytes (the ``sha``
of its log line). A layer whose inputs changed gets a new build key, so its jobs run again, but
a tile whose bytes come out as the previous build's (same size and digest, and the very file
that was logged: same inode and modification time, the log's ``at``) is not written again: it keeps its inode and modification time, and only tiles
whose content changed are replaced. The previous build's digests are read from its log when a
build with another key opens the folder, and kept in ``.cim-previous.json`` until that build
is published, so a rebuild killed and run again still knows them (a resumed build, or one
with unchanged inputs, reads them from the log itself). The layer's index is not
rewritten either when its text is unchanged. :attr:`TileStore.rewritten` and
:attr:`TileStore.files` count what a build wrote and what it published.

Per-tile input hashes: a tile job may also note a hash of the inputs its tile is made from
(the ``in`` of its log line: e.g. the geometry and attributes of the buildings it holds, the
points of an octree node, with the encoder's version and options). The log is the layer's
build manifest: a tile is logged in the same line as the hash of its inputs, once whole, so the
two never disagree, whenever the build is killed. On a rebuild with another key, a job whose
tile's input hash is the previous build's (and whose file is still the very file logged)
calls :meth:`TileSink.reuse`: the tile is neither encoded nor written, only logged again.
:attr:`TileStore.reused` counts those tiles.

Files that a killed build left half-made (``.NAME.PID.TID.tmp`` beside a tile, a point cloud's
``.cim-tmp-*`` working folder) are removed when the next build opens the folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from cim.errors import CimIOError

__all__ = [
    "LOG_NAME",
    "PREVIOUS_NAME",
    "content_digest",
    "remove_stale_temporaries",
    "atomic_path",
    "make_output_dir",
    "atomic_write_bytes",
    "write_new_bytes",
    "write_if_changed",
    "json_bytes_of",
    "atomic_write_text",
    "atomic_write_json",
    "build_key",
    "file_fingerprint",
    "journaled",
    "TileSink",
    "TileStore",
    "Entry",
]

LOG_NAME = ".cim-build.jsonl"
#: the digests of the previous published build's files, kept while a build with another key runs
PREVIOUS_NAME = ".cim-previous.json"


def content_digest(data: bytes | memoryview) -> str:
    """The SHA-256 digest of a file's bytes, as hex (what the build log and versions record)."""
    return hashlib.sha256(data).hexdigest()


_TILE_TMP = re.compile(r"^\..+\.\d+\.\d+\.tmp$")


def remove_stale_temporaries(folder: str | Path, *, recursive: bool = False, every: bool = False) -> int:
    """Remove what killed writers left in ``folder``: the temporary names of
    :func:`atomic_write_bytes` (``.NAME.PID.TID.tmp``; with ``every``, any hidden ``.*.tmp``
    file, such as those of :func:`atomic_path` and the search index) and ``.cim-tmp-*``
    working folders; below it too when ``recursive``. Returns how many.

    Only for a folder no other build is writing to (a build owns its output folder).
    """
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return 0
    for entry in entries:
        name = entry.name
        if entry.is_dir(follow_symlinks=False):
            if name.startswith(".cim-tmp-"):
                shutil.rmtree(entry.path, ignore_errors=True)
                removed += 1
            elif recursive and not name.startswith("."):
                removed += remove_stale_temporaries(entry.path, recursive=True, every=every)
        elif name.endswith(".tmp") and name.startswith(".") and (every or _TILE_TMP.match(name)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
                removed += 1
    return removed


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``.

    For writers that want a file name (GDAL, pyogrio). On error the temporary file is removed
    and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix or ".tmp", dir=path.parent)
    os.close(fd)
    os.unlink(tmp)  # some writers (GDAL) refuse to open an existing file
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def make_output_dir(path: str | Path) -> Path:
    """Create the output folder ``path`` (and its parents), or say plainly why it cannot be.

    Raises
    ------
    CimIOError
        A file is in the way, the folder is not writable, or the disk refused.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise CimIOError(f"output folder {path}: a file of that name is in the way") from None
    except NotADirectoryError:
        blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        raise CimIOError(f"output folder {path}: {blocker or 'a parent'} is a file, not a folder") from None
    except PermissionError:
        raise CimIOError(f"output folder {path}: permission denied (choose a folder you may write to)") from None
    except OSError as exc:
        raise CimIOError(f"output folder {path}: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise CimIOError(f"output folder {path}: not writable (choose a folder you may write to)")
    return path


_MADE_DIRS: set[str] = set()


def _ensure_dir(folder: str | Path) -> None:
    key = os.fspath(folder)
    if key not in _MADE_DIRS:  # thousands of tiles share a few folders: mkdir once each
        os.makedirs(key, exist_ok=True)
        _MADE_DIRS.add(key)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (a temporary name beside it, then a rename).

    The temporary name carries the process and thread ids, so concurrent writers never share
    one, without the cost of a random name per file.
    """
    path = os.fspath(path)  # strings, not Path objects: a small model writes a handful of files
    folder, name = os.path.split(path)
    folder = folder or os.curdir
    try:
        _ensure_dir(folder)
        tmp = os.path.join(folder, f".{name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        except FileNotFoundError:  # the folder was removed since we made it
            _MADE_DIRS.discard(folder)
            _ensure_dir(folder)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
    except OSError as exc:
        raise CimIOError(f"{path}: cannot write ({exc.strerror or exc})") from exc


def write_new_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` in place (no temporary name): for files nothing names yet.

    A reader could see the file half-written, so use it only where no index points at ``path``
    before the write has returned (see the module notes). A file already at ``path`` (a torn
    tile of a killed build, or one an old version still links to, see :mod:`cim.versions`) is
    never truncated: it is unlinked first, so other links to it keep their bytes.
    """
    path = os.fspath(path)
    folder = os.path.dirname(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        _ensure_dir(folder)
        try:
            fd = os.open(path, flags, 0o644)
        except FileNotFoundError:  # the folder was removed since we made it
            _MADE_DIRS.discard(folder)
            _ensure_dir(folder)
            fd = os.open(path, flags, 0o644)
        except FileExistsError:  # unlinked, not truncated: a version may hold its bytes
            os.unlink(path)
            fd = os.open(path, flags, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
    except OSError as exc:
        raise CimIOError(f"{path}: cannot write ({exc.strerror or exc})") from exc


def write_if_changed(path: str | Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` atomically unless the file already holds exactly these bytes
    (a rebuild leaves an unchanged file alone: same inode, same time); True when it wrote."""
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size == len(data) and f.read() == data:
                return False
    except FileNotFoundError:
        pass
    atomic_write_bytes(path, data)
    return True


def json_bytes_of(obj: object, *, pretty: bool = False) -> bytes:
    """The bytes :func:`atomic_write_json` writes for ``obj``."""
    return _json_text(obj, pretty).encode("utf-8")


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: object, *, pretty: bool = True) -> None:
    """Write ``obj`` as JSON to ``path`` atomically: indented when ``pretty``, else compact
    (Python's C encoder serves only compact output: indenting goes through the pure-Python
    encoder, so large documents such as a layer's ``tileset.json`` are written compact)."""
    atomic_write_text(path, _json_text(obj, pretty))


def _json_text(obj: object, pretty: bool) -> str:
    text = (
        json.dumps(obj, indent=1, ensure_ascii=False, allow_nan=False)
        if pretty
        else json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    )
    return text + "\n"


def build_key(*parts: object) -> str:
    """A stable hash of a build's inputs and options (JSON-serialisable parts)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def file_fingerprint(path: str | Path) -> dict[str, object]:
    """Name, size and modification time of an input file, for build keys."""
    st = Path(path).stat()
    return {"path": str(Path(path).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


# -- writing from tile jobs ------------------------------------------------------------------

_journal = threading.local()


#: a logged file: its path relative to the layer folder, its size, what the layer noted about it
#: (a tile's triangle count, its error: whatever the layer's summary needs of a tile that a
#: resumed build does not make again) or None, the digest of its bytes (:func:`content_digest`),
#: whether this build wrote it (False: the previous build's file had the same bytes), the
#: file's stamp once whole (see :func:`_stamp`), the hash of the tile's inputs when its job
#: gave one, and whether the tile was kept from the previous build for its unchanged inputs
#: (:meth:`TileSink.reuse`: not made at all)
Entry = tuple[str, int, "dict[str, Any] | None", str, bool, str, "str | None", bool]

#: a previous build's file: its size, digest, stamp and the hash of its inputs (or None)
Previous = dict[str, tuple[int, str, str, "str | None"]]


def _stamp(st: os.stat_result) -> str:
    """A file's inode and modification time: a file replaced since (by a build killed before it
    logged the new file) has another, so its logged digest is not trusted."""
    return f"{st.st_ino}:{st.st_mtime_ns}"


def _note(
    rel: str, size: int, meta: dict[str, Any] | None, digest: str, wrote: bool, stamp: str, inputs: str | None = None, reused: bool = False
) -> None:
    entries = getattr(_journal, "entries", None)
    if entries is None:
        raise RuntimeError(f"{rel}: TileSink used outside a tile job (the layer run journals a job's files)")
    entries.append((rel, size, meta, digest, wrote, stamp, inputs, reused))


def _same_file(path: str, size: int, stamp: str) -> bool:
    """The file at ``path`` is the one logged with ``size`` and ``stamp`` (see :func:`_stamp`)."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return st.st_size == size and _stamp(st) == stamp


def _unchanged(path: str, before: tuple[int, str, str, str | None] | None, size: int, digest: str) -> str | None:
    """The file's stamp when the previous build's file at ``path`` has these bytes (same size and
    digest by its log, and the very file it logged: same size, inode and modification time on
    disk), else None: then it need not be written again."""
    if before is None or before[0] != size or before[1] != digest:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    stamp = _stamp(st)
    return stamp if st.st_size == size and stamp == before[2] else None


def _write_tile(path: str, data: bytes, atomic: bool, before: tuple[int, str, str, str | None] | None) -> tuple[str, bool, str]:
    """Write one tile unless the previous build's file has the same bytes; ``(digest, wrote, stamp)``."""
    digest = content_digest(data)
    stamp = _unchanged(path, before, len(data), digest)
    if stamp is not None:
        return digest, False, stamp
    (atomic_write_bytes if atomic else write_new_bytes)(path, data)
    return digest, True, _stamp(os.stat(path))


def journaled(job_and_state: tuple[Any, Any], key: object) -> tuple[object, list[Entry]]:
    """Run ``job(state, key)`` and return ``(result, files)``: the files its :class:`TileSink`
    wrote (see :data:`Entry`).

    A module-level function of ``((job, state), key)``, so an engine runs it wherever it runs
    the job itself; the layer's run logs the files in its store.
    """
    job, state = job_and_state
    outer = getattr(_journal, "entries", None)
    entries: list[Entry] = []
    _journal.entries = entries
    try:
        result = job(state, key)
    finally:
        _journal.entries = outer
    return result, entries


class TileSink:
    """Writes a layer's tiles from inside tile jobs, in any thread or process.

    Made by :meth:`TileStore.sink`; it carries the layer folder, whether writes must be atomic
    (the layer is published) and the tiles an earlier run of the same build finished, with what
    was noted about them, so a job can skip them (:meth:`is_done`, :meth:`meta`). Picklable: a
    forked or remote worker writes to the same (shared) folder.
    """

    __slots__ = ("atomic", "done", "previous", "root")

    def __init__(
        self, root: str | Path, atomic: bool, done: dict[str, dict[str, Any] | None] | None = None, previous: Previous | None = None
    ) -> None:
        self.root = os.fspath(root)
        self.atomic = atomic
        self.done = done or {}
        self.previous = previous or {}

    def __getstate__(self) -> tuple[str, bool, dict[str, dict[str, Any] | None], Previous]:
        return self.root, self.atomic, self.done, self.previous

    def __setstate__(self, state: tuple[str, bool, dict[str, dict[str, Any] | None], Previous]) -> None:
        self.root, self.atomic, self.done, self.previous = state

    def is_done(self, rel: str) -> bool:
        """True when an earlier run of the same build finished ``rel``."""
        return rel in self.done

    def meta(self, rel: str) -> dict[str, Any] | None:
        """What was noted about a tile an earlier run finished (see :meth:`write`)."""
        return self.done.get(rel)

    def write(self, rel: str, data: bytes, meta: dict[str, Any] | None = None, inputs: str | None = None) -> None:
        """Write one tile (``rel`` is relative to the layer folder) and note it in the job's
        journal, with ``meta`` (small JSON: what the layer's summary needs of the tile when a
        resumed build skips it) and ``inputs``, the hash of what the tile is made from (see
        :meth:`reuse`). A tile the previous build made with the same bytes is left as it is
        (see the module notes)."""
        digest, wrote, stamp = _write_tile(f"{self.root}/{rel}", data, self.atomic, self.previous.get(rel))
        _note(rel, len(data), meta, digest, wrote, stamp, inputs)

    def reuse(self, rel: str, inputs: str, meta: Callable[[int], dict[str, Any] | None] | None = None) -> int | None:
        """Keep the previous build's tile ``rel`` when it was made from the same inputs: the hash
        ``inputs`` is the one the previous build logged for it, and the file on disk is the very
        file it logged (same size, inode and modification time). The tile is then noted in the
        job's journal as this build's (with ``meta(size)`` when given) and its size returned;
        otherwise None, and the job makes the tile (and passes ``inputs`` to :meth:`write`).

        ``inputs`` must cover everything the tile's bytes depend on (the encoder's version and
        options included): a tile kept is never compared with what encoding would give."""
        before = self.previous.get(rel)
        if before is None or before[3] != inputs or not _same_file(f"{self.root}/{rel}", before[0], before[2]):
            return None
        size, digest, stamp = before[0], before[1], before[2]
        _note(rel, size, meta(size) if meta is not None else None, digest, False, stamp, inputs, True)
        return size


# -- the store -------------------------------------------------------------------------------


class TileStore:
    """A layer's folder: writes its files atomically, remembers which are done for one build key,
    publishes the layer's index and clears what earlier builds left.

    Parameters
    ----------
    root : the layer's folder
    key : the build key; a log written for another key is discarded
    index : the layer's index file, written last by :meth:`finish` (``tileset.json``, ``layer.json``)
    content : the folders (relative to ``root``) whose files belong to the layer: files there
        that this build neither wrote nor kept are removed by :meth:`finish`
    """

    def __init__(self, root: str | Path, key: str, *, index: str = "tileset.json", content: tuple[str, ...] = ("tiles",)) -> None:
        self.root = make_output_dir(root)
        self.key = key
        self.index = index
        self.content = tuple(content)
        with os.scandir(self.root) as entries:
            # no visible file of an earlier build (hidden ones aside: a build log, a temporary
            # file): nothing to clear away at the end, no folder walk to count the bytes
            self._fresh = all(e.name.startswith(".") for e in entries)
        self._published = (self.root / index).exists()
        remove_stale_temporaries(self.root)
        for folder in self.content:
            remove_stale_temporaries(self.root / folder, recursive=True)
        self._lock = threading.Lock()
        self._log = self.root / LOG_NAME
        self._done: dict[str, dict[str, Any] | None] = {}
        self._digests: dict[str, str] = {}
        logged: Previous = {}  # what the log records, whatever its key
        same_key = False
        if self._log.exists():
            lines = self._log.read_text().splitlines()
            with contextlib.suppress(ValueError):
                same_key = bool(lines) and json.loads(lines[0]).get("key") == key
            for line in lines[1:]:
                with contextlib.suppress(ValueError, KeyError, TypeError, OSError):  # a torn last line, a lost file
                    entry = json.loads(line)
                    rel, size = entry["file"], entry.get("size")
                    if entry.get("sha") and entry.get("at") and size is not None:
                        logged[rel] = (int(size), str(entry["sha"]), str(entry["at"]), entry.get("in"))
                    if same_key and (size is None or (self.root / rel).stat().st_size == size):
                        self._done[rel] = entry.get("meta")
                        if entry.get("sha"):
                            self._digests[rel] = str(entry["sha"])
        # the files already there and their digests: the previous build's (kept aside while a
        # build with another key runs), then what the log records
        previous_path = self.root / PREVIOUS_NAME
        self._previous: Previous = {}
        if previous_path.exists():
            with contextlib.suppress(ValueError, TypeError, IndexError, OSError):
                self._previous = {
                    rel: (int(v[0]), str(v[1]), str(v[2]), str(v[3]) if len(v) > 3 and v[3] is not None else None)
                    for rel, v in json.loads(previous_path.read_text()).items()
                }
        self._previous.update(logged)
        if not same_key and logged:  # the log starts again: what it knew goes aside first
            atomic_write_json(previous_path, {rel: list(v) for rel, v in sorted(self._previous.items())}, pretty=False)
        if not self._done:
            atomic_write_text(self._log, json.dumps({"key": key}) + "\n")
        self._resumed = len(self._done)
        self._rewritten = 0
        self._reused = 0
        self._index_rewritten = False
        # an earlier run of the same build finished these: they are this build's too
        self._written: set[str] = set(self._done)
        self._bytes = 0
        self._log_file: TextIO | None = None
        self._finished = False

    # -- what the store knows

    @property
    def fresh(self) -> bool:
        """The folder held no visible file of an earlier build when the store opened it."""
        return self._fresh

    @property
    def published(self) -> bool:
        """The layer's index existed when the store opened the folder: tiles then replace their
        old selves atomically; before, they are written straight to their names."""
        return self._published

    @property
    def resumed(self) -> int:
        """Tiles an earlier, interrupted run of the same build had finished."""
        return self._resumed

    def is_done(self, rel: str) -> bool:
        """True when ``rel`` was finished by an earlier run of the same build."""
        return rel in self._done

    def meta(self, rel: str) -> dict[str, Any] | None:
        """What was noted about a file an earlier run of the same build finished."""
        return self._done.get(rel)

    @property
    def rewritten(self) -> int:
        """Files this build wrote, its index included (a file whose bytes came out as the
        previous build's is not written again; nor is a resumed one)."""
        return self._rewritten + int(self._index_rewritten)

    @property
    def reused(self) -> int:
        """Tiles kept from the previous build because their inputs were unchanged (neither made
        nor written: see :meth:`TileSink.reuse`)."""
        return self._reused

    @property
    def files(self) -> int:
        """Files of the layer as this build publishes them, its index included."""
        return len(self._written) + 1

    def digests(self) -> dict[str, str]:
        """The digest of every file this build wrote or kept (relative paths), its index
        included once :meth:`finish` has run."""
        return dict(self._digests)

    def sink(self) -> TileSink:
        """The writer tile jobs use (see :class:`TileSink`)."""
        return TileSink(self.root, atomic=self._published, done=dict(self._done), previous=self._previous)

    # -- writing

    def write(self, rel: str, data: bytes, meta: dict[str, Any] | None = None) -> None:
        """Write one file atomically and log it (``meta``: see :meth:`TileSink.write`)."""
        digest, wrote, stamp = _write_tile(f"{os.fspath(self.root)}/{rel}", data, True, self._previous.get(rel))
        self.record([(rel, len(data), meta, digest, wrote, stamp, None, False)])

    def write_many(self, items: Sequence[tuple[str, bytes, dict[str, Any] | None]]) -> None:
        """Write files ``(path, bytes, meta)``, then log them all in one append rather than one a file."""
        root = os.fspath(self.root)
        done: list[Entry] = []
        try:
            for rel, data, meta in items:
                digest, wrote, stamp = _write_tile(f"{root}/{rel}", data, self._published, self._previous.get(rel))
                done.append((rel, len(data), meta, digest, wrote, stamp, None, False))
        finally:
            self.record(done)

    def record(self, entries: list[Entry]) -> None:
        """Log files that are whole on disk (see :data:`Entry`) in one append."""
        if not entries:
            return
        # the same text as json.dumps({"file": rel, "size": size, "sha": digest, "meta": meta}), a third of the time
        lines = "".join(
            f'{{"file": {json.dumps(rel)}, "size": {int(size)}, "sha": "{digest}", "at": "{stamp}"'
            + (f', "in": "{inputs}"' if inputs else "")
            + (f', "meta": {json.dumps(meta, sort_keys=True)}}}\n' if meta else "}\n")
            for rel, size, meta, digest, _, stamp, inputs, _ in entries
        )
        with self._lock:
            if self._finished:
                raise RuntimeError(f"{self.root}: a file was logged after the layer was published")
            if self._log_file is None:
                self._log_file = open(self._log, "a", encoding="utf-8")  # noqa: SIM115 (closed in finish)
            self._log_file.write(lines)
            self._log_file.flush()  # to the OS at once: a killed build still resumes from here
            for rel, size, _, digest, wrote, _, _, reused in entries:
                self._written.add(rel)
                self._digests[rel] = digest
                self._bytes += size
                self._rewritten += wrote
                self._reused += reused

    # -- publishing

    def finish(self, index_doc: dict, *, pretty: bool = False) -> None:
        """Write the layer's index last, then remove the content files of earlier builds that
        this one neither wrote nor kept."""
        self.close()
        with self._lock:
            self._finished = True
        text = _json_text(index_doc, pretty)
        data = text.encode("utf-8")
        index_path = self.root / self.index
        self._digests[self.index] = content_digest(data)
        try:
            same = index_path.stat().st_size == len(data) and index_path.read_bytes() == data
        except OSError:
            same = False
        if not same:
            atomic_write_bytes(index_path, data)
            self._index_rewritten = True
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.root / PREVIOUS_NAME)  # published: this build is the previous one now
        if self._fresh:
            return  # every file below was written by this build
        root = os.fspath(self.root)
        for folder in self.content:
            for path in _files_under(os.path.join(root, folder)):
                if os.path.relpath(path, root).replace(os.sep, "/") not in self._written:
                    os.unlink(path)

    def close(self) -> None:
        """Close the build log (``finish`` does it; call it yourself when not finishing)."""
        with self._lock:
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None

    def size_on_disk(self) -> int:
        """Bytes of the layer's files: its index and what its content folders hold (hidden files,
        such as temporary ones, left out; other files of the folder, such as a standalone city's
        ``city.json``, are not the layer's). Summed from the log when the folder was fresh, else by
        a walk of the content folders."""
        index = self.root / self.index
        if self._fresh and self._finished:
            return self._bytes + os.stat(index).st_size
        root = os.fspath(self.root)
        files = [p for folder in self.content for p in _files_under(os.path.join(root, folder)) if not os.path.basename(p).startswith(".")]
        return sum(os.stat(p).st_size for p in files) + (index.stat().st_size if index.exists() else 0)


def _files_under(folder: str) -> Iterator[str]:
    """Paths of the regular files below ``folder`` (none when it does not exist); ``os.scandir``
    rather than ``Path.rglob``, whose pattern machinery a plain walk does not need (a small
    model's whole build is short enough to feel it)."""
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            yield from _files_under(entry.path)
        elif entry.is_file(follow_symlinks=False):
            yield entry.path
