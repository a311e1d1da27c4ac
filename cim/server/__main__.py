"""``python -m cim.server CITY_DIR [--host H] [--port P] [--viewer DIR] [--workers N] [--cache-mb M]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cim.errors import CimError
from cim.server.app import run
from cim.server.filecache import DEFAULT_CACHE_BYTES
from cim.server.guard import HEAD_TIMEOUT
from cim.server.workers import default_workers


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and serve until interrupted; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m cim.server", description="Serve a built city and the 3D viewer.")
    parser.add_argument("city_dir", type=Path, help="built city folder holding city.json")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default: %(default)s)")
    parser.add_argument("--viewer", type=Path, default=None, help="viewer folder (default: the repo's viewer/)")
    parser.add_argument("--head-timeout", type=float, default=HEAD_TIMEOUT, help="seconds a request head may take (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=None, help="server processes sharing the port (default: one a CPU)")
    parser.add_argument(
        "--cache-mb",
        type=float,
        default=DEFAULT_CACHE_BYTES / 2**20,
        help="MiB of small files each process keeps in memory (default: %(default)s; 0: none)",
    )
    args = parser.parse_args(argv)
    try:
        run(
            args.city_dir,
            host=args.host,
            port=args.port,
            viewer_dir=args.viewer,
            head_timeout=args.head_timeout,
            workers=default_workers() if args.workers is None else args.workers,
            cache_bytes=int(args.cache_mb * 2**20),
        )
    except CimError as exc:
        print(f"cim.server: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
