"""Planning analyses over a city's surface model: sunlight, shadow, line of sight, viewshed,
skyline, height limit and flood (see :mod:`cim.analysis.model` for the model,
:mod:`cim.analysis.files` for its files, and
:mod:`cim.analysis.service` for the JSON requests the API and the CLI share)."""

from __future__ import annotations

from cim.analysis.files import build_model, load_model
from cim.analysis.model import SurfaceModel

__all__ = ["SurfaceModel", "build_model", "load_model"]
