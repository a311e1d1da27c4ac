"""Pure numpy kernels: arrays in, arrays out. No file, network or pyproj object creation here."""

__all__: list[str] = []
