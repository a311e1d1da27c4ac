"""Readers: one a format. Each turns a file into numpy arrays and nothing else."""

__all__: list[str] = []
