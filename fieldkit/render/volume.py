"""Volume rendering of a field along rays: the torch reference.

nerfacc's split: the renderer owns sampling, transmittance, weights and accumulation and
takes the field as a callback, so fields, splat densities and distilled students share it.
Dimension letters: R rays, S samples per ray, M kept samples.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

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


def sample_along_rays(origins: Tensor, directions: Tensor, grid: OccupancyGrid, step_size: float,
                      jitter: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """Evenly spaced samples through the box, masked by the occupancy grid.

    Returns distances t [R, S], points [R, S, 3] and the mask of occupied samples [R, S].
    """
    near, far = ray_aabb(origins, directions, grid.aabb)
    diagonal = float((grid.aabb[1] - grid.aabb[0]).norm())
    count = max(int(diagonal / step_size) + 1, 1)
    offsets = torch.arange(count, device=origins.device, dtype=origins.dtype)
    offsets = offsets[None, :] + (0.5 if jitter is None else jitter[:, None])
    t = near[:, None] + offsets * step_size  # [R, S]
    points = origins[:, None, :] + t[..., None] * directions[:, None, :]  # [R, S, 3]
    mask = (t < far[:, None]) & grid.is_occupied(points.reshape(-1, 3)).view(t.shape)
    return t, points, mask


def _transmittance(optical_depth: Tensor) -> Tensor:  # [R, S] -> light reaching each sample [R, S]
    exclusive = torch.cumsum(optical_depth, dim=-1) - optical_depth
    return torch.exp(-exclusive)


@torch.no_grad()
def visible_samples(log_density_fn: LogDensityFn, points: Tensor, mask: Tensor,
                    step_size: float) -> tuple[Tensor, Tensor | None]:
    """The samples of `mask` [R, S] that light still reaches (transmittance above epsilon), and
    what `log_density_fn` returned at each sample it evaluated ([R, S, V] when it returns rows
    [M, V] with the log-density first, else None).

    Marches in segments; a ray that has become opaque is not evaluated further.
    """
    visible, values = torch.zeros_like(mask), None
    optical_depth = points.new_zeros(mask.shape[0])  # [R] accumulated so far
    for start in range(0, mask.shape[1], SEGMENT_STEPS):
        segment = mask[:, start:start + SEGMENT_STEPS] & (optical_depth < _OPAQUE_OPTICAL_DEPTH)[:, None]
        if not segment.any():
            continue
        evaluated = log_density_fn(points[:, start:start + SEGMENT_STEPS][segment])
        if evaluated.dim() == 2:
            if values is None:
                values = points.new_zeros(*mask.shape, evaluated.shape[1])
            values[:, start:start + SEGMENT_STEPS][segment] = evaluated
            evaluated = evaluated[:, 0]
        depth = torch.zeros(segment.shape, device=points.device, dtype=points.dtype)
        depth[segment] = density_from_log(evaluated) * step_size
        transmittance = torch.exp(-(optical_depth[:, None] + torch.cumsum(depth, dim=-1) - depth))
        visible[:, start:start + SEGMENT_STEPS] = segment & (transmittance > TRANSMITTANCE_EPSILON)
        optical_depth += depth.sum(dim=-1)
    return visible, values


@dataclass
class RaySamples:
    t: Tensor  # [R, S] distances
    points: Tensor  # [R, S, 3]
    mask: Tensor  # [R, S] the occupied samples that light still reaches
    values: Tensor | None = None  # [R, S, V] the visibility pass's rows where it evaluated (visible_samples)


def march(log_density_fn: LogDensityFn, grid: OccupancyGrid, origins: Tensor, directions: Tensor,
          step_size: float, jitter: Tensor | None = None) -> RaySamples:
    """The samples of the rays that a render evaluates: occupied, and before the ray turns opaque
    by `log_density_fn` (a pass without gradient)."""
    t, points, mask = sample_along_rays(origins, directions, grid, step_size, jitter)
    return RaySamples(t, points, *visible_samples(log_density_fn, points, mask, step_size))


def composite(radiance_fn: RadianceFn, samples: RaySamples, directions: Tensor, background: Tensor,
              step_size: float) -> RenderOutput:
    """Evaluates the field at the marched samples, with gradient, and composites rgb, alpha and
    depth [R] over `background` [3] or [R, 3]. Two fields composited over the same samples are
    queried at the very same points."""
    t, points, mask = samples.t, samples.points, samples.mask
    ray_directions = directions[:, None, :].expand_as(points)
    log_density, rgb = radiance_fn(points[mask], ray_directions[mask]) if mask.any() else (
        t.new_zeros(0), t.new_zeros(0, 3))
    optical_depth = torch.zeros_like(t).index_put((mask,), density_from_log(log_density) * step_size)
    transmittance = _transmittance(optical_depth)
    weights = transmittance * (1 - torch.exp(-optical_depth))  # [R, S]
    colours = torch.zeros(*t.shape, 3, device=t.device, dtype=t.dtype).index_put((mask,), rgb)
    alpha = weights.sum(dim=-1)
    colour = (weights[..., None] * colours).sum(dim=-2) + (1 - alpha[..., None]) * background
    depth = (weights * t).sum(dim=-1) / alpha.clamp(min=1e-6)
    return RenderOutput(colour, alpha, depth, samples=int(mask.sum()), sample_weights=weights[mask].detach(),
                        sample_rays=mask.nonzero()[:, 0])


def render_rays(radiance_fn: RadianceFn, log_density_fn: LogDensityFn, grid: OccupancyGrid, origins: Tensor,
                directions: Tensor, background: Tensor, step_size: float, jitter: Tensor | None = None) -> RenderOutput:
    """Composites rgb, alpha and depth [R] along rays over `background` [3] or [R, 3].

    A first pass without gradient finds where each ray becomes opaque; only the samples
    before that point are evaluated again with gradient.
    """
    samples = march(log_density_fn, grid, origins, directions, step_size, jitter)
    return composite(radiance_fn, samples, directions, background, step_size)
