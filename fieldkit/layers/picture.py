"""A picture of a layered asset: each layer apart, then all together, from the same direction."""
from __future__ import annotations

from pathlib import Path

import torch

from fieldkit.images import write_png
from fieldkit.layers.frames import Frame, frame_of_parts
from fieldkit.layers.manifest import LayeredAsset
from fieldkit.layers.scoring import ring

ELEVATION = 25.0
AZIMUTH_STEPS = 8
"""Views per turn of the ring; the picture shows the second (45 degrees round from the front)."""
CLOSER = 0.7
"""The camera stands this fraction of the scoring views' distance away: a picture needs no margin."""


@torch.no_grad()
def layer_images(asset: LayeredAsset, resolution: int) -> list[torch.Tensor]:
    """[H, W, 3] images: each layer alone where it sits, then the composite, all framed on the composite."""
    layers = [layer.placed() for layer in asset.layers]
    frame = frame_of_parts(layers)
    camera = ring(Frame(frame.centre, frame.size * CLOSER), (ELEVATION,), AZIMUTH_STEPS, resolution)[1]
    return [part.render(camera, background=torch.ones(3)).rgb[0].clamp(0, 1) for part in layers + [asset.composite()]]


def write_picture(asset: LayeredAsset, path: str | Path, resolution: int = 128) -> None:
    write_png(path, torch.cat(layer_images(asset, resolution), dim=1))  # [H, (L + 1) * W, 3]
