"""A renderable radiance field: a field, its occupancy grid and its render settings."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from fieldkit.cameras import Cameras
from fieldkit.fields import Field
from fieldkit.ndc import NdcSpace
from fieldkit.render.occupancy import OccupancyGrid
from fieldkit.render.volume import RenderOutput, composite, march, render_rays

RENDER_CHUNK = 8192
"""Rays per chunk of `render`: its samples (at most the box's diagonal in steps per ray) and their
features stay within a few hundred megabytes however large the image."""


class RadianceField(nn.Module):
    """`render(cameras)` for any field architecture; what `fieldkit.load` returns for fields."""

    kind = "field"

    def __init__(self, field: Field, grid: OccupancyGrid, step_size: float, background=(1.0, 1.0, 1.0),
                 space: NdcSpace | None = None):
        super().__init__()
        self.field, self.grid, self.step_size = field, grid, step_size
        self.space = space  # None: the field, its box and its grid are in world coordinates
        self.register_buffer("background", torch.as_tensor(background, dtype=torch.float32).reshape(3).clone())
        self.metrics: dict = {}
        self.dataset: dict = {}

    @property
    def architecture(self) -> str:
        return self.field.architecture

    @property
    def aabb(self) -> Tensor:
        return self.field.aabb

    def marched_rays(self, origins: Tensor, directions: Tensor) -> tuple[Tensor, Tensor]:
        """World rays [R, 3] as the rays marched through the field's box: the same rays, or their
        NDC (see fieldkit.ndc); depths of a render are measured along these."""
        return (origins, directions) if self.space is None else self.space.rays(origins, directions)

    def _radiance(self, points: Tensor, directions: Tensor) -> tuple[Tensor, Tensor]:
        output = self.field(points, directions)
        return output.log_density, output.rgb

    def render_rays(self, origins: Tensor, directions: Tensor, background: Tensor | None = None,
                    jitter: Tensor | None = None, max_samples: int | None = None) -> RenderOutput:
        """See `fieldkit.render.volume.render_rays`; with `max_samples` it may render only the first rays."""
        background = self.background if background is None else background
        return render_rays(self._radiance, self.field.log_density, self.grid, *self.marched_rays(origins, directions),
                           background, self.step_size, jitter, max_samples, view_directions=directions)

    @torch.no_grad()
    def _render_chunk(self, origins: Tensor, directions: Tensor, background: Tensor | None) -> RenderOutput:
        """`render_rays` without gradient: a field that emits the geometry vector keeps it from the
        visibility pass, so the visible samples only run its colour head, not its encoding again."""
        if not hasattr(self.field, "geometry_rows"):
            return self.render_rays(origins, directions, background)
        background = self.background if background is None else background
        samples = march(self.field.geometry_rows, self.grid, *self.marched_rays(origins, directions), self.step_size)

        def radiance(points: Tensor, sample_directions: Tensor) -> tuple[Tensor, Tensor]:
            output = self.field.output_from_geometry(samples.values, sample_directions)
            return output.log_density, output.rgb

        return composite(radiance, samples, directions, background, self.step_size)

    @torch.no_grad()
    def render(self, cameras: Cameras, background: Tensor | None = None, chunk: int = RENDER_CHUNK) -> RenderOutput:
        """Renders every camera (all of one resolution) -> rgb [C, H, W, 3], alpha and depth [C, H, W]."""
        if len(set(zip(cameras.width.tolist(), cameras.height.tolist()))) != 1:
            raise ValueError("render() needs cameras of one resolution; render them one at a time")
        height, width = int(cameras.height[0]), int(cameras.width[0])
        cameras = cameras.to(self.background.device)
        outputs = []
        for index in range(len(cameras)):
            origins, directions = cameras.image_rays(index)
            parts = [self._render_chunk(o, d, background) for o, d in zip(origins.split(chunk), directions.split(chunk))]
            outputs.append([torch.cat([getattr(part, name) for part in parts]) for name in ("rgb", "alpha", "depth")])
        rgb, alpha, depth = (torch.stack([output[i] for output in outputs]) for i in range(3))
        return RenderOutput(rgb.view(-1, height, width, 3), alpha.view(-1, height, width), depth.view(-1, height, width))

    def update_occupancy(self, fraction: float = 1.0, generator=None) -> None:
        self.grid.update(self.field.log_density, self.step_size, fraction, generator)
