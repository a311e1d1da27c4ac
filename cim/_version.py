"""The package version, in a module of its own so that modules inside ``cim`` can read it
without importing the ``cim`` package (which lazily imports them)."""

__all__ = ["__version__"]

__version__ = "0.1.0"
