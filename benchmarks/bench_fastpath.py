"""CPU time of one fast-path answer, without the network: what access control adds (issue 12).

``bench_server.py`` measures requests/s beside nginx, but on a shared machine its runs swing by
a factor of two, too much to see a cost of a few microseconds. This feeds the same request heads
as ``bench_server.py`` (its URLs of a built city, ``Accept-Encoding: gzip``) straight into
:class:`cim.server.fastpath.FastPath` with a transport that drops the answer, and reports the
process CPU time per answer (parse, decide, head) for:

- the city as built (no access rules, anonymous reader);
- a hard-linked copy with its buildings layer restricted, every request carrying a verified
  token of a user who may read it (each buildings read recorded to a stand-in audit writer
  that only counts, or with ``--real-audit`` to the city's own writer, whose thread's CPU
  and writes are counted too: process CPU time, the trail flushed before the clock stops).

    .venv/bin/python benchmarks/bench_fastpath.py --city DIR
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_server

from cim.audit import AuditLog, AuditWriter
from cim.server import create_app
from cim.server.app import _file_headers, _open_small
from cim.server.fastpath import FastPath, FastTable, _Watched
from cim.server.filecache import CachedFile
from cim.server.security import TOKEN_MEMO
from cim.server.state import ACCESS, AUDIT, FILE_CACHE


class _Drop:
    """A transport that takes every answer and sends nothing."""

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else None

    def writelines(self, data: list[bytes]) -> None:
        pass

    def is_closing(self) -> bool:
        return False


class _Idle:
    """aiohttp's connection handler with nothing in hand."""

    _request_in_progress = False
    _messages = ()
    _keepalive_timeout = 0


class _Count:
    records = 0

    def record(self, **entry: Any) -> None:
        _Count.records += 1

    def read(self, *fields: Any) -> None:
        _Count.records += 1


def per_answer(city: Path, urls: list[str], token: str | None, rounds: int, batch: int = 8, real_audit: bool = False) -> tuple[float, int]:
    """(CPU microseconds per answer, audit records) for every URL answered ``rounds`` times,
    the loop turning after every ``batch`` requests (0: never); with ``real_audit``, the
    city's own audit writer records the reads (its thread's CPU counted: the process's)."""
    root = city.resolve()
    app = create_app(root, root, audit=False)
    cache = app[FILE_CACHE]
    assert cache is not None
    for url in urls:  # fill the cache as the slow path does
        parts = tuple(url.split("/"))
        opened, data = _open_small(root, parts, cache.max_file)
        assert data is not None, url
        headers = _file_headers(parts[-1], opened.etag, opened.mtime, opened.gzip_encoded)
        entry = CachedFile(data, headers, opened.etag, opened.mtime, opened.stamp, opened.path, opened.absent)
        cache.put((str(root), parts, False), entry)
    _Count.records = 0
    writer = None
    if real_audit:
        app[AUDIT] = writer = AuditWriter(AuditLog(root))
    else:
        app[AUDIT] = _Count()  # type: ignore[assignment]
    extra = ""
    if token is not None:  # verified once, as the slow path does at a token's first request
        acl = app[ACCESS]
        if acl is not None:  # (without rules the header is only parsed)
            memo = app[TOKEN_MEMO]
            memo.get(token)
            memo.put(token, acl.authenticate_token(token), memo._stamp)
        extra = f"Authorization: Bearer {token}\r\n"
    table = FastTable(app)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    fast = FastPath(_Watched(lambda: None, 10.0), table)
    fast._handler = _Idle()
    fast.transport = _Drop()  # type: ignore[assignment]
    fast._loop = loop
    heads = [f"GET /city/{url} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept-Encoding: gzip\r\n{extra}\r\n".encode() for url in urls]

    async def feed() -> float:
        # the requests of one turn of the loop come together (the connections a poll found
        # ready), then the loop turns: file stamps are taken once a turn (cim.access.file_stamp)
        for head in heads:
            fast.data_received(head)
        if writer is not None:
            writer.flush()
        start = time.process_time()
        for _ in range(rounds):
            for i, head in enumerate(heads):
                fast.data_received(head)
                if batch and i % batch == batch - 1:
                    await asyncio.sleep(0)
        if writer is not None:  # the trail on disk is part of the cost
            writer.flush()
        return time.process_time() - start

    before = table.hits + len(heads)
    took = loop.run_until_complete(feed())
    answered = table.hits - before
    loop.close()
    if writer is not None:
        writer.close()
        _Count.records = sum(r["detail"].get("count", 1) for r in AuditLog(root).show(action="read"))
    if answered != rounds * len(heads):
        raise SystemExit(f"only {answered} of {rounds * len(heads)} requests were answered by the fast path")
    return took / answered * 1e6, _Count.records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--city", type=Path, default=None, help="a built city (default: the district preset under benchmarks/out)")
    parser.add_argument("--per-kind", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8, help="requests a turn of the event loop (64 connections on 2 workers: up to 32)")
    parser.add_argument(
        "--real-audit",
        action="store_true",
        help="record the reads with the city's audit writer (its thread's CPU and the writes counted) instead of a counter",
    )
    args = parser.parse_args()
    city = (args.city or bench_server.default_city()).resolve()
    urls, counts, _ = bench_server.pick_urls(city, args.per_kind)
    copy, headers, layer = bench_server.acl_copy(city)
    token = headers["Authorization"].split(" ", 1)[1]
    try:
        print(
            f"city {city}: {len(urls)} URLs {counts}; {args.rounds} rounds, best of {args.repeat}, {args.batch} requests a turn", flush=True
        )
        plain = min(per_answer(city, urls, None, args.rounds, args.batch)[0] for _ in range(args.repeat))
        parsed = min(per_answer(city, urls, token, args.rounds, args.batch)[0] for _ in range(args.repeat))
        runs = [per_answer(copy, urls, token, args.rounds, args.batch, args.real_audit) for _ in range(args.repeat)]
        guarded = min(us for us, _ in runs)
        records = runs[0][1]
        print(f"  no access rules, anonymous:             {plain:6.2f} us CPU per answer")
        print(f"  no access rules, the token sent (parsed): {parsed:6.2f} us CPU per answer")
        print(f"  {layer} restricted, token on every request: {guarded:6.2f} us CPU per answer ({records:,} audited reads a run)")
        print(f"  access control adds {guarded - plain:.2f} us ({(guarded / plain - 1) * 100:.0f} %) to the fast path's own work")
    finally:
        shutil.rmtree(copy.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
