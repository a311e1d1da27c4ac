"""Compiled (numba) loops of :mod:`cim.kernels.frames`, in their own module so that importing
the frames (as the BIM geometry process and the server do) does not import numba, a heavy import.
It depends on the ellipsoid only, not on the frames, which import it when first used."""

from __future__ import annotations

import numpy as np
from numba import njit

from cim.kernels.ellipsoid import WGS84_A, WGS84_E2

__all__ = ["ground_and_up"]


@njit(cache=True, nogil=True)
def ground_and_up(lon, lat, rot, origin, ground, up):
    for i in range(len(lon)):
        lam = np.radians(lon[i])
        phi = np.radians(lat[i])
        sp, cp, sl, cl = np.sin(phi), np.cos(phi), np.sin(lam), np.cos(lam)
        n = WGS84_A / np.sqrt(1.0 - WGS84_E2 * sp * sp)
        x = n * cp * cl - origin[0]
        y = n * cp * sl - origin[1]
        z = n * (1.0 - WGS84_E2) * sp - origin[2]
        ux, uy, uz = cp * cl, cp * sl, sp
        for k in range(3):
            ground[i, k] = rot[k, 0] * x + rot[k, 1] * y + rot[k, 2] * z
            up[i, k] = rot[k, 0] * ux + rot[k, 1] * uy + rot[k, 2] * uz
