"""What a conversion is asked to do: its settings and the schedule of its progressive stages."""
from __future__ import annotations

from dataclasses import dataclass

from fieldkit.options import check_numbers


@dataclass(frozen=True)
class StageSchedule:
    """A stage's loss is on from `start` until `end` (fractions of the run), its weight decaying
    linearly from `weight` at `start` to `weight * final_fraction` at the last step."""

    start: float
    weight: float
    final_fraction: float
    end: float = 1.0

    def weight_at(self, progress: float) -> float:  # progress in [0, 1]
        if progress < self.start or progress >= self.end or self.weight == 0:
            return 0.0
        through = (progress - self.start) / max(1.0 - self.start, 1e-9)
        return self.weight * (1.0 - (1.0 - self.final_fraction) * through)


STAGES = ("feature", "point", "pixel")


@dataclass
class ConvertConfig:
    steps: int | None = None
    """distillation steps (default: between fields, as many as fit in max_seconds; 1800 from
    splats; 3000 into splats)"""
    max_seconds: float | None = None
    """end the run after this many seconds (projection and renders included), its learning rate and
    stages following the elapsed time (default: 240 between fields when no --steps are given)"""
    batch_rays: int | None = None
    """rays per step (default: 512 into an MLP, which learns more from more, smaller steps; 2048
    into other fields; 4096 from a splat teacher, whose colours are rendered in advance)"""
    feature_start: float = 0.0
    """when the intermediate-feature loss switches on (fraction of the run)"""
    feature_weight: float = 1.0
    """initial weight of the intermediate-feature loss"""
    feature_final: float = 0.0
    """feature-loss weight at the end, as a fraction of its initial weight"""
    point_start: float = 0.0
    """when the per-point log-density and colour loss switches on (fraction of the run)"""
    point_weight: float = 1.0
    """initial weight of the per-point loss"""
    point_final: float = 0.1
    """per-point loss weight at the end, as a fraction of its initial weight"""
    pixel_start: float = 0.2
    """when the rendered-pixel loss switches on (fraction of the run)"""
    pixel_weight: float = 1.0
    """initial weight of the rendered-pixel loss"""
    pixel_final: float = 1.0
    """rendered-pixel loss weight at the end, as a fraction of its initial weight"""
    splat_points: bool = False
    """let a splat teacher's baked volume teach points until the pixel stage starts (off: that
    volume, coarser than the splats' images, only places the samples, and the pixel stage starts
    at the first step)"""
    density_weight: float = 0.01
    """weight of log-density against colour inside the per-point loss (log-density spans [-15, 15])"""
    rig: str = "auto"
    """synthetic cameras: sphere, hemisphere (above the scene, z up), box (a jittered box around the
    dataset's cameras, for forward-facing scenes) or auto (box for a forward-facing dataset,
    hemisphere when every camera of the teacher's dataset is above its centre, else sphere)"""
    project_voxels: bool = True
    """start a voxel student from the teacher sampled at its grid vertices, colour projected onto
    its spherical harmonics (PlenOctrees' conversion)"""
    inherit_colour_head: bool = True
    """start the student from the teacher's colour head when the shapes agree"""
    active: bool = True
    """active learning (PVD-AL): revisit hard views, replay hard rays, focus on surface points"""
    replay_fraction: float = 0.1
    """active: share of each batch replayed from the pool of hardest rays"""
    revisit_fraction: float = 0.1
    """active: share of each batch from perturbed copies of the hardest camera poses"""
    revisit_jitter: float = 0.05
    """active: size of a revisit's perturbation, as a fraction of the rig's size"""
    point_focus: float | None = None
    """active: extra weight of the point loss on the visible surface samples of opaque rays
    (default: 3 for an MLP student, whose one network must spend its capacity where the pixels
    come from; 1 for the others)"""
    views: int = 100
    """whole teacher renders that splats learn from (a splat student), or that give a field
    student its pixels (a splat teacher)"""
    eval_views: int = 4
    """held-out synthetic views for psnr_vs_teacher (a turntable, never used for training)"""
    eval_resolution: int = 64
    """pixels per side of the held-out views of a field student (splats are scored at the scale of
    the views they learned from)"""
    learning_rate_scale: float | None = None
    """a field student's learning rates, as a multiple of its architecture's training rates
    (default: twice them for a student that starts blank, since a teacher's targets carry no photo
    noise, three times for a TensoRF-CP student; a quarter of them for a voxel student projected
    from its teacher, which starts near it)"""
    final_lr_fraction: float = 0.1
    """learning rate at the last step, as a fraction of the first"""
    warmup: float | None = None
    """fraction of the run over which the learning rate rises linearly from near zero (default:
    0.12 for an MLP student and for a student whose colour head starts blank, none for the others)"""
    checkpoint_seconds: float = 30.0
    """seconds between checkpoints"""
    seed: int = 0
    """random seed"""
    preset: str = "cpu"
    """student architecture preset: cpu or gpu"""

    def __post_init__(self):
        check_numbers(self, positive=("steps", "max_seconds", "batch_rays", "views", "eval_views", "eval_resolution",
                                      "learning_rate_scale", "final_lr_fraction"))

    def schedule(self, splat_teacher: bool = False) -> dict[str, StageSchedule]:
        """The stages' schedules. A splat teacher's images are its truth and its baked volume an
        approximation: its points stop where the pixels start, or (without `splat_points`) are
        not taught at all, the pixels starting at once."""
        images_only = splat_teacher and not self.splat_points
        pixel_start = 0.0 if images_only else self.pixel_start
        point_weight = 0.0 if images_only else self.point_weight
        return {"feature": StageSchedule(self.feature_start, self.feature_weight, self.feature_final),
                "point": StageSchedule(self.point_start, point_weight, self.point_final,
                                       pixel_start if splat_teacher else 1.0),
                "pixel": StageSchedule(pixel_start, self.pixel_weight, self.pixel_final)}
