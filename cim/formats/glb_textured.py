"""GLB of textured triangle meshes (reality meshes): one primitive a material, textures embedded.

Materials are unlit (``KHR_materials_unlit``): a photogrammetry texture already holds the light
of the day it was taken, and shading it again would darken the side facing away from the
viewer's sun. The base colour texture is sRGB-encoded, as glTF defines it; WebP images go
through ``EXT_texture_webp`` (required: CesiumJS, three.js and the Khronos validator know it),
PNG and JPEG are core glTF. No normals are written (an unlit material needs none).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cim.formats.glb import (
    ELEMENT_ARRAY_BUFFER,
    FLOAT,
    TRIANGLES,
    UNSIGNED_INT,
    UNSIGNED_SHORT,
    GltfBuilder,
    base_color_factor,
    read_accessor,
    read_glb,
)

__all__ = ["TexturedPrimitive", "MIME_TYPES", "encode_textured_mesh", "read_textured_glb"]

MIME_TYPES = {"webp": "image/webp", "png": "image/png", "jpeg": "image/jpeg"}
REPEAT, CLAMP_TO_EDGE, LINEAR, LINEAR_MIPMAP_LINEAR = 10497, 33071, 9729, 9987


@dataclass
class TexturedPrimitive:
    """One primitive.

    Attributes
    ----------
    positions : (v, 3) float32, glTF axes (y up), relative to the node's translation
    triangles : (t, 3) int
    uv : (v, 2) float32 glTF texture coordinates (origin top left), or None
    color : sRGB display colour and alpha in [0, 1] (multiplies the texture)
    image : the encoded texture (``image_format`` bytes), or None
    image_format : ``webp``, ``png`` or ``jpeg``
    clamp : clamp texture coordinates to the edge (atlases) instead of repeating them
    """

    positions: np.ndarray
    triangles: np.ndarray
    uv: np.ndarray | None = None
    color: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    image: bytes | None = None
    image_format: str = "webp"
    clamp: bool = False
    name: str = ""


def encode_textured_mesh(primitives: list[TexturedPrimitive], translation: np.ndarray) -> bytes:
    """A GLB of one mesh with one primitive per :class:`TexturedPrimitive` and one node at
    ``translation`` ((3,) float64, glTF axes)."""
    b = GltfBuilder()
    prims: list[dict] = []
    materials: list[dict] = []
    textures: list[dict] = []
    images: list[dict] = []
    samplers: list[dict] = []
    sampler_of: dict[bool, int] = {}
    for p in primitives:
        pos = np.ascontiguousarray(p.positions, dtype=np.float32)
        idx = np.asarray(p.triangles).reshape(-1)
        wide = len(pos) >= 65536
        a_idx = b.accessor(
            idx.astype(np.uint32 if wide else np.uint16), UNSIGNED_INT if wide else UNSIGNED_SHORT, "SCALAR", target=ELEMENT_ARRAY_BUFFER
        )
        a_pos = b.accessor(pos, FLOAT, "VEC3", min_max=True)
        attributes = {"POSITION": a_pos}
        pbr: dict = {"baseColorFactor": base_color_factor(p.color), "metallicFactor": 0.0, "roughnessFactor": 1.0}
        if p.image is not None and p.uv is not None:
            attributes["TEXCOORD_0"] = b.accessor(np.ascontiguousarray(p.uv, dtype=np.float32), FLOAT, "VEC2")
            if p.clamp not in sampler_of:
                wrap = CLAMP_TO_EDGE if p.clamp else REPEAT
                sampler_of[p.clamp] = len(samplers)
                samplers.append({"magFilter": LINEAR, "minFilter": LINEAR_MIPMAP_LINEAR, "wrapS": wrap, "wrapT": wrap})
            view = b.buffer_view(p.image)
            images.append({"bufferView": view, "mimeType": MIME_TYPES[p.image_format]})
            texture: dict = {"sampler": sampler_of[p.clamp]}
            if p.image_format == "webp":
                texture["extensions"] = {"EXT_texture_webp": {"source": len(images) - 1}}
                b.use_extension("EXT_texture_webp", required=True)
            else:
                texture["source"] = len(images) - 1
            textures.append(texture)
            pbr["baseColorTexture"] = {"index": len(textures) - 1}
        material: dict = {"pbrMetallicRoughness": pbr, "extensions": {"KHR_materials_unlit": {}}, "doubleSided": True}
        if p.name:
            material = {"name": p.name, **material}
        materials.append(material)
        prims.append({"attributes": attributes, "indices": a_idx, "material": len(materials) - 1, "mode": TRIANGLES})
    b.use_extension("KHR_materials_unlit")
    b.json["materials"] = materials
    if textures:
        b.json["samplers"] = samplers
        b.json["images"] = images
        b.json["textures"] = textures
    b.json["meshes"] = [{"primitives": prims}]
    b.json["nodes"] = [{"mesh": 0, "translation": [float(x) for x in translation]}]
    b.json["scenes"] = [{"nodes": [0]}]
    b.json["scene"] = 0
    return b.to_glb()


def read_textured_glb(data: bytes) -> tuple[np.ndarray, list[TexturedPrimitive]]:
    """The node translation and the primitives of a GLB :func:`encode_textured_mesh` wrote (the
    images as their encoded bytes)."""
    doc, bin_chunk = read_glb(data)
    translation = np.asarray(doc["nodes"][0].get("translation", [0.0, 0.0, 0.0]), dtype=np.float64)
    out = []
    for prim in doc["meshes"][0]["primitives"]:
        pos = read_accessor(doc, bin_chunk, prim["attributes"]["POSITION"]).astype(np.float32)
        tri = read_accessor(doc, bin_chunk, prim["indices"]).astype(np.int64).reshape(-1, 3)
        material = doc["materials"][prim["material"]]
        pbr = material["pbrMetallicRoughness"]
        from cim.kernels.color import linear_to_srgb

        factor = pbr.get("baseColorFactor", [1.0, 1.0, 1.0, 1.0])
        rgb = linear_to_srgb(np.asarray(factor[:3], dtype=np.float64))
        color = (float(rgb[0]), float(rgb[1]), float(rgb[2]), float(factor[3]))
        uv = image = None
        fmt, clamp = "webp", False
        if "baseColorTexture" in pbr:
            uv = read_accessor(doc, bin_chunk, prim["attributes"]["TEXCOORD_0"]).astype(np.float32)
            tex = doc["textures"][pbr["baseColorTexture"]["index"]]
            source = tex["extensions"]["EXT_texture_webp"]["source"] if "extensions" in tex else tex["source"]
            img = doc["images"][source]
            view = doc["bufferViews"][img["bufferView"]]
            image = bin_chunk[view.get("byteOffset", 0) : view.get("byteOffset", 0) + view["byteLength"]]
            fmt = {v: k for k, v in MIME_TYPES.items()}[img["mimeType"]]
            clamp = doc["samplers"][tex["sampler"]].get("wrapS") == CLAMP_TO_EDGE
        out.append(TexturedPrimitive(pos, tri, uv, color, image, fmt, clamp, material.get("name", "")))
    return translation, out
