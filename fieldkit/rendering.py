"""`fieldkit render`: an asset rendered from a transforms file's cameras or on a turntable."""
from __future__ import annotations

import math
from pathlib import Path

import torch

from fieldkit.cameras import Cameras, orbit_poses
from fieldkit.data import load_cameras
from fieldkit.images import write_png
from fieldkit.io import load
from fieldkit.progress import progress_bar

ORBIT_FOV = 0.6911112070083618  # NeRF-Synthetic's horizontal field of view


@torch.no_grad()  # splats render differentiably; images for files need no graph
def render_each(model, cameras: Cameras, names: list[str], out: str | Path) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with progress_bar("render", len(cameras)) as advance:
        for index, name in enumerate(names):
            path = out / f"{name}.png"
            write_png(path, model.render(cameras[index]).rgb[0])
            written.append(path)
            advance()
    return written


def render_cameras_file(asset: str | Path, cameras_path: str | Path, out: str | Path, downscale: float = 1.0) -> list[Path]:
    model = load(asset)
    cameras, names = load_cameras(cameras_path, downscale=downscale)
    return render_each(model, cameras, names, out)


def orbit_cameras(aabb: torch.Tensor, count: int, resolution: int) -> Cameras:
    """A turntable that keeps the whole bounding box in view."""
    centre = (aabb[0] + aabb[1]) / 2
    radius = float((aabb[1] - aabb[0]).norm()) / 2 / math.sin(ORBIT_FOV / 2)
    return Cameras.from_fov(orbit_poses(count, radius, 30.0, centre), resolution, resolution, ORBIT_FOV)


def render_orbit(asset: str | Path, out: str | Path, count: int, resolution: int) -> list[Path]:
    model = load(asset)
    cameras = orbit_cameras(model.aabb, count, resolution)
    return render_each(model, cameras, [f"orbit_{index:03d}" for index in range(count)], out)
