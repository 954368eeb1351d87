import math

import pytest
import torch

from fieldkit.cameras import Cameras, distort, look_at, undistort

REALISTIC_DISTORTIONS = [
    (-0.25, 0.06, 1e-3, -8e-4),  # barrel, like a GoPro-style wide lens
    (0.05, -0.01, 5e-4, 2e-4),  # mild pincushion
]


def random_c2w(seed: int) -> torch.Tensor:  # [4, 4]
    generator = torch.Generator().manual_seed(seed)
    rotation, _ = torch.linalg.qr(torch.randn(3, 3, generator=generator))
    if torch.det(rotation) < 0:
        rotation[:, 0] = -rotation[:, 0]
    c2w = torch.eye(4)
    c2w[:3, :3], c2w[:3, 3] = rotation, torch.randn(3, generator=generator)
    return c2w


def project_by_hand(point, c2w, fx, fy, cx, cy, coefficients) -> tuple[float, float]:
    """World point -> distorted pixel, written out independently of fieldkit."""
    camera = c2w[:3, :3].T @ (point - c2w[:3, 3])
    depth = -camera[2]  # OpenGL: the camera looks down -z
    x, y = float(camera[0] / depth), float(-camera[1] / depth)  # image y grows downwards
    k1, k2, p1, p2 = coefficients
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 * r2
    x_distorted = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    y_distorted = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return fx * x_distorted + cx, fy * y_distorted + cy


def distance_to_ray(point, origin, direction) -> float:
    offset = point - origin
    return float((offset - (offset @ direction) * direction).norm())


def test_ray_through_principal_point_looks_down_minus_z():
    c2w = random_c2w(0)
    cameras = Cameras.create(c2w, fx=300.0, fy=280.0, cx=170.3, cy=110.8, width=320, height=240)
    origins, directions = cameras.generate_rays(torch.tensor([0]), torch.tensor([170.3]), torch.tensor([110.8]))
    torch.testing.assert_close(origins[0], c2w[:3, 3])
    torch.testing.assert_close(directions[0], -c2w[:3, 2], atol=1e-6, rtol=0)


def test_corner_rays_match_the_field_of_view():
    width, height, fov_x = 200, 100, math.radians(90)
    cameras = Cameras.from_fov(torch.eye(4), width, height, fov_x)
    tan_x = math.tan(fov_x / 2)  # 1.0
    tan_y = tan_x * height / width  # square pixels
    corners_x = torch.tensor([0.0, width, 0.0, width])
    corners_y = torch.tensor([0.0, 0.0, height, height])
    _, directions = cameras.generate_rays(torch.zeros(4, dtype=torch.long), corners_x, corners_y)
    # identity pose: the camera frame is the world frame, x right, y up, looking down -z
    expected = torch.tensor([[-tan_x, tan_y, -1.0], [tan_x, tan_y, -1.0],
                             [-tan_x, -tan_y, -1.0], [tan_x, -tan_y, -1.0]])
    expected = expected / expected.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(directions, expected, atol=1e-6, rtol=0)
    horizontal_angle = torch.atan2(directions[1, 0], -directions[1, 2])
    assert float(horizontal_angle) == pytest.approx(fov_x / 2, abs=1e-6)


@pytest.mark.parametrize("coefficients", REALISTIC_DISTORTIONS)
def test_distort_undistort_round_trip(coefficients):
    ys, xs = torch.meshgrid(torch.linspace(-0.45, 0.45, 41), torch.linspace(-0.6, 0.6, 51), indexing="ij")
    x, y = xs.reshape(-1), ys.reshape(-1)
    k = torch.tensor(coefficients).expand(x.shape[0], 4)
    x_back, y_back = undistort(*distort(x, y, k), k)
    assert float((x_back - x).abs().max()) < 1e-5 and float((y_back - y).abs().max()) < 1e-5
    x_again, y_again = distort(*undistort(x, y, k), k)
    assert float((x_again - x).abs().max()) < 1e-5 and float((y_again - y).abs().max()) < 1e-5


@pytest.mark.parametrize("coefficients", REALISTIC_DISTORTIONS)
def test_distorted_rays_pass_through_projected_points(coefficients):
    c2w = look_at(torch.tensor([3.0, -2.0, 1.5]), torch.zeros(3))[0]
    fx, fy, cx, cy = 400.0, 410.0, 322.0, 237.0
    cameras = Cameras.create(c2w, fx, fy, cx, cy, width=640, height=480, distortion=coefficients)
    points = torch.tensor([[0.0, 0.0, 0.0], [0.6, 0.3, -0.4], [-0.5, 0.7, 0.5]])
    for point in points:
        pixel_x, pixel_y = project_by_hand(point, c2w, fx, fy, cx, cy, coefficients)
        origins, directions = cameras.generate_rays(torch.tensor([0]), torch.tensor([pixel_x]), torch.tensor([pixel_y]))
        assert distance_to_ray(point, origins[0], directions[0]) < 1e-4
    # without the distortion model the same pixels would miss the off-centre points
    plain = Cameras.create(c2w, fx, fy, cx, cy, width=640, height=480)
    pixel_x, pixel_y = project_by_hand(points[1], c2w, fx, fy, cx, cy, coefficients)
    origins, directions = plain.generate_rays(torch.tensor([0]), torch.tensor([pixel_x]), torch.tensor([pixel_y]))
    assert distance_to_ray(points[1], origins[0], directions[0]) > 1e-3


def test_downscaled_halves_intrinsics_and_keeps_corner_rays():
    cameras = Cameras.create(random_c2w(1), fx=500.0, fy=520.0, cx=161.0, cy=119.0, width=322, height=240)
    half = cameras.downscaled(2)
    torch.testing.assert_close(half.fx, cameras.fx / 2)
    torch.testing.assert_close(half.cx, cameras.cx / 2)
    assert int(half.width) == 161 and int(half.height) == 120
    odd = Cameras.create(torch.eye(4), fx=100.0, width=101, height=77).downscaled(2)
    assert (int(odd.width), int(odd.height)) == (50, 38)
    # the image borders still see the same directions after flooring the resolution
    full = Cameras.create(torch.eye(4), fx=100.0, width=101, height=77)
    _, before = full.generate_rays(torch.tensor([0]), torch.tensor([101.0]), torch.tensor([77.0]))
    _, after = odd.generate_rays(torch.tensor([0]), torch.tensor([50.0]), torch.tensor([38.0]))
    torch.testing.assert_close(before, after)


@pytest.mark.parametrize("up", [None, (0.0, 1.0, 0.0), (1.0, 0.0, 0.0)])
def test_look_at_gives_orthonormal_rotations_pointing_at_the_target(up):
    eyes = torch.tensor([[3.0, 0.0, 1.0], [0.0, -2.0, 2.0], [1.0, 1.0, 5.0], [0.0, 0.0, 4.0], [4.0, 0.0, 0.0],
                         [0.5, 4.0, 0.5]])
    target = torch.tensor([0.5, 0.5, 0.5])
    up = None if up is None else torch.tensor(up)
    c2w = look_at(eyes, target, up)  # [C, 4, 4]
    rotations = c2w[:, :3, :3]
    torch.testing.assert_close(rotations.transpose(1, 2) @ rotations, torch.eye(3).expand(len(eyes), 3, 3),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.linalg.det(rotations), torch.ones(len(eyes)), atol=1e-5, rtol=0)
    towards = (target - eyes) / (target - eyes).norm(dim=-1, keepdim=True)
    torch.testing.assert_close(-rotations[:, :, 2], towards, atol=1e-6, rtol=0)
    torch.testing.assert_close(c2w[:, :3, 3], eyes)
    world_up = torch.tensor([0.0, 0.0, 1.0]) if up is None else up
    not_along_up = (towards @ world_up).abs() < 0.99
    assert bool((rotations[not_along_up, :, 1] @ world_up > 0).all())  # the image is upright


def test_getitem_selects_cameras():
    c2w = torch.stack([random_c2w(seed) for seed in range(4)])
    cameras = Cameras.create(c2w, fx=torch.tensor([10.0, 20.0, 30.0, 40.0]), width=[8, 16, 24, 32], height=6,
                             distortion=torch.arange(16.0).reshape(4, 4) / 100)
    second = cameras[1]
    assert len(second) == 1
    torch.testing.assert_close(second.c2w[0], c2w[1])
    assert float(second.fx) == 20.0 and int(second.width) == 16 and int(second.height) == 6
    torch.testing.assert_close(second.distortion[0], torch.tensor([4.0, 5.0, 6.0, 7.0]) / 100)
    last = cameras[-1]
    assert len(last) == 1 and float(last.fx) == 40.0
    assert cameras[1:3].fx.tolist() == [20.0, 30.0]
    assert cameras[torch.tensor([3, 0])].width.tolist() == [32, 8]
    with pytest.raises(IndexError):
        cameras[4]
