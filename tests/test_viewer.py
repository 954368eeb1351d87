"""The viewer's parts without a browser: cameras, compositing, placement, assets, CLI options."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fieldkit.cameras import Cameras, look_at
from fieldkit.errors import FieldkitError
from fieldkit.render.volume import RenderOutput
from fieldkit.viewer.cameras import camera_from_view, ray_to_z_depth, view_from_camera
from fieldkit.viewer.render import Layers, composite


def viser_rotation(c2w: torch.Tensor) -> np.ndarray:
    """wxyz of an OpenGL camera-to-world, in viser's OpenCV camera axes (y and z flipped)."""
    import viser.transforms as vtf

    return vtf.SO3.from_matrix(c2w[:3, :3].double().numpy() @ np.diag([1.0, -1.0, -1.0])).wxyz


def test_browser_camera_round_trips_and_looks_where_viser_looks():
    c2w = look_at(torch.tensor([[2.0, -3.0, 1.5]]), torch.zeros(3))[0]
    wxyz = viser_rotation(c2w)
    camera = camera_from_view(wxyz, c2w[:3, 3].numpy(), fov=0.8, aspect=1.5, height=40)
    assert (int(camera.width[0]), int(camera.height[0])) == (60, 40)
    assert torch.allclose(camera.c2w[0], c2w, atol=1e-5)
    view = view_from_camera(camera, 0)
    assert math.isclose(view["fov"], 0.8, rel_tol=1e-5) and math.isclose(view["aspect"], 1.5)
    assert np.allclose(np.abs(view["wxyz"]), np.abs(wxyz), atol=1e-5)


def test_z_depth_is_the_ray_distance_at_the_centre_and_less_off_axis():
    camera = camera_from_view((1.0, 0, 0, 0), (0, 0, 0), fov=1.2, aspect=1.0, height=9)
    z = ray_to_z_depth(torch.full((9, 9), 2.0), camera)
    assert math.isclose(float(z[4, 4]), 2.0, rel_tol=1e-5)
    assert float(z[0, 0]) < 1.9


def test_compositing_puts_the_nearer_field_in_front():
    height, width = 2, 4
    red = torch.zeros(height, width, 3)
    red[:, :2] = torch.tensor([1.0, 0, 0])  # premultiplied: opaque red on the left half only
    green = torch.tensor([0, 1.0, 0]).expand(height, width, 3)
    alpha = torch.stack([(torch.arange(width) < 2).float().expand(height, width), torch.ones(height, width)])
    depth = torch.stack([torch.full((height, width), 1.0), torch.full((height, width), 3.0)])
    rgb, coverage, z = composite(Layers(torch.stack([green, red]).flip(0), alpha, depth), torch.ones(3))
    assert torch.allclose(rgb[:, :2], torch.tensor([1.0, 0, 0]).expand(height, 2, 3))
    assert torch.allclose(rgb[:, 2:], torch.tensor([0, 1.0, 0]).expand(height, 2, 3))
    assert torch.allclose(coverage, torch.ones(height, width))
    assert torch.allclose(z[:, :2], torch.ones(height, 2)) and torch.allclose(z[:, 2:], torch.full((height, 2), 3.0))


def test_compared_assets_sit_side_by_side_without_overlap():
    from fieldkit.viewer.assets import ViewAsset
    from fieldkit.viewer.demo import box_mesh
    from fieldkit.viewer.scene import place_side_by_side

    boxes = [torch.tensor([[-1.0, -1, -1], [1, 1, 1]]), torch.tensor([[5.0, 5, 5], [6, 8, 9]])]
    first, second = place_side_by_side([ViewAsset(f"a{i}", box_mesh(), box) for i, box in enumerate(boxes)])
    assert torch.equal(first.offset, torch.zeros(3))
    placed = second.aabb + second.offset
    assert placed[0, 0] > 1.0  # right of the first
    assert torch.allclose(placed.mean(dim=0)[1:], torch.zeros(2))  # centred on it in y and z


def test_splats_reach_the_browser_with_their_base_colour_and_covariance():
    from fieldkit.viewer.demo import ball_splats
    from fieldkit.viewer.native import splat_arrays

    splats = ball_splats(colour=(0.2, 0.6, 0.9), count=10)
    arrays = splat_arrays(splats)
    assert np.allclose(arrays["rgbs"], [0.2, 0.6, 0.9], atol=1e-5)
    scale = float(splats.log_scales[0, 0].detach().exp())
    assert np.allclose(arrays["covariances"][0], np.eye(3) * scale**2, atol=1e-6)  # identity rotation
    assert arrays["opacities"].shape == (10, 1)


def test_open_asset_tells_meshes_splats_and_run_directories_apart(tmp_path):
    import trimesh

    from fieldkit.gaussians import save_splats
    from fieldkit.viewer.assets import open_asset
    from fieldkit.viewer.demo import ball_splats, box_mesh

    box_mesh().export(tmp_path / "mesh.ply")
    save_splats(ball_splats(count=20), tmp_path / "splats.ply")
    assert isinstance(open_asset(tmp_path / "mesh.ply").model, trimesh.Trimesh)
    assert open_asset(tmp_path / "splats.ply").info["splats"] == 20
    with pytest.raises(FieldkitError, match="without field.safetensors"):
        open_asset(tmp_path)
    with pytest.raises(FieldkitError, match="no asset at"):
        open_asset(tmp_path / "missing.glb")
    (tmp_path / "broken.obj").write_text("this is not a mesh\n")
    with pytest.raises(FieldkitError):
        open_asset(tmp_path / "broken.obj")


def test_view_verb_and_live_options_parse():
    from fieldkit.cli import build_parser

    parser = build_parser()
    view = parser.parse_args(["view", "a.ply", "b.glb"])
    assert view.paths == ["a.ply", "b.glb"] and view.host == "127.0.0.1" and view.port is None  # 8080 or the next free
    train = parser.parse_args(["train", "tabletop", "--out", "run", "--view", "--view-port", "9000"])
    assert train.view and train.view_port == 9000 and train.view_host == "127.0.0.1"
    assert not parser.parse_args(["convert", "t.safetensors", "--to", "mlp", "--out", "run"]).view


def test_field_render_for_the_browser_shows_the_field_and_hides_what_is_behind_it():
    from fieldkit.viewer.assets import model_asset
    from fieldkit.viewer.demo import ball_field
    from fieldkit.viewer.scene import View, ViewScene

    scene = ViewScene([model_asset("ball", ball_field(steps=60))])
    c2w = look_at(torch.tensor([[0.0, -3.0, 0.0]]), torch.zeros(3))[0]
    wxyz = viser_rotation(c2w)
    image, depth = scene.render_view(View(tuple(wxyz), (0.0, -3.0, 0.0), 0.8, 1.0), rows=32)
    assert image.shape == (32, 32, 3) and image[16, 16, 0] > 200 and image[16, 16, 1] < 60  # red ball
    assert (image[0, 0] > 240).all()  # white background
    assert 2.2 < depth[16, 16] < 2.6 and depth[0, 0] > 100  # the ball's front (radius 0.6) and empty space


class Sphere:
    """A Renderable that is neither a field nor splats: an opaque ray-traced ball of one colour."""

    def __init__(self, centre=(0.0, 0.0, 0.0), radius: float = 0.5, colour=(0.1, 0.2, 0.9)):
        self.centre, self.radius, self.colour = torch.tensor(centre), radius, torch.tensor(colour)
        self.aabb = torch.stack([self.centre - radius, self.centre + radius])
        self.metrics, self.dataset = {"psnr": 99.0}, {}

    def render(self, cameras: Cameras, background: torch.Tensor | None = None) -> RenderOutput:
        background = torch.ones(3) if background is None else background
        height, width = int(cameras.height[0]), int(cameras.width[0])
        outputs = []
        for index in range(len(cameras)):
            origins, directions = cameras.image_rays(index)  # [R, 3]
            to_centre = self.centre - origins
            along = (to_centre * directions).sum(dim=-1)  # [R]
            miss = (to_centre.square().sum(dim=-1) - along.square()).clamp(min=0)
            alpha = ((miss <= self.radius**2) & (along > 0)).float()
            rgb = alpha[:, None] * self.colour + (1 - alpha[:, None]) * background
            depth = alpha * (along - (self.radius**2 - miss).clamp(min=0).sqrt())
            outputs.append((rgb.view(height, width, 3), alpha.view(height, width), depth.view(height, width)))
        return RenderOutput(*(torch.stack([output[i] for output in outputs]) for i in range(3)))


def front_view() -> tuple:
    c2w = look_at(torch.tensor([[0.0, -3.0, 0.0]]), torch.zeros(3))[0]
    return tuple(viser_rotation(c2w)), (0.0, -3.0, 0.0)


def test_what_is_shown_follows_the_models_type():
    from fieldkit.viewer.assets import ViewAsset, model_asset
    from fieldkit.viewer.demo import ball_splats, box_mesh

    box = torch.tensor([[-1.0, -1, -1], [1, 1, 1]])
    assert model_asset("splats", ball_splats(count=10)).drawn_by_browser
    assert ViewAsset("mesh", box_mesh(), box).drawn_by_browser
    sphere = model_asset("sphere", Sphere())
    assert not sphere.drawn_by_browser and sphere.info["kind"] == "Sphere" and sphere.info["psnr"] == 99.0
    with pytest.raises(TypeError, match="not str"):
        ViewAsset("a kind string", "mesh", box)


def test_any_renderable_is_rendered_for_the_browser_through_the_protocol_alone():
    from fieldkit.viewer.assets import model_asset
    from fieldkit.viewer.demo import ball_splats
    from fieldkit.viewer.scene import View, ViewScene

    scene = ViewScene([model_asset("splats", ball_splats(count=10)), model_asset("sphere", Sphere())])
    assert [asset.name for asset in scene.rendered] == ["sphere"]
    assert float(scene.assets[1].offset[0]) > 0.5  # placed right of the splats
    wxyz, position = front_view()
    image, depth = scene.render_view(View(wxyz, position, 1.2, 1.0), rows=40)
    blue = (image[..., 2] > 200) & (image[..., 0] < 60)
    assert blue.sum() > 20 and np.nonzero(blue)[1].mean() > 24  # right of the middle, where it was placed
    assert (image[0, 0] > 240).all() and depth[0, 0] > 100  # white and empty around it
    assert 2.3 < depth[blue].min() < 2.6  # its front, seen from 3 away along y (z-depth)


def test_bands_of_rows_make_the_same_image_as_one_render(monkeypatch):
    from fieldkit.viewer import render

    monkeypatch.setattr(render, "CHUNK_RAYS", 50)  # bands of 2 rows of 25
    wxyz, position = front_view()
    camera = camera_from_view(wxyz, position, fov=0.8, aspect=25 / 15, height=15)
    sphere = Sphere(radius=0.9)
    layers = render.render_layers([(sphere, torch.zeros(3))], camera)
    whole = sphere.render(camera, torch.zeros(3))
    assert torch.allclose(layers.rgb[0], whole.rgb[0]) and torch.allclose(layers.alpha[0], whole.alpha[0])
    assert torch.allclose(layers.depth[0], ray_to_z_depth(whole.depth[0], camera))
    assert 0.2 < float(whole.alpha.mean()) < 0.9
