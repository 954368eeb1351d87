"""The native kernels (cuda/, fieldkit/native.py) against their torch references: values and every
gradient on random inputs, on the CPU always and on CUDA where a device is present; and the
loader's fallback and cache key."""
from __future__ import annotations

import logging
import shutil

import pytest
import torch

from fieldkit import native
from fieldkit.fields.encodings import HashEncoding, hash_encode
from fieldkit.render.volume import accumulate, accumulate_reference

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]
# (levels, features, log2 table size, base resolution, finest resolution, points): dense and
# hashed levels, a feature count without a compile-time specialisation (3), and sizes above the
# launchers' block of 2048 points, so that their parallel loops run
HASH_CASES = [(2, 2, 6, 2, 8, 7), (4, 2, 10, 3, 24, 300), (3, 3, 8, 2, 40, 1000), (8, 4, 12, 4, 128, 2500),
              (16, 2, 14, 16, 512, 5000)]


def require(device: str) -> None:
    """The native path must be present: in CI a failed build is a failure, not a skip."""
    if not native.enabled():
        pytest.skip("FIELDKIT_NATIVE=0")
    assert native.available(device), "the native kernels did not build; see the fieldkit.native log line"


@pytest.fixture
def two_threads():
    """Both CPU threads, so that the launchers' OpenMP loops really split the work."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def close(actual: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-5) -> None:
    """Equal to float32 precision, relative to the tensor's largest entry (sums of 8 or more terms
    come out in another order in the kernels)."""
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=rtol * max(float(expected.detach().abs().max()), 1e-3))


def random_points(count: int, generator: torch.Generator, dtype=torch.float32) -> torch.Tensor:
    points = torch.rand(count, 3, generator=generator, dtype=dtype)
    points[: min(count, 4)] = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.5, 0.0], [0.25, 1.0, 1.0]],
                                           dtype=dtype)[: min(count, 4)]  # the closed cube's faces
    return points


# -- hash encoding ---------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", HASH_CASES, ids=lambda case: "-".join(map(str, case)))
def test_hash_encoding_matches_reference(case, device, two_threads):
    require(device)
    *config, count = case
    generator = torch.Generator().manual_seed(count)
    encoding = HashEncoding(*config).to(device)
    with torch.no_grad():
        encoding.table.copy_(torch.rand(encoding.table.shape, generator=generator) * 2 - 1)
    points = random_points(count, generator).to(device).requires_grad_()
    output = encoding(points)
    assert type(output.grad_fn).__name__.startswith("_NativeHashEncode"), "the native op did not run"
    expected = encoding.reference(points)
    close(output, expected)
    cotangent = torch.randn(expected.shape, generator=generator).to(device)
    grad_table, grad_points = torch.autograd.grad(output, [encoding.table, points], cotangent)
    expected_table, expected_points = torch.autograd.grad(expected, [encoding.table, points], cotangent)
    close(grad_table, expected_table)
    close(grad_points, expected_points, rtol=1e-4)  # resolution-scaled differences of nearby sums


@pytest.mark.parametrize("device", DEVICES)
def test_hash_encoding_gradcheck_float64(device):
    require(device)
    encoding = HashEncoding(3, 2, 7, 2, 16).double().to(device)  # dense 2 and 4, hashed 16
    generator = torch.Generator().manual_seed(0)
    table = (torch.rand(encoding.table.shape, generator=generator, dtype=torch.float64) * 2 - 1).to(device)
    # away from cell faces, where the encoding is smooth
    points = (torch.rand(5, 3, generator=generator, dtype=torch.float64) * 0.9 + 0.05).to(device)

    def encode(table, points):
        return hash_encode(points, table, encoding.resolution, encoding.multipliers, encoding.dense_levels,
                           encoding.log2_table_size)

    assert torch.autograd.gradcheck(encode, (table.requires_grad_(), points.requires_grad_()), eps=1e-6, atol=1e-6)


def test_hash_grid_field_runs_the_native_encoding():
    require("cpu")
    from fieldkit.fields import make_config, make_field

    aabb = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
    field = make_field("hashgrid", aabb, make_config("hashgrid", overrides={"levels": 4, "log2_table_size": 10,
                                                                            "max_resolution": 32}))
    encoding, _ = field.encode(torch.rand(64, 3))
    assert type(encoding.grad_fn).__name__.startswith("_NativeHashEncode")


def test_hash_encoding_converts_unsupported_inputs(caplog):
    require("cpu")
    encoding = HashEncoding(4, 2, 10, 3, 24)
    points = torch.rand(3, 200).t()  # strided, and bfloat16 below: the kernels take neither
    with caplog.at_level(logging.DEBUG, logger="fieldkit.native"):
        output = encoding(points.bfloat16())
        encoding(points.bfloat16())
    assert output.dtype == torch.float32
    close(output, encoding.reference(points.bfloat16().float()))
    lines = [record.getMessage() for record in caplog.records if "bfloat16" in record.getMessage()]
    assert len(lines) == 1, lines


# -- compositing -----------------------------------------------------------------------------

def packed_samples(rays: int, most: int, generator: torch.Generator, dtype):
    """Random packed samples, sorted by ray (some rays have none), and log-densities from clear
    to opaque."""
    counts = torch.randint(0, most + 1, (rays,), generator=generator)
    ray_of = torch.repeat_interleave(torch.arange(rays), counts)
    samples = ray_of.numel()
    log_density = torch.randn(samples, generator=generator, dtype=dtype) * 3 + 1
    rgb = torch.rand(samples, 3, generator=generator, dtype=dtype)
    t = torch.rand(samples, generator=generator, dtype=dtype) + ray_of.to(dtype)
    return log_density, rgb, t, ray_of


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("rays,most", [(1, 5), (40, 12), (700, 64)])
def test_compositing_matches_reference(rays, most, device, two_threads):
    require(device)
    generator = torch.Generator().manual_seed(rays)
    inputs = [tensor.to(device) for tensor in packed_samples(rays, most, generator, torch.float32)]
    log_density, rgb, t = (tensor.requires_grad_() for tensor in inputs[:3])
    step = 0.05
    weights, per_ray = accumulate(log_density, rgb, t, inputs[3], rays, step)
    assert type(per_ray.grad_fn).__name__.startswith("_NativeComposite"), "the native op did not run"
    expected_weights, expected = accumulate_reference(log_density, rgb, t, inputs[3], rays, step)
    close(weights, expected_weights)
    close(per_ray, expected)
    cotangent = torch.randn(rays, 5, generator=generator).to(device)
    grads = torch.autograd.grad(per_ray, [log_density, rgb, t], cotangent)
    expected_grads = torch.autograd.grad(expected, [log_density, rgb, t], cotangent)
    for grad, expected_grad in zip(grads, expected_grads):
        close(grad, expected_grad, rtol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
def test_compositing_gradcheck_float64(device):
    require(device)
    generator = torch.Generator().manual_seed(3)
    log_density, rgb, t, rays = (tensor.to(device) for tensor in packed_samples(6, 5, generator, torch.float64))

    def composite(log_density, rgb, t):
        return accumulate(log_density, rgb, t, rays, 6, 0.1)[1]

    assert torch.autograd.gradcheck(composite, (log_density.requires_grad_(), rgb.requires_grad_(),
                                                t.requires_grad_()), eps=1e-6, atol=1e-6)


def test_render_rays_agrees_with_and_without_native(monkeypatch):
    require("cpu")
    from fieldkit.fields import make_config, make_field
    from fieldkit.render.occupancy import OccupancyGrid
    from fieldkit.render.volume import render_rays

    torch.manual_seed(0)
    aabb = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
    field = make_field("hashgrid", aabb, make_config("hashgrid", overrides={"levels": 4, "log2_table_size": 10,
                                                                            "max_resolution": 32}))
    with torch.no_grad():
        field.grid.table.uniform_(-1, 1)
    origins = torch.randn(64, 3) * 0.1 + torch.tensor([0.0, 0.0, -3.0])
    directions = torch.nn.functional.normalize(torch.randn(64, 3) * 0.2 + torch.tensor([0.0, 0.0, 1.0]), dim=-1)

    def radiance(points, directions):
        output = field(points, directions)
        return output.log_density, output.rgb

    def render():
        output = render_rays(radiance, field.log_density, OccupancyGrid(aabb, 8), origins, directions, torch.ones(3),
                             0.02)
        (output.rgb.sum() + output.depth.sum()).backward()
        grad, field.grid.table.grad = field.grid.table.grad, None
        return output, grad

    native_output, native_grad = render()
    monkeypatch.setenv("FIELDKIT_NATIVE", "0")
    reference_output, reference_grad = render()
    assert native_output.samples > 0
    for name in ("rgb", "alpha", "depth"):
        close(getattr(native_output, name), getattr(reference_output, name), rtol=1e-4)
    close(native_grad, reference_grad, rtol=1e-4)


# -- the loader ------------------------------------------------------------------------------

def test_switch_off_falls_back_with_one_line(monkeypatch, caplog):
    monkeypatch.setenv("FIELDKIT_NATIVE", "0")
    native.reset()
    encoding = HashEncoding(4, 2, 10, 3, 24)
    with caplog.at_level(logging.INFO, logger="fieldkit.native"):
        output = encoding(torch.rand(50, 3))
        encoding(torch.rand(50, 3))
    assert "Native" not in type(output.grad_fn).__name__
    lines = [record.getMessage() for record in caplog.records if record.name == "fieldkit.native"]
    assert len(lines) == 1 and "FIELDKIT_NATIVE=0" in lines[0] and "\n" not in lines[0], lines


def test_failed_build_falls_back_with_one_line(monkeypatch, caplog, tmp_path):
    """A launcher that does not compile: the op runs its reference, and the compiler's error
    is named in one logged line."""
    sources = tmp_path / "cuda"
    shutil.copytree(native.SOURCES, sources)
    (sources / "cpu_ops.cpp").write_text("this is not C++;\n")
    monkeypatch.setattr(native, "SOURCES", sources)
    # as in a fresh process (the real library stays loaded, but the loader forgets it)
    monkeypatch.setattr(native, "_loaded", {})
    monkeypatch.setattr(native, "_libraries", {})
    monkeypatch.setenv("FIELDKIT_CACHE", str(tmp_path / "cache"))
    native.reset()
    if native._missing_tool("cpu") is not None:
        pytest.skip(f"no build is attempted here: {native._missing_tool('cpu')}")
    encoding = HashEncoding(4, 2, 10, 3, 24)
    points = torch.rand(50, 3)
    with caplog.at_level(logging.INFO, logger="fieldkit.native"):
        output = encoding(points)
        encoding(points)
    assert "Native" not in type(output.grad_fn).__name__
    close(output, encoding.reference(points))
    warnings = [record.getMessage() for record in caplog.records
                if record.name == "fieldkit.native" and record.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "build failed" in warnings[0] and "error" in warnings[0], warnings
    assert "\n" not in warnings[0]
    native.reset()


def test_cache_key_follows_sources_and_torch(monkeypatch, tmp_path):
    sources = tmp_path / "cuda"
    shutil.copytree(native.SOURCES, sources)
    key = native.cache_key("cpu", sources)
    assert key == native.cache_key("cpu", native.SOURCES), "the key depends on content, not on the folder"
    header = sources / "hash_encoding.h"
    header.write_text(header.read_text() + "\n// an edit\n")
    edited = native.cache_key("cpu", sources)
    assert edited != key
    monkeypatch.setattr(torch, "__version__", torch.__version__ + ".other")
    assert native.cache_key("cpu", sources) not in (key, edited)
