"""The audit trail of a served city (全程留痕、可追溯): who did what, when, from where.

Every login, every search, query, analysis, export and annotation is one record in
``CITY/.cim/audit.jsonl``, and reads of a restricted layer are recorded by bursts (below):

    {"seq": 41, "time": "2026-12-06T05:01:02.345678Z", "user": "wang", "action": "search",
     "target": "/api/search", "remote": "127.0.0.1", "status": 200, "detail": {"q": "秦州"},
     "prev": "<mac of record 40>", "mac": "<HMAC-SHA256 of this record>"}

**Why JSON lines, not SQLite.** The log is append-only by nature; a line per record is what
log shippers, ``grep`` and ``jq`` read, it can be verified by streaming, and appending needs no
page rewrites (SQLite would update pages in place, which is what a tamper-evident log must not
invite). Filtering (``cim audit show``) streams the file; a city's trail stays far below the
sizes where an index would matter, and rotated files can be indexed elsewhere.

**Tamper evidence.** Each record carries the MAC of the one before (``prev``) and its own
(``mac``, HMAC-SHA256 over its canonical JSON with the city's secret key, kept 0600 in
``CITY/.cim/secret.key``). Editing a record breaks its MAC; deleting one breaks the sequence and
the next record's ``prev``; reordering breaks both; cutting records off the end is caught by
the head (last ``seq`` and ``mac``) kept beside the log in ``audit.head``. Without the key a
forger cannot recompute the chain; keep the key from those who may read the log.

**One record per burst of tile reads.** A viewer opening a restricted layer reads dozens of
tiles a second, and a record per tile made the trail the dearest part of serving one (a chained,
HMAC'd JSON line per tile: half of what access control cost the server's requests/s, see
``benchmarks/README.md``, "Serving under load"). The reads of one restricted layer by one user
from one address with one status, within one turn of the writer (:class:`AuditWriter`, about a
second), are ONE record, ``action`` ``read``, whose ``detail`` lists every path read (``paths``,
each once, in the order first read), how many reads in all (``count``; ``repeats`` gives the
paths read more than once), the time of the first (the record's ``time``) and of the last
(``last``)::

    {"seq": 42, "time": "…T05:01:02.100000Z", "user": "wang", "action": "read",
     "target": "/city/buildings/tileset.json", "remote": "127.0.0.1", "status": 200,
     "detail": {"layer": "buildings", "count": 5, "last": "…T05:01:02.900000Z",
                "paths": ["/city/buildings/tileset.json", "/city/buildings/t/0.glb", …],
                "repeats": {"/city/buildings/tileset.json": 2}}, "prev": …, "mac": …}

Nothing is lost: who, which layer, from where, every path and how often, within a second; the
record is under the same MAC and chain as any other, so editing a path, a count or a time in it
is found by ``cim audit verify`` as before. Logins, refusals, searches, queries, analyses,
exports and annotations stay one record each. Records are chained in the order of their first
event, so the ``last`` read of a burst may be later than the ``time`` of records after it.

**Never in the way of serving.** A request appends a tuple (the time as ``time.time()``, the
fields as given) to a ``deque``: no lock, no ``datetime``, no JSON, no dict for a read. The
writer's thread wakes once a turn, groups and formats what was appended, and writes it in one
append: the JSON and the MAC are paid once a burst, not once a tile. The server closes the writer at its cleanup (the
end of ``cim serve``, and of each worker at SIGTERM), which writes what is queued; a burst is
on disk within about two seconds while the server runs. Several server processes may share
one log: an append takes an exclusive ``flock`` and continues the chain from the file's last
record.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cim.access import private_dir, secret_key
from cim.errors import CimError, CimInputError, CimNotFound

__all__ = ["AUDIT_NAME", "AuditLog", "AuditWriter", "Problem", "Verification", "burst_records", "parse_time"]

log = logging.getLogger(__name__)

AUDIT_NAME = "audit.jsonl"
HEAD_NAME = "audit.head"
GENESIS = "0" * 64
FIELDS = ("seq", "time", "user", "action", "target", "remote", "status", "detail", "prev")


def _canonical(record: dict[str, Any]) -> bytes:
    return json.dumps({k: record.get(k) for k in FIELDS}, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    """An ISO 8601 time (``2026-12-06``, ``2026-12-06T08:00``, with or without ``Z``), as UTC."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise CimInputError(f"{text!r} is not a time (expected ISO 8601, e.g. 2026-12-06T08:00Z)") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True)
class Problem:
    """One thing :meth:`AuditLog.verify` found wrong, with the line it is on (1-based)."""

    line: int
    seq: int | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" + (f" (record {self.seq})" if self.seq is not None else "")
        return f"{where}: {self.message}"


@dataclass
class Verification:
    """What :meth:`AuditLog.verify` read and found."""

    path: Path
    records: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class AuditLog:
    """The audit log of the city in ``city_dir`` (created on the first append)."""

    def __init__(self, city_dir: str | Path) -> None:
        self.city_dir = Path(city_dir)
        self.path = private_dir(city_dir) / AUDIT_NAME
        self.head_path = private_dir(city_dir) / HEAD_NAME
        self._key: bytes | None = None

    def _mac_key(self, create: bool) -> bytes:
        if self._key is None:
            self._key = hmac.new(secret_key(self.city_dir, create=create), b"cim audit", hashlib.sha256).digest()
        return self._key

    def _mac(self, record: dict[str, Any]) -> str:
        return hmac.new(self._mac_key(create=False), _canonical(record), hashlib.sha256).hexdigest()

    # ------------------------------------------------------------------ writing

    def append(self, *entries: dict[str, Any]) -> list[dict[str, Any]]:
        """Append records (each a dict of user, action, target, remote, status, detail; ``time``
        is set when missing), chained to the log's last record; returns them as written."""
        if not entries:
            return []
        self._mac_key(create=True)
        self.path.parent.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "r+b") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                seq, prev = self._tail(f)
                lines, written = [], []
                for entry in entries:
                    seq += 1
                    record = {
                        "seq": seq,
                        "time": entry.get("time") or _now(),
                        "user": entry.get("user") or "anonymous",
                        "action": str(entry.get("action") or "unknown"),
                        "target": entry.get("target"),
                        "remote": entry.get("remote"),
                        "status": entry.get("status"),
                        "detail": entry.get("detail") or {},
                        "prev": prev,
                    }
                    record["mac"] = prev = self._mac(record)
                    lines.append(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
                    written.append(record)
                f.write("".join(lines).encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())
                self._write_head(seq, prev)
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        return written

    def _tail(self, f) -> tuple[int, str]:
        """The last record's seq and mac (0 and the genesis value for an empty log)."""
        end = f.seek(0, os.SEEK_END)
        if end == 0:
            return 0, GENESIS
        block = 4096
        while True:
            start = max(0, end - block)
            f.seek(start)
            data = f.read(end - start)
            lines = data.rstrip(b"\n").split(b"\n")
            if len(lines) > 1 or start == 0:
                break
            block *= 4
        try:
            last = json.loads(lines[-1])
            return int(last["seq"]), str(last["mac"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CimError(f"{self.path}: its last line is not an audit record ({exc}); run `cim audit verify`") from None

    def _write_head(self, seq: int, mac: str) -> None:
        tmp = self.head_path.with_name(f".{HEAD_NAME}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps({"seq": seq, "mac": mac}))
        os.replace(tmp, self.head_path)

    # ------------------------------------------------------------------ reading

    def records(self) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
        """(line number, record or None when the line is not JSON, raw line) for every line."""
        if not self.path.is_file():
            raise CimNotFound(f"{self.path}: no audit log (nothing was served from this city yet)")
        with open(self.path, "rb") as f:
            for number, raw in enumerate(f, start=1):
                text = raw.decode("utf-8", errors="replace").rstrip("\n")
                try:
                    record = json.loads(text)
                except ValueError:
                    record = None
                yield number, record if isinstance(record, dict) else None, text

    def show(
        self,
        *,
        user: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        path: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """The records matching every filter given (times as UTC datetimes; ``until`` exclusive;
        ``path``: the record's target, or one of the paths a read record lists)."""
        for _, record, _ in self.records():
            if record is None:
                continue
            if user is not None and record.get("user") != user:
                continue
            if action is not None and record.get("action") != action:
                continue
            if path is not None and record.get("target") != path:
                detail = record.get("detail")
                paths = detail.get("paths") if isinstance(detail, dict) else None
                if not isinstance(paths, list) or path not in paths:
                    continue
            if since is not None or until is not None:
                try:
                    when = parse_time(str(record.get("time")))
                except CimInputError:
                    continue
                if (since is not None and when < since) or (until is not None and when >= until):
                    continue
            yield record

    def verify(self) -> Verification:
        """Check the whole chain; every problem names its line and record.

        Raises
        ------
        CimNotFound
            No log, or no key to check it with.
        """
        self._mac_key(create=False)
        result = Verification(self.path)
        expected_seq, prev = 1, GENESIS
        last_seq: int | None = None
        for number, record, _ in self.records():
            if record is None or not isinstance(record.get("seq"), int) or "mac" not in record:
                result.problems.append(Problem(number, None, "not an audit record (damaged or inserted)"))
                continue
            result.records += 1
            seq = record["seq"]
            if not hmac.compare_digest(str(record.get("mac")), self._mac(record)):
                result.problems.append(Problem(number, seq, "its content does not match its MAC: the record was edited"))
            if seq > expected_seq:
                gone = f"record {expected_seq}" if seq == expected_seq + 1 else f"records {expected_seq}-{seq - 1}"
                result.problems.append(Problem(number, seq, f"{gone} missing before it: deleted"))
            elif seq < expected_seq:
                result.problems.append(Problem(number, seq, f"out of order (expected record {expected_seq} here): reordered or copied"))
            elif record.get("prev") != prev:
                result.problems.append(Problem(number, seq, "does not chain to the record before it"))
            expected_seq, prev = max(expected_seq, seq + 1), str(record.get("mac"))
            last_seq = seq
        with contextlib.suppress(FileNotFoundError, ValueError):
            head = json.loads(self.head_path.read_text())
            if last_seq is None or head["seq"] > last_seq:
                lost = head["seq"] - (last_seq or 0)
                result.problems.append(
                    Problem(result.records + 1, head["seq"], f"the last {lost} record(s) are missing: the log was cut short")
                )
            elif head["seq"] == last_seq and head["mac"] != prev:
                result.problems.append(Problem(result.records, last_seq, "the last record is not the one written last"))
        return result


class AuditWriter:
    """Writes the trail from a background thread; a request only appends a tuple to a deque.

    :meth:`record` (one record per call: logins, searches, queries, analyses, exports,
    annotations, refusals) and :meth:`read` (a permitted read of a restricted layer's file) are
    safe from any thread (an asyncio handler included) and take no lock: ``deque.append`` of a
    tuple and a ``time.time()``. Every ``interval`` seconds (or at :meth:`flush` and
    :meth:`close`) the thread takes what was appended and writes it in one append: each
    :meth:`record` as a record, and the reads of the same (user, layer, address, status) in
    that turn as ONE ``read`` record listing them (see :func:`burst_records`). A failing disk
    is logged once per turn and the records kept for the next try: the trail is not silently
    dropped while the server keeps serving.

    Parameters
    ----------
    audit : AuditLog
        The trail written.
    batch : int
        Most records in one append (one ``flock``, one ``fsync``).
    interval : float
        Seconds between the thread's turns: a read is on disk within about this much, and the
        reads of one turn become one record a reader and layer.
    max_paths : int
        Most distinct paths one read record lists (more start another record).
    """

    def __init__(self, audit: AuditLog, batch: int = 512, interval: float = 1.0, max_paths: int = 1000) -> None:
        self.audit = audit
        self._items: deque[tuple[Any, ...] | threading.Event | None] = deque()
        self._batch = batch
        self._interval = interval
        self._max_paths = max_paths
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cim-audit", daemon=True)
        self._thread.start()

    def record(self, **entry: Any) -> None:
        """Queue one record: ``user``, ``action``, ``target``, ``remote``, ``status``, ``detail``
        (``time``: now, unless given as an ISO 8601 string)."""
        self._items.append((time.time(), entry))

    def read(self, user: str, layer: str, target: str, remote: str | None, status: int) -> None:
        """Queue a read of ``target`` (a file of the restricted ``layer``) by ``user``."""
        self._items.append((time.time(), user, layer, target, remote, status))

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far is on disk; returns False on timeout."""
        done = threading.Event()
        self._items.append(done)
        self._wake.set()
        return done.wait(timeout)

    def close(self) -> None:
        """Write everything queued and stop the thread."""
        self._items.append(None)
        self._wake.set()
        self._thread.join(timeout=30.0)

    def _run(self) -> None:
        pending: list[dict[str, Any]] = []
        waiting: list[threading.Event] = []
        stop = False
        while not stop:
            self._wake.wait(self._interval)
            self._wake.clear()
            taken: list[tuple[Any, ...]] = []
            items = self._items
            while items:  # popleft is atomic: an append racing this loop is taken now or next turn
                item = items.popleft()
                if item is None:
                    stop = True
                elif isinstance(item, threading.Event):
                    waiting.append(item)
                else:
                    taken.append(item)
            try:
                pending += burst_records(taken, self._max_paths)
                while pending:
                    self.audit.append(*pending[: self._batch])
                    del pending[: self._batch]
            except (OSError, CimError) as exc:
                log.error("audit log %s: cannot append %d record(s): %s", self.audit.path, len(pending), exc)
                continue
            except Exception:  # a bug (a detail JSON cannot hold) must not stop the trail for good
                log.exception(
                    "audit log %s: %d record(s) could not be written and are dropped", self.audit.path, len(pending) or len(taken)
                )
                pending = []
                continue
            for done in waiting:
                done.set()
            waiting = []


def _time_text(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def burst_records(items: list[tuple[Any, ...]], max_paths: int = 1000) -> list[dict[str, Any]]:
    """The records of a writer's turn, in the order of their first item.

    An item ``(time, entry)`` is one record. Items ``(time, user, layer, target, remote,
    status)`` (reads) of the same user, layer, address and status become one ``read`` record:
    ``time`` the first read's, ``target`` the first path, and ``detail`` ``{"layer", "count":
    reads, "paths": [each path once, in the order first read], "last": the last read's time}``
    plus ``"repeats": {path: reads}`` for the paths read more than once. A record lists at
    most ``max_paths`` paths: a new path past them starts the next record of the same key.
    """
    out: list[dict[str, Any]] = []
    open_bursts: dict[tuple[Any, ...], tuple[dict[str, Any], dict[str, int]]] = {}
    bursts: list[tuple[dict[str, Any], dict[str, int]]] = []
    for item in items:
        if len(item) == 2:
            when, entry = item
            entry = dict(entry)
            if not entry.get("time"):
                entry["time"] = _time_text(when)
            out.append(entry)
            continue
        when, user, layer, target, remote, status = item
        key = (user, layer, remote, status)
        burst = open_bursts.get(key)
        if burst is None or (target not in burst[1] and len(burst[1]) >= max_paths):
            detail: dict[str, Any] = {"layer": layer, "count": 0, "last": when}
            record = {"time": _time_text(when), "user": user, "action": "read", "target": target, "remote": remote, "status": status}
            record["detail"] = detail
            burst = open_bursts[key] = (record, {})
            bursts.append(burst)
            out.append(record)
        record, reads = burst
        reads[target] = reads.get(target, 0) + 1
        record["detail"]["count"] += 1
        record["detail"]["last"] = when
    for record, reads in bursts:
        detail = record["detail"]
        detail["paths"] = list(reads)
        detail["last"] = _time_text(detail["last"])
        repeats = {path: n for path, n in reads.items() if n > 1}
        if repeats:
            detail["repeats"] = repeats
    return out
