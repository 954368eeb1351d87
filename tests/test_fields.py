"""The five field architectures behind `Field`: the interface, the density activation, the hash
encoding, and that each one actually fits the tiny scene."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fieldkit.data import load_dataset
from fieldkit.fields import ARCHITECTURES, make_config, make_field
from fieldkit.fields.activations import LOG_DENSITY_MAX, LOG_DENSITY_MIN, density_from_log
from fieldkit.fields.base import GEOMETRY_FEATURES, GeometryVectorField
from fieldkit.fields.encodings import HashEncoding
from fieldkit.fields.tensorf import _sample_lines
from fieldkit.metrics import psnr
from fieldkit.fitting import evaluate
from fieldkit.train import Trainer

AABB = torch.tensor([[-1.0, -0.5, -2.0], [1.0, 1.5, 0.0]])


def sample_inputs(count: int = 257, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    # a margin outside the box too: points there are clamped onto its faces
    points = AABB[0] - 0.2 + torch.rand(count, 3, generator=generator) * (AABB[1] - AABB[0] + 0.4)
    directions = torch.nn.functional.normalize(torch.randn(count, 3, generator=generator), dim=-1)
    return points, directions


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_field_outputs(architecture):
    field = make_field(architecture, AABB)  # the cpu preset, as a user gets it
    assert field.architecture == architecture
    points, directions = sample_inputs()
    output = field(points, directions)
    assert output.log_density.shape == (257,) and output.rgb.shape == (257, 3)
    assert set(field.stage_names) <= set(output.stages), (field.stage_names, list(output.stages))
    for name in field.stage_names:
        assert output.stages[name].shape[0] == 257 and output.stages[name].ndim == 2
    if isinstance(field, GeometryVectorField):
        geometry = output.stages["geometry"]
        assert geometry.shape == (257, 1 + GEOMETRY_FEATURES) == (257, 16)
        assert torch.equal(output.log_density, geometry[:, 0].clamp(LOG_DENSITY_MIN, LOG_DENSITY_MAX))
    # the density-only path (occupancy updates) agrees with the full one
    assert torch.allclose(field.log_density(points), output.log_density, atol=1e-6)
    # every parameter is reached by the gradient of density and colour
    (output.log_density.sum() + output.rgb.sum()).backward()
    untouched = [name for name, parameter in field.named_parameters()
                 if parameter.grad is None or not parameter.grad.abs().sum() > 0]
    assert not untouched, f"parameters without gradient: {untouched}"


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_extreme_parameters_stay_in_range(architecture, small_fields):
    """With wild parameters the log-density is clamped to its range and rgb stays in [0, 1]."""
    field = make_field(architecture, AABB, make_config(architecture, overrides=small_fields[architecture]))
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in field.parameters():
            parameter.copy_(torch.randn_like(parameter) * 50)
    output = field(*sample_inputs())
    assert output.log_density.min() >= LOG_DENSITY_MIN and output.log_density.max() <= LOG_DENSITY_MAX
    assert (output.log_density.abs() == LOG_DENSITY_MAX).any(), "the clamp was never exercised"
    assert torch.isfinite(output.rgb).all() and output.rgb.min() >= 0 and output.rgb.max() <= 1


def test_truncated_exp_caps_its_gradient():
    x = torch.tensor([-3.0, 1.0, 10.0, 15.0, 20.0, 40.0], requires_grad=True)
    density = density_from_log(x)
    assert torch.allclose(density, torch.exp(x.detach()), rtol=1e-6)
    density.sum().backward()
    assert torch.allclose(x.grad, torch.exp(x.detach().clamp(max=15.0)), rtol=1e-6)
    assert x.grad[-1] == x.grad[-2] == x.grad[-3], "the gradient above 15 is capped at exp(15)"


# -- fitting the tiny scene ----------------------------------------------------------------

# Measured on the tiny dataset (32 px, 48 train / 3 test views) with the settings of
# conftest.FAST_FIELDS, one torch thread, on a shared 2-core machine:
#   architecture  untrained  after training  (steps, seconds of training)
#   mlp             11.9 dB       25.4 dB    (300, 4.9 s)
#   hashgrid        11.9 dB       26.3 dB    (200, 5.1 s)
#   tensorf-vm      12.1 dB       26.9 dB    (200, 4.1 s)
#   tensorf-cp      11.9 dB       25.3 dB    (250, 5.9 s)
#   voxels          13.4 dB       29.9 dB    (200, 2.8 s)
# Predicting the mean training image for every view already scores 19.4 dB (the object is small
# in the frame), so every floor sits more than 3 dB above that, and far above an untrained field.
PSNR_FLOORS = {"mlp": 22.5, "hashgrid": 23.5, "tensorf-vm": 24.0, "tensorf-cp": 22.5, "voxels": 27.0}


@pytest.fixture(scope="module")
def trivial_psnr(tiny_dataset):
    """Test PSNR of predicting the mean training image for every test view."""
    train, test = load_dataset(tiny_dataset, "train"), load_dataset(tiny_dataset, "test")
    mean_image = torch.stack(train.images).mean(dim=0)
    return sum(psnr(mean_image, image) for image in test.images) / len(test)


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_architecture_fits_the_tiny_scene(architecture, tiny_dataset, fast_settings, trivial_psnr, tmp_path):
    config, overrides = fast_settings[architecture]
    trainer = Trainer(str(tiny_dataset), architecture, tmp_path / "run", config, overrides)
    untrained = evaluate(trainer.model, trainer.test_set)["psnr"]
    metrics = trainer.run_training()
    print(f"{architecture}: untrained {untrained:.2f} dB, trained {metrics['psnr_test']:.2f} dB "
          f"(SSIM {metrics['ssim_test']:.3f}) in {metrics['seconds']:.1f} s; mean-image {trivial_psnr:.2f} dB")
    floor = PSNR_FLOORS[architecture]
    assert untrained < floor - 8, f"an untrained {architecture} field already scores {untrained:.2f} dB"
    assert floor > trivial_psnr + 3
    assert metrics["steps"] == config.steps
    assert metrics["psnr_test"] > floor, f"{architecture} reached only {metrics['psnr_test']:.2f} dB"
    assert metrics["ssim_test"] > 0.75


# -- hash encoding -------------------------------------------------------------------------

def row_index_encoding(levels=4, log2_table_size=12, base=3, finest=24) -> HashEncoding:
    """An encoding whose table holds each row's own index as feature 0, so that the encoding of a
    grid vertex reads out the table row that vertex maps to."""
    encoding = HashEncoding(levels, 2, log2_table_size, base, finest)
    with torch.no_grad():
        encoding.table.zero_()
        encoding.table[:, 0] = torch.arange(encoding.table.shape[0], dtype=torch.float32)
    return encoding


@pytest.mark.parametrize("finest", [24, 15])
def test_hash_encoding_dense_levels_have_no_collisions(finest):
    # resolutions 3, 6, 12, 24 (dense: 64, 343, 2197 <= 4096 rows; hashed: 25^3 = 15625 vertices)
    # or 3, 6, 15 (the last has 16^3 = 4096 vertices: exactly one table's worth)
    encoding = row_index_encoding(levels=4 if finest == 24 else 3, finest=finest)
    table_size = 2**12
    dense_seen = hashed_seen = 0
    for level, resolution in enumerate(encoding.resolution.round().long().tolist()):
        # every vertex k / resolution; the last one read from just inside the cube (x = 1 - 1e-6, as
        # Field.normalize clamps), whose blend is all but entirely that vertex's row
        axis = (torch.arange(resolution + 1, dtype=torch.float32) / resolution).clamp(max=1 - 1e-6)
        vertices = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)
        rows = encoding(vertices).view(len(vertices), encoding.levels, 2)[:, level, 0].round().long()
        assert ((rows >= level * table_size) & (rows < (level + 1) * table_size)).all(), "rows of another level"
        if (resolution + 1) ** 3 <= table_size:
            assert rows.unique().numel() == len(vertices), f"collisions on dense level {level} ({resolution})"
            dense_seen += 1
        else:  # more vertices than rows: the spatial hash must share rows (a sanity check of the probe)
            assert rows.unique().numel() < len(vertices)
            assert rows.unique().numel() > 0.5 * table_size, "the hash uses few of the rows"
            hashed_seen += 1
    assert dense_seen == 3 and hashed_seen == (1 if finest == 24 else 0)


def test_hash_encoding_accepts_the_closed_unit_cube():
    """Points on the far faces (x = 1) are in the encoding's domain [0, 1]^3: the corner beyond them
    has weight 0, but its row index must still lie in the table (and in the point's own level)."""
    encoding = row_index_encoding(levels=3, finest=15)  # the finest level fills its 4096 rows exactly
    corners = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.5, 0.25], [0.0, 1.0, 0.0]])
    inside = corners.clamp(max=1 - 1e-6)
    assert torch.allclose(encoding(corners), encoding(inside), atol=0.05)


def test_hash_encoding_is_continuous():
    torch.manual_seed(0)
    encoding = HashEncoding(4, 2, 12, 3, 24)
    with torch.no_grad():
        encoding.table.uniform_(-1, 1)
    generator = torch.Generator().manual_seed(1)
    # points just either side of a cell boundary of the finest level (k / 24 on the x axis) ...
    base = torch.rand(500, 3, generator=generator) * 0.9 + 0.05
    base[:, 0] = torch.randint(1, 24, (500,), generator=generator) / 24.0
    delta = torch.tensor([1e-5, 0.0, 0.0])
    across = (encoding(base + delta) - encoding(base - delta)).abs().max()
    # ... and nearby random points
    shifted = (base + torch.randn(500, 3, generator=generator) * 1e-5).clamp(0, 1)
    nearby = (encoding(shifted) - encoding(base)).abs().max()
    # trilinear interpolation is Lipschitz with constant <= resolution * max row difference (2)
    assert across < 24 * 2 * 2e-5 * 1.5 and nearby < 24 * 2 * 1e-4
    far = (encoding(torch.rand(500, 3, generator=generator)) - encoding(base)).abs().max()
    assert far > 0.5


def test_hash_encoding_backward_matches_finite_differences():
    encoding = HashEncoding(2, 2, 6, 2, 8).double()  # resolutions 2 (dense) and 8 (hashed into 64 rows)
    generator = torch.Generator().manual_seed(0)
    table = (torch.rand(encoding.table.shape, generator=generator, dtype=torch.float64) * 2 - 1).requires_grad_()
    points = (torch.rand(6, 3, generator=generator, dtype=torch.float64) * 0.9 + 0.05).requires_grad_()

    def encode(table, points):
        return torch.func.functional_call(encoding, {"table": table}, (points,))

    assert torch.autograd.gradcheck(encode, (table, points), eps=1e-6, atol=1e-6)


def test_hash_grid_backend_resolution_is_explicit(monkeypatch):
    from fieldkit.errors import FieldkitError
    from fieldkit.fields import hashgrid
    from fieldkit.fields.hashgrid import resolve_backend

    # an importable tinycudann on a GPU is used only when asked for
    monkeypatch.setattr(hashgrid.importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(hashgrid.torch.cuda, "is_available", lambda: True)
    assert resolve_backend("torch") == resolve_backend("auto") == make_config("hashgrid").backend == "torch"
    assert resolve_backend("tcnn") == resolve_backend("tinycudann") == "tinycudann"
    monkeypatch.setattr(hashgrid.torch.cuda, "is_available", lambda: False)
    with pytest.raises(FieldkitError, match="needs tinycudann with CUDA"):
        resolve_backend("tcnn")
    monkeypatch.undo()
    with pytest.raises(FieldkitError, match="unknown hash-grid backend"):
        resolve_backend("cuda-magic")
    field = make_field("hashgrid", AABB, make_config("hashgrid", overrides={"levels": 2, "log2_table_size": 8}))
    assert field.config.backend in ("torch", "tinycudann"), "the asset records the backend that was resolved"


@pytest.mark.gpu
def test_tinycudann_backend_gives_finite_output_on_cuda():
    pytest.importorskip("tinycudann", reason="tinycudann is not installed")
    config = make_config("hashgrid", overrides={"backend": "tinycudann"})
    field = make_field("hashgrid", AABB, config).cuda()
    points, directions = sample_inputs()
    output = field(points.cuda(), directions.cuda())
    assert output.log_density.shape == (257,) and torch.isfinite(output.rgb).all()


def test_tensorf_line_interpolation_matches_grid_sample():
    """TensoRF interpolates its lines with a batched product; grid_sample on 1-pixel-wide images is
    the reference."""
    torch.manual_seed(0)
    lines = torch.randn(3, 5, 17, dtype=torch.float64, requires_grad=True)
    coordinates = torch.rand(200, 3, dtype=torch.float64) * 2 - 1
    coordinates[:3] = torch.tensor([-1.0, 1.0, 0.0], dtype=torch.float64)  # both ends and the middle
    interpolated = _sample_lines(lines, coordinates)  # [3, N, C]
    # each line as a [C, R, 1] image sampled at (x=0, y=coordinate)
    grid = torch.stack([torch.zeros_like(coordinates.T), coordinates.T], dim=-1)[:, :, None, :]  # [3, N, 1, 2]
    reference = F.grid_sample(lines[..., None], grid, mode="bilinear", align_corners=True)[..., 0]  # [3, C, N]
    assert torch.allclose(interpolated, reference.transpose(1, 2), atol=1e-12)
    weights = torch.randn_like(interpolated)
    gradient, = torch.autograd.grad((interpolated * weights).sum(), lines)
    reference_gradient, = torch.autograd.grad((reference.transpose(1, 2) * weights).sum(), lines)
    assert torch.allclose(gradient, reference_gradient, atol=1e-10)


def test_voxel_interpolation_matches_grid_sample():
    """Voxels interpolate by a weighted embedding_bag over the eight corners: density always, the
    SH coefficients when no gradient is wanted. grid_sample is the reference, at the grid's
    corners and faces too, and again after the coefficients change (the vertex-major copy)."""
    torch.manual_seed(0)
    field = make_field("voxels", AABB, make_config("voxels", "cpu", {"resolution": 9}))
    with torch.no_grad():
        field.density.normal_()
        field.sh.normal_()
    unit = torch.rand(300, 3)
    unit[:2] = torch.tensor([[0.0, 0.0, 0.0], [1 - 1e-6, 0.5, 1 - 1e-6]])
    points = AABB[0] + unit * (AABB[1] - AABB[0])
    directions = F.normalize(torch.randn(300, 3), dim=-1)
    reference_coordinates = (field.normalize(points) * 2 - 1).reshape(1, -1, 1, 1, 3)

    def reference(grid):  # [N, C]
        sampled = F.grid_sample(grid, reference_coordinates, mode="bilinear", align_corners=True)
        return sampled.reshape(grid.shape[1], -1).T

    log_density = field.log_density(points)
    assert torch.allclose(log_density, reference(field.density)[:, 0], atol=1e-5)
    gradient, = torch.autograd.grad(log_density.sum(), field.density)
    reference_gradient, = torch.autograd.grad(reference(field.density).sum(), field.density)
    assert torch.allclose(gradient, reference_gradient, atol=1e-5)
    for _ in range(2):
        with torch.no_grad():
            assert torch.allclose(field(points, directions).stages["sh"], reference(field.sh), atol=1e-5)
            field.sh.add_(1.0)
