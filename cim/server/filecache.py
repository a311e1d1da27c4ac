"""An in-memory cache of small hot files, with the headers of their answers precomputed.

A tile read twice is read from memory the second time: :class:`FileCache` keeps the bytes of
files up to :attr:`FileCache.max_file` bytes, least recently used first out, never more than
:attr:`FileCache.max_bytes` bytes of bodies in all. Each entry is keyed by the served root, the
URL path's segments and the variant (as stored, or un-gzipped for a client refusing gzip), and
carries the answer's ``Content-Type``, ``ETag``, ``Last-Modified``, ``Cache-Control``,
``Accept-Ranges``, ``Content-Encoding`` and ``Vary`` headers ready to send.

A hit costs one ``stat(2)`` of the URL's path, in the event loop (a metadata lookup the kernel
answers from its dentry and inode caches; no open, no read, no executor hop): the entry is
dropped when the file's inode, size or modification time differ from those it was read with, so
a rebuilt tileset shows at once. The ``stat`` follows the URL's path as it is now, symlinks
included: a path that now leads to another file misses, and the caller resolves it again with
all its checks (a way out of the root is refused there). An entry served from ``X.gz`` also
checks that ``X`` is still missing, since ``X`` would be served instead.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["DEFAULT_CACHE_BYTES", "DEFAULT_MAX_FILE", "CachedFile", "FileCache"]

#: bytes of file bodies kept by default (each worker process has its own cache)
DEFAULT_CACHE_BYTES = 64 * 1024 * 1024
#: files larger than this are streamed from disk, never cached (a tile over 4 MiB is rare)
DEFAULT_MAX_FILE = 4 * 1024 * 1024

CacheKey = tuple[str, tuple[str, ...], bool]


@dataclass(frozen=True, slots=True)
class CachedFile:
    """One file's answer, ready to send."""

    body: bytes
    #: the 200 answer's headers (without Content-Length)
    headers: dict[str, str]
    etag: str
    mtime: float
    #: (inode, size, mtime_ns) of the file read
    stamp: tuple[int, int, int]
    #: the path stat'ed on each hit: the URL's path under the root (``X.gz`` for a fallback)
    path: str
    #: for a fallback to ``X.gz``: ``X``, which must stay missing
    absent: str | None = None

    @property
    def gzip_encoded(self) -> bool:
        return "Content-Encoding" in self.headers


def stamp_of(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_ino, st.st_size, st.st_mtime_ns


class FileCache:
    """A least-recently-used cache of small files' answers, bounded in bytes (see the module).

    Parameters
    ----------
    max_bytes : int
        Most bytes of bodies held; 0 turns the cache off.
    max_file : int
        Largest body cached (at most ``max_bytes``).
    """

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES, max_file: int = DEFAULT_MAX_FILE) -> None:
        if max_bytes < 0 or max_file < 0:
            raise ValueError("cache sizes cannot be negative")
        self.max_bytes = max_bytes
        self.max_file = min(max_file, max_bytes)
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[CacheKey, CachedFile] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: CacheKey) -> CachedFile | None:
        """The entry of ``key`` if its file is unchanged on disk, else None (and it is dropped)."""
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        try:
            fresh = stamp_of(os.stat(entry.path)) == entry.stamp and (entry.absent is None or not os.path.lexists(entry.absent))
        except OSError:
            fresh = False
        if not fresh:
            self._drop(key)
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry

    def put(self, key: CacheKey, entry: CachedFile) -> None:
        """Keep ``entry`` (when small enough), evicting the least recently used to make room."""
        size = len(entry.body)
        if size > self.max_file or self.max_bytes == 0:
            return
        self._drop(key)
        while self._entries and self.bytes + size > self.max_bytes:
            _, old = self._entries.popitem(last=False)
            self.bytes -= len(old.body)
        self._entries[key] = entry
        self.bytes += size

    def _drop(self, key: CacheKey) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= len(old.body)
