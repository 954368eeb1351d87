"""Splats to binary glTF (`.glb`) with the KHR_gaussian_splatting extension.

The splats are one POINTS primitive: POSITION and COLOR_0 (the diffuse colour and opacity), which
any glTF viewer shows as a coloured point cloud, and the extension's attributes, which a splat
viewer renders: ROTATION (unit xyzw quaternion), SCALE (log-space, as the extension's ellipse
kernel stores it), OPACITY (after the sigmoid) and the SH coefficients SH_DEGREE_l_COEF_n (RGB,
fieldkit's and the extension's SH bases being the same, Condon-Shortley phase included).
fieldkit's world is z-up and glTF's y-up: the data keep fieldkit's axes and the node turns them.
"""
from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np
import torch

from fieldkit.atomic import write_bytes
from fieldkit.gaussians.model import Splats

EXTENSION = "KHR_gaussian_splatting"
FLOAT, POINTS = 5126, 0  # glTF's componentType for float32 and its primitive mode for points
ACCESSOR_TYPES = {1: "SCALAR", 3: "VEC3", 4: "VEC4"}
Z_UP_TO_Y_UP = [-math.sqrt(0.5), 0.0, 0.0, math.sqrt(0.5)]  # xyzw: -90 degrees about x
GLB_MAGIC, GLB_VERSION, JSON_CHUNK, BIN_CHUNK = 0x46546C67, 2, 0x4E4F534A, 0x004E4942


def splat_attributes(splats: Splats) -> dict[str, np.ndarray]:
    """The primitive's attributes, name -> float32 [N, C]."""
    with torch.no_grad():
        opacity = torch.sigmoid(splats.opacity_logits)[:, None]
        diffuse = splats.base_colours()
        w, x, y, z = torch.nn.functional.normalize(splats.quaternions, dim=-1).unbind(-1)
        attributes = {"POSITION": splats.means, "COLOR_0": torch.cat([diffuse, opacity], dim=-1),
                      f"{EXTENSION}:ROTATION": torch.stack([x, y, z, w], dim=-1),
                      f"{EXTENSION}:SCALE": splats.log_scales, f"{EXTENSION}:OPACITY": opacity,
                      f"{EXTENSION}:SH_DEGREE_0_COEF_0": splats.sh_dc}
        for index in range(splats.sh_rest.shape[1]):  # basis function index + 1 = degree^2 + degree + order
            degree = math.isqrt(index + 1)
            attributes[f"{EXTENSION}:SH_DEGREE_{degree}_COEF_{index + 1 - degree * degree}"] = splats.sh_rest[:, index]
        return {name: value.detach().cpu().numpy().astype("<f4") for name, value in attributes.items()}


def gltf_document(attributes: dict[str, np.ndarray]) -> tuple[dict, bytes]:
    """The glTF JSON and its binary buffer: one buffer view and accessor per attribute."""
    views, accessors, blob, indices = [], [], bytearray(), {}
    for name, values in attributes.items():
        accessor = {"bufferView": len(views), "componentType": FLOAT, "count": int(values.shape[0]),
                    "type": ACCESSOR_TYPES[values.shape[1]]}
        if name == "POSITION":  # glTF requires the bounds of positions
            accessor |= {"min": values.min(axis=0).tolist(), "max": values.max(axis=0).tolist()}
        views.append({"buffer": 0, "byteOffset": len(blob), "byteLength": values.nbytes})
        indices[name] = len(accessors)
        accessors.append(accessor)
        blob += values.tobytes()
    primitive = {"attributes": indices, "mode": POINTS,
                 "extensions": {EXTENSION: {"kernel": "ellipse", "colorSpace": "srgb_rec709_display",
                                            "projection": "perspective", "sortingMethod": "cameraDistance"}}}
    document = {"asset": {"version": "2.0", "generator": "fieldkit"}, "extensionsUsed": [EXTENSION],
                "scene": 0, "scenes": [{"nodes": [0]}],
                "nodes": [{"mesh": 0, "name": "splats", "rotation": Z_UP_TO_Y_UP}],
                "meshes": [{"primitives": [primitive]}], "buffers": [{"byteLength": len(blob)}],
                "bufferViews": views, "accessors": accessors}
    return document, bytes(blob)


def glb_bytes(document: dict, blob: bytes) -> bytes:
    """The binary glTF container: a header, the JSON chunk (space-padded) and the BIN chunk."""
    text = json.dumps(document, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 4)
    blob += b"\0" * (-len(blob) % 4)
    chunks = struct.pack("<II", len(text), JSON_CHUNK) + text + struct.pack("<II", len(blob), BIN_CHUNK) + blob
    return struct.pack("<III", GLB_MAGIC, GLB_VERSION, 12 + len(chunks)) + chunks


def write_glb(splats: Splats, path: str | Path) -> None:
    """Writes `path` atomically (see the module's docstring)."""
    write_bytes(path, glb_bytes(*gltf_document(splat_attributes(splats))))
