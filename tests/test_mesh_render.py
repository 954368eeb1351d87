"""The mesh rasterizer against answers known without it: analytic coverage and depth, trimesh's
ray casting, and the gradient that antialiased coverage gives an edge."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from fieldkit.cameras import Cameras, look_at
from fieldkit.render.mesh import interpolate, rasterize, render_mesh, sample_texture

SIZE = 32
FOCAL = 32.0  # pixel x = 16 + 32 * X / depth


def camera_at_origin() -> Cameras:
    """Looks down -z from the origin: a point (X, Y, -d) lands on pixel (16 + 32 X / d, 16 - 32 Y / d)."""
    return Cameras.create(torch.eye(4), FOCAL, width=SIZE, height=SIZE)


def square(left: float, right: float, top: float, bottom: float, depth: float = 2.0) -> tuple[torch.Tensor, torch.Tensor]:
    """A square facing the camera whose edges land on the given pixel coordinates."""
    def world_x(pixel):
        return (pixel - 16) * depth / FOCAL

    def world_y(pixel):
        return (16 - pixel) * depth / FOCAL

    vertices = torch.tensor([[world_x(left), world_y(top), -depth], [world_x(right), world_y(top), -depth],
                             [world_x(right), world_y(bottom), -depth], [world_x(left), world_y(bottom), -depth]])
    return vertices, torch.tensor([[0, 1, 2], [0, 2, 3]])


def white_render(vertices, faces, cameras):
    uvs, texture = torch.zeros(len(vertices), 2), torch.ones(2, 2, 3)
    return render_mesh(vertices, faces, uvs, faces, texture, cameras, torch.zeros(3))


def test_a_square_covers_the_pixels_whose_centres_it_holds_and_its_exact_area():
    vertices, faces = square(8.3, 23.6, 4.0, 20.0)
    fragments = rasterize(vertices, faces, camera_at_origin())
    expected = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    expected[4:20, 8:24] = True  # centres 8.5 .. 23.5 lie in [8.3, 23.6]
    assert torch.equal(fragments.face[0] >= 0, expected)
    alpha = white_render(vertices, faces, camera_at_origin()).alpha[0]
    # away from the corners antialiasing gives each edge pixel exactly its covered fraction
    assert alpha[10, 8].item() == pytest.approx(0.7, abs=1e-4)
    assert alpha[10, 23].item() == pytest.approx(0.6, abs=1e-4)  # pixel 23 spans [23, 24), the edge is at 23.6
    assert alpha[10, 24].item() == 0.0 and alpha[10, 7].item() == 0.0
    assert alpha.sum().item() == pytest.approx((23.6 - 8.3) * 16, abs=0.5)


def test_supersampling_gives_each_pixel_its_covered_area_along_diagonal_edges():
    # a diamond: its edges run at 45 degrees, where blending each edge along rows and columns alone errs most
    centre_x, centre_y, radius, depth = 16.2, 15.7, 9.3, 2.0
    corners = torch.tensor([[centre_x - radius, centre_y], [centre_x, centre_y - radius],
                            [centre_x + radius, centre_y], [centre_x, centre_y + radius]])
    vertices = torch.stack([(corners[:, 0] - 16) * depth / FOCAL, (16 - corners[:, 1]) * depth / FOCAL,
                            torch.full((4,), -depth)], dim=-1)
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    fine = (torch.arange(64) + 0.5) / 64  # the exact covered fraction of each pixel, from 64 x 64 points in it
    rows, columns = torch.meshgrid(torch.arange(SIZE).float(), torch.arange(SIZE).float(), indexing="ij")
    x, y = columns[..., None, None] + fine[:, None], rows[..., None, None] + fine[None, :]
    exact = ((x - centre_x).abs() + (y - centre_y).abs() <= radius).float().mean(dim=(-1, -2))

    def coverage_error(samples_per_axis):
        alpha = render_mesh(vertices, faces, torch.zeros(4, 2), faces, torch.ones(2, 2, 3), camera_at_origin(),
                            torch.zeros(3), samples_per_axis=samples_per_axis).alpha[0]
        return (alpha - exact).abs()

    single, supersampled = coverage_error(1), coverage_error(2)
    assert supersampled.max() < 0.1 < single.max()
    assert supersampled.mean() < 0.5 * single.mean()


def test_a_tilted_plane_has_the_analytic_ray_distance_and_perspective_correct_barycentrics():
    # the plane z = -3 + 0.5 x, far wider than the view
    corners = torch.tensor([[-4.0, -4.0], [4.0, -4.0], [4.0, 4.0], [-4.0, 4.0]])
    vertices = torch.cat([corners, (-3 + 0.5 * corners[:, :1])], dim=-1)
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    cameras = camera_at_origin()
    fragments = rasterize(vertices, faces, cameras)
    assert (fragments.face >= 0).all()
    origins, directions = cameras.image_rays(0)
    # ray o + t d meets z = -3 + 0.5 x where t (d_z - 0.5 d_x) = -3
    distance = -3 / (directions[:, 2] - 0.5 * directions[:, 0])
    assert torch.allclose(fragments.depth[0].reshape(-1), distance, rtol=1e-4)
    # interpolating the vertices' own positions must give the hit point (affine weights would not)
    points = interpolate(vertices, faces, fragments)[0].reshape(-1, 3)
    assert torch.allclose(points, origins + distance[:, None] * directions, atol=1e-4)


def test_visibility_matches_trimesh_ray_casting():
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=0.6)
    blocker = trimesh.creation.box(extents=(0.5, 0.5, 0.2))
    blocker.apply_translation((0.2, 0.1, 0.9))  # between the camera and the sphere
    scene = trimesh.util.concatenate([blocker, sphere])
    vertices = torch.tensor(scene.vertices, dtype=torch.float32)
    faces = torch.tensor(scene.faces, dtype=torch.int64)
    cameras = Cameras.create(look_at(torch.tensor([[0.3, -0.2, 3.0]]), torch.zeros(3), torch.tensor([0.0, 1.0, 0.0])),
                             2 * FOCAL, width=SIZE, height=SIZE)
    fragments = rasterize(vertices, faces, cameras)
    origins, directions = cameras.image_rays(0)
    hit_faces, hit_rays, locations = trimesh.ray.ray_triangle.ray_triangle_id(
        scene.triangles, origins.numpy(), directions.numpy())
    distance = np.linalg.norm(locations - origins.numpy()[hit_rays], axis=-1)
    nearest = np.full(SIZE * SIZE, np.inf)
    np.minimum.at(nearest, hit_rays, distance)
    expected = np.full(SIZE * SIZE, -1)
    first = distance <= nearest[hit_rays]
    expected[hit_rays[first]] = hit_faces[first]
    found = fragments.face[0].reshape(-1).numpy()
    assert (found >= 0).sum() > 300 and ((found >= 0) & (found < len(blocker.faces))).sum() > 50  # both meshes are in view
    # a ray through a shared edge may report either face
    assert (found == expected).mean() > 0.97
    seen = found >= 0
    assert np.array_equal(seen, expected >= 0)
    assert np.allclose(fragments.depth[0].reshape(-1).numpy()[seen], nearest[seen], atol=1e-4)


def test_coverage_gives_an_edge_the_gradient_of_its_area():
    vertices, faces = square(8.3, 23.6, 4.0, 20.0)
    vertices.requires_grad_(True)
    white_render(vertices, faces, camera_at_origin()).alpha.sum().backward()
    # moving the right edge (vertices 1 and 2) by one pixel (2 / 32 world units at depth 2) adds a column of 16
    right_edge = vertices.grad[[1, 2], 0].sum().item()
    assert right_edge == pytest.approx(16 * FOCAL / 2, rel=0.05)
    left_edge = vertices.grad[[0, 3], 0].sum().item()
    assert left_edge == pytest.approx(-16 * FOCAL / 2, rel=0.05)


def test_colours_teach_vertices_and_texture():
    target_vertices, faces = square(10.0, 22.0, 10.0, 22.0)
    cameras = camera_at_origin()
    target = white_render(target_vertices, faces, cameras).rgb.detach()
    vertices = square(9.3, 21.3, 10.0, 22.0)[0].requires_grad_(True)
    texture = torch.full((4, 4, 3), 0.5, requires_grad=True)
    uvs = torch.tensor([[0.0, 1.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    output = render_mesh(vertices, faces, uvs, faces, texture, cameras, torch.zeros(3))
    (output.rgb - target).square().sum().backward()
    assert (vertices.grad[:, 0] < 0).all()  # a step against the gradient moves the square right, onto its target
    assert (texture.grad < 0).all()  # and brightens the texture towards white
    depth_vertices = vertices.detach().clone().requires_grad_(True)
    rasterize(depth_vertices, faces, cameras).depth.sum().backward()
    assert (depth_vertices.grad[:, 2] < 0).all()  # moving the square away (-z) lengthens every ray


def test_texture_sampling_is_bilinear_with_v_up():
    texture = torch.tensor([[[0.0], [1.0]], [[2.0], [3.0]]])  # top row 0, 1; bottom row 2, 3
    uv = torch.tensor([[0.25, 0.75], [0.75, 0.25], [0.5, 0.5]])
    assert sample_texture(texture, uv)[:, 0].tolist() == pytest.approx([0.0, 3.0, 1.5])
