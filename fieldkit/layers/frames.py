"""Where a set of splats sits and how large it is, moving splats, merging them, and cameras that
frame them the way the prior's training views frame an object.

The built-in prior saw every object (and every two-object stack) centred and about one unit
tall, from CAMERA_DISTANCE. A layer on top of a cube is neither, so renders for the prior (and for
the evaluator) put the camera where it would be if the splats were moved and scaled into that
frame: the camera orbits the splats' centre at CAMERA_DISTANCE times their size over
REFERENCE_SIZE. Nothing about the splats changes; only the cameras do.
Dimension letters: N splats, C cameras.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

from fieldkit.cameras import Cameras
from fieldkit.gaussians.model import PARAMETER_NAMES, Splats

REFERENCE_SIZE = 0.9
"""The largest side of a typical object of the prior's world (a large cube is 0.84, a large
sphere 1.0, a two-object stack 0.97 tall)."""
OPAQUE = 0.5
"""Splats at least this opaque say where an object is (faint haze does not)."""
EXTENT_QUANTILE = 0.02
"""The box spans the 2nd to 98th percentile of the opaque centres, so a few floaters do not move it."""


@dataclass(frozen=True)
class Frame:
    centre: Tensor  # [3]
    size: float
    """the largest side of the object's box"""

    @property
    def zoom(self) -> float:
        """How much farther than CAMERA_DISTANCE a camera stands to see the object as the prior would."""
        return self.size / REFERENCE_SIZE


def opaque_box(splats: Splats) -> Tensor:  # -> [2, 3]
    """The box around the opaque splat centres (all centres when none is opaque)."""
    with torch.no_grad():
        means = splats.means.detach()
        opaque = torch.sigmoid(splats.opacity_logits.detach()) >= OPAQUE
        means = means[opaque] if opaque.sum() >= 2 else means
        return torch.quantile(means.float().cpu(), torch.tensor([EXTENT_QUANTILE, 1 - EXTENT_QUANTILE]), dim=0)


def frame_of(splats: Splats) -> Frame:
    return frame_of_box(opaque_box(splats))


def frame_of_parts(parts: list[Splats]) -> Frame:
    """The frame around every part's own box: the composite's quantiles would cut off the top of a
    layer with fewer splats than the base."""
    boxes = torch.stack([opaque_box(part) for part in parts])  # [P, 2, 3]
    return frame_of_box(torch.stack([boxes[:, 0].amin(dim=0), boxes[:, 1].amax(dim=0)]))


def frame_of_box(box: Tensor) -> Frame:  # [2, 3]
    return Frame(box.mean(dim=0), max(float((box[1] - box[0]).max()), 1e-3))


def framed(cameras: Cameras, frame: Frame) -> Cameras:
    """Cameras orbiting the origin at CAMERA_DISTANCE, moved to see `frame` as they saw a
    REFERENCE_SIZE object at the origin: positions scaled by the zoom and shifted to the centre."""
    c2w = cameras.c2w.clone()
    c2w[:, :3, 3] = frame.centre.to(c2w) + c2w[:, :3, 3] * frame.zoom
    return dataclasses.replace(cameras, c2w=c2w)


def translated(splats: Splats, offset: Tensor) -> Splats:
    """A copy of `splats` moved by `offset` [3]."""
    with torch.no_grad():
        tensors = {name: getattr(splats, name).detach().clone() for name in PARAMETER_NAMES}
        tensors["means"] = tensors["means"] + offset.to(tensors["means"])
    return Splats(**tensors, background=splats.background)


def merged(parts: list[Splats]) -> Splats:
    """One splat set holding every part's splats, in order (each part's colour degree raised to the highest)."""
    degree = max(part.sh_degree for part in parts)
    coefficients = (degree + 1) ** 2 - 1
    tensors = {name: [] for name in PARAMETER_NAMES}
    with torch.no_grad():
        for part in parts:
            for name in PARAMETER_NAMES:
                value = getattr(part, name).detach()
                if name == "sh_rest":
                    value = torch.cat([value, value.new_zeros(len(part), coefficients - value.shape[1], 3)], dim=1)
                tensors[name].append(value)
    return Splats(**{name: torch.cat(values) for name, values in tensors.items()}, background=parts[0].background)


def opaque_means(splats: Splats) -> Tensor:  # -> [M, 3]
    with torch.no_grad():
        opaque = torch.sigmoid(splats.opacity_logits.detach()) >= OPAQUE
        return splats.means.detach()[opaque] if opaque.sum() >= 2 else splats.means.detach()


def resting_offset(layer: Splats, below: Splats) -> float:
    """How far to move `layer` up (negative: down) to rest on `below`: its lowest opaque splats (the
    EXTENT_QUANTILE of their heights) on the highest of `below`'s under its footprint. Score
    distillation at the prior's 32 px places a layer on top to within a few pixels, which leaves a
    visible gap or overlap; resting it is what "on top" means."""
    mine, theirs = opaque_means(layer), opaque_means(below)
    centre = mine[:, :2].mean(dim=0)
    radius = torch.quantile((mine[:, :2] - centre).norm(dim=1), 1 - EXTENT_QUANTILE)
    under = theirs[(theirs[:, :2] - centre).norm(dim=1) <= radius]
    if len(under) < 2:
        return 0.0
    bottom = torch.quantile(mine[:, 2], EXTENT_QUANTILE)
    top = torch.quantile(under[:, 2], 1 - EXTENT_QUANTILE)
    return float(top - bottom)
