"""The splat rasterizer: projection and SH colour against gsplat's pure-torch reference,
compositing on analytic cases and against a plain per-pixel loop, and gradients."""
from __future__ import annotations

import importlib
import math

import pytest
import torch

import fieldkit.render.splats as splat_render
from fieldkit.cameras import Cameras, look_at
from fieldkit.errors import FieldkitError
from fieldkit.gaussians import Splats
from fieldkit.render import splat_composite
from fieldkit.render.splats import covariances, project, rasterize

WIDTH, HEIGHT = 41, 33
WHITE = torch.ones(3)


@pytest.fixture(scope="module")
def gsplat_reference():
    try:
        return importlib.import_module("gsplat.cuda._torch_impl")
    except ImportError as error:
        pytest.skip(f"gsplat's pure-torch reference is not importable ({error}); pip install 'fieldkit[test]' "
                    f"to run the parity checks")


def random_splats(count: int, seed: int, extent: float = 3.0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "means": (torch.rand(count, 3, generator=generator) - 0.5) * extent,
        "quaternions": torch.randn(count, 4, generator=generator) * 2,  # unnormalised on purpose
        "scales": torch.rand(count, 3, generator=generator) * 0.25 + 0.01,
        "opacities": torch.rand(count, generator=generator),
        "colours": torch.rand(count, 3, generator=generator),
    }


def scene_cameras() -> Cameras:
    """Three cameras of one resolution with unequal focal lengths and off-centre principal
    points; the third stands inside the cloud, so some splats are behind it or at its near plane."""
    eyes = torch.tensor([[3.0, 0.5, 1.0], [-1.0, -3.0, 0.8], [0.4, 0.2, 0.3]])
    targets = torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.0, -0.2], [-1.0, 0.0, 0.0]])
    return Cameras.create(look_at(eyes, targets), fx=[40.0, 55.0, 30.0], fy=[42.0, 50.0, 33.0],
                          cx=[20.5, 18.0, 25.3], cy=[15.0, 17.2, 12.0], width=WIDTH, height=HEIGHT)


def opencv_viewmats(c2w: torch.Tensor) -> torch.Tensor:
    """gsplat's world-to-camera matrices, built from the rotation's rows rather than an inverse:
    OpenCV's camera x, y, z are OpenGL's x, -y, -z."""
    rotation = torch.stack([c2w[:, :3, 0], -c2w[:, :3, 1], -c2w[:, :3, 2]], dim=1)  # rows [C, 3, 3]
    viewmats = torch.eye(4).repeat(len(c2w), 1, 1)
    viewmats[:, :3, :3] = rotation
    viewmats[:, :3, 3] = -(rotation @ c2w[:, :3, 3:])[..., 0]
    return viewmats


def intrinsics(cameras: Cameras) -> torch.Tensor:  # [C, 3, 3]
    matrices = torch.zeros(len(cameras), 3, 3)
    matrices[:, 0, 0], matrices[:, 1, 1] = cameras.fx, cameras.fy
    matrices[:, 0, 2], matrices[:, 1, 2], matrices[:, 2, 2] = cameras.cx, cameras.cy, 1.0
    return matrices


def gsplat_projection(reference, scene: dict, cameras: Cameras):
    covars, _ = reference._quat_scale_to_covar_preci(scene["quaternions"], scene["scales"], compute_preci=False)
    radii, means2d, depths, conics, _ = reference._fully_fused_projection(
        scene["means"], covars, opencv_viewmats(cameras.c2w), intrinsics(cameras), WIDTH, HEIGHT,
        eps2d=splat_render.LOW_PASS, near_plane=splat_render.NEAR_PLANE)
    return covars, radii, means2d, depths, conics


# -- projection and colour parity with gsplat -------------------------------------------------

def test_projection_matches_gsplat(gsplat_reference):
    scene, cameras = random_splats(600, seed=0), scene_cameras()
    covars, radii, means2d, depths, conics = gsplat_projection(gsplat_reference, scene, cameras)
    ours = project(scene["means"], covariances(scene["quaternions"], scene["scales"]), cameras)
    torch.testing.assert_close(covariances(scene["quaternions"], scene["scales"]), covars, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(ours.depths, depths, rtol=1e-5, atol=1e-6)
    assert torch.equal(ours.radii, radii)
    visible = (radii > 0).all(dim=-1)
    culled = ~visible
    assert visible.sum() > 300 and culled.sum() > 50 and (depths <= splat_render.NEAR_PLANE).any()
    torch.testing.assert_close(ours.means2d[visible], means2d[visible], rtol=1e-5, atol=1e-4)
    # float32 noise scales with the whole 2x2 matrix, so a near-zero off-diagonal term is
    # compared against the matrix's own scale
    conic_scale = conics[visible][:, [0, 2]].abs().amax(dim=-1, keepdim=True)
    assert ((ours.conics[visible] - conics[visible]).abs() / conic_scale).max() < 5e-5


def test_projection_gradients_match_gsplat(gsplat_reference):
    """A random cotangent through both projections gives the same gradients."""
    scene, cameras = random_splats(200, seed=1), scene_cameras()
    inputs = {name: scene[name].clone().requires_grad_() for name in ("means", "quaternions", "scales")}
    ours = project(inputs["means"], covariances(inputs["quaternions"], inputs["scales"]), cameras)
    _, radii, means2d, depths, conics = gsplat_projection(gsplat_reference, inputs, cameras)
    visible = (radii > 0).all(dim=-1)
    generator = torch.Generator().manual_seed(2)
    cotangents = [torch.randn(value[visible].shape, generator=generator) for value in (means2d, conics, depths)]

    def gradients(outputs):
        loss = sum((value[visible] * cotangent).sum() for value, cotangent in zip(outputs, cotangents))
        return torch.autograd.grad(loss, list(inputs.values()))

    for ours_grad, their_grad in zip(gradients((ours.means2d, ours.conics, ours.depths)),
                                     gradients((means2d, conics, depths))):
        torch.testing.assert_close(ours_grad, their_grad, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_sh_colour_matches_gsplat(gsplat_reference, degree):
    """Colour seen from each camera: 3DGS's basis, directions from the camera to the splat."""
    scene, generator = random_splats(64, seed=3), torch.Generator().manual_seed(4)
    sh_dc = torch.randn(64, 3, generator=generator)
    sh_rest = torch.randn(64, 15, 3, generator=generator) * 0.5
    splats = Splats(scene["means"], scene["scales"].log(), scene["quaternions"], torch.zeros(64), sh_dc, sh_rest)
    splats.active_sh_degree = degree
    positions = scene_cameras().positions
    with torch.no_grad():
        ours = splats.colours(positions)
    directions = scene["means"][None] - positions[:, None, :]  # [C, N, 3]
    coefficients = torch.cat([sh_dc[:, None], sh_rest], dim=1).expand(len(positions), -1, -1, -1)
    theirs = (gsplat_reference._spherical_harmonics(degree, directions, coefficients) + 0.5).clamp(min=0)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


# -- compositing ------------------------------------------------------------------------------

def axis_camera(size: int = 9) -> Cameras:
    """A camera at y = -5 looking at the origin; the centre of its middle pixel is the optical axis."""
    return Cameras.create(look_at(torch.tensor([[0.0, -5.0, 0.0]]), torch.zeros(3)), fx=10.0, width=size,
                          height=size)


def splats_on_axis(distances, opacities, colours, scale: float = 0.3) -> dict[str, torch.Tensor]:
    count = len(distances)
    means = torch.zeros(count, 3)
    means[:, 1] = -5.0 + torch.tensor(distances, dtype=torch.float32)
    return {"means": means, "quaternions": torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(count, 1),
            "scales": torch.full((count, 3), scale), "opacities": torch.tensor(opacities, dtype=torch.float32),
            "colours": torch.tensor(colours, dtype=torch.float32)}


def centre_pixel(output, background=WHITE) -> tuple[torch.Tensor, float, float]:
    return output.rgb[0, 4, 4], float(output.alpha[0, 4, 4]), float(output.depth[0, 4, 4])


@pytest.mark.parametrize("opacity", [0.6, 1.0])
def test_one_splat_gives_its_colour_times_clamped_opacity(opacity):
    scene = splats_on_axis([3.0], [opacity], [[0.9, 0.2, 0.4]])
    rgb, alpha, depth = centre_pixel(rasterize(**scene, cameras=axis_camera(), background=WHITE))
    expected_alpha = min(opacity, splat_composite.ALPHA_MAX)
    torch.testing.assert_close(rgb, torch.tensor([0.9, 0.2, 0.4]) * expected_alpha + (1 - expected_alpha) * WHITE)
    assert alpha == pytest.approx(expected_alpha, abs=1e-6)
    assert depth == pytest.approx(3.0, abs=1e-5)


def test_front_to_back_order_decides_overlapping_colour():
    red, blue = [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]
    background = torch.tensor([0.0, 1.0, 0.0])
    cameras = axis_camera()

    def composite(red_distance: float, blue_distance: float):
        scene = splats_on_axis([red_distance, blue_distance], [0.5, 0.8], [red, blue])
        return centre_pixel(rasterize(**scene, cameras=cameras, background=background))

    rgb, alpha, depth = composite(2.0, 4.0)  # red in front
    torch.testing.assert_close(rgb, torch.tensor([0.5, 0.5 * 0.2, 0.5 * 0.8]))
    assert alpha == pytest.approx(0.9, abs=1e-6)
    assert depth == pytest.approx((0.5 * 2.0 + 0.4 * 4.0) / 0.9, abs=1e-5)
    rgb, alpha, depth = composite(4.0, 2.0)  # blue in front
    torch.testing.assert_close(rgb, torch.tensor([0.2 * 0.5, 0.2 * 0.5, 0.8]))
    assert alpha == pytest.approx(0.9, abs=1e-6)
    assert depth == pytest.approx((0.8 * 2.0 + 0.1 * 4.0) / 0.9, abs=1e-5)


def test_compositing_stops_when_transmittance_falls_below_epsilon():
    """After alphas 0.99 and 0.95 the transmittance is 5e-4; a third 0.95 would take it to
    2.5e-5, below 1e-4, so the third splat is left out."""
    colours = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    scene = splats_on_axis([1.0, 2.0, 3.0], [1.0, 0.95, 0.95], colours)
    rgb, alpha, _ = centre_pixel(rasterize(**scene, cameras=axis_camera(), background=torch.zeros(3)))
    torch.testing.assert_close(rgb, torch.tensor([0.99, 0.95 * 0.01, 0.0]))
    assert alpha == pytest.approx(0.99 + 0.95 * 0.01, abs=1e-6)


def per_pixel_reference(projection, opacities, colours, background, camera: int):
    """3DGS's per-pixel loop, in float64, over every splat in front of the near plane (no tiles)."""
    depths = projection.depths[camera].tolist()
    order = sorted((index for index, depth in enumerate(depths) if depth > splat_render.NEAR_PLANE),
                   key=lambda index: depths[index])
    means, conics = projection.means2d[camera].tolist(), projection.conics[camera].tolist()
    opacities, colours = opacities.tolist(), colours.tolist()
    rgb = torch.zeros(HEIGHT, WIDTH, 3, dtype=torch.float64)
    alpha, depth = torch.zeros(HEIGHT, WIDTH, dtype=torch.float64), torch.zeros(HEIGHT, WIDTH, dtype=torch.float64)
    for row in range(HEIGHT):
        for column in range(WIDTH):
            transmittance, colour, z = 1.0, [0.0, 0.0, 0.0], 0.0
            for index in order:
                dx, dy = column + 0.5 - means[index][0], row + 0.5 - means[index][1]
                a, b, c = conics[index]
                sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
                splat_alpha = min(splat_composite.ALPHA_MAX, opacities[index] * math.exp(-sigma))
                if sigma < 0 or splat_alpha < splat_composite.ALPHA_MIN:
                    continue
                if transmittance * (1 - splat_alpha) < splat_composite.TRANSMITTANCE_EPSILON:
                    break
                weight = splat_alpha * transmittance
                colour = [total + weight * value for total, value in zip(colour, colours[index])]
                z += weight * depths[index]
                transmittance *= 1 - splat_alpha
            rgb[row, column] = torch.tensor(colour) + transmittance * background.double()
            alpha[row, column] = 1 - transmittance
            depth[row, column] = z / max(1 - transmittance, 1e-6)
    return rgb, alpha, depth


@pytest.mark.parametrize("chunk_pairs, faint", [(splat_composite.CHUNK_PAIRS, False), (64, False), (97, True)])
def test_rasterizer_matches_a_per_pixel_loop(monkeypatch, chunk_pairs, faint):
    """Pixel-splat pairs, their opacity-cut boxes, sorting and chunking change nothing: the
    image equals 3DGS's loop over every splat for every pixel. Faint splats (down to below
    the 1/255 skip threshold) have the tightest boxes."""
    monkeypatch.setattr(splat_composite, "CHUNK_PAIRS", chunk_pairs)
    scene, cameras = random_splats(40, seed=5), scene_cameras()
    scene["opacities"] = scene["opacities"] ** 3 if faint else scene["opacities"] * 0.5 + 0.5
    background = torch.tensor([0.2, 0.4, 0.6])
    output = rasterize(**scene, cameras=cameras, background=background)
    projection = project(scene["means"], covariances(scene["quaternions"], scene["scales"]), cameras)
    for camera in range(len(cameras)):
        rgb, alpha, z_depth = per_pixel_reference(projection, scene["opacities"], scene["colours"], background,
                                                  camera)
        torch.testing.assert_close(output.rgb[camera].double(), rgb, rtol=0, atol=2e-5)
        torch.testing.assert_close(output.alpha[camera].double(), alpha, rtol=0, atol=2e-5)
        ray_lengths = splat_render._ray_lengths(cameras[camera], splat_render._ImageSize(WIDTH, HEIGHT))
        torch.testing.assert_close(output.depth[camera].double(), z_depth * ray_lengths[0], rtol=1e-5, atol=1e-4)
        assert alpha.max() > (0.5 if faint else 0.9) and (alpha < 1e-3).any()


def test_depth_is_ray_distance_like_fields():
    """A wide splat facing the camera: off-axis pixels see it farther away along their rays."""
    scene = splats_on_axis([3.0], [1.0], [[1.0, 1.0, 1.0]], scale=2.0)
    scene["scales"][0, 1] = 1e-3  # flat, facing the camera
    output = rasterize(**scene, cameras=axis_camera(), background=WHITE)
    offset = (0.5 - 4.5) / 10  # pixel (0, 4): one normalised coordinate off the axis
    assert float(output.depth[0, 4, 0]) == pytest.approx(3.0 * math.sqrt(1 + offset**2), rel=1e-4)


# -- gradients and the Splats model ----------------------------------------------------------

def double_cameras(cameras: Cameras) -> Cameras:
    return Cameras(*(value.double() if value.is_floating_point() else value
                     for value in (getattr(cameras, name) for name in Cameras._fields())))


def test_rasterizer_gradients_match_finite_differences():
    scene = random_splats(4, seed=6, extent=1.0)
    scene["opacities"] = scene["opacities"] * 0.5 + 0.2  # clear of the 0.99 clamp
    scene["scales"] = scene["scales"] + 0.2
    cameras = double_cameras(Cameras.create(look_at(torch.tensor([[0.0, -4.0, 0.5]]), torch.zeros(3)), fx=12.0,
                                            width=10, height=8))
    inputs = tuple(scene[name].double().requires_grad_() for name in
                   ("means", "quaternions", "scales", "opacities", "colours"))

    def render(*values):
        output = rasterize(*values, cameras=cameras, background=torch.full((3,), 0.5, dtype=torch.float64))
        return output.rgb, output.alpha

    assert torch.autograd.gradcheck(render, inputs, eps=1e-6, atol=1e-5)


def test_screen_space_mean_gradients_for_densification():
    scene, cameras = random_splats(300, seed=7), scene_cameras()
    generator = torch.Generator().manual_seed(8)
    splats = Splats(scene["means"], scene["scales"].log(), scene["quaternions"], torch.logit(scene["opacities"]),
                    torch.randn(300, 3, generator=generator), torch.randn(300, 3, 3, generator=generator) * 0.3)
    output = splats.render(cameras)
    assert output.rgb.shape == (3, HEIGHT, WIDTH, 3) and output.depth.shape == (3, HEIGHT, WIDTH)
    (output.rgb * torch.rand(output.rgb.shape, generator=generator)).sum().backward()
    moved = output.means2d.grad.norm(dim=-1) > 0  # [C, N]
    visible = (output.radii > 0).all(dim=-1)
    assert moved.sum() > 100 and not (moved & ~visible).any()
    for name, parameter in splats.named_parameters():
        assert torch.isfinite(parameter.grad).all(), name


def test_render_without_splats_in_view_is_background():
    scene = splats_on_axis([-2.0], [1.0], [[0.0, 0.0, 0.0]])  # behind the camera
    output = rasterize(**scene, cameras=axis_camera(), background=torch.tensor([0.1, 0.2, 0.3]))
    assert torch.equal(output.rgb, torch.tensor([0.1, 0.2, 0.3]).expand(1, 9, 9, 3))
    assert not output.alpha.any() and not output.radii.any()


def test_distorted_cameras_are_refused():
    cameras = Cameras.create(look_at(torch.tensor([[0.0, -5.0, 0.0]]), torch.zeros(3)), fx=10.0, width=9,
                             height=9, distortion=[0.1, 0.0, 0.0, 0.0])
    with pytest.raises(FieldkitError, match="distortion"):
        rasterize(**splats_on_axis([3.0], [1.0], [[1.0, 1.0, 1.0]]), cameras=cameras, background=WHITE)
