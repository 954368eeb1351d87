"""The student: a new field of the target architecture that takes over the teacher's bounds,
occupancy grid, render settings and space (fieldkit.ndc), and optionally its colour head."""
from __future__ import annotations

from pathlib import Path

import torch

from fieldkit.defaults import profile, student_samples_per_diagonal
from fieldkit.errors import FieldkitError
from fieldkit.fields import build_field, make_config
from fieldkit.fields.base import GeometryVectorField
from fieldkit.gaussians import Splats
from fieldkit.io import load
from fieldkit.mesh import Mesh
from fieldkit.radiance import RadianceField
from fieldkit.render.occupancy import OccupancyGrid

def student_config(architecture: str, preset: str, overrides: dict | None):
    """The student's field config: its preset, resized for a student, then the user's overrides."""
    resized = profile(architecture).student_overrides if preset == "cpu" else {}
    return make_config(architecture, preset, resized | (overrides or {}))


def load_teacher(path: str | Path) -> RadianceField:
    """A field asset as it is; splats (an asset or a 3DGS .ply) as a `SplatTeacher`; a textured
    mesh (.glb / .obj) as a `MeshTeacher`."""
    model = load(path)
    if isinstance(model, Splats):
        from fieldkit.distill.splat_teacher import (
            SplatTeacher,  # bakes splats: import it when needed
        )

        model = SplatTeacher(model.requires_grad_(False).eval())
    if isinstance(model, Mesh):
        from fieldkit.distill.mesh_teacher import MeshTeacher  # bakes a volume: import it when needed

        model = MeshTeacher(model.requires_grad_(False).eval())
    if not isinstance(model, RadianceField):
        raise FieldkitError(f"{path} holds {model.kind}, which convert cannot use as a teacher")
    return model.requires_grad_(False).eval()


def refuse_ndc_teacher(path: str | Path, target: str) -> None:
    """Splats and meshes live in world coordinates, so a field trained in NDC cannot hand them its geometry."""
    model = load(path)
    if getattr(model, "space", None) is not None:
        raise FieldkitError(f"{path} is a field trained in NDC (--space ndc), whose geometry is not in world "
                            f"coordinates: convert it to another field, or train with --space box to make {target}")


def copy_grid(grid: OccupancyGrid) -> OccupancyGrid:
    copy = OccupancyGrid(grid.aabb, grid.resolution, grid.decay, grid.opacity_threshold)
    copy.load_state_dict(grid.state_dict())
    return copy


def inherit_colour_head(teacher: RadianceField, student: RadianceField) -> bool:
    """Copies the teacher's colour head into the student when both have one of the same shape."""
    if not (isinstance(teacher.field, GeometryVectorField) and isinstance(student.field, GeometryVectorField)):
        return False
    source, target = teacher.field.colour_head.state_dict(), student.field.colour_head.state_dict()
    # an imported teacher's head (fieldkit.teachers) has other layers: nothing to inherit
    if source.keys() != target.keys() or any(source[name].shape != target[name].shape for name in target):
        return False
    student.field.colour_head.load_state_dict(source)
    return True


def sample_stride(teacher_samples: float, student: str, teacher: str = "") -> int:
    """How many of the teacher's samples along a ray go to one of the student's: the teacher renders
    every sample (its targets keep their detail), while a student learns at its own spacing, never
    finer than the teacher's."""
    return max(1, round(teacher_samples / student_samples_per_diagonal(teacher, student)))


def make_student(teacher: RadianceField, architecture: str, field_config) -> RadianceField:
    field = build_field(architecture, teacher.aabb, field_config, 'student')
    student = RadianceField(field, copy_grid(teacher.grid), teacher.step_size, teacher.background, teacher.space)
    student.dataset = dict(teacher.dataset)
    return student.to(torch.float32)
