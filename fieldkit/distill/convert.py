"""`fieldkit convert`: progressive volume distillation (PVD) of a teacher field into another
architecture, in a resumable run directory with the same rules as `fieldkit train`."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from torch import Tensor

from fieldkit.data import load_dataset
from fieldkit.distill.active import HardestPool
from fieldkit.distill.batch import distill_rays
from fieldkit.distill.config import ConvertConfig
from fieldkit.distill.evaluation import compare_to_teacher
from fieldkit.distill.sampling import choose_rig
from fieldkit.distill.stages import shared_stages
from fieldkit.distill.student import inherit_colour_head, load_teacher, make_student
from fieldkit.errors import FieldkitError
from fieldkit.fields import field_class, make_config
from fieldkit.metrics import mse_to_psnr
from fieldkit.train import ResumableRun, RunDirectory, evaluate


class Converter(ResumableRun):
    def __init__(self, teacher_path: str | Path, architecture: str, out: str | Path, config: ConvertConfig,
                 field_overrides: dict | None = None, log: Callable[[str], None] = lambda line: None):
        field_class(architecture)  # an unknown target fails before anything is read or written
        self.config = config
        self.teacher = load_teacher(teacher_path)
        field_config = make_config(architecture, config.preset, field_overrides)
        torch.manual_seed(config.seed)  # parameter initialisation
        self.student = make_student(self.teacher, architecture, field_config)  # before any file is written
        self.run = RunDirectory(out)
        request = {"teacher": str(Path(teacher_path).resolve()), "architecture": architecture,
                   "field_config": asdict(field_config), "convert_config": asdict(config)}
        self.resuming = self.run.claim(request)
        self.notes: list[str] = []  # what the log said, kept in metrics.json
        self.log = log
        if config.inherit_colour_head and inherit_colour_head(self.teacher, self.student):
            self.note("the student starts from the teacher's colour head")
        self.stages = shared_stages(self.teacher.field, self.student.field)
        if not self.stages:
            self.note(f"{self.teacher.architecture} and {architecture} share no intermediate stage: "
                              "skipping the feature stage")
        self.rig = choose_rig(config.rig, self.teacher.aabb, self.teacher.dataset)
        self.optimizer = torch.optim.Adam(self.student.field.optimizer_groups(), eps=1e-15)
        self.base_lrs = [group["lr"] for group in self.optimizer.param_groups]
        self.generator = torch.Generator().manual_seed(config.seed)
        # rows: origin, direction, eye, target of each hard ray / eye, target of each hard pose
        self.hard_rays = HardestPool(config.batch_rays, (3, 3, 3, 3))
        self.hard_poses = HardestPool(config.batch_rays, (3, 3))
        self.schedule = config.schedule()
        self.steps, self.step, self.seconds = config.steps, 0, 0.0

    @property
    def model(self):  # what ResumableRun optimises and checkpoints
        return self.student

    def note(self, line: str) -> None:
        self.notes.append(line)
        self.log(line)

    def _batch(self) -> tuple[Tensor, ...]:
        """Origins, directions, eyes, targets [R, 3]: replayed hard rays, rays of perturbed hard
        poses (both only with active learning), and fresh poses for the rest of the batch."""
        config, total = self.config, self.config.batch_rays
        replay, revisit = (config.replay_fraction, config.revisit_fraction) if config.active else (0.0, 0.0)
        replayed = self.hard_rays.draw(int(total * replay), self.generator)
        eyes, targets = self.rig.perturbed(*self.hard_poses.draw(int(total * revisit), self.generator),
                                           config.revisit_jitter, self.generator)
        fresh_eyes, fresh_targets = self.rig.poses(total - replayed[0].shape[0] - eyes.shape[0], self.generator)
        eyes, targets = torch.cat([eyes, fresh_eyes]), torch.cat([targets, fresh_targets])
        rows = (*self.rig.rays(eyes, targets, self.generator), eyes, targets)
        return tuple(torch.cat([old, new]) for old, new in zip(replayed, rows))

    def distill_step(self) -> dict:
        origins, directions, eyes, targets = self._batch()
        jitter = torch.rand(origins.shape[0], generator=self.generator)
        losses = distill_rays(self.teacher, self.student, self.stages, origins, directions, jitter,
                              self.config.density_weight, self.config.point_focus if self.config.active else 0.0)
        if losses is None:  # every ray missed the occupied cells: nothing to learn from
            return {}
        progress = self.step / max(self.steps, 1)
        weights = {name: stage.weight_at(progress) for name, stage in self.schedule.items()}
        loss = weights["feature"] * losses.feature + weights["point"] * losses.point + weights["pixel"] * losses.pixel
        self.apply_gradients(loss, "distillation loss")
        if self.config.active:
            self.hard_rays.offer((origins, directions, eyes, targets), losses.ray_errors)
            self.hard_poses.offer((eyes, targets), losses.ray_errors)
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
        source = self.teacher.dataset.get("source")
        if not source:
            self.note("the teacher carries no dataset: psnr_test skipped")
            return {}
        try:
            test_set = load_dataset(source, "test", background=self.teacher.background.tolist())
        except (FieldkitError, OSError) as error:
            self.note(f"the teacher's dataset cannot be read ({error}): psnr_test skipped")
            return {}
        return {"psnr_test": evaluate(self.student, test_set)["psnr"]}

    def finish(self) -> dict:
        self.student.eval()
        metrics = compare_to_teacher(self.teacher, self.student, self.config.eval_views, self.config.eval_resolution)
        if not math.isfinite(metrics["psnr_vs_teacher"]):
            raise FieldkitError(f"the student renders NaN after {self.step} steps; the last checkpoint is kept in "
                                f"{self.run.path}")
        metrics |= self._test_scores()
        metrics |= {"seconds": self.seconds, "steps": self.step, "architecture": self.student.architecture,
                    "teacher_architecture": self.teacher.architecture,
                    "teacher_psnr_test": self.teacher.metrics.get("psnr_test"), "stages": self.stages,
                    "active": self.config.active, "rig": self.rig.name,
                    "parameters": sum(p.numel() for p in self.student.field.parameters()), "notes": self.notes}
        return self.write_results(metrics)
