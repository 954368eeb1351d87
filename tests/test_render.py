"""The volume renderer and the occupancy grid, against closed forms and a brute-force composite."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fieldkit.fields.activations import LOG_DENSITY_MIN
from fieldkit.render.occupancy import OccupancyGrid
from fieldkit.render.volume import TRANSMITTANCE_EPSILON, ray_aabb, render_rays

UNIT_BOX = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])


def box_field(sigma: float, colour, low=-0.5, high=0.5):
    """Callbacks of a field with density `sigma` and colour `colour` inside the cube [low, high]^3."""
    colour = torch.tensor(colour)

    def log_density_fn(points):  # [M, 3] -> [M]
        inside = ((points >= low) & (points <= high)).all(dim=-1)
        return torch.where(inside, torch.full_like(points[:, 0], math.log(sigma)),
                           torch.full_like(points[:, 0], LOG_DENSITY_MIN))

    def radiance_fn(points, directions):  # -> [M], [M, 3]
        return log_density_fn(points), colour.expand(points.shape[0], 3)

    return radiance_fn, log_density_fn


def test_ray_aabb_entry_and_exit_distances():
    origins = torch.tensor([[-2.0, 0.0, 0.0], [0.0, 0.0, 0.0], [-2.0, -2.0, -2.0], [2.0, 0.5, 0.0],
                            [-2.0, 0.3, -0.2]])
    directions = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 1.0], [-1.0, 0.0, 0.0],
                               [1.0, 0.5, 0.0]])
    directions = directions / directions.norm(dim=-1, keepdim=True)
    near, far = ray_aabb(origins, directions, UNIT_BOX)
    slanted = math.sqrt(1.25)  # length along the ray per unit of x, for the direction (1, 0.5, 0)
    # the last ray enters through the x = -1 face (at y = 0.8) and leaves through y = 1 (at x = -0.6)
    expected_near = torch.tensor([1.0, 0.0, math.sqrt(3), 1.0, slanted])
    expected_far = torch.tensor([3.0, 1.0, 3 * math.sqrt(3), 3.0, 1.4 * slanted])
    assert torch.allclose(near, expected_near, atol=1e-5)
    assert torch.allclose(far, expected_far, atol=1e-5)


def test_ray_aabb_misses():
    origins = torch.tensor([[-2.0, 3.0, 0.0], [-2.0, 1.5, 0.0], [-2.0, 0.0, 0.0], [-2.0, 0.0, 3.0]])
    directions = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.6, 0.0, 0.8]])
    near, far = ray_aabb(origins, directions, UNIT_BOX)
    # beside the box, parallel to a slab outside it, pointing away, and passing above a corner
    assert (far < near).all(), (near, far)


# rays through the cube [-0.5, 0.5]^3 inside the unit box: (origin, direction, path length in the cube,
# distance at which the ray enters the cube)
_SLANT = math.sqrt(1 + 0.3**2)
THROUGH_CUBE = [
    ((-2.0, 0.1, -0.2), (1.0, 0.0, 0.0), 1.0, 1.5),
    ((0.2, -3.0, 0.3), (0.0, 1.0, 0.0), 1.0, 2.5),
    ((-0.1, 0.4, 2.5), (0.0, 0.0, -1.0), 1.0, 2.0),
    # slanted: y is -0.15 where it enters through x = -0.5 and 0.15 where it leaves through x = 0.5
    ((-2.0, -0.6, 0.05), (1.0, 0.3, 0.0), _SLANT, 1.5 * _SLANT),
]


@pytest.mark.parametrize("sigma", [0.7, 2.0, 6.0])
def test_uniform_density_cube_matches_the_closed_form(sigma):
    colour, background = (0.2, 0.6, 0.9), torch.tensor([1.0, 0.5, 0.0])
    radiance_fn, log_density_fn = box_field(sigma, colour)
    grid = OccupancyGrid(UNIT_BOX, resolution=8)  # every cell occupied
    rays = THROUGH_CUBE
    origins = torch.tensor([ray[0] for ray in rays])
    directions = torch.tensor([ray[1] for ray in rays])
    directions = directions / directions.norm(dim=-1, keepdim=True)
    step = 1e-3
    out = render_rays(radiance_fn, log_density_fn, grid, origins, directions, background, step)

    length = torch.tensor([ray[2] for ray in rays])
    entry = torch.tensor([ray[3] for ray in rays])
    expected_alpha = 1 - torch.exp(-sigma * length)
    assert torch.allclose(out.alpha, expected_alpha, atol=1e-3), (out.alpha, expected_alpha)
    expected_rgb = torch.tensor(colour) * expected_alpha[:, None] + background * (1 - expected_alpha[:, None])
    assert torch.allclose(out.rgb, expected_rgb, atol=1e-3)
    # the mean of an exponential distribution of rate sigma truncated to [0, L]
    decay = torch.exp(-sigma * length)
    expected_depth = entry + 1 / sigma - length * decay / (1 - decay)
    assert torch.allclose(out.depth, expected_depth, atol=5e-3), (out.depth, expected_depth)


def test_an_opaque_cube_hides_the_background():
    radiance_fn, log_density_fn = box_field(200.0, (0.2, 0.6, 0.9))
    origins, directions = torch.tensor([[-2.0, 0.1, -0.2]]), torch.tensor([[1.0, 0.0, 0.0]])
    out = render_rays(radiance_fn, log_density_fn, OccupancyGrid(UNIT_BOX, resolution=8), origins, directions,
                      torch.tensor([1.0, 0.5, 0.0]), 1e-3)
    assert float(out.alpha) == pytest.approx(1.0, abs=2 * TRANSMITTANCE_EPSILON)
    assert torch.allclose(out.rgb[0], torch.tensor([0.2, 0.6, 0.9]), atol=1e-3)
    assert float(out.depth) == pytest.approx(1.5 + 1 / 200.0, abs=2e-3)  # the front face


def test_rays_that_miss_show_the_background():
    radiance_fn, log_density_fn = box_field(50.0, (0.2, 0.6, 0.9))
    background = torch.tensor([1.0, 0.5, 0.0])
    # the first passes through the unit box beside the cube, the second misses the box altogether
    origins = torch.tensor([[-2.0, 0.8, 0.0], [-2.0, 3.0, 0.0]])
    directions = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    out = render_rays(radiance_fn, log_density_fn, OccupancyGrid(UNIT_BOX, resolution=8), origins, directions,
                      background, 1e-2)
    assert torch.allclose(out.alpha, torch.zeros(2), atol=1e-5)
    assert torch.allclose(out.rgb, background.expand(2, 3), atol=1e-5)
    assert float(out.alpha[1]) == 0.0


def test_unoccupied_cells_are_skipped():
    """A cell the occupancy grid marks empty contributes nothing, even if the field is dense there."""
    radiance_fn, log_density_fn = box_field(5.0, (0.2, 0.6, 0.9))
    grid = OccupancyGrid(UNIT_BOX, resolution=8)
    grid.occupied.zero_()
    out = render_rays(radiance_fn, log_density_fn, grid, torch.tensor([[-2.0, 0.1, 0.1]]),
                      torch.tensor([[1.0, 0.0, 0.0]]), torch.ones(3), 1e-2)
    assert float(out.alpha) == 0.0 and out.samples == 0


# -- occupancy grid ------------------------------------------------------------------------

CENTRE, RADIUS = torch.tensor([0.3, -0.2, 0.1]), 0.3


def sphere_log_density(inside: float, outside: float = LOG_DENSITY_MIN):
    def log_density_fn(points):
        within = (points - CENTRE).norm(dim=-1) <= RADIUS
        return torch.where(within, torch.full_like(points[:, 0], inside), torch.full_like(points[:, 0], outside))

    return log_density_fn


def random_points(count: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(count, 3, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_occupancy_grid_marks_the_sphere_and_nothing_far_from_it():
    grid = OccupancyGrid(UNIT_BOX, resolution=32)
    grid.update(sphere_log_density(5.0), step_size=0.01, generator=torch.Generator().manual_seed(0))
    points = random_points(20000)
    distance = (points - CENTRE).norm(dim=-1)
    cell_diagonal = math.sqrt(3) * 2 / 32
    occupied = grid.is_occupied(points)
    assert occupied[distance < RADIUS - cell_diagonal].all()
    assert not occupied[distance > RADIUS + cell_diagonal].any()
    sphere_fraction = 4 / 3 * math.pi * RADIUS**3 / 8
    assert 0.5 * sphere_fraction < grid.occupied_fraction() < 2.5 * sphere_fraction
    # points outside the box are never occupied
    assert not grid.is_occupied(torch.tensor([[1.5, 0.0, 0.0], [0.3, -0.2, -1.01]])).any()


def test_occupancy_threshold_is_one_step_of_opacity():
    """Cells whose density makes one step less than `opacity_threshold` opaque are empty."""
    step = 0.01  # opacity threshold 0.01 -> a density threshold of 1
    points = random_points(5000, seed=1)
    far_away = (points - CENTRE).norm(dim=-1) > RADIUS + 0.2
    for background, expect_occupied in ((0.5, False), (1.5, True)):
        grid = OccupancyGrid(UNIT_BOX, resolution=16, opacity_threshold=0.01)
        grid.update(sphere_log_density(math.log(100.0), math.log(background)), step_size=step)
        assert bool(grid.is_occupied(points[far_away]).all()) == expect_occupied
        assert bool(grid.is_occupied(points[far_away]).any()) == expect_occupied
        assert grid.is_occupied(CENTRE[None])[0]


def test_a_faint_field_keeps_its_cells():
    """instant-ngp's rule: the threshold never exceeds the mean density, so a field too faint to
    pass the opacity threshold anywhere (here 0.5 < 1) still keeps the cells where it has density."""
    grid = OccupancyGrid(UNIT_BOX, resolution=16, opacity_threshold=0.01)
    grid.update(sphere_log_density(math.log(0.5)), step_size=0.01)
    assert grid.is_occupied(CENTRE[None])[0]
    points = random_points(5000, seed=2)
    assert not grid.is_occupied(points[(points - CENTRE).norm(dim=-1) > RADIUS + 0.25]).any()


def test_occupancy_density_is_a_decaying_maximum():
    grid = OccupancyGrid(UNIT_BOX, resolution=8, decay=0.9)
    grid.update(lambda points: torch.full_like(points[:, 0], math.log(4.0)), step_size=0.01)
    assert torch.allclose(grid.density, torch.full_like(grid.density, 4.0))
    grid.update(lambda points: torch.full_like(points[:, 0], math.log(1.0)), step_size=0.01)
    assert torch.allclose(grid.density, torch.full_like(grid.density, 3.6))
    grid.update(lambda points: torch.full_like(points[:, 0], math.log(5.0)), step_size=0.01)
    assert torch.allclose(grid.density, torch.full_like(grid.density, 5.0))


# -- early termination ---------------------------------------------------------------------

def blob(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An opaque ball in a soft shell with colour varying in space: (density [M], rgb [M, 3])."""
    radius = np.linalg.norm(points - np.array([0.1, 0.0, -0.1]), axis=-1)
    density = 100.0 / (1.0 + np.exp((radius - 0.45) * 25.0))
    rgb = 1.0 / (1.0 + np.exp(-3.0 * points[:, [0, 1, 2]] * np.array([1.0, -1.5, 2.0])))
    return density, rgb


def blob_callbacks():
    def log_density_fn(points):
        density, _ = blob(points.double().numpy())
        return torch.from_numpy(np.log(np.maximum(density, 1e-30))).float().clamp(LOG_DENSITY_MIN, 15.0)

    def radiance_fn(points, directions):
        density, rgb = blob(points.double().numpy())
        return (torch.from_numpy(np.log(np.maximum(density, 1e-30))).float().clamp(LOG_DENSITY_MIN, 15.0),
                torch.from_numpy(rgb).float())

    return radiance_fn, log_density_fn


def brute_force(origin, direction, background, step):
    """Composites every sample in the box front to back in plain Python, with no termination."""
    aabb = UNIT_BOX.double().numpy()
    with np.errstate(divide="ignore"):
        t0, t1 = (aabb[0] - origin) / direction, (aabb[1] - origin) / direction
    near, far = max(np.minimum(t0, t1).max(), 0.0), np.maximum(t0, t1).min()
    count = int(np.linalg.norm(aabb[1] - aabb[0]) / step) + 1
    transmittance, rgb, alpha, depth = 1.0, np.zeros(3), 0.0, 0.0
    for k in range(count):
        t = near + (k + 0.5) * step
        if t >= far:
            break
        density, colour = blob((origin + t * direction)[None])
        weight = transmittance * (1 - math.exp(-max(float(density[0]), math.exp(LOG_DENSITY_MIN)) * step))
        rgb, alpha, depth = rgb + weight * colour[0], alpha + weight, depth + weight * t
        transmittance *= math.exp(-float(density[0]) * step)
    return rgb + (1 - alpha) * background, alpha, depth / max(alpha, 1e-6), transmittance


def test_early_termination_does_not_change_the_image():
    generator = torch.Generator().manual_seed(3)
    # rays from a sphere of radius 3 aimed near the blob: some hit its core, some graze the shell,
    # some miss it
    origins = torch.nn.functional.normalize(torch.randn(16, 3, generator=generator), dim=-1) * 3
    targets = (torch.rand(16, 3, generator=generator) * 2 - 1) * 0.5
    directions = torch.nn.functional.normalize(targets - origins, dim=-1)
    # and two fixed rays: one that grazes the shell (semi-transparent) and one that misses the blob
    origins = torch.cat([origins, torch.tensor([[-3.0, 0.6, -0.1], [-3.0, 0.9, 0.9]])])
    directions = torch.cat([directions, torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])])
    background = np.array([1.0, 0.5, 0.0])
    step = 0.01
    radiance_fn, log_density_fn = blob_callbacks()
    out = render_rays(radiance_fn, log_density_fn, OccupancyGrid(UNIT_BOX, resolution=16), origins, directions,
                      torch.tensor(background, dtype=torch.float32), step)
    reference = [brute_force(o.double().numpy(), d.double().numpy(), background, step)
                 for o, d in zip(origins, directions)]
    final_transmittance = np.array([r[3] for r in reference])
    assert (final_transmittance < TRANSMITTANCE_EPSILON * 1e-2).sum() >= 4, "some rays must become opaque"
    assert 0.1 < final_transmittance[-2] < 0.9 and final_transmittance[-1] > 0.99
    assert np.allclose(out.rgb.numpy(), np.stack([r[0] for r in reference]), atol=5e-4)
    assert np.allclose(out.alpha.numpy(), np.array([r[1] for r in reference]), atol=5e-4)
    opaque = final_transmittance < 0.5
    assert np.allclose(out.depth.numpy()[opaque], np.array([r[2] for r in reference])[opaque], atol=2e-3)


def test_a_ray_renders_the_same_whatever_rays_come_before_it():
    """Samples are composited packed, with one running sum of optical depth over the whole
    batch: thousands of opaque rays ahead of a semi-transparent one must not cost it precision."""
    radiance_fn, log_density_fn = blob_callbacks()
    grazing = torch.tensor([[-3.0, 0.6, -0.1]]), torch.tensor([[1.0, 0.0, 0.0]])
    core = torch.tensor([[-3.0, 0.0, -0.1]]).expand(20000, 3), torch.tensor([[1.0, 0.0, 0.0]]).expand(20000, 3)
    background, step = torch.tensor([1.0, 0.5, 0.0]), 0.01
    origins, directions = (torch.cat([core[i], grazing[i]]) for i in range(2))
    grid = OccupancyGrid(UNIT_BOX, resolution=16)
    alone = render_rays(radiance_fn, log_density_fn, grid, *grazing, background, step)
    batch = render_rays(radiance_fn, log_density_fn, grid, origins, directions, background, step)
    assert 0.1 < float(alone.alpha) < 0.9 and float(batch.alpha[:-1].min()) > 1 - 2 * TRANSMITTANCE_EPSILON
    assert torch.allclose(batch.rgb[-1], alone.rgb[0], atol=1e-6) and torch.allclose(batch.alpha[-1], alone.alpha[0],
                                                                                     atol=1e-6)
