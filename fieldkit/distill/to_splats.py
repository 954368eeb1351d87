"""`fieldkit convert FIELD --to gaussians`: splats distilled from a radiance field.

The splats start where the field has matter (points drawn in its occupied cells, kept in
proportion to the field's opacity there, coloured by the field), then train as 3DGS does,
densification included, on whole renders of the field from synthetic cameras: a rasterizer
draws whole images, so the field's renders play the photos' part. The run keeps `train`'s
contract (resumable run directory, progress, metrics.json) and adds `convert`'s figures.
Dimension letters: M candidate points, N splats.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F

from fieldkit.distill.config import ConvertConfig
from fieldkit.distill.evaluation import psnr_vs_teacher, teacher_test_set
from fieldkit.distill.sampling import choose_rig
from fieldkit.distill.student import load_teacher
from fieldkit.distill.views import held_out_cameras, teacher_views, training_views
from fieldkit.devices import resolve_device
from fieldkit.errors import FieldkitError
from fieldkit.gaussians.initialise import splats_from_points
from fieldkit.gaussians.model import Splats
from fieldkit.gaussians.trainer import SplatTrainer
from fieldkit.radiance import RadianceField
from fieldkit.fitting import TrainConfig, evaluate

CANDIDATES_PER_SPLAT = 8
QUERY_CHUNK = 65536


@torch.no_grad()
def splats_from_field(field: RadianceField, count: int, opacity: float, sh_degree: int,
                      generator: torch.Generator) -> Splats:
    """`count` isotropic splats in the field's occupied cells, placed where it is opaque.

    Candidates are uniform in the occupied cells; each is kept with probability proportional to
    the opacity of one cell's width of the field at it. Colours are the field's, seen from
    outside looking towards the centre (the side a camera around the scene sees first).
    """
    grid = field.grid
    cells = grid.occupied.nonzero()[:, 0]
    if cells.numel() == 0:
        raise FieldkitError("the teacher's occupancy grid is empty: there is nothing to convert")
    picks = cells[torch.randint(len(cells), (count * CANDIDATES_PER_SPLAT,), generator=generator, device=cells.device)]
    points = grid.cell_centres(picks, torch.rand(len(picks), 3, generator=generator, device=cells.device))  # [M, 3]
    cell_width = float((grid.aabb[1] - grid.aabb[0]).min()) / grid.resolution
    log_density = torch.cat([field.field.log_density(part) for part in points.split(QUERY_CHUNK)])
    opacities = -torch.expm1(-log_density.exp() * cell_width)
    chosen = torch.multinomial(opacities + 1e-12, min(count, len(points)), replacement=False, generator=generator)
    points = points[chosen]
    inward = F.normalize(field.aabb.mean(dim=0) - points, dim=-1)
    colours = torch.cat([field.field(part, direction).rgb for part, direction in
                         zip(points.split(QUERY_CHUNK), inward.split(QUERY_CHUNK))])
    return splats_from_points(points, colours, opacity, sh_degree, field.background)


class SplatDistiller(SplatTrainer):
    """Splats trained on `ConvertConfig.views` renders of a field teacher."""

    def __init__(self, teacher_path: str | Path, out: str | Path, config: ConvertConfig,
                 overrides: dict | None = None, log: Callable[[str], None] = lambda line: None,
                 device: str | torch.device = "cpu"):
        self.teacher = load_teacher(teacher_path).to(resolve_device(device))
        self.convert_config, self.log, self.notes = config, log, []
        self.rig = choose_rig(config.rig, self.teacher.aabb, self.teacher.dataset)
        train_config = TrainConfig(steps=config.steps, checkpoint_seconds=config.checkpoint_seconds,
                                   final_lr_fraction=config.final_lr_fraction, seed=config.seed)
        request = {"teacher": str(Path(teacher_path).resolve()), "convert_config": asdict(config)}
        self.prepare(out, train_config, overrides, request, self._datasets, device)
        self.model.dataset = dict(self.teacher.dataset)

    def note(self, line: str) -> None:
        self.notes.append(line)
        self.log(line)

    def _datasets(self):
        """The teacher's renders to train on; its real test photos to score on, or held-out renders."""
        config = self.convert_config
        train_set, self.render_seconds = training_views(self.teacher, self.rig, config.views, config.seed)
        test_set, why_not = teacher_test_set(self.teacher)
        if test_set is None:
            self.note(f"{why_not}; progress is scored on held-out renders of the teacher")
            cameras = held_out_cameras(self.rig, self.teacher.dataset, config.eval_views, config.seed)
            test_set = teacher_views(self.teacher, cameras, "held-out")
        self.real_test_set = why_not == ""
        return train_set, test_set

    def initial_splats(self) -> Splats:
        return splats_from_field(self.teacher, self.splat_config.initial_splats, self.splat_config.initial_opacity,
                                 self.splat_config.sh_degree, self.generator)

    def run_conversion(self) -> dict:
        return self.run_training()

    def finish(self) -> dict:
        self.model.eval()
        config = self.convert_config
        cameras = held_out_cameras(self.rig, self.teacher.dataset, config.eval_views, config.seed)
        metrics = {"psnr_vs_teacher": psnr_vs_teacher(self.teacher, self.model, cameras)}
        if self.real_test_set:
            metrics["psnr_test"] = evaluate(self.model, self.test_set)["psnr"]
        # the teacher's renders are part of the conversion's cost (a resumed run renders them again)
        metrics |= {"seconds": self.seconds + self.render_seconds, "render_seconds": self.render_seconds,
                    "steps": self.step, "architecture": self.model.architecture,
                    "teacher_architecture": self.teacher.architecture,
                    "teacher_psnr_test": self.teacher.metrics.get("psnr_test"), "splats": len(self.model),
                    "views": len(self.train_set), "rig": self.rig.name, "notes": self.notes}
        return self.write_results(metrics)
