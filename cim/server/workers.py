"""Several server processes on one port: listening sockets, forked workers, their supervision.

One Python process answers on one core; a second core is idle unless a second process serves
too. :func:`serve_workers` binds one listening socket per worker, all with ``SO_REUSEPORT`` on
the same address, then forks a worker per socket: the kernel spreads new connections over the
sockets by a hash of their addresses, so keep-alive connections opened together (a browser's
six, a load generator's 64) land on every worker rather than on whichever woke first, as they
would on one shared socket. Each worker builds its own application (its own file cache, access
rules and audit writer: :mod:`cim.audit` takes a lock on the trail for each append, so several
writers keep one chain; the writer is closed, what it holds written, when the worker stops) and serves until SIGTERM or SIGINT, then closes cleanly.

The parent forks before any thread exists and only supervises: SIGTERM or SIGINT to it is passed
on to every worker, and it returns once all have ended; a worker that dies is replaced (its
socket closed with it, so the kernel stops sending it connections; those already queued on it
are reset), unless it dies at start, which stops the server with an error.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable

from cim.errors import CimError, CimIOError

__all__ = ["default_workers", "listening_socket", "serve_workers"]

log = logging.getLogger("cim.server")

#: a worker ending sooner than this after its start is a failure to start, not a crash to mend
START_GRACE_S = 2.0


def default_workers() -> int:
    """The number of CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def listening_socket(host: str, port: int, *, reuse_port: bool = False, backlog: int = 1024) -> socket.socket:
    """A TCP socket listening on ``host:port`` (``port`` 0: any free one).

    Raises
    ------
    CimIOError
        When the address cannot be bound (in use, not local, no permission).
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise CimIOError(f"cannot listen on {host}: {exc.strerror}") from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise CimIOError(f"cannot listen on {host} port {port}: {exc.strerror}") from exc
    sock.setblocking(False)
    return sock


def serve_workers(serve: Callable[[socket.socket], None], host: str, port: int, workers: int) -> None:
    """Fork ``workers`` processes, each running ``serve(its socket)``, and supervise them.

    Parameters
    ----------
    serve : callable
        Serves one socket until SIGTERM or SIGINT (called in the worker; its return ends it).
    host, port : str, int
        The address every worker listens on (port 0: a free one, the same for all).
    workers : int
        How many processes.

    Raises
    ------
    CimIOError
        When the address cannot be bound.
    CimError
        When a worker fails at its start.
    """
    first = listening_socket(host, port, reuse_port=True)
    port = first.getsockname()[1]
    children: dict[int, float] = {}
    stopping = False
    failed_at_start = False

    pending: list[socket.socket] = []

    def start(sock: socket.socket) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            for other in pending:  # each socket open in its own worker only
                if other is not sock:
                    other.close()
            code = 0
            try:
                serve(sock)
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        sock.close()  # the worker owns it: when the worker ends, the kernel stops routing to it
        if sock in pending:
            pending.remove(sock)
        children[pid] = time.monotonic()

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        pending += [first] + [listening_socket(host, port, reuse_port=True) for _ in range(workers - 1)]
        for sock in list(pending):
            start(sock)
        while children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            started = children.pop(pid, None)
            if started is None or stopping:
                continue
            code = os.waitstatus_to_exitcode(status)
            if time.monotonic() - started < START_GRACE_S:
                log.error("a server worker (pid %d) ended at its start with status %d: stopping", pid, code)
                failed_at_start = True
                stop(signal.SIGTERM, None)
                continue
            log.warning("server worker pid %d ended with status %d: starting another", pid, code)
            start(listening_socket(host, port, reuse_port=True))
    finally:
        for sock in pending:
            sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if children:
            stop(signal.SIGTERM, None)
            for pid in list(children):
                os.waitpid(pid, 0)
    if failed_at_start:
        raise CimError("a server worker failed at its start (see the log above)")
