"""A textured triangle mesh that renders like any other fieldkit model (`Renderable`).

Positions and UVs are indexed separately, as in an OBJ file: `faces` index `vertices` and
`uv_faces` index `uvs`, so a UV seam does not split the surface (refinement moves one vertex,
not its copies, and antialiasing finds silhouettes by shared edges).
Dimension letters: V vertices, U UV coordinates, F faces, T texels per side.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from fieldkit.cameras import Cameras
from fieldkit.render.mesh import check_cameras, face_neighbours, render_mesh
from fieldkit.render.volume import RenderOutput

BOUNDS_MARGIN = 0.02
"""Without recorded bounds, the vertices' box grows by this fraction per side."""
CAMERAS_PER_CALL = 8
"""Cameras rasterized together: bounds the memory of large renders."""
SAMPLES_PER_AXIS = 2
"""Each pixel averages 2x2 samples: a pixel's colour is its area's, so silhouettes blend by coverage."""


class Mesh(nn.Module):
    """vertices [V, 3], faces [F, 3], uvs [U, 2] (v up), uv_faces [F, 3], texture [T, T, 3] in [0, 1]."""

    kind = "mesh"
    architecture = "mesh"

    def __init__(self, vertices: Tensor, faces: Tensor, uvs: Tensor, uv_faces: Tensor, texture: Tensor,
                 background=(1.0, 1.0, 1.0), bounds: Tensor | None = None):
        super().__init__()
        self.register_buffer("vertices", vertices.detach().float().clone())
        self.register_buffer("faces", faces.long().clone())
        self.register_buffer("uvs", uvs.detach().float().clone())
        self.register_buffer("uv_faces", uv_faces.long().clone())
        self.register_buffer("texture", texture.detach().float().clone())
        self.register_buffer("background", torch.as_tensor(background, dtype=torch.float32).reshape(3).clone())
        self.bounds = None if bounds is None else torch.as_tensor(bounds, dtype=torch.float32).reshape(2, 3)
        self.metrics: dict = {}
        self.dataset: dict = {}
        self._neighbours: Tensor | None = None

    @property
    def aabb(self) -> Tensor:  # [2, 3]: the teacher's bounds when recorded, else around the vertices
        if self.bounds is not None:
            return self.bounds
        low, high = self.vertices.amin(dim=0), self.vertices.amax(dim=0)
        margin = BOUNDS_MARGIN * (high - low)
        return torch.stack([low - margin, high + margin])

    @property
    def neighbours(self) -> Tensor:  # [F, 3] the face across each edge, for antialiasing
        if self._neighbours is None or self._neighbours.shape[0] != self.faces.shape[0]:
            self._neighbours = face_neighbours(self.faces)
        return self._neighbours

    def render_with(self, vertices: Tensor, texture: Tensor, cameras: Cameras,
                    background: Tensor | None = None) -> RenderOutput:
        """Renders this mesh's topology and UVs with other (e.g. optimised) vertices and texture."""
        background = self.background if background is None else background
        return render_mesh(vertices, self.faces, self.uvs, self.uv_faces, texture, cameras, background,
                           self.neighbours, SAMPLES_PER_AXIS)

    @torch.no_grad()
    def render(self, cameras: Cameras, background: Tensor | None = None) -> RenderOutput:
        """rgb [C, H, W, 3], alpha and depth [C, H, W] for cameras of one resolution."""
        check_cameras(cameras)
        parts = [self.render_with(self.vertices, self.texture, cameras[start:start + CAMERAS_PER_CALL], background)
                 for start in range(0, len(cameras), CAMERAS_PER_CALL)]
        return RenderOutput(*(torch.cat([getattr(part, name) for part in parts]) for name in ("rgb", "alpha", "depth")))

    def summary(self) -> dict:
        return {"kind": self.kind, "vertices": int(self.vertices.shape[0]), "faces": int(self.faces.shape[0]),
                "texture": list(self.texture.shape[:2]), "bounds": self.aabb.tolist()}
