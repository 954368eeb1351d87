"""A UV texture for a bare surface: an xatlas unwrap, then colour baked from a teacher's renders.

Each texel is rasterized in UV space to find the surface point it shows; that point is projected
into every teacher view, kept where the mesh's own depth says it is the visible surface there
(not hidden behind another part), and the views' colours averaged, weighted towards views that
face the surface. Texels no view saw, and the gutters between charts that bilinear sampling
reaches across at seams, are then filled by dilation from their neighbours.
Dimension letters: V vertices, U UV coordinates, F faces, T texels per side, N texels covered.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from fieldkit.cameras import Cameras
from fieldkit.render.mesh import nearest_faces, project, rasterize, screen_barycentrics

CHART_PADDING = 2
"""Texels between xatlas charts, so bilinear samples at a seam do not mix two charts."""
VISIBILITY_TOLERANCE = 0.01
"""A texel counts as visible in a view when its distance to the camera is within this fraction of
the mesh's rendered depth there (rasterization and bilinear lookups differ by that much)."""
FACING_POWER = 2.0
"""Views are weighted by cos(angle to the surface normal) to this power: grazing views smear."""
DILATION_STEPS = 16


def unwrap(vertices: Tensor, faces: Tensor, texture_size: int) -> tuple[Tensor, Tensor]:
    """xatlas charts packed for a `texture_size` texture -> uvs [U, 2] in [0, 1] (v up) and uv_faces [F, 3]."""
    import xatlas  # only unwrapping needs it

    atlas = xatlas.Atlas()
    atlas.add_mesh(vertices.detach().numpy().astype(np.float32), faces.numpy().astype(np.uint32))
    charts = xatlas.ChartOptions()
    # xatlas's chart-merging iterations took 96% of the unwrap of a 40k-face surface (139 s of 145 s)
    # for 11% fewer charts and the same packing utilisation
    charts.max_iterations = 0
    pack = xatlas.PackOptions()
    pack.resolution, pack.padding, pack.bilinear = texture_size, CHART_PADDING, True
    atlas.generate(chart_options=charts, pack_options=pack)
    _, uv_faces, uvs = atlas[0]
    return torch.from_numpy(uvs.astype(np.float32)), torch.from_numpy(uv_faces.astype(np.int64))


def uv_to_texel(uvs: Tensor, texture_size: int) -> Tensor:
    """Texel-grid coordinates [..., 2] (x right, y down: image rows) of UVs (v up)."""
    return torch.stack([uvs[..., 0], 1 - uvs[..., 1]], dim=-1) * texture_size


@torch.no_grad()
def texel_surface(vertices: Tensor, faces: Tensor, uvs: Tensor, uv_faces: Tensor,
                  texture_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """For each texel covered by a chart: its flat index [N], the surface point it shows [N, 3]
    and that face's unit normal [N, 3]."""
    texels = uv_to_texel(uvs, texture_size)[None]  # [1, U, 2]
    face = nearest_faces(texels, torch.ones(texels.shape[:2]), uv_faces, texture_size, texture_size)[0]
    covered = (face >= 0).reshape(-1).nonzero()[:, 0]  # [N]
    owner = face.reshape(-1)[covered]
    rows, columns = covered // texture_size, covered % texture_size
    centres = torch.stack([columns, rows], dim=-1).float() + 0.5
    weights = screen_barycentrics(texels[0][uv_faces[owner]], centres)  # [N, 3]
    corners = vertices[faces[owner]]  # [N, 3, 3]
    points = (weights[..., None] * corners).sum(dim=1)
    normals = torch.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0], dim=-1)
    return covered, points, F.normalize(normals, dim=-1)


@torch.no_grad()
def _view_colours(vertices: Tensor, faces: Tensor, points: Tensor, normals: Tensor, image: Tensor,
                  camera: Cameras) -> tuple[Tensor, Tensor]:
    """One view's colour [N, 3] at each texel point and its weight [N] (0 where hidden or away)."""
    height, width = image.shape[:2]
    pixels, view_depth = project(points, camera)
    pixels, view_depth = pixels[0], view_depth[0]  # [N, 2], [N]
    in_image = (pixels[:, 0] >= 0) & (pixels[:, 0] < width) & (pixels[:, 1] >= 0) & (pixels[:, 1] < height) & \
        (view_depth > 0)
    mesh_depth = rasterize(vertices, faces, camera).depth[0]  # [H, W] ray distance, 0 where empty
    column = pixels[:, 0].long().clamp(0, width - 1)
    row = pixels[:, 1].long().clamp(0, height - 1)
    to_camera = camera.positions[0] - points
    distance = to_camera.norm(dim=-1)
    visible = (distance <= mesh_depth[row, column] * (1 + VISIBILITY_TOLERANCE)) & in_image
    facing = ((to_camera / distance[:, None].clamp(min=1e-12)) * normals).sum(dim=-1).abs()  # either winding
    grid = torch.stack([pixels[:, 0] / width * 2 - 1, pixels[:, 1] / height * 2 - 1], dim=-1).view(1, 1, -1, 2)
    colours = F.grid_sample(image.permute(2, 0, 1)[None], grid, align_corners=False, padding_mode="border")
    return colours[0, :, 0].t(), facing.pow(FACING_POWER) * visible


def dilate(texture: Tensor, filled: Tensor, steps: int = DILATION_STEPS) -> Tensor:
    """`texture` [T, T, K] with unfilled texels (`filled` [T, T] False) grown in from their filled
    neighbours, `steps` texels deep; whatever is still empty takes the mean colour."""
    values = (texture * filled[..., None]).permute(2, 0, 1)[None]  # [1, K, T, T]
    mask = filled[None, None].float()
    kernel_values = torch.ones(values.shape[1], 1, 3, 3)
    for _ in range(steps):
        sums = F.conv2d(values, kernel_values, padding=1, groups=values.shape[1])
        counts = F.conv2d(mask, torch.ones(1, 1, 3, 3), padding=1)
        grow = (mask == 0) & (counts > 0)
        if not grow.any():
            break
        values = torch.where(grow, sums / counts.clamp(min=1), values)
        mask = torch.where(grow, torch.ones_like(mask), mask)
    result = values[0].permute(1, 2, 0)
    mean = (texture * filled[..., None]).sum(dim=(0, 1)) / filled.sum().clamp(min=1)
    return torch.where(mask[0, 0, ..., None] > 0, result, mean)


@torch.no_grad()
def bake_texture(vertices: Tensor, faces: Tensor, uvs: Tensor, uv_faces: Tensor, images: list[Tensor],
                 cameras: Cameras, texture_size: int) -> tuple[Tensor, dict]:
    """A texture [T, T, 3] from `images` (each [H, W, 3]) seen by `cameras`, and figures for the
    run's notes (the share of covered texels that some view saw)."""
    covered, points, normals = texel_surface(vertices, faces, uvs, uv_faces, texture_size)
    colour_sums = torch.zeros(points.shape[0], 3)
    weight_sums = torch.zeros(points.shape[0])
    for index, image in enumerate(images):
        colours, weights = _view_colours(vertices, faces, points, normals, image, cameras[index])
        colour_sums += colours * weights[:, None]
        weight_sums += weights
    seen = weight_sums > 0
    texture = torch.zeros(texture_size * texture_size, 3)
    texture[covered[seen]] = colour_sums[seen] / weight_sums[seen, None]
    filled = torch.zeros(texture_size * texture_size, dtype=torch.bool)
    filled[covered[seen]] = True
    shape = (texture_size, texture_size)
    texture = dilate(texture.view(*shape, 3), filled.view(shape))
    return texture, {"texels_covered": int(covered.shape[0]),
                     "texels_seen_fraction": float(seen.float().mean()) if seen.numel() else 0.0}
