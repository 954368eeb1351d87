"""Every default that depends on the architecture, in one place, and the resolvers that turn a
user's config (None: "choose for me") into the settings a run uses and records in metrics.json.

docs/train.md and docs/convert.md give the measurements behind these values.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from fieldkit.errors import FieldkitError
from fieldkit.fields import field_class


@dataclass(frozen=True)
class Profile:
    """What one field architecture does by default, trained on photos or taught by a teacher."""

    train_passes: float
    """passes over the training pixels (steps x --batch-rays / pixels) that a photo-training run
    takes, unless TRAIN_SECONDS end it first: on `tabletop` (1.6 million pixels) they are the steps
    that reach the architecture's quality target there (hashgrid: 600 steps)"""
    samples_per_diagonal: int
    """ray-marching steps across the bounds' diagonal (an MLP's smooth field needs fewer, and its
    samples cost most)"""
    student_samples_per_diagonal: int
    """the spacing a student learns at: every teacher sample is rendered, but a student that costs
    much per sample learns from every other one"""
    student_batch_rays: int
    """rays per distillation step: an MLP student, whose every step moves all of its weights,
    learns more from more, smaller steps"""
    blank_rate_scale: float
    """a student that starts blank learns at this multiple of its training rates: a teacher's
    targets carry no photo noise"""
    point_focus: float
    """extra weight of the point loss on visible surface samples: an MLP spends its one network's
    capacity where the pixels come from"""
    student_overrides: dict = field(default_factory=dict)
    """changes to the CPU preset for a student, which copies another field's errors too and so
    needs more capacity than fitting photos"""


PROFILES = {
    "mlp": Profile(4.5, 128, 128, 512, 2.0, 3.0),
    "hashgrid": Profile(1.5, 256, 256, 2048, 2.0, 1.0),
    "tensorf-vm": Profile(3.75, 256, 256, 2048, 2.0, 1.0),
    "tensorf-cp": Profile(5.0, 256, 128, 2048, 3.0, 1.0, {"components": 96}),
    "voxels": Profile(3.0, 256, 256, 2048, 2.0, 1.0),
}

TRAIN_SECONDS = 600.0
"""Optimisation seconds after which a field's photo training ends when its passes are not done
(unless given --steps): a step count fitted to `tabletop` stopped `carousel` (200 px, 2.4 times the
pixels) at 27.9 dB where 1.5 passes reach 30 dB, while passes alone would let a large capture run
for hours on a CPU. The learning rate follows whichever of steps and seconds is further along, so a
run cut by the budget still ends on its decayed rate."""

TRAIN_BATCH_SAMPLES = 1 << 17
"""Occupied samples a field's photo-training step renders at most (fewer rays while many cells are
occupied): while the field is still faint every sample of every ray is evaluated, so a fixed ray
count made the first steps several times dearer than the later ones, the more so the more of its
box the object fills."""

PAIR_SAMPLES_PER_DIAGONAL = {("voxels", "hashgrid"): 128}
"""Teacher -> student pairs that learn at another spacing than the student's own: the voxel
teacher's hash-grid student gains more from more steps than from denser samples."""

PROJECTED_RATE_SCALE = 0.25
"""A voxel student projected from its teacher starts near it, so it learns at a quarter of its rates."""

WARMUP = 0.12
"""Fraction of a conversion over which an MLP student, or one whose colour head starts blank, warms
its learning rate up: Adam's first full-rate steps otherwise kill ReLU units for good."""

CONVERT_SECONDS = 240.0
"""A conversion between fields runs for this many seconds of optimisation unless given --steps: its
learning rate and stages follow the elapsed time, so a faster machine takes more steps, not a
different schedule."""

SPLAT_TEACHER_BATCH_RAYS = 4096
"""A splat teacher's colours are rendered before the run, which leaves room for more rays a step."""

SPLAT_TEACHER_STEPS = 1800
"""Steps of a field student taught by splats (its teacher's renders are made first, so a step count,
not a time budget, says how long it learns from them)."""

SPLAT_STEPS = 3000
"""Steps of splats trained on photos or distilled from a field: densification follows the steps."""


def profile(architecture: str) -> Profile:
    return PROFILES[field_class(architecture).architecture]


def train_steps(architecture: str, train_pixels: int, batch_rays: int) -> int:
    """Steps of the architecture's passes over `train_pixels` at `batch_rays` rays a step."""
    return max(math.ceil(profile(architecture).train_passes * train_pixels / batch_rays), 1)


def resolve_train(config, architecture: str, train_pixels: int | None = None):
    """The TrainConfig a run of `architecture` on `train_pixels` training pixels uses: every None
    setting chosen. Without --steps, a field runs its passes or TRAIN_SECONDS, whichever ends first."""
    if architecture == "gaussians":
        if config.max_seconds:
            raise FieldkitError("--max-seconds is for fields: splat densification follows the step count; "
                                "give --steps instead")
        return dataclasses.replace(config, steps=config.steps or SPLAT_STEPS)
    chosen = profile(architecture)
    if config.steps is None and train_pixels is None:
        raise ValueError("a field's default step count needs the number of training pixels")
    return dataclasses.replace(
        config, steps=config.steps or train_steps(architecture, train_pixels, config.batch_rays),
        max_seconds=config.max_seconds or (TRAIN_SECONDS if config.steps is None else None),
        samples_per_diagonal=config.samples_per_diagonal or chosen.samples_per_diagonal)


def resolve_convert(config, teacher: str, student: str, splat_teacher: bool, projected: bool, blank_head: bool):
    """The ConvertConfig a field student's run uses: every None setting chosen for its pair.

    `projected`: a voxel student starting from its teacher's projection; `blank_head`: a student
    whose colour head could not be inherited.
    """
    chosen = profile(student)
    timed = config.steps is None and not splat_teacher
    return dataclasses.replace(
        config,
        steps=config.steps or (SPLAT_TEACHER_STEPS if splat_teacher else None),
        max_seconds=config.max_seconds or (CONVERT_SECONDS if timed else None),
        batch_rays=config.batch_rays or (SPLAT_TEACHER_BATCH_RAYS if splat_teacher else chosen.student_batch_rays),
        point_focus=chosen.point_focus if config.point_focus is None else config.point_focus,
        learning_rate_scale=config.learning_rate_scale or (PROJECTED_RATE_SCALE if projected else
                                                           chosen.blank_rate_scale),
        warmup=(WARMUP if student == "mlp" or blank_head else 0.0) if config.warmup is None else config.warmup,
    )


def student_samples_per_diagonal(teacher: str, student: str) -> int:
    return PAIR_SAMPLES_PER_DIAGONAL.get((teacher, student), profile(student).student_samples_per_diagonal)


MESH_FACES = 40_000
"""Faces a mesh is decimated to: enough for the built-in scenes' curved parts at 128-pixel views,
few enough that xatlas unwraps them and the CPU rasterizer refines them in minutes (docs/mesh.md)."""

MESH_TEXTURE_SIZE = 1024
"""Texels per side of a mesh's texture: about four texels per pixel of a 128-pixel view of it."""

MESH_GRID_RESOLUTION = 192
"""Samples per axis of the log-density grid that marching cubes runs on: a cell near a
128-pixel view's pixel at the built-in scenes' camera distance."""

MESH_TEACHER_VIEWS = 48
"""Teacher renders that a mesh's texture is baked from and its refinement learns from."""

MESH_REFINE_STEPS = 300
"""Refinement steps of a mesh (two views each, by default)."""
