"""Is an IFC file whole? What a cut-short copy or a damaged line cost, counted.

ifcopenshell reads a file that stops half way, or whose lines refer to entities it never
defines, without complaint: the elements after the cut, or those whose placement or shape is
gone, simply do not come out. :func:`check_integrity` reads the file's bytes once and says what
was lost, so that a build reports it (a :class:`~cim.warnings.GeometryWarning` naming the
elements lost by class) instead of converting part of a model with no word.
:func:`check_placements` refuses placements that refer back to themselves (ifcopenshell's
geometry kernel recurses on them until the process dies), and :func:`damaged_line` finds the
first line a syntax error is in.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cim.errors import CimInputError

__all__ = ["IfcIntegrity", "check_integrity", "check_placements", "damaged_line", "product_classes"]

_DEFINITION = re.compile(rb"^[ \t]*#(\d+)[ \t]*=[ \t]*([A-Za-z0-9_]+)[ \t]*\(", re.MULTILINE)
_DEFINED_ID = re.compile(rb"^[ \t]*#(\d+)[ \t]*=[ \t]*[A-Za-z0-9_]+[ \t]*\(", re.MULTILINE)
_REFERENCE = re.compile(rb"#(\d+)")
_END = b"END-ISO-10303-21"


@dataclass
class IfcIntegrity:
    """What a file lacks.

    Attributes
    ----------
    truncated : the file ends without ``END-ISO-10303-21;`` (a copy cut short)
    missing : ids the file refers to and never defines
    lost : class → elements (IfcProduct instances) whose definition is missing though a
        relationship names them, or whose own line refers to a missing entity
    """

    path: Path
    size: int
    truncated: bool = False
    missing: set[int] = field(default_factory=set)
    lost: Counter = field(default_factory=Counter)

    @property
    def whole(self) -> bool:
        return not self.truncated and not self.missing

    def message(self) -> str:
        """One line for the build's warning."""
        parts = []
        if self.truncated:
            parts.append(f"the file is truncated (it ends at byte {self.size:,} without END-ISO-10303-21)")
        if self.missing:
            shown = ", ".join(f"#{i}" for i in sorted(self.missing)[:5]) + (" ..." if len(self.missing) > 5 else "")
            parts.append(f"{len(self.missing):,} referenced entities are missing ({shown})")
        n = sum(self.lost.values())
        by_class = ", ".join(f"{c} ×{k}" for c, k in sorted(self.lost.items(), key=lambda t: (-t[1], t[0]))[:8])
        lost = f"{n:,} element(s) lost or incomplete ({by_class})" if n else "no element is known to be lost; others may be"
        return f"{'; '.join(parts)}: {lost}"


def check_integrity(path: str | Path, is_product: object = None) -> IfcIntegrity:
    """Read ``path``'s bytes and count what it lacks (see :class:`IfcIntegrity`).

    Parameters
    ----------
    path : an IFC (STEP physical file)
    is_product : ``callable(CLASS_NAME) -> str | None``, the class's name when it is an
        IfcProduct in the file's schema (:func:`product_classes`); without it every entity that
        refers to a missing one is counted
    """
    path = Path(path)
    data = path.read_bytes()
    report = IfcIntegrity(path, len(data))
    report.truncated = _END not in data[-4096:]
    start = data.find(b"DATA;")
    body = memoryview(data)[start if start >= 0 else 0 :]
    # ids as numpy arrays (numpy parses the digits): a set of Python ints took four times longer
    defined = _ids(_DEFINED_ID.findall(body))
    referred = _ids(_REFERENCE.findall(body))
    report.missing = {int(i) for i in np.setdiff1d(referred, defined)}
    if not report.missing:
        return report
    product = is_product if callable(is_product) else _pretty
    # who refers to whom, read only for a damaged file: walk up from each missing entity to the
    # elements that need it (a lost extrusion takes its wall's shape with it)
    users: dict[int, list[int]] = {}
    classes: dict[int, str] = {}
    never_defined: set[int] = set()
    for line in bytes(body).split(b";"):
        m = _DEFINITION.match(line.lstrip())
        if m is None:
            continue
        eid, cls = int(m.group(1)), m.group(2).decode("ascii", "replace")
        classes[eid] = cls
        refs = {int(v) for v in _REFERENCE.findall(line, m.end() + (len(line) - len(line.lstrip())))}
        for r in refs:
            users.setdefault(r, []).append(eid)
        if cls.upper().startswith("IFCREL"):
            never_defined |= refs & report.missing
    seen = set(report.missing)
    todo = list(report.missing)
    while todo:
        for u in users.get(todo.pop(), ()):
            if u not in seen and not classes[u].upper().startswith("IFCREL"):
                seen.add(u)
                found = product(classes[u].upper())
                if found:
                    report.lost[found] += 1
                else:
                    todo.append(u)
    # a relationship naming entities the file never defines (written after the cut): each one
    # is an element (or its property set, type or material) lost, of a class the file never
    # got to say
    never = len(never_defined)
    if never:
        report.lost["IfcProduct (never defined)"] += never
    return report


def _ids(digits: list[bytes]) -> np.ndarray:
    """Unique ids from their digits."""
    return np.unique(np.array(digits, dtype=np.bytes_).astype(np.int64)) if digits else np.zeros(0, np.int64)


def _pretty(cls: str) -> str:
    return cls if not cls.isupper() else "Ifc" + cls[3:].capitalize() if cls.startswith("IFC") else cls


def product_classes(schema: str):
    """``callable(CLASS_NAME) -> str | None``: the class's schema name when it is an IfcProduct
    in ``schema`` ("IFC4", ...), else None."""
    import ifcopenshell.ifcopenshell_wrapper as wrapper

    try:
        decls = wrapper.schema_by_name(schema)
    except Exception:  # an unknown schema: count every entity
        return _pretty
    cache: dict[str, str | None] = {}

    def is_product(name: str) -> str | None:
        if name not in cache:
            try:
                d = decls.declaration_by_name(name)
            except Exception:
                cache[name] = None
                return None
            own = d.name()
            while d is not None and d.name() != "IfcProduct":
                d = d.supertype()  # type: ignore[attr-defined]  # (an entity declaration)
            cache[name] = own if d is not None else None
        return cache[name]

    return is_product


def check_placements(f, path: str | Path) -> None:
    """Refuse an IfcLocalPlacement chain that refers back to itself.

    Raises
    ------
    CimInputError
        Naming the placements of the cycle.
    """
    state: dict[int, int] = {}  # id → 1 on the current chain, 2 checked
    for placement in f.by_type("IfcObjectPlacement"):
        chain: list[int] = []
        p = placement
        while p is not None:
            pid = p.id()
            if state.get(pid) == 2:
                break
            if state.get(pid) == 1:
                cycle = [*chain[chain.index(pid) :], pid]
                raise CimInputError(
                    f"{path}: placement #{pid} is placed relative to itself ({' → '.join(f'#{i}' for i in cycle)}): "
                    "the file is damaged; no element placed through it can be located"
                )
            state[pid] = 1
            chain.append(pid)
            try:
                p = getattr(p, "PlacementRelTo", None)
            except Exception:  # a placement kind without the attribute, or a damaged reference
                p = None
        for pid in chain:
            state[pid] = 2


def damaged_line(path: str | Path) -> str | None:
    """The first entity line of the DATA section that is not well formed (unbalanced
    parentheses or quotes, no closing ``);``), as ``line N (#id=CLASS...)``, or None."""
    in_data = False
    with Path(path).open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            line = raw.strip()
            if not in_data:
                in_data = line == b"DATA;"
                continue
            if not line or line.startswith(b"/*") or line in (b"ENDSEC;", b"END-ISO-10303-21;"):
                continue
            if not line.startswith(b"#"):
                return f"line {number} ({_short(line)})"
            if not _balanced(line):
                return f"line {number} ({_short(line)})"
    return None


def _short(line: bytes) -> str:
    text = line.decode("utf-8", "replace")
    return text if len(text) <= 60 else text[:57] + "..."


def _balanced(line: bytes) -> bool:
    depth, quoted = 0, False
    for ch in line.replace(b"''", b""):
        if ch == 0x27:  # '
            quoted = not quoted
        elif not quoted and ch == 0x28:
            depth += 1
        elif not quoted and ch == 0x29:
            depth -= 1
            if depth < 0:
                return False
    return depth == 0 and not quoted and line.endswith(b");")
