"""Packaging of the viewer with the library: the metadata lives in pyproject.toml.

The web viewer (``viewer/``: its ES modules, page and styles, and the built CesiumJS that
``npm ci`` installs under ``viewer/node_modules/cesium/Build/Cesium``) is copied into the
package as ``cim/viewer/`` when a wheel is built, so ``pip install .`` outside the checkout
gives a ``cim serve`` with a working viewer. An editable install serves ``viewer/`` in place.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

VIEWER = Path(__file__).resolve().parent / "viewer"
#: what the viewer needs at run time (its tooling and type declarations stay behind)
VIEWER_FILES = ("index.html", "compare.html", "config.js", "main.js", "compare.js", "style.css", "js", "i18n")
CESIUM = Path("node_modules", "cesium", "Build", "Cesium")
#: the other browser libraries' files the viewer loads (served under /vendor/, cim/server/vendor.py)
VENDOR_FILES = (Path("node_modules", "echarts", "dist", "echarts.esm.min.mjs"),)


class BuildWithViewer(build_py):
    """build_py that also copies the viewer into the built package (not for editable installs)."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "cim" / "viewer"
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        for name in VIEWER_FILES:
            src = VIEWER / name
            if src.is_dir():
                shutil.copytree(src, target / name)
            elif src.exists():
                shutil.copy2(src, target / name)
        for rel in VENDOR_FILES:
            if (VIEWER / rel).is_file():
                (target / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(VIEWER / rel, target / rel)
            else:
                self.warn(f"{VIEWER / rel} is missing (run `npm ci` in viewer/ first)")
        cesium = VIEWER / CESIUM
        if (cesium / "Cesium.js").is_file():
            shutil.copytree(cesium, target / CESIUM)
        else:
            self.warn(f"{cesium} is missing (run `npm ci` in viewer/ first): the installed viewer will have no CesiumJS")


setup(cmdclass={"build_py": BuildWithViewer})
