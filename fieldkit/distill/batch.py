"""One batch of rays through teacher and student, at the very same samples."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fieldkit.distill.active import focus_mask
from fieldkit.distill.stages import feature_loss, log_density_error, point_errors
from fieldkit.fields import FieldOutput
from fieldkit.fields.base import GeometryVectorField
from fieldkit.radiance import RadianceField
from fieldkit.render.volume import RaySamples, composite, march


@dataclass
class BatchLosses:
    feature: Tensor  # [] intermediate stages
    point: Tensor  # [] log-density and colour per point (plus the focused samples' mean)
    pixel: Tensor  # [] volume-rendered colour
    log_density_error: float  # mean squared log-density difference, for display
    ray_errors: Tensor  # [R] squared pixel error per ray, detached


def _recording(model: RadianceField, record: dict, key: str, samples: RaySamples | None = None):
    """The model's radiance callback, keeping the full field output (stages included); with
    `samples` whose visibility pass kept the model's geometry, only its colour head runs."""
    def radiance(points: Tensor, directions: Tensor) -> tuple[Tensor, Tensor]:
        if samples is not None and samples.values is not None:
            output = model.field.output_from_geometry(samples.values, directions)
        else:
            output = model.field(points, directions)
        record[key] = output
        return output.log_density, output.rgb
    return radiance


def _visibility(teacher: RadianceField, student: RadianceField, stages: list[str], colours: Tensor | None):
    """The log-density that picks the samples both fields are queried at (see distill_rays)."""
    if colours is not None:
        # target colours stand for the teacher's true images, which its volume only approximates (a
        # splat teacher's baked volume): cutting samples where that volume turns opaque hides surfaces
        # from the student, so the student's own density cuts them
        return student.field.log_density
    if isinstance(teacher.field, GeometryVectorField) and "encoding" not in stages:
        # a teacher's encoding is most of its cost: keep its geometry for its colour pass
        return teacher.field.geometry_rows
    return teacher.field.log_density


def _every_nth(samples: RaySamples, stride: int, phase: Tensor) -> tuple[RaySamples, Tensor]:
    """The samples at positions phase, phase + stride, ... of each ray (phase [R] in [0, stride)),
    and which of `samples` [M] they are."""
    chosen = (samples.steps % stride) == phase[samples.rays]  # [M]
    return samples.subset(chosen), chosen


def _subset(output: FieldOutput, kept: Tensor) -> FieldOutput:
    return FieldOutput(output.log_density[kept], output.rgb[kept],
                       {name: stage[kept] for name, stage in output.stages.items()})


@dataclass
class TaughtRays:
    """Rays the teacher has marched and rendered: the samples the student is queried at and what
    the teacher said there. Samples are packed and sorted by ray, so a run of rays is a run of
    samples (`rays`)."""

    samples: RaySamples  # [M] where the student is queried (every stride-th of the teacher's)
    taught: FieldOutput  # [M] the teacher at those samples
    weights: Tensor  # [M] the teacher's compositing weights there
    directions: Tensor  # [R, 3]
    target: Tensor  # [R, 3] the colour the student's render must match
    alpha: Tensor  # [R] the teacher's opacity

    def rays(self, first: int, end: int) -> TaughtRays:
        """Rays first..end-1, their samples renumbered from 0."""
        start, stop = torch.searchsorted(self.samples.rays, self.samples.rays.new_tensor([first, end])).tolist()
        samples = self.samples.subset(slice(start, stop))
        samples.rays = samples.rays - first
        return TaughtRays(samples, _subset(self.taught, slice(start, stop)), self.weights[start:stop],
                          self.directions[first:end], self.target[first:end], self.alpha[first:end])


@torch.no_grad()
def teach_rays(teacher: RadianceField, student: RadianceField, stages: list[str], origins: Tensor,
               directions: Tensor, jitter: Tensor, colours: Tensor | None = None,
               stride: int = 1) -> TaughtRays | None:
    """The teacher's half of `distill_rays`: None when no ray met anything."""
    record: dict[str, FieldOutput] = {}
    scaled = jitter * stride
    samples = march(_visibility(teacher, student, stages, colours), teacher.grid,
                    *teacher.marched_rays(origins, directions), teacher.step_size, scaled.frac())
    target = composite(_recording(teacher, record, "teacher", samples), samples, directions,
                       teacher.background, teacher.step_size)
    if "teacher" not in record:
        return None
    taught, weights = record["teacher"], target.sample_weights
    samples = RaySamples(samples.t, samples.points, samples.rays, samples.steps)  # the kept geometry is spent
    if stride > 1:
        samples, kept = _every_nth(samples, stride, scaled.floor().long())
        taught, weights = _subset(taught, kept), weights[kept]
    return TaughtRays(samples, taught, weights, directions, target.rgb if colours is None else colours,
                      target.alpha)


def learn_rays(teacher: RadianceField, student: RadianceField, stages: list[str], rays: TaughtRays,
               density_weight: float, point_focus: float = 0.0, stride: int = 1) -> BatchLosses | None:
    """The student's half of `distill_rays`: None when none of the rays' samples fell on its share."""
    record: dict[str, FieldOutput] = {}
    output = composite(_recording(student, record, "student"), rays.samples, rays.directions, teacher.background,
                       teacher.step_size * stride)
    if "student" not in record:
        return None
    taught, learned = rays.taught, record["student"]
    ray_errors = (output.rgb - rays.target).square().sum(dim=-1)  # [R]
    errors = point_errors(taught, learned, density_weight)  # [M]
    point = errors.mean()
    if point_focus > 0:
        focused = focus_mask(rays.weights, rays.samples.rays, rays.alpha)
        if focused.any():
            point = point + point_focus * errors[focused].mean()
    return BatchLosses(feature_loss(taught, learned, stages), point, ray_errors.mean() / 3,
                       float(log_density_error(taught, learned).detach()), ray_errors.detach())


def distill_rays(teacher: RadianceField, student: RadianceField, stages: list[str], origins: Tensor,
                 directions: Tensor, jitter: Tensor, density_weight: float, point_focus: float = 0.0,
                 colours: Tensor | None = None, stride: int = 1) -> BatchLosses | None:
    """Renders the rays with both fields -> the stage losses; None when no ray met anything.

    Both renders composite the same marched samples (the teacher's grid and spacing, one
    visibility pass), so the student is queried at exactly the teacher's points, in the same
    order. With `stride` > 1 the student renders every stride-th of them, from a random first
    one: `jitter` [R] in [0, 1) places its samples as its own march at stride times the spacing
    would, and the teacher's at the fractional part of stride * jitter. With `point_focus` > 0
    the point loss adds that weight times its mean over the teacher's visible surface samples
    (PVD-AL's point level). `colours` [R, 3], when given, are the rays' target colours in place
    of the teacher's volume render (a splat teacher's own renders).
    """
    rays = teach_rays(teacher, student, stages, origins, directions, jitter, colours, stride)
    return None if rays is None else learn_rays(teacher, student, stages, rays, density_weight, point_focus, stride)
