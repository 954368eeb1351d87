"""Score-distillation losses: their math (SDS gradient, CFG convention, Perp-Neg, BSD's closed-form
weight), timestep schedules, view prompts, VSD's LoRA, and one SDS step through a tiny random-weight
Stable Diffusion pipeline (latent path, VAE encode) built from configs and saved with save_pretrained."""
from __future__ import annotations

import json

import pytest
import torch

from fieldkit.errors import FieldkitError
from fieldkit.guidance.base import add_noise
from fieldkit.guidance.bsd import BSD, combine, min_norm_weight
from fieldkit.guidance.cfg import NoisePredictions, predict_noises
from fieldkit.guidance.lora import adapted_copy, trainable_parameters
from fieldkit.guidance.prior import load_prior
from fieldkit.guidance.prompts import PromptProcessor, view_name
from fieldkit.guidance.schedules import TimestepSchedule
from fieldkit.guidance.sds import SDS, timestep_weight
from fieldkit.guidance.vsd import VSD


@pytest.fixture(scope="module")
def pixel_prior(prior_directory):
    """A random-weight built-in-style prior: pixel-space 16 px UNet, word-level tokenizer."""
    return load_prior(prior_directory)


def _clip_tokenizer(directory):
    """A CLIPTokenizer over single letters (no merges): enough to encode any lower-case prompt."""
    from transformers import CLIPTokenizer

    letters = [chr(code) for code in range(ord("a"), ord("z") + 1)] + [","]
    vocabulary = ["<|startoftext|>", "<|endoftext|>"] + letters + [letter + "</w>" for letter in letters]
    (directory / "vocab.json").write_text(json.dumps({token: index for index, token in enumerate(vocabulary)}))
    (directory / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"), model_max_length=16)


@pytest.fixture(scope="module")
def sd_directory(tmp_path_factory):
    """A tiny random-weight StableDiffusionPipeline (UNet, VAE, CLIP text encoder, CLIP tokenizer)."""
    from diffusers import (
        AutoencoderKL,
        DDPMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("tiny_sd")
    tokenizer = _clip_tokenizer(directory)
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64),
                                layers_per_block=1, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                                attention_head_dim=8)
    vae = AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(32, 64), latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        sample_size=16)
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37,
                                                num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=16,
                                                bos_token_id=0, eos_token_id=1, pad_token_id=1))
    scheduler = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    pipeline = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                       scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
    pipeline.save_pretrained(directory / "pipeline")
    return directory / "pipeline"


def _small_splats(count: int = 200):
    from fieldkit.gaussians.initialise import splats_from_points

    generator = torch.Generator().manual_seed(0)
    points = (torch.rand(count, 3, generator=generator) - 0.5) * 0.8
    return splats_from_points(points, torch.rand(count, 3, generator=generator), 0.5, 0, torch.ones(3))


def test_sds_step_through_a_stable_diffusion_pipeline_reaches_the_splats(sd_directory):
    from fieldkit.cameras import orbit_cameras
    from fieldkit.scenes.objects import CAMERA_DISTANCE

    prior = load_prior(str(sd_directory))
    assert prior.vae is not None and prior.closed_vocabulary is None and prior.resolution == 16
    splats = _small_splats()
    cameras = orbit_cameras(torch.tensor([0.0, 120.0]), torch.tensor([10.0, 30.0]), CAMERA_DISTANCE, 24)
    images = splats.render(cameras).rgb.permute(0, 3, 1, 2)  # [2, 3, 24, 24], resized to 16 by the prior
    condition = PromptProcessor.build(prior, "a red cube").condition(torch.tensor([0.0, 120.0]), torch.tensor([10.0, 30.0]))
    timesteps = torch.tensor([500, 700])
    loss = SDS(prior, 7.5)(images, timesteps, condition, cameras.c2w, torch.Generator().manual_seed(0)).loss
    loss.backward()
    for name in ("means", "log_scales", "opacity_logits", "sh_dc"):
        grad = getattr(splats, name).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    assert all(parameter.grad is None for parameter in prior.unet.parameters())


def test_sds_gradient_is_the_weighted_noise_residual(pixel_prior):
    prior = pixel_prior
    images = torch.rand(2, 3, 16, 16, requires_grad=True)
    condition = PromptProcessor.build(prior, "a red cube", view_dependent=False).condition(torch.zeros(2), torch.zeros(2))
    timesteps = torch.tensor([300, 800])
    SDS(prior, 5.0)(images, timesteps, condition, torch.eye(4).repeat(2, 1, 1), torch.Generator().manual_seed(3)).loss.backward()
    # the same noise again, and the residual computed by hand
    noisy, noise = add_noise(prior, images.detach() * 2 - 1, timesteps, torch.Generator().manual_seed(3))
    eps = predict_noises(prior, noisy, timesteps, condition)
    guided = eps.uncond + 5.0 * (eps.cond - eps.uncond)
    expected = timestep_weight(prior.alphas_cumprod, timesteps).view(-1, 1, 1, 1) * (guided - noise)
    # images -> 2 x - 1 doubles the gradient; the loss averages over the 2 views
    torch.testing.assert_close(images.grad, expected * 2 / 2, rtol=1e-4, atol=1e-5)


def test_cfg_convention_and_perp_neg():
    generator = torch.Generator().manual_seed(0)
    cond, uncond, other = (torch.randn(2, 3, 4, 4, generator=generator) for _ in range(3))
    eps = NoisePredictions(cond, uncond, None)
    torch.testing.assert_close(eps.guided(1.0), cond)  # diffusers: scale 1 is the conditional model
    torch.testing.assert_close(eps.guided(0.0), uncond)
    # a negative along the positive direction is removed entirely; a perpendicular one is subtracted
    parallel = NoisePredictions(cond, uncond, uncond + 3 * (cond - uncond))
    torch.testing.assert_close(parallel.direction(1.0), cond - uncond)
    direction = (cond - uncond).flatten(1)
    pushed = (other - uncond).flatten(1)
    perpendicular = pushed - (pushed * direction).sum(1, keepdim=True) / direction.square().sum(1, keepdim=True) * direction
    with_negative = NoisePredictions(cond, uncond, other).direction(0.5).flatten(1)
    torch.testing.assert_close(with_negative, direction - 0.5 * perpendicular)


def test_bsd_weight_is_the_clipped_minimum_norm_point():
    generator = torch.Generator().manual_seed(1)
    classifier, smoothing = torch.randn(3, 50, generator=generator), torch.randn(3, 50, generator=generator)
    weight = min_norm_weight(classifier, smoothing)
    grid = torch.linspace(0, 1, 10001)
    norms = (grid[:, None, None] * classifier + (1 - grid[:, None, None]) * smoothing).norm(dim=-1)  # [G, 3]
    torch.testing.assert_close(weight, grid[norms.argmin(dim=0)], atol=2e-4, rtol=0)
    # clipped: a classifier direction that overshoots the smoothing one gives 0; a zero one gives 1
    along = torch.ones(1, 50)
    assert float(min_norm_weight(3 * along, along)) == 0.0
    assert float(min_norm_weight(torch.zeros(1, 50), along)) == 1.0
    combined = combine(classifier, smoothing, weight)
    assert (combined.norm(dim=-1) <= torch.minimum(classifier.norm(dim=-1), smoothing.norm(dim=-1)) + 1e-5).all()


@pytest.mark.parametrize("variant", ["standard", "auto"])
def test_bsd_runs_on_the_prior_and_reports_its_weight(pixel_prior, variant):
    images = torch.rand(1, 3, 16, 16, requires_grad=True)
    condition = PromptProcessor.build(pixel_prior, "a blue torus").condition(torch.zeros(1), torch.zeros(1))
    output = BSD(pixel_prior, 20.0, variant)(images, torch.tensor([500]), condition, torch.eye(4)[None])
    output.loss.backward()
    assert 0 <= output.figures["bsd_weight"] <= 1 and torch.isfinite(images.grad).all()


class _FakePrior:
    """eps(z_t, t, text) = 0.3 z_t + text[0, 0] * pattern: a prior whose predictions are known by hand."""

    num_train_timesteps = 1000
    device, dtype = torch.device("cpu"), torch.float32
    alphas_cumprod = torch.linspace(0.999, 0.01, 1000)

    def __init__(self):
        self.pattern = torch.randn(3, 4, 4, generator=torch.Generator().manual_seed(5))

    def encode_images(self, images):
        return images * 2 - 1

    def predict_noise(self, noisy, timesteps, text):
        return 0.3 * noisy + text[:, 0, 0].view(-1, 1, 1, 1) * self.pattern


def _fake_condition(cond: list[float], uncond: list[float]):
    from fieldkit.guidance.prompts import Conditioning

    as_text = lambda values: torch.tensor(values).view(-1, 1, 1).expand(-1, 2, 3).clone()
    return Conditioning(as_text(cond), as_text(uncond))


@pytest.mark.parametrize("variant", ["standard", "auto"])
def test_bsd_gradients_match_the_published_formulas_by_hand(variant):
    prior, scale = _FakePrior(), 7.0
    images = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0), requires_grad=True)
    timesteps = torch.tensor([100, 700])
    condition = _fake_condition([1.5, -0.4], [0.2, 0.1])
    BSD(prior, scale, variant)(images, timesteps, condition, torch.eye(4).repeat(2, 1, 1),
                               torch.Generator().manual_seed(9)).loss.backward()
    noise = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(9))
    alpha_bar = prior.alphas_cumprod[timesteps].view(-1, 1, 1, 1)
    noisy = alpha_bar.sqrt() * (images.detach() * 2 - 1) + (1 - alpha_bar).sqrt() * noise
    eps_c = 0.3 * noisy + torch.tensor([1.5, -0.4]).view(-1, 1, 1, 1) * prior.pattern
    eps_u = 0.3 * noisy + torch.tensor([0.2, 0.1]).view(-1, 1, 1, 1) * prior.pattern
    if variant == "standard":  # PlacidDreamer's train_step_BSD, lambda = the guidance scale
        classifier, smoothing, weight = scale * (eps_c - eps_u), eps_u, alpha_bar.sqrt()
        # the two directions add up to SDS's guided prediction at the same scale: equal-scale comparison
        torch.testing.assert_close(classifier + smoothing, eps_u + scale * (eps_c - eps_u))
    else:  # train_step_BSD_auto
        classifier, smoothing = eps_c - eps_u, 1.25 * (eps_u - noise)
        weight = (eps_u - noise).flatten(1).norm(dim=1).view(-1, 1, 1, 1) * (1 - alpha_bar).sqrt() / 50
    expected = []
    for c, m in zip(classifier, smoothing):
        a = float(((m - c) * m).sum() / (m - c).square().sum())
        a = min(max(a, 0.0), 1.0)
        expected.append(a * c + (1 - a) * m)
    # images -> 2 x - 1 doubles the gradient; the loss averages over the 2 views
    torch.testing.assert_close(images.grad, weight * torch.stack(expected) * 2 / 2, rtol=1e-4, atol=1e-6)


def test_bsd_auto_takes_no_guidance_scale():
    from fieldkit.generate.config import GenerateConfig

    assert GenerateConfig(guidance="bsd-auto").scale is None and GenerateConfig(guidance="bsd").scale == 20.0
    with pytest.raises(FieldkitError, match="does not apply"):
        GenerateConfig(guidance="bsd-auto", guidance_scale=5.0)


def test_schedules():
    annealed, linear = TimestepSchedule("annealed", 0.02, 0.98, 0.5), TimestepSchedule("linear", 0.02, 0.98)
    assert annealed.bounds(0.0) == (0.02, 0.98) and annealed.bounds(1.0) == pytest.approx((0.02, 0.5))
    starts, ends = linear.sample(100, 0, 100, 1000), linear.sample(100, 99, 100, 1000)
    assert starts.min() > ends.max()  # DreamGaussian: falling timesteps
    assert 0 <= ends.min() and starts.max() <= 999
    with pytest.raises(FieldkitError):
        TimestepSchedule("cosine")


def test_view_prompts(pixel_prior):
    assert [view_name(a, 10) for a in (0, 60, -100, 180, 170)] == ["front", "side", "side", "back", "back"]
    assert view_name(0, 75) == "overhead"
    prompts = PromptProcessor.build(pixel_prior, "A Red Cube!", perp_neg_weight=1.0)
    assert prompts.prompt == "red cube" and set(prompts.embeddings) == {"front", "side", "back", "overhead"}
    condition = prompts.condition(torch.tensor([0.0, 180.0]), torch.tensor([10.0, 10.0]))
    torch.testing.assert_close(condition.negative[0], prompts.embeddings["back"][0])  # front pushed from back
    assert not torch.equal(condition.cond[0], condition.cond[1])
    plain = PromptProcessor.build(pixel_prior, "red cube", view_dependent=False, perp_neg_weight=1.0)
    assert plain.condition(torch.zeros(1), torch.zeros(1)).negative is None
    with pytest.raises(FieldkitError, match="does not know 'dragon'"):
        PromptProcessor.build(pixel_prior, "a red dragon")
    with pytest.raises(FieldkitError, match="empty"):
        PromptProcessor.build(pixel_prior, "  ")


def test_lora_copy_starts_as_the_prior_and_shares_its_weights(pixel_prior):
    adapted = adapted_copy(pixel_prior.unet)
    shared = {id(parameter) for parameter in pixel_prior.unet.parameters()}
    trainable = trainable_parameters(adapted)
    assert trainable and not any(id(parameter) in shared for parameter in trainable.values())
    assert all(id(parameter) in shared for name, parameter in adapted.named_parameters() if name not in trainable)
    noisy, cond = torch.randn(2, 3, 16, 16), pixel_prior.encode_prompt(["red cube", ""])
    timesteps = torch.tensor([100, 900])
    with torch.no_grad():
        expected = pixel_prior.predict_noise(noisy, timesteps, cond)
        actual = pixel_prior.predict_noise(noisy, timesteps, cond, unet=adapted, class_labels=torch.randn(2, 16))
    torch.testing.assert_close(actual, expected)
    assert not hasattr(pixel_prior.unet, "class_embedding") or pixel_prior.unet.class_embedding is None


def test_vsd_lora_loss_falls_on_fixed_renders(pixel_prior):
    torch.manual_seed(0)
    vsd = VSD(pixel_prior, 7.5, rank=8, learning_rate=1e-2)
    samples = torch.rand(2, 3, 16, 16) * 2 - 1
    cond, cameras = pixel_prior.encode_prompt(["red cube", "red cube"]), torch.eye(4).repeat(2, 1, 1)

    def held_out_loss() -> float:
        generator = torch.Generator().manual_seed(123)
        timesteps = torch.randint(0, 1000, (16,), generator=generator)
        noisy, noise = add_noise(pixel_prior, samples.repeat(8, 1, 1, 1), timesteps, generator)
        with torch.no_grad():
            return float((vsd.lora_noise(noisy, timesteps, cond.repeat(8, 1, 1), cameras.repeat(8, 1, 1)) - noise)
                         .square().mean())

    before = held_out_loss()
    generator = torch.Generator().manual_seed(0)
    for _ in range(60):
        vsd.train_lora(samples, cond, cameras, generator)
    after = held_out_loss()
    assert after < 0.9 * before
    # its state round-trips through checkpoint tensors
    state = vsd.state_tensors()
    fresh = VSD(pixel_prior, 7.5, rank=8)
    fresh.load_state_tensors(state)
    for name, parameter in fresh.parameters.items():
        torch.testing.assert_close(parameter, vsd.parameters[name])


def test_a_directory_that_is_not_a_pipeline_is_refused(tmp_path):
    (tmp_path / "model_index.json").write_text("not json")
    with pytest.raises(FieldkitError, match="not a diffusers pipeline"):
        load_prior(str(tmp_path))


def test_the_prior_loader_reads_a_stable_diffusion_directory_as_diffusers_does(sd_directory):
    """load_prior (the built-in prior's loader too) gives the same networks, text embedding and
    noise prediction as diffusers' own StableDiffusionPipeline.from_pretrained."""
    from diffusers import StableDiffusionPipeline

    prior = load_prior(str(sd_directory))
    pipeline = StableDiffusionPipeline.from_pretrained(str(sd_directory), safety_checker=None)
    tokens = pipeline.tokenizer(["red cube"], padding="max_length", max_length=pipeline.tokenizer.model_max_length,
                                return_tensors="pt").input_ids
    with torch.no_grad():
        expected_text = pipeline.text_encoder(tokens)[0]
        text = prior.encode_prompt(["red cube"])
        noisy = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
        expected_eps = pipeline.unet(noisy, torch.tensor([300]), encoder_hidden_states=expected_text).sample
        eps = prior.predict_noise(noisy, torch.tensor([300]), text)
    assert torch.equal(text, expected_text) and torch.equal(eps, expected_eps)
    assert prior.vae.config.scaling_factor == pipeline.vae.config.scaling_factor
