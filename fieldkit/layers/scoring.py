"""How good a layered asset is, by the built-in evaluator and the ground-truth geometry.

- Each layer alone, scored for its own prompt on a ring of views at the evaluator's elevations
  (0-40, where it was trained: from below it misnames even the ground truth's sphere), each view
  framed on the layer as the evaluator's training views frame an object. Beside every view goes
  how much of the layer the *other* layers hide there (1 - the layer's visible weight in the
  composite over its alpha alone); the views where more than HIDDEN of it is hidden are scored
  apart (a sphere on a cube loses 5-8% of itself to the cube at elevations 0-20).
- What no composite view shows at all (a top layer's underside) is checked by geometry: the layer's
  silhouette IoU against its own shape from below (elevations -60 to -20).
- The composite, scored piece by piece: from each view of the turntable, the composite's own
  pixels where a layer is the visible surface (everything else white), framed on that layer,
  must score as that layer's prompt, and a layer placed "on top" must show above the layer
  below it. A view counts when every piece does (the evaluator names one object at a time).
- Geometry (`generate.geometry`): each layer's silhouette IoU against its own object's shape, and
  the composite's against the prompt's stack, at elevations 0-80, where the prompt has a ground truth.
Dimension letters: L layers, C views, H, W image size.
"""
from __future__ import annotations

import torch
from torch import Tensor

from fieldkit.cameras import Cameras, orbit_cameras, turntable_azimuths
from fieldkit.errors import FieldkitError
from fieldkit.gaussians.model import Splats
from fieldkit.generate.views import TURNTABLE_ELEVATION
from fieldkit.layers.frames import Frame, frame_of, framed, merged
from fieldkit.layers.manifest import LayeredAsset
from fieldkit.layers.prompts import ON_TOP
from fieldkit.render.splats import rasterize
from fieldkit.scenes.objects import CAMERA_DISTANCE

LAYER_ELEVATIONS = (0.0, 20.0, 40.0)
BELOW_ELEVATIONS = (-60.0, -40.0, -20.0)
AZIMUTHS = 8
RESOLUTION = 64
HIDDEN = 0.05
"""A view hides a layer when the other layers cover more than this fraction of it."""
WHITE = torch.ones(3)


def ring(frame: Frame, elevations, azimuths: int = AZIMUTHS, resolution: int = RESOLUTION) -> Cameras:
    """Views around `frame`, elevation-major."""
    azimuth = turntable_azimuths(azimuths).repeat(len(elevations))
    elevation = torch.tensor(elevations, dtype=torch.float32).repeat_interleave(azimuths)
    return framed(orbit_cameras(azimuth, elevation, CAMERA_DISTANCE, resolution), frame)


@torch.no_grad()
def visible_weights(parts: list[Splats], cameras: Cameras) -> Tensor:  # -> [L, C, H, W]
    """How much of each pixel each part is, seen together (the parts' blending weights, summed)."""
    together = merged(parts)
    owner = torch.cat([torch.full((len(part),), index) for index, part in enumerate(parts)])
    weights = []
    for first in range(0, len(parts), 3):  # one colour channel a part
        colours = torch.stack([(owner == first + channel).float() for channel in range(3)], dim=-1)  # [N, 3]
        rgb = rasterize(together.means, together.quaternions, together.log_scales.exp(),
                        torch.sigmoid(together.opacity_logits), colours, cameras, torch.zeros(3)).rgb
        weights += [rgb[..., channel] for channel in range(min(3, len(parts) - first))]
    return torch.stack(weights)


def _evaluator():
    from fieldkit.prior.evaluator import load_evaluator

    return load_evaluator()


def view_hits(images: Tensor, prompt: str, model) -> Tensor:  # [C, 3, H, W] -> [C] bool
    """Whether each view is classified as the prompt's shape and colour."""
    from fieldkit.prior.evaluator import score_images

    return torch.tensor([score_images(image[None], prompt, model)["fidelity"] == 1.0 for image in images])


def layer_scores(asset: LayeredAsset, name: str, prompt: str | None = None, model=None) -> dict:
    """The layer alone against its prompt, over LAYER_ELEVATIONS, with the views others hide scored apart."""
    index = asset.names().index(asset.layer(name).name)
    prompt = prompt or asset.layers[index].prompt
    placed = [layer.placed() for layer in asset.layers]
    cameras = ring(frame_of(placed[index]), LAYER_ELEVATIONS)
    with torch.no_grad():
        alone = placed[index].render(cameras, background=WHITE)
    hidden = torch.zeros(len(cameras))
    if len(placed) > 1:
        visible = visible_weights(placed, cameras)[index].flatten(1).sum(-1)
        hidden = 1 - visible / alone.alpha.flatten(1).sum(-1).clamp(min=1e-6)
    hits = view_hits(alone.rgb.permute(0, 3, 1, 2).clamp(0, 1), prompt, model or _evaluator())
    by_elevation = hits.view(len(LAYER_ELEVATIONS), AZIMUTHS).float().mean(dim=1)
    is_hidden = hidden > HIDDEN
    return {"prompt": prompt, "fidelity": float(hits.float().mean()), "views": len(hits),
            "hidden_views": int(is_hidden.sum()),
            "fidelity_hidden_views": float(hits[is_hidden].float().mean()) if is_hidden.any() else None,
            "most_hidden": float(hidden.max()),
            "fidelity_by_elevation": dict(zip((f"{value:g}" for value in LAYER_ELEVATIONS), by_elevation.tolist()))}


def composite_scores(asset: LayeredAsset, model=None) -> dict:
    """The composite, piece by piece, on the evaluator's turntable (elevation 20, AZIMUTHS views)."""
    model = model or _evaluator()
    placed = [layer.placed() for layer in asset.layers]
    together = merged(placed)
    whole = ring(frame_of(together), (TURNTABLE_ELEVATION,))
    weights = visible_weights(placed, whole)  # [L, C, H, W]
    rows = torch.arange(whole.height[0].item(), dtype=torch.float32)[:, None]
    heights = (weights * rows).flatten(2).sum(-1) / weights.flatten(2).sum(-1).clamp(min=1e-6)  # [L, C]
    passed = torch.ones(len(whole), dtype=torch.bool)
    pieces = {}
    for index, layer in enumerate(asset.layers):
        if layer.prompt is None:
            continue
        cameras = ring(frame_of(placed[index]), (TURNTABLE_ELEVATION,))
        with torch.no_grad():
            rgb = together.render(cameras, background=WHITE).rgb
        mine = visible_weights(placed, cameras)[index][..., None]  # [C, H, W, 1]
        images = (rgb * mine + (1 - mine)).permute(0, 3, 1, 2).clamp(0, 1)
        hits = view_hits(images, layer.prompt, model)
        if layer.placement == ON_TOP and index > 0:
            hits &= heights[index] < heights[index - 1]  # image rows grow downwards
        pieces[layer.name] = float(hits.float().mean())
        passed &= hits
    return {"prompt": asset.prompt, "fidelity": float(passed.float().mean()), "views": len(whole),
            "pieces": pieces}


def geometry(splats: Splats, prompt: str | None) -> dict | None:
    """Silhouette IoU (and the rest of `generate.geometry`'s metrics) against the prompt's shape at
    elevations 0-80, and the IoU from below; None where the prompt has no ground truth."""
    from fieldkit.generate.geometry import compare, fit, geometry_metrics, render_truth, shifted, truth_pieces

    if prompt is None:
        return None
    try:
        truth_pieces(prompt)
    except FieldkitError:
        return None
    below = render_truth(prompt, RESOLUTION, BELOW_ELEVATIONS)
    aligned = fit(splats, below, RESOLUTION, BELOW_ELEVATIONS)
    return geometry_metrics(splats, prompt) | {
        "iou_below": compare(below, shifted(aligned.views, aligned.shift))["iou"],
        "below_elevations": list(BELOW_ELEVATIONS)}


def scores(asset: LayeredAsset, with_geometry: bool = True) -> dict:
    """Every figure of a layered asset: the composite's and each layer's."""
    model = _evaluator()
    result = {"composite": composite_scores(asset, model),
              "layers": {layer.name: layer_scores(asset, layer.name, model=model) for layer in asset.layers
                         if layer.prompt is not None}}
    if with_geometry:
        result["composite"]["geometry"] = geometry(asset.composite(), asset.prompt)
        for layer in asset.layers:
            if layer.name in result["layers"]:
                result["layers"][layer.name]["geometry"] = geometry(layer.splats, layer.prompt)
    return result
