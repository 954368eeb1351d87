"""A forward-facing LLFF capture with a distant background (far/near bounds about 25): its field trains
in NDC (fieldkit.ndc), which spends the grid on disparity rather than on a world box that is mostly
empty depth, keeps its space in the asset, and refuses captures NDC cannot describe."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from fieldkit.asset_file import read_tensors, write_tensors
from fieldkit.cameras import Cameras, look_at
from fieldkit.cli import main
from fieldkit.data import load_dataset
from fieldkit.distill import ConvertConfig, Converter
from fieldkit.errors import FieldkitError
from fieldkit.images import write_png
from fieldkit.io import load, save_field
from fieldkit.ndc import NdcSpace, average_pose
from fieldkit.train import Trainer
from scenes.materials import Material, checker, constant, stripes
from scenes.sdf import box, sphere, torus
from scenes.tracer import Part, Scene, render_rgba, trace

WIDTH, HEIGHT, VIEWS = 32, 24, 17  # every 8th of 17 frames is a test view: 3 of them
MATTE = dict(specular=0.0, shininess=1.0)
STEPS = 150  # a short run: NDC is ahead from the start, the world box never catches up at this budget
MARGIN_DB = 3.0


def _material(texture):
    return Material(texture, **MATTE)


def deep_scene() -> Scene:
    """Objects 1.5-3 units before the cameras and a checkered wall 30 units away that fills every view."""
    return Scene("objects near the cameras before a far wall", (
        Part(box((0.0, 30.0, 0.0), (25.0, 0.5, 20.0)), _material(checker((0.9, 0.9, 0.85), (0.1, 0.5, 0.5), 2.5))),
        Part(sphere((-0.35, 2.0, 0.0), 0.3), _material(stripes((0.9, 0.2, 0.2), (0.95, 0.9, 0.7), 0.08, axis=2))),
        Part(box((0.4, 2.6, -0.1), (0.25, 0.25, 0.3)), _material(checker((0.2, 0.3, 0.9), (0.95, 0.9, 0.7), 0.1))),
        Part(torus((0.0, 1.6, -0.35), 0.2, 0.05), _material(constant((0.2, 0.8, 0.3)))),
    ), bounds=((-30.0, -1.0, -25.0), (30.0, 31.0, 25.0)), max_steps=256)


def write_deep_llff(root, scene: Scene | None = None, around: bool = False):
    """An LLFF capture of `scene` (default `deep_scene`): PNGs and a poses_bounds.npy whose bounds are
    each camera's nearest and farthest surface depth, as LLFF's imgs2poses takes them from COLMAP's points.
    `around` turns the cameras about the scene instead (a 360-degree capture)."""
    scene = deep_scene() if scene is None else scene
    generator = torch.Generator().manual_seed(0)
    offsets = (torch.rand(VIEWS, 2, generator=generator) - 0.5) * torch.tensor([0.5, 0.35])
    eyes = torch.stack([offsets[:, 0], torch.zeros(VIEWS), offsets[:, 1]], dim=-1)
    forward = torch.tensor([0.0, 1.0, 0.0]).expand(VIEWS, 3)
    if around:
        angles = torch.linspace(0, 2 * np.pi, VIEWS + 1)[:-1]
        eyes = torch.stack([2.2 * angles.sin(), 2.2 - 2.2 * angles.cos(), torch.zeros(VIEWS)], dim=-1)
        forward = torch.tensor([0.0, 2.2, 0.0]) - eyes
    cameras = Cameras.from_fov(look_at(eyes, eyes + forward), WIDTH, HEIGHT, 0.9)
    (root / "images").mkdir(parents=True)
    rows = []
    for index in range(VIEWS):
        camera = cameras[index]
        write_png(root / "images" / f"{index:03d}.png", render_rgba(scene, camera)[0, ..., :3])
        origins, directions = camera.image_rays(0)
        distance, hit = trace(scene, origins, directions)
        depth = distance[hit] * (directions[hit] @ -camera.c2w[0, :3, 2])  # along the view axis
        c2w = camera.c2w[0].double().numpy()
        matrix = np.stack([-c2w[:3, 1], c2w[:3, 0], c2w[:3, 2], c2w[:3, 3],
                           [HEIGHT, WIDTH, float(camera.fx[0])]], axis=1)  # LLFF: down, right, backward
        rows.append(np.concatenate([matrix.reshape(-1), [float(depth.min()), float(depth.max())]]))
    np.save(root / "poses_bounds.npy", np.array(rows))
    return root


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    return write_deep_llff(tmp_path_factory.mktemp("llff") / "deep")


def test_the_capture_is_deep_and_ndc_maps_its_view_to_the_unit_box(capture):
    bounds = np.load(capture / "poses_bounds.npy")[:, 15:]
    assert bounds[:, 1].max() / bounds[:, 0].min() > 15, bounds
    dataset = load_dataset(capture, "train")
    space = NdcSpace.for_capture(dataset.cameras, dataset.nearest_bound)
    # a point ahead of the reference camera lands where its NDC ray says, at the NeRF formula's place
    reference = average_pose(dataset.cameras.c2w.double()).float()
    point = reference[:3, 3] + reference[:3, :3] @ torch.tensor([0.3, -0.2, -5.0])
    origin = dataset.cameras.positions[2]
    ndc_origin, ndc_direction = space.rays(origin[None], (point - origin)[None] / (point - origin).norm())
    scale = space.scale
    expected = torch.tensor([-scale[0] * 0.3 / -5.0, -scale[1] * -0.2 / -5.0, 1 + 2 * space.near / -5.0])
    along = ((expected - ndc_origin[0]) @ ndc_direction[0])
    assert torch.allclose(ndc_origin[0] + along * ndc_direction[0], expected, atol=1e-4)
    low, high = space.bounds(dataset.cameras)
    # the reference camera's view is [-1, 1] in x and y; the others stand within 0.25 of it, a quarter of
    # the near plane's distance, so their views reach about half a unit further
    assert low[2] == -1 and high[2] == 1 and (low[:2] < -1).all() and (high[:2] > 1).all()
    assert ((high - low)[:2] < 3.5).all(), (low, high)


@pytest.fixture(scope="module")
def trained(capture, fast_settings, tmp_path_factory):
    """space -> the trainer of a short hashgrid run in that space, and its metrics."""
    config, overrides = fast_settings["hashgrid"]
    root = tmp_path_factory.mktemp("runs")
    runs = {}
    for space in ("box", "ndc"):
        trainer = Trainer(capture, "hashgrid", root / space, dataclasses.replace(config, steps=STEPS, space=space),
                          overrides)
        runs[space] = trainer, trainer.run_training()
    return runs


def test_ndc_trains_a_deep_forward_facing_capture_far_better_than_the_world_box(trained, capture, fast_settings,
                                                                                 tmp_path):
    scores = {space: metrics["psnr_test"] for space, (_, metrics) in trained.items()}
    assert scores["ndc"] > scores["box"] + MARGIN_DB and scores["ndc"] > 22, scores
    config, overrides = fast_settings["hashgrid"]
    auto = Trainer(capture, "hashgrid", tmp_path / "auto", dataclasses.replace(config, steps=1), overrides)
    assert auto.config.space == "ndc" and auto.model.space is not None


def test_the_space_travels_with_the_asset_to_render_and_convert(trained, capture, tmp_path, capsys):
    trainer = trained["ndc"][0]
    save_field(trainer.model, tmp_path / "ndc.safetensors")
    assert "space" in read_tensors(tmp_path / "ndc.safetensors")[1]
    loaded = load(tmp_path / "ndc.safetensors")
    assert torch.equal(loaded.space.world_to_camera, trainer.model.space.world_to_camera)
    camera = trainer.test_set.cameras[0]
    assert torch.equal(loaded.render(camera).rgb, trainer.model.eval().render(camera).rgb)
    assert main(["render", str(tmp_path / "ndc.safetensors"), "--cameras", str(capture),
                 "--out", str(tmp_path / "frames")]) == 0
    assert len(list((tmp_path / "frames").glob("*.png"))) == len(trainer.test_set)
    converter = Converter(tmp_path / "ndc.safetensors", "voxels", tmp_path / "voxels",
                          ConvertConfig(steps=20, batch_rays=256, eval_views=1, eval_resolution=24,
                                        checkpoint_seconds=1e9))
    metrics = converter.run_conversion()
    assert converter.student.space is not None and metrics["psnr_vs_teacher"] > 20, metrics
    capsys.readouterr()
    for verb in (["render", "--orbit", "2"], ["convert", "--to", "gaussians"]):
        code = main([verb[0], str(tmp_path / "ndc.safetensors"), *verb[1:], "--out", str(tmp_path / "refused")])
        error = capsys.readouterr().err.strip()
        assert code != 0 and "NDC" in error and len(error.splitlines()) == 1, error


def test_a_field_without_a_space_renders_in_world_coordinates_as_before(trained, tmp_path):
    save_field(trained["box"][0].model, tmp_path / "box.safetensors")
    tensors, header = read_tensors(tmp_path / "box.safetensors")
    assert "space" not in header and load(tmp_path / "box.safetensors").space is None
    for space in ({"kind": "sphere"}, {"kind": "ndc", "world_to_camera": [[1.0]], "scale": [1, 1], "near": 1}):
        write_tensors(tmp_path / "damaged.safetensors", tensors, header | {"space": space})
        with pytest.raises(FieldkitError, match="header 'space."):
            load(tmp_path / "damaged.safetensors")


@pytest.mark.parametrize("case, message", [
    ("around", "a 360-degree capture"),
    ("transforms", "needs the near bounds of an LLFF capture"),
    ("splats", "trains fields only"),
    ("unknown", "unknown --space 'sphere'"),
])
def test_ndc_asked_of_a_capture_it_cannot_describe_is_one_error_line(case, message, capture, tiny_dataset,
                                                                      tmp_path, capsys):
    source = {"around": lambda: write_deep_llff(tmp_path / "around", around=True),
              "transforms": lambda: tiny_dataset}.get(case, lambda: capture)()
    arch, space = ("gaussians", "ndc") if case == "splats" else ("hashgrid", "sphere" if case == "unknown" else "ndc")
    assert main(["train", str(source), "--arch", arch, "--space", space, "--steps", "1",
                 "--out", str(tmp_path / "run")]) != 0
    error = capsys.readouterr().err.strip()
    assert message in error and len(error.splitlines()) == 1, error
