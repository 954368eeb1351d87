"""Geometry metrics against the ground truth of the built-in prior's world.

A prompt of the built-in vocabulary names pieces that `scenes.objects.object_scene` builds (one
object, or a two-piece stack as `prior.dataset` builds them). Their signed distance functions are
the ground truth: sphere tracing gives its silhouette, depth and shaded colour over a dense
turntable (24 azimuths) at elevations 0, 20, 40, 60 and 80 degrees, well beyond the prior's
0-40 degree camera band, so a shape that only looks right from the training views is caught.

The asset is rendered on the same cameras after fitting the two things a prompt leaves open:
its scale (a prompt without a size word may be either size) and its turn about the vertical
axis. Scaling the object by k about the origin is the same as moving the camera to distance d/k
with the same field of view (depths then scale by k); the fit starts from the silhouette area
ratio (area grows as k^2) and refines k by a small search. A turn is a cyclic shift of the
azimuth ring, tried exhaustively. Reported:

- `iou`: silhouette IoU (asset alpha > 0.5 against the traced mask), mean over every view;
- `depth_error`: mean |asset depth - true depth| on the overlap, in world units (objects are
  about one unit tall);
- `stray`: asset alpha outside the true silhouette grown by one pixel, summed and divided by the
  frame's pixels: floaters and fuzz, as a fraction of the frame (the one-pixel margin keeps
  anti-aliased edges of a right shape out of it);
- `colour_distance`: RGB distance between the asset's mean foreground colour over each piece and
  that piece's palette colour as the prior's renderer shades it, averaged over pieces.

Dimension letters: E elevations, A azimuths, V = E * A views, H, W image size, P pieces.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from fieldkit.cameras import Cameras, orbit_cameras, turntable_azimuths
from fieldkit.errors import FieldkitError
from fieldkit.scenes.objects import CAMERA_DISTANCE, SCALES, Piece, object_scene
from fieldkit.scenes.tracer import Scene, shade, trace

ELEVATIONS = (0.0, 20.0, 40.0, 60.0, 80.0)
AZIMUTHS = 24
RESOLUTION = 64
FIT_RESOLUTION = 32
FIT_ELEVATIONS = (0.0, 40.0, 80.0)
"""The scale and turn are searched on renders of this size and these elevations (a seventh of the
pixels), then the metrics are taken at RESOLUTION on every elevation."""
FOREGROUND_ALPHA = 0.5
SCALE_RANGE = (0.5, 2.0)
"""The fitted scale k stays within this range: a small object (0.7) fits the large truth at 1.43."""
SCALE_STEPS = (0.94, 1.0, 1.06)
SCALE_ROUNDS = (1.0, 0.4)
"""Relative scales tried around the closed-form start, in rounds of shrinking spread."""
RENDER_CHUNK = 24
"""Views rendered at a time (bounds the splat rasterizer's memory)."""


# -- the ground truth of a prompt ------------------------------------------------------------

def truth_pieces(prompt: str) -> list[Piece]:
    """The pieces a built-in-vocabulary prompt names, as the prior's training scenes build them
    (no size word: the large size; the fit recovers the scale); FieldkitError for any other prompt."""
    from fieldkit.prior.dataset import STACK_SCALES
    from fieldkit.prior.vocabulary import COLOURS, SHAPES, SIZES, WORDS, normalise

    words = [word for word in normalise(prompt, frozenset(WORDS)).split()
             if word not in ("front", "side", "back", "overhead", "view")]
    groups = [words] if "with" not in words else [words[:words.index("with")], words[words.index("with") + 1:]]
    pieces = []
    for index, group in enumerate(groups):
        group = [word for word in group if word not in ("on", "top")]
        shapes = [word for word in group if word in SHAPES]
        colours = [word for word in group if word in COLOURS]
        sizes = [word for word in group if word in SIZES]
        if len(shapes) != 1 or len(colours) != 1 or len(sizes) > 1 or len(group) != len(shapes + colours + sizes):
            raise FieldkitError(f"{prompt!r} is not one object or a two-object stack of the built-in vocabulary "
                                "(e.g. \"a red cube\", \"red cube with blue sphere on top\")")
        scale = STACK_SCALES[index] if len(groups) == 2 else SCALES[sizes[0] if sizes else "large"]
        pieces.append(Piece(shapes[0], COLOURS[colours[0]], scale))
    return pieces


@dataclass
class Views:
    """Renders of E x A cameras, views in elevation-major order."""

    alpha: Tensor  # [E, A, H, W] coverage in [0, 1] (binary for the traced truth)
    depth: Tensor  # [E, A, H, W] ray distance (meaningless where alpha is 0)
    colour: Tensor  # [E, A, H, W, 3] straight (not premultiplied) colour
    piece: Tensor | None = None  # [E, A, H, W] int64 index of the piece hit, -1 for background


def ring_cameras(resolution: int, distance: float = CAMERA_DISTANCE,
                 elevations=ELEVATIONS, azimuths: int = AZIMUTHS) -> Cameras:
    """V cameras, elevation-major: every azimuth of the first elevation, then the next."""
    azimuth = turntable_azimuths(azimuths).repeat(len(elevations))
    elevation = torch.tensor(elevations, dtype=torch.float32).repeat_interleave(azimuths)
    return orbit_cameras(azimuth, elevation, distance, resolution)


@torch.no_grad()
def trace_scene(scene: Scene, cameras: Cameras) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One ray through each pixel centre -> hit [V, H, W], depth, colour [V, H, W, 3], piece index."""
    count, size = len(cameras), int(cameras.height[0])
    origins, directions = zip(*(cameras.image_rays(index) for index in range(count)))
    origins, directions = torch.cat(origins), torch.cat(directions)  # [R, 3]
    depth, hit = trace(scene, origins, directions)
    points = origins[hit] + depth[hit, None] * directions[hit]
    colour = torch.zeros_like(origins)
    colour[hit] = shade(scene, points, directions[hit])
    piece = torch.full_like(depth, -1, dtype=torch.long)
    piece[hit] = scene.nearest_part(points)
    shape = (count, size, size)
    return hit.view(shape), depth.view(shape), colour.view(*shape, 3), piece.view(shape)


@functools.lru_cache(maxsize=8)
def _truth(pieces: tuple[Piece, ...], resolution: int, elevations: tuple[float, ...]) -> Views:
    hit, depth, colour, piece = trace_scene(object_scene(list(pieces)), ring_cameras(resolution, elevations=elevations))
    grid = (len(elevations), AZIMUTHS)
    return Views(hit.float().view(*grid, resolution, resolution), depth.view(*grid, resolution, resolution),
                 colour.view(*grid, resolution, resolution, 3), piece.view(*grid, resolution, resolution))


def render_truth(prompt: str, resolution: int = RESOLUTION, elevations=ELEVATIONS) -> Views:
    """The ground truth of `prompt` on the metric's cameras (cached: a few seconds of tracing)."""
    return _truth(tuple(truth_pieces(prompt)), resolution, tuple(elevations))


class SceneAsset:
    """An SDF scene behind the `render(cameras, background)` of assets (one traced ray per pixel):
    the ground truth as an asset, for checking the metrics themselves."""

    def __init__(self, pieces: list[Piece]):
        self.scene = object_scene(pieces)

    def render(self, cameras: Cameras, background: Tensor | None = None):
        from fieldkit.render.volume import RenderOutput

        hit, depth, colour, _ = trace_scene(self.scene, cameras)
        alpha = hit.float()
        background = torch.zeros(3) if background is None else background
        return RenderOutput(colour * alpha[..., None] + (1 - alpha[..., None]) * background, alpha, depth)


# -- rendering and fitting the asset ---------------------------------------------------------

@torch.no_grad()
def render_asset(asset, scale: float, resolution: int = RESOLUTION, elevations=ELEVATIONS) -> Views:
    """The asset scaled by `scale` about the origin, on the metric's cameras (the camera moves to
    CAMERA_DISTANCE / scale instead; depths are returned in the scaled asset's units)."""
    cameras = ring_cameras(resolution, CAMERA_DISTANCE / scale, elevations)
    black = torch.zeros(3, device=asset.aabb.device if hasattr(asset, "aabb") else None)
    parts = [asset.render(cameras[start:start + RENDER_CHUNK], background=black)
             for start in range(0, len(cameras), RENDER_CHUNK)]
    # the metrics compare with the traced truth, which lives on the CPU
    alpha = torch.cat([part.alpha for part in parts]).float().cpu()
    premultiplied = torch.cat([part.rgb for part in parts]).float().cpu()
    depth = torch.cat([part.depth for part in parts]).float().cpu() * scale
    grid = (len(elevations), AZIMUTHS, resolution, resolution)
    colour = (premultiplied / alpha.clamp(min=1e-6)[..., None]).clamp(0, 1)
    return Views(alpha.view(grid), depth.view(grid), colour.view(*grid, 3))


def shifted(views: Views, shift: int) -> Views:
    """The asset turned by -shift azimuth steps: view a of the result is view a + shift of `views`."""
    roll = lambda tensor: None if tensor is None else torch.roll(tensor, -shift, dims=1)
    return Views(roll(views.alpha), roll(views.depth), roll(views.colour), roll(views.piece))


def view_ious(truth: Tensor, asset: Tensor) -> Tensor:  # [..., H, W] bool twice -> [...]
    union = (truth | asset).flatten(-2).sum(-1)
    return torch.where(union > 0, (truth & asset).flatten(-2).sum(-1) / union.clamp(min=1), torch.ones_like(union))


def best_shift(truth: Views, asset: Views) -> tuple[int, float]:
    """The azimuth shift with the highest mean silhouette IoU -> (shift, IoU)."""
    mask, candidate = truth.alpha > FOREGROUND_ALPHA, asset.alpha > FOREGROUND_ALPHA
    scores = [float(view_ious(mask, torch.roll(candidate, -shift, dims=1)).mean()) for shift in range(AZIMUTHS)]
    shift = max(range(AZIMUTHS), key=lambda index: scores[index])
    return shift, scores[shift]


@dataclass
class Fit:
    scale: float
    shift: int
    iou: float
    views: Views


def fit(asset, truth: Views, resolution: int = FIT_RESOLUTION, elevations=FIT_ELEVATIONS) -> Fit:
    """Scale (closed-form start from the area ratio, then rounds of a 3-point search) and turn,
    against `truth` rendered at `resolution` and `elevations`."""
    def attempt(scale: float) -> Fit:
        views = render_asset(asset, scale, resolution, elevations)
        shift, iou = best_shift(truth, views)
        return Fit(scale, shift, iou, views)

    first = render_asset(asset, 1.0, resolution, elevations)
    area = float((first.alpha > FOREGROUND_ALPHA).sum())
    low, high = SCALE_RANGE
    start = math.sqrt(float(truth.alpha.sum()) / area) if area > 0 else 1.0
    best = attempt(min(max(start, low), high)) if abs(start - 1.0) > 1e-6 else Fit(1.0, *best_shift(truth, first), first)
    for spread in SCALE_ROUNDS:
        for factor in SCALE_STEPS:
            scale = min(max(best.scale * (1 + (factor - 1) * spread), low), high)
            if factor != 1.0 and abs(scale - best.scale) > 1e-6:
                candidate = attempt(scale)
                if candidate.iou > best.iou:
                    best = candidate
    return best


# -- the metrics -----------------------------------------------------------------------------

def stray_fraction(truth: Tensor, alpha: Tensor) -> Tensor:  # [..., H, W] bool, float -> [...]
    """Asset alpha outside the truth grown by one pixel, over the frame's pixels."""
    flat = truth.float().reshape(-1, 1, *truth.shape[-2:])
    grown = F.max_pool2d(flat, 3, stride=1, padding=1).view(truth.shape) > 0
    return (alpha * ~grown).flatten(-2).sum(-1) / (truth.shape[-1] * truth.shape[-2])


def colour_distance(truth: Views, asset: Views) -> float | None:
    """Mean over pieces of |asset's mean colour on the piece - the piece's shaded palette colour|."""
    distances = []
    foreground = asset.alpha > FOREGROUND_ALPHA
    for index in range(int(truth.piece.max()) + 1):
        on_piece = truth.piece == index
        overlap = on_piece & foreground
        if on_piece.any() and overlap.any():
            expected = truth.colour[on_piece].mean(dim=0)
            distances.append(float((asset.colour[overlap].mean(dim=0) - expected).norm()))
        elif on_piece.any():
            distances.append(math.sqrt(3))  # nothing of the asset where the piece is: as far as colours go
    return sum(distances) / len(distances) if distances else None


def compare(truth: Views, asset: Views) -> dict:
    """The metrics of an already aligned asset against the truth."""
    mask, candidate = truth.alpha > FOREGROUND_ALPHA, asset.alpha > FOREGROUND_ALPHA
    overlap = mask & candidate
    ious = view_ious(mask, candidate)  # [E, A]
    depth_error = float((asset.depth - truth.depth).abs()[overlap].mean()) if overlap.any() else None
    return {"iou": float(ious.mean()), "iou_by_elevation": [float(row.mean()) for row in ious],
            "depth_error": depth_error, "stray": float(stray_fraction(mask, asset.alpha).mean()),
            "colour_distance": colour_distance(truth, asset)}


def geometry_metrics(asset, prompt: str, resolution: int = RESOLUTION, fit_resolution: int = FIT_RESOLUTION) -> dict:
    """Every metric of `asset` against the ground truth of `prompt`, with the fitted scale and turn."""
    best = fit(asset, render_truth(prompt, fit_resolution, FIT_ELEVATIONS), fit_resolution)
    views = render_asset(asset, best.scale, resolution)
    return compare(render_truth(prompt, resolution), shifted(views, best.shift)) | {
        "scale": best.scale, "turn_degrees": best.shift * 360.0 / AZIMUTHS, "elevations": list(ELEVATIONS),
        "azimuths": AZIMUTHS, "resolution": resolution}
