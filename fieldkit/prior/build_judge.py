"""Rebuilds the shipped judge: `python -m fieldkit.prior.build_judge [--out PATH] [--steps N]`.

Trains on images with one seed from the training elevations and stores, with the weights, its
accuracy on images with another seed from the held-out elevation bands (each band apart), next
to the evaluator's on the same images where the evaluator has a word for what they show.
"""
from __future__ import annotations

import argparse
import json

import torch

from fieldkit.progress import progress_bar

from .evaluator import classify, load_evaluator
from .judge import JUDGE_PATH, JUDGE_SIZE, JudgeTrainConfig, judge_accuracy, save_judge, train_judge
from .judge_data import HELD_OUT_ELEVATIONS, JUDGE_COLOURS, JUDGE_SHAPES, JudgeImages, render_judge_images

HELD_OUT_SEED = 2000
HELD_OUT_VIEWS = 16


def named_accuracy(model, data: JudgeImages) -> dict:
    """`model`'s shape accuracy on images of a vocabulary shape and colour accuracy on images of a
    palette colour: the images the evaluator, which has no "none", has a word for."""
    shapes, colours = classify(model, data.images)
    named_shape, named_colour = data.shape < JUDGE_SHAPES.index("none"), data.colour < JUDGE_COLOURS.index("none")
    return {"shape": (shapes == data.shape)[named_shape].float().mean().item(),
            "colour": (colours == data.colour)[named_colour].float().mean().item()}


def held_out_report(model, seed: int = HELD_OUT_SEED, views_per_object: int = HELD_OUT_VIEWS) -> dict:
    """Judge and evaluator accuracy on held-out elevations, overall and per band."""
    data = render_judge_images(seed, views_per_object, held_out=True, size=JUDGE_SIZE)
    bands = {f"{low:g} to {high:g}": judge_accuracy(model, data.subset((data.elevation >= low) & (data.elevation <= high)))
             for low, high in HELD_OUT_ELEVATIONS}
    return {"seed": seed, "judge": judge_accuracy(model, data), "judge_named": named_accuracy(model, data),
            "evaluator_named": named_accuracy(load_evaluator(), data),
            "bands": {band: {key: figures[key] for key in ("images", "shape", "colour", "both")}
                      for band, figures in bands.items()}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=str(JUDGE_PATH))
    parser.add_argument("--steps", type=int, default=JudgeTrainConfig.steps)
    args = parser.parse_args(argv)
    config = JudgeTrainConfig(steps=args.steps)
    with progress_bar("judge", config.steps) as advance:
        model = train_judge(config, advance)
    metrics = {"train": {"seed": config.seed, "steps": config.steps, "views_per_object": config.views_per_object},
               "held_out_elevations": held_out_report(model)}
    save_judge(model, args.out, metrics)
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
