"""Generation into Gaussian splats, as DreamGaussian does: a few thousand splats in a ball at the
origin, degree-0 colour, and 3DGS densification (clone/split by screen-space gradient, prune
transparent splats) during the first part of the run. Checkpoints, the .ply + asset outputs and
densification between steps are the splat trainer's (`fieldkit.gaussians.trainer`).

Score distillation alone leaves a fuzzy blob: half-transparent splats that the prior's blurry
32 px view cannot tell from a surface, and floaters that no step removes. Cleaning (on by
default, `--no-clean` turns it off) adds three things:
- an entropy loss on each step's rendered alpha, which pushes every pixel towards empty or
  opaque, so haze either becomes surface or disappears (threestudio's "opaque" loss);
- pruning at the start of the sharpening phase: faint splats (the haze left of the initial
  ball), splats far from any other (floaters), splats that no view of a ring around the
  object needs (their largest blending weight in any view is under NEEDED_WEIGHT pixels), and,
  where the prior's profile says so, splats painted the white background's colour: a prior that
  only knows white backgrounds asks for white around the object on the random ones, and opaque
  white fuzz gives it that (the built-in prior's tori came out three times their height);
- the sharpening phase itself (the last SHARPEN_FRACTION of the run): no densification, a five
  times stronger alpha entropy, and a last, gentler prune when it ends.
Dimension letters: N splats, C cameras.
"""
from __future__ import annotations

import torch

from fieldkit.cameras import orbit_cameras, turntable_azimuths
from fieldkit.gaussians.densify import DensifyConfig, ScreenGradientStats
from fieldkit.gaussians.initialise import splats_from_points
from fieldkit.gaussians.model import PARAMETER_NAMES, Splats
from fieldkit.gaussians.rows import keep_splats
from fieldkit.gaussians.trainer import ASSET_NAME, SplatTrainer
from fieldkit.generate.run import GenerationRun
from fieldkit.generate.shading import Renders
from fieldkit.render.splats import rasterize
from fieldkit.scenes.objects import CAMERA_DISTANCE

INITIAL_SPLATS = 2000
INITIAL_RADIUS = 0.45
INITIAL_OPACITY = 0.1
# DreamGaussian's rates (scales and rotations 5e-3, opacity 5e-2, colour 1e-2), except the centres: at its
# 1e-3 (decaying) one guided view per step cannot move a splat of the initial ball to a cone's rim
LEARNING_RATES = {"means": 4e-3, "log_scales": 5e-3, "quaternions": 5e-3, "opacity_logits": 5e-2,
                  "sh_dc": 1e-2, "sh_rest": 5e-4}
EXTENT = 1.1 * CAMERA_DISTANCE
"""3DGS's scene extent: the camera orbit's radius plus 10%."""
SHARPEN_FRACTION = 0.25
ALPHA_ENTROPY = 0.1
"""Weight of the summed binary entropy of rendered alpha (per view) before the sharpening phase."""
SHARPEN_ALPHA_ENTROPY = 0.5
PRUNE_OPACITY = 0.2
"""At the start of the sharpening phase: the faint splats left of the initial ball are haze."""
FINAL_PRUNE_OPACITY = 0.05
"""At the end, with no step left to make up for it, only nearly transparent splats go."""
NEEDED_WEIGHT = 0.25
"""A splat whose blending weight summed over the pixels of every ring view stays below this many
pixels (of RING_RESOLUTION; one pixel of a 64 px render) changes no render visibly."""
RING_RESOLUTION = 32
RING_ELEVATIONS = (-10.0, 15.0, 40.0, 65.0, 90.0)
RING_AZIMUTHS = 8
OUTLIER_NEIGHBOURS = 8
OUTLIER_FACTOR = 4.0
"""A splat whose mean distance to its nearest neighbours is this many times the median one is a floater."""


def ball_points(count: int, radius: float, generator: torch.Generator) -> torch.Tensor:  # -> [N, 3]
    """Uniform in a ball (DreamGaussian's initial cloud)."""
    device = generator.device
    directions = torch.nn.functional.normalize(torch.randn(count, 3, generator=generator, device=device), dim=-1)
    return directions * radius * torch.rand(count, 1, generator=generator, device=device).pow(1 / 3)


def initial_splats(generator: torch.Generator) -> Splats:
    """The splats a run starts from: random colours in a ball (also the benchmark's baseline row)."""
    points = ball_points(INITIAL_SPLATS, INITIAL_RADIUS, generator)
    colours = torch.rand(INITIAL_SPLATS, 3, generator=generator, device=generator.device)
    return splats_from_points(points, colours, INITIAL_OPACITY, 0, torch.ones(3, device=points.device))


def alpha_entropy(alpha: torch.Tensor) -> torch.Tensor:  # [C, H, W] -> []
    """Binary entropy of each pixel's alpha, summed over pixels and averaged over views."""
    alpha = alpha.clamp(1e-4, 1 - 1e-4)
    return -(alpha * alpha.log() + (1 - alpha) * (1 - alpha).log()).sum() / alpha.shape[0]


def ring_cameras(resolution: int):
    azimuth = turntable_azimuths(RING_AZIMUTHS).repeat(len(RING_ELEVATIONS))
    elevation = torch.tensor(RING_ELEVATIONS).repeat_interleave(RING_AZIMUTHS)
    return orbit_cameras(azimuth, elevation, CAMERA_DISTANCE, resolution)


def largest_blend_weights(splats: Splats, resolution: int, chunk: int = 12, cameras=None) -> torch.Tensor:  # -> [N]
    """Each splat's largest (over ring views, or `cameras`) blending weight summed over a view's pixels.
    The rendered colour is sum_i w_i c_i, so its gradient with respect to c_i is exactly w_i."""
    cameras = (ring_cameras(resolution) if cameras is None else cameras).to(splats.means.device)
    largest = torch.zeros(len(splats), device=splats.means.device)
    for start in range(0, len(cameras), chunk):
        views = cameras[start:start + chunk]
        colours = torch.ones(len(views), len(splats), 1, device=largest.device, requires_grad=True)
        with torch.enable_grad():
            output = rasterize(splats.means.detach(), splats.quaternions.detach(), splats.log_scales.detach().exp(),
                               torch.sigmoid(splats.opacity_logits.detach()), colours.expand(-1, -1, 3),
                               views, torch.zeros(3, device=largest.device))
            output.rgb[..., 0].sum().backward()
        largest = torch.maximum(largest, colours.grad[..., 0].amax(dim=0))
    return largest


def isolated(means: torch.Tensor) -> torch.Tensor:  # [N, 3] -> [N] bool
    """Splats far from every other: mean distance to the nearest neighbours above OUTLIER_FACTOR medians."""
    if len(means) <= OUTLIER_NEIGHBOURS:
        return torch.zeros(len(means), dtype=torch.bool, device=means.device)
    distances = torch.cdist(means, means).topk(OUTLIER_NEIGHBOURS + 1, largest=False).values[:, 1:].mean(dim=1)
    return distances > OUTLIER_FACTOR * distances.median()


def background_coloured(splats: Splats, distance: float) -> torch.Tensor:  # -> [N] bool
    """Splats whose base (degree-0) colour is within RGB `distance` of the white background."""
    return (splats.base_colours().detach() - 1).norm(dim=-1) < distance


class SplatGeneration(GenerationRun, SplatTrainer):
    asset_name = ASSET_NAME

    def build(self) -> None:
        self.model = initial_splats(self.generator).to(self.prior.device)
        self.extent = EXTENT
        # densify through the first 60% of the run, every 50 steps; never reset opacities
        self.densify = DensifyConfig(grad_threshold=self.config.densify_grad_threshold, start=50,
                                     stop=int(0.6 * self.steps), every=50, reset_every=10**9, min_opacity=0.01,
                                     max_splats=self.config.max_splats)
        self._start_optimizer()

    def _start_optimizer(self) -> None:
        scale = self.config.learning_rate_scale
        self.optimizer = torch.optim.Adam([{"params": [getattr(self.model, name)], "lr": LEARNING_RATES[name] * scale,
                                            "name": name} for name in PARAMETER_NAMES], eps=1e-15)
        self.base_lrs = [group["lr"] for group in self.optimizer.param_groups]
        self.stats = ScreenGradientStats(len(self.model), self.model.means.device)

    @property
    def sharpen_step(self) -> int:
        """The first step of the sharpening phase (never, with --no-clean)."""
        return int((1 - SHARPEN_FRACTION) * self.steps) if self.config.clean else self.steps + 1

    def regularisation(self, renders: Renders) -> torch.Tensor | float:
        if not self.config.clean:
            return 0.0
        weight = SHARPEN_ALPHA_ENTROPY if self.step >= self.sharpen_step else ALPHA_ENTROPY
        return weight * alpha_entropy(renders.alpha)

    def pruning_views(self):
        """The views that decide which splats are needed (a layer frames them on itself)."""
        return ring_cameras(RING_RESOLUTION)

    @torch.no_grad()
    def prune(self, opacity: float) -> None:
        """Removes splats no ring view needs, isolated ones and those less opaque than `opacity`."""
        remove = largest_blend_weights(self.model, RING_RESOLUTION, cameras=self.pruning_views()) < NEEDED_WEIGHT
        remove |= (torch.sigmoid(self.model.opacity_logits) < opacity) | isolated(self.model.means)
        remove |= background_coloured(self.model, self.config.background_prune or 0.0)
        if remove.all():
            return  # an empty model would end the run; the prior has nothing to shape then anyway
        keep_splats(self.model, self.optimizer, ~remove)
        self.stats = ScreenGradientStats(len(self.model), self.model.means.device)

    def after_step(self) -> None:
        super().after_step()
        if self.step == self.sharpen_step:
            self.prune(PRUNE_OPACITY)
        if self.config.clean and self.step == self.steps:
            self.prune(FINAL_PRUNE_OPACITY)

    def render(self, cameras) -> Renders:
        self._output = self.model.render(cameras, background=torch.zeros(3, device=self.model.means.device))
        return Renders(self._output.rgb, self._output.alpha, self._output.depth)

    def after_gradients(self) -> None:
        grad = self._output.means2d.grad
        if grad is not None:  # None when no splat reached a pixel of these views
            resolution = self.config.render_resolution
            self.stats.accumulate(grad, self._output.radii, resolution, resolution)

    def representation_metrics(self) -> dict:
        return {"splats": len(self.model)}
