"""One layer's score distillation, with every other layer frozen (GALA's objective, for any objects).

Each step takes three terms:
- the run's own guidance on the *composite* render (the frozen layers and this one together),
  with the composite prompt ("a red cube with a blue sphere on top"): where the layer goes, and
  how large it is next to the others;
- the same guidance on the layer *rendered alone*, with its own prompt ("a blue sphere"), from
  views that include the ones the other layers block: this is what completes the hidden parts;
- separation: the layer's splats pay for their opacity where the other layers' volume is (their
  visual hull, `volume.py`), so the layer cannot grow into them.
Every render goes through cameras framed on what they show (`frames.py`), since the prior only
knows centred objects of about one size. Densification, pruning and the sharpening phase are the
splat generator's, on the layer's splats alone, except that pruning goes by need only (no opacity
floor) and counts views from below.
Dimension letters: N splats, C cameras.
"""
from __future__ import annotations

import torch

from fieldkit.cameras import Cameras, orbit_cameras
from fieldkit.gaussians.initialise import splats_from_points
from fieldkit.gaussians.model import Splats
from fieldkit.generate.shading import Renders, shaded_images
from fieldkit.generate.splats import (
    INITIAL_OPACITY,
    INITIAL_RADIUS,
    INITIAL_SPLATS,
    RING_AZIMUTHS,
    RING_ELEVATIONS,
    RING_RESOLUTION,
    SplatGeneration,
    ball_points,
)
from fieldkit.generate.views import Views, random_views
from fieldkit.guidance.prompts import PromptProcessor
from fieldkit.layers.frames import REFERENCE_SIZE, frame_of, framed, merged
from fieldkit.layers.prompts import ON_TOP
from fieldkit.layers.scoring import ring
from fieldkit.layers.volume import visual_hull
from fieldkit.render.splats import rasterize
from fieldkit.scenes.objects import CAMERA_DISTANCE, ELEVATION_DEGREES

ALONE_WEIGHT = 1.0
"""Weight of the guidance on the layer alone, against the composite's 1."""
SEPARATION_WEIGHT = 200.0
"""Weight of the layer's opacity inside the other layers' hull, summed over splats, per splat of
the initial ball (so the term's scale does not change as densification adds splats)."""
BELOW_ELEVATION = 40.0
"""Views of the layer alone have elevations down to minus this: from below, where a base under it
hid it from every composite view."""
LAYER_SIZE = 0.7
"""A new layer starts as a ball this fraction of the frozen layers' size across."""


def views_from_below(views: Views, generator: torch.Generator) -> Views:
    """The same azimuths and backgrounds, at elevations from -BELOW_ELEVATION to the prior's highest."""
    low, high = -BELOW_ELEVATION, ELEVATION_DEGREES[1]
    elevation = low + torch.rand(len(views.elevation), generator=generator, device=generator.device) * (high - low)
    cameras = orbit_cameras(views.azimuth, elevation, CAMERA_DISTANCE, int(views.cameras.width[0]))
    return Views(cameras, views.azimuth, elevation, views.background)


def rendered(splats: Splats, cameras: Cameras, zoom: float) -> Renders:
    """Renders through framed cameras, with depths in the prior's frame (divided by the zoom), so that
    shading's normals from depth see the object as the prior would."""
    output = splats.render(cameras, background=torch.zeros(3, device=splats.means.device))
    return Renders(output.rgb, output.alpha, output.depth / zoom)


class LayerGeneration(SplatGeneration):
    """Optimises one layer's splats (`self.model`) against the frozen `others` (in the same world).

    `prompt` is the composite's; `own_prompt` the layer's alone. `start` replaces the initial ball
    (a layer split off an asset, or a base being refined); else the ball sits where `placement` says.
    """

    def __init__(self, prompt: str, own_prompt: str, placement: str | None, others: list[Splats], out, config,
                 prior, start: Splats | None = None):
        self.others = merged(others).requires_grad_(False)
        self.placement, self.start = placement, start
        self.others_frame = frame_of(self.others)
        super().__init__(prompt, out, config, prior)
        self.own_prompts = PromptProcessor.build(prior, own_prompt, config.negative_prompt, config.view_prompts,
                                                 config.perp_neg)
        self.hull = visual_hull(self.others)

    def build(self) -> None:
        super().build()
        self.model = (self.start if self.start is not None else self.initial_layer()).to(self.prior.device)
        self._start_optimizer()

    def initial_layer(self) -> Splats:
        """A ball of random colours, LAYER_SIZE of the others' size, placed as the prompt says."""
        radius = INITIAL_RADIUS * LAYER_SIZE * self.others_frame.size / REFERENCE_SIZE
        centre = self.others_frame.centre.clone()
        if self.placement == ON_TOP:
            centre[2] = float(self.others.aabb[1, 2].clamp(max=centre[2] + self.others_frame.size / 2)) + radius
        points = centre + ball_points(INITIAL_SPLATS, radius, self.generator)
        colours = torch.rand(INITIAL_SPLATS, 3, generator=self.generator)
        return splats_from_points(points, colours, INITIAL_OPACITY, 0, torch.ones(3))

    def render(self, cameras: Cameras) -> Renders:
        """The composite (the others first, then the layer), framed on the whole; only the layer's
        rows carry gradients."""
        frame = frame_of(merged([self.others, self.model]))
        cameras = framed(cameras, frame).to(self.model.means.device)
        rows = lambda name: torch.cat([getattr(self.others, name), getattr(self.model, name)])
        colours = torch.cat([self.others.colours(cameras.positions), self.model.colours(cameras.positions)], dim=1)
        self._output = rasterize(rows("means"), rows("quaternions"), rows("log_scales").exp(),
                                 torch.sigmoid(rows("opacity_logits")), colours, cameras,
                                 torch.zeros(3, device=self.model.means.device))
        return Renders(self._output.rgb, self._output.alpha, self._output.depth / frame.zoom)

    def regularisation(self, renders: Renders) -> torch.Tensor:
        alone, entropy = self.alone_loss()
        inside = self.hull(self.model.means)  # [N]
        separation = (torch.sigmoid(self.model.opacity_logits) * inside).sum() / INITIAL_SPLATS
        return ALONE_WEIGHT * alone + entropy + SEPARATION_WEIGHT * separation

    def alone_loss(self) -> tuple[torch.Tensor, torch.Tensor | float]:
        """The guidance on the layer alone, with its own prompt, and the cleaning's alpha entropy."""
        views = views_from_below(random_views(self.config.views_per_step, self.config.render_resolution,
                                              self.config.random_background, self.generator,
                                              self.config.camera_ranges()), self.generator)
        frame = frame_of(self.model)
        renders = rendered(self.model, framed(views.cameras, frame), frame.zoom)
        images = shaded_images(renders, views.cameras, views.background, self.config.lambertian,
                               self.config.textureless, self.generator)
        timesteps = self.schedule.sample(len(views.cameras), self.step, self.steps, self.prior.num_train_timesteps,
                                         self.generator).to(self.prior.device)
        # the prompts' view words know no view from below: those views take the side's word
        condition = self.own_prompts.condition(views.azimuth, views.elevation.clamp(min=0))
        output = self.guidance(images.to(self.prior.device), timesteps, condition,
                               views.cameras.c2w.to(self.prior.device), self.generator)
        return output.loss, super().regularisation(renders)

    def pruning_views(self) -> Cameras:
        """The splat generator's pruning ring, framed on the layer (around the origin at the prior's
        distance a small layer covers few pixels, and pruning would thin it to specks), and one
        more turn from below, where only the views of the layer alone see its underside."""
        return ring(frame_of(self.model), (-BELOW_ELEVATION,) + RING_ELEVATIONS, RING_AZIMUTHS, RING_RESOLUTION)

    def prune(self, opacity: float) -> None:
        """The splat generator's prune without its opacity floor: a layer starts as a small, dense
        ball, whose surface is still many faint splats (most under 20% opaque) when the sharpening
        phase begins, so a floor took ~90% of them and the layer's score with them. Whether a view
        needs a splat (its blending weight, which counts its opacity) decides alone."""
        super().prune(0.0)

    def after_gradients(self) -> None:
        grad = self._output.means2d.grad
        if grad is not None:  # densification statistics of the layer's rows of the composite render
            count = len(self.model)
            resolution = self.config.render_resolution
            self.stats.accumulate(grad[:, -count:], self._output.radii[:, -count:], resolution, resolution)
