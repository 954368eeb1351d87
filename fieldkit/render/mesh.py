"""Differentiable triangle-mesh rasterization in pure torch: the reference path of the mesh op.

`rasterize` is the op: it finds each pixel's nearest triangle (the discrete search a CUDA kernel
can take over later, behind the same function) and then recomputes that triangle's
perspective-correct barycentrics and ray distance from the projected vertices, so both carry
gradients to the vertex positions. `interpolate`, `sample_texture` and `antialias` follow
nvdiffrast's split: attributes are interpolated with the barycentrics, textures sampled
bilinearly, and silhouette edges blended by where they cross between pixel centres, which is
what gives vertex positions a gradient from coverage (a hard mask has none).

The search bins each triangle into the pixels of its screen bounding box: one (triangle, pixel)
candidate pair per pixel centre in the box, all pairs tested at once (in chunks of bounded
memory), and the nearest kept per pixel by one `scatter_reduce` on a key that packs the view
depth's float bits above the triangle index (positive floats order as their bit patterns do).

Cameras are fieldkit's pinhole cameras (OpenGL camera-to-world). A triangle with a vertex behind
the near plane is dropped rather than clipped: fieldkit's cameras orbit outside the bounds.
Dimension letters: V vertices, F faces, C cameras, H/W rows/columns, P candidate pairs, M pixels.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from fieldkit.cameras import Cameras
from fieldkit.errors import FieldkitError
from fieldkit.render.volume import RenderOutput

NEAR = 1e-3
"""View depth (world units) below which a vertex counts as behind the camera."""
CHUNK_PAIRS = 2**21
"""Candidate (triangle, pixel) pairs tested at once: bounds the search's memory."""
_NO_FACE = torch.iinfo(torch.int64).max


@dataclass
class MeshFragments:
    """What `rasterize` finds per pixel."""

    face: Tensor  # [C, H, W] int64 index of the nearest face, -1 where none
    barycentrics: Tensor  # [C, H, W, 3] perspective-correct, differentiable in the vertices; 0 where no face
    depth: Tensor  # [C, H, W] ray distance to the surface (as RenderOutput.depth), differentiable; 0 where no face
    screen: Tensor  # [C, V, 2] vertex pixel coordinates (differentiable): what `antialias` moves edges with


def project(vertices: Tensor, cameras: Cameras) -> tuple[Tensor, Tensor]:
    """Pixel coordinates [C, V, 2] (x right, y down, pixel centres at +0.5) and view depth [C, V]
    (distance in front of the camera along its viewing axis) of world-space `vertices` [V, 3]."""
    rotation, origin = cameras.c2w[:, :3, :3], cameras.c2w[:, :3, 3]  # [C, 3, 3], [C, 3]
    local = torch.einsum("cji,cvj->cvi", rotation, vertices[None] - origin[:, None])  # R^T (v - o): [C, V, 3]
    view_depth = -local[..., 2]  # OpenGL cameras look down -z
    safe = torch.where(view_depth.abs() < 1e-12, torch.full_like(view_depth, 1e-12), view_depth)
    x = cameras.cx[:, None] + cameras.fx[:, None] * local[..., 0] / safe
    y = cameras.cy[:, None] - cameras.fy[:, None] * local[..., 1] / safe  # image rows grow downwards
    return torch.stack([x, y], dim=-1), view_depth


def _cross(a: Tensor, b: Tensor) -> Tensor:  # 2D cross product of [..., 2] vectors
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def screen_barycentrics(corners: Tensor, points: Tensor) -> Tensor:
    """Barycentrics [..., 3] of 2D `points` [..., 2] in triangles `corners` [..., 3, 2], whatever
    the triangles' winding (all three are >= 0 exactly inside)."""
    a, b, c = corners.unbind(-2)
    area = _cross(b - a, c - a)
    area = torch.where(area.abs() < 1e-20, torch.full_like(area, 1e-20), area)
    return torch.stack([_cross(b - points, c - points), _cross(c - points, a - points),
                        _cross(a - points, b - points)], dim=-1) / area[..., None]


def _candidate_pixels(first: Tensor, extent: Tensor, counts: Tensor, members: Tensor) -> tuple[Tensor, Tensor]:
    """For the (camera, face) rows `members` [T], each pixel of its box: the row [P] and pixel [P, 2] (x, y)."""
    owner = torch.repeat_interleave(members, counts[members])  # [P]
    starts = torch.cumsum(counts[members], 0) - counts[members]
    rank = torch.arange(owner.shape[0]) - torch.repeat_interleave(starts, counts[members])
    width = extent[owner, 0]
    return owner, first[owner] + torch.stack([rank % width, rank // width], dim=-1)


@torch.no_grad()
def nearest_faces(screen: Tensor, view_depth: Tensor, faces: Tensor, height: int, width: int) -> Tensor:
    """The nearest face [C, H, W] (-1 where none) whose projection covers each pixel centre: the
    discrete search, without gradients. `screen` [C, V, 2], `view_depth` [C, V], `faces` [F, 3]."""
    cameras, face_count = screen.shape[0], faces.shape[0]
    corners, corner_depth = screen[:, faces], view_depth[:, faces]  # [C, F, 3, 2], [C, F, 3]
    size = torch.tensor([width, height])
    first = (corners.amin(dim=2) - 0.5).ceil().clamp(min=0).long()  # the first pixel whose centre may be inside
    last = torch.minimum((corners.amax(dim=2) - 0.5).floor().long(), size - 1)
    extent = (last - first + 1).clamp(min=0)  # [C, F, 2]
    a, b, c = corners.unbind(2)
    usable = (corner_depth > NEAR).all(dim=-1) & (_cross(b - a, c - a).abs() > 1e-12)
    counts = (extent.prod(dim=-1) * usable).reshape(-1)  # [C * F]
    first, extent = first.reshape(-1, 2), extent.reshape(-1, 2)
    corners, corner_depth = corners.reshape(-1, 3, 2), corner_depth.reshape(-1, 3)
    best = torch.full((cameras * height * width,), _NO_FACE, dtype=torch.int64)
    chunk_of = torch.cumsum(counts, 0) // CHUNK_PAIRS  # whole triangles per chunk
    for chunk in range(int(chunk_of[-1]) + 1 if counts.numel() else 0):
        members = ((chunk_of == chunk) & (counts > 0)).nonzero()[:, 0]
        if members.numel() == 0:
            continue
        owner, pixel = _candidate_pixels(first, extent, counts, members)
        weights = screen_barycentrics(corners[owner], pixel.float() + 0.5)  # [P, 3]
        inside = (weights >= 0).all(dim=-1)
        owner, pixel, weights = owner[inside], pixel[inside], weights[inside]
        # view depth is 1 / the screen-space interpolation of 1 / depth (perspective)
        depth = 1.0 / (weights / corner_depth[owner]).sum(dim=-1)
        key = (depth.float().view(torch.int32).long() << 32) | (owner % face_count)
        camera = owner // face_count
        flat = (camera * height + pixel[:, 1]) * width + pixel[:, 0]
        best.scatter_reduce_(0, flat, key, "amin")
    face = torch.where(best == _NO_FACE, -1, best & 0xFFFFFFFF)
    return face.view(cameras, height, width)


@torch.no_grad()
def seen_faces(vertices: Tensor, faces: Tensor, cameras: Cameras, cameras_per_call: int = 8) -> Tensor:
    """Which faces [F] bool are the nearest at some pixel of some camera (of one resolution): the
    faces that renders from `cameras` can teach anything."""
    height, width = check_cameras(cameras)
    seen = torch.zeros(faces.shape[0], dtype=torch.bool)
    for start in range(0, len(cameras), cameras_per_call):
        screen, view_depth = project(vertices, cameras[start:start + cameras_per_call])
        face = nearest_faces(screen, view_depth, faces, height, width)
        seen[face[face >= 0]] = True
    return seen


def _pixel_directions(cameras: Cameras, height: int, width: int) -> Tensor:
    """Camera-space directions [C, H, W, 3] through each pixel centre, with -z component 1."""
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float32) + 0.5,
                            torch.arange(width, dtype=torch.float32) + 0.5, indexing="ij")
    x = (xs - cameras.cx[:, None, None]) / cameras.fx[:, None, None]
    y = -(ys - cameras.cy[:, None, None]) / cameras.fy[:, None, None]
    return torch.stack([x, y, -torch.ones_like(x)], dim=-1)


def check_cameras(cameras: Cameras) -> tuple[int, int]:
    """(height, width) of cameras that this rasterizer draws: pinhole, one resolution."""
    if len(set(zip(cameras.width.tolist(), cameras.height.tolist()))) != 1:
        raise ValueError("rasterize() needs cameras of one resolution; rasterize them one at a time")
    if cameras.has_distortion:
        raise FieldkitError("meshes render through pinhole cameras only: these cameras have lens distortion "
                            "(undistort the images first)")
    return int(cameras.height[0]), int(cameras.width[0])


def rasterize(vertices: Tensor, faces: Tensor, cameras: Cameras) -> MeshFragments:
    """Each pixel's nearest triangle of the mesh (`vertices` [V, 3] world space, `faces` [F, 3]
    int64) seen by `cameras` (one resolution), its perspective-correct barycentrics and its ray
    distance; both differentiable in `vertices`."""
    if vertices.ndim != 2 or vertices.shape[-1] != 3 or faces.ndim != 2 or faces.shape[-1] != 3:
        raise ValueError(f"rasterize() expects vertices [V, 3] and faces [F, 3], got {list(vertices.shape)} "
                         f"and {list(faces.shape)}")
    height, width = check_cameras(cameras)
    screen, view_depth = project(vertices, cameras)
    face = nearest_faces(screen.detach(), view_depth.detach(), faces, height, width)
    covered = face >= 0
    camera = torch.arange(len(cameras))[:, None, None].expand_as(face)[covered]  # [M]
    corners = screen[camera[:, None], faces[face[covered]]]  # [M, 3, 2]
    corner_depth = view_depth[camera[:, None], faces[face[covered]]]  # [M, 3]
    ys, xs = covered.nonzero()[:, 1:].float().unbind(-1)
    weights = screen_barycentrics(corners, torch.stack([xs, ys], dim=-1) + 0.5)  # [M, 3]
    inverse_depth = (weights / corner_depth).sum(dim=-1)  # [M]
    perspective = weights / corner_depth / inverse_depth[:, None]
    ray_length = _pixel_directions(cameras, height, width)[covered].norm(dim=-1)
    barycentrics = torch.zeros(*face.shape, 3, dtype=vertices.dtype).masked_scatter(covered[..., None], perspective)
    depth = torch.zeros(face.shape, dtype=vertices.dtype).masked_scatter(covered, ray_length / inverse_depth)
    return MeshFragments(face, barycentrics, depth, screen)


def interpolate(attributes: Tensor, attribute_faces: Tensor, fragments: MeshFragments) -> Tensor:
    """Per-pixel attributes [C, H, W, K] from per-corner `attributes` [A, K] indexed by
    `attribute_faces` [F, 3] (the faces themselves for per-vertex attributes, or separate UV
    faces); 0 where no face."""
    corners = attributes[attribute_faces[fragments.face.clamp(min=0)]]  # [C, H, W, 3, K]
    values = (fragments.barycentrics[..., None] * corners).sum(dim=-2)
    return values * (fragments.face >= 0)[..., None]


def sample_texture(texture: Tensor, uv: Tensor) -> Tensor:
    """Bilinear samples [..., K] of `texture` [T_h, T_w, K] at `uv` [..., 2]: u right, v up from
    the bottom-left corner (OBJ's and trimesh's convention), texel centres at half steps, edges
    clamped."""
    shape = uv.shape[:-1]
    grid = torch.stack([uv[..., 0] * 2 - 1, 1 - uv[..., 1] * 2], dim=-1).reshape(1, 1, -1, 2)
    image = texture.permute(2, 0, 1)[None]  # [1, K, T_h, T_w]
    sampled = F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return sampled[0, :, 0].t().reshape(*shape, texture.shape[-1])


def face_neighbours(faces: Tensor) -> Tensor:
    """Per face and edge, the face across it [F, 3] (-1 on an open boundary); edge k is the one
    opposite corner k. Edges are matched by their vertex indices, so a mesh must share its vertices
    between faces (UV seams belong in separate UV faces)."""
    face_count, vertex_count = faces.shape[0], int(faces.max()) + 1 if faces.numel() else 0
    ends = torch.stack([faces[:, [1, 2, 0]], faces[:, [2, 0, 1]]], dim=-1).reshape(-1, 2)  # [F * 3, 2]
    key = ends.amin(dim=-1) * vertex_count + ends.amax(dim=-1)
    order = torch.argsort(key, stable=True)
    sorted_key = key[order]
    # each edge pairs with the next of the same key (a third face on an edge stays unpaired)
    pair = (sorted_key[:-1] == sorted_key[1:]) & torch.cat([torch.tensor([True]), sorted_key[1:-1] != sorted_key[:-2]])
    neighbours = torch.full((face_count * 3,), -1, dtype=torch.int64)
    first, second = order[:-1][pair], order[1:][pair]
    neighbours[first], neighbours[second] = second // 3, first // 3
    return neighbours.view(face_count, 3)


def _silhouette_pairs(face: Tensor, depth: Tensor, axis: int) -> tuple[Tensor, Tensor]:
    """Neighbouring pixels (along `axis` of [C, H, W]) that see different faces -> (front pixel
    [N, 3], other pixel [N, 3]) as (camera, row, column), the front one seeing the nearer surface."""
    index = torch.stack(torch.meshgrid(*(torch.arange(n) for n in face.shape), indexing="ij"), dim=-1)
    near, far = [slice(None)] * 3, [slice(None)] * 3
    near[axis], far[axis] = slice(None, -1), slice(1, None)
    near, far = tuple(near), tuple(far)
    edge = face[near] != face[far]
    key = torch.where(face >= 0, depth, torch.full_like(depth, float("inf")))
    a_in_front = (key[near] < key[far])[edge][:, None]
    index_a, index_b = index[near][edge], index[far][edge]  # [N, 3] each
    return torch.where(a_in_front, index_a, index_b), torch.where(a_in_front, index_b, index_a)


def antialias(colour: Tensor, fragments: MeshFragments, faces: Tensor, neighbours: Tensor | None = None) -> Tensor:
    """`colour` [C, H, W, K] with silhouette edges blended by their coverage: for each pair of
    neighbouring pixels that see different surfaces, the front triangle's silhouette edge (one
    with no neighbour, or whose neighbour faces the other way) crosses the segment between the two
    centres at t (0 at the front pixel), and the pixel on the far side of the midpoint takes the
    other's colour in proportion to how far past the midpoint the edge lies. t moves with the
    edge's vertices, so coverage gives them gradients (nvdiffrast's antialiasing, 1D per pair).
    `neighbours`: `face_neighbours(faces)`, computed when not given."""
    neighbours = face_neighbours(faces) if neighbours is None else neighbours
    depth = fragments.depth.detach()
    with torch.no_grad():
        a, b, c = fragments.screen[:, faces].unbind(2)  # [C, F, 2] each
        facing = _cross(b - a, c - a) > 0  # [C, F] which way each face winds on screen
    flat = colour.reshape(-1, colour.shape[-1])
    strides = torch.tensor([colour.shape[1] * colour.shape[2], colour.shape[2], 1])
    for axis in (1, 2):  # vertical, then horizontal neighbours
        front, other = _silhouette_pairs(fragments.face, depth, axis)
        if front.shape[0] == 0:
            continue
        camera, front_face = front[:, 0], fragments.face[tuple(front.t())]  # [N]
        with torch.no_grad():
            across = neighbours[front_face]  # [N, 3]
            silhouette = (across < 0) | (facing[camera[:, None], across.clamp(min=0)] != facing[camera, front_face][:, None])
        corners = fragments.screen[camera[:, None], faces[front_face]]  # [N, 3, 2]
        front_weights = screen_barycentrics(corners, front[:, [2, 1]].float() + 0.5)
        other_weights = screen_barycentrics(corners, other[:, [2, 1]].float() + 0.5)
        # the first silhouette edge the segment leaves the triangle by: its weight falls below 0
        leaving = (other_weights < 0) & silhouette
        crossing = front_weights / (front_weights - other_weights).clamp(min=1e-12)
        t = torch.where(leaving, crossing, torch.full_like(crossing, float("inf"))).amin(dim=-1)  # [N]
        t = torch.where(torch.isfinite(t), t, torch.full_like(t, 0.5)).clamp(0, 1)  # no silhouette crossed: no blend
        front_colour, other_colour = colour[tuple(front.t())], colour[tuple(other.t())]  # [N, K]
        beyond = F.relu(t - 0.5)[:, None]  # the front surface reaching into the other pixel
        short = F.relu(0.5 - t)[:, None]  # the front pixel's own area it does not reach
        flat = flat.index_add(0, (other * strides).sum(-1), beyond * (front_colour - other_colour))
        flat = flat.index_add(0, (front * strides).sum(-1), short * (other_colour - front_colour))
    return flat.view_as(colour)


def render_mesh(vertices: Tensor, faces: Tensor, uvs: Tensor, uv_faces: Tensor, texture: Tensor, cameras: Cameras,
                background: Tensor, neighbours: Tensor | None = None, samples_per_axis: int = 1) -> RenderOutput:
    """An unlit textured mesh seen by `cameras`: rgb [C, H, W, 3] over `background` [3], alpha and
    depth [C, H, W], silhouettes antialiased so that every output has gradients to `vertices`,
    `uvs` and `texture` [T_h, T_w, 3]. This is the one entry point a fused kernel would replace.
    `neighbours`: `face_neighbours(faces)`, which a caller rendering one mesh often can keep.
    `samples_per_axis`: each pixel averages a grid of that many samples squared, as a camera's
    pixel integrates its whole area; edges then blend by their true coverage, as in photographs
    and in the built-in scenes' supersampled images. Depth averages to 0 where a sample sees nothing."""
    fragments = rasterize(vertices, faces, cameras.supersampled(samples_per_axis))
    covered = (fragments.face >= 0)[..., None].to(texture.dtype)  # [C, H, W, 1]
    colour = sample_texture(texture, interpolate(uvs, uv_faces, fragments))
    rgb = colour * covered + background * (1 - covered)
    blended = antialias(torch.cat([rgb, covered], dim=-1), fragments, faces, neighbours)
    channels = torch.cat([blended, fragments.depth[..., None]], dim=-1)
    if samples_per_axis > 1:
        channels = F.avg_pool2d(channels.permute(0, 3, 1, 2), samples_per_axis).permute(0, 2, 3, 1)
    return RenderOutput(channels[..., :3], channels[..., 3], channels[..., 4])
