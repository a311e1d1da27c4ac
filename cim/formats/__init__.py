"""Encoders: GLB (glTF 2.0 binary) with 3D Tiles metadata extensions, tileset.json."""

__all__: list[str] = []
