"""`fieldkit convert`: progressive volume distillation (PVD) of a teacher field into another
architecture, in a resumable run directory with the same rules as `fieldkit train`."""
from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from fieldkit.data import load_dataset
from fieldkit.distill.active import HardRayPool
from fieldkit.distill.batch import distill_rays
from fieldkit.distill.config import ConvertConfig
from fieldkit.distill.evaluation import compare_to_teacher
from fieldkit.distill.sampling import CameraRig, choose_rig
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
        self.run = RunDirectory(out)
        request = {"teacher": str(Path(teacher_path).resolve()), "architecture": architecture,
                   "field_config": asdict(field_config), "convert_config": asdict(config)}
        self.resuming = self.run.claim(request)
        torch.manual_seed(config.seed)  # parameter initialisation
        self.student = make_student(self.teacher, architecture, field_config)
        self.notes: list[str] = []  # what the log said, kept in metrics.json
        self.log = log
        if config.inherit_colour_head and inherit_colour_head(self.teacher, self.student):
            self.note("the student starts from the teacher's colour head")
        self.stages = shared_stages(self.teacher.field, self.student.field)
        if not self.stages:
            self.note(f"{self.teacher.architecture} and {architecture} share no intermediate stage: "
                              "skipping the feature stage")
        upper_only = choose_rig(config.rig, self.teacher.aabb, self.teacher.dataset)
        self.rig = CameraRig(self.teacher.aabb, upper_only)
        self.optimizer = torch.optim.Adam(self.student.field.optimizer_groups(), eps=1e-15)
        self.base_lrs = [group["lr"] for group in self.optimizer.param_groups]
        self.generator = torch.Generator().manual_seed(config.seed)
        self.pool = HardRayPool(config.batch_rays) if config.active else None
        self.schedule = config.schedule()
        self.steps, self.step, self.seconds = config.steps, 0, 0.0

    @property
    def model(self):  # what ResumableRun optimises and checkpoints
        return self.student

    def note(self, line: str) -> None:
        self.notes.append(line)
        self.log(line)

    def _rays(self) -> tuple[Tensor, Tensor]:  # origins, directions [R, 3]
        replayed = int(self.config.batch_rays * self.config.replay_fraction) if self.pool is not None else 0
        old_origins, old_directions = self.pool.draw(replayed, self.generator) if replayed else (
            torch.empty(0, 3), torch.empty(0, 3))
        origins, directions = self.rig.rays(self.config.batch_rays - old_origins.shape[0], self.generator)
        return torch.cat([old_origins, origins]), torch.cat([old_directions, directions])

    def distill_step(self) -> dict:
        origins, directions = self._rays()
        jitter = torch.rand(origins.shape[0], generator=self.generator)
        losses = distill_rays(self.teacher, self.student, self.stages, origins, directions, jitter,
                              self.config.density_weight)
        if losses is None:  # every ray missed the occupied cells: nothing to learn from
            return {}
        progress = self.step / max(self.config.steps, 1)
        weights = {name: stage.weight_at(progress) for name, stage in self.schedule.items()}
        loss = weights["feature"] * losses.feature + weights["point"] * losses.point + weights["pixel"] * losses.pixel
        self.apply_gradients(loss, "distillation loss")
        if self.pool is not None:
            self.pool.offer(origins, directions, losses.ray_errors)
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
                    "active": self.config.active,
                    "parameters": sum(p.numel() for p in self.student.field.parameters()), "notes": self.notes}
        return self.write_results(metrics)
