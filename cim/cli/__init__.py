"""The ``cim`` command: a thin click layer over the library."""

__all__: list[str] = []
