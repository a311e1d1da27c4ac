"""Colours as glTF defines them: the sRGB transfer function, its 16-bit table, material factors."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from cim.formats.glb import CHUNK_BIN, CHUNK_JSON, GLB_MAGIC, base_color_factor, read_accessor, read_glb
from cim.kernels.color import SRGB8_TO_LINEAR16, linear_to_srgb, srgb_to_linear


@pytest.mark.parametrize(
    "srgb, linear",
    [(0.0, 0.0), (0.04045, 0.04045 / 12.92), (0.5, 0.214041), (128 / 255, 0.215861), (0.86, 0.710566), (1.0, 1.0)],
)
def test_srgb_to_linear_known_values(srgb, linear):
    assert float(srgb_to_linear(srgb)) == pytest.approx(linear, abs=1e-6)
    assert float(linear_to_srgb(linear)) == pytest.approx(srgb, abs=1e-6)


def test_transfer_functions_are_continuous_monotonic_inverses():
    c = np.linspace(0.0, 1.0, 100_001)
    v = srgb_to_linear(c)
    assert (np.diff(v) > 0).all()
    # inverses up to the standard's rounded thresholds (0.04045 and 0.0031308 miss by 3e-8)
    np.testing.assert_allclose(linear_to_srgb(v), c, atol=1e-7, rtol=0)
    # the two pieces meet at the threshold
    assert float(srgb_to_linear(0.04045 - 1e-12)) == pytest.approx(float(srgb_to_linear(0.04045 + 1e-12)), abs=1e-7)


def test_sixteen_bit_table_keeps_every_level_apart():
    """Every 8-bit sRGB level keeps its own 16-bit linear value (8 bits would keep 183 of 256)
    and comes back from it; the table is the rounded transfer function."""
    levels = np.arange(256)
    assert SRGB8_TO_LINEAR16.dtype == np.uint16 and (np.diff(SRGB8_TO_LINEAR16.astype(int)) > 0).all()
    np.testing.assert_array_equal(SRGB8_TO_LINEAR16, np.round(srgb_to_linear(levels / 255.0) * 65535))
    back = np.round(linear_to_srgb(SRGB8_TO_LINEAR16 / 65535.0) * 255.0)
    np.testing.assert_array_equal(back, levels)
    assert len(np.unique(np.round(srgb_to_linear(levels / 255.0) * 255.0))) == 183
    assert not SRGB8_TO_LINEAR16.flags.writeable


def test_base_color_factor_is_linear_rgb_and_alpha_as_given():
    assert base_color_factor((0.5, 1.0, 0.0, 0.3)) == [0.214041, 1.0, 0.0, 0.3]


def _glb(doc: dict, binary: bytes) -> bytes:
    js = json.dumps(doc).encode()
    js += b" " * (-len(js) % 4)
    binary += b"\0" * (-len(binary) % 4)
    total = 12 + 8 + len(js) + 8 + len(binary)
    return (
        struct.pack("<III", GLB_MAGIC, 2, total)
        + struct.pack("<II", len(js), CHUNK_JSON)
        + js
        + struct.pack("<II", len(binary), CHUNK_BIN)
        + binary
    )


def test_read_accessor_reads_an_interleaved_accessor_that_ends_before_the_last_stride():
    """An accessor at a byte offset inside an interleaved view ends (stride - offset - size)
    bytes before the view does: reading it must not ask for bytes past the buffer."""
    rows = np.zeros((3, 8), dtype=np.uint8)
    rows[:, 4:6] = np.array([[1, 0], [2, 0], [0, 1]], dtype=np.uint8)  # uint16 1, 2, 256 at byte 4
    data = rows.tobytes()[:-2]  # the view stops where the last element does
    doc = {
        "asset": {"version": "2.0"},
        "buffers": [{"byteLength": len(data)}],
        "bufferViews": [{"buffer": 0, "byteLength": len(data), "byteStride": 8}],
        "accessors": [{"bufferView": 0, "byteOffset": 4, "componentType": 5123, "count": 3, "type": "SCALAR"}],
    }
    parsed, binary = read_glb(_glb(doc, data))
    np.testing.assert_array_equal(read_accessor(parsed, binary[: len(data)], 0), [1, 2, 256])
