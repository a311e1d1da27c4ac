"""What values a real place can have: heights on Earth, finite numbers.

Readers check what they read against these bounds and refuse (or count and skip) the rest: a
height of 3e38 is a no-data value nobody declared, 1e12 a unit or header error; either would
otherwise stretch a tile tree over a volume larger than the Solar System.
"""

from __future__ import annotations

import numpy as np

from cim.errors import CimInputError

__all__ = ["MIN_HEIGHT", "MAX_HEIGHT", "implausible_heights", "check_heights"]

#: metres: below the deepest ocean trench, above the highest summit, with room for ellipsoidal
#: heights (geoid undulations of about ±100 m) and for towers and aircraft surveys
MIN_HEIGHT, MAX_HEIGHT = -12_000.0, 12_000.0


def implausible_heights(z: np.ndarray) -> np.ndarray:
    """(n,) bool: heights that are infinite or beyond [:data:`MIN_HEIGHT`, :data:`MAX_HEIGHT`]
    (NaN, the usual no-data mark, is not counted)."""
    z = np.asarray(z)
    with np.errstate(invalid="ignore"):
        return np.isinf(z) | (z < MIN_HEIGHT) | (z > MAX_HEIGHT)


def check_heights(z: np.ndarray, what: str) -> None:
    """Raise :class:`CimInputError` naming ``what`` when any height is implausible.

    Parameters
    ----------
    z : heights in metres (any shape; NaN is taken as no data)
    what : the file (and where in it) the heights come from
    """
    bad = implausible_heights(z)
    if bad.any():
        values = np.asarray(z)[bad]
        raise CimInputError(
            f"{what}: {int(bad.sum()):,} height(s) like {float(values.flat[0]):.6g} m lie outside "
            f"{MIN_HEIGHT:,.0f}..{MAX_HEIGHT:,.0f} m (an undeclared no-data value, or another unit?)"
        )
