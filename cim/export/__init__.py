"""Exports of a built layer to other formats (``cim export``): I3S scene layer packages."""

from __future__ import annotations
