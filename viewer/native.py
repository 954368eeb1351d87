"""Scene objects the browser draws itself: splats, meshes, training-camera frustums, bounds
and occupied cells. Each takes a viser scene (the server's, shared by every client)."""
from __future__ import annotations

import numpy as np
import torch

from fieldkit.gaussians.model import SH_C0

from .cameras import view_from_camera

MAX_OCCUPIED_POINTS = 50_000  # enough to see the grid's shape, small enough to send at once
BOX_EDGES = [(0, 1), (2, 3), (4, 5), (6, 7), (0, 2), (1, 3), (4, 6), (5, 7), (0, 4), (1, 5), (2, 6), (3, 7)]


def splat_arrays(splats) -> dict[str, np.ndarray]:
    """viser's splat layout: centres [N, 3], covariances [N, 3, 3], rgbs [N, 3], opacities [N, 1].

    viser splats carry one colour each, so the view-dependent SH bands are dropped and the
    base (degree-0) colour is shown.
    """
    with torch.no_grad():
        quaternions = torch.nn.functional.normalize(splats.quaternions, dim=-1)  # [N, 4] wxyz
        rotations = _quaternion_matrices(quaternions)  # [N, 3, 3]
        scales = splats.log_scales.exp()  # [N, 3]
        covariances = rotations @ torch.diag_embed(scales.square()) @ rotations.transpose(1, 2)
        rgbs = (splats.sh_dc * SH_C0 + 0.5).clamp(0, 1)
        opacities = torch.sigmoid(splats.opacity_logits)[:, None]
    arrays = {"centers": splats.means, "covariances": covariances, "rgbs": rgbs, "opacities": opacities}
    return {name: value.detach().cpu().float().numpy() for name, value in arrays.items()}


def _quaternion_matrices(q: torch.Tensor) -> torch.Tensor:  # [N, 4] unit wxyz -> [N, 3, 3]
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=-1).view(-1, 3, 3)


def add_splats(scene, name: str, splats, offset: torch.Tensor):
    return scene.add_gaussian_splats(name, **splat_arrays(splats), position=offset.numpy())


def mesh_glb(mesh) -> bytes:
    """A trimesh.Trimesh as the GLB bytes the browser loads (what viser's add_mesh_trimesh sends)."""
    return mesh.export(file_type="glb")


def add_mesh(scene, name: str, mesh, offset: torch.Tensor):
    return scene.add_glb(name, mesh_glb(mesh), position=offset.numpy())


def add_frustums(scene, name: str, cameras, offset: torch.Tensor, scale: float) -> list:
    """One wireframe frustum per training camera."""
    handles = []
    for index in range(len(cameras)):
        view = view_from_camera(cameras, index)
        handles.append(scene.add_camera_frustum(f"{name}/{index:04d}", view["fov"], view["aspect"], scale=scale,
                                                wxyz=view["wxyz"], position=view["position"] + offset.numpy(),
                                                color=(40, 90, 200)))
    return handles


def add_bounds(scene, name: str, aabb: torch.Tensor, offset: torch.Tensor):
    """The bounding box as 12 line segments."""
    box = aabb.numpy()
    corners = np.array([[box[i // 4 % 2, 0], box[i // 2 % 2, 1], box[i % 2, 2]] for i in range(8)],
                       dtype=np.float32) + offset.numpy()  # [8, 3]
    segments = np.stack([corners[[a, b]] for a, b in BOX_EDGES])  # [12, 2, 3]
    return scene.add_line_segments(name, segments, colors=(230, 120, 20), thickness=2.0, thickness_units="screen")


def add_occupied_cells(scene, name: str, grid, offset: torch.Tensor):
    """Centres of the occupancy grid's occupied cells (a random subset when there are many)."""
    index = grid.occupied.nonzero().squeeze(-1).cpu()
    if index.numel() > MAX_OCCUPIED_POINTS:
        index = index[torch.randperm(index.numel(), generator=torch.Generator().manual_seed(0))[:MAX_OCCUPIED_POINTS]]
    points = (grid.cell_centres(index.to(grid.occupied.device)).cpu() + offset).numpy()
    cell = float((grid.aabb[1] - grid.aabb[0]).min()) / grid.resolution
    return scene.add_point_cloud(name, points, colors=(230, 120, 20), point_size=cell * 0.5)
