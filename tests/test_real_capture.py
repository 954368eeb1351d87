"""Real-capture-sized scenes and the training defaults that keep them affordable: the built-in
`carousel` (a 360-degree object that fills its box) and `gallery` (a forward-facing capture with a
far background), exported small; the per-step sample budget; chunked evaluation that reuses the
visibility pass; and the occupancy grid's warm-up rule."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from fieldkit import scenes
from fieldkit.data import load_dataset
from fieldkit.fitting import TrainConfig, evaluate
from fieldkit.metrics import psnr
from fieldkit.radiance import RadianceField
from fieldkit.render.occupancy import OccupancyGrid
from fieldkit.render.volume import render_rays, sample_along_rays
from fieldkit.scenes import tracer
from fieldkit.train import SAMPLED_FRACTION, Trainer

SMALL = dict(resolution=32, train_views=48, val_views=1, test_views=3)


@pytest.fixture(scope="module")
def carousel(tmp_path_factory):
    return scenes.export("carousel", tmp_path_factory.mktemp("real") / "carousel", **SMALL)


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    return scenes.export("gallery", tmp_path_factory.mktemp("real") / "gallery", resolution=32, train_views=6,
                         val_views=1, test_views=2)


def alphas(root, split) -> np.ndarray:  # [C, H, W] in [0, 1]
    meta = json.loads((root / f"transforms_{split}.json").read_text())
    return np.stack([np.asarray(Image.open(root / f"{frame['file_path']}.png"))[..., 3] / 255.0
                     for frame in meta["frames"]])


def near_surface_fraction(name: str, cells: int = 16) -> float:
    """The fraction of a cells^3 grid over the scene's box whose cell holds some of the scene."""
    scene = scenes.get(name)
    low, high = (torch.tensor(corner) for corner in scene.bounds)
    axis = (torch.arange(cells) + 0.5) / cells
    centres = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)
    half_diagonal = float(((high - low) / cells).norm()) / 2
    return float((scene.distance(low + centres * (high - low)) < half_diagonal).float().mean())


def test_real_capture_scenes_are_listed_at_real_capture_sizes():
    assert {"carousel", "gallery"} <= set(scenes.names())
    assert scenes.capture("carousel").resolution >= 200 and scenes.capture("carousel").rig == "orbit"
    assert scenes.capture("gallery").resolution >= 200 and scenes.capture("gallery").rig == "forward"
    assert scenes.capture("tabletop").resolution == 128, "the existing scenes keep their size"


def test_cached_renders_a_scene_at_its_own_size(tmp_path, monkeypatch):
    monkeypatch.setenv("FIELDKIT_CACHE", str(tmp_path))
    asked = {}

    def fake_export(name, out_dir, **arguments):  # records the request instead of rendering 130 views
        asked.update(arguments, name=name)
        out_dir.mkdir(parents=True)
        (out_dir / "transforms_train.json").write_text("{}")
        return out_dir

    monkeypatch.setattr(scenes, "export", fake_export)
    path = scenes.cached("carousel")
    assert asked["name"] == "carousel" and asked["resolution"] == 200 and "200px" in path.name


def test_carousel_fills_its_views_and_its_box(carousel):
    covered = alphas(carousel, "train")
    assert covered.shape == (48, 32, 32)
    # a NeRF-Synthetic-like object covers a large part of every view ...
    assert covered.mean(axis=(1, 2)).min() > 0.25
    # ... and far more of its box than the table scenes, which stand on a thin disc
    assert near_surface_fraction("carousel") > 2 * near_surface_fraction("tabletop")
    assert near_surface_fraction("carousel") > 0.15


def test_carousel_has_fine_detail():
    """The poles are a few pixels wide in a 200-pixel view: a ray between two of them sees the drum,
    one beside it, the pole."""
    scene = scenes.get("carousel")
    origins = torch.tensor([[4.0, 0.0, -0.5]]).repeat(64, 1)
    # a horizontal fan of rays sweeping across one pole at (0.7 cos 22.5 deg, 0.7 sin 22.5 deg)
    target_y = torch.linspace(0.1, 0.45, 64)
    directions = torch.stack([torch.full_like(target_y, -4.0 + 0.65), target_y, torch.zeros_like(target_y)], -1)
    directions = directions / directions.norm(dim=-1, keepdim=True)
    depth, hit = tracer.trace(scene, origins, directions)
    on_pole = hit & (depth < 3.5)  # the pole is about 3.35 away; the drum and riders lie farther
    assert on_pole.any() and hit[~on_pole].any() and (~hit).any(), "the pole stands out against what lies behind"
    width = float(on_pole.float().sum()) * float(target_y[1] - target_y[0])
    assert 0.02 < width < 0.08, "a pole is a few hundredths of a unit wide"


def test_gallery_is_a_forward_facing_capture_with_a_far_background(gallery):
    meta = json.loads((gallery / "transforms_train.json").read_text())
    c2w = torch.tensor([frame["transform_matrix"] for frame in meta["frames"]])  # [C, 4, 4]
    assert torch.allclose(-c2w[:, :3, 2], torch.tensor([0.0, 1.0, 0.0]).expand(6, 3), atol=1e-6), "all look along +y"
    assert torch.allclose(c2w[:, 1, 3], torch.full((6,), -4.0)), "from one plane"
    assert meta["aabb"] == [list(corner) for corner in scenes.get("gallery").bounds]
    assert alphas(gallery, "train").shape == (6, 24, 32)
    assert (alphas(gallery, "train") == 1).all(), "the back wall fills every view"
    cameras = load_dataset(gallery, "train").cameras
    origins, directions = cameras.image_rays(0)
    depth, hit = tracer.trace(scenes.get("gallery"), origins, directions)
    assert hit.all() and float(depth.max()) > 2 * float(depth.min()), "a background far behind the objects"


def test_a_sample_budget_renders_the_leading_rays_unchanged():
    generator = torch.Generator().manual_seed(0)
    grid = OccupancyGrid(torch.tensor([[-1.0] * 3, [1.0] * 3]), resolution=8)
    origins = torch.tensor([[0.0, 0.0, 4.0]]).repeat(64, 1)
    directions = torch.nn.functional.normalize(torch.randn(64, 3, generator=generator) * 0.2
                                               + torch.tensor([0.0, 0.0, -1.0]), dim=-1)

    def log_density(points):
        return torch.where(points.norm(dim=-1) < 0.6, 0.5, -5.0)

    def radiance(points, dirs):
        return log_density(points), (points * 0.5 + 0.5).clamp(0, 1)

    background, step = torch.ones(3), 0.05
    full = render_rays(radiance, log_density, grid, origins, directions, background, step)
    per_ray = sample_along_rays(origins, directions, grid, step, None).rays.bincount(minlength=64)
    budget = int(per_ray[:20].sum())
    # rays that miss the box cost nothing, so those right after the 20th come along
    expected = 20 + int((per_ray[20:].cumsum(0) == 0).sum())
    part = render_rays(radiance, log_density, grid, origins, directions, background, step, max_samples=budget)
    assert part.rgb.shape == (expected, 3) and part.samples <= budget
    assert torch.allclose(part.rgb, full.rgb[:expected]) and torch.allclose(part.alpha, full.alpha[:expected])
    one = render_rays(radiance, log_density, grid, origins, directions, background, step, max_samples=1)
    assert one.rgb.shape == (1, 3), "at least one ray is rendered"


def test_evaluation_streams_chunks_and_reuses_the_visibility_pass(carousel, small_fields):
    from fieldkit.fields import build_field, make_config

    dataset = load_dataset(carousel, "test")
    field = build_field("hashgrid", dataset.aabb, make_config("hashgrid", "cpu", small_fields["hashgrid"]))
    torch.manual_seed(0)
    with torch.no_grad():
        field.geometry_mlp[-1].bias[0] = 2.0  # a dense field, so that rays turn opaque
    model = RadianceField(field, OccupancyGrid(dataset.aabb, 16), 0.02)
    rendered, plain_calls = [], []
    encode = field.encode
    field.encode = lambda points: rendered.append(points.shape[0]) or encode(points)
    image = model.render(dataset.cameras[0], chunk=256).rgb[0]
    field.encode = lambda points: plain_calls.append(points.shape[0]) or encode(points)
    origins, directions = dataset.cameras.image_rays(0)
    plain = model.render_rays(origins, directions).rgb.reshape(image.shape)
    assert torch.allclose(image, plain, atol=1e-5) and (image < 0.9).any(), "the same image, not a blank one"
    most = 256 * (int(float((dataset.aabb[1] - dataset.aabb[0]).norm()) / 0.02) + 1)
    assert max(rendered) <= most, "a chunk never evaluates more than its rays' samples"
    # the plain path's last call encodes the visible samples again; the render colours them from the first pass
    assert sum(rendered) == sum(plain_calls) - plain_calls[-1] and plain_calls[-1] > 0


def test_occupancy_updates_every_cell_until_the_field_takes_shape(carousel, tmp_path):
    trainer = Trainer(str(carousel), "hashgrid", tmp_path / "run", TrainConfig(steps=1, occupancy_resolution=16),
                      {"levels": 4, "log2_table_size": 10, "max_resolution": 32})
    updated = []
    trainer.model.update_occupancy = lambda fraction, generator: updated.append(fraction)
    trainer.update_occupancy()
    trainer.model.grid.density.fill_(2 * trainer.model.grid.opacity_threshold / trainer.model.step_size)
    trainer.update_occupancy()
    assert updated == [1.0, SAMPLED_FRACTION]


def test_hashgrid_fits_the_small_carousel(carousel, fast_settings, tmp_path):
    config, overrides = fast_settings["hashgrid"]
    trainer = Trainer(str(carousel), "hashgrid", tmp_path / "run", config, overrides)
    train = trainer.train_set
    mean_image = torch.stack(train.images).mean(dim=0)
    trivial = sum(psnr(mean_image, image) for image in trainer.test_set.images) / len(trainer.test_set)
    untrained = evaluate(trainer.model, trainer.test_set)["psnr"]
    metrics = trainer.run_training()
    print(f"carousel 32 px: mean image {trivial:.2f} dB, untrained {untrained:.2f} dB, "
          f"trained {metrics['psnr_test']:.2f} dB in {metrics['seconds']:.1f} s")
    assert metrics["psnr_test"] > trivial + 3 and metrics["psnr_test"] > untrained + 8
    assert metrics["ssim_test"] > 0.6
