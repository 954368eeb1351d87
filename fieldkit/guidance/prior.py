"""One interface over text-to-image diffusion models: the built-in prior and any diffusers
Stable Diffusion directory or hub id load through the same code and expose the same methods.

A prior works in its model space: pixels in [-1, 1] for a pixel-space UNet, VAE latents (times
the VAE's scaling factor) for a latent model. Losses only see `encode_images`, `predict_noise`,
`alphas_cumprod` and `encode_prompt`; they never learn which model they talk to.
"""
from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from fieldkit.errors import FieldkitError

BUILTIN = "builtin"
BUILTIN_DIRECTORY = Path(__file__).resolve().parent.parent / "prior" / "builtin"
REQUIRED_COMPONENTS = ("unet", "scheduler", "text_encoder", "tokenizer")


@dataclass
class Prior:
    unet: torch.nn.Module
    text_encoder: torch.nn.Module
    tokenizer: object
    scheduler: object
    """The training noise schedule (a diffusers DDPMScheduler): betas, alphas_cumprod, prediction type."""
    vae: torch.nn.Module | None
    source: str
    closed_vocabulary: frozenset[str] | None
    """The known words of a word-level tokenizer; None for open-vocabulary (BPE) tokenizers."""

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    @property
    def resolution(self) -> int:
        """Pixel size of the square images the model was trained on."""
        scale = 2 ** (len(self.vae.config.block_out_channels) - 1) if self.vae is not None else 1
        return int(self.unet.config.sample_size) * scale

    @property
    def alphas_cumprod(self) -> Tensor:  # [T]
        return self.scheduler.alphas_cumprod.to(self.device, torch.float32)

    @property
    def num_train_timesteps(self) -> int:
        return int(self.scheduler.config.num_train_timesteps)

    def normalise_prompt(self, prompt: str) -> str:
        """Closed-vocabulary priors get the vocabulary's normalisation and unknown-word check."""
        if not prompt.strip():
            raise FieldkitError("the prompt is empty: describe an object, e.g. \"a red cube\"")
        if self.closed_vocabulary is None:
            return prompt.strip()
        from fieldkit.prior.vocabulary import normalise

        return normalise(prompt, self.closed_vocabulary)

    @torch.no_grad()
    def encode_prompt(self, prompts: list[str]) -> Tensor:  # [B, L, D]
        """Text-encoder hidden states for each prompt ("" is the unconditional prompt)."""
        texts = [self.normalise_prompt(prompt) if prompt else "" for prompt in prompts]
        tokens = self.tokenizer(texts, padding="max_length", max_length=self.tokenizer.model_max_length,
                                truncation=True, return_tensors="pt")
        return self.text_encoder(tokens.input_ids.to(self.device))[0].to(self.dtype)

    def encode_images(self, images: Tensor) -> Tensor:
        """Images [B, 3, H, W] in [0, 1] -> model-space samples, differentiably (resized to `resolution`)."""
        images = F.interpolate(images, size=(self.resolution,) * 2, mode="bilinear", align_corners=False,
                               antialias=True) if images.shape[-1] != self.resolution else images
        pixels = images.to(self.dtype) * 2 - 1
        if self.vae is None:
            return pixels
        return self.vae.encode(pixels).latent_dist.sample() * self.vae.config.scaling_factor

    @torch.no_grad()
    def decode(self, samples: Tensor) -> Tensor:
        """Model-space samples -> images [B, 3, H, W] in [0, 1]."""
        if self.vae is not None:
            samples = self.vae.decode(samples / self.vae.config.scaling_factor).sample
        return ((samples.float() + 1) / 2).clamp(0, 1)

    def predict_noise(self, noisy: Tensor, timesteps: Tensor, cond: Tensor, unet: torch.nn.Module | None = None,
                      class_labels: Tensor | None = None) -> Tensor:
        """The model's noise estimate eps for `noisy` at integer `timesteps` [B], whatever it predicts.

        `unet` replaces the prior's own (an adapted copy, as VSD trains), `class_labels` are its
        extra conditioning (VSD's camera)."""
        unet = self.unet if unet is None else unet
        output = unet(noisy.to(self.dtype), timesteps, encoder_hidden_states=cond, class_labels=class_labels).sample
        if self.scheduler.config.prediction_type == "v_prediction":
            alpha = self.alphas_cumprod[timesteps].view(-1, 1, 1, 1)
            return alpha.sqrt() * output + (1 - alpha).sqrt() * noisy
        return output


def _model_index(directory: Path) -> dict:
    index_file = directory / "model_index.json"
    try:
        index = json.loads(index_file.read_text())
    except (OSError, json.JSONDecodeError):
        raise FieldkitError(f"{directory} is not a diffusers pipeline directory (no readable model_index.json); "
                            "pass a Stable Diffusion directory or hub id, or leave --prior out for the built-in prior") from None
    missing = [name for name in REQUIRED_COMPONENTS if name not in index]
    if missing:
        raise FieldkitError(f"{directory} has no {', '.join(missing)}: fieldkit needs a text-conditioned UNet "
                            "pipeline such as Stable Diffusion 1.x/2.x")
    return index


def _closed_vocabulary(tokenizer) -> frozenset[str] | None:
    """A word-level tokenizer maps whole words only, so its vocabulary is the prompt language."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or type(backend.model).__name__ != "WordLevel":
        return None
    return frozenset(word for word in tokenizer.get_vocab() if word not in tokenizer.all_special_tokens)


def resolve_prior_source(source: str | None) -> str:
    """A local directory path, or a hub id; None and "builtin" mean the shipped prior."""
    return str(BUILTIN_DIRECTORY) if source in (None, BUILTIN) else str(source)


def _pipeline_index(path: str, named_by_user: bool) -> dict:
    """model_index.json of a local directory, or fetched from the hub for a hub id."""
    if Path(path).exists():
        return _model_index(Path(path))
    if named_by_user and ("/" not in path or path.startswith((".", "/", "~"))):
        raise FieldkitError(f"--prior {path}: no such directory, and not a hub id (user/model)")
    from huggingface_hub import hf_hub_download

    try:
        return _model_index(Path(hf_hub_download(path, "model_index.json")).parent)
    except FieldkitError:
        raise
    except Exception as error:  # the hub client raises many error types: offline, gated, missing
        raise FieldkitError(f"cannot fetch {path} from the Hugging Face hub: {_first_line(error)}") from None


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


@contextlib.contextmanager
def _quiet_loading():
    """diffusers and transformers print progress bars and advice while loading; fieldkit's
    one-line errors say what matters."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    levels = diffusers_logging.get_verbosity(), transformers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    transformers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(levels[0])
        transformers_logging.set_verbosity(levels[1])
        diffusers_logging.enable_progress_bar()
        transformers_logging.enable_progress_bar()


def load_prior(source: str | None = None, device: str | torch.device = "cpu", half: bool | None = None) -> Prior:
    """Loads a prior from a diffusers pipeline directory or hub id (None: the built-in prior).

    Half precision is used on CUDA unless `half` is False; CPU always runs float32.
    """
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import AutoTokenizer, CLIPTextModel

    path = resolve_prior_source(source)
    index = _pipeline_index(path, named_by_user=source not in (None, BUILTIN))
    device = torch.device(device)
    dtype = torch.float16 if device.type == "cuda" and half is not False else torch.float32
    try:
        with _quiet_loading():
            unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet", torch_dtype=dtype)
            text_encoder = CLIPTextModel.from_pretrained(path, subfolder="text_encoder", torch_dtype=dtype)
            tokenizer = AutoTokenizer.from_pretrained(path, subfolder="tokenizer")
            scheduler = DDPMScheduler.from_pretrained(path, subfolder="scheduler")
            vae = AutoencoderKL.from_pretrained(path, subfolder="vae", torch_dtype=dtype) if "vae" in index else None
    except (OSError, ValueError) as error:
        raise FieldkitError(f"cannot load the diffusion prior from {path}: {_first_line(error)}") from None
    for module in (unet, text_encoder, vae):
        if module is not None:
            module.to(device).eval().requires_grad_(False)
    return Prior(unet, text_encoder, tokenizer, scheduler, vae, path, _closed_vocabulary(tokenizer))
