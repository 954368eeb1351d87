"""Variational Score Distillation (ProlificDreamer, Wang et al. 2023).

SDS compares the prior's guided noise estimate with the noise that was added; VSD compares it
with the noise estimate of a second model that learns the distribution of the current renders.
That model is a LoRA-adapted copy of the prior (see `lora.py`), conditioned on the camera, and
trained with the ordinary diffusion loss on the renders while the 3D model is optimised. The
gradient on z is w(t) (eps_hat_pretrained - eps_lora(z_t, t, y, camera)), applied through the
same MSE-against-a-detached-target loss as SDS (derivation in `sds.py`).
Dimension letters: B views, C channels, H, W model-space size.
"""
from __future__ import annotations

import torch
from torch import Tensor

from fieldkit.devices import draws_on
from fieldkit.guidance.base import Guidance, GuidanceOutput, add_noise
from fieldkit.guidance.cfg import predict_noises
from fieldkit.guidance.lora import adapted_copy, camera_features, trainable_parameters
from fieldkit.guidance.prior import Prior
from fieldkit.guidance.prompts import Conditioning
from fieldkit.guidance.sds import distillation_loss, timestep_weight

CAMERA_DROPOUT = 0.1
"""ProlificDreamer drops the camera for a tenth of the LoRA's training samples."""


class VSD(Guidance):
    def __init__(self, prior: Prior, guidance_scale: float, weighting: str = "sds", rank: int = 4,
                 learning_rate: float = 1e-3, lora_steps: int = 1):
        self.prior, self.guidance_scale, self.weighting, self.lora_steps = prior, guidance_scale, weighting, lora_steps
        self.lora_unet = adapted_copy(prior.unet, rank)
        self.parameters = trainable_parameters(self.lora_unet)
        self.optimizer = torch.optim.Adam(list(self.parameters.values()), lr=learning_rate)

    def lora_noise(self, noisy: Tensor, timesteps: Tensor, cond: Tensor, cameras: Tensor) -> Tensor:
        """eps_lora [B, C, H, W]: the adapted model, conditional, with the camera."""
        return self.prior.predict_noise(noisy, timesteps, cond, unet=self.lora_unet,
                                        class_labels=camera_features(cameras)).float()

    def train_lora(self, samples: Tensor, cond: Tensor, cameras: Tensor,
                   generator: torch.Generator | None) -> tuple[float, float]:
        """One step of the diffusion loss on the current renders `samples` [B, C, H, W] (detached)
        -> (the LoRA's loss, its ratio to the pretrained model's loss on the same noisy renders).

        The loss itself rises and falls with the timesteps drawn and with how far the renders are
        from anything the prior knows; the ratio shows what the LoRA has learnt about them."""
        timesteps = torch.randint(0, self.prior.num_train_timesteps, (samples.shape[0],), generator=generator,
                                  device=draws_on(generator)).to(samples.device)
        noisy, noise = add_noise(self.prior, samples, timesteps, generator)
        keep = (torch.rand(samples.shape[0], generator=generator, device=draws_on(generator)) > CAMERA_DROPOUT).to(cameras)
        with torch.no_grad():
            pretrained = (self.prior.predict_noise(noisy, timesteps, cond).float() - noise).square().mean()
        with torch.enable_grad():
            loss = (self.lora_noise(noisy, timesteps, cond, cameras * keep.view(-1, 1, 1)) - noise).square().mean()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
        self.optimizer.step()
        return float(loss.detach()), float(loss.detach() / pretrained.clamp(min=1e-12))

    def __call__(self, images: Tensor, timesteps: Tensor, condition: Conditioning, cameras: Tensor,
                 generator: torch.Generator | None = None) -> GuidanceOutput:
        samples = self.prior.encode_images(images).float()
        noisy, _ = add_noise(self.prior, samples.detach(), timesteps, generator)
        eps = predict_noises(self.prior, noisy, timesteps, condition)
        with torch.no_grad():
            eps_lora = self.lora_noise(noisy, timesteps, condition.cond, cameras)
        weight = timestep_weight(self.prior.alphas_cumprod, timesteps, self.weighting).view(-1, 1, 1, 1)
        gradient = weight * (eps.guided(self.guidance_scale, condition.negative_weight) - eps_lora)
        losses, ratios = zip(*[self.train_lora(samples.detach(), condition.cond, cameras, generator)
                               for _ in range(self.lora_steps)])
        return GuidanceOutput(distillation_loss(samples, gradient),
                              {"lora_loss": sum(losses) / len(losses), "lora_ratio": sum(ratios) / len(ratios)})

    def state_tensors(self) -> dict[str, Tensor]:
        from fieldkit.runs import optimizer_tensors

        return {f"lora.{name}": parameter for name, parameter in self.parameters.items()} | \
            {f"lora_{name}": value for name, value in optimizer_tensors(self.optimizer).items()}

    def load_state_tensors(self, tensors: dict[str, Tensor]) -> None:
        from fieldkit.runs import load_optimizer_tensors

        with torch.no_grad():
            for name, parameter in self.parameters.items():
                parameter.copy_(tensors[f"lora.{name}"])
        load_optimizer_tensors(self.optimizer, {name[len("lora_"):]: value for name, value in tensors.items()
                                                if name.startswith("lora_optimizer.")})
