"""The cameras and backgrounds that generation renders: the built-in prior's own view
distribution (scenes.objects: distance 2.3, fieldkit's field of view, elevation 0-40 degrees,
looking at the origin), so renders look like what the prior was trained on.
Dimension letters: B views.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fieldkit.cameras import Cameras, orbit_cameras, turntable_azimuths
from fieldkit.scenes.objects import CAMERA_DISTANCE, ELEVATION_DEGREES

TURNTABLE_ELEVATION = 20.0
WHITE = (1.0, 1.0, 1.0)


@dataclass
class Views:
    cameras: Cameras
    azimuth: Tensor  # [B] degrees, 0 = the object's front
    elevation: Tensor  # [B] degrees
    background: Tensor  # [B, 3]


def random_views(count: int, resolution: int, random_background: float, generator: torch.Generator) -> Views:
    """`count` random views; each is on a random colour with probability `random_background`, else white."""
    device = generator.device  # the views are made where the generator draws, the model's device
    azimuth = torch.rand(count, generator=generator, device=device) * 360 - 180
    low, high = ELEVATION_DEGREES
    elevation = low + torch.rand(count, generator=generator, device=device) * (high - low)
    colours = torch.rand(count, 3, generator=generator, device=device)
    on_colour = torch.rand(count, generator=generator, device=device) < random_background
    background = torch.where(on_colour[:, None], colours, torch.tensor(WHITE, device=device))
    return Views(orbit_cameras(azimuth, elevation, CAMERA_DISTANCE, resolution), azimuth, elevation, background)


def turntable_views(count: int, resolution: int, elevation: float = TURNTABLE_ELEVATION) -> Views:
    """`count` views evenly around the object on white, starting at the front."""
    azimuth = turntable_azimuths(count)
    elevation = torch.full((count,), elevation)
    return Views(orbit_cameras(azimuth, elevation, CAMERA_DISTANCE, resolution), azimuth, elevation,
                 torch.tensor(WHITE).expand(count, 3))
