"""Single coloured objects and two-object stacks: the world of the built-in diffusion prior.

Each object is one of a few primitive shapes in a flat colour, standing upright; stacks put a
second object on top of the first. Views look at the group's centre from a small orbit, so the
objects fill most of a small image, on the plain white background that generation uses.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from fieldkit.cameras import Cameras

from .materials import Material, constant
from .sdf import SDF, box, cone, cylinder, pyramid, rotation, sphere, torus
from .tracer import Part, Scene, render_rgba

CAMERA_DISTANCE = 2.3
ELEVATION_DEGREES = (0.0, 40.0)
SCALES = {"small": 0.7, "large": 1.0}
AMBIENT = 0.5
"""Brighter than the default scenes' 0.35, so that faces turned from the light keep their colour."""
BACKGROUND = 1.0
"""White, as in generation."""


SHAPE_HEIGHTS = {"cube": 0.84, "sphere": 1.0, "cone": 1.0, "cylinder": 0.9, "torus": 0.34, "pyramid": 0.9}
"""Height of each shape at scale 1."""


def shape_sdf(name: str, scale: float, base: float) -> SDF:
    """Shape `name` at `scale`, standing upright on the plane z = `base`, centred on the z axis."""
    s = scale
    builders = {
        "cube": lambda: box((0.0, 0.0, base + 0.42 * s), (0.42 * s,) * 3, rounding=0.03 * s),
        "sphere": lambda: sphere((0.0, 0.0, base + 0.5 * s), 0.5 * s),
        "cone": lambda: cone((0.0, 0.0, base), 0.5 * s, 1.0 * s),
        "cylinder": lambda: cylinder((0.0, 0.0, base + 0.45 * s), 0.4 * s, 0.45 * s, rounding=0.02 * s),
        "torus": lambda: torus((0.0, 0.0, base + 0.17 * s), 0.36 * s, 0.17 * s),
        "pyramid": lambda: pyramid((0.0, 0.0, base), 0.5 * s, 0.9 * s),
    }
    return builders[name]()


@dataclass(frozen=True)
class Piece:
    shape: str
    colour: tuple[float, float, float]
    scale: float
    turn_degrees: float = 0.0
    """Rotation about the vertical axis (what distinguishes one cube's pose from another's)."""


def object_scene(pieces: list[Piece]) -> Scene:
    """The pieces stacked bottom to top, the stack centred on the origin."""
    total = sum(SHAPE_HEIGHTS[piece.shape] * piece.scale for piece in pieces)
    base, parts = -0.5 * total, []
    for piece in pieces:
        shape = shape_sdf(piece.shape, piece.scale, base)
        parts.append(Part(shape, Material(constant(piece.colour), specular=0.12, shininess=20.0),
                          rotation("z", piece.turn_degrees)))
        base += SHAPE_HEIGHTS[piece.shape] * piece.scale
    return Scene("procedural object", tuple(parts), ambient=AMBIENT)


def render_views(scene: Scene, cameras: Cameras, samples_per_axis: int = 2) -> Tensor:
    """RGB images [C, H, W, 3] on the white background."""
    rgba = render_rgba(scene, cameras, samples_per_axis)
    alpha = rgba[..., 3:]
    return rgba[..., :3] * alpha + BACKGROUND * (1 - alpha)
