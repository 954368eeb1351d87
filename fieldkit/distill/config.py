"""What a conversion is asked to do: its settings and the schedule of its progressive stages."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StageSchedule:
    """A stage's loss is off before `start` (a fraction of the run), then decays linearly from
    `weight` to `weight * final_fraction` at the last step."""

    start: float
    weight: float
    final_fraction: float

    def weight_at(self, progress: float) -> float:  # progress in [0, 1]
        if progress < self.start or self.weight == 0:
            return 0.0
        through = (progress - self.start) / max(1.0 - self.start, 1e-9)
        return self.weight * (1.0 - (1.0 - self.final_fraction) * through)


STAGES = ("feature", "point", "pixel")


@dataclass
class ConvertConfig:
    steps: int = 1000
    """distillation steps"""
    batch_rays: int = 2048
    """synthetic rays per step"""
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
    density_weight: float = 0.01
    """weight of log-density against colour inside the per-point loss (log-density spans [-15, 15])"""
    rig: str = "auto"
    """synthetic cameras: sphere, hemisphere (above the scene, z up), or auto (hemisphere when
    every camera of the teacher's dataset is above its centre, else sphere)"""
    inherit_colour_head: bool = True
    """start the student from the teacher's colour head when the shapes agree"""
    active: bool = True
    """active learning: replay the rays where the student disagrees most with the teacher"""
    replay_fraction: float = 0.25
    """share of each batch drawn from the pool of hard rays (with active learning)"""
    eval_views: int = 4
    """held-out synthetic views for psnr_vs_teacher (a turntable, never used for training)"""
    eval_resolution: int = 64
    """pixels per side of the held-out views"""
    final_lr_fraction: float = 0.1
    """learning rate at the last step, as a fraction of the first"""
    checkpoint_seconds: float = 30.0
    """seconds between checkpoints"""
    seed: int = 0
    """random seed"""
    preset: str = "cpu"
    """student architecture preset: cpu or gpu"""

    def schedule(self) -> dict[str, StageSchedule]:
        return {"feature": StageSchedule(self.feature_start, self.feature_weight, self.feature_final),
                "point": StageSchedule(self.point_start, self.point_weight, self.point_final),
                "pixel": StageSchedule(self.pixel_start, self.pixel_weight, self.pixel_final)}
