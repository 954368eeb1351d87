"""Images for the judge: the built-in world's objects as the prior never saw them.

The prior and its evaluator learned from one renderer setting: two fixed lights, a white
background, elevations 0-40 degrees, one camera distance. The judge's images vary all of it
(random light directions, strengths and ambient level, glossiness, camera distance, elevations
from -20 to 85 degrees, solid, gradient and blotchy backgrounds) and add a "none" class for
each head: empty frames, scattered fragments (floaters), two-piece stacks, capsules and bars
(shapes outside the vocabulary), and colours outside the palette or two colours on one object.
A generated asset that is only right on white, from the training band, is then not enough.

Deterministic from a seed. Elevations come from the training bands or the held-out bands
(HELD_OUT_ELEVATIONS), so the judge's accuracy on elevations it never saw can be reported.
Dimension letters: N images, V views of one scene, H, W image size.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from fieldkit.cameras import orbit_cameras
from fieldkit.devices import make_generator
from fieldkit.scenes.materials import Material, constant, stripes
from fieldkit.scenes.objects import CAMERA_DISTANCE, SCALES, Piece, object_scene
from fieldkit.scenes.sdf import box, capsule, rotation, sphere, union
from fieldkit.scenes.tracer import Light, Part, Scene, render_rgba

from .dataset import STACK_SCALES, VIEWS_PER_SCENE
from .vocabulary import COLOURS, SHAPES

COLOUR_NAMES = tuple(COLOURS)
NONE = "none"
JUDGE_SHAPES = (*SHAPES, NONE)
JUDGE_COLOURS = (*COLOUR_NAMES, NONE)
ELEVATION_RANGE = (-20.0, 85.0)
HELD_OUT_ELEVATIONS = ((-12.5, -7.5), (22.5, 27.5), (57.5, 62.5), (80.0, 85.0))
"""Bands of elevation no training image comes from: three inside the range, one at its top."""
DISTANCE_RANGE = (0.85 * CAMERA_DISTANCE, 1.2 * CAMERA_DISTANCE)
OFF_PALETTE_DISTANCE = 0.35
"""An off-palette colour is at least this far (RGB) from every palette colour."""
BACKGROUND_CONTRAST = 0.3
"""A background colour keeps at least this RGB distance from the object's colours."""
NONE_KINDS = ("empty", "fragments", "stack", "odd shape")


@dataclass
class JudgeImages:
    images: Tensor
    """[N, 3, H, W] in [0, 1]"""
    shape: Tensor
    """[N] index into JUDGE_SHAPES"""
    colour: Tensor
    """[N] index into JUDGE_COLOURS"""
    elevation: Tensor
    """[N] degrees"""

    def __len__(self) -> int:
        return self.images.shape[0]

    def subset(self, keep: Tensor) -> JudgeImages:
        return JudgeImages(*(getattr(self, field.name)[keep] for field in dataclasses.fields(self)))


def _uniform(generator: torch.Generator, low: float, high: float, count: int | None = None):
    draw = torch.rand(count if count is not None else (), generator=generator)
    value = low + draw * (high - low)
    return value if count is not None else float(value)


def _elevations(count: int, held_out: bool, generator: torch.Generator) -> Tensor:
    """`count` elevations [count], uniform over the held-out bands or over the rest of ELEVATION_RANGE."""
    bands = list(HELD_OUT_ELEVATIONS) if held_out else _training_bands()
    widths = torch.tensor([high - low for low, high in bands])
    picks = torch.multinomial(widths, count, replacement=True, generator=generator)
    lows = torch.tensor([low for low, _ in bands])[picks]
    return lows + torch.rand(count, generator=generator) * widths[picks]


def _training_bands() -> list[tuple[float, float]]:
    bands, start = [], ELEVATION_RANGE[0]
    for low, high in sorted(HELD_OUT_ELEVATIONS):
        if low > start:
            bands.append((start, low))
        start = high
    if start < ELEVATION_RANGE[1]:
        bands.append((start, ELEVATION_RANGE[1]))
    return bands


def _jittered(colour, generator: torch.Generator) -> tuple[float, float, float]:
    noise = 0.05 * (2 * torch.rand(3, generator=generator) - 1)
    return tuple((torch.tensor(colour) + noise).clamp(0, 1).tolist())


def _off_palette_colour(generator: torch.Generator) -> tuple[float, float, float]:
    palette = torch.tensor(list(COLOURS.values()))
    while True:
        colour = torch.rand(3, generator=generator)
        if (palette - colour).norm(dim=-1).min() >= OFF_PALETTE_DISTANCE:
            return tuple(colour.tolist())


def _lighting(scene: Scene, generator: torch.Generator) -> Scene:
    """The scene under one or two random directional lights, a random ambient level and gloss."""
    lights = []
    for _ in range(1 + int(torch.rand((), generator=generator) < 0.6)):
        azimuth, elevation = _uniform(generator, 0, 2 * math.pi), _uniform(generator, -0.3, 1.4)
        direction = (math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth), math.sin(elevation))
        lights.append(Light(direction, _uniform(generator, 0.3, 0.9)))
    specular, shininess = _uniform(generator, 0.0, 0.4), _uniform(generator, 8.0, 60.0)
    parts = tuple(Part(part.shape, Material(part.material.albedo, specular, shininess), part.to_local)
                  for part in scene.parts)
    return dataclasses.replace(scene, parts=parts, lights=tuple(lights), ambient=_uniform(generator, 0.25, 0.65))


def _background_colour(avoid: Tensor, generator: torch.Generator) -> Tensor:
    """A random colour [3], grey half of the time, at least BACKGROUND_CONTRAST from every colour in `avoid` [K, 3]."""
    while True:
        colour = torch.rand(3, generator=generator) if torch.rand((), generator=generator) < 0.5 else \
            torch.rand(1, generator=generator).expand(3).clone()
        if len(avoid) == 0 or (avoid - colour).norm(dim=-1).min() >= BACKGROUND_CONTRAST:
            return colour


def _backgrounds(count: int, size: int, avoid: Tensor, generator: torch.Generator) -> Tensor:
    """Backgrounds [count, 3, H, W]: solid, vertical gradients and blotches of 3x3 colours, a third each."""
    images = []
    for _ in range(count):
        kind = int(torch.randint(3, (), generator=generator))
        corners = 1 if kind == 0 else 2 if kind == 1 else 9
        colours = torch.stack([_background_colour(avoid, generator) for _ in range(corners)])  # [K, 3]
        if kind == 0:
            image = colours[0][:, None, None].expand(3, size, size)
        elif kind == 1:
            blend = torch.linspace(0, 1, size)[None, :, None]
            image = colours[0][:, None, None] * (1 - blend) + colours[1][:, None, None] * blend
            image = image.expand(3, size, size)
        else:
            grid = colours.T.reshape(1, 3, 3, 3)
            image = F.interpolate(grid, size=(size, size), mode="bicubic", align_corners=True)[0].clamp(0, 1)
        images.append(image)
    return torch.stack(images)


def _render(scene: Scene | None, views: int, size: int, held_out: bool, avoid: Tensor,
            generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """`views` random views of `scene` (None: nothing) on random backgrounds -> images [V, 3, H, W], elevations [V]."""
    azimuth = torch.rand(views, generator=generator) * 360 - 180
    elevation = _elevations(views, held_out, generator)
    distance = _uniform(generator, *DISTANCE_RANGE, count=views)[:, None]
    backgrounds = _backgrounds(views, size, avoid, generator)
    if scene is None:
        return backgrounds, elevation
    rgba = render_rgba(_lighting(scene, generator), orbit_cameras(azimuth, elevation, distance, size))
    rgba = rgba.permute(0, 3, 1, 2)  # [V, 4, H, W]
    alpha = rgba[:, 3:]
    return rgba[:, :3] * alpha + backgrounds * (1 - alpha), elevation


def _random_palette(generator: torch.Generator) -> int:
    return int(torch.randint(len(COLOUR_NAMES), (), generator=generator))


def _turn(generator: torch.Generator) -> float:
    return _uniform(generator, 0, 360)


def _fragments(colours: list, generator: torch.Generator) -> Scene:
    """4-10 small spheres and boxes scattered through the object's space: floaters, no object."""
    parts = []
    for _ in range(int(torch.randint(4, 11, (), generator=generator))):
        centre = tuple(_uniform(generator, -0.6, 0.6, 3).tolist())
        radius = _uniform(generator, 0.05, 0.14)
        shape = sphere(centre, radius) if torch.rand((), generator=generator) < 0.5 else box(centre, (radius,) * 3)
        colour = colours[int(torch.randint(len(colours), (), generator=generator))]
        parts.append(Part(shape, Material(constant(colour))))
    return Scene("fragments", tuple(parts))


def _odd_shape(colour, generator: torch.Generator) -> Scene:
    """A capsule, a bar or a cross of two bars, turned at random: shapes the vocabulary has no word for."""
    kind = int(torch.randint(3, (), generator=generator))
    length, thickness = _uniform(generator, 0.5, 0.8), _uniform(generator, 0.1, 0.2)
    if kind == 0:  # tilted well off the horizontal, where it would look like a torus seen edge-on
        tilt = _uniform(generator, math.pi / 6, math.pi / 2)
        end = (length * math.cos(tilt), 0.0, length * math.sin(tilt))
        shape = capsule(tuple(-value for value in end), end, thickness)
    else:
        bar = box((0.0, 0.0, 0.0), (length, thickness, thickness))
        shape = bar if kind == 1 else union(bar, box((0.0, 0.0, 0.0), (thickness, thickness, length)))
    return Scene("odd shape", (Part(shape, Material(constant(colour)), rotation("z", _turn(generator))),))


def _two_colour(piece: Piece, first, second, generator: torch.Generator) -> Scene:
    """One piece painted in bands of two palette colours."""
    scene = object_scene([piece])
    albedo = stripes(first, second, _uniform(generator, 0.15, 0.35), int(torch.randint(3, (), generator=generator)))
    part = scene.parts[0]
    return dataclasses.replace(scene, parts=(Part(part.shape, Material(albedo), part.to_local),))


def render_judge_images(seed: int, views_per_object: int, held_out: bool = False, size: int = 32) -> JudgeImages:
    """Every (shape, palette colour, size) from `views_per_object` views; as many "none"-shape
    images as one shape has, a quarter of each NONE_KINDS; and per shape 2 * `views_per_object`
    views in a colour outside the palette or two palette colours (colour "none")."""
    generator = make_generator(seed, "cpu")  # the scenes are traced on the CPU
    palette = [COLOURS[name] for name in COLOUR_NAMES]
    parts: list[tuple[Tensor, Tensor, int, int]] = []

    def add(scene, views, shape_label, colour_label, colours):
        avoid = torch.tensor(colours, dtype=torch.float32).reshape(-1, 3)
        for start in range(0, views, VIEWS_PER_SCENE):
            images, elevation = _render(scene() if callable(scene) else scene, min(VIEWS_PER_SCENE, views - start),
                                        size, held_out, avoid, generator)
            parts.append((images, elevation, shape_label, colour_label))

    for shape_index, shape in enumerate(SHAPES):
        for colour_index, colour in enumerate(palette):
            for scale in SCALES.values():
                def single(shape=shape, colour=colour, scale=scale):
                    return object_scene([Piece(shape, _jittered(colour, generator), scale, _turn(generator))])
                add(single, views_per_object, shape_index, colour_index, [colour])
        for _ in range(2 * views_per_object // VIEWS_PER_SCENE):
            if torch.rand((), generator=generator) < 0.5:
                colour = _off_palette_colour(generator)
                scene = object_scene([Piece(shape, colour, _uniform(generator, 0.7, 1.0), _turn(generator))])
                add(scene, VIEWS_PER_SCENE, shape_index, len(COLOUR_NAMES), [colour])
            else:
                first, second = torch.randperm(len(palette), generator=generator)[:2].tolist()
                piece = Piece(shape, palette[first], _uniform(generator, 0.7, 1.0), _turn(generator))
                add(_two_colour(piece, palette[first], palette[second], generator), VIEWS_PER_SCENE, shape_index,
                    len(COLOUR_NAMES), [palette[first], palette[second]])

    none_shape, none_colour = len(SHAPES), len(COLOUR_NAMES)
    none_views = len(COLOUR_NAMES) * len(SCALES) * views_per_object // len(NONE_KINDS)
    for _ in range(none_views // VIEWS_PER_SCENE):
        add(None, VIEWS_PER_SCENE, none_shape, none_colour, [])
        index = _random_palette(generator)
        one_colour = torch.rand((), generator=generator) < 0.5
        colours = [palette[index]] if one_colour else palette
        add(_fragments(colours, generator), VIEWS_PER_SCENE, none_shape, index if one_colour else none_colour, colours)
        bottom, top = _random_palette(generator), _random_palette(generator)
        shapes = torch.randint(len(SHAPES), (2,), generator=generator).tolist()
        stack = object_scene([Piece(SHAPES[s], palette[c], scale, _turn(generator))
                              for s, c, scale in zip(shapes, (bottom, top), STACK_SCALES)])
        add(stack, VIEWS_PER_SCENE, none_shape, bottom if bottom == top else none_colour, [palette[bottom], palette[top]])
        index = _random_palette(generator)
        add(_odd_shape(palette[index], generator), VIEWS_PER_SCENE, none_shape, index, [palette[index]])

    images, elevations, shapes, colours = [], [], [], []
    for image, elevation, shape_label, colour_label in parts:
        images.append(image)
        elevations.append(elevation)
        shapes.append(torch.full((len(image),), shape_label))
        colours.append(torch.full((len(image),), colour_label))
    return JudgeImages(torch.cat(images).clamp(0, 1).contiguous(), torch.cat(shapes), torch.cat(colours),
                       torch.cat(elevations))
