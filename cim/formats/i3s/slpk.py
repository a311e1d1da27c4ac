"""The scene layer package (``.slpk``): a ZIP archive of a layer's I3S resources.

What the I3S specification asks of an SLPK, and what this writer does:

- every entry is STORED (no ZIP compression): the JSON and binary resources are already
  gzipped (``.json.gz``, ``.bin.gz``) and images are compressed formats, so a reader reads an
  entry's bytes straight from its offset;
- ``@specialIndexFileHASH128@`` is the last entry of the central directory: 24-byte records of
  the MD5 of each entry's canonical path (lower case, ``/`` separators) and the 64-bit offset of
  its local header, sorted as two little-endian uint64 words (the spec's comparator);
- same resources, same bytes: entries sorted by name, a fixed timestamp (1980-01-01 00:00, the
  earliest a ZIP can hold), fixed attributes, and gzip members without a time or file name.

Archives larger than 4 GiB would need ZIP64 records, which this writer does not produce; it
refuses them (:class:`cim.errors.CimInputError`).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import struct
import zipfile
from collections.abc import Mapping

import numpy as np

from cim.errors import CimInputError

__all__ = ["HASH_INDEX_NAME", "gzip_bytes", "hash_index", "encode_slpk"]

HASH_INDEX_NAME = "@specialIndexFileHASH128@"
_EPOCH = (1980, 1, 1, 0, 0, 0)
_ZIP32_LIMIT = 0xFFFFFFFF


def gzip_bytes(data: bytes) -> bytes:
    """``data`` as a gzip member with no timestamp and no file name (same input, same bytes)."""
    return gzip.compress(data, compresslevel=6, mtime=0)


def _canonical(path: str) -> str:
    return path.replace("\\", "/").lstrip("/").lower()


def hash_index(offsets: Mapping[str, int]) -> bytes:
    """The ``@specialIndexFileHASH128@`` records of entries at local-header ``offsets``.

    Parameters
    ----------
    offsets : ``{path in the archive: byte offset of its local file header}``

    Returns
    -------
    bytes, 24 a record: the 16-byte MD5 of the canonical path, then the offset as uint64 LE;
    sorted by the MD5 read as two little-endian uint64 (first word, then second).
    """
    records = np.zeros(len(offsets), dtype=[("digest", "V16"), ("offset", "<u8")])
    keys = np.zeros((len(offsets), 2), dtype=np.uint64)
    for i, (path, offset) in enumerate(offsets.items()):
        digest = hashlib.md5(_canonical(path).encode("utf-8")).digest()
        records[i] = (digest, offset)
        keys[i] = struct.unpack("<QQ", digest)
    order = np.lexsort((keys[:, 1], keys[:, 0])) if len(keys) else np.zeros(0, dtype=np.int64)
    return records[order].tobytes()


def encode_slpk(entries: Mapping[str, bytes]) -> bytes:
    """A scene layer package of ``entries`` (``{path: bytes}``, already gzipped where the spec
    wants ``.gz``): STORED entries sorted by path, then the hash index.

    Raises
    ------
    CimInputError
        Two paths equal but for case (the hash index keys on lower-case paths), a path naming
        the index itself, or a package beyond 4 GiB (ZIP64 is not written).
    """
    seen: dict[str, str] = {}
    for path in entries:
        key = _canonical(path)
        if key == _canonical(HASH_INDEX_NAME) or key in seen:
            raise CimInputError(f"SLPK entry {path!r} collides with {seen.get(key, HASH_INDEX_NAME)!r}")
        seen[key] = path
    buffer = io.BytesIO()
    offsets: dict[str, int] = {}
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED, allowZip64=False) as archive:
        for path in sorted(entries):
            _write(archive, path, entries[path])
            offsets[path] = archive.getinfo(path).header_offset
        _write(archive, HASH_INDEX_NAME, hash_index(offsets))
    data = buffer.getvalue()
    if len(data) >= _ZIP32_LIMIT:
        raise CimInputError(f"the scene layer package would be {len(data):,} bytes: beyond 4 GiB, which needs ZIP64 (not written)")
    return data


def _write(archive: zipfile.ZipFile, path: str, data: bytes) -> None:
    info = zipfile.ZipInfo(path, date_time=_EPOCH)
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    info.create_system = 3  # unix, whatever the platform: the same bytes everywhere
    try:
        archive.writestr(info, data)
    except zipfile.LargeZipFile as exc:
        raise CimInputError(f"SLPK entry {path!r}: the package needs ZIP64 (beyond 4 GiB), which is not written") from exc
