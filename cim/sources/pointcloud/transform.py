"""Source CRS → city ENU for point clouds: exact (pyproj) and fitted (piecewise quadratics).

Reprojection is never done point by point through pyproj (slower than reading the points). For
each file, :meth:`LocalTransform.piecewise` fits a quadratic of the source coordinates to the exact
pyproj → ECEF → ENU result at control points over the header box, checks it against pyproj at
other points, and keeps it where it is within ``tol`` (1 mm); else it splits the box in four and
tries again, and marks boxes that still fail for exact pyproj. Over 8 km of EPSG:4544 one
quadratic stays within 0.4 mm. The fits are plain arrays (:class:`PiecewiseFit`, picklable): the
threads that read the points evaluate them without a pyproj transformer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pyproj import CRS

from cim.crs import crs_label, to_lonlat
from cim.errors import CimCRSError
from cim.kernels.frames import LocalFrame, geodetic_to_ecef

__all__ = ["exact_enu", "LocalTransform", "PiecewiseFit"]


def exact_enu(crs: CRS, frame: LocalFrame, x: np.ndarray, y: np.ndarray, z: np.ndarray, z_factor: float = 1.0) -> np.ndarray:
    """Exact ENU (n, 3) of source points: pyproj to longitude/latitude, then ECEF and the frame.

    ``z * z_factor`` is the ellipsoidal height (heights are what the source says), as for every
    cim layer. Same result as pyproj to EPSG:4978 (to 1e-8 m for CGCS2000), but this transformer
    builds several times faster than EPSG:4544 → EPSG:4978.
    """
    lon, lat = to_lonlat(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64), crs)
    h = np.asarray(z, dtype=np.float64) * z_factor
    return frame.from_ecef(geodetic_to_ecef(lon, lat, h))


_TERMS = 9  # 1, u, v, w, u², uv, v², uw, vw


def _basis(u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(9, n) rows of the quadratic basis (no w²: heights enter linearly, tilted by the curve)."""
    b = np.empty((_TERMS, len(u)))
    b[0] = 1.0
    b[1], b[2], b[3] = u, v, w
    np.multiply(u, u, out=b[4])
    np.multiply(u, v, out=b[5])
    np.multiply(v, v, out=b[6])
    np.multiply(u, w, out=b[7])
    np.multiply(v, w, out=b[8])
    return b


class LocalTransform:
    """Source CRS → ENU of a :class:`LocalFrame`: exact (pyproj) and fitted.

    Parameters
    ----------
    crs : the source (horizontal) CRS
    frame : the city's ENU frame
    z_factor : metres per unit of z
    tol : largest accepted error of a fit (m), checked against pyproj
    what : a name for error messages (the file)
    """

    def __init__(self, crs: CRS, frame: LocalFrame, z_factor: float = 1.0, tol: float = 1e-3, what: str = "") -> None:
        self.crs = crs
        self.frame = frame
        self.z_factor = float(z_factor)
        self.tol = float(tol)
        self.what = what

    def exact(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Exact (n, 3) ENU; raises CimCRSError on points the CRS cannot place."""
        enu = exact_enu(self.crs, self.frame, x, y, z, self.z_factor)
        if not np.isfinite(enu).all():
            i = int(np.flatnonzero(~np.isfinite(enu).all(axis=1))[0])
            raise CimCRSError(
                f"{self.what}: coordinates ({float(np.asarray(x)[i])}, {float(np.asarray(y)[i])}) are outside what "
                f"{crs_label(self.crs)} can place; is the file's CRS right? (give crs=... with crs_override)"
            )
        return enu

    def fit(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, float]:
        """Quadratic over the box ``[lo, hi]`` (source units): ``(coef (3, 9), max error m)``.

        Fitted by least squares to pyproj at a 5 x 5 x 3 grid; the error is measured against
        pyproj at the 4 x 4 x 2 points between them (where an interpolant errs most)."""
        lo = np.asarray(lo, dtype=np.float64)
        hi = np.asarray(hi, dtype=np.float64)
        centre, half = (lo + hi) / 2.0, np.maximum((hi - lo) / 2.0, 1e-9)
        g = np.linspace(-1.0, 1.0, 5)
        U, V, W = (a.ravel() for a in np.meshgrid(g, g, np.linspace(-1.0, 1.0, 3), indexing="ij"))
        enu = self.exact(*(centre[i] + (U, V, W)[i] * half[i] for i in range(3)))
        coef, *_ = np.linalg.lstsq(_basis(U, V, W).T, enu, rcond=None)
        coef = np.ascontiguousarray(coef.T)
        c = np.linspace(-0.75, 0.75, 4)
        CU, CV, CW = (a.ravel() for a in np.meshgrid(c, c, np.array([-0.5, 0.5]), indexing="ij"))
        approx = (coef @ _basis(CU, CV, CW)).T
        err = float(np.abs(approx - self.exact(*(centre[i] + (CU, CV, CW)[i] * half[i] for i in range(3)))).max())
        return coef, err

    def piecewise(self, lo: np.ndarray, hi: np.ndarray, max_depth: int = 6) -> PiecewiseFit:
        """Fits covering the box ``[lo, hi]``: the whole box when one quadratic is within
        ``tol``, else its quarters (in x, y), recursively; boxes still failing at ``max_depth``
        are marked for exact pyproj."""
        lo = np.asarray(lo, dtype=np.float64)
        hi = np.asarray(hi, dtype=np.float64)
        pad = (hi - lo) * 1e-3 + 1e-6
        boxes: list[tuple[np.ndarray, np.ndarray, np.ndarray, bool, float]] = []

        def visit(a: np.ndarray, b: np.ndarray, depth: int) -> None:
            coef, err = self.fit(a, b)
            if err <= self.tol or depth >= max_depth:
                boxes.append((a, b, coef, err > self.tol, err))
                return
            mid = (a + b) / 2.0
            for qx in (0, 1):
                for qy in (0, 1):
                    na, nb = a.copy(), b.copy()
                    na[0], nb[0] = (a[0], mid[0]) if qx == 0 else (mid[0], b[0])
                    na[1], nb[1] = (a[1], mid[1]) if qy == 0 else (mid[1], b[1])
                    visit(na, nb, depth + 1)

        visit(lo - pad, hi + pad, 0)
        return PiecewiseFit(
            lo=np.array([b[0] for b in boxes]),
            hi=np.array([b[1] for b in boxes]),
            coef=np.array([b[2] for b in boxes]),
            exact=np.array([b[3] for b in boxes]),
            error=max(b[4] for b in boxes if not b[3]) if not all(b[3] for b in boxes) else 0.0,
            crs_wkt=self.crs.to_wkt(),
            z_factor=self.z_factor,
            frame=self.frame.to_dict(),
            what=self.what,
        )

    def to_enu(self, xyz: np.ndarray) -> np.ndarray:
        """(n, 3) source coordinates → (n, 3) ENU metres, through a piecewise fit over them."""
        xyz = np.asarray(xyz, dtype=np.float64)
        if len(xyz) == 0:
            return np.empty((0, 3))
        fit = self.piecewise(xyz.min(axis=0), xyz.max(axis=0))
        return np.ascontiguousarray(fit.apply(xyz[:, 0], xyz[:, 1], xyz[:, 2]).T)


@dataclass
class PiecewiseFit:
    """Quadratic fits over boxes of the source plane (plain arrays: evaluating them needs no pyproj).

    Attributes
    ----------
    lo, hi : (m, 3) boxes (source units; each spans the whole z range)
    coef : (m, 3, 9) quadratic coefficients in the box's normalised coordinates
    exact : (m,) boxes where no fit met the tolerance: pyproj is used there
    error : largest measured error of the fits in use (m)
    """

    lo: np.ndarray
    hi: np.ndarray
    coef: np.ndarray
    exact: np.ndarray
    error: float
    crs_wkt: str
    z_factor: float
    frame: dict
    what: str = ""

    def _exact(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        frame = LocalFrame(self.frame["lon"], self.frame["lat"], self.frame["height"])
        t = LocalTransform(CRS.from_wkt(self.crs_wkt), frame, self.z_factor, what=self.what)
        return np.ascontiguousarray(t.exact(x, y, z).T)

    def _eval(self, i: int, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        c, h = (self.lo[i] + self.hi[i]) / 2.0, (self.hi[i] - self.lo[i]) / 2.0
        return self.coef[i] @ _basis((x - c[0]) / h[0], (y - c[1]) / h[1], (z - c[2]) / h[2])

    def apply(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """(3, n) ENU of source points (rows east, north, up)."""
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        z = np.asarray(z, dtype=np.float64)
        out = np.empty((3, len(x)))
        todo = np.ones(len(x), dtype=bool)
        for i in range(len(self.lo)):
            m = todo & (x >= self.lo[i, 0]) & (x <= self.hi[i, 0]) & (y >= self.lo[i, 1]) & (y <= self.hi[i, 1])
            if not m.any():
                continue
            todo &= ~m
            out[:, m] = self._exact(x[m], y[m], z[m]) if self.exact[i] else self._eval(i, x[m], y[m], z[m])
        if todo.any():  # outside the header box: the header lied, transform exactly
            out[:, todo] = self._exact(x[todo], y[todo], z[todo])
        return out

    def single_quadratic(self, scales: Sequence[float], offsets: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """``(a, b, coef)`` such that with ``u = X * a + b`` (raw LAS integers) the quadratic
        ``coef`` (3, 9) gives ENU metres, when one fit covers the whole file; else None.

        Points outside the fitted box (``|u| > 1`` or ``|v| > 1``: a header box that lied)
        must be transformed by :meth:`apply_raw` instead."""
        if len(self.lo) != 1 or self.exact[0]:
            return None
        s = np.asarray(scales, dtype=np.float64)
        o = np.asarray(offsets, dtype=np.float64)
        c, h = (self.lo[0] + self.hi[0]) / 2.0, (self.hi[0] - self.lo[0]) / 2.0
        return s / h, (o - c) / h, self.coef[0]

    def apply_raw(self, X: np.ndarray, Y: np.ndarray, Z: np.ndarray, scales: Sequence[float], offsets: Sequence[float]) -> np.ndarray:
        """:meth:`apply` on raw LAS integers (``x = X * scale + offset``), as (3, n) ENU.

        When one fitted box holds the whole batch (the usual case), scale, offset and the box's
        normalisation fold into one multiply-add per axis and the quadratic is one (3, 9) x (9, n)
        matrix product."""
        s = np.asarray(scales, dtype=np.float64)
        o = np.asarray(offsets, dtype=np.float64)
        n = len(X)
        if n == 0:
            return np.empty((3, 0))
        ends = np.array([[X.min(), Y.min(), Z.min()], [X.max(), Y.max(), Z.max()]], dtype=np.float64) * s + o
        blo, bhi = ends.min(axis=0), ends.max(axis=0)
        inside = np.flatnonzero(
            (blo[0] >= self.lo[:, 0]) & (bhi[0] <= self.hi[:, 0]) & (blo[1] >= self.lo[:, 1]) & (bhi[1] <= self.hi[:, 1])
        )
        if len(inside) == 0 or self.exact[inside[0]]:
            return self.apply(X * s[0] + o[0], Y * s[1] + o[1], Z * s[2] + o[2])
        i = int(inside[0])
        c, h = (self.lo[i] + self.hi[i]) / 2.0, (self.hi[i] - self.lo[i]) / 2.0
        a = s / h
        b = (o - c) / h
        basis = np.empty((_TERMS, n))
        basis[0] = 1.0
        for k, col in enumerate((X, Y, Z)):
            np.multiply(col, a[k], out=basis[1 + k])
            basis[1 + k] += b[k]
        u, v, w = basis[1], basis[2], basis[3]
        np.multiply(u, u, out=basis[4])
        np.multiply(u, v, out=basis[5])
        np.multiply(v, v, out=basis[6])
        np.multiply(u, w, out=basis[7])
        np.multiply(v, w, out=basis[8])
        return self.coef[i] @ basis
