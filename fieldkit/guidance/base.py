"""What every score-distillation loss shares: its call signature, its output, and the forward
noising q(z_t | z) of the prior's training schedule.
Dimension letters: B views, C channels, H, W model-space size.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from fieldkit.devices import draws_on
from fieldkit.guidance.prior import Prior
from fieldkit.guidance.prompts import Conditioning


@dataclass
class GuidanceOutput:
    loss: Tensor  # [] whose gradient on the images is the distillation gradient
    figures: dict[str, float] = field(default_factory=dict)  # extra numbers for the progress line


def add_noise(prior: Prior, samples: Tensor, timesteps: Tensor,
              generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """(z_t, eps): `samples` [B, C, H, W] noised to `timesteps` [B], with the noise drawn."""
    noise = torch.randn(samples.shape, generator=generator, device=draws_on(generator)).to(samples)
    alpha = prior.alphas_cumprod[timesteps].view(-1, 1, 1, 1)
    return alpha.sqrt() * samples + (1 - alpha).sqrt() * noise, noise


class Guidance:
    """A score-distillation loss over a `Prior`.

    `loss = guidance(images [B, 3, H, W] in [0, 1], timesteps [B], condition, cameras [B, 4, 4])`;
    losses that train something of their own (VSD) also checkpoint it through `state_tensors`.
    """

    def __call__(self, images: Tensor, timesteps: Tensor, condition: Conditioning, cameras: Tensor,
                 generator: torch.Generator | None = None) -> GuidanceOutput:
        raise NotImplementedError

    def state_tensors(self) -> dict[str, Tensor]:
        return {}

    def load_state_tensors(self, tensors: dict[str, Tensor]) -> None:
        """Restores what `state_tensors` returned."""
