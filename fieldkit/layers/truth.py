"""The built-in world's objects as layered splats: points sampled on each piece's signed distance
function (the ground truth of `generate.geometry`), one layer a piece, coloured as the prior's
renderer shades them. A reference for the scores (what a perfect layered asset gets) and the
input that checks decomposition.
Dimension letters: N points.
"""
from __future__ import annotations

import torch

from fieldkit.gaussians.initialise import splats_from_points
from fieldkit.gaussians.model import Splats
from fieldkit.layers.manifest import Layer, LayeredAsset, centred_layers
from fieldkit.layers.prompts import ON_TOP, layer_name
from fieldkit.scenes.objects import Piece, object_scene
from fieldkit.scenes.tracer import Scene, shade, surface_normals

CANDIDATES = 60000
SURFACE_TOLERANCE = 0.004
PROJECTION_STEPS = 4
OPACITY = 0.95
FLATNESS = 2.3
"""A disc's thickness is its radius over e^FLATNESS (a tenth)."""


def surface_points(scene: Scene, count: int, generator: torch.Generator) -> torch.Tensor:  # -> [N, 3]
    """About `count` points on the scene's surface: random points pulled onto the zero level set."""
    points = (torch.rand(CANDIDATES, 3, generator=generator) * 2 - 1) * 0.75
    for _ in range(PROJECTION_STEPS):
        points = points - scene.distance(points)[:, None] * surface_normals(scene, points)
    points = points[scene.distance(points).abs() < SURFACE_TOLERANCE]
    return points[torch.randperm(len(points), generator=generator)[:count]]


def piece_splats(pieces: list[Piece], count: int, seed: int = 0) -> list[Splats]:
    """Splats on each piece of the stack `pieces` builds (in its world), coloured as seen head-on."""
    scene = object_scene(pieces)
    points = surface_points(scene, count, torch.Generator().manual_seed(seed))
    normals = surface_normals(scene, points)
    colours = shade(scene, points, -normals)
    owner = scene.nearest_part(points)
    return [flattened(splats_from_points(points[owner == index], colours[owner == index], OPACITY, 0, torch.ones(3)),
                      normals[owner == index]) for index in range(len(pieces))]


@torch.no_grad()
def flattened(splats: Splats, normals: torch.Tensor) -> Splats:
    """Splats made discs in the surface's plane: round splats on a face stick out of it by their
    radius and hide what stands on the face."""
    z = normals[:, 2:3]
    quaternions = torch.cat([1 + z, -normals[:, 1:2], normals[:, 0:1], torch.zeros_like(z)], dim=1)  # z axis -> normal
    quaternions[z[:, 0] < -0.999] = torch.tensor([0.0, 1.0, 0.0, 0.0])
    splats.quaternions.copy_(torch.nn.functional.normalize(quaternions, dim=1))
    splats.log_scales[:, 2] -= FLATNESS
    return splats


def truth_layers(prompts: list[str], count: int = 6000, seed: int = 0) -> LayeredAsset:
    """A layered asset of the built-in prompts ("a red cube", "a blue sphere"), stacked bottom to top."""
    from fieldkit.generate.geometry import truth_pieces
    from fieldkit.layers.prompts import composite_prompt, parse_layer
    from fieldkit.prior.dataset import STACK_SCALES

    pieces = [truth_pieces(prompt)[0] for prompt in prompts]
    if len(pieces) > 1:
        pieces = [Piece(piece.shape, piece.colour, scale) for piece, scale in zip(pieces, STACK_SCALES)]
    parts = piece_splats(pieces, count, seed)
    layers = [Layer(layer_name(prompt), prompt, part, placement=None if index == 0 else ON_TOP)
              for index, (prompt, part) in enumerate(zip(prompts, parts))]
    on_top = [parse_layer(f"{prompt} on top") for prompt in prompts[1:]]
    return centred_layers(layers, composite_prompt(prompts[0], on_top) if on_top else prompts[0])
