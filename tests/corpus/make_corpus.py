"""A corpus of damaged inputs for every reader, generated from the tiny sample city and the real
files of ``../shared/realdata`` (deterministic: the same seed and inputs give the same bytes).

Each :class:`Case` names a layer kind, what its input suffered and what ``cim convert`` must do:

- ``error``: exit 1 with one ``error:`` line naming the damaged file (no traceback);
- ``lossy``: that error, or exit 0 with a warning that counts what was left out;
- ``ok``: exit 0 with right output;
- ``any``: the error, or exit 0 with a sound output (a flipped byte in a colour is no error).

Usage (writes every case and ``cases.json`` into OUT)::

    python tests/corpus/make_corpus.py SAMPLE_DIR OUT [--realdata ../shared/realdata]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.corpus import damage
from tests.corpus.bases import Bases

__all__ = ["ERROR", "LOSSY", "OK", "ANY", "Case", "Made", "Corpus", "CASES", "cases_of", "main"]

ERROR, LOSSY, OK, ANY = "error", "lossy", "ok", "any"


@dataclass
class Made:
    """A case written to disk: what to run and what an error must name.

    ``names`` are the words the error line must hold (the damaged file's name); ``out`` replaces
    the default output folder (the output-folder cases).
    """

    sources: list[Path]
    args: list[str] = field(default_factory=list)
    names: tuple[str, ...] = ()
    out: Path | None = None


@dataclass(frozen=True)
class Case:
    """One damaged input (see the module notes)."""

    id: str
    kind: str
    expect: str
    make: Callable[[Bases, Path], Made]
    realdata: bool = False

    def folder(self, root: Path) -> Path:
        return root / "cases" / self.id.replace("/", "__")


class Corpus:
    """Makes cases under ``root`` from the sound inputs."""

    def __init__(self, root: Path, sample: Path, realdata: Path | None) -> None:
        self.root = root
        self.bases = Bases(root, sample, realdata)

    def make(self, case: Case) -> Made:
        folder = case.folder(self.root)
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        return case.make(self.bases, folder)


CASES: list[Case] = []


def case(kind: str, name: str, expect: str, *, realdata: bool = False) -> Callable[[Callable[[Bases, Path], Made]], Callable]:
    """Register a case (decorator)."""

    def register(fn: Callable[[Bases, Path], Made]) -> Callable:
        CASES.append(Case(f"{kind}/{name}", kind, expect, fn, realdata))
        return fn

    return register


def cases_of(kind: str) -> list[Case]:
    return [c for c in CASES if c.kind == kind]


# ---------------------------------------------------------------------------- byte damage
def byte_damage(
    kind: str,
    label: str,
    base: Callable[[Bases], Path],
    *,
    header: int,
    truncated: str,
    args: tuple[str, ...] = (),
    seed: int = 0,
    realdata: bool = False,
    flips: int = 6,
    size_hint: int = 4096,
    place: Callable[[Bases, Path, bytes], Path] | None = None,
    last_byte_optional: bool = False,
    broken: str = ERROR,
) -> None:
    """Register the generic damage of one file: empty, cut short at several offsets, bytes
    flipped in its header, a block of garbage, a tail of garbage, noise in its place.

    ``last_byte_optional``: the file's last byte carries nothing (a dBase end-of-file mark), so
    the cut at ``size - 1`` may succeed without a word.

    ``broken``: what an empty, noise or text file must give (an error, or a warning for a
    file a layer can do without, such as a texture).

    ``place(bases, folder, data)`` writes the damaged bytes where the case reads them (default:
    a file of the base's name in the case folder) and returns the source to convert.
    """

    def put(b: Bases, folder: Path, data: bytes) -> Made:
        src = base(b)
        if place is not None:
            return Made([place(b, folder, data)], list(args), (src.name,))
        out = folder / src.name
        out.write_bytes(data)
        return Made([out], list(args), (src.name,))

    def register(name: str, expect: str, transform: Callable[[bytes], bytes]) -> None:
        def make(b: Bases, folder: Path) -> Made:
            return put(b, folder, transform(base(b).read_bytes()))

        CASES.append(Case(f"{kind}/{label}-{name}", kind, expect, make, realdata))

    register("empty", broken, lambda d: b"")
    # offsets are fixed fractions of a size known only when the base exists: cut by index
    n_cuts = len(damage.truncation_offsets(size_hint, header))
    for i in range(n_cuts):
        register(
            f"cut{i}",
            ANY if last_byte_optional and i == n_cuts - 1 else truncated,
            lambda d, i=i: d[: _nth(damage.truncation_offsets(len(d), header), i)],
        )
    for i in range(flips):
        register(f"flip{i}", ANY, lambda d, i=i: damage.flipped(d, damage.flip_offsets(len(d), header, flips, seed)[i]))
    register("garbage-block", ANY, lambda d: damage.with_garbage_block(d, len(d) // 2, 512, seed + 1))
    register("garbage-tail", ANY, lambda d: damage.with_tail(d, seed + 2))
    register("noise", broken, lambda d: damage.random_bytes(len(d), seed + 3))
    register("text", broken, lambda d: b"this is not the file you are looking for\n" * 20)


def _nth(offsets: list[int], i: int) -> int:
    return offsets[min(i, len(offsets) - 1)]


def output_cases(kind: str, source: Callable[[Bases], Path], args: tuple[str, ...] = ()) -> None:
    """Register the output-folder cases of a kind: a file, a path under a file, a folder that
    cannot be written."""

    @case(kind, "out-is-a-file", ERROR)
    def _(b: Bases, folder: Path) -> Made:
        out = folder / "out"
        out.write_text("a file where the output folder goes\n")
        return Made([source(b)], list(args), ("out",), out=out)

    @case(kind, "out-under-a-file", ERROR)
    def _(b: Bases, folder: Path) -> Made:
        (folder / "file").write_text("x\n")
        return Made([source(b)], list(args), ("file",), out=folder / "file" / "out")

    @case(kind, "out-read-only", ERROR)
    def _(b: Bases, folder: Path) -> Made:
        if os.geteuid() != 0:
            ro = folder / "ro"
            ro.mkdir()
            ro.chmod(0o555)
            return Made([source(b)], list(args), ("ro",), out=ro / "out")
        return Made([source(b)], list(args), ("proc",), out=Path("/proc/cim-corpus/out"))  # root writes anywhere else


def iter_cases(kinds: list[str] | None = None) -> Iterator[Case]:
    for c in CASES:
        if kinds is None or c.kind in kinds:
            yield c


# the readers' cases register themselves on import
from tests.corpus import cases_bim, cases_cityjson, cases_footprints, cases_mesh, cases_pointcloud, cases_raster  # noqa: E402, F401


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sample", type=Path, help="the tiny sample city (cim sample --preset tiny DIR)")
    parser.add_argument("out", type=Path)
    parser.add_argument("--realdata", type=Path, default=None)
    ns = parser.parse_args(argv)
    # run as a script this module is __main__: the readers' cases registered themselves in
    # tests.corpus.make_corpus, the module they import
    from tests.corpus import make_corpus as registry

    corpus = registry.Corpus(ns.out, ns.sample, ns.realdata)
    listing = []
    for c in registry.CASES:
        if c.realdata and ns.realdata is None:
            continue
        made = corpus.make(c)
        listing.append(
            {
                "id": c.id,
                "kind": c.kind,
                "expect": c.expect,
                "sources": [str(s) for s in made.sources],
                "args": made.args,
                "names": made.names,
            }
        )
    (ns.out / "cases.json").write_text(json.dumps(listing, indent=1))
    print(f"{len(listing)} cases in {ns.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
