"""Rays for distillation without photos: random cameras on a sphere or hemisphere around the
teacher's bounds, each looking at the centre through a random pixel."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from fieldkit.cameras import Cameras, look_at
from fieldkit.data import load_cameras
from fieldkit.errors import FieldkitError
from fieldkit.rendering import ORBIT_FOV

RIGS = ("sphere", "hemisphere")


class CameraRig:
    """Cameras at `radius` around `centre`, with a field of view that keeps the whole box in sight."""

    def __init__(self, aabb: Tensor, upper_only: bool, resolution: int = 128, fov: float = ORBIT_FOV):
        self.centre = (aabb[0] + aabb[1]) / 2  # [3]
        # the box's bounding sphere fits the view from this distance
        self.radius = float((aabb[1] - aabb[0]).norm()) / 2 / math.sin(fov / 2)
        self.upper_only, self.resolution, self.fov = upper_only, resolution, fov

    def rays(self, count: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Origins and unit directions [R, 3]: one random camera per ray, one random pixel of it."""
        unit = torch.randn(count, 3, generator=generator)
        unit = unit / unit.norm(dim=-1, keepdim=True).clamp(min=1e-9)  # [R, 3] uniform on the sphere
        if self.upper_only:
            unit[:, 2] = unit[:, 2].abs()
        c2w = look_at(self.centre + self.radius * unit, self.centre)  # [R, 4, 4]
        cameras = Cameras.from_fov(c2w, self.resolution, self.resolution, self.fov)
        pixels = torch.rand(count, 2, generator=generator) * self.resolution  # [R, 2]
        return cameras.generate_rays(torch.arange(count), pixels[:, 0], pixels[:, 1])


def choose_rig(requested: str, aabb: Tensor, dataset: dict) -> bool:
    """-> whether cameras stay above the centre. `auto` asks the teacher's dataset where its
    cameras were; without one, the whole sphere is the safe choice."""
    if requested not in (*RIGS, "auto"):
        raise FieldkitError(f"unknown rig '{requested}'; choose sphere, hemisphere or auto")
    if requested != "auto":
        return requested == "hemisphere"
    source = dataset.get("source")
    if not source:
        return False
    try:
        cameras, _ = load_cameras(source)
    except (FieldkitError, OSError):
        return False
    centre_z = float((aabb[0, 2] + aabb[1, 2]) / 2)
    return bool((cameras.positions[:, 2] >= centre_z).all())
