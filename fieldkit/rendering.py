"""`fieldkit render`: an asset rendered from a transforms file's cameras or on a turntable."""
from __future__ import annotations

from pathlib import Path

import torch

from fieldkit.cameras import Cameras, framing_distance, orbit_cameras, turntable_azimuths
from fieldkit.atomic import output_directory
from fieldkit.data import load_cameras
from fieldkit.errors import FieldkitError
from fieldkit.images import write_png
from fieldkit.io import load
from fieldkit.progress import progress_bar


def distinct_names(names: list[str]) -> list[str]:
    """The names, each repeat numbered past every name in use (r_0, r_0-2, ...), so that no frame
    overwrites another of the same stem (frames from different folders, or listed twice)."""
    used, first_seen, distinct = set(names), set(), []
    for name in names:
        if name not in first_seen:
            first_seen.add(name)
            distinct.append(name)
            continue
        number = 2
        while f"{name}-{number}" in used:
            number += 1
        used.add(f"{name}-{number}")
        distinct.append(f"{name}-{number}")
    return distinct


@torch.no_grad()  # splats render differentiably; images for files need no graph
def render_each(model, cameras: Cameras, names: list[str], out: str | Path) -> list[Path]:
    out = output_directory(out)
    written = []
    with progress_bar("render", len(cameras)) as advance:
        for index, name in enumerate(distinct_names(names)):
            path = out / f"{name}.png"
            write_png(path, model.render(cameras[index]).rgb[0])
            written.append(path)
            advance()
    return written


def render_cameras_file(asset: str | Path, cameras_path: str | Path, out: str | Path, downscale: float = 1.0,
                        device: str | torch.device = "cpu") -> list[Path]:
    model = load(asset).to(device)
    cameras, names = load_cameras(cameras_path, downscale=downscale)
    return render_each(model, cameras, names, out)


def turntable_around(aabb: torch.Tensor, count: int, resolution: int, elevation_degrees: float = 30.0) -> Cameras:
    """A turntable that keeps the whole bounding box in view."""
    centre = ((aabb[0] + aabb[1]) / 2).tolist()
    return orbit_cameras(turntable_azimuths(count, aabb.device), aabb.new_tensor(elevation_degrees), framing_distance(aabb), resolution,
                         centre)


def render_orbit(asset: str | Path, out: str | Path, count: int, resolution: int,
                 device: str | torch.device = "cpu") -> list[Path]:
    model = load(asset).to(device)
    if getattr(model, "space", None) is not None:
        raise FieldkitError(f"{asset} is a field trained in NDC, which holds only what its forward-facing capture "
                            f"saw: a turntable would look at it from behind; render it with --cameras CAPTURE")
    cameras = turntable_around(model.aabb, count, resolution)
    return render_each(model, cameras, [f"orbit_{index:03d}" for index in range(count)], out)
