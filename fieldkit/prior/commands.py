"""`fieldkit prior train|sample` and `fieldkit eval-prompt`."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from fieldkit.atomic import output_directory
from fieldkit.devices import add_device_option, resolve_device
from fieldkit.options import add_dataclass_options, dataclass_from_args, number


def cmd_prior_train(args) -> int:
    from .training import PriorTrainConfig, PriorTrainer

    metrics = PriorTrainer(args.out, dataclass_from_args(PriorTrainConfig, args)).finish()
    print(f"prior written to {Path(args.out) / 'prior'}: {metrics['steps']} steps in {metrics['seconds']:.0f} s, "
          f"final loss {metrics['final_loss']:.4f}")
    return 0


def cmd_prior_sample(args) -> int:
    from fieldkit.guidance.prior import load_prior
    from fieldkit.images import write_png

    from .sampling import sample_images

    prior = load_prior(args.prior, resolve_device(args.device))
    images = sample_images(prior, args.prompt, args.n, args.guidance_scale, args.steps, args.seed)
    out = output_directory(args.out)
    stem = "_".join(prior.normalise_prompt(args.prompt).split())[:60] or "sample"
    for index, image in enumerate(images):
        write_png(out / f"{stem}_{index:02d}.png", image.permute(1, 2, 0))
    print(f"wrote {len(images)} images to {out}")
    return 0


def cmd_prior_export(args) -> int:
    from .training import export_checkpoint

    step = export_checkpoint(args.run_directory, args.out)
    print(f"wrote the averaged weights of step {step} to {args.out}")
    return 0


def cmd_eval_prompt(args) -> int:
    from .eval_prompt import evaluate_path

    scores = evaluate_path(args.path, args.prompt, args.views)
    print(json.dumps(scores) if args.json else
          f"prompt fidelity {scores['fidelity']:.3f} (shape {scores['shape']:.3f}, colour {scores['colour']:.3f}) "
          f"over {scores['views']} views; judge {scores['judge']:.3f} (shape {scores['judge_shape']:.3f}, colour "
          f"{scores['judge_colour']:.3f}, none of these {scores['judge_none']:.3f}) over {scores['judge_views']} views")
    return 0


def add_verbs(verbs: argparse._SubParsersAction) -> None:

    from .sampling import DEFAULT_GUIDANCE_SCALE, DEFAULT_SAMPLING_STEPS
    from .training import PriorTrainConfig

    prior = verbs.add_parser("prior", help="train or sample the built-in diffusion prior")
    actions = prior.add_subparsers(dest="action", required=True)
    train = actions.add_parser("train", help="train the built-in prior from scratch (resumable)")
    train.add_argument("--out", required=True, help="run directory (rerun the same command to resume)")
    add_dataclass_options(train, PriorTrainConfig)
    train.set_defaults(run=cmd_prior_train)

    sample = actions.add_parser("sample", help="sample images from a prior")
    sample.add_argument("prompt")
    sample.add_argument("--n", type=number(int, 1), default=8, help="number of images (default: 8)")
    sample.add_argument("--out", required=True, help="output directory for PNGs")
    sample.add_argument("--prior", default=None, help="diffusers pipeline directory or hub id (default: built-in)")
    sample.add_argument("--guidance-scale", type=number(float), default=DEFAULT_GUIDANCE_SCALE,
                        help=f"classifier-free guidance, diffusers convention (default: {DEFAULT_GUIDANCE_SCALE})")
    sample.add_argument("--steps", type=number(int, 1), default=DEFAULT_SAMPLING_STEPS, help="DDIM steps")
    sample.add_argument("--seed", type=number(int), default=0)
    add_device_option(sample)
    sample.set_defaults(run=cmd_prior_sample)

    export = actions.add_parser("export", help="write an unfinished run's latest averaged weights as a prior")
    export.add_argument("run_directory", metavar="RUN", help="a `prior train` run directory")
    export.add_argument("--out", required=True, help="pipeline directory to write")
    export.set_defaults(run=cmd_prior_export)

    evaluate = verbs.add_parser("eval-prompt", help="prompt fidelity of an asset's turntable or of images, "
                                                             "by the evaluator and the judge")
    evaluate.add_argument("path", help="an asset (field, splats), a directory of images, or one image")
    evaluate.add_argument("--prompt", required=True, help='a single-object prompt, e.g. "a red cube"')
    evaluate.add_argument("--views", type=number(int, 1), default=16, help="turntable views rendered from an asset (default: 16)")
    evaluate.add_argument("--json", action="store_true", help="print the scores as JSON")
    evaluate.set_defaults(run=cmd_eval_prompt)
