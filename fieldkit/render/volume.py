"""Volume rendering of a field along rays. Marching and compositing run the native kernels of
cuda/marching.h and cuda/volume.h when they are built (fieldkit/native.py) and their torch
references (`sample_along_rays_reference`, `visible_samples_reference`, `accumulate_reference`)
otherwise.

nerfacc's split: the renderer owns sampling, transmittance, weights and accumulation and
takes the field as a callback, so fields, splat densities and distilled students share it.
Dimension letters: R rays, M samples (packed, see RaySamples).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from fieldkit import native
from fieldkit.fields.activations import density_from_log
from fieldkit.render.occupancy import OccupancyGrid

# samples whose transmittance has fallen below this contribute nothing visible; skipping
# them is instant-ngp's early ray termination
TRANSMITTANCE_EPSILON = 1e-4
_OPAQUE_OPTICAL_DEPTH = -math.log(TRANSMITTANCE_EPSILON)
# the no-gradient pass marches this many steps at a time, so rays that turned opaque in one
# segment cost nothing in the next
SEGMENT_STEPS = 24


@dataclass
class RenderOutput:
    rgb: Tensor  # [..., 3]
    alpha: Tensor  # [...]
    depth: Tensor  # [...] expected depth of the visible surface (ray distance)
    samples: int = 0  # field evaluations that carried gradient
    # per evaluated sample, in the order the radiance callback saw them: its compositing weight
    # (detached) and the index of its ray; filled by `render_rays`
    sample_weights: Tensor | None = None  # [M]
    sample_rays: Tensor | None = None  # [M]


# (points [M, 3], directions [M, 3]) -> (log_density [M], rgb [M, 3])
RadianceFn = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]
# points [M, 3] -> log_density [M], or rows [M, V] whose first column is the log-density and whose
# rest the caller wants back at the visible samples (work its radiance pass can reuse)
LogDensityFn = Callable[[Tensor], Tensor]


def ray_aabb(origins: Tensor, directions: Tensor, aabb: Tensor) -> tuple[Tensor, Tensor]:
    """Entry and exit distances [R] of rays through a box (slab method); exit < entry means a miss."""
    safe = torch.where(directions.abs() < 1e-9, torch.full_like(directions, 1e-9), directions)
    t0, t1 = (aabb[0] - origins) / safe, (aabb[1] - origins) / safe
    near = torch.minimum(t0, t1).amax(dim=-1).clamp(min=0)
    far = torch.maximum(t0, t1).amin(dim=-1)
    return near, far


@dataclass
class RaySamples:
    """Samples along rays, packed (nerfacc's layout: a render evaluates a few percent of the
    rays' evenly spaced samples, so nothing is stored or composited for the rest), sorted by
    ray and then by distance."""

    t: Tensor  # [M] distances
    points: Tensor  # [M, 3]
    rays: Tensor  # [M] the ray of each sample
    steps: Tensor  # [M] the sample's place along its ray: t = near + (steps + jitter) * step_size
    values: Tensor | None = None  # [M, V] what the visibility pass evaluated (see visible_samples)

    def subset(self, kept: Tensor) -> RaySamples:
        return RaySamples(self.t[kept], self.points[kept], self.rays[kept], self.steps[kept],
                          None if self.values is None else self.values[kept])


def most_samples(grid: OccupancyGrid, step_size: float) -> int:
    """The samples a ray takes at most: as many steps as fit along the box's diagonal."""
    diagonal = float((grid.aabb[1] - grid.aabb[0]).norm())
    return max(int(diagonal / step_size) + 1, 1)


def sample_along_rays_reference(origins: Tensor, directions: Tensor, grid: OccupancyGrid, step_size: float,
                                jitter: Tensor | None) -> RaySamples:
    """`sample_along_rays` in torch: its specification and its fallback."""
    near, far = ray_aabb(origins, directions, grid.aabb)
    offset = origins.new_full(near.shape, 0.5) if jitter is None else jitter  # [R]
    most = most_samples(grid, step_size)
    # samples before the exit, one more for rounding (the test on t below decides)
    counts = (torch.ceil((far - near) / step_size - offset) + 1).clamp(0, most).long()  # [R]
    rays = torch.repeat_interleave(torch.arange(near.shape[0], device=near.device), counts)  # [N]
    steps = torch.arange(rays.shape[0], device=near.device) - (torch.cumsum(counts, dim=0) - counts)[rays]
    t = near[rays] + (steps + offset[rays]) * step_size
    points = origins[rays] + t[:, None] * directions[rays]
    kept = (t < far[rays]) & grid.is_occupied(points)
    return RaySamples(t[kept], points[kept], rays[kept], steps[kept])


def sample_along_rays(origins: Tensor, directions: Tensor, grid: OccupancyGrid, step_size: float,
                      jitter: Tensor | None) -> RaySamples:
    """The evenly spaced samples of the rays that lie in the box and in occupied cells: the
    native march (cuda/marching.h) when it is built, bit-identical in float32, else the reference.

    The samples carry no gradient to the rays on the native path (their places come from the
    grid): rays that require gradient take the reference.
    """
    offset = origins.new_full(origins.shape[:1], 0.5) if jitter is None else jitter  # [R]
    if origins.requires_grad or directions.requires_grad or not native.wanted(origins, directions, offset,
                                                                             grid.occupied):
        return sample_along_rays_reference(origins, directions, grid, step_size, jitter)
    origins, directions, offset, aabb = native.prepare("ray marching", origins, directions, offset, grid.aabb)
    _, rays, steps, t, points = torch.ops.fieldkit.occupancy_march(
        origins, directions, offset, aabb, grid.occupied.contiguous(), grid.resolution, float(step_size),
        most_samples(grid, step_size))
    return RaySamples(t, points, rays, steps)


def leading_rays(samples: RaySamples, ray_count: int, max_samples: int) -> int:
    """How many of the first rays have at most `max_samples` samples in all (at least one ray)."""
    if samples.rays.numel() <= max_samples:
        return ray_count
    # samples are sorted by ray: the ray of the first sample past the budget is the first left out
    return max(int(samples.rays[max_samples]), 1)


def _exclusive_sums(values: Tensor, rays: Tensor, ray_count: int) -> Tensor:
    """For packed samples sorted by ray: the sum of `values` [M] over the earlier samples of the
    same ray. One cumulative sum over all rays, less each ray's total before its first sample,
    in float64: that running total over thousands of opaque rays would cost float32 its precision."""
    wide = values.double()
    running = torch.cumsum(wide, dim=0) - wide
    counts = torch.bincount(rays, minlength=ray_count)
    first = (torch.cumsum(counts, dim=0) - counts)[rays]  # [M] where each sample's ray starts
    return (running - running[first]).to(values.dtype)


def ray_starts(rays: Tensor, ray_count: int) -> Tensor:
    """Where each ray's packed samples begin [R + 1] (the last entry is the sample count)."""
    starts = torch.zeros(ray_count + 1, dtype=torch.long, device=rays.device)
    starts[1:] = torch.cumsum(torch.bincount(rays, minlength=ray_count), dim=0)
    return starts


def _evaluated(log_density_fn: LogDensityFn, samples: RaySamples, index: Tensor, values: Tensor | None
               ) -> tuple[Tensor, Tensor | None]:
    """The log-density [K] at the samples `index`, keeping the rest of the rows that
    `log_density_fn` returned, if any, in `values` [M, V] (allocated on first use)."""
    evaluated = log_density_fn(samples.points[index])
    if evaluated.dim() == 2:
        if values is None:
            values = evaluated.new_zeros(samples.rays.shape[0], evaluated.shape[1])
        values[index] = evaluated
        evaluated = evaluated[:, 0]
    return evaluated, values


@torch.no_grad()
def visible_samples_reference(log_density_fn: LogDensityFn, samples: RaySamples, ray_count: int,
                              step_size: float) -> RaySamples:
    """`visible_samples` in torch: its specification and its fallback."""
    visible, values = torch.zeros_like(samples.rays, dtype=torch.bool), None
    optical_depth = samples.t.new_zeros(ray_count)  # [R] accumulated so far
    last = int(samples.steps.max()) + 1 if samples.steps.numel() else 0
    for start in range(0, last, SEGMENT_STEPS):
        in_segment = (samples.steps >= start) & (samples.steps < start + SEGMENT_STEPS)
        index = (in_segment & (optical_depth < _OPAQUE_OPTICAL_DEPTH)[samples.rays]).nonzero()[:, 0]
        if index.numel() == 0:
            continue
        evaluated, values = _evaluated(log_density_fn, samples, index, values)
        depth, rays = density_from_log(evaluated) * step_size, samples.rays[index]
        before = optical_depth[rays] + _exclusive_sums(depth, rays, ray_count)
        visible[index] = torch.exp(-before) > TRANSMITTANCE_EPSILON
        optical_depth.index_add_(0, rays, depth)
    return RaySamples(samples.t, samples.points, samples.rays, samples.steps, values).subset(visible)


@torch.no_grad()
def visible_samples(log_density_fn: LogDensityFn, samples: RaySamples, ray_count: int,
                    step_size: float) -> RaySamples:
    """The samples that light still reaches (transmittance above epsilon), with what
    `log_density_fn` returned at them as `values` when it returns rows [M, V] whose first column
    is the log-density.

    Marches in segments of SEGMENT_STEPS along the rays; a ray that has become opaque is not
    evaluated further. The native ops (cuda/marching.h) pick each segment's samples and decide
    their visibility when they are built; they keep the same samples as the reference except
    where a transmittance lies within float rounding of epsilon.
    """
    if not native.wanted(samples.t, samples.steps):
        return visible_samples_reference(log_density_fn, samples, ray_count, step_size)
    visible, values = torch.zeros_like(samples.rays, dtype=torch.bool), None
    starts = ray_starts(samples.rays, ray_count)
    cursor, steps = starts[:-1].clone(), samples.steps.contiguous()  # [R] each ray's first sample not yet visited
    optical_depth = native.prepare("ray marching", samples.t)[0].new_zeros(ray_count)  # [R]
    last = int(steps.max()) + 1 if steps.numel() else 0
    for end in range(SEGMENT_STEPS, last + SEGMENT_STEPS, SEGMENT_STEPS):
        segment_starts, index, cursor = torch.ops.fieldkit.march_segment(starts, steps, cursor, optical_depth, end,
                                                                         _OPAQUE_OPTICAL_DEPTH)
        if index.numel() == 0:
            continue
        evaluated, values = _evaluated(log_density_fn, samples, index, values)
        depth = (density_from_log(evaluated) * step_size).to(optical_depth.dtype).contiguous()
        visible[index], optical_depth = torch.ops.fieldkit.march_visibility(segment_starts, depth, optical_depth,
                                                                            TRANSMITTANCE_EPSILON)
    return RaySamples(samples.t, samples.points, samples.rays, samples.steps, values).subset(visible)


def march(log_density_fn: LogDensityFn, grid: OccupancyGrid, origins: Tensor, directions: Tensor,
          step_size: float, jitter: Tensor | None = None) -> RaySamples:
    """The samples of the rays that a render evaluates: occupied, and before the ray turns opaque
    by `log_density_fn` (a pass without gradient)."""
    samples = sample_along_rays(origins, directions, grid, step_size, jitter)
    return visible_samples(log_density_fn, samples, origins.shape[0], step_size)


def accumulate_reference(log_density: Tensor, rgb: Tensor, t: Tensor, rays: Tensor, ray_count: int,
                         step_size: float) -> tuple[Tensor, Tensor]:
    """Front-to-back compositing of packed samples sorted by ray: each sample's weight [M]
    (detached) and, per ray, [alpha, r, g, b, weighted depth sum] [R, 5]. The torch reference."""
    optical_depth = density_from_log(log_density) * step_size  # [M]
    transmittance = torch.exp(-_exclusive_sums(optical_depth, rays, ray_count))
    weights = transmittance * (1 - torch.exp(-optical_depth))  # [M]
    per_ray = t.new_zeros(ray_count, 5).index_add(0, rays, torch.cat(
        [weights[:, None], weights[:, None] * rgb, (weights * t)[:, None]], dim=-1))
    return weights.detach(), per_ray


class _NativeComposite(torch.autograd.Function):
    """torch.ops.fieldkit.composite_*: the values and gradients of `accumulate_reference`. Saves
    the inputs only; the backward recomputes each ray's transmittance rather than storing it."""

    @staticmethod
    def forward(ctx, log_density: Tensor, rgb: Tensor, t: Tensor, ray_starts: Tensor, step_size: float):
        weights, per_ray = torch.ops.fieldkit.composite_forward(log_density, rgb, t, ray_starts, step_size)
        ctx.save_for_backward(log_density, rgb, t, ray_starts)
        ctx.step_size = step_size
        ctx.mark_non_differentiable(weights)
        return weights, per_ray

    @staticmethod
    @once_differentiable
    def backward(ctx, _grad_weights: Tensor, grad_per_ray: Tensor):
        log_density, rgb, t, ray_starts = ctx.saved_tensors
        grad_log_density, grad_rgb, grad_t = torch.ops.fieldkit.composite_backward(
            grad_per_ray.contiguous(), log_density, rgb, t, ray_starts, ctx.step_size, ctx.needs_input_grad[2])
        return grad_log_density, grad_rgb, grad_t, None, None


def accumulate(log_density: Tensor, rgb: Tensor, t: Tensor, rays: Tensor, ray_count: int,
               step_size: float) -> tuple[Tensor, Tensor]:
    """`accumulate_reference`'s weights [M] and per-ray sums [R, 5], by the native kernel when it
    is built for these tensors' device."""
    if not native.wanted(log_density, rgb, t, rays):
        return accumulate_reference(log_density, rgb, t, rays, ray_count, step_size)
    dtype = torch.promote_types(torch.promote_types(log_density.dtype, rgb.dtype), t.dtype)
    log_density, rgb, t = native.prepare("compositing", log_density, rgb, t)
    weights, per_ray = _NativeComposite.apply(log_density, rgb, t, ray_starts(rays, ray_count), float(step_size))
    return weights.to(dtype), per_ray.to(dtype)


def composite(radiance_fn: RadianceFn, samples: RaySamples, directions: Tensor, background: Tensor,
              step_size: float) -> RenderOutput:
    """Evaluates the field at the marched samples, with gradient, and composites rgb, alpha and
    depth [R] over `background` [3] or [R, 3]. Two fields composited over the same samples are
    queried at the very same points."""
    rays, ray_count = samples.rays, directions.shape[0]
    log_density, rgb = radiance_fn(samples.points, directions[rays]) if rays.numel() else (
        samples.t.new_zeros(0), samples.t.new_zeros(0, 3))
    weights, per_ray = accumulate(log_density, rgb, samples.t, rays, ray_count, step_size)
    alpha, colour = per_ray[:, 0], per_ray[:, 1:4] + (1 - per_ray[:, :1]) * background
    depth = per_ray[:, 4] / alpha.clamp(min=1e-6)
    return RenderOutput(colour, alpha, depth, samples=rays.numel(), sample_weights=weights,
                        sample_rays=rays)


def render_rays(radiance_fn: RadianceFn, log_density_fn: LogDensityFn, grid: OccupancyGrid, origins: Tensor,
                directions: Tensor, background: Tensor, step_size: float, jitter: Tensor | None = None,
                max_samples: int | None = None, view_directions: Tensor | None = None) -> RenderOutput:
    """Composites rgb, alpha and depth [R] along rays over `background` [3] or [R, 3].
    `view_directions` [R, 3] are what the field sees, when they differ from the marched rays'
    (rays marched in NDC keep their world directions for colour).

    A first pass without gradient finds where each ray becomes opaque; only the samples
    before that point are evaluated again with gradient. With `max_samples`, only the first rays
    whose occupied samples fit in it are rendered (the output then has fewer rows than `origins`):
    a training step of random rays costs the same however much of the grid is still occupied.
    """
    view_directions = directions if view_directions is None else view_directions
    samples = sample_along_rays(origins, directions, grid, step_size, jitter)
    if max_samples is not None:
        count = leading_rays(samples, origins.shape[0], max_samples)
        if count < origins.shape[0]:
            samples = samples.subset(slice(0, int(torch.searchsorted(samples.rays, count))))
            view_directions = view_directions[:count]
            background = background[:count] if background.dim() == 2 else background
    samples = visible_samples(log_density_fn, samples, view_directions.shape[0], step_size)
    return composite(radiance_fn, samples, view_directions, background, step_size)
