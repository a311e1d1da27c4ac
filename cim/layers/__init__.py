"""Layer builders: read a source, run kernels and tiling, write a layer's tiles through the store."""

__all__: list[str] = []
