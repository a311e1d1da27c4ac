"""Tiling: plan tile trees and levels of detail (pure functions, no I/O)."""

__all__: list[str] = []
