"""Balanced Score Distillation (PlacidDreamer, Huang et al. 2024).

With guidance scale s (convention in `cfg.py`), SDS's guided prediction is the sum of
    g_s = eps_u                   the smoothing direction (the unconditional prediction: it
                                  pulls the render towards any likely image),
    g_c = (s - 1)(eps_c - eps_u)  the classifier direction (pulls towards the prompt).
At high s the classifier term dominates, which over-saturates. BSD treats the two as objectives
of a multi-objective problem and follows the minimum-norm point of their convex hull (MGDA), a
direction that improves both:
    g = a g_c + (1 - a) g_s,  a = argmin_{a in [0,1]} |a g_c + (1 - a) g_s|^2
      = clip((g_s - g_c) . g_s / |g_s - g_c|^2, 0, 1),
the closed form of a one-dimensional quadratic, per view. As in the authors' code, the weight
is found against the unconditional prediction itself: against its difference from the added
noise (a far shorter vector) the minimum-norm point drops the classifier on almost every step
with the built-in prior, and shapes never form. The applied smoothing direction then subtracts
the added noise, as SDS does, which keeps its expectation and lowers its variance:
    g = a g_c + (1 - a)(eps_u - eps).
"At the same CFG" means the same classifier weight s - 1 as SDS.
Dimension letters: B views, C channels, H, W model-space size.
"""
from __future__ import annotations

import torch
from torch import Tensor

from fieldkit.guidance.base import GuidanceOutput, add_noise
from fieldkit.guidance.cfg import predict_noises
from fieldkit.guidance.prompts import Conditioning
from fieldkit.guidance.sds import SDS, distillation_loss, timestep_weight


def min_norm_weight(classifier: Tensor, smoothing: Tensor) -> Tensor:  # [B, ...] twice -> [B]
    """The a in [0, 1] minimising |a classifier + (1 - a) smoothing|^2, per view."""
    difference = (smoothing - classifier).flatten(1)
    numerator = (difference * smoothing.flatten(1)).sum(dim=1)
    return (numerator / difference.square().sum(dim=1).clamp(min=1e-12)).clamp(0, 1)


def combine(classifier: Tensor, smoothing: Tensor, weight: Tensor) -> Tensor:  # [B, ...] twice, [B] -> [B, ...]
    """weight * classifier + (1 - weight) * smoothing, per view."""
    weight = weight.view((-1,) + (1,) * (classifier.dim() - 1))
    return weight * classifier + (1 - weight) * smoothing


class BSD(SDS):
    def balanced_gradient(self, samples: Tensor, timesteps: Tensor, condition: Conditioning,
                          generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """(w(t) times the balanced direction [B, C, H, W], the weight a [B])."""
        noisy, noise = add_noise(self.prior, samples.detach(), timesteps, generator)
        eps = predict_noises(self.prior, noisy, timesteps, condition)
        classifier = (self.guidance_scale - 1) * eps.direction(condition.negative_weight)
        weight = min_norm_weight(classifier, eps.uncond)
        direction = combine(classifier, eps.uncond - noise, weight)
        scale = timestep_weight(self.prior.alphas_cumprod, timesteps, self.weighting).view(-1, 1, 1, 1)
        return scale * direction, weight

    def __call__(self, images: Tensor, timesteps: Tensor, condition: Conditioning, cameras: Tensor,
                 generator: torch.Generator | None = None) -> GuidanceOutput:
        samples = self.prior.encode_images(images).float()
        gradient, weight = self.balanced_gradient(samples, timesteps, condition, generator)
        return GuidanceOutput(distillation_loss(samples, gradient), {"bsd_weight": float(weight.mean())})
