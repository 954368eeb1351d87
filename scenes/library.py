"""The built-in scenes, each a short composition of shared primitives and textures.

World units, z up. The object scenes stay inside [-1, 1]^3 and within about 1.1 of the z axis,
so a camera 4 units away with NeRF-Synthetic's field of view sees the whole scene; `gallery` is
photographed from the front (see `Capture`) and fills its own, larger box.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations, product
from typing import Callable

from .materials import Material, checker, choose, constant, gradient, stripes
from .sdf import box, capsule, cone, cylinder, below, intersection, rotation, shell, sphere, torus, union
from .tracer import Part, Scene

TABLE_TOP = -0.5
"""Height of the top face of the disc most scenes stand on."""

RED, CREAM, BLUE, PEACH = (0.75, 0.2, 0.15), (0.9, 0.85, 0.7), (0.2, 0.35, 0.75), (0.95, 0.62, 0.45)
YELLOW, ORANGE, GREEN, TEAL = (0.9, 0.75, 0.2), (0.85, 0.4, 0.1), (0.25, 0.6, 0.3), (0.15, 0.5, 0.55)
WOOD_LIGHT, WOOD_DARK, GREY_LIGHT, GREY_DARK = (0.7, 0.52, 0.32), (0.55, 0.38, 0.22), (0.6, 0.6, 0.6), (0.4, 0.4, 0.42)
STEEL_DARK, STEEL_LIGHT, PURPLE = (0.3, 0.35, 0.45), (0.7, 0.75, 0.8), (0.5, 0.3, 0.65)

MATTE, SATIN, GLOSSY = (0.05, 8.0), (0.15, 24.0), (0.7, 48.0)
"""(specular, shininess) presets."""


def _material(albedo, finish: tuple[float, float]) -> Material:
    return Material(albedo, *finish)


def _table(albedo) -> Part:
    """A round disc, its top face at TABLE_TOP, for the other objects to stand on."""
    center = (0.0, 0.0, TABLE_TOP - 0.06)
    return Part(cylinder(center, 0.95, 0.06, rounding=0.02), _material(albedo, MATTE))


def tabletop() -> Scene:
    box_center = (-0.38, -0.3, TABLE_TOP + 0.27)
    band_center = TABLE_TOP + 0.35
    return Scene("a checkered box, a gradient sphere, a banded cylinder and a ring on a wooden disc", (
        _table(stripes(WOOD_LIGHT, WOOD_DARK, width=0.19, axis=0)),
        Part(box(box_center, (0.27, 0.27, 0.27), rounding=0.03),
             _material(checker(RED, CREAM, 0.135, origin=box_center), SATIN), rotation("z", 25, box_center)),
        Part(sphere((0.4, -0.25, TABLE_TOP + 0.3), 0.3),
             _material(gradient(BLUE, PEACH, axis=2, start=TABLE_TOP, end=TABLE_TOP + 0.6), SATIN)),
        Part(cylinder((0.15, 0.45, band_center), 0.2, 0.35, rounding=0.02),
             _material(stripes(YELLOW, ORANGE, width=0.14, axis=2, origin=band_center), SATIN)),
        Part(torus((-0.45, 0.38, TABLE_TOP + 0.07), 0.2, 0.07), _material(constant(GREEN), SATIN)),
    ))


def lattice() -> Scene:
    half = 0.6
    corners = list(product((-half, half), repeat=3))
    # a cube's edges join the corner pairs that differ in exactly one coordinate
    edges = [capsule(a, b, 0.04) for a, b in combinations(corners, 2) if sum(p != q for p, q in zip(a, b)) == 1]
    return Scene("a wire-frame cube of thin bars around a tilted striped torus and a small ball", (
        Part(union(*edges), _material(gradient(STEEL_DARK, STEEL_LIGHT, axis=2, start=-half, end=half), SATIN)),
        Part(torus((0.0, 0.0, 0.0), 0.38, 0.08), _material(stripes(ORANGE, CREAM, width=0.12, axis=0), SATIN),
             rotation("x", 60)),
        Part(sphere((0.0, 0.0, 0.0), 0.15), _material(constant(TEAL), SATIN)),
    ))


def glossy() -> Scene:
    return Scene("shiny spheres and a capsule with strong view-dependent highlights on a checkered disc", (
        _table(checker(GREY_LIGHT, GREY_DARK, 0.3, origin=(0.0, 0.0, TABLE_TOP - 0.06))),
        Part(sphere((-0.3, -0.25, TABLE_TOP + 0.33), 0.33), _material(constant(RED), GLOSSY)),
        Part(sphere((0.4, -0.3, TABLE_TOP + 0.25), 0.25), _material(constant(BLUE), GLOSSY)),
        Part(sphere((0.3, 0.15, TABLE_TOP + 0.17), 0.17), _material(constant(GREEN), GLOSSY)),
        Part(capsule((-0.45, 0.5, TABLE_TOP + 0.15), (0.35, 0.55, TABLE_TOP + 0.15), 0.15),
             _material(constant(YELLOW), GLOSSY)),
    ))


def bowl() -> Scene:
    center, radius = (-0.2, 0.0, TABLE_TOP + 0.62), 0.6
    # a sphere's skin cut open just below its equator is a bowl; its inside is the concave part
    bowl_shape = intersection(shell(sphere(center, radius), 0.04), below(center[2] - 0.05))
    inside = sphere(center, radius)
    bowl_albedo = choose(lambda points: inside(points) < 0, checker(RED, CREAM, 0.15, origin=center), constant(TEAL))
    return Scene("a hollow bowl with a checkered inside, a ball and a rounded box beside it", (
        _table(stripes(WOOD_LIGHT, WOOD_DARK, width=0.19, axis=1)),
        Part(bowl_shape, _material(bowl_albedo, SATIN)),
        Part(sphere((0.6, 0.45, TABLE_TOP + 0.2), 0.2),
             _material(gradient(ORANGE, YELLOW, axis=2, start=TABLE_TOP, end=TABLE_TOP + 0.4), SATIN)),
        Part(box((0.55, -0.5, TABLE_TOP + 0.15), (0.15, 0.15, 0.15), rounding=0.03), _material(constant(PURPLE), SATIN)),
    ))


def carousel() -> Scene:
    """A real-capture-sized object: wide enough to fill the box, with detail down to a few pixels
    of a 200-pixel view (thin poles, a fine checker and narrow bands)."""
    floor, roof = -0.8, 0.42
    count, pole_radius = 8, 0.7
    angles = [2 * math.pi * (index + 0.5) / count for index in range(count)]
    spots = [(pole_radius * math.cos(angle), pole_radius * math.sin(angle)) for angle in angles]
    poles = union(*(capsule((x, y, floor), (x, y, roof), 0.022) for x, y in spots))
    # the riders sit at two alternating heights, as on a turning carousel
    riders = union(*(sphere((x, y, -0.25 + 0.22 * (index % 2)), 0.13) for index, (x, y) in enumerate(spots)))
    return Scene("a carousel filling the whole box: a checkered canopy on thin poles with riders, a striped drum", (
        Part(cylinder((0.0, 0.0, floor - 0.07), 0.96, 0.07, rounding=0.02),
             _material(stripes(WOOD_LIGHT, WOOD_DARK, width=0.09, axis=0), MATTE)),
        Part(cylinder((0.0, 0.0, -0.35), 0.36, 0.45, rounding=0.03),
             _material(stripes(RED, CREAM, width=0.07, axis=2, origin=-0.35), SATIN)),
        Part(cylinder((0.0, 0.0, 0.0), 0.1, 0.45), _material(gradient(YELLOW, ORANGE, axis=2, start=-0.4, end=0.45),
                                                            SATIN)),
        Part(cone((0.0, 0.0, roof), 0.97, 0.52), _material(checker(BLUE, CREAM, 0.1), SATIN)),
        Part(torus((0.0, 0.0, roof), 0.9, 0.035), _material(constant(YELLOW), GLOSSY)),
        Part(poles, _material(gradient(STEEL_DARK, STEEL_LIGHT, axis=2, start=floor, end=roof), GLOSSY)),
        Part(riders, _material(checker(PURPLE, PEACH, 0.06), SATIN)),
    ))


GALLERY_BOUNDS = ((-4.0, -1.5, -3.5), (4.0, 5.5, 2.7))
"""The box of `gallery`: its cameras stand outside it at y = -4 and look along +y."""


def gallery() -> Scene:
    """A forward-facing capture: a few objects 3-5 units in front of the cameras and a textured
    back wall 9 units away that fills every view, as in an LLFF scene."""
    wall = box((0.0, 5.0, -0.4), (3.9, 0.2, 2.9))
    return Scene("forward-facing: objects on a low plinth before a far checkered wall (the cameras look one way)", (
        Part(wall, _material(checker(GREY_LIGHT, TEAL, 0.5, origin=(0.0, 5.0, -0.4)), MATTE)),
        Part(box((0.0, 0.4, -0.95), (1.6, 1.1, 0.15), rounding=0.03),
             _material(stripes(WOOD_LIGHT, WOOD_DARK, width=0.15, axis=0), MATTE)),
        Part(sphere((-0.7, 0.0, -0.4), 0.4), _material(gradient(BLUE, PEACH, axis=2, start=-0.8, end=0.0), SATIN)),
        Part(box((0.6, 0.8, -0.35), (0.35, 0.35, 0.45), rounding=0.03),
             _material(checker(RED, CREAM, 0.15, origin=(0.6, 0.8, -0.35)), SATIN), rotation("z", 30, (0.6, 0.8, 0.0))),
        Part(torus((0.0, -0.3, -0.73), 0.3, 0.07), _material(constant(GREEN), GLOSSY)),
        Part(cylinder((-0.2, 1.2, -0.1), 0.18, 0.7, rounding=0.02),
             _material(stripes(YELLOW, ORANGE, width=0.12, axis=2), SATIN)),
    ), bounds=GALLERY_BOUNDS, max_steps=1024)


@dataclass(frozen=True)
class Capture:
    """How a scene is photographed into a dataset."""

    resolution: int = 128
    """image width in pixels"""
    aspect: float = 1.0
    """image height / width"""
    rig: str = "orbit"
    """orbit: cameras on the upper hemisphere looking at the origin (NeRF-Synthetic); forward:
    cameras on a plane, all looking along +y (LLFF)"""


SCENES: dict[str, Callable[[], Scene]] = {"tabletop": tabletop, "lattice": lattice, "glossy": glossy, "bowl": bowl,
                                          "carousel": carousel, "gallery": gallery}
"""Name -> builder, the default first."""

CAPTURES: dict[str, Capture] = {"carousel": Capture(resolution=200),
                                "gallery": Capture(resolution=200, aspect=0.75, rig="forward")}
"""Scenes photographed otherwise than 128-pixel orbits: at real-capture sizes (NeRF-Synthetic's
objects and LLFF's downscaled photos are a few hundred pixels across)."""
