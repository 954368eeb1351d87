"""A triangle surface from any field or splats: marching cubes on a log-density grid, at a
level chosen from the teacher's own renders, then cleaned up and decimated.

The level is the one whose surface passes through what the teacher shows: the teacher renders a
few views, each opaque pixel's expected depth gives a point on its visible surface, and a low
quantile of the log-density at those points is the iso-level. A constant would suit one architecture's
density scale and not another's (a hash grid's surface is a steep wall, a baked splat volume's a
soft slope). Splats are first baked into an opacity-weighted density grid (`bake_splats`).
Dimension letters: R grid samples per axis, N points, V vertices, F faces.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import mcubes
import numpy as np
import torch
import torch.nn.functional as F
import trimesh
from torch import Tensor

from fieldkit.cameras import Cameras, framing_distance, orbit_cameras, turntable_azimuths
from fieldkit.errors import FieldkitError
from fieldkit.fields.activations import LOG_DENSITY_MIN
from fieldkit.gaussians import Splats
from fieldkit.gaussians.density import bake_splats
from fieldkit.radiance import RadianceField

CHUNK_POINTS = 2**18
THRESHOLD_VIEWS = 6
"""Teacher renders whose visible surface chooses the iso-level."""
THRESHOLD_RESOLUTION = 64
SURFACE_QUANTILE = 0.2
"""The iso-level is this quantile of the log-density at the visible surface points, so the surface
encloses four in five of them. A learnt field's shell is uneven: at the median its thinner half
opens into holes (5% of the opaque pixels of the default scene's hash grid; none at this level)."""
OPAQUE_ALPHA = 0.9
"""Pixels at least this opaque show a surface; softer ones (edges, haze) do not choose the level."""
MIN_COMPONENT_FRACTION = 0.005
"""Connected pieces with fewer than this fraction of the faces are floaters and are dropped."""
SPLAT_BOUNDS_MARGIN = 0.05  # a splat grid spans the centres' box grown by this fraction per side


@dataclass
class Surface:
    vertices: Tensor  # [V, 3]
    faces: Tensor  # [F, 3] int64
    threshold: float  # the log-density iso-level
    notes: dict = field(default_factory=dict)  # what extraction measured and dropped, for metrics.json


def _grid_points(aabb: Tensor, resolution: int) -> Tensor:
    """Sample positions [R, R, R, 3] on the box's corners-inclusive grid, indexed [x, y, z]."""
    axes = [torch.linspace(float(aabb[0, axis]), float(aabb[1, axis]), resolution) for axis in range(3)]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)


@torch.no_grad()
def log_density_grid(model, resolution: int) -> tuple[Tensor, Tensor]:
    """The log-density [R, R, R] (indexed [x, y, z]) at the corners-inclusive grid over the model's
    box, and that box [2, 3]. A field is read where its occupancy grid says something is (the
    renderer never samples elsewhere, so floaters there are not the teacher's); splats are baked."""
    if isinstance(model, Splats):
        low, high = model.aabb
        margin = SPLAT_BOUNDS_MARGIN * (high - low)
        aabb = torch.stack([low - margin, high + margin])
        density, _ = bake_splats(model, aabb, resolution)  # [z, y, x]
        return density.permute(2, 1, 0).clamp(min=1e-30).log().clamp(min=LOG_DENSITY_MIN), aabb
    if not isinstance(model, RadianceField):
        raise FieldkitError(f"cannot extract a surface from a {getattr(model, 'kind', type(model).__name__)}: "
                            "extraction reads a field or splats")
    aabb = model.aabb.detach().cpu()
    points = _grid_points(aabb, resolution).reshape(-1, 3)
    values = torch.empty(points.shape[0])
    for start in range(0, points.shape[0], CHUNK_POINTS):
        chunk = points[start:start + CHUNK_POINTS]
        log_density = model.field.log_density(chunk).reshape(-1).float()
        values[start:start + CHUNK_POINTS] = torch.where(model.grid.is_occupied(chunk), log_density,
                                                         torch.full_like(log_density, LOG_DENSITY_MIN))
    return values.view(resolution, resolution, resolution), aabb


def sample_grid(grid: Tensor, aabb: Tensor, points: Tensor) -> Tensor:
    """Trilinear samples [N] of `grid` [R, R, R] ([x, y, z], corners on the box) at `points` [N, 3]."""
    normalised = (points - aabb[0]) / (aabb[1] - aabb[0]) * 2 - 1  # grid_sample wants (x, y, z) = (W, H, D)
    volume = grid.permute(2, 1, 0)[None, None]  # [1, 1, z, y, x]
    return F.grid_sample(volume, normalised.view(1, -1, 1, 1, 3), align_corners=True).view(-1)


def threshold_cameras(aabb: Tensor, views: int = THRESHOLD_VIEWS, resolution: int = THRESHOLD_RESOLUTION) -> Cameras:
    """A turntable around the box, alternating above and below the equator so both sides count."""
    centre = ((aabb[0] + aabb[1]) / 2).tolist()
    elevations = torch.tensor([30.0 if index % 2 == 0 else -15.0 for index in range(views)])
    return orbit_cameras(turntable_azimuths(views), elevations, framing_distance(aabb), resolution, centre)


@torch.no_grad()
def choose_threshold(model, grid: Tensor, aabb: Tensor, cameras: Cameras | None = None) -> tuple[float, int]:
    """The SURFACE_QUANTILE of `grid`'s log-density at the surface points the model's renders show
    (the expected depth of its opaque pixels) -> (level, points it was chosen from)."""
    cameras = threshold_cameras(model.aabb) if cameras is None else cameras
    output = model.render(cameras)
    points = []
    for index in range(len(cameras)):
        origins, directions = cameras.image_rays(index)
        opaque = output.alpha[index].reshape(-1) >= OPAQUE_ALPHA
        points.append(origins[opaque] + directions[opaque] * output.depth[index].reshape(-1, 1)[opaque])
    points = torch.cat(points)
    inside = ((points >= aabb[0]) & (points <= aabb[1])).all(dim=-1)
    if int(inside.sum()) == 0:
        raise FieldkitError("the teacher renders nothing opaque from any side: there is no surface to extract")
    return float(sample_grid(grid, aabb, points[inside]).quantile(SURFACE_QUANTILE)), int(inside.sum())


def _drop_floaters(mesh: trimesh.Trimesh) -> tuple[trimesh.Trimesh, int]:
    """The mesh without connected pieces smaller than MIN_COMPONENT_FRACTION of its faces -> (mesh, pieces dropped)."""
    components = trimesh.graph.connected_components(mesh.face_adjacency, nodes=np.arange(len(mesh.faces)))
    keep = [component for component in components if len(component) >= MIN_COMPONENT_FRACTION * len(mesh.faces)]
    if not keep:  # only tiny pieces: keep the largest rather than nothing
        keep = [max(components, key=len)]
    kept = np.zeros(len(mesh.faces), dtype=bool)
    kept[np.concatenate(keep)] = True
    mesh.update_faces(kept)
    mesh.remove_unreferenced_vertices()
    return mesh, len(components) - len(keep)


def decimate(vertices: np.ndarray, faces: np.ndarray, face_budget: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadric edge-collapse decimation down to about `face_budget` faces (no-op below it)."""
    if len(faces) <= face_budget:
        return vertices, faces
    import fast_simplification  # only decimation needs it

    return fast_simplification.simplify(vertices.astype(np.float32), faces.astype(np.int64),
                                        target_reduction=1 - face_budget / len(faces))


def surface_from_grid(grid: Tensor, aabb: Tensor, threshold: float, face_budget: int) -> Surface:
    """Marching cubes at `threshold`, floaters dropped, decimated to `face_budget`, faces wound outwards."""
    if not math.isfinite(threshold) or threshold >= float(grid.max()):
        raise FieldkitError(f"no surface at log-density {threshold:.3g}: every density of the teacher is below it "
                            f"(the highest is {float(grid.max()):.3g}); the teacher looks empty")
    # a closed border, so a surface that leaves the box is capped rather than left open
    padded = F.pad(grid[None, None], (1, 1, 1, 1, 1, 1), value=min(LOG_DENSITY_MIN, float(grid.min())))[0, 0]
    vertices, faces = mcubes.marching_cubes(padded.double().numpy(), threshold)
    if len(faces) == 0:
        raise FieldkitError(f"no surface at log-density {threshold:.3g}: marching cubes found no crossing")
    spacing = ((aabb[1] - aabb[0]) / (grid.shape[0] - 1)).double().numpy()
    vertices = aabb[0].double().numpy() + (vertices - 1) * spacing
    mesh = trimesh.Trimesh(vertices, faces, process=True)
    marched = len(mesh.faces)
    mesh, dropped = _drop_floaters(mesh)
    vertices, faces = decimate(np.asarray(mesh.vertices), np.asarray(mesh.faces), face_budget)
    mesh = trimesh.Trimesh(vertices, faces, process=True)
    if mesh.volume < 0:  # marching cubes' winding depends on which side is "inside"
        mesh.invert()
    notes = {"threshold": threshold, "marched_faces": marched, "floaters_dropped": dropped,
             "faces": len(mesh.faces), "vertices": len(mesh.vertices)}
    return Surface(torch.tensor(mesh.vertices, dtype=torch.float32), torch.tensor(mesh.faces, dtype=torch.int64),
                   threshold, notes)


def extract_surface(model, resolution: int, face_budget: int, threshold: float | None = None,
                    cameras: Cameras | None = None) -> Surface:
    """A field's or splats' surface: marching cubes on its log-density at `resolution` samples per
    axis, at `threshold` or the level its renders from `cameras` choose (see `choose_threshold`)."""
    grid, aabb = log_density_grid(model, resolution)
    chosen_from = 0
    if threshold is None:
        threshold, chosen_from = choose_threshold(model, grid, aabb, cameras)
    surface = surface_from_grid(grid, aabb, threshold, face_budget)
    surface.notes |= {"grid_resolution": resolution, "threshold_points": chosen_from}
    return surface
