"""The cameras and backgrounds that generation renders: random views looking at the origin from
the prior's own camera ranges (the built-in prior's are its training views, scenes.objects:
distance 2.3, fieldkit's field of view, elevation 0-40 degrees), so renders look like what the
prior was trained on.
Dimension letters: B views.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from fieldkit.cameras import Cameras, orbit_cameras, turntable_azimuths
from fieldkit.scenes.objects import CAMERA_DISTANCE

TURNTABLE_ELEVATION = 20.0
WHITE = (1.0, 1.0, 1.0)


@dataclass
class Views:
    cameras: Cameras
    azimuth: Tensor  # [B] degrees, 0 = the object's front
    elevation: Tensor  # [B] degrees
    background: Tensor  # [B, 3]


def random_views(count: int, resolution: int, random_background: float, generator: torch.Generator,
                 ranges: tuple) -> Views:
    """`count` random views; each is on a random colour with probability `random_background`, else white.
    `ranges`: (distance, elevation in degrees, horizontal fov in degrees), each (low, high), as
    `GenerateConfig.camera_ranges` gives them; one fov is drawn for the batch."""
    device = generator.device  # the views are made where the generator draws, the model's device
    (near, far), (low, high), (narrow, wide) = ranges
    azimuth = torch.rand(count, generator=generator, device=device) * 360 - 180
    elevation = low + torch.rand(count, generator=generator, device=device) * (high - low)
    colours = torch.rand(count, 3, generator=generator, device=device)
    on_colour = torch.rand(count, generator=generator, device=device) < random_background
    background = torch.where(on_colour[:, None], colours, torch.tensor(WHITE, device=device))
    # a fixed distance or fov draws nothing, so the built-in prior's runs draw what they always drew
    distance = near if near == far else near + torch.rand(count, 1, generator=generator, device=device) * (far - near)
    fov = narrow if narrow == wide else narrow + float(torch.rand((), generator=generator, device=device)) * (wide - narrow)
    cameras = orbit_cameras(azimuth, elevation, distance, resolution, fov=math.radians(fov))
    return Views(cameras, azimuth, elevation, background)


def turntable_views(count: int, resolution: int, elevation: float = TURNTABLE_ELEVATION) -> Views:
    """`count` views evenly around the object on white, starting at the front."""
    azimuth = turntable_azimuths(count)
    elevation = torch.full((count,), elevation)
    return Views(orbit_cameras(azimuth, elevation, CAMERA_DISTANCE, resolution), azimuth, elevation,
                 torch.tensor(WHITE).expand(count, 3))
