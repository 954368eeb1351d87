"""The scene every client sees: assets placed side by side (a comparison), the render options,
and the server-side render, from any browser camera, of its assets that the browser cannot draw
(every Renderable that is not splats: fields, and whatever else implements the protocol)."""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .assets import ViewAsset
from .cameras import camera_from_view
from .render import composite, display_image, render_layers

GAP = 0.15  # space between compared assets, as a fraction of the larger one's width


@dataclass
class RenderOptions:
    resolution: int = 256
    """image rows once the camera rests"""
    preview: int = 96
    """image rows while the camera moves"""
    display: str = "rgb"
    """rgb, depth or alpha"""
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)


@dataclass(frozen=True)
class View:
    """A browser camera: what `render_view` needs, hashable so a client can tell a new view."""

    wxyz: tuple[float, ...]
    position: tuple[float, ...]
    fov: float
    aspect: float

    @classmethod
    def of(cls, camera) -> View:
        return cls(tuple(np.round(camera.wxyz, 5)), tuple(np.round(camera.position, 5)), round(float(camera.fov), 5),
                   round(float(camera.aspect), 4))


class ViewScene:
    def __init__(self, assets: list[ViewAsset]):
        self.assets = place_side_by_side(assets)
        self.options = RenderOptions()
        self.version = 0  # bumped whenever what the fields look like changes
        self._lock = threading.Lock()

    @property
    def rendered(self) -> list[ViewAsset]:
        """The assets fieldkit renders (the browser draws the others)."""
        return [asset for asset in self.assets if not asset.drawn_by_browser]

    @property
    def aabb(self) -> torch.Tensor:  # [2, 3] around every placed asset
        boxes = torch.stack([asset.aabb + asset.offset for asset in self.assets])  # [A, 2, 3]
        return torch.stack([boxes[:, 0].amin(dim=0), boxes[:, 1].amax(dim=0)])

    def changed(self) -> None:
        with self._lock:
            self.version += 1

    def replace_model(self, index: int, model) -> None:
        """A live run's newer model in the place of the old one."""
        self.assets[index].model = model
        self.changed()

    def render_view(self, view: View, rows: int, abort: Callable[[], bool] = lambda: False):
        """The rendered assets from a browser camera -> (image uint8 [H, W, 3], z-depth float32 [H, W]), or
        None when `abort()` turned true first."""
        options = self.options
        camera = camera_from_view(view.wxyz, view.position, view.fov, view.aspect, rows)
        layers = render_layers([(asset.model, asset.offset) for asset in self.rendered], camera, abort)
        if layers is None:
            return None
        rgb, alpha, depth = composite(layers, torch.tensor(options.background, dtype=torch.float32))
        return display_image(options.display, rgb, alpha, depth), depth.numpy().astype(np.float32)


def place_side_by_side(assets: list[ViewAsset]) -> list[ViewAsset]:
    """Centres every asset on the first one's centre, then spreads them along x with a gap. Layers
    of a layered asset stay where it places them."""
    if len(assets) < 2 or any(asset.layer_of is not None for asset in assets):
        return assets
    widths = [float(asset.aabb[1, 0] - asset.aabb[0, 0]) for asset in assets]
    gap = GAP * max(widths)
    centre = assets[0].aabb.mean(dim=0)
    left = centre[0] - widths[0] / 2
    for asset, width in zip(assets, widths):
        asset.offset = centre - asset.aabb.mean(dim=0)
        asset.offset[0] += left + width / 2 - centre[0]
        left += width + gap
    return assets
