"""Vectorised sphere tracing, shading and supersampled rendering of SDF scenes on CPU.

Lights are directional and fixed in world space and there are no cast shadows, so a surface
point's colour depends only on the point and the viewing direction: exactly the function a
radiance field models. Dimension letters: R rays, A rays still marching, N surface points,
P parts, C cameras, H/W image rows/columns, S sub-samples per pixel.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
from torch import Tensor

from fieldkit.cameras import Cameras

from .materials import Material
from .sdf import SDF, PointMap

BOUNDS = 1.0
"""A scene's content lies in [-BOUNDS, BOUNDS]^3 unless it names other bounds; rays are only
marched inside its box."""
Bounds = tuple[tuple[float, float, float], tuple[float, float, float]]
MAX_STEPS = 128
HIT_EPSILON = 5e-4
NORMAL_STEP = 1e-3
RAYS_PER_BATCH = 1 << 19


@dataclass(frozen=True)
class Light:
    direction: tuple[float, float, float]
    """Towards the light, world space; normalised on use."""
    intensity: float


@dataclass(frozen=True)
class Part:
    shape: SDF
    material: Material
    to_local: PointMap | None = None
    """Maps world points to the frame the shape and its texture are written in (e.g. a rotation)."""

    def local(self, points: Tensor) -> Tensor:
        return points if self.to_local is None else self.to_local(points)


@dataclass(frozen=True)
class Scene:
    description: str
    parts: tuple[Part, ...]
    lights: tuple[Light, ...] = (Light((0.45, 0.3, 1.0), 0.75), Light((-0.7, -0.5, 0.35), 0.25))
    ambient: float = 0.35
    bounds: Bounds = ((-BOUNDS,) * 3, (BOUNDS,) * 3)
    """min and max corners of the box that holds the scene (and becomes its dataset's aabb)"""
    max_steps: int = MAX_STEPS
    """sphere-tracing steps before a ray counts as a miss: a ray grazing a long flat face shortens
    its steps geometrically, so scenes seen at grazing angles need more"""

    def distance(self, points: Tensor) -> Tensor:  # [N]
        result = self.parts[0].shape(self.parts[0].local(points))
        for part in self.parts[1:]:
            result = torch.minimum(result, part.shape(part.local(points)))
        return result

    def nearest_part(self, points: Tensor) -> Tensor:  # [N] int64
        distances = torch.stack([part.shape(part.local(points)) for part in self.parts])  # [P, N]
        return distances.argmin(dim=0)


def box_interval(origins: Tensor, directions: Tensor, bounds: Bounds = ((-BOUNDS,) * 3, (BOUNDS,) * 3)
                 ) -> tuple[Tensor, Tensor]:
    """Entry and exit depths [R] of each ray in the box `bounds` (entry >= 0; exit < entry on a miss)."""
    inverse = 1.0 / torch.where(directions.abs() < 1e-12, torch.full_like(directions, 1e-12), directions)
    low, high = (torch.tensor(corner, dtype=origins.dtype) for corner in bounds)
    lower, upper = (low - origins) * inverse, (high - origins) * inverse  # [R, 3]
    entry = torch.minimum(lower, upper).max(dim=-1).values.clamp(min=0)
    exit_ = torch.maximum(lower, upper).min(dim=-1).values
    return entry, exit_


def trace(scene: Scene, origins: Tensor, directions: Tensor) -> tuple[Tensor, Tensor]:
    """Depth [R] of each ray's first surface hit and a hit mask [R]; `directions` are unit vectors."""
    entry, exit_ = box_interval(origins, directions, scene.bounds)
    depth = torch.zeros_like(entry)
    hit = torch.zeros_like(entry, dtype=torch.bool)
    alive = (entry < exit_).nonzero().squeeze(1)  # [A] indices of rays still marching
    marched = entry[alive]  # [A]
    for _ in range(scene.max_steps):
        if alive.numel() == 0:
            break
        distance = scene.distance(origins[alive] + marched[:, None] * directions[alive])  # [A]
        converged = distance < HIT_EPSILON
        depth[alive[converged]] = marched[converged]
        hit[alive[converged]] = True
        marched = marched + distance
        # dropping finished rays each step keeps the work proportional to the rays still marching
        keep = ~converged & (marched < exit_[alive])
        alive, marched = alive[keep], marched[keep]
    return depth, hit


def surface_normals(scene: Scene, points: Tensor) -> Tensor:
    """Unit normals [N, 3] from central differences of the scene SDF."""
    offsets = torch.eye(3) * NORMAL_STEP  # [3, 3]
    probes = torch.cat([points[:, None] + offsets, points[:, None] - offsets], dim=1)  # [N, 6, 3]
    distances = scene.distance(probes.reshape(-1, 3)).reshape(-1, 2, 3)  # [N, 2, 3]
    gradient = distances[:, 0] - distances[:, 1]  # [N, 3]
    return gradient / gradient.norm(dim=-1, keepdim=True).clamp(min=1e-12)


def _surface_materials(scene: Scene, points: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Albedo [N, 3], specular strength [N] and shininess [N] of the part nearest each point."""
    nearest = scene.nearest_part(points)
    albedo = torch.zeros_like(points)
    specular, shininess = torch.zeros_like(points[:, 0]), torch.ones_like(points[:, 0])
    for index, part in enumerate(scene.parts):
        mask = nearest == index
        if mask.any():
            albedo[mask] = part.material.albedo(part.local(points[mask]))
            specular[mask], shininess[mask] = part.material.specular, part.material.shininess
    return albedo, specular, shininess


def shade(scene: Scene, points: Tensor, directions: Tensor) -> Tensor:
    """Colour [N, 3] in [0, 1] of surface `points` seen along ray `directions` [N, 3].

    Ambient + Lambert + Blinn-Phong per light; the highlight is white and grows with the light.
    """
    normals = surface_normals(scene, points)
    albedo, specular, shininess = _surface_materials(scene, points)
    to_viewer = -directions / directions.norm(dim=-1, keepdim=True)
    diffuse = torch.full_like(specular, scene.ambient)
    highlight = torch.zeros_like(specular)
    for light in scene.lights:
        to_light = torch.tensor(light.direction, dtype=torch.float32)
        to_light = to_light / to_light.norm()
        facing = (normals @ to_light).clamp(min=0)  # [N]
        halfway = to_light + to_viewer
        halfway = halfway / halfway.norm(dim=-1, keepdim=True).clamp(min=1e-12)
        alignment = (normals * halfway).sum(dim=-1).clamp(min=0)  # [N]
        diffuse = diffuse + light.intensity * facing
        # a face turned away from the light must not catch its highlight
        highlight = highlight + light.intensity * alignment.pow(shininess) * (facing > 0)
    return (albedo * diffuse[:, None] + (specular * highlight)[:, None]).clamp(0, 1)


def _subpixel_rays(cameras: Cameras, samples_per_axis: int) -> tuple[Tensor, Tensor]:
    """Origins and directions [C*H*W*S, 3] on an S = s*s stratified grid inside each pixel."""
    count, height, width = len(cameras), int(cameras.height[0]), int(cameras.width[0])
    fractions = (torch.arange(samples_per_axis, dtype=torch.float32) + 0.5) / samples_per_axis
    sub_y, sub_x = torch.meshgrid(fractions, fractions, indexing="ij")  # [s, s]
    rows, columns = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")  # [H, W]
    pixel_x = (columns[..., None] + sub_x.reshape(-1)).expand(count, -1, -1, -1).reshape(-1)  # [C*H*W*S]
    pixel_y = (rows[..., None] + sub_y.reshape(-1)).expand(count, -1, -1, -1).reshape(-1)
    camera_indices = torch.arange(count).repeat_interleave(height * width * samples_per_axis**2)
    return cameras.generate_rays(camera_indices, pixel_x, pixel_y)


def render_rgba(scene: Scene, cameras: Cameras, samples_per_axis: int = 2) -> Tensor:
    """Images [C, H, W, 4]: alpha is the covered fraction of each pixel, rgb the mean colour of the
    covered sub-samples (un-premultiplied), so rgb * alpha is the supersampled premultiplied image.

    All cameras must share one resolution.
    """
    count, height, width = len(cameras), int(cameras.height[0]), int(cameras.width[0])
    origins, directions = _subpixel_rays(cameras, samples_per_axis)  # [R, 3]
    depth, hit = trace(scene, origins, directions)
    colour = torch.zeros_like(origins)  # [R, 3], black where nothing was hit
    points = origins[hit] + depth[hit, None] * directions[hit]
    colour[hit] = shade(scene, points, directions[hit])
    colour = colour.reshape(count, height, width, -1, 3)  # [C, H, W, S, 3]
    alpha = hit.reshape(count, height, width, -1).float().mean(dim=-1)  # [C, H, W]
    premultiplied = colour.mean(dim=-2)  # [C, H, W, 3]
    straight = premultiplied / alpha.clamp(min=1e-8)[..., None]
    return torch.cat([straight, alpha[..., None]], dim=-1)


def render_batches(scene: Scene, cameras: Cameras, samples_per_axis: int = 2) -> Iterator[Tensor]:
    """Renders `cameras` a batch at a time, so memory stays bounded; yields [B, H, W, 4] per batch."""
    if len(cameras) == 0:
        return
    rays_per_camera = int(cameras.height[0]) * int(cameras.width[0]) * samples_per_axis**2
    batch = max(1, RAYS_PER_BATCH // rays_per_camera)
    for start in range(0, len(cameras), batch):
        yield render_rgba(scene, cameras[start:start + batch], samples_per_axis)
