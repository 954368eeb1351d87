"""Meshes: files that round-trip and bad files that give one line, extraction at a level the
renders choose, inside/outside against trimesh, baking, refinement and meshes as teachers.
Everything is tiny (a few hundred faces, 32-pixel views) so the file runs in seconds."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from fieldkit.cameras import orbit_cameras
from fieldkit.cli import main
from fieldkit.distill.mesh_teacher import MeshTeacher, mesh_volume_field
from fieldkit.errors import FieldkitError
from fieldkit.io import load, save_field
from fieldkit.mesh import Mesh, load_mesh, save_mesh
from fieldkit.mesh.extract import (choose_threshold, extract_surface, log_density_grid, surface_from_grid,
                                   threshold_cameras)
from fieldkit.mesh.texture import bake_texture, unwrap
from fieldkit.mesh.volume import inside_grid
from fieldkit.metrics import psnr
from fieldkit.radiance import RadianceField
from fieldkit.gaussians.density import occupancy_from_field

BOUNDS = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
RADIUS = 0.6


def checker(size: int = 32) -> torch.Tensor:
    """A red/cream checkerboard [size, size, 3] of 8 squares per side with a blue corner."""
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    odd = ((xs // (size // 8) + ys // (size // 8)) % 2 == 1)[..., None]
    texture = torch.where(odd, torch.tensor([0.8, 0.2, 0.15]), torch.tensor([0.9, 0.85, 0.7]))
    texture[: size // 4, : size // 4] = torch.tensor([0.1, 0.2, 0.8])
    return texture


def textured_sphere(radius: float = RADIUS, subdivisions: int = 2) -> Mesh:
    """An icosphere with spherical UVs (longitude, latitude) and a checker texture."""
    sphere = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    vertices = torch.tensor(sphere.vertices, dtype=torch.float32)
    longitude = torch.atan2(vertices[:, 1], vertices[:, 0]) / (2 * math.pi) + 0.5
    latitude = torch.asin((vertices[:, 2] / radius).clamp(-1, 1)) / math.pi + 0.5
    faces = torch.tensor(sphere.faces, dtype=torch.int64)
    return Mesh(vertices, faces, torch.stack([longitude, latitude], dim=-1), faces, checker(), bounds=BOUNDS)


def cameras(count: int = 4, resolution: int = 32):
    return orbit_cameras(torch.arange(count) * (360.0 / count), torch.tensor(25.0), 3.5, resolution)


def one_error_line(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fieldkit: error: "), lines
    return lines[0]


@pytest.mark.parametrize("suffix", ["glb", "obj"])
def test_files_round_trip_with_their_texture(tmp_path, suffix):
    mesh = textured_sphere()
    mesh.metrics = {"psnr_test": 30.0}
    written = save_mesh(mesh, tmp_path / f"mesh.{suffix}")
    assert all(path.exists() for path in written)
    if suffix == "obj":
        assert {path.suffix for path in written} == {".obj", ".mtl", ".png"}
    loaded = load(tmp_path / f"mesh.{suffix}")
    assert isinstance(loaded, Mesh)
    assert loaded.faces.shape == mesh.faces.shape and loaded.vertices.shape == mesh.vertices.shape
    quantised = (mesh.texture * 255).round() / 255
    assert torch.allclose(loaded.texture, quantised, atol=1e-6)
    view = cameras(2)
    assert torch.allclose(loaded.render(view).rgb, mesh.render(view).rgb, atol=2e-3)
    if suffix == "glb":  # fieldkit's record survives, and trimesh itself sees a textured mesh
        assert loaded.metrics == {"psnr_test": 30.0} and torch.equal(loaded.aabb, BOUNDS)
        scene = trimesh.load(tmp_path / "mesh.glb")
        (geometry,) = scene.geometry.values()
        assert geometry.visual.material.baseColorTexture.size == (32, 32)
        assert geometry.visual.uv.shape == (len(geometry.vertices), 2)


def test_render_command_draws_a_mesh_turntable(tmp_path, capsys):
    save_mesh(textured_sphere(), tmp_path / "mesh.glb")
    assert main(["render", str(tmp_path / "mesh.glb"), "--orbit", "2", "--resolution", "32",
                 "--out", str(tmp_path / "frames")]) == 0
    frame = np.asarray(Image.open(tmp_path / "frames" / "orbit_000.png"))
    assert frame.shape[:2] == (32, 32) and frame[16, 16].tolist() != frame[0, 0].tolist()  # a sphere on white


def _textured(geometry: trimesh.Trimesh, size=(8, 8)) -> trimesh.Trimesh:
    image = Image.new("RGB", size, (200, 50, 50))
    geometry.visual = trimesh.visual.TextureVisuals(uv=np.random.rand(len(geometry.vertices), 2),
                                                    material=trimesh.visual.material.SimpleMaterial(image=image))
    return geometry


def _write_bad(tmp_path, case: str):
    path = tmp_path / f"{case}.glb"
    box = trimesh.creation.box()
    if case == "corrupt":
        path.write_bytes(b"glTF" + bytes(range(200)))
    elif case == "empty":
        path = tmp_path / "empty.obj"
        path.write_text("# no vertices, no faces\n")
    elif case == "no_uvs":
        path.write_bytes(trimesh.exchange.gltf.export_glb(trimesh.Scene(box)))
    elif case == "several_primitives":
        other = trimesh.creation.icosphere(subdivisions=1)
        scene = trimesh.Scene([_textured(box), _textured(other)])
        path.write_bytes(trimesh.exchange.gltf.export_glb(scene))
    elif case == "no_texture_image":  # UVs, but no material naming an image
        path = tmp_path / "untextured.obj"
        path.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nvt 1 0\nvt 0 1\nf 1/1 2/2 3/3\n")
    elif case == "huge_texture":
        path.write_bytes(trimesh.exchange.gltf.export_glb(trimesh.Scene(_textured(box, (8200, 2)))))
    return path


@pytest.mark.parametrize("case, words", [("corrupt", "not a readable"), ("empty", "no triangles"),
                                         ("no_uvs", "no UV"), ("several_primitives", "2 primitives"),
                                         ("no_texture_image", "no texture image"), ("huge_texture", "8200x2")])
def test_bad_mesh_files_give_one_error_line(tmp_path, capsys, case, words):
    path = _write_bad(tmp_path, case)
    line = one_error_line(capsys, ["render", str(path), "--orbit", "1", "--resolution", "8",
                                   "--out", str(tmp_path / "out")])
    assert str(path) in line and words in line


def test_inside_grid_agrees_with_trimesh():
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    box = trimesh.creation.box(extents=(0.3, 0.3, 0.3))
    box.apply_translation((0.6, 0.6, -0.5))
    both = trimesh.util.concatenate([sphere, box])
    inside = inside_grid(torch.tensor(both.vertices, dtype=torch.float32), torch.tensor(both.faces), BOUNDS, 25)
    axis = torch.linspace(-1, 1, 25)
    points = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)
    truth = torch.tensor(both.contains(points.numpy())).view(25, 25, 25)
    assert inside.sum() > 400 and (inside == truth).float().mean() > 0.995


def sphere_field(radius: float = RADIUS) -> RadianceField:
    """A voxel field, dense inside a sphere: a teacher whose surface is known."""
    field = mesh_volume_field(textured_sphere(radius, subdivisions=4), BOUNDS, resolution=48)
    step = float((BOUNDS[1] - BOUNDS[0]).norm()) / 64  # coarse steps: its renders stay cheap
    model = RadianceField(field, occupancy_from_field(field, 32, step), step)
    return model.requires_grad_(False).eval()


def test_extraction_finds_the_surface_the_renders_show():
    model = sphere_field()
    surface = extract_surface(model, resolution=40, face_budget=600, cameras=threshold_cameras(BOUNDS, 4, 32))
    radius = surface.vertices.norm(dim=-1)
    voxel = 2 / 47
    assert abs(float(radius.mean()) - RADIUS) < voxel  # the level its renders chose lies on the sphere
    assert float(radius.std()) < voxel / 2
    assert len(surface.faces) <= 700 and surface.notes["threshold"] == surface.threshold
    assert surface.notes["threshold_points"] > 50


def test_a_threshold_above_every_density_is_one_clear_error():
    model = sphere_field()
    grid, aabb = log_density_grid(model, 24)
    with pytest.raises(FieldkitError, match="above it|below it") as error:
        surface_from_grid(grid, aabb, float(grid.max()) + 1, 500)
    assert "\n" not in str(error.value)


def test_floaters_are_dropped():
    model = sphere_field()
    grid, aabb = log_density_grid(model, 32)
    threshold, _ = choose_threshold(model, grid, aabb, threshold_cameras(BOUNDS, 4, 32))
    grid[3, 3, 3] = grid.max()  # a speck far from the sphere
    surface = surface_from_grid(grid, aabb, threshold, 10_000)
    assert surface.notes["floaters_dropped"] == 1 and float(surface.vertices.norm(dim=-1).max()) < RADIUS + 0.1


def test_baked_texture_reproduces_the_teacher():
    teacher = textured_sphere(subdivisions=3)
    views = cameras(12, 64)
    images = list(teacher.render(views).rgb)
    uvs, uv_faces = unwrap(teacher.vertices, teacher.faces, 128)
    texture, figures = bake_texture(teacher.vertices, teacher.faces, uvs, uv_faces, images, views, 128)
    baked = Mesh(teacher.vertices, teacher.faces, uvs, uv_faces, texture, bounds=BOUNDS)
    held_out = orbit_cameras(torch.tensor([45.0, 200.0]), torch.tensor(10.0), 3.5, 64)
    scores = [psnr(a, b) for a, b in zip(baked.render(held_out).rgb, teacher.render(held_out).rgb)]
    assert figures["texels_seen_fraction"] > 0.75  # the views circle above the equator: the bottom is unseen
    assert min(scores) > 24
    # a bake that ignored visibility would paint the far side's colours onto the near side
    flat = Mesh(teacher.vertices, teacher.faces, uvs, uv_faces, torch.full_like(texture, 0.5), bounds=BOUNDS)
    assert min(scores) > max(psnr(a, b) for a, b in zip(flat.render(held_out).rgb, teacher.render(held_out).rgb)) + 5


def test_refine_moves_a_mesh_towards_its_teacher_and_resumes(tmp_path, capsys):
    save_mesh(textured_sphere(RADIUS), tmp_path / "teacher.glb")
    save_mesh(textured_sphere(RADIUS * 0.9), tmp_path / "start.glb")  # too small: refinement must grow it
    argv = ["refine", str(tmp_path / "start.glb"), "--teacher", str(tmp_path / "teacher.glb"), "--out",
            str(tmp_path / "run"), "--teacher-views", "8", "--refine-steps", "40", "--views-per-step", "2",
            "--vertex-lr", "0.005", "--texture-levels", "2"]
    assert main(argv) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["psnr_vs_teacher"] > metrics["psnr_vs_teacher_before"] + 1
    refined = load_mesh(tmp_path / "run" / "mesh.glb")
    assert float(refined.vertices.norm(dim=-1).mean()) > RADIUS * 0.93
    assert (tmp_path / "run" / "mesh.obj").exists() and (tmp_path / "run" / "mesh.mtl").exists()
    capsys.readouterr()
    assert main(argv) == 0  # a finished run answers with its metrics
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == metrics



def test_refinement_leaves_what_no_view_shows_in_place(tmp_path):
    """A shell inside the start mesh (as marching cubes leaves in a field's unseen interior) gets
    gradients from the regularisers alone, which Adam would turn into full-rate steps: refinement
    must grow the outer surface towards the teacher and leave the hidden shell where it was."""
    save_mesh(textured_sphere(RADIUS), tmp_path / "teacher.glb")
    outer, inner = textured_sphere(RADIUS * 0.9), textured_sphere(RADIUS / 3)
    start = Mesh(torch.cat([outer.vertices, inner.vertices]),
                 torch.cat([outer.faces, inner.faces + outer.vertices.shape[0]]),
                 torch.cat([outer.uvs, inner.uvs]), torch.cat([outer.uv_faces, inner.uv_faces + outer.uvs.shape[0]]),
                 outer.texture, bounds=BOUNDS)
    save_mesh(start, tmp_path / "start.glb")
    assert main(["refine", str(tmp_path / "start.glb"), "--teacher", str(tmp_path / "teacher.glb"), "--out",
                 str(tmp_path / "run"), "--teacher-views", "8", "--refine-steps", "40", "--vertex-lr", "0.005",
                 "--texture-levels", "2"]) == 0
    refined = load_mesh(tmp_path / "run" / "mesh.glb")
    radii = refined.vertices.norm(dim=-1)
    hidden = radii < RADIUS / 2
    assert int(hidden.sum()) == inner.vertices.shape[0]
    assert torch.allclose(radii[hidden], torch.tensor(RADIUS / 3), atol=1e-5)
    assert float((radii[~hidden] - RADIUS).abs().mean()) < 0.5 * RADIUS * 0.1  # more than half the gap closed


def test_convert_to_mesh_reports_psnr_before_and_after(tmp_path, capsys):
    save_field(sphere_field(), tmp_path / "teacher.safetensors")
    assert main(["convert", str(tmp_path / "teacher.safetensors"), "--to", "mesh", "--out", str(tmp_path / "run"),
                 "--grid-resolution", "32", "--faces", "800", "--texture-size", "64", "--teacher-views", "6",
                 "--refine-steps", "4", "--eval-views", "2"]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert {"psnr_vs_teacher", "psnr_vs_teacher_before", "extraction"} <= set(metrics)
    assert metrics["extraction"]["threshold"] == pytest.approx(metrics["extraction"]["threshold"])
    assert metrics["psnr_vs_teacher"] > 20  # a sphere of one colour on white
    assert "PSNR vs teacher" in capsys.readouterr().out
    assert isinstance(load(tmp_path / "run" / "mesh.obj"), Mesh)


def test_a_mesh_teaches_as_splats_do():
    mesh = textured_sphere()
    teacher = MeshTeacher(mesh)
    inside = teacher.field.log_density(torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.9]]))
    assert inside[0] > 0 > inside[1]
    view = cameras(1)
    assert torch.equal(teacher.render(view).rgb, mesh.render(view).rgb)
    assert teacher.grid.occupied.any()
