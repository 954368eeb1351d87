"""Splats as binary glTF with KHR_gaussian_splatting: the container, the extension's attributes
read back against the splats, colour by the extension's own SH formula, and the point-cloud
fallback that a viewer without the extension shows."""
from __future__ import annotations

import json
import math
import struct

import numpy as np
import pytest
import torch
import trimesh

from fieldkit.errors import FieldkitError
from fieldkit.gaussians import Splats
from fieldkit.gaussians.files import save_splats
from fieldkit.gaussians.model import sh_colours

EXT = "KHR_gaussian_splatting"
TYPES = {"SCALAR": 1, "VEC3": 3, "VEC4": 4}
# the extension's README, "Calculating color from Spherical Harmonics": basis functions of unit (x, y, z)
SPEC_BASIS = [
    lambda x, y, z: 0.2820947917738781 + 0 * x,
    lambda x, y, z: -0.4886025119029199 * y, lambda x, y, z: 0.4886025119029199 * z,
    lambda x, y, z: -0.4886025119029199 * x,
    lambda x, y, z: 1.092548430592079 * x * y, lambda x, y, z: -1.092548430592079 * y * z,
    lambda x, y, z: 0.3153915652525200 * (2 * z * z - x * x - y * y), lambda x, y, z: -1.092548430592079 * x * z,
    lambda x, y, z: 0.5462742152960395 * (x * x - y * y),
    lambda x, y, z: -0.5900435899266435 * y * (3 * x * x - y * y), lambda x, y, z: 2.890611442640554 * x * y * z,
    lambda x, y, z: -0.4570457994644657 * y * (4 * z * z - x * x - y * y),
    lambda x, y, z: 0.3731763325901154 * z * (2 * z * z - 3 * x * x - 3 * y * y),
    lambda x, y, z: -0.4570457994644657 * x * (4 * z * z - x * x - y * y),
    lambda x, y, z: 1.445305721320277 * z * (x * x - y * y), lambda x, y, z: -0.5900435899266435 * x * (x * x - 3 * y * y),
]


def read_glb(path) -> tuple[dict, dict[str, np.ndarray]]:
    """A GLB's JSON and its first primitive's attributes, parsed from the container by hand."""
    data = path.read_bytes()
    magic, version, length = struct.unpack_from("<III", data)
    assert (magic, version, length) == (0x46546C67, 2, len(data))
    json_length, json_type = struct.unpack_from("<II", data, 12)
    assert json_type == 0x4E4F534A and json_length % 4 == 0
    document = json.loads(data[20:20 + json_length])
    bin_length, bin_type = struct.unpack_from("<II", data, 20 + json_length)
    assert bin_type == 0x004E4942 and bin_length % 4 == 0
    blob = data[28 + json_length:28 + json_length + bin_length]
    attributes = {}
    for name, index in document["meshes"][0]["primitives"][0]["attributes"].items():
        accessor = document["accessors"][index]
        view = document["bufferViews"][accessor["bufferView"]]
        assert accessor["componentType"] == 5126
        values = np.frombuffer(blob, "<f4", accessor["count"] * TYPES[accessor["type"]], view["byteOffset"])
        attributes[name] = values.reshape(accessor["count"], TYPES[accessor["type"]])
    return document, attributes


@pytest.fixture
def splats() -> Splats:
    generator = torch.Generator().manual_seed(3)
    count = 200

    def normal(*shape, scale=1.0):
        return torch.randn(*shape, generator=generator) * scale

    return Splats(normal(count, 3), normal(count, 3, scale=0.5) - 3, normal(count, 4), normal(count),
                  normal(count, 3), normal(count, 15, 3, scale=0.2))


def test_splats_glb_holds_the_extension_attributes(splats, tmp_path):
    path = tmp_path / "splats.glb"
    save_splats(splats, path)
    document, attributes = read_glb(path)
    primitive = document["meshes"][0]["primitives"][0]
    assert primitive["mode"] == 0 and EXT in document["extensionsUsed"]
    assert primitive["extensions"][EXT]["kernel"] == "ellipse"
    assert primitive["extensions"][EXT]["colorSpace"] == "srgb_rec709_display"
    sh_names = {f"{EXT}:SH_DEGREE_{degree}_COEF_{n}" for degree in range(4) for n in range(2 * degree + 1)}
    assert set(attributes) == {"POSITION", "COLOR_0", f"{EXT}:ROTATION", f"{EXT}:SCALE", f"{EXT}:OPACITY"} | sh_names
    position = document["accessors"][primitive["attributes"]["POSITION"]]
    assert np.allclose(position["min"], splats.means.detach().amin(0).numpy())
    with torch.no_grad():
        w, x, y, z = torch.nn.functional.normalize(splats.quaternions, dim=-1).T
        expected = {"POSITION": splats.means, f"{EXT}:SCALE": splats.log_scales,
                    f"{EXT}:OPACITY": torch.sigmoid(splats.opacity_logits)[:, None],
                    f"{EXT}:ROTATION": torch.stack([x, y, z, w], -1), f"{EXT}:SH_DEGREE_0_COEF_0": splats.sh_dc,
                    f"{EXT}:SH_DEGREE_2_COEF_4": splats.sh_rest[:, 7], f"{EXT}:SH_DEGREE_3_COEF_6": splats.sh_rest[:, 14]}
    for name, values in expected.items():
        assert np.allclose(attributes[name], values.detach().numpy(), atol=1e-6), name
    # the node turns fieldkit's z-up world into glTF's y-up one
    assert np.allclose(document["nodes"][0]["rotation"], [-math.sqrt(0.5), 0, 0, math.sqrt(0.5)])


def test_the_extension_colours_the_splats_as_fieldkit_does(splats, tmp_path):
    path = tmp_path / "splats.glb"
    save_splats(splats, path)
    _, attributes = read_glb(path)
    direction = torch.nn.functional.normalize(torch.tensor([0.3, -0.5, 0.8]), dim=0)
    x, y, z = direction.tolist()
    coefficients = [attributes[f"{EXT}:SH_DEGREE_{math.isqrt(b)}_COEF_{b - math.isqrt(b) ** 2}"] for b in range(16)]
    spec = sum(basis(x, y, z) * values for basis, values in zip(SPEC_BASIS, coefficients)) + 0.5  # [N, 3]
    ours = sh_colours(splats.sh_dc, splats.sh_rest, 3, direction.expand(1, len(splats), 3))[0]
    # fieldkit clamps negative colours as 3DGS's rasterizer does
    assert np.allclose(np.maximum(spec, 0), ours.detach().numpy(), atol=1e-5)


def test_a_viewer_without_the_extension_sees_coloured_points(splats, tmp_path):
    path = tmp_path / "splats.glb"
    save_splats(splats, path)
    scene = trimesh.load(path)
    (cloud,) = scene.geometry.values()
    assert isinstance(cloud, trimesh.PointCloud) and len(cloud.vertices) == len(splats)
    diffuse = (0.28209479177387814 * splats.sh_dc.detach() + 0.5).clamp(0, 1).numpy()
    assert np.abs(cloud.colors[:, :3] / 255.0 - diffuse).max() < 1 / 255 + 1e-6
    # shown upright: the world's z axis is the viewer's y axis
    world = scene.dump(concatenate=True) if hasattr(scene, "dump") else cloud
    assert np.allclose(np.asarray(world.vertices)[:, 1], splats.means.detach().numpy()[:, 2], atol=1e-5)


def test_only_known_splat_suffixes_are_written(splats, tmp_path):
    with pytest.raises(FieldkitError, match=".glb"):
        save_splats(splats, tmp_path / "splats.gltf")
