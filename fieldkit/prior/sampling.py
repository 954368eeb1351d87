"""Sampling images from any `Prior` with DDIM and classifier-free guidance."""
from __future__ import annotations

import torch
from torch import Tensor

from fieldkit.devices import make_generator
from fieldkit.guidance.prior import Prior

DEFAULT_GUIDANCE_SCALE = 5.0
"""diffusers' convention: eps = eps_uncond + scale * (eps_cond - eps_uncond); 1 means no guidance."""
DEFAULT_SAMPLING_STEPS = 30


@torch.no_grad()
def sample_images(prior: Prior, prompt: str, count: int, guidance_scale: float = DEFAULT_GUIDANCE_SCALE,
                  steps: int = DEFAULT_SAMPLING_STEPS, seed: int = 0) -> Tensor:
    """`count` images [count, 3, H, W] in [0, 1] for `prompt`, deterministic for a seed."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config(prior.scheduler.config)
    scheduler.set_timesteps(steps)
    cond = prior.encode_prompt([prompt, ""])  # [2, L, D]
    cond = cond.repeat_interleave(count, dim=0)  # [2 * count, L, D]: conditional rows, then unconditional
    channels, size = prior.unet.config.in_channels, prior.unet.config.sample_size
    generator = make_generator(seed, prior.device)
    samples = torch.randn((count, channels, size, size), generator=generator, device=prior.device).to(prior.dtype)
    for timestep in scheduler.timesteps:
        eps = prior.predict_noise(samples.repeat(2, 1, 1, 1), timestep.expand(2 * count).to(prior.device), cond)
        eps_cond, eps_uncond = eps.chunk(2)
        guided = eps_uncond + guidance_scale * (eps_cond - eps_uncond)
        samples = scheduler.step(guided, timestep, samples).prev_sample
    return prior.decode(samples)
