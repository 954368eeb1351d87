"""The native splat kernels (cuda/splats.h) against the torch rasterizer and gsplat's pure-torch
reference: values and every gradient on random splat sets, on the CPU always and on CUDA where a
device is present; bad inputs; and splat training with and without the kernels."""
from __future__ import annotations

import logging

import pytest
import torch
from test_native import require, two_threads  # noqa: F401  (a fixture)
from test_splats import WIDTH, HEIGHT, gsplat_projection, gsplat_reference, random_splats, scene_cameras  # noqa: F401

import fieldkit.render.splats as splat_render
from fieldkit import native
from fieldkit.cameras import Cameras, look_at
from fieldkit.render import splat_native
from fieldkit.render.splats import rasterize

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]
NAMES = ("means", "quaternions", "scales", "opacities", "colours")


def wide_cameras() -> Cameras:
    """Two 100 x 70 cameras (7 x 5 tiles) that see the cloud off to one side, so that whole
    tiles stay empty."""
    eyes = torch.tensor([[4.0, 1.0, 1.0], [0.0, -5.0, 0.5]])
    targets = torch.tensor([[0.0, 2.0, 0.0], [2.5, 0.0, 0.0]])
    return Cameras.create(look_at(eyes, targets), fx=[60.0, 80.0], cx=[50.0, 40.0], cy=[35.0, 30.0], width=100,
                          height=70)


def splat_set(kind: str) -> tuple[dict, Cameras]:
    """Random splats in three cameras (one inside the cloud: splats behind it and at its near
    plane), at several sizes; `many` covers every pixel, most of them until they stop early; `huge`
    adds splats wider than the image; `sparse` leaves tiles empty."""
    if kind == "sparse":
        return random_splats(200, seed=11, extent=2.0), wide_cameras()
    count = {"few": 30, "many": 1000, "huge": 300}[kind]
    scene = random_splats(count, seed=count)
    if kind == "huge":
        scene["scales"][:20] = scene["scales"][:20] * 20 + 1.0  # up to 6 units across, seen from ~3 away
        scene["opacities"][:20] = scene["opacities"][:20] * 0.3  # faint, so the pixels behind still count
    return scene, scene_cameras()


def render_with_gradients(scene: dict, cameras: Cameras, device: str, native: bool, monkeypatch,
                          dtype=torch.float32) -> tuple:
    """rgb, alpha, depth, radii, and the gradients of a random loss on all three images with
    respect to every input and to the screen-space means."""
    monkeypatch.setenv("FIELDKIT_NATIVE", "1" if native else "0")
    inputs = {name: scene[name].to(device, dtype).requires_grad_() for name in NAMES}
    background = torch.tensor([0.2, 0.4, 0.6], device=device, dtype=dtype)
    output = rasterize(**inputs, cameras=cameras.to(device), background=background)
    ran_native = type(output.means2d.grad_fn).__name__.startswith("_NativeProject")
    assert ran_native == native, "the native op ran where it should not, or did not run"
    generator = torch.Generator().manual_seed(7)
    images = (output.rgb, output.alpha, output.depth)
    loss = sum((image * torch.randn(image.shape, generator=generator).to(device, dtype)).sum() for image in images)
    loss.backward()
    values = [value.detach() for value in images]
    grads = [inputs[name].grad for name in NAMES] + [output.means2d.grad]
    return values, output.radii, grads


def close(actual: torch.Tensor, expected: torch.Tensor, rtol: float) -> None:
    """Equal within `rtol` relative to the tensor's largest entry: sums over pixels come out in
    another order in the kernels."""
    torch.testing.assert_close(actual.cpu(), expected.cpu(), rtol=rtol,
                               atol=rtol * max(float(expected.abs().max()), 1e-3))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["few", "many", "huge", "sparse"])
def test_native_rasterizer_matches_the_torch_path(kind, device, monkeypatch, two_threads):  # noqa: F811
    require(device)
    scene, cameras = splat_set(kind)
    values, radii, grads = render_with_gradients(scene, cameras, device, True, monkeypatch)
    expected_values, expected_radii, expected_grads = render_with_gradients(scene, cameras, "cpu", False, monkeypatch)
    assert torch.equal(radii.cpu(), expected_radii)
    visible = (expected_radii > 0).all(dim=-1)
    assert visible.any() and (~visible).any()
    for value, expected in zip(values, expected_values):
        close(value, expected, 1e-5)
    assert float(expected_values[1].max()) > 0.5
    for name, grad, expected in zip((*NAMES, "means2d"), grads, expected_grads):
        assert expected.abs().max() > 0, name
        close(grad, expected, 2e-4 if name in ("means", "scales", "quaternions") else 1e-4)


def test_native_gradients_are_the_same_at_any_thread_count(monkeypatch):
    """Each pair of a splat and a tile owns its gradient slot, summed in a fixed order: one thread
    and two give bit-identical images and gradients."""
    require("cpu")
    scene, cameras = splat_set("many")
    before = torch.get_num_threads()
    try:
        runs = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            values, _, grads = render_with_gradients(scene, cameras, "cpu", True, monkeypatch)
            runs.append(values + grads)
    finally:
        torch.set_num_threads(before)
    for one, two in zip(*runs):
        assert torch.equal(one, two)


def test_no_splats_render_the_background():
    require("cpu")
    empty = {name: value[:0] for name, value in random_splats(1, seed=0).items()}
    output = rasterize(**empty, cameras=scene_cameras(), background=torch.tensor([0.1, 0.2, 0.3]))
    assert torch.equal(output.rgb, torch.tensor([0.1, 0.2, 0.3]).expand(3, HEIGHT, WIDTH, 3))
    assert not output.alpha.any()


def test_sparse_scene_leaves_tiles_empty():
    """The `sparse` set's premise: some 16 px tiles of its images meet no splat."""
    scene, cameras = splat_set("sparse")
    output = rasterize(**scene, cameras=cameras, background=torch.zeros(3))
    tiles = output.alpha.unfold(1, 16, 16).unfold(2, 16, 16).amax(dim=(-1, -2))  # [C, 4, 6] whole tiles
    assert (tiles == 0).any() and (tiles > 0.5).any()


@pytest.mark.parametrize("device", DEVICES)
def test_native_rasterizer_gradcheck_float64(device):
    require(device)
    scene = random_splats(5, seed=6, extent=1.0)
    scene["opacities"] = scene["opacities"] * 0.5 + 0.2  # clear of the 0.99 clamp
    scene["scales"] = scene["scales"] + 0.2
    cameras = Cameras.create(look_at(torch.tensor([[0.0, -4.0, 0.5]]), torch.zeros(3)), fx=12.0, width=20, height=18)
    cameras = Cameras(*(value.double() if value.is_floating_point() else value
                        for value in (getattr(cameras, name) for name in Cameras._fields()))).to(device)
    inputs = tuple(scene[name].double().to(device).requires_grad_() for name in NAMES)

    def render(*values):
        output = rasterize(*values, cameras=cameras, background=torch.full((3,), 0.5, dtype=torch.float64,
                                                                            device=device))
        assert type(output.means2d.grad_fn).__name__.startswith("_NativeProject")
        return output.rgb, output.alpha, output.depth

    assert torch.autograd.gradcheck(render, inputs, eps=1e-6, atol=1e-5)


# -- against gsplat's pure-torch reference ---------------------------------------------------

def native_projection(scene: dict, cameras: Cameras, device: str):
    intrinsics = torch.stack([cameras.fx, cameras.fy, cameras.cx, cameras.cy, cameras.width.float(),
                              cameras.height.float()], dim=-1)
    return splat_native.project(scene["means"], scene["quaternions"], scene["scales"],
                                splat_render.world_to_opencv(cameras.c2w).to(device), intrinsics.to(device))


@pytest.mark.parametrize("device", DEVICES)
def test_native_projection_matches_gsplat(gsplat_reference, device):  # noqa: F811
    require(device)
    scene, cameras = random_splats(600, seed=0), scene_cameras()
    inputs = {name: scene[name].to(device).requires_grad_() for name in ("means", "quaternions", "scales")}
    means2d, conics, depths, radii = native_projection(inputs, cameras, device)
    reference_inputs = {name: scene[name].clone().requires_grad_() for name in inputs}
    _, their_radii, their_means2d, their_depths, their_conics = gsplat_projection(gsplat_reference, reference_inputs,
                                                                                  cameras)
    assert torch.equal(radii.cpu(), their_radii)
    visible = (their_radii > 0).all(dim=-1)
    assert visible.sum() > 300 and (~visible).sum() > 50
    torch.testing.assert_close(depths.detach().cpu(), their_depths.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(means2d.detach().cpu()[visible], their_means2d.detach()[visible], rtol=1e-5, atol=1e-4)
    conic_scale = their_conics[visible][:, [0, 2]].abs().amax(dim=-1, keepdim=True)
    assert ((conics.detach().cpu()[visible] - their_conics.detach()[visible]).abs() / conic_scale).max() < 5e-5
    # gradients of a random cotangent on the visible splats' outputs
    generator = torch.Generator().manual_seed(2)
    cotangents = [torch.randn(value[visible].shape, generator=generator) for value in (means2d, conics, depths)]

    def gradients(outputs, parameters):
        loss = sum((value.cpu()[visible] * cotangent).sum() for value, cotangent in zip(outputs, cotangents))
        return torch.autograd.grad(loss, list(parameters.values()))

    for ours, theirs in zip(gradients((means2d, conics, depths), inputs),
                            gradients((their_means2d, their_conics, their_depths), reference_inputs)):
        torch.testing.assert_close(ours.cpu(), theirs, rtol=1e-4, atol=1e-4)


# -- bad input -------------------------------------------------------------------------------

def test_unsupported_dtype_and_strided_inputs_are_converted_with_one_line(monkeypatch, caplog):
    require("cpu")
    native.reset()  # each conversion is logged once per process: forget earlier tests' lines
    scene, cameras = splat_set("few")
    expected, _, _ = render_with_gradients(scene, cameras, "cpu", False, monkeypatch)
    monkeypatch.setenv("FIELDKIT_NATIVE", "1")
    strided = {name: value.t().contiguous().t() if value.dim() == 2 else value for name, value in scene.items()}
    assert not strided["means"].is_contiguous()
    halves = {name: value.bfloat16() for name, value in strided.items()}
    with caplog.at_level(logging.DEBUG, logger="fieldkit.native"):
        output = rasterize(**strided, cameras=cameras, background=torch.tensor([0.2, 0.4, 0.6]))
        rasterize(**halves, cameras=cameras, background=torch.tensor([0.2, 0.4, 0.6]))
        rasterize(**halves, cameras=cameras, background=torch.tensor([0.2, 0.4, 0.6]))
    close(output.rgb, expected[0], 1e-5)
    lines = [record.getMessage() for record in caplog.records if "bfloat16" in record.getMessage()]
    assert len(lines) == 2 and all("\n" not in line for line in lines), lines  # projection, rasterization


def test_cameras_that_require_grad_take_the_torch_path():
    require("cpu")
    scene, cameras = splat_set("few")
    cameras = Cameras(*(getattr(cameras, name) for name in Cameras._fields()))
    cameras.c2w.requires_grad_()
    output = rasterize(**scene, cameras=cameras, background=torch.zeros(3))
    assert not type(output.means2d.grad_fn).__name__.startswith("_NativeProject")
    output.rgb.sum().backward()
    assert cameras.c2w.grad is not None and cameras.c2w.grad.abs().max() > 0


# -- training ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_splat_training_gives_the_same_psnr_with_and_without_native(tiny_dataset, tmp_path, monkeypatch):
    """200 steps of the splat training test's settings, with densification, twice: the test PSNRs
    agree within 0.2 dB."""
    require("cpu")
    from test_splat_training import FAST, FAST_SPLATS

    from fieldkit.gaussians.trainer import SplatTrainer

    results = {}
    for native in (True, False):
        monkeypatch.setenv("FIELDKIT_NATIVE", "1" if native else "0")
        torch.manual_seed(0)
        metrics = SplatTrainer(tiny_dataset, tmp_path / f"run-{native}", FAST, FAST_SPLATS).run_training()
        results[native] = metrics["psnr_test"]
    assert results[True] > 22.0
    assert abs(results[True] - results[False]) < 0.2, results
