"""Mesh benchmark on the default built-in scene: `fieldkit convert --to mesh` of a hash-grid teacher.

    python bench/mesh.py [--teacher FIELD] [--teachers DIR] [--skip-round-trip]
                         [--out bench/results/mesh.json]

(a) The conversion at its defaults: seconds of the teacher's renders, extraction, unwrapping,
    baking and refinement; test PSNR of the baked and of the refined mesh against the scene's test
    images, next to the teacher's on the same images; PSNR against the teacher on held-out views.
(b) Geometry: symmetric Chamfer distance between the mesh and the scene's true surface (the
    procedural scene's SDF, marched at a fine grid), before and after refinement, from points
    sampled uniformly by area on each.
(c) The round trip: the refined mesh as a teacher of a hash grid (`convert mesh.glb --to hashgrid`),
    and that hash grid back to a mesh, each scored on the test images.
The teacher is trained with `fieldkit train`'s defaults (kept in --teachers) unless --teacher names
one. Prints a summary and writes JSON after every part.
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import mcubes
import numpy as np
import torch
import trimesh
from fieldkit.scenes import DEFAULT_SCENE, get
from scipy.spatial import cKDTree

from fieldkit.atomic import write_text
from fieldkit.distill import ConvertConfig, make_converter
from fieldkit.distill.evaluation import teacher_test_set
from fieldkit.fitting import TrainConfig, evaluate
from fieldkit.io import load
from fieldkit.mesh import load_mesh
from fieldkit.mesh.config import MeshConfig
from fieldkit.train import Trainer
from provenance import measured

TRUTH_RESOLUTION = 320  # SDF samples per axis for the true surface: a quarter of a 192 grid's cell
CHAMFER_POINTS = 200_000
ROUND_TRIP_STEPS = 600  # hash-grid steps learning from the mesh (the command's default is 1800)


def default_teacher(directory: Path) -> Path:
    out = directory / "hashgrid"
    Trainer(DEFAULT_SCENE, "hashgrid", out, TrainConfig()).run_training()
    return out / "field.safetensors"


def true_surface(resolution: int = TRUTH_RESOLUTION) -> trimesh.Trimesh:
    """The scene's zero level set, marched from its SDF over its [-1, 1]^3 box."""
    scene = get(DEFAULT_SCENE)
    axis = torch.linspace(-1, 1, resolution)
    distances = torch.cat([scene.distance(torch.stack(torch.meshgrid(x, axis, axis, indexing="ij"), -1).reshape(-1, 3))
                           for x in axis.split(16)]).view(resolution, resolution, resolution)
    vertices, faces = mcubes.marching_cubes(-distances.double().numpy(), 0.0)
    return trimesh.Trimesh(vertices * (2 / (resolution - 1)) - 1, faces)


def chamfer(mesh: trimesh.Trimesh, truth_points: np.ndarray, truth_tree: cKDTree, seed: int = 0) -> dict:
    """Mean distance from mesh samples to the truth and back (scene units), and their mean."""
    points, _ = trimesh.sample.sample_surface(mesh, CHAMFER_POINTS, seed=seed)
    to_truth = truth_tree.query(points)[0].mean()
    from_truth = cKDTree(points).query(truth_points)[0].mean()
    return {"mesh_to_truth": float(to_truth), "truth_to_mesh": float(from_truth),
            "chamfer": float((to_truth + from_truth) / 2)}


def as_trimesh(path: Path) -> trimesh.Trimesh:
    mesh = load_mesh(path)
    return trimesh.Trimesh(mesh.vertices.numpy(), mesh.faces.numpy(), process=False)


def convert(teacher: Path, target: str, out: Path, config: ConvertConfig, mesh_config: MeshConfig | None = None) -> dict:
    started = time.perf_counter()
    metrics = make_converter(teacher, target, out, config, log=print, mesh_config=mesh_config).run_conversion()
    return metrics | {"wall_seconds": time.perf_counter() - started}


def write(results: dict, out: Path) -> None:
    write_text(out, json.dumps(results, indent=2))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", type=Path, help="a hash-grid field asset (default: train one)")
    parser.add_argument("--teachers", type=Path, default=Path(tempfile.gettempdir()) / "fieldkit-bench-teachers")
    parser.add_argument("--runs", type=Path, default=None, help="run directories (default: a new temporary one)")
    parser.add_argument("--skip-round-trip", action="store_true")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "mesh.json")
    args = parser.parse_args()
    runs = args.runs or Path(tempfile.mkdtemp(prefix="fieldkit-bench-mesh-"))
    teacher_file = args.teacher or default_teacher(args.teachers)
    teacher = load(teacher_file)
    test_set, why_not = teacher_test_set(teacher)
    if test_set is None:
        raise SystemExit(f"bench/mesh.py needs the teacher's test images: {why_not}")
    results = {"machine": {"platform": platform.platform(), "torch": torch.__version__,
                           "threads": torch.get_num_threads()},
               "scene": DEFAULT_SCENE, "measured": measured(), "teacher": {
                   "file": teacher_file.name, "architecture": teacher.architecture,
                   "train_steps": teacher.metrics.get("steps"), "psnr_test": evaluate(teacher, test_set)["psnr"]}}
    mesh_config = MeshConfig()
    conversion = convert(teacher_file, "mesh", runs / "mesh", ConvertConfig(), mesh_config)
    results["conversion"] = {name: conversion[name] for name in (
        "psnr_test", "psnr_test_before", "psnr_vs_teacher", "psnr_vs_teacher_before", "faces", "vertices",
        "texture_size", "teacher_render_seconds", "extraction_seconds", "unwrap_seconds", "bake_seconds",
        "visibility_seconds", "refine_seconds", "seconds", "wall_seconds", "steps", "extraction",
        "mean_vertex_offset", "movable_vertex_fraction") if name in conversion}
    results["settings"] = {"mesh_config": conversion["settings"]["mesh_config"]}
    write(results, args.out)
    truth = true_surface()
    truth_points, _ = trimesh.sample.sample_surface(truth, CHAMFER_POINTS, seed=1)
    tree = cKDTree(truth_points)
    results["geometry"] = {"before": chamfer(as_trimesh(runs / "mesh" / "initial.glb"), truth_points, tree),
                           "after": chamfer(as_trimesh(runs / "mesh" / "mesh.glb"), truth_points, tree),
                           "truth_resolution": TRUTH_RESOLUTION, "points": CHAMFER_POINTS}
    loaded = trimesh.load(runs / "mesh" / "mesh.glb")
    (geometry,) = loaded.geometry.values()
    results["glb_texture_in_trimesh"] = list(geometry.visual.material.baseColorTexture.size)
    write(results, args.out)
    if not args.skip_round_trip:
        field = convert(runs / "mesh" / "mesh.glb", "hashgrid", runs / "mesh-hashgrid",
                        ConvertConfig(steps=ROUND_TRIP_STEPS))
        back = convert(runs / "mesh-hashgrid" / "field.safetensors", "mesh", runs / "mesh-hashgrid-mesh",
                       ConvertConfig(), mesh_config)
        results["round_trip"] = {"hashgrid_steps": ROUND_TRIP_STEPS, "hashgrid_psnr_test": field.get("psnr_test"),
                                 "hashgrid_psnr_vs_mesh": field["psnr_vs_teacher"],
                                 "mesh_psnr_test": back.get("psnr_test"),
                                 "mesh_psnr_test_before": back.get("psnr_test_before"),
                                 "seconds": field["wall_seconds"] + back["wall_seconds"]}
        write(results, args.out)
    conversion = results["conversion"]
    print(json.dumps({"teacher_psnr_test": results["teacher"]["psnr_test"], "baked": conversion["psnr_test_before"],
                      "refined": conversion["psnr_test"], "seconds": conversion["seconds"],
                      "chamfer": {k: v["chamfer"] for k, v in results["geometry"].items() if isinstance(v, dict)}},
                     indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
