"""Balanced Score Distillation (PlacidDreamer, Huang et al. 2024): both variants of the authors' code.

In diffusers' convention (`cfg.py`), SDS's guided prediction eps_u + s (eps_c - eps_u) is the sum of
    a smoothing direction     eps_u          (pulls the render towards any likely image) and
    a classifier direction    s (eps_c - eps_u)  (pulls it towards the prompt).
At a high s the classifier dominates, which over-saturates. BSD treats the two as objectives of
a multi-objective problem and follows the minimum-norm point of their convex hull (MGDA), a
direction that improves both:
    g = a c + (1 - a) m,  a = argmin_{a in [0,1]} |a c + (1 - a) m|^2 = clip((m - c) . m / |m - c|^2, 0, 1),
the closed form of a one-dimensional quadratic, per view. The authors' code has two variants,
which differ in c, m and the timestep weight w(t) (the gradient on the sample is w(t) g):

- standard (`--guidance bsd`, their `train_step_BSD`): c = lambda (eps_c - eps_u), m = eps_u and
  w(t) = sqrt(alpha_bar_t). lambda sets the ratio classifier : smoothing = lambda : 1, and so the
  saturation; here lambda is the guidance scale s, so that SDS and BSD compare at the same s.
  (Their code takes `--lambda_` but multiplies by a fixed 15.) The added noise is not subtracted.
- auto (`--guidance bsd-auto`, their `train_step_BSD_auto`): c = eps_c - eps_u,
  m = 1.25 (eps_u - eps) and w(t) = |eps_u - eps| sqrt(1 - alpha_bar_t) / 50, the norm taken over
  the view. There is no guidance scale: as renders become likely images, eps_u - eps shrinks and
  the classifier wins more often, like a lambda that grows by itself. The constant 50 is the
  authors' (for SD's 4x64x64 latents); with Adam a constant factor on the gradient hardly matters.

Both are given as the authors wrote them; fieldkit's `--weighting` does not apply to BSD.
Dimension letters: B views, C channels, H, W model-space size.
"""
from __future__ import annotations

import torch
from torch import Tensor

from fieldkit.guidance.base import Guidance, GuidanceOutput, add_noise
from fieldkit.guidance.cfg import predict_noises
from fieldkit.guidance.prior import Prior
from fieldkit.guidance.prompts import Conditioning
from fieldkit.guidance.sds import distillation_loss

VARIANTS = ("standard", "auto")
AUTO_SMOOTHING = 1.25
AUTO_NORM_DIVISOR = 50.0


def min_norm_weight(classifier: Tensor, smoothing: Tensor) -> Tensor:  # [B, ...] twice -> [B]
    """The a in [0, 1] minimising |a classifier + (1 - a) smoothing|^2, per view."""
    difference = (smoothing - classifier).flatten(1)
    numerator = (difference * smoothing.flatten(1)).sum(dim=1)
    return (numerator / difference.square().sum(dim=1).clamp(min=1e-12)).clamp(0, 1)


def combine(classifier: Tensor, smoothing: Tensor, weight: Tensor) -> Tensor:  # [B, ...] twice, [B] -> [B, ...]
    """weight * classifier + (1 - weight) * smoothing, per view."""
    weight = weight.view((-1,) + (1,) * (classifier.dim() - 1))
    return weight * classifier + (1 - weight) * smoothing


def _per_view(values: Tensor) -> Tensor:  # [B] -> [B, 1, 1, 1]
    return values.view(-1, 1, 1, 1)


class BSD(Guidance):
    def __init__(self, prior: Prior, guidance_scale: float | None, variant: str = "standard"):
        if variant not in VARIANTS:
            raise ValueError(f"unknown BSD variant {variant!r}")
        self.prior, self.guidance_scale, self.variant = prior, guidance_scale, variant

    def balanced_gradient(self, samples: Tensor, timesteps: Tensor, condition: Conditioning,
                          generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """(w(t) times the balanced direction [B, C, H, W], the weight a [B])."""
        noisy, noise = add_noise(self.prior, samples.detach(), timesteps, generator)
        eps = predict_noises(self.prior, noisy, timesteps, condition)
        alpha_bar = self.prior.alphas_cumprod[timesteps]  # [B]
        direction = eps.direction(condition.negative_weight)
        if self.variant == "standard":
            classifier, smoothing = self.guidance_scale * direction, eps.uncond
            scale = alpha_bar.sqrt()
        else:
            residual = eps.uncond - noise
            classifier, smoothing = direction, AUTO_SMOOTHING * residual
            scale = residual.flatten(1).norm(dim=1) * (1 - alpha_bar).sqrt() / AUTO_NORM_DIVISOR
        weight = min_norm_weight(classifier, smoothing)
        return _per_view(scale) * combine(classifier, smoothing, weight), weight

    def __call__(self, images: Tensor, timesteps: Tensor, condition: Conditioning, cameras: Tensor,
                 generator: torch.Generator | None = None) -> GuidanceOutput:
        samples = self.prior.encode_images(images).float()
        gradient, weight = self.balanced_gradient(samples, timesteps, condition, generator)
        return GuidanceOutput(distillation_loss(samples, gradient), {"bsd_weight": float(weight.mean())})
