"""The judge: a shape-and-colour classifier that does not share the prior's view of the world.

The evaluator (`prior.evaluator`) learned from the prior's own renders: white background, two
fixed lights, elevations 0-40. An asset can fool it by being right only there. The judge is the
same network trained on `prior.judge_data`'s images (random lights, backgrounds, camera distances,
elevations -20 to 85 with bands held out, and a "none" class per head), and it scores an asset on
grey and dark backgrounds, from below the object to near the top, where generation never looks.
Its accuracy on the held-out elevations is stored with its weights (`build_judge`).
Dimension letters: E elevations, A azimuths, H, W image size.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from .evaluator import ShapeColourNet, classify, load_classifier, save_classifier, train_classifier
from .judge_data import JUDGE_COLOURS, JUDGE_SHAPES, JudgeImages, render_judge_images
from .vocabulary import WORDS, normalise, parse_single

JUDGE_PATH = Path(__file__).resolve().parent / "judge.safetensors"
JUDGE_SIZE = 32
"""The judge's input size, the evaluator's: enough to tell the six shapes apart from any side."""
SCORING_ELEVATIONS = (-10.0, 15.0, 40.0, 65.0)
SCORING_RESOLUTION = 64
SCORING_BACKGROUNDS = ((0.5, 0.5, 0.5), (0.15, 0.17, 0.2), (0.82, 0.8, 0.74), (0.35, 0.42, 0.5))
"""Cycled over the views: greys and muted tones, none of them the prior's white, all far from the palette."""


@dataclass
class JudgeTrainConfig:
    steps: int = 2500
    batch_size: int = 64
    learning_rate: float = 2e-3
    views_per_object: int = 40
    seed: int = 1000
    """seed of the training images and weights; the held-out report and tests use other seeds"""


def train_judge(config: JudgeTrainConfig, progress=None) -> ShapeColourNet:
    data = render_judge_images(config.seed, config.views_per_object, held_out=False, size=JUDGE_SIZE)
    torch.manual_seed(config.seed)  # the initial weights
    model = ShapeColourNet(shapes=len(JUDGE_SHAPES), colours=len(JUDGE_COLOURS), input_size=JUDGE_SIZE)
    return train_classifier(model, data.images, data.shape, data.colour, config.steps, config.batch_size,
                            config.learning_rate, config.seed, progress)


def judge_accuracy(model: ShapeColourNet, data: JudgeImages) -> dict:
    """Shape, colour and both-right accuracy over `data`, and per shape class (with "none")."""
    shapes, colours = classify(model, data.images)
    shape_hit, colour_hit = shapes == data.shape, colours == data.colour
    return {"images": len(data), "shape": shape_hit.float().mean().item(), "colour": colour_hit.float().mean().item(),
            "both": (shape_hit & colour_hit).float().mean().item(),
            "per_shape": {name: shape_hit[data.shape == index].float().mean().item()
                          for index, name in enumerate(JUDGE_SHAPES) if (data.shape == index).any()}}


def save_judge(model: ShapeColourNet, path: str | Path, metrics: dict) -> None:
    save_classifier(model, path, "judge", JUDGE_SHAPES, JUDGE_COLOURS, metrics)


def load_judge(path: str | Path = JUDGE_PATH) -> ShapeColourNet:
    return load_classifier(path, "judge", JUDGE_SHAPES, JUDGE_COLOURS)


def judge_images(images: Tensor, prompt: str, model: ShapeColourNet | None = None) -> dict:
    """Fractions of views [N, 3, H, W] the judge names as the prompt's shape, colour, and both."""
    shape, colour = parse_single(normalise(prompt, frozenset(WORDS)))
    model = load_judge() if model is None else model
    shapes, colours = classify(model, images.to(next(model.parameters()).device))
    shape_hit, colour_hit = shapes == JUDGE_SHAPES.index(shape), colours == JUDGE_COLOURS.index(colour)
    return {"judge": (shape_hit & colour_hit).float().mean().item(), "judge_shape": shape_hit.float().mean().item(),
            "judge_colour": colour_hit.float().mean().item(),
            "judge_none": (shapes == JUDGE_SHAPES.index("none")).float().mean().item(), "judge_views": len(images)}


def scoring_views(asset) -> Tensor:
    """The asset on the judge's ring (every SCORING_ELEVATIONS, 24 azimuths each), each view on the
    next of SCORING_BACKGROUNDS -> [E * A, 3, H, W]."""
    from fieldkit.generate.geometry import render_asset

    views = render_asset(asset, 1.0, SCORING_RESOLUTION, SCORING_ELEVATIONS)
    alpha = views.alpha.flatten(0, 1)[..., None]  # [E * A, H, W, 1]
    backgrounds = torch.tensor(SCORING_BACKGROUNDS)
    backgrounds = backgrounds[torch.arange(len(alpha)) % len(backgrounds)][:, None, None]  # [E * A, 1, 1, 3]
    images = views.colour.flatten(0, 1) * alpha + backgrounds * (1 - alpha)
    return images.permute(0, 3, 1, 2)


def judge_asset(asset, prompt: str, model: ShapeColourNet | None = None) -> dict:
    """The judge's scores of `asset` for `prompt` over its scoring ring."""
    return judge_images(scoring_views(asset), prompt, model)
