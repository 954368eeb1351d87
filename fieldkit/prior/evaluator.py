"""The prompt-fidelity evaluator: a small CNN that names the shape and colour of one object seen
in one view. It is trained on procedural renders (`prior.dataset`) and tested on renders with
held-out seeds. Scoring an asset renders a turntable around it, the way CLIP R-precision is
measured in text-to-3D papers, and reports the fraction of views classified as the prompt says.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fieldkit.errors import FieldkitError
from fieldkit.asset_file import read_tensors, write_tensors

from .dataset import COLOUR_NAMES, ObjectImages, render_objects
from .vocabulary import SHAPES, WORDS, normalise, parse_single

INPUT_SIZE = 32
EVALUATOR_PATH = Path(__file__).resolve().parent / "evaluator.safetensors"


class ShapeColourNet(nn.Module):
    """Three conv stages and two linear heads: shape logits [B, shapes] and colour logits [B, colours]."""

    def __init__(self, width: int = 32, shapes: int = len(SHAPES), colours: int = len(COLOUR_NAMES),
                 input_size: int = INPUT_SIZE):
        super().__init__()
        layers, channels = [], 3
        for out in (width, 2 * width, 4 * width):
            layers += [nn.Conv2d(channels, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(),
                       nn.Conv2d(out, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(), nn.MaxPool2d(2)]
            channels = out
        self.input_size = input_size
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.shape_head = nn.Linear(channels, shapes)
        self.colour_head = nn.Linear(channels, colours)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:  # [B, 3, S, S] in [0, 1], S = input_size
        features = self.features(images * 2 - 1)
        return self.shape_head(features), self.colour_head(features)


def prepare(images: Tensor, size: int = INPUT_SIZE) -> Tensor:
    """Any-size images [B, 3, H, W] in [0, 1] -> [B, 3, size, size]."""
    if images.shape[-2:] != (size, size):
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return images.clamp(0, 1)


def _augment(images: Tensor, generator: torch.Generator) -> Tensor:
    """Blur, shifts, brightness, tint and noise: generated assets and diffusion samples are softer,
    less centred, noisier and sometimes tinted, unlike clean renders."""
    count, size = images.shape[0], images.shape[-1]
    blurred = F.avg_pool2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    blur = torch.rand(count, 1, 1, 1, generator=generator)
    images = images + blur * (blurred - images)
    shift = torch.randint(-3, 4, (2,), generator=generator).tolist()
    padded = F.pad(images, (3, 3, 3, 3), mode="replicate")
    images = padded[..., 3 + shift[0]:3 + shift[0] + size, 3 + shift[1]:3 + shift[1] + size]
    gain = 0.85 + 0.3 * torch.rand(count, 1, 1, 1, generator=generator)
    tint = 0.08 * (2 * torch.rand(count, 3, 1, 1, generator=generator) - 1)
    noise = 0.1 * torch.rand(count, 1, 1, 1, generator=generator) * torch.randn(images.shape, generator=generator)
    return (images * gain + tint + noise).clamp(0, 1)


def train_classifier(model: ShapeColourNet, images: Tensor, shapes: Tensor, colours: Tensor, steps: int,
                     batch_size: int, learning_rate: float, seed: int, progress=None) -> ShapeColourNet:
    """Cross-entropy on both heads over augmented batches of `images` [N, 3, S, S] labelled `shapes`,
    `colours` [N], with a one-cycle learning rate; `seed` draws the batches and their augmentation."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, learning_rate, total_steps=steps)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        batch = torch.randint(len(images), (batch_size,), generator=generator)
        shape_logits, colour_logits = model(_augment(images[batch], generator))
        loss = F.cross_entropy(shape_logits, shapes[batch]) + F.cross_entropy(colour_logits, colours[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if progress is not None:
            progress(loss=loss.item())
    return model.eval()


@dataclass
class EvaluatorTrainConfig:
    steps: int = 1500
    batch_size: int = 64
    learning_rate: float = 2e-3
    views_per_object: int = 32
    seed: int = 1000
    """seed of the training renders; tests use other seeds"""


def train_evaluator(config: EvaluatorTrainConfig, progress=None) -> ShapeColourNet:
    data = render_objects(config.seed, config.views_per_object, stack_views=0, resolution=INPUT_SIZE)
    torch.manual_seed(config.seed)  # the initial weights
    return train_classifier(ShapeColourNet(), data.images, data.shape[:, 0], data.colour[:, 0], config.steps,
                            config.batch_size, config.learning_rate, config.seed, progress)


@torch.no_grad()
def classify(model: ShapeColourNet, images: Tensor) -> tuple[Tensor, Tensor]:
    """Predicted shape and colour indices [B] each."""
    shape_logits, colour_logits = model(prepare(images, model.input_size))
    return shape_logits.argmax(dim=-1), colour_logits.argmax(dim=-1)


def accuracy(model: ShapeColourNet, data: ObjectImages) -> dict:
    shapes, colours = classify(model, data.images)
    return {"shape": (shapes == data.shape[:, 0]).float().mean().item(),
            "colour": (colours == data.colour[:, 0]).float().mean().item(),
            "both": ((shapes == data.shape[:, 0]) & (colours == data.colour[:, 0])).float().mean().item()}


def save_classifier(model: ShapeColourNet, path: str | Path, kind: str, shapes, colours, metrics: dict) -> None:
    """Weights and the class names they were trained for, with `metrics` in the header."""
    tensors = {name: value for name, value in model.state_dict().items() if value.is_floating_point()}
    write_tensors(path, tensors, {"kind": kind, "shapes": list(shapes), "colours": list(colours),
                                  "input_size": model.input_size, "metrics": metrics})


def load_classifier(path: str | Path, kind: str, shapes, colours) -> ShapeColourNet:
    """A classifier saved by `save_classifier`; one error line when it is missing or was trained for other names."""
    if not Path(path).exists():
        raise FieldkitError(f"no {kind} at {path}; rebuild it with `python -m fieldkit.prior.build_{kind}`")
    tensors, header = read_tensors(path)
    if header.get("kind") != kind or header["shapes"] != list(shapes) or header["colours"] != list(colours):
        raise FieldkitError(f"{path} is not a {kind} for this vocabulary; rebuild it")
    model = ShapeColourNet(shapes=len(shapes), colours=len(colours), input_size=header.get("input_size", INPUT_SIZE))
    model.load_state_dict(tensors, strict=False)
    return model.eval()


def save_evaluator(model: ShapeColourNet, path: str | Path, metrics: dict) -> None:
    save_classifier(model, path, "evaluator", SHAPES, COLOUR_NAMES, metrics)


def load_evaluator(path: str | Path = EVALUATOR_PATH) -> ShapeColourNet:
    return load_classifier(path, "evaluator", SHAPES, COLOUR_NAMES)


def score_images(images: Tensor, prompt: str, model: ShapeColourNet | None = None) -> dict:
    """Fractions of views [N, 3, H, W] classified as the prompt's shape, colour, and both."""
    shape, colour = parse_single(normalise(prompt, frozenset(WORDS)))
    model = load_evaluator() if model is None else model
    shapes, colours = classify(model, images.to(next(model.parameters()).device))  # renders may be on a GPU
    shape_hit, colour_hit = shapes == SHAPES.index(shape), colours == COLOUR_NAMES.index(colour)
    return {"shape": shape_hit.float().mean().item(), "colour": colour_hit.float().mean().item(),
            "fidelity": (shape_hit & colour_hit).float().mean().item(), "views": int(images.shape[0])}
