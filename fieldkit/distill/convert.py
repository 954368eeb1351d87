"""`fieldkit convert`: progressive volume distillation (PVD) of a teacher field into another
architecture, in a resumable run directory with the same rules as `fieldkit train`."""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch

from fieldkit.distill.batch import TaughtRays, learn_rays, teach_rays
from fieldkit.distill.config import ConvertConfig
from fieldkit.distill.evaluation import compare_to_teacher, teacher_test_set
from fieldkit.distill.projection import project_onto_voxels
from fieldkit.distill.sampling import choose_rig
from fieldkit.distill.sources import ActiveShares, RayBatch, RenderedRays, RigRays
from fieldkit.distill.splat_teacher import BakedTeacher
from fieldkit.distill.stages import shared_stages
from fieldkit.distill.to_mesh import MeshDistiller
from fieldkit.distill.to_splats import SplatDistiller
from fieldkit.distill.student import (
    inherit_colour_head,
    load_teacher,
    make_student,
    refuse_ndc_teacher,
    sample_stride,
    student_config,
)
from fieldkit.distill.views import held_out_cameras, training_views
from fieldkit.defaults import resolve_convert
from fieldkit.devices import make_generator, resolve_device
from fieldkit.errors import FieldkitError
from fieldkit.fields import ARCHITECTURES, field_class
from fieldkit.fields.base import GeometryVectorField
from fieldkit.fields.voxels import VoxelField
from fieldkit.mesh.config import MeshConfig
from fieldkit.metrics import mse_to_psnr
from fieldkit.fitting import evaluate
from fieldkit.runs import ResumableRun, RunDirectory

TEACHER_RAYS = 4096
"""The teacher marches and renders at least this many rays at once, the batches of the next few
steps together, so that its fixed cost per call is shared."""


class Converter(ResumableRun):
    def __init__(self, teacher_path: str | Path, architecture: str, out: str | Path, config: ConvertConfig,
                 field_overrides: dict | None = None, log: Callable[[str], None] = lambda line: None,
                 device: str | torch.device = "cpu"):
        field_class(architecture)  # an unknown target fails before anything is read or written
        self.config, self.device = config, resolve_device(device)
        self.teacher = load_teacher(teacher_path)
        self.field_config = field_config = student_config(architecture, config.preset, field_overrides)
        torch.manual_seed(config.seed)  # parameter initialisation
        self.student = make_student(self.teacher, architecture, field_config)  # before any file is written
        self.teacher, self.student = self.teacher.to(self.device), self.student.to(self.device)
        self.run = RunDirectory(out)
        request = {"teacher": str(Path(teacher_path).resolve()), "architecture": architecture,
                   "field_config": asdict(field_config), "convert_config": asdict(config)}
        self.resuming = self.run.claim(request)
        self.notes: list[str] = []  # what the log said, kept in metrics.json
        self.log = log
        inherited = config.inherit_colour_head and inherit_colour_head(self.teacher, self.student)
        if inherited:
            self.note("the student starts from the teacher's colour head")
        projected = self._start_from_projection()
        self.stages = shared_stages(self.teacher.field, self.student.field)
        if not self.stages:
            self.note(f"{self.teacher.architecture} and {architecture} share no intermediate stage: "
                              "skipping the feature stage")
        self.rig = choose_rig(config.rig, self.teacher.aabb, self.teacher.dataset)
        splat_teacher = isinstance(self.teacher, BakedTeacher)  # splats, or a mesh
        blank_head = isinstance(self.student.field, GeometryVectorField) and not inherited
        self.config = config = resolve_convert(config, self.teacher.architecture, architecture, splat_teacher,
                                               projected, blank_head)
        groups = self.student.field.optimizer_groups()
        for group in groups:
            group["lr"] *= config.learning_rate_scale
        # one fused kernel: Adam's separate passes over a voxel grid's or a hash table's millions of
        # entries would cost a third of a step
        self.optimizer = torch.optim.Adam(groups, eps=1e-15, fused=True)
        self.base_lrs = [group["lr"] for group in self.optimizer.param_groups]
        self.warmup = config.warmup
        self.generator = make_generator(config.seed, self.device)
        self.point_focus, self.batch_rays = config.point_focus, config.batch_rays
        if splat_teacher:
            points = "points from their baked volume until the pixel stage starts" if config.splat_points else \
                "their baked volume places the samples"
            self.note(f"splat teacher: pixels from {config.views} renders of the splats, {points}")
            views, self.render_seconds = training_views(self.teacher, self.rig, config.views, config.seed)
            self.rays = RenderedRays(views, self.batch_rays)
        else:
            self.rays, self.render_seconds = RigRays(self.rig, self.batch_rays, self.device), 0.0
        # a splat teacher's samples are placed by the student's own density, so they cannot wait
        self.lookahead = 1 if splat_teacher else max(1, TEACHER_RAYS // self.batch_rays)
        self.window: list[tuple[RayBatch, TaughtRays | None]] = []
        self.window_number = -1
        self.active_shares = ActiveShares(config.replay_fraction, config.revisit_fraction,
                                          config.revisit_jitter) if config.active else ActiveShares()
        # a splat teacher teaches pixels only: its baked volume, matched beside its images, holds a
        # student below them (docs/convert.md)
        self.schedule = config.schedule(splat_teacher)
        diagonal = float((self.teacher.aabb[1] - self.teacher.aabb[0]).norm())
        self.stride = sample_stride(diagonal / self.teacher.step_size, architecture, self.teacher.architecture)
        self.steps = config.steps
        if config.max_seconds is not None:  # the renders and the projection count against it
            self.time_budget = config.max_seconds - self.render_seconds - self.projection_seconds
        self.step, self.seconds = 0, 0.0

    def _start_from_projection(self) -> bool:
        """A voxel student starts from the teacher read off at its vertices, unless asked not to;
        -> whether it did. A resumed run projects again, then loads its checkpoint."""
        self.projection_seconds = 0.0
        if not (self.config.project_voxels and isinstance(self.student.field, VoxelField)):
            return False
        started = time.perf_counter()
        vertices = project_onto_voxels(self.teacher, self.student.field)
        self.projection_seconds = time.perf_counter() - started
        self.note(f"the student starts from the teacher sampled at its {vertices} vertices near occupied space")
        return True

    @property
    def model(self):  # what ResumableRun optimises and checkpoints
        return self.student

    def note(self, line: str) -> None:
        self.notes.append(line)
        self.log(line)

    def _taught_batch(self) -> tuple[RayBatch, TaughtRays | None]:
        """This step's rays and what the teacher said along them, taught `lookahead` steps at a
        time. Each window of steps draws from its own generator, seeded by the run's seed and the
        window's number, so a resumed run draws the rays it would have drawn (the run's checkpointed
        generator is not used: it has moved on by the window's end)."""
        number, place = divmod(self.step, self.lookahead)
        if number != self.window_number:
            generator = make_generator(self.config.seed * 2**32 + number, self.device)
            batches = [self.rays.batch(self.batch_rays, self.active_shares, generator) for _ in range(self.lookahead)]
            sizes = [batch.origins.shape[0] for batch in batches]
            colours = None if batches[0].colours is None else torch.cat([batch.colours for batch in batches])
            taught = teach_rays(self.teacher, self.student, self.stages, torch.cat([b.origins for b in batches]),
                                torch.cat([b.directions for b in batches]), torch.rand(sum(sizes), generator=generator, device=self.device),
                                colours, self.stride)
            ends = torch.tensor(sizes).cumsum(0).tolist()
            self.window = [(batch, None if taught is None else taught.rays(end - size, end))
                           for batch, size, end in zip(batches, sizes, ends)]
            self.window_number = number
        return self.window[place]

    def distill_step(self) -> dict:
        batch, taught = self._taught_batch()
        losses = None if taught is None else learn_rays(
            self.teacher, self.student, self.stages, taught, self.config.density_weight,
            self.point_focus if self.config.active else 0.0, self.stride)
        if losses is None:  # every ray missed the occupied cells: nothing to learn from
            return {}
        progress = self.progress()
        weights = {name: stage.weight_at(progress) for name, stage in self.schedule.items()}
        loss = weights["feature"] * losses.feature + weights["point"] * losses.point + weights["pixel"] * losses.pixel
        self.apply_gradients(loss, "distillation loss")
        if self.config.active:
            self.rays.offer(batch, losses.ray_errors)
        # two short figures: the progress line must fit 80 columns in a log
        return {"loss": loss.item(), "psnr": mse_to_psnr(losses.pixel.item())}

    def run_conversion(self) -> dict:
        finished = self.finished_metrics()
        if finished is not None:
            return finished
        self.optimise(f"convert {self.teacher.architecture} -> {self.student.architecture}", self.distill_step)
        return self.finish()

    def _test_scores(self) -> dict:
        """PSNR against the real test images, when the teacher says where its dataset is."""
        test_set, why_not = teacher_test_set(self.teacher)
        if test_set is None:
            self.note(why_not)
            return {}
        return {"psnr_test": evaluate(self.student, test_set)["psnr"]}

    def finish(self) -> dict:
        if self.steps is not None and self.step < self.steps:
            self.note(f"the time limit ended the run after {self.step} of {self.steps} steps")
        self.student.eval()
        config = self.config
        # a splat teacher is scored at its training views' scale (see held_out_cameras); an NDC teacher
        # from poses like its captures', since a turntable around its NDC box means nothing in the world
        cameras = held_out_cameras(self.rig, self.teacher.dataset, config.eval_views, config.seed) \
            if isinstance(self.teacher, BakedTeacher) or self.teacher.space is not None else None
        metrics = compare_to_teacher(self.teacher, self.student, config.eval_views, config.eval_resolution, cameras)
        if not math.isfinite(metrics["psnr_vs_teacher"]):
            raise FieldkitError(f"the student renders NaN after {self.step} steps; the last checkpoint is kept in "
                                f"{self.run.path}")
        metrics |= self._test_scores()
        # a splat teacher's renders are part of the conversion's cost (a resumed run renders them again)
        metrics |= {"seconds": self.seconds + self.render_seconds + self.projection_seconds,
                    "render_seconds": self.render_seconds, "projection_seconds": self.projection_seconds,
                    "steps": self.step, "planned_steps": self.steps, "architecture": self.student.architecture,
                    "teacher_architecture": self.teacher.architecture,
                    "teacher_psnr_test": self.teacher.metrics.get("psnr_test"), "stages": self.stages,
                    "active": self.config.active, "rig": self.rig.name,
                    "parameters": sum(p.numel() for p in self.student.field.parameters()), "notes": self.notes,
                    "settings": {"convert_config": asdict(config), "field_config": asdict(self.field_config)}}
        return self.write_results(metrics)


def make_converter(teacher_path: str | Path, architecture: str, out: str | Path, config: ConvertConfig,
                   overrides: dict | None = None, log: Callable[[str], None] = lambda line: None,
                   mesh_config: MeshConfig | None = None, device: str | torch.device = "cpu") -> ResumableRun:
    """The run that converts the teacher into `architecture`: splat and mesh students have their own."""
    if architecture not in (*ARCHITECTURES, "gaussians", "mesh"):
        raise FieldkitError(f"unknown target '{architecture}'; choose one of: {', '.join(ARCHITECTURES)}, gaussians, "
                            f"mesh")
    if architecture in ("gaussians", "mesh"):
        refuse_ndc_teacher(teacher_path, "splats" if architecture == "gaussians" else "a mesh")
    if architecture == "mesh":
        if overrides:
            raise FieldkitError("--set changes a field student's architecture; a mesh takes --faces, --texture-size "
                                "and the other mesh options instead")
        if resolve_device(device).type != "cpu":
            log("a mesh student is extracted, unwrapped and refined on the CPU whatever --device says")
        return MeshDistiller(teacher_path, out, config, mesh_config or MeshConfig(), log=log)
    if architecture == "gaussians":
        if config.max_seconds:
            raise FieldkitError("--max-seconds is for field students: a splat student's densification follows "
                                "its steps; give --steps instead")
        return SplatDistiller(teacher_path, out, config, overrides, log, device)
    return Converter(teacher_path, architecture, out, config, overrides, log, device)
