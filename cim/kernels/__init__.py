"""Pure numpy kernels: arrays in, arrays out. No file, network or pyproj object creation here."""

from typing import TypedDict

__all__: list[str] = ["JitOptions"]


class JitOptions(TypedDict, total=False):
    """The numba options a module gives all its kernels, ``@njit(**JIT)``: typed, so that the
    call matches numba's ``njit`` overloads and a kernel keeps its signature for mypy."""

    nogil: bool
    cache: bool
