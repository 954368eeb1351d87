"""`fieldkit convert`: progressive volume distillation between field architectures.

Two small teachers are trained on the tiny dataset (a hash grid and a voxel grid), then
distilled into a student of each architecture for a few hundred steps each.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json

import pytest
import torch

from fieldkit.cameras import look_at
from fieldkit.cli import main
from fieldkit.distill import ConvertConfig, Converter, batch
from fieldkit.distill.active import HardestPool, focus_mask
from fieldkit.distill.batch import distill_rays, learn_rays, teach_rays
from fieldkit.distill.evaluation import compare_to_teacher
from fieldkit.distill.projection import project_onto_voxels
from fieldkit.distill.sampling import BoxRig, OrbitRig, choose_rig
from fieldkit.distill.stages import shared_stages
from fieldkit.distill.student import load_teacher, make_student, sample_stride
from fieldkit.defaults import CONVERT_SECONDS, WARMUP
from fieldkit.errors import FieldkitError
from fieldkit.fields import ARCHITECTURES, make_config, make_field
from fieldkit.gaussians.model import SH_C0
from fieldkit.io import load
from fieldkit.radiance import RadianceField
from fieldkit.render.occupancy import OccupancyGrid
from fieldkit.render.volume import ray_aabb
from fieldkit.train import Trainer

# teacher architecture, student architecture, student overrides, steps, PSNR-vs-teacher floor.
# Measured on one thread (an untrained student scores 19.4-19.5 dB against either teacher):
# hashgrid -> mlp 26.6 dB, voxels -> tensorf-vm 33.6 dB, hashgrid -> small hashgrid 30.4 dB,
# voxels -> tensorf-cp 32.0 dB, hashgrid -> voxels 33.0 dB: every architecture is a student.
SMALL_HASHGRID = {"levels": 4, "log2_table_size": 12, "max_resolution": 32, "learning_rate": 6e-2}
PAIRS = {
    "hashgrid-mlp": ("hashgrid", "mlp", {"width": 64, "frequencies": 6, "learning_rate": 1e-2}, 150, 24.0),
    "voxels-tensorf-vm": ("voxels", "tensorf-vm", {"resolution": 48, "components": 8, "learning_rate": 5e-2,
                                                    "network_learning_rate": 5e-3}, 150, 30.0),
    "hashgrid-hashgrid": ("hashgrid", "hashgrid", SMALL_HASHGRID, 150, 27.0),
    "voxels-tensorf-cp": ("voxels", "tensorf-cp", {"resolution": 32, "components": 4, "learning_rate": 5e-2,
                                                    "network_learning_rate": 5e-3}, 300, 29.0),
    "hashgrid-voxels": ("hashgrid", "voxels", {"resolution": 32, "tv_voxels": 4096, "learning_rate": 0.15}, 150, 30.0),
}
UNTRAINED_CEILING = 21.0  # an untrained student must score below this, or the floors above prove nothing
FAST_CONVERT = ConvertConfig(batch_rays=256, eval_views=3, eval_resolution=32, checkpoint_seconds=1e9)


def run(argv) -> tuple[int, str, str]:
    """main(argv) -> (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(arg) for arg in argv])
    return code, out.getvalue(), err.getvalue()


def convert_args(teacher, arch, out, config: ConvertConfig, overrides: dict) -> list[str]:
    args = ["convert", teacher, "--to", arch, "--out", out]
    for name, value in dataclasses.asdict(config).items():
        if isinstance(value, bool):
            args += [] if value else ["--no-" + name.replace("_", "-")]
        elif value is not None:  # None: the default, which the command chooses too
            args += ["--" + name.replace("_", "-"), str(value)]
    return args + [f"--set={name}={value}" for name, value in overrides.items()]


def error_line(stderr: str) -> str:
    # progress lines and the log's notes ("fieldkit: the student starts ...") come before it
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("convert ")
             and (line.startswith("fieldkit: error: ") or not line.startswith("fieldkit: "))]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("fieldkit: error: ") and "Traceback" not in stderr
    return lines[0]


@pytest.fixture(scope="module")
def teachers(tiny_dataset, fast_settings, tmp_path_factory) -> dict[str, str]:
    """architecture -> path of a small trained teacher asset."""
    paths = {}
    for arch in ("hashgrid", "voxels"):
        config, overrides = fast_settings[arch]
        out = tmp_path_factory.mktemp(f"teacher-{arch}")
        Trainer(tiny_dataset, arch, out, dataclasses.replace(config, steps=150), overrides).run_training()
        paths[arch] = str(out / "field.safetensors")
    return paths


@pytest.fixture(scope="module")
def converted(teachers, tmp_path_factory) -> dict[str, tuple]:
    """pair name -> (run directory, metrics, stderr of `fieldkit convert`)."""
    results = {}
    for name, (teacher, student, overrides, steps, _) in PAIRS.items():
        out = tmp_path_factory.mktemp(name) / "run"
        code, _, stderr = run(convert_args(teachers[teacher], student, out,
                                           dataclasses.replace(FAST_CONVERT, steps=steps), overrides))
        assert code == 0, stderr
        results[name] = (out, json.loads((out / "metrics.json").read_text()), stderr)
    return results


def untrained_student(teacher_path: str, name: str):
    _, student, overrides, _, _ = PAIRS[name]
    teacher = load_teacher(teacher_path)
    torch.manual_seed(0)
    return teacher, make_student(teacher, student, make_config(student, "cpu", overrides)).eval()


@pytest.mark.parametrize("name", PAIRS)
def test_students_render_like_their_teachers(name, converted, teachers):
    out, metrics, _ = converted[name]
    teacher, untrained = untrained_student(teachers[PAIRS[name][0]], name)
    before = compare_to_teacher(teacher, untrained, FAST_CONVERT.eval_views, FAST_CONVERT.eval_resolution)
    assert before["psnr_vs_teacher"] < UNTRAINED_CEILING
    assert metrics["psnr_vs_teacher"] > PAIRS[name][4], metrics
    assert metrics["steps"] == PAIRS[name][3] and metrics["seconds"] > 0
    # the teacher carries its dataset, so the student is scored on the real test images too
    assert metrics["psnr_test"] > metrics["teacher_psnr_test"] - 4.0
    assert load(out / "field.safetensors").metrics["psnr_vs_teacher"] == metrics["psnr_vs_teacher"]


@pytest.mark.parametrize("name", PAIRS)
def test_density_is_matched_in_log_space(name, converted, teachers):
    teacher, untrained = untrained_student(teachers[PAIRS[name][0]], name)
    before = compare_to_teacher(teacher, untrained, 1, FAST_CONVERT.eval_resolution)["log_density_rmse"]
    # measured RMS log-density error, untrained -> distilled: hashgrid -> mlp 4.4 -> 2.5,
    # voxels -> tensorf-vm 1.4 -> 0.4, hashgrid -> small hashgrid 4.4 -> 1.2
    assert converted[name][1]["log_density_rmse"] < 0.75 * before


def test_a_very_dense_teacher_gives_bounded_losses(tiny_dataset, small_fields):
    """A region at the density cap (sigma = e^15) would put ~1e13 in a squared raw-sigma error;
    in log space the error is at most 30^2 per point, and the gradients stay finite."""
    torch.manual_seed(0)
    aabb = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
    teacher_field = make_field("voxels", aabb, make_config("voxels", "cpu", small_fields["voxels"]))
    with torch.no_grad():
        teacher_field.density[..., 6:10, 6:10, 6:10] = 15.0
    teacher = RadianceField(teacher_field, OccupancyGrid(aabb, 16), 2 * 3**0.5 / 64).requires_grad_(False)
    student = make_student(teacher, "mlp", make_config("mlp", "cpu", small_fields["mlp"]))
    generator = torch.Generator().manual_seed(0)
    rig = OrbitRig(aabb, upper_only=False)
    origins, directions = rig.rays(*rig.poses(256, generator), generator)
    losses = distill_rays(teacher, student, [], origins, directions, torch.rand(256, generator=generator), 1.0)
    assert 1.0 < losses.log_density_error < 30.0**2
    losses.point.backward()
    gradients = [parameter.grad for parameter in student.field.parameters() if parameter.grad is not None]
    assert gradients and all(torch.isfinite(gradient).all() for gradient in gradients)


def _hashgrid_mlp_and_rays(teachers, small_fields, count: int):
    """The hash-grid teacher, a small seeded MLP student, and `count` seeded orbit rays with jitter."""
    teacher = load_teacher(teachers["hashgrid"])
    torch.manual_seed(0)
    student = make_student(teacher, "mlp", make_config("mlp", "cpu", small_fields["mlp"]))
    generator = torch.Generator().manual_seed(0)
    rig = OrbitRig(teacher.aabb, upper_only=False)
    origins, directions = rig.rays(*rig.poses(count, generator), generator)
    return teacher, student, origins, directions, torch.rand(count, generator=generator)


def test_the_teachers_kept_geometry_changes_no_loss(teachers, small_fields, monkeypatch):
    """The teacher's visibility pass keeps its geometry vectors and its colour pass reuses them; the
    losses must be those of evaluating the teacher again at the visible samples."""
    teacher, student, origins, directions, jitter = _hashgrid_mlp_and_rays(teachers, small_fields, 256)
    kept = distill_rays(teacher, student, ["geometry"], origins, directions, jitter, 0.01, 1.0)
    monkeypatch.setattr(batch, "_visibility", lambda teacher, student, stages, colours: teacher.field.log_density)
    again = distill_rays(teacher, student, ["geometry"], origins, directions, jitter, 0.01, 1.0)
    for name in ("feature", "point", "pixel", "ray_errors"):
        assert torch.allclose(getattr(kept, name), getattr(again, name), rtol=1e-5, atol=1e-7), name
    assert kept.pixel > 0


def test_rays_taught_together_teach_each_batch_as_if_alone(teachers, small_fields):
    """The converter has the teacher march the next steps' rays in one call; a step's share of
    them must give the losses its rays give when taught on their own."""
    teacher, student, origins, directions, jitter = _hashgrid_mlp_and_rays(teachers, small_fields, 384)
    together = teach_rays(teacher, student, [], origins, directions, jitter, stride=2)
    for first, end in ((0, 128), (128, 384)):
        alone = teach_rays(teacher, student, [], origins[first:end], directions[first:end], jitter[first:end],
                           stride=2)
        share = together.rays(first, end)
        assert torch.equal(share.samples.rays, alone.samples.rays) and share.samples.rays.numel() > 0
        losses = [learn_rays(teacher, student, [], taught, 0.01, 1.0, stride=2) for taught in (share, alone)]
        for name in ("point", "pixel", "ray_errors"):
            assert torch.allclose(getattr(losses[0], name), getattr(losses[1], name), rtol=1e-5, atol=1e-7), name
        assert losses[0].pixel > 0


def _slab_field(aabb: torch.Tensor, columns: slice, logit_rgb: tuple[float, float, float]) -> RadianceField:
    """A 16^3 diffuse voxel field, opaque in `columns` along x and empty elsewhere."""
    field = make_field("voxels", aabb, make_config("voxels", "cpu", {"resolution": 16, "sh_degree": 1}))
    with torch.no_grad():
        field.density.fill_(-15.0)
        field.density[..., columns] = 15.0  # x is the grid's last axis
        field.sh.copy_(torch.tensor(logit_rgb)[None, :, None, None, None].expand_as(field.sh) / SH_C0)
    return RadianceField(field, OccupancyGrid(aabb, 16), 2 * 3**0.5 / 128).requires_grad_(False)


def test_given_colours_the_students_own_density_decides_which_samples_it_sees():
    """A splat teacher's baked volume can turn opaque in front of the surface that coloured its
    pixels; cutting the samples there would hide that surface from the student."""
    aabb = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
    teacher = _slab_field(aabb, slice(3, 5), (0.0, 0.0, 0.0))  # opaque near x = -0.5
    student = _slab_field(aabb, slice(11, 13), (9.0, -9.0, -9.0)).requires_grad_(True)  # red near x = +0.5
    origins = torch.tensor([[-3.0, 0.1 * row, 0.05] for row in range(-4, 4)])
    directions = torch.tensor([[1.0, 0.0, 0.0]]).expand_as(origins)
    red = torch.tensor([[1.0, 0.0, 0.0]]).expand_as(origins)
    losses = distill_rays(teacher, student, [], origins, directions, torch.full((8,), 0.5), 0.01, colours=red)
    assert losses.pixel.item() < 1e-3  # the student's red surface was rendered, not the background
    # without given colours the teacher's render is the target, and its own density cuts the samples
    losses = distill_rays(teacher, student, [], origins, directions, torch.full((8,), 0.5), 0.01)
    assert losses.pixel.item() > 0.1


def test_a_pair_without_shared_stages_says_so(converted, teachers):
    _, metrics, stderr = converted["voxels-tensorf-vm"]
    assert metrics["stages"] == []
    assert sum("share no intermediate stage" in line for line in stderr.splitlines()) == 1
    # a smaller hash grid has narrower encodings but the same geometry vector
    assert converted["hashgrid-hashgrid"][1]["stages"] == ["geometry"]
    assert "share no intermediate stage" not in converted["hashgrid-mlp"][2]


def test_a_projected_voxel_student_starts_as_the_teacher_at_its_vertices(teachers):
    teacher = load_teacher(teachers["hashgrid"])
    student = make_student(teacher, "voxels", make_config("voxels", "cpu", PAIRS["hashgrid-voxels"][2])).eval()
    blank = compare_to_teacher(teacher, student, FAST_CONVERT.eval_views, FAST_CONVERT.eval_resolution)
    assert project_onto_voxels(teacher, student.field) > 0
    projected = compare_to_teacher(teacher, student, FAST_CONVERT.eval_views, FAST_CONVERT.eval_resolution)
    # measured on one thread: blank 16.1 dB, projected 29.4 dB, before any step
    assert blank["psnr_vs_teacher"] < UNTRAINED_CEILING < 26.0 < projected["psnr_vs_teacher"]
    # at its vertices next to occupied cells the grid holds the teacher's own log-density (a
    # wrong axis order would not)
    size, extent = student.field.config.resolution, teacher.aabb[1] - teacher.aabb[0]
    occupied = teacher.grid.cell_centres(teacher.grid.occupied.nonzero()[::50, 0])
    vertices = teacher.aabb[0] + ((occupied - teacher.aabb[0]) / extent * (size - 1)).round() / (size - 1) * extent
    with torch.no_grad():
        assert torch.allclose(student.field.log_density(vertices), teacher.field.log_density(vertices), atol=1e-3)


def test_a_tensorf_cp_student_gets_the_rank_to_copy_a_field(teachers, tmp_path):
    photo_preset = make_config("tensorf-cp", "cpu")
    student = Converter(teachers["voxels"], "tensorf-cp", tmp_path / "default", FAST_CONVERT).student.field
    assert student.config.components == 8 * photo_preset.components
    assert student.lines.shape[1] == 4 * student.config.components  # the rank
    chosen = Converter(teachers["voxels"], "tensorf-cp", tmp_path / "chosen", FAST_CONVERT, {"components": 6})
    assert chosen.student.field.config.components == 6


def test_shared_stages_include_the_encoding_of_an_identical_architecture(teachers):
    teacher = load_teacher(teachers["hashgrid"])
    assert shared_stages(teacher.field, teacher.field) == ["encoding", "geometry"]


def test_the_student_learns_at_its_training_rates_times_the_scale(teachers, tmp_path):
    converter = Converter(teachers["voxels"], "tensorf-vm", tmp_path / "run",
                          dataclasses.replace(FAST_CONVERT, learning_rate_scale=3.0))
    config = make_config("tensorf-vm", "cpu")
    assert converter.base_lrs == [3.0 * config.learning_rate, 3.0 * config.network_learning_rate]
    # by default a blank student learns at twice its rates, a projected voxel student at a quarter,
    blank = Converter(teachers["voxels"], "tensorf-vm", tmp_path / "blank", FAST_CONVERT)
    assert blank.base_lrs == [2.0 * config.learning_rate, 2.0 * config.network_learning_rate]
    projected = Converter(teachers["hashgrid"], "voxels", tmp_path / "projected", FAST_CONVERT)
    assert projected.base_lrs == [0.25 * make_config("voxels", "cpu").learning_rate]
    # and a blank CP student at three times them
    cp = make_config("tensorf-cp", "cpu")
    assert Converter(teachers["voxels"], "tensorf-cp", tmp_path / "cp", FAST_CONVERT).base_lrs == [
        3.0 * cp.learning_rate, 3.0 * cp.network_learning_rate]


def _dead_units(layers, field, aabb: torch.Tensor) -> int:
    """Hidden units after `layers` (linear layers, each followed by a ReLU) of `field` that are
    zero at every one of 4096 random points and directions."""
    generator = torch.Generator().manual_seed(0)
    points = aabb[0] + (aabb[1] - aabb[0]) * torch.rand(4096, 3, generator=generator)
    directions = torch.nn.functional.normalize(torch.randn(4096, 3, generator=generator), dim=-1)
    alive = []
    hooks = [layer.register_forward_hook(lambda module, inputs, output: alive.append((output > 0).any(dim=0)))
             for layer in layers]
    with torch.no_grad():
        field(points, directions)
    for hook in hooks:
        hook.remove()
    return sum(int((~units).sum()) for units in alive)


@pytest.mark.parametrize("pair, hidden_layers, most_kept_dead", [
    ("hashgrid-mlp", lambda field: list(field.layers), 0.5),
    # the voxel teacher has no colour head to hand over, so its grid students start with a blank
    # one; its smaller head loses fewer units either way, so its bound is looser
    ("voxels-tensorf-vm", lambda field: [layer for layer in field.colour_head.mlp[:-1]
                                         if isinstance(layer, torch.nn.Linear)], 0.75),
], ids=["mlp-student", "blank-colour-head"])
def test_a_warmed_up_student_keeps_its_relu_units(pair, hidden_layers, most_kept_dead, teachers, tmp_path):
    """Adam's first steps at a student's full rate kill ReLU units for good: warming its learning
    rate up over half of a short run keeps many more of them alive. Which units die is chaotic (a
    last-bit change of the renderer moves the count), so two seeds' counts are summed."""
    teacher, student, overrides, steps, _ = PAIRS[pair]
    dead = {0.0: 0, 0.5: 0}
    for seed in (0, 1):
        for warmup in dead:
            converter = Converter(teachers[teacher], student, tmp_path / f"warmup{warmup}-seed{seed}",
                                  dataclasses.replace(FAST_CONVERT, steps=steps, warmup=warmup, seed=seed), overrides)
            converter.run_conversion()
            field = converter.student.field
            dead[warmup] += _dead_units(hidden_layers(field), field, converter.teacher.aabb)
    assert dead[0.5] < most_kept_dead * dead[0.0], dead


def test_mlp_students_and_blank_colour_heads_warm_up_by_default(teachers, tmp_path):
    def default_warmup(teacher, student, **config):
        return Converter(teachers[teacher], student, tmp_path / f"{teacher}-{student}-{len(config)}",
                         dataclasses.replace(FAST_CONVERT, **config)).warmup

    assert default_warmup("hashgrid", "mlp") == WARMUP > 0
    assert default_warmup("voxels", "tensorf-vm") == default_warmup("voxels", "hashgrid") == WARMUP
    assert default_warmup("hashgrid", "tensorf-vm", inherit_colour_head=False) == WARMUP
    # a grid student that inherits its teacher's head, and a voxel student (no head), start at full rate
    assert default_warmup("hashgrid", "tensorf-vm") == default_warmup("hashgrid", "voxels") == 0.0


def test_a_default_conversion_runs_for_its_time_budget_and_records_its_settings(teachers, tmp_path):
    """Without --steps a conversion between fields follows the clock: it ends at its budget with its
    whole learning-rate schedule, and metrics.json holds every setting the run resolved."""
    teacher, overrides = teachers["hashgrid"], PAIRS["hashgrid-mlp"][2]
    default = Converter(teacher, "mlp", tmp_path / "default", FAST_CONVERT, overrides)
    assert default.steps is None and default.time_budget == CONVERT_SECONDS
    timed = Converter(teacher, "mlp", tmp_path / "timed", dataclasses.replace(FAST_CONVERT, max_seconds=3.0),
                      overrides)
    metrics = timed.run_conversion()
    assert metrics["steps"] > 10 and 3.0 <= metrics["seconds"] < 4.0 and timed.progress() == 1.0
    decayed = timed.optimizer.param_groups[0]["lr"] / timed.base_lrs[0]
    assert decayed < FAST_CONVERT.final_lr_fraction ** 0.8
    settings = json.loads((tmp_path / "timed" / "metrics.json").read_text())["settings"]
    assert settings["convert_config"] | {"steps": None} == dataclasses.asdict(timed.config) | {"steps": None}
    assert settings["convert_config"]["warmup"] == WARMUP and settings["convert_config"]["point_focus"] == 3.0
    assert settings["convert_config"]["max_seconds"] == 3.0 and settings["field_config"]["width"] > 0


def test_a_time_limit_ends_the_run_with_its_whole_schedule(teachers, tmp_path):
    """The run stops at the limit, its learning rate decayed by the seconds as it would have been
    by the steps; default steps come with the default limit, steps a user names with none."""
    teacher, overrides = teachers["hashgrid"], PAIRS["hashgrid-mlp"][2]
    config = dataclasses.replace(FAST_CONVERT, steps=100_000, max_seconds=3.0)
    limited = Converter(teacher, "mlp", tmp_path / "limited", config, overrides)
    metrics = limited.run_conversion()
    assert 0 < metrics["steps"] < metrics["planned_steps"] == 100_000
    assert f"the time limit ended the run after {metrics['steps']} of 100000 steps" in metrics["notes"]
    assert 3.0 <= metrics["seconds"] < 4.0
    decayed = limited.optimizer.param_groups[0]["lr"] / limited.base_lrs[0]
    assert decayed < config.final_lr_fraction ** 0.8 and limited.progress() == 1.0
    named = Converter(teacher, "mlp", tmp_path / "named", dataclasses.replace(FAST_CONVERT, steps=500))
    assert named.time_budget is None


@pytest.mark.parametrize("name", ["hashgrid-mlp", "voxels-tensorf-vm"])
def test_the_student_inherits_grid_bounds_and_render_settings(name, converted, teachers):
    teacher, student = load(teachers[PAIRS[name][0]]), load(converted[name][0] / "field.safetensors")
    assert student.architecture == PAIRS[name][1]
    assert torch.equal(student.aabb, teacher.aabb)
    assert torch.equal(student.grid.occupied, teacher.grid.occupied)
    assert torch.equal(student.grid.density, teacher.grid.density)
    assert student.step_size == teacher.step_size and student.dataset == teacher.dataset


def test_a_student_on_every_other_sample_sees_its_own_march(teachers, small_fields):
    """With stride 2 the student is queried at half the samples, at the positions its own march
    at twice the spacing would take with the same jitter."""
    # MLP and CP students learn at 128 samples per diagonal, the others at 256, except the voxel
    # teacher's hash-grid student at 128; never finer than the teacher
    strides = [sample_stride(256, "mlp"), sample_stride(256, "hashgrid", "tensorf-cp"),
               sample_stride(256, "hashgrid", "voxels"), sample_stride(128, "voxels"), sample_stride(64, "mlp"),
               sample_stride(256, "tensorf-cp")]
    assert strides == [2, 1, 2, 1, 1, 2]
    teacher = load_teacher(teachers["hashgrid"])
    student = make_student(teacher, "mlp", make_config("mlp", "cpu", small_fields["mlp"]))
    generator = torch.Generator().manual_seed(0)
    low, high = teacher.aabb
    eye = high + (high - low)  # outside the box, so every ray enters it
    targets = low + torch.rand(256, 3, generator=generator) * (high - low)
    directions = torch.nn.functional.normalize(targets - eye, dim=-1)
    origins = eye.expand_as(directions)
    jitter = torch.rand(256, generator=generator)
    queried, field = {}, student.field.forward

    def recording(points, view):
        queried[len(queried)] = points
        return field(points, view)
    student.field.forward = recording
    for stride in (1, 2):
        losses = distill_rays(teacher, student, [], origins, directions, jitter, 0.01, stride=stride)
        assert losses is not None and torch.isfinite(losses.pixel)
    assert 0.4 < queried[1].shape[0] / queried[0].shape[0] < 0.6
    # each student point lies at near + (jitter + k) * 2 * step along its ray, for a whole k
    offsets = queried[1] - eye
    distance = torch.linalg.vector_norm(offsets, dim=-1)
    ray = (offsets @ directions.T).argmax(dim=1)  # the rays share their origin: the best-aligned one
    near, _ = ray_aabb(origins, directions, teacher.aabb)
    position = (distance - near[ray]) / (2 * teacher.step_size) - jitter[ray]
    assert (position - position.round()).abs().max() < 1e-3


class StepCounter:
    """Counts distillation steps, optionally interrupting (like Ctrl-C) at one of them."""

    def __init__(self, monkeypatch, interrupt_at: int | None = None):
        self.count, original = 0, Converter.distill_step

        def distill_step(converter):
            if converter.step == interrupt_at:
                raise KeyboardInterrupt
            self.count += 1
            return original(converter)

        monkeypatch.setattr(Converter, "distill_step", distill_step)


def test_an_interrupted_conversion_resumes_where_it_stopped(teachers, tmp_path, monkeypatch):
    # without active learning every random number comes from the checkpointed generator
    config = dataclasses.replace(FAST_CONVERT, steps=16, batch_rays=128, checkpoint_seconds=0, active=False)
    overrides = PAIRS["hashgrid-hashgrid"][2]

    def args(out):
        return convert_args(teachers["hashgrid"], "hashgrid", out, config, overrides)

    with monkeypatch.context() as patch:
        StepCounter(patch, interrupt_at=6)
        assert run(args(tmp_path / "resumed"))[0] == 130
    assert not (tmp_path / "resumed" / "field.safetensors").exists()
    with monkeypatch.context() as patch:
        counter = StepCounter(patch)
        code, _, stderr = run(args(tmp_path / "resumed"))
    assert code == 0 and "resuming" in stderr and counter.count == 10
    assert run(args(tmp_path / "straight"))[0] == 0
    resumed, straight = (load(tmp_path / name / "field.safetensors") for name in ("resumed", "straight"))
    for (key, a), b in zip(resumed.field.state_dict().items(), straight.field.state_dict().values()):
        assert torch.equal(a, b), key
    with monkeypatch.context() as patch:
        counter = StepCounter(patch)
        assert run(args(tmp_path / "straight"))[0] == 0 and counter.count == 0  # finished: nothing to redo


@pytest.mark.parametrize("case", ["unknown architecture", "not an asset", "not a fieldkit asset", "unknown setting",
                                  "empty student", "student beyond memory", "another run", "nan",
                                  "infinite setting", "time limit for splats"])
def test_bad_input_gives_one_error_line(case, teachers, converted, tmp_path):
    out = tmp_path / "run"
    text_file = tmp_path / "notes.safetensors"
    text_file.write_text("not tensors")
    config = dataclasses.replace(FAST_CONVERT, steps=5, batch_rays=64)
    argv, expected = {
        "unknown architecture": (convert_args(teachers["voxels"], "nerfacto", out, config, {}), "nerfacto"),
        "not an asset": (convert_args(text_file, "mlp", out, config, {}), str(text_file)),
        "not a fieldkit asset": (convert_args(tmp_path / "missing.safetensors", "mlp", out, config, {}), "missing"),
        "unknown setting": (convert_args(teachers["voxels"], "mlp", out, config, {"widht": 3}), "widht"),
        "empty student": (convert_args(teachers["voxels"], "voxels", out, config, {"resolution": 0}),
                          "cannot hold the scene"),
        "student beyond memory": (convert_args(teachers["voxels"], "hashgrid", out, config, {"log2_table_size": 44}),
                                  "cannot hold the scene"),
        "another run": (convert_args(teachers["voxels"], "mlp", converted["hashgrid-mlp"][0], config, {}),
                        "another run"),
        "nan": (convert_args(teachers["voxels"], "voxels", out, config, {"learning_rate": "1e30"}), "loss became"),
        "infinite setting": (convert_args(teachers["voxels"], "voxels", out, config, {"learning_rate": "inf"}),
                             "expected a finite number"),
        "time limit for splats": (convert_args(teachers["voxels"], "gaussians", out,
                                               dataclasses.replace(config, max_seconds=60.0), {}), "--steps"),
    }[case]
    code, _, stderr = run(argv)
    assert code == 2
    assert expected in error_line(stderr)
    assert not (out / "field.safetensors").exists()
    if case != "nan":
        assert not out.exists(), "a refused command left a directory behind"


def forward_facing_dataset(path) -> dict:
    """A transforms file of 9 cameras on a 3x3 patch of the plane y = -3, all looking along +y."""
    eyes = torch.tensor([[x, -3.0, z] for x in (-1.0, 0.0, 1.0) for z in (-0.5, 0.0, 0.5)])
    c2w = look_at(eyes, eyes + torch.tensor([0.0, 1.0, 0.0]))
    frames = [{"file_path": f"train/r_{index}", "transform_matrix": matrix.tolist()} for index, matrix in enumerate(c2w)]
    path.mkdir(parents=True, exist_ok=True)
    (path / "transforms_train.json").write_text(json.dumps({"camera_angle_x": 0.8, "w": 32, "h": 32,
                                                            "frames": frames}))
    return {"source": str(path)}


def test_a_forward_facing_dataset_gets_a_jittered_box_of_cameras(tmp_path):
    aabb = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
    rig = choose_rig("auto", aabb, forward_facing_dataset(tmp_path / "scene"))
    assert isinstance(rig, BoxRig)
    generator = torch.Generator().manual_seed(0)
    eyes, targets = rig.poses(512, generator)
    # eyes fill the cameras' patch, grown by the margin, and never stray behind or past it
    assert (eyes[:, 1] - -3.0).abs().max() < 0.05
    assert eyes[:, 0].min() < -1.0 and eyes[:, 0].max() > 1.0 and eyes[:, 0].abs().max() <= 1.2 + 1e-6
    _, directions = rig.rays(eyes, targets, generator)
    assert (directions[:, 1] > 0.8).all()  # every ray looks into the scene, as the photos did


def test_an_object_dataset_gets_an_orbit(teachers):
    teacher = load_teacher(teachers["hashgrid"])
    rig = choose_rig("auto", teacher.aabb, teacher.dataset)
    assert isinstance(rig, OrbitRig) and rig.name == "hemisphere"  # every tiny-scene camera is above the table
    assert choose_rig("sphere", teacher.aabb, teacher.dataset).name == "sphere"
    with pytest.raises(FieldkitError, match="needs the teacher's dataset"):
        choose_rig("box", teacher.aabb, {})
    with pytest.raises(FieldkitError, match="unknown rig 'dome'"):
        choose_rig("dome", teacher.aabb, {})


def test_the_hardest_poses_are_revisited_nearby():
    generator = torch.Generator().manual_seed(0)
    rig = OrbitRig(torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]), upper_only=False)
    pool = HardestPool(capacity=4, widths=(3, 3))
    eyes, targets = rig.poses(64, generator)
    errors = torch.rand(64, generator=generator)
    pool.offer((eyes, targets), errors)
    hardest = set(errors.topk(4).indices.tolist())
    drawn_eyes, drawn_targets = pool.draw(3, generator)
    assert len(pool) == 1  # drawn poses leave the pool: their new error decides if they return
    chosen = [int((eyes - eye).norm(dim=-1).argmin()) for eye in drawn_eyes]
    assert set(chosen) <= hardest
    moved_eyes, _ = rig.perturbed(drawn_eyes, drawn_targets, 0.05, generator)
    moved = (moved_eyes - drawn_eyes).norm(dim=-1)
    assert (moved > 0).all() and (moved < 0.05 * rig.size * 5).all()


def test_the_point_focus_picks_the_visible_surface_of_opaque_rays(teachers):
    teacher = load_teacher(teachers["voxels"])
    rig = OrbitRig(teacher.aabb, upper_only=True)
    generator = torch.Generator().manual_seed(0)
    origins, directions = rig.rays(*rig.poses(512, generator), generator)
    output = teacher.render_rays(origins, directions)
    focused = focus_mask(output.sample_weights, output.sample_rays, output.alpha)
    opaque = output.alpha >= 0.5
    assert focused.any() and opaque[output.sample_rays[focused]].all()
    # a small share of the samples carries most of what the opaque rays show
    on_opaque = opaque[output.sample_rays]
    assert focused.sum() < 0.5 * on_opaque.sum()
    assert output.sample_weights[focused].sum() > 0.6 * output.sample_weights[on_opaque].sum()


def test_an_mlp_student_takes_smaller_steps_focused_on_the_surface(teachers, tmp_path):
    """Unless told otherwise: 512 rays a step and point focus 3 into an MLP, 2048 and 1 into a grid."""
    into_mlp = Converter(teachers["voxels"], "mlp", tmp_path / "mlp", ConvertConfig())
    into_grid = Converter(teachers["voxels"], "tensorf-vm", tmp_path / "grid", ConvertConfig())
    asked = Converter(teachers["voxels"], "mlp", tmp_path / "asked", ConvertConfig(batch_rays=1024, point_focus=0.5))
    assert (into_mlp.batch_rays, into_mlp.point_focus) == (512, 3.0)
    assert (into_grid.batch_rays, into_grid.point_focus) == (2048, 1.0)
    assert (asked.batch_rays, asked.point_focus) == (1024, 0.5)
