"""Training images for the built-in prior and its evaluator, rendered from `scenes.objects`.

Deterministic from a seed: the same seed gives the same images, labels and viewpoints. Nothing
is shipped; a few thousand 32x32 renders take seconds on a CPU.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fieldkit.devices import make_generator
from fieldkit.cameras import orbit_cameras
from fieldkit.scenes.objects import CAMERA_DISTANCE, SCALES, Piece, object_scene, render_views

from .vocabulary import COLOURS, SHAPES, SIZES, composition_caption, single_caption

COLOUR_NAMES = tuple(COLOURS)
COLOUR_JITTER = 0.04
"""Per-channel albedo noise, so a colour word names a small region, not one exact value."""
NO_PIECE = -1
STACK_SCALES = (0.62, 0.45)
"""Bottom and top piece scales of a two-piece stack."""


@dataclass
class ObjectImages:
    images: Tensor
    """[N, 3, H, W] in [0, 1]"""
    shape: Tensor
    """[N, 2] shape index of the bottom and top piece (top NO_PIECE for single objects)"""
    colour: Tensor
    """[N, 2] colour index, as `shape`"""
    size: Tensor
    """[N] size index of single objects (NO_PIECE for stacks)"""
    azimuth: Tensor
    """[N] degrees; 0 faces the object's front"""
    elevation: Tensor
    """[N] degrees"""

    def __len__(self) -> int:
        return self.images.shape[0]

    def single(self) -> ObjectImages:
        keep = self.shape[:, 1] == NO_PIECE
        return ObjectImages(*(getattr(self, name)[keep] for name in self.__dataclass_fields__))


def _jittered(colour: str, generator: torch.Generator) -> tuple[float, float, float]:
    base = torch.tensor(COLOURS[colour])
    return tuple((base + COLOUR_JITTER * (2 * torch.rand(3, generator=generator, device=generator.device) - 1)).clamp(0, 1).tolist())


VIEWS_PER_SCENE = 8
"""Views rendered per random scene instance (colour jitter, turn): one tracing batch each."""


def _render_scene(pieces: list[Piece], views: int, resolution: int, generator: torch.Generator):
    """`views` random views of one scene -> (images [V, 3, H, W], azimuths [V], elevations [V])."""
    azimuth = torch.rand(views, generator=generator, device=generator.device) * 360 - 180
    elevation = torch.rand(views, generator=generator, device=generator.device) * 40
    images = render_views(object_scene(pieces), orbit_cameras(azimuth, elevation, CAMERA_DISTANCE, resolution))
    return images.permute(0, 3, 1, 2), azimuth, elevation


def _random_turn(generator: torch.Generator) -> float:
    return float(torch.rand((), generator=generator, device=generator.device)) * 360


def render_objects(seed: int, views_per_object: int, stack_views: int, resolution: int = 32) -> ObjectImages:
    """Every (shape, colour, size) from `views_per_object` random views, plus `stack_views` views
    of random two-piece stacks."""
    generator = make_generator(seed, "cpu")  # the scenes are rendered on the CPU
    renders, rows = [], []
    for shape_index, shape in enumerate(SHAPES):
        for colour_index, colour in enumerate(COLOUR_NAMES):
            for size_index, size in enumerate(SIZES):
                for start in range(0, views_per_object, VIEWS_PER_SCENE):
                    views = min(VIEWS_PER_SCENE, views_per_object - start)
                    piece = Piece(shape, _jittered(colour, generator), SCALES[size], _random_turn(generator))
                    renders.append(_render_scene([piece], views, resolution, generator))
                    rows += [((shape_index, NO_PIECE), (colour_index, NO_PIECE), size_index)] * views
    for start in range(0, stack_views, VIEWS_PER_SCENE):
        views = min(VIEWS_PER_SCENE, stack_views - start)
        shapes = torch.randint(len(SHAPES), (2,), generator=generator, device=generator.device).tolist()
        colours = torch.randint(len(COLOUR_NAMES), (2,), generator=generator, device=generator.device).tolist()
        pieces = [Piece(SHAPES[s], _jittered(COLOUR_NAMES[c], generator), scale, _random_turn(generator))
                  for s, c, scale in zip(shapes, colours, STACK_SCALES)]
        renders.append(_render_scene(pieces, views, resolution, generator))
        rows += [(tuple(shapes), tuple(colours), NO_PIECE)] * views
    images, azimuth, elevation = (torch.cat(parts) for parts in zip(*renders))
    return ObjectImages(images.contiguous(), torch.tensor([row[0] for row in rows]),
                        torch.tensor([row[1] for row in rows]), torch.tensor([row[2] for row in rows]),
                        azimuth, elevation)


def view_word(azimuth: float) -> str:
    """The view-dependent suffix word for a camera azimuth (degrees, 0 = front)."""
    turned = abs((azimuth + 180) % 360 - 180)
    return "front" if turned < 45 else "side" if turned < 135 else "back"


def caption(data: ObjectImages, index: int, generator: torch.Generator) -> str:
    """A random phrasing of image `index`: size words and view suffixes are sometimes left out,
    so that the short prompts users type are in the training distribution."""
    shape, colour = data.shape[index].tolist(), data.colour[index].tolist()
    draws = torch.rand(2, generator=generator, device=generator.device).tolist()
    if shape[1] == NO_PIECE:
        size = SIZES[int(data.size[index])] if draws[0] < 0.5 else None
        text = single_caption(SHAPES[shape[0]], COLOUR_NAMES[colour[0]], size)
    else:
        text = composition_caption((COLOUR_NAMES[colour[0]], SHAPES[shape[0]]), (COLOUR_NAMES[colour[1]], SHAPES[shape[1]]))
    if draws[1] < 0.25:
        text += f" {view_word(float(data.azimuth[index]))} view"
    return text
