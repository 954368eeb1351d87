"""Whole teacher renders from synthetic cameras, kept as a dataset: what conversions to or
from splats learn from, because a rasterizer draws whole images, not one ray per camera.

The cameras are posed by the conversion's rig and, when the teacher carries its dataset, take
that dataset's intrinsics and camera distance, so the renders show the scene at the scale its
test views do.
"""
from __future__ import annotations

import time

import torch

from fieldkit.cameras import Cameras, look_at
from fieldkit.data import Dataset
from fieldkit.devices import make_generator
from fieldkit.distill.sampling import CameraRig, OrbitRig, dataset_cameras
from fieldkit.progress import progress_bar


def view_cameras(rig: CameraRig, dataset: dict, count: int, generator: torch.Generator) -> Cameras:
    eyes, targets = rig.poses(count, generator)
    cameras = dataset_cameras(dataset)
    if cameras is not None:
        cameras = cameras.to(eyes.device)
    if cameras is None:
        return Cameras.from_fov(look_at(eyes, targets), rig.resolution, rig.resolution, rig.fov)
    if isinstance(rig, OrbitRig):
        distance = (cameras.positions - rig.centre).norm(dim=-1).median()
        eyes = rig.centre + (eyes - rig.centre) * (distance / rig.radius)
    first = cameras[0]
    return Cameras.create(look_at(eyes, targets), fx=float(first.fx[0]), fy=float(first.fy[0]),
                          cx=float(first.cx[0]), cy=float(first.cy[0]), width=int(first.width[0]),
                          height=int(first.height[0]))


@torch.no_grad()
def teacher_views(teacher, cameras: Cameras, split: str = "synthetic") -> Dataset:
    """Renders of `teacher` (a field or splats) from `cameras`, as a dataset on its background."""
    count = len(cameras)
    images = []
    with progress_bar(f"render {count} {split} views of the teacher", count) as advance:
        for index in range(count):
            images.append(teacher.render(cameras[index]).rgb[0].clamp(0, 1))
            advance()
    return Dataset(name=f"{teacher.architecture} teacher", split=split, images=images, cameras=cameras,
                   aabb=teacher.aabb.clone(), background=teacher.background.clone(),
                   image_names=[f"{split}_{index:03d}" for index in range(count)], source="")


def training_views(teacher, rig: CameraRig, count: int, seed: int) -> tuple[Dataset, float]:
    """`count` renders of `teacher` from the rig's poses (seeded by the run's seed) to learn
    from, and the seconds they took: a conversion counts them in its own time."""
    started = time.perf_counter()
    views = teacher_views(teacher, view_cameras(rig, teacher.dataset, count, make_generator(seed, rig.device)))
    return views, time.perf_counter() - started


HELD_OUT_SEED = 1_000_003  # offsets a run's seed for poses that no training view shares


def held_out_cameras(rig: CameraRig, dataset: dict, count: int, seed: int) -> Cameras:
    """Cameras for scoring a conversion that involves splats: poses of the training rig that
    no training view shares, at the training views' scale (splats drawn at a lower resolution
    than they were fitted at alias, which would score the resolution, not the conversion)."""
    return view_cameras(rig, dataset, count, make_generator(seed + HELD_OUT_SEED, rig.device))
