"""The progressive stages' losses between teacher and student outputs at the same points.

Density is compared in log space on the clamped pre-activation, never as sigma: a teacher's
dense region (sigma ~ e^15) would otherwise dominate and overflow a squared error.
"""
from __future__ import annotations

import torch
from torch import Tensor

from fieldkit.fields import Field, FieldOutput
from fieldkit.fields.activations import clamp_log_density


def shared_stages(teacher: Field, student: Field) -> list[str]:
    """Intermediate stages both fields declare with the same width, probed at one point."""
    names = [name for name in teacher.stage_names if name in student.stage_names]
    if not names:
        return []
    probe = (teacher.aabb[0] + teacher.aabb[1])[None] / 2  # [1, 3]
    direction = torch.tensor([[0.0, 0.0, 1.0]])
    with torch.no_grad():
        teacher_stages = teacher(probe, direction).stages
        student_stages = student(probe, direction).stages
    return [name for name in names if teacher_stages[name].shape == student_stages[name].shape]


def _comparable(output: FieldOutput, name: str) -> Tensor:  # [N, D]
    stage = output.stages[name]
    if name == "geometry":
        # its first column is the raw log-density: clamp it as the density stage does
        return torch.cat([clamp_log_density(stage[:, :1]), stage[:, 1:]], dim=-1)
    return stage


def feature_loss(teacher: FieldOutput, student: FieldOutput, names: list[str]) -> Tensor:
    losses = [(_comparable(student, name) - _comparable(teacher, name)).square().mean() for name in names]
    return torch.stack(losses).sum() if losses else student.rgb.new_zeros(())


def log_density_error(teacher: FieldOutput, student: FieldOutput) -> Tensor:
    return (student.log_density - teacher.log_density).square().mean()


def point_errors(teacher: FieldOutput, student: FieldOutput, density_weight: float) -> Tensor:  # [M]
    """Per point: weighted squared log-density difference plus mean squared colour difference."""
    return (density_weight * (student.log_density - teacher.log_density).square()
            + (student.rgb - teacher.rgb).square().mean(dim=-1))
