"""The one interface that `render`, the viewer, evaluation and every distillation ask of a model."""
from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor

from fieldkit.cameras import Cameras
from fieldkit.render.volume import RenderOutput


@runtime_checkable
class Renderable(Protocol):
    """Anything that renders cameras: radiance fields and splats (what `fieldkit.load` returns)."""

    aabb: Tensor  # [2, 3] the bounds that hold everything it renders
    metrics: dict  # what the run that made it measured
    dataset: dict  # where it was trained: name, source, views

    def render(self, cameras: Cameras, background: Tensor | None = None) -> RenderOutput:
        """rgb [C, H, W, 3], alpha and depth [C, H, W] for cameras of one resolution."""
        ...
