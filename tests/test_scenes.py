"""The built-in procedural scenes: registry, dataset export, and the sphere tracer's geometry and shading."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from fieldkit import scenes
from fieldkit.cameras import Cameras, look_at
from fieldkit.errors import FieldkitError
from fieldkit.scenes import tracer
from fieldkit.scenes.materials import Material, constant
from fieldkit.scenes.sdf import sphere

SMALL = dict(resolution=32, train_views=4, val_views=2, test_views=2)


@pytest.fixture(scope="module")
def small_export(tmp_path_factory):
    return scenes.export(scenes.DEFAULT_SCENE, tmp_path_factory.mktemp("export") / "tabletop", **SMALL)


def read_rgba(path) -> np.ndarray:
    image = Image.open(path)
    assert image.mode == "RGBA"
    return np.asarray(image)


def test_names_list_at_least_four_scenes_default_first():
    assert len(scenes.names()) >= 4
    assert scenes.names()[0] == scenes.DEFAULT_SCENE == "tabletop"
    for name in scenes.names():
        description = scenes.describe(name)
        assert description and "\n" not in description


@pytest.mark.parametrize("call", [scenes.describe, scenes.get, lambda name: scenes.export(name, "/nonexistent/x")])
def test_unknown_scene_names_the_known_ones(call):
    with pytest.raises(FieldkitError) as error:
        call("teapot")
    message = str(error.value)
    assert "teapot" in message and "\n" not in message
    assert all(name in message for name in scenes.names())


@pytest.mark.parametrize("name", scenes.names())
def test_scene_content_stays_inside_its_box(name):
    scene = scenes.get(name)
    low, high = (torch.tensor(corner) for corner in scene.bounds)
    grid = torch.linspace(0, 1, 41)
    u, v = (axis.reshape(-1) for axis in torch.meshgrid(grid, grid, indexing="ij"))
    faces = [low + torch.stack([u, v, torch.full_like(u, side)], dim=-1)[:, order] * (high - low)
             for side in (0.0, 1.0) for order in ([0, 1, 2], [2, 0, 1], [1, 2, 0])]
    assert scene.distance(torch.cat(faces)).min() > 0


def test_export_writes_the_blender_layout(small_export):
    for split, count in (("train", 4), ("val", 2), ("test", 2)):
        meta = json.loads((small_export / f"transforms_{split}.json").read_text())
        assert meta["camera_angle_x"] == pytest.approx(0.6911112070083618)
        assert meta["aabb"] == [[-1, -1, -1], [1, 1, 1]] and meta["scene"] == "tabletop"
        assert [frame["file_path"] for frame in meta["frames"]] == [f"./{split}/r_{i}" for i in range(count)]
        c2w = torch.tensor([frame["transform_matrix"] for frame in meta["frames"]])  # [C, 4, 4]
        rotation = c2w[:, :3, :3]
        assert torch.allclose(rotation @ rotation.transpose(1, 2), torch.eye(3).expand(count, 3, 3), atol=1e-5)
        assert torch.allclose(torch.linalg.det(rotation), torch.ones(count), atol=1e-5)
        assert torch.allclose(c2w[:, 3], torch.tensor([0.0, 0.0, 0.0, 1.0]))
        assert torch.allclose(c2w[:, :3, 3].norm(dim=-1), torch.full((count,), 4.0), atol=1e-4)
        assert (c2w[:, 2, 3] > 0).all(), "cameras sit in the upper hemisphere"
        # OpenGL axes: the camera looks down its -z, which must point at the origin
        assert torch.allclose(-c2w[:, :3, 2], -c2w[:, :3, 3] / 4.0, atol=1e-5)
        for i in range(count):
            rgba = read_rgba(small_export / split / f"r_{i}.png")
            assert rgba.shape == (32, 32, 4)
            covered = (rgba[..., 3] > 127).mean()
            assert 0.05 <= covered <= 0.8
            assert ((rgba[..., 3] > 0) & (rgba[..., 3] < 255)).any(), "edges are anti-aliased"
            assert (rgba[rgba[..., 3] == 0, :3] == 0).all()


def test_splits_see_different_views(small_export):
    def positions(split):
        meta = json.loads((small_export / f"transforms_{split}.json").read_text())
        return torch.tensor([frame["transform_matrix"] for frame in meta["frames"]])[:, :3, 3]

    assert not torch.allclose(positions("train")[:2], positions("test"))


def test_more_views_extend_the_same_camera_sequence():
    many = scenes.sample_poses(10, torch.Generator().manual_seed(7))
    assert torch.equal(many[:3], scenes.sample_poses(3, torch.Generator().manual_seed(7)))
    elevation = torch.rad2deg(torch.asin(many[:, 2, 3] / 4.0))
    assert ((elevation >= 5 - 1e-3) & (elevation <= 80 + 1e-3)).all()


def test_export_is_byte_identical_when_repeated(small_export, tmp_path):
    again = scenes.export(scenes.DEFAULT_SCENE, tmp_path / "again", **SMALL)
    first = sorted(path.relative_to(small_export) for path in small_export.rglob("*") if path.is_file())
    second = sorted(path.relative_to(again) for path in again.rglob("*") if path.is_file())
    assert first == second and len(first) == 11
    for relative in first:
        assert (small_export / relative).read_bytes() == (again / relative).read_bytes(), relative


def test_export_refuses_a_non_empty_directory(tmp_path):
    target = tmp_path / "taken"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(FieldkitError, match="not empty"):
        scenes.export("bowl", target, resolution=8, train_views=1, val_views=1, test_views=1)
    assert [path.name for path in tmp_path.iterdir()] == ["taken"], "no staging directory left behind"
    assert (target / "keep.txt").read_text() == "mine"


def test_export_fills_an_existing_empty_directory(tmp_path):
    (tmp_path / "empty").mkdir()
    scenes.export("glossy", tmp_path / "empty", resolution=8, train_views=1, val_views=1, test_views=1)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["empty"]
    assert (tmp_path / "empty" / "test" / "r_0.png").exists()


def test_cached_exports_once_per_key(tmp_path, monkeypatch):
    monkeypatch.setenv("FIELDKIT_CACHE", str(tmp_path))
    arguments = dict(resolution=8, train_views=1, val_views=1, test_views=1)
    path = scenes.cached("lattice", **arguments)
    assert path.is_relative_to(tmp_path) and (path / "transforms_train.json").exists()

    def no_export(*args, **kwargs):
        raise AssertionError("a cached dataset was exported again")

    monkeypatch.setattr(scenes, "export", no_export)
    assert scenes.cached("lattice", **arguments) == path
    with pytest.raises(AssertionError):
        scenes.cached("lattice", **{**arguments, "seed": 1})


def one_sphere_scene(center, radius, light) -> tracer.Scene:
    part = tracer.Part(sphere(center, radius), Material(constant((0.8, 0.8, 0.8)), specular=0.0))
    return tracer.Scene("a grey Lambertian sphere", (part,), lights=(tracer.Light(light, 1.0),), ambient=0.1)


def test_tracer_silhouette_and_lambert_shading_match_the_analytic_sphere():
    center, radius, distance, size = torch.tensor([0.5, 0.0, 0.25]), 0.5, 4.0, 64
    light = torch.tensor([0.3, -0.8, 0.5])
    light = light / light.norm()
    scene = one_sphere_scene(center.tolist(), radius, tuple(light.tolist()))
    # looking along +y at the origin: image x is world x and image up is world z
    cameras = Cameras.from_fov(look_at(torch.tensor([0.0, -distance, 0.0]), torch.zeros(3)), size, size,
                               scenes.CAMERA_ANGLE_X)
    image = tracer.render_rgba(scene, cameras, samples_per_axis=4)[0]  # [H, W, 4]
    alpha = image[..., 3]
    focal = float(cameras.fx[0])

    expected_radius = focal * math.tan(math.asin(radius / distance))  # pinhole image of the silhouette cone
    assert math.sqrt(float(alpha.sum()) / math.pi) == pytest.approx(expected_radius, abs=0.5)
    rows, columns = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    centroid_x, centroid_y = float((alpha * columns).sum() / alpha.sum()), float((alpha * rows).sum() / alpha.sum())
    assert centroid_x == pytest.approx(size / 2 + focal * float(center[0]) / distance, abs=0.5)
    assert centroid_y == pytest.approx(size / 2 - focal * float(center[2]) / distance, abs=0.5)

    brightness = torch.where(alpha == 1, image[..., 0], torch.zeros(()))  # [H, W]
    row, column = divmod(int(brightness.argmax()), size)
    origins, directions = cameras.generate_rays(torch.zeros(1, dtype=torch.long), torch.tensor([column + 0.5]),
                                                torch.tensor([row + 0.5]))
    depth, hit = tracer.trace(scene, origins, directions)
    normal = (origins + depth[:, None] * directions - center) / radius
    assert hit.all() and float(normal[0] @ light) > 0.98
    assert float(brightness.max()) == pytest.approx(0.8 * (0.1 + 1.0), abs=0.02)
    darkest = image[..., 0][alpha == 1].min()
    assert float(darkest) == pytest.approx(0.8 * 0.1, abs=0.01), "faces turned away keep the ambient light"
    # edge pixels store the covered sub-samples' mean colour, not one darkened by the coverage
    assert float(image[..., :3][(alpha > 0) & (alpha < 1)].min()) > 0.8 * 0.1 - 0.01


def test_glossy_scene_colour_depends_on_the_viewing_direction():
    scene = scenes.get("glossy")
    light = torch.tensor(scene.lights[0].direction)
    light = light / light.norm()
    origins = (4.0 * light)[None]  # [1, 3]
    direction = -light[None]
    depth, hit = tracer.trace(scene, origins, direction)
    assert hit.all()
    point = origins + depth[:, None] * direction  # [1, 3]
    normal = tracer.surface_normals(scene, point)[0]
    part = scene.parts[int(scene.nearest_part(point))]
    assert part.material.specular >= 0.5 and float(normal @ light) > 0.2
    # the mirror direction of the light about the normal catches the full highlight
    mirror_view = (light - 2 * (normal @ light) * normal)[None]
    head_on, mirrored = tracer.shade(scene, point, direction), tracer.shade(scene, point, mirror_view)
    assert (mirrored - head_on).abs().max() > 0.2

    matte = tracer.Scene(scene.description, tuple(
        tracer.Part(p.shape, Material(p.material.albedo, 0.0), p.to_local) for p in scene.parts), scene.lights)
    assert torch.allclose(tracer.shade(matte, point, direction), tracer.shade(matte, point, mirror_view))


@pytest.mark.parametrize("shape", ["cone", "pyramid"])
def test_cone_and_pyramid_distances_are_safe_lower_bounds(shape):
    """Sphere tracing needs |f(p)| <= true distance: a step of f(p) must never cross the surface.

    Checked against brute force: the distance to the nearest of many surface points found by
    bisection along random rays from inside."""
    from fieldkit.scenes.sdf import cone, pyramid

    sdf = cone((0.0, 0.0, 0.0), 0.5, 1.0) if shape == "cone" else pyramid((0.0, 0.0, 0.0), 0.5, 0.9)
    generator = torch.Generator().manual_seed(0)
    inside_point = torch.tensor([0.0, 0.0, 0.2])
    directions = torch.nn.functional.normalize(torch.randn(4000, 3, generator=generator), dim=-1)
    low, high = torch.zeros(4000), torch.full((4000,), 2.0)
    for _ in range(40):  # bisection for the boundary crossing along each ray
        middle = (low + high) / 2
        outside = sdf(inside_point + middle[:, None] * directions) > 0
        low, high = torch.where(outside, low, middle), torch.where(outside, middle, high)
    surface = inside_point + low[:, None] * directions  # [4000, 3]
    probes = torch.rand(3000, 3, generator=generator) * 2.4 - 1.2
    true_distance = torch.cdist(probes, surface).min(dim=1).values
    estimate = sdf(probes)
    assert (estimate.abs() <= true_distance + 0.01).all()
    assert (estimate[estimate > 0] > 0.3 * true_distance[estimate > 0] - 0.01).all()  # and not uselessly small
