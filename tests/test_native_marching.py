"""The native ray-marching ops (cuda/marching.h) against their torch references: the same packed
samples (bit-identical in float32) on random grids, empty and full ones included, with rays that
miss the box; the same visible samples after early termination; on the CPU always and on CUDA
where a device is present."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import torch

from fieldkit import native
from fieldkit.render.occupancy import OccupancyGrid
from fieldkit.render.volume import (RaySamples, render_rays, sample_along_rays, sample_along_rays_reference,
                                    visible_samples, visible_samples_reference)

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]
# (rays, grid resolution, occupied fraction, samples per diagonal): an empty and a full grid, and
# ray counts above the launchers' thresholds for running in parallel
CASES = [(1, 4, 1.0, 16), (50, 8, 0.0, 64), (300, 16, 0.3, 128), (2000, 32, 0.5, 256), (5000, 64, 1.0, 256)]


def require(device: str) -> None:
    """The native path must be present: in CI a failed build is a failure, not a skip."""
    if not native.enabled():
        pytest.skip("FIELDKIT_NATIVE=0")
    assert native.available(device), "the native kernels did not build; see the fieldkit.native log line"


def random_grid(resolution: int, occupied: float, generator: torch.Generator) -> OccupancyGrid:
    grid = OccupancyGrid(torch.tensor([[-1.0, -0.5, -1.5], [1.2, 0.8, 1.0]]), resolution)
    grid.occupied.copy_(torch.rand(resolution**3, generator=generator) < occupied)
    return grid


def random_rays(count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays from outside the box towards a point in it, from inside it, along the axes (a zero
    direction component) and pointing away from it."""
    origins = (torch.rand(count, 3, generator=generator) - 0.5) * 8
    targets = torch.rand(count, 3, generator=generator) * 0.9 - 0.45
    directions = torch.nn.functional.normalize(targets - origins, dim=-1)
    origins[1::7] = targets[1::7]  # starts inside the box
    directions[2::7] = torch.tensor([0.0, 0.0, 1.0])  # axis-aligned
    directions[3::7] *= -1  # points away: a miss unless it starts inside
    return origins, directions


def assert_same_samples(actual: RaySamples, expected: RaySamples) -> None:
    for name in ("rays", "steps", "t", "points"):
        assert torch.equal(getattr(actual, name).cpu(), getattr(expected, name)), f"{name} differ"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", CASES, ids=lambda case: "-".join(map(str, case)))
def test_march_gives_the_reference_samples_bit_for_bit(case, device):
    require(device)
    rays, resolution, occupied, per_diagonal = case
    generator = torch.Generator().manual_seed(rays)
    grid = random_grid(resolution, occupied, generator)
    origins, directions = random_rays(rays, generator)
    step = float((grid.aabb[1] - grid.aabb[0]).norm()) / per_diagonal
    for jitter in (None, torch.rand(rays, generator=generator)):
        expected = sample_along_rays_reference(origins, directions, grid, step, jitter)
        on_device = (grid.to(device), origins.to(device), directions.to(device),
                     None if jitter is None else jitter.to(device))
        actual = sample_along_rays(on_device[1], on_device[2], on_device[0], step, on_device[3])
        assert_same_samples(actual, expected)
    if occupied == 0.0:
        assert expected.rays.numel() == 0
    else:
        assert expected.rays.numel() > rays  # the case does march something


def test_march_leaves_rays_that_need_gradient_to_the_reference():
    require("cpu")
    generator = torch.Generator().manual_seed(1)
    grid = random_grid(8, 1.0, generator)
    origins, directions = random_rays(20, generator)
    samples = sample_along_rays(origins.requires_grad_(), directions, grid, 0.05, None)
    assert samples.points.requires_grad, "the reference's points carry the rays' gradient"


def soft_field(generator: torch.Generator):
    """A log-density with clear and opaque regions, returned with a second column (the rows a
    visibility pass hands back as `values`)."""
    centres = torch.rand(6, 3, generator=generator) - 0.5
    scales = torch.rand(6, generator=generator) * 4 + 3

    def log_density(points: torch.Tensor) -> torch.Tensor:
        distance = torch.cdist(points, centres.to(points.device))  # [M, 6]
        value = (scales.to(points.device) - distance * 6).amax(dim=-1)
        return torch.stack([value, points[:, 0]], dim=-1)

    return log_density


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", CASES, ids=lambda case: "-".join(map(str, case)))
def test_early_termination_keeps_the_reference_samples(case, device):
    require(device)
    rays, resolution, occupied, per_diagonal = case
    generator = torch.Generator().manual_seed(rays + 1)
    grid = random_grid(resolution, occupied, generator).to(device)
    origins, directions = (tensor.to(device) for tensor in random_rays(rays, generator))
    step = float((grid.aabb[1] - grid.aabb[0]).norm()) / per_diagonal
    field = soft_field(generator)
    samples = sample_along_rays_reference(origins, directions, grid, step, None)
    expected = visible_samples_reference(field, samples, rays, step)
    actual = visible_samples(field, samples, rays, step)
    assert_same_samples(actual, RaySamples(*(getattr(expected, name).cpu() for name in ("t", "points", "rays",
                                                                                        "steps"))))
    assert torch.equal(actual.values.cpu(), expected.values.cpu()) if expected.values is not None else True
    if occupied > 0:
        assert 0 < expected.rays.numel() < samples.rays.numel(), "some rays must turn opaque, some samples stay"


def test_render_rays_is_the_same_with_and_without_native_marching(monkeypatch):
    require("cpu")
    generator = torch.Generator().manual_seed(7)
    grid = random_grid(16, 0.6, generator)
    origins, directions = random_rays(400, generator)
    jitter = torch.rand(400, generator=generator)
    field = soft_field(generator)

    def radiance(points, _directions):
        rows = field(points)
        return rows[:, 0], torch.sigmoid(points)

    def render():
        return render_rays(radiance, lambda points: field(points)[:, 0], grid, origins, directions, torch.ones(3),
                           0.02, jitter, max_samples=5000)

    native_output = render()
    monkeypatch.setenv("FIELDKIT_NATIVE", "0")
    reference_output = render()
    assert native_output.samples == reference_output.samples > 0
    assert native_output.rgb.shape == reference_output.rgb.shape and native_output.rgb.shape[0] < 400
    for name in ("rgb", "alpha", "depth"):
        torch.testing.assert_close(getattr(native_output, name), getattr(reference_output, name), rtol=1e-5,
                                   atol=1e-5)


# Every kernel of cuda/marching_kernels.cuh, instantiated as cuda_ops.cu launches it.
DEVICE_CODE_DRIVER = """
#include "marching_kernels.cuh"
namespace fieldkit {
#define FK_MARCH_KERNELS(T) \\
    template __global__ void march_count_kernel<T>(MarchJob<T>, int64_t, int64_t*); \\
    template __global__ void march_fill_kernel<T>(MarchJob<T>, int64_t, const int64_t*); \\
    template __global__ void segment_count_kernel<T>(const int64_t*, const int64_t*, const int64_t*, const T*, \\
                                                     int64_t, int64_t, T, int64_t*, int64_t*); \\
    template __global__ void visibility_kernel<T>(const int64_t*, const T*, int64_t, T, T*, bool*);
FK_MARCH_KERNELS(float)
FK_MARCH_KERNELS(double)
template __global__ void segment_fill_kernel<>(const int64_t*, const int64_t*, int64_t, int64_t*);
}
"""


def test_marching_device_code_compiles_with_nvcc(tmp_path):
    """The CUDA kernels compile wherever nvcc is, even where torch has no CUDA to build the op with."""
    nvcc = shutil.which("nvcc") or next((path for path in (os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"),
                                                                        "bin", "nvcc"),) if os.path.exists(path)), None)
    if nvcc is None:
        pytest.skip("nvcc is not installed")
    driver = tmp_path / "driver.cu"
    driver.write_text(DEVICE_CODE_DRIVER)
    result = subprocess.run([nvcc, "-std=c++17", "-O3", f"-I{native.SOURCES}", "-c", str(driver), "-o",
                             str(tmp_path / "driver.o")], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
