"""Colour kernels: the sRGB display values sources give, and the linear values glTF stores.

LAS RGB, IFC surface colours and cim's own material colours are sRGB (what a screen shows);
glTF 2.0 defines ``COLOR_0`` and ``baseColorFactor`` as linear values, which a client turns back
into sRGB when it draws. The transfer functions are the exact piecewise ones of IEC 61966-2-1.
Alpha is not gamma-encoded: no function here touches it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["srgb_to_linear", "linear_to_srgb", "SRGB8_TO_LINEAR16"]


def srgb_to_linear(c: np.ndarray | float) -> np.ndarray:
    """The sRGB EOTF: display values to linear light.

    Parameters
    ----------
    c : float or (...) float array, sRGB values in [0, 1]

    Returns
    -------
    (...) float64, ``c / 12.92`` up to 0.04045, else ``((c + 0.055) / 1.055) ** 2.4``.
    """
    c = np.asarray(c, dtype=np.float64)
    return np.where(c <= 0.04045, c / 12.92, ((np.maximum(c, 0.04045) + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(v: np.ndarray | float) -> np.ndarray:
    """The inverse of :func:`srgb_to_linear`: linear light to sRGB display values.

    Parameters
    ----------
    v : float or (...) float array, linear values in [0, 1]

    Returns
    -------
    (...) float64, ``12.92 v`` up to 0.0031308, else ``1.055 v ** (1 / 2.4) - 0.055``.
    """
    v = np.asarray(v, dtype=np.float64)
    return np.where(v <= 0.0031308, v * 12.92, 1.055 * np.maximum(v, 0.0031308) ** (1.0 / 2.4) - 0.055)


#: (256,) uint16: 8-bit sRGB level → the linear value as a normalized 16-bit integer, rounded.
#: Strictly increasing (the 256 levels stay 256 values), so the nearest entry, or
#: ``round(linear_to_srgb(v / 65535) * 255)``, gives the level back.
SRGB8_TO_LINEAR16: np.ndarray = np.round(srgb_to_linear(np.arange(256) / 255.0) * 65535.0).astype(np.uint16)
SRGB8_TO_LINEAR16.flags.writeable = False
