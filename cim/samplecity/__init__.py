"""The synthetic Tianshui sample city (see :func:`cim.samplecity.generate.sample`)."""

from cim.samplecity.generate import PRESETS, SampleCity, sample

__all__ = ["PRESETS", "SampleCity", "sample"]
