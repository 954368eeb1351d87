"""The student: a new field of the target architecture that takes over the teacher's bounds,
occupancy grid and render settings, and optionally its colour head."""
from __future__ import annotations

from pathlib import Path

import torch

from fieldkit.errors import FieldkitError
from fieldkit.fields import make_config, make_field
from fieldkit.fields.base import GeometryVectorField
from fieldkit.gaussians import Splats
from fieldkit.io import load
from fieldkit.radiance import RadianceField
from fieldkit.render.occupancy import OccupancyGrid
from fieldkit.train import DEFAULT_SAMPLES_PER_DIAGONAL

# A student copies another architecture's field, its errors included, which takes more capacity
# than fitting photos: these sizes replace the photo-training preset's under a user's overrides
# (measured, mlp -> tensorf-cp at 900 steps: -2.49 dB at rank 48, -1.16 at 96, -0.64 at 192;
# voxels -> tensorf-cp at 1500 steps, 3x rates: -1.14 at rank 192, -0.74 at 384 on every other sample)
STUDENT_SIZES = {("tensorf-cp", "cpu"): {"components": 96}}
# samples per diagonal that a student learns at, where not `fieldkit train`'s for its architecture:
# a rank-384 CP student on every other sample costs less a step than rank 192 on every sample
STUDENT_SAMPLES_PER_DIAGONAL = DEFAULT_SAMPLES_PER_DIAGONAL | {"tensorf-cp": 128}
# and for a teacher -> student pair. The voxel teacher's hash-grid student, whose steps cost twice
# another teacher's (0.154 s against 0.075 from tensorf-vm, 100-step timings), gains more from
# steps than from samples (1 thread: -1.12 dB after 900 steps at 256, -0.61 after 1400 at 256 in
# 467 s, -0.55 after 1800 at 128 in 383 s); a tensorf-cp teacher's lost by it (-1.11 dB after 2900
# steps at 128, -0.74 after 1600 at 256)
PAIR_SAMPLES_PER_DIAGONAL = {("voxels", "hashgrid"): 128}


def student_config(architecture: str, preset: str, overrides: dict | None):
    """The student's field config: its preset, resized for a student, then the user's overrides."""
    return make_config(architecture, preset, STUDENT_SIZES.get((architecture, preset), {}) | (overrides or {}))


def load_teacher(path: str | Path) -> RadianceField:
    """A field asset as it is; splats (an asset or a 3DGS .ply) as a `SplatTeacher`."""
    model = load(path)
    if isinstance(model, Splats):
        from fieldkit.distill.splat_teacher import (
            SplatTeacher,  # bakes splats: import it when needed
        )

        model = SplatTeacher(model.requires_grad_(False).eval())
    if not isinstance(model, RadianceField):
        raise FieldkitError(f"{path} holds {model.kind}, which convert cannot use as a teacher")
    return model.requires_grad_(False).eval()


def copy_grid(grid: OccupancyGrid) -> OccupancyGrid:
    copy = OccupancyGrid(grid.aabb, grid.resolution, grid.decay, grid.opacity_threshold)
    copy.load_state_dict(grid.state_dict())
    return copy


def inherit_colour_head(teacher: RadianceField, student: RadianceField) -> bool:
    """Copies the teacher's colour head into the student when both have one of the same shape."""
    if not (isinstance(teacher.field, GeometryVectorField) and isinstance(student.field, GeometryVectorField)):
        return False
    source, target = teacher.field.colour_head.state_dict(), student.field.colour_head.state_dict()
    if any(source[name].shape != target[name].shape for name in target):
        return False
    student.field.colour_head.load_state_dict(source)
    return True


def _buildable_field(architecture: str, aabb: torch.Tensor, field_config):
    """The student's field, probed once at the centre of the bounds; a config that cannot be
    built (an empty layer, a grid of no cells, more memory than there is) is one clear error."""
    try:
        field = make_field(architecture, aabb, field_config)
        if any(parameter.numel() == 0 for parameter in field.parameters()):
            raise ValueError("a setting leaves a layer with no parameters")
        with torch.no_grad():
            field(((aabb[0] + aabb[1]) / 2)[None], torch.tensor([[0.0, 0.0, 1.0]]))
    except (RuntimeError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise FieldkitError(f"this {architecture} student config cannot hold the scene: {reason[:160]}") from None
    return field


def sample_stride(teacher_samples: float, student: str, teacher: str = "") -> int:
    """How many of the teacher's samples along a ray go to one of the student's: the student
    learns at its pair's spacing in PAIR_SAMPLES_PER_DIAGONAL, else at its own in
    STUDENT_SAMPLES_PER_DIAGONAL, never finer than the teacher's.

    The teacher still renders every sample (its targets keep their detail: tensorf-vm rendered at
    128 samples per diagonal instead of its 256 scores 35.35 dB instead of 36.97), while an MLP
    or CP student, at 128, evaluates half of them and so costs about half per step.
    """
    samples = PAIR_SAMPLES_PER_DIAGONAL.get((teacher, student), STUDENT_SAMPLES_PER_DIAGONAL[student])
    return max(1, round(teacher_samples / samples))


def make_student(teacher: RadianceField, architecture: str, field_config) -> RadianceField:
    field = _buildable_field(architecture, teacher.aabb, field_config)
    student = RadianceField(field, copy_grid(teacher.grid), teacher.step_size, teacher.background)
    student.dataset = dict(teacher.dataset)
    return student.to(torch.float32)
