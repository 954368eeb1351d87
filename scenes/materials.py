"""Materials: an albedo texture (a closure `points [N, 3] -> colours [N, 3]`) plus specular terms.

Textures are solid (3D) patterns evaluated at the surface point, so they need no UV mapping.
Pattern cells are placed so that flat faces fall in the middle of a cell, never on a cell
boundary, where rounding noise would speckle the face.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor

Texture = Callable[[Tensor], Tensor]
Colour = Sequence[float]


@dataclass(frozen=True)
class Material:
    albedo: Texture
    specular: float = 0.1
    """Strength of the white Blinn-Phong highlight."""
    shininess: float = 16.0
    """Blinn-Phong exponent: higher gives a smaller, sharper highlight."""


def _colour(values: Colour) -> Tensor:
    return torch.tensor(values, dtype=torch.float32)


def _pick(use_first: Tensor, first: Colour, second: Colour) -> Tensor:
    return torch.where(use_first[:, None], _colour(first), _colour(second))  # [N, 3]


def constant(colour: Colour) -> Texture:
    colour_t = _colour(colour)
    return lambda points: colour_t.expand(points.shape[0], 3)


def checker(first: Colour, second: Colour, size: float, origin: Sequence[float] = (0.0, 0.0, 0.0)) -> Texture:
    """A 3D checkerboard of cubes `size` wide, one of them centred on `origin`."""
    origin_t = torch.tensor(origin, dtype=torch.float32)

    def albedo(points: Tensor) -> Tensor:
        cells = torch.floor((points - origin_t) / size + 0.5).long().sum(dim=-1)  # [N]
        return _pick(cells % 2 == 0, first, second)

    return albedo


def stripes(first: Colour, second: Colour, width: float, axis: int, origin: float = 0.0) -> Texture:
    """Bands `width` wide across coordinate `axis`, one of them centred on `origin`."""
    def albedo(points: Tensor) -> Tensor:
        bands = torch.floor((points[:, axis] - origin) / width + 0.5).long()  # [N]
        return _pick(bands % 2 == 0, first, second)

    return albedo


def gradient(low: Colour, high: Colour, axis: int, start: float, end: float) -> Texture:
    """A linear blend from `low` at coordinate `start` to `high` at `end` along `axis`."""
    low_t, high_t = _colour(low), _colour(high)

    def albedo(points: Tensor) -> Tensor:
        blend = ((points[:, axis] - start) / (end - start)).clamp(0, 1)[:, None]  # [N, 1]
        return low_t + blend * (high_t - low_t)

    return albedo


def choose(condition: Callable[[Tensor], Tensor], inside: Texture, outside: Texture) -> Texture:
    """`inside` where `condition(points)` [N] holds, else `outside`."""
    return lambda points: torch.where(condition(points)[:, None], inside(points), outside(points))
