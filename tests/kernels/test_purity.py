import subprocess
import sys


def test_kernels_import_no_io_library():
    """cim.kernels is pure numpy: importing every kernel pulls in no I/O or projection library."""
    code = (
        "import sys, pkgutil, importlib, cim.kernels as k\n"
        "[importlib.import_module(m.name) for m in pkgutil.walk_packages(k.__path__, 'cim.kernels.')]\n"
        "bad = [m for m in ('rasterio', 'pyogrio', 'pyproj', 'aiohttp', 'laspy', 'osgeo') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"cim.kernels imported {out}"
