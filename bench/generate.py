"""Text-to-3D benchmark: wall time, geometry against the ground truth, prompt fidelity and
foreground saturation of every guidance on every representation with the built-in prior on CPU,
and the seconds per optimisation step at Stable-Diffusion-2.1-base size (random weights built
from its configs: real compute, no download).

    python bench/generate.py [--prior DIR] [--reps gaussians field] [--guidances sds bsd bsd-auto vsd]
                             [--prompts N | --one-per-shape] [--baseline] [--steps N] [--guidance-scale S]
                             [--sd-steps N] [--skip-sd] [--seeds 0 1 2] [--workers N] [--runs DIR]
                             [--section NAME] [--device cpu] [--out bench/results/generate.json]

Every run uses `fieldkit generate`'s defaults unless an option overrides them. Geometry
(`fieldkit.generate.geometry`): silhouette IoU, depth error, stray coverage and colour distance
against the prompt's ground-truth shape over elevations 0-80, after fitting scale and turn.
`--baseline` adds the initial splat ball of every prompt (guidance "initial", no step taken), the
row a trained asset has to beat. Fidelity is the built-in evaluator's score of 8 turntable views;
the judge's (`fieldkit.prior.judge`) is the share of 96 views from elevations -10 to 65 on grey
and dark backgrounds it names as the prompt; saturation is the mean HSV saturation of the pixels
the object covers. `--judge-only` adds the judge's figures to a stored section's runs from their
saved assets in `--runs`, for sweeps measured before the judge existed.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from fieldkit.atomic import write_text
from fieldkit.batch import Job, run_batch
from fieldkit.generate.commands import prompt_directory
from fieldkit.generate.config import GUIDANCES, REPRESENTATIONS, GenerateConfig
from fieldkit.guidance.prior import Prior, load_prior
from fieldkit.prior.vocabulary import single_prompts
from provenance import measured


def quality_rows(prior: Prior, prior_path: str | None, reps: list[str], guidances: list[str], prompts: list[str],
                 seeds: list[int], config: GenerateConfig, workers: int, folder: Path) -> list[dict]:
    """One run per (representation, guidance, prompt, seed). The trained runs are `fieldkit generate`
    jobs of one `fieldkit batch` in `folder` (Ray with `workers` at once, or one by one), so a stopped
    sweep rerun with the same folder only runs what did not finish; the initial ball's rows are
    measured here, since no verb writes an asset that took no step."""
    trained = [guidance for guidance in guidances if guidance != INITIAL]
    jobs = {job_name(rep, guidance, prompt, seed): (rep, guidance, prompt, seed)
            for rep in reps for guidance in trained for prompt in prompts for seed in seeds}
    options = [*(["--prior", prior_path] if prior_path else []),
               *(["--steps", str(config.steps)] if config.steps else []),
               *(["--guidance-scale", str(config.guidance_scale)] if config.guidance_scale else [])]
    batch = run_batch([Job(name, ("generate", prompt, "--rep", rep, "--guidance", guidance, "--seed", str(seed),
                                  *options, "--out", str(folder / name)))
                       for name, (rep, guidance, prompt, seed) in jobs.items()], folder, workers)
    load = list(os.getloadavg())  # at the batch's end: its jobs ran in other processes
    rows = []
    for name in jobs:
        outcome = batch.outcomes.get(name)
        if outcome is None:
            print(f"{name}: not run")
        elif outcome.status == "done" and outcome.metrics:
            rows.append(outcome.metrics | {"wall_seconds": outcome.seconds, "measured": measured(),
                                           "workers": workers, "load": load})
        else:
            print(f"{name}: {outcome.status} {outcome.error or ''}")
    if INITIAL in guidances:
        for rep, prompt, seed in itertools.product(reps, prompts, seeds):
            with tempfile.TemporaryDirectory() as out:
                rows.append(initial_metrics(prompt, out, replace(config, rep=rep, seed=seed), prior)
                            | {"wall_seconds": 0.0, "measured": measured(), "load": list(os.getloadavg())})
    return rows


def job_name(rep: str, guidance: str, prompt: str, seed: int) -> str:
    return f"{rep}-{guidance}-seed{seed}-{prompt_directory(prompt)}"


INITIAL = "initial"
"""The guidance name of the baseline rows: the splats a run starts from, before any step."""


def initial_metrics(prompt: str, out: str, config: GenerateConfig, prior: Prior) -> dict:
    """metrics.json's figures of the initial splat ball of a run (seeded as the run would be)."""
    from fieldkit.generate.api import make_run
    from fieldkit.generate.outputs import evaluate

    run = make_run(prompt, out, config, prior)
    run.model.eval()
    return {"prompt": run.prompt, "rep": config.rep, "guidance": INITIAL, "guidance_scale": None, "steps": 0,
            "seconds": 0.0, "seed": config.seed} | evaluate(run.model, run.prompt) | run.geometry() | \
        run.representation_metrics()


def add_judge(rows: list[dict], folder: Path, prior: Prior, config: GenerateConfig) -> list[dict]:
    """`rows` with the judge's figures: a trained run's from its asset saved in `folder`, the
    initial ball's rebuilt as its run would seed it."""
    from fieldkit.generate.api import make_run
    from fieldkit.generate.outputs import judge
    from fieldkit.io import load

    judged = []
    for row in rows:
        if row["guidance"] == INITIAL:
            with tempfile.TemporaryDirectory() as out:
                asset = make_run(row["prompt"], out, replace(config, rep=row["rep"], seed=row["seed"]), prior).model
        else:
            pattern = f"{row['rep']}-{row['guidance']}-seed{row['seed']}-*{prompt_directory(row['prompt'])}"
            runs = list(folder.glob(pattern))
            if len(runs) != 1:
                raise SystemExit(f"no single run of {pattern} in {folder}")
            asset = load(next(runs[0].glob("*.safetensors")))
        asset.eval()
        judged.append(row | judge(asset, row["prompt"]))
    return judged


def merged_sections(sections: dict[str, dict]) -> dict:
    """One section from several sweeps' sections: their runs, one summary, when each was measured."""
    rows = [row for section in sections.values() for row in section["runs"]]
    latest = max((section["measured"] for section in sections.values()), key=lambda entry: entry["date"])
    first = next(iter(sections.values()))
    merged = {"machine": first["machine"], "measured": latest, "prior": first["prior"], "runs": rows,
              "summary": summary(rows), "workers": first["workers"],
              "sweep_wall_seconds": sum(section["sweep_wall_seconds"] for section in sections.values()),
              "merged_from": {source: measured for name, section in sections.items()
                              for source, measured in section.get("merged_from", {name: section["measured"]}).items()}}
    judged = [section["judged"] for section in sections.values() if "judged" in section]
    return merged | ({"judged": max(judged, key=lambda entry: entry["date"])} if judged else {})


def one_per_shape(prompts: list[str]) -> list[str]:
    """One prompt of each shape, each in another colour ("a red cube", "an orange sphere" ...)."""
    from fieldkit.prior.vocabulary import COLOURS, SHAPES

    return [f"a {colour} {shape}" for shape, colour in zip(SHAPES, COLOURS)]


def summary(rows: list[dict]) -> list[dict]:
    """Means per (representation, guidance), measured when its latest run was."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["rep"], row["guidance"]), []).append(row)

    def mean(values):
        values = [value for value in values if value is not None]
        return sum(values) / len(values) if values else None

    def geometry(group, name):
        return mean((row.get("geometry") or {}).get(name) for row in group)

    return [{"rep": rep, "guidance": guidance, "prompts": len({row["prompt"] for row in group}), "guidance_scale": group[0]["guidance_scale"],
             "steps": group[0]["steps"], "wall_seconds": mean(row["wall_seconds"] for row in group),
             "max_wall_seconds": max(row["wall_seconds"] for row in group),
             "iou": geometry(group, "iou"), "min_iou": min(((row.get("geometry") or {}).get("iou", 1.0)
                                                            for row in group), default=None),
             "stray": geometry(group, "stray"), "depth_error": geometry(group, "depth_error"),
             "colour_distance": geometry(group, "colour_distance"),
             "fidelity": mean(row["fidelity"] for row in group), "shape": mean(row["fidelity_shape"] for row in group),
             "judge": mean(row.get("judge") for row in group),
             "judge_interval": seed_interval(group, lambda row: row.get("judge")),
             "colour": mean(row["fidelity_colour"] for row in group),
             "saturation": mean(row["saturation"] for row in group),
             "seeds": len({row["seed"] for row in group}),
             "iou_interval": seed_interval(group, lambda row: (row.get("geometry") or {}).get("iou")),
             "fidelity_interval": seed_interval(group, lambda row: row["fidelity"]),
             "measured": max((row["measured"] for row in group if "measured" in row), key=lambda entry: entry["date"],
                             default=None)} for (rep, guidance), group in groups.items()]


def seed_interval(group: list[dict], figure) -> float | None:
    """Half-width of the 95% t-interval of the sweep's mean over its seeds (each seed's mean over
    the prompts is one sample), or None with one seed."""
    from scipy.stats import t

    per_seed: dict[int, list[float]] = {}
    for row in group:
        if figure(row) is not None:
            per_seed.setdefault(row["seed"], []).append(figure(row))
    means = [sum(values) / len(values) for values in per_seed.values()]
    if len(means) < 2:
        return None
    return float(t.ppf(0.975, len(means) - 1) * statistics.stdev(means) / len(means) ** 0.5)


def _figure(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_table(groups: list[dict]) -> None:
    print(f"{'rep':<10} {'guidance':<8} {'prompts':>7} {'steps':>5} {'CFG':>5} {'seconds':>8} {'IoU':>6} {'±':>5} "
          f"{'stray':>6} {'depth':>6} {'colour':>6} {'fidelity':>8} {'judge':>6} {'saturation':>10}")
    for g in groups:
        scale = "-" if g["guidance_scale"] is None else f"{g['guidance_scale']:g}"
        print(f"{g['rep']:<10} {g['guidance']:<8} {g['prompts']:>7} {g['steps']:>5} {scale:>5} "
              f"{_figure(g['wall_seconds'], 0):>8} {_figure(g.get('iou')):>6} "
              f"{_figure(g.get('iou_interval')):>5} {_figure(g.get('stray')):>6} "
              f"{_figure(g.get('depth_error')):>6} {_figure(g.get('colour_distance')):>6} "
              f"{_figure(g['fidelity']):>8} {_figure(g.get('judge')):>6} {_figure(g['saturation']):>10}")


# -- Stable Diffusion 2.1 base, from its published configs, with random weights ---------------

def sd21_base_prior(device: str, narrow: int = 1) -> Prior:
    """SD 2.1 base's UNet, VAE and OpenCLIP-H text encoder at full size, random weights (built on
    `device`: initialising a billion weights on the CPU takes a minute). `narrow` divides every
    width, for a quick run of the same code on the CPU. The tokenizer is a letter-level CLIP
    tokenizer: tokenization costs nothing next to the networks."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    with torch.device(device):
        unet = UNet2DConditionModel(
            sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
            block_out_channels=tuple(width // narrow for width in (320, 640, 1280, 1280)),
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, cross_attention_dim=1024 // narrow,
            attention_head_dim=(5, 10, 20, 20), use_linear_projection=True, norm_num_groups=32 // narrow)
        vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=768,
                            block_out_channels=tuple(width // narrow for width in (128, 256, 512, 512)),
                            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                            scaling_factor=0.18215, norm_num_groups=32 // narrow)
        text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=1024 // narrow,
                                                    intermediate_size=4096 // narrow,
                                                    num_hidden_layers=23 // narrow, num_attention_heads=16 // narrow,
                                                    max_position_embeddings=77, hidden_act="gelu", projection_dim=512))
    scheduler = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                              prediction_type="epsilon", clip_sample=False)
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    for module in (unet, vae, text_encoder):
        module.to(device, dtype).eval().requires_grad_(False)
    return Prior(unet, text_encoder, _letter_tokenizer(), scheduler, vae, "random-weight SD 2.1 base", None)


def _letter_tokenizer():
    from transformers import CLIPTokenizer

    directory = Path(tempfile.mkdtemp())
    letters = [chr(code) for code in range(ord("a"), ord("z") + 1)] + [","]
    tokens = ["<|startoftext|>", "<|endoftext|>"] + letters + [letter + "</w>" for letter in letters]
    (directory / "vocab.json").write_text(json.dumps({token: index for index, token in enumerate(tokens)}))
    (directory / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"), model_max_length=77)


def sd_step_seconds(device: str, guidance: str, steps: int, resolution: int | None = None, narrow: int = 1) -> dict:
    """Seconds per optimisation step of splats guided by the SD-2.1-size prior (after one warm-up
    step), at `resolution` px renders (None: the Stable Diffusion profile's)."""
    prior = sd21_base_prior(device, narrow)
    config = GenerateConfig(guidance=guidance, steps=steps + 1, turntable_frames=2, turntable_resolution=32,
                            preview_every=10**6, checkpoint_seconds=1e9, resolution=resolution)
    with tempfile.TemporaryDirectory() as out:
        from fieldkit.generate.api import make_run

        run = make_run("a red cube", out, config, prior)
        times = []
        for _ in range(steps + 1):
            started = time.perf_counter()
            run.train_step()
            run.step += 1
            times.append(time.perf_counter() - started)
    return {"guidance": guidance, "device": device, "resolution": prior.resolution,
            "render_resolution": run.config.render_resolution, "guidance_scale": run.config.scale,
            "seconds_per_step": sum(times[1:]) / steps, "warmup_seconds": times[0], "final_loss": run.history[-1]["loss"],
            "measured": measured()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", default=None, help="built-in prior directory (default: the shipped one)")
    parser.add_argument("--reps", nargs="+", default=list(REPRESENTATIONS), choices=REPRESENTATIONS)
    parser.add_argument("--guidances", nargs="+", default=["sds", "bsd"], choices=GUIDANCES)
    parser.add_argument("--baseline", action="store_true", help="add the initial splat ball's rows (guidance 'initial')")
    parser.add_argument("--prompts", type=int, default=0, help="the first N single-object prompts (0: all 36)")
    parser.add_argument("--one-per-shape", action="store_true", help="six prompts, one of each shape")
    parser.add_argument("--only", nargs="+", metavar="PROMPT", help="these prompts instead")
    parser.add_argument("--steps", type=int, default=0, help="steps per run (0: the default)")
    parser.add_argument("--guidance-scale", type=float, default=0.0, help="CFG for every loss (0: each loss's default)")
    parser.add_argument("--sd-steps", type=int, default=2, help="timed steps at SD-2.1 size")
    parser.add_argument("--sd-guidances", nargs="+", default=["sds"], choices=GUIDANCES)
    parser.add_argument("--skip-sd", action="store_true", help="leave out the SD-2.1-size timing")
    parser.add_argument("--skip-quality", action="store_true", help="only the SD-2.1-size timing")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds of every run (intervals need 2+)")
    parser.add_argument("--workers", type=int, default=1, help="runs at once, as `fieldkit batch` jobs on Ray")
    parser.add_argument("--runs", type=Path, default=None,
                        help="the batch's directory (default: a new temporary one); rerun with it to finish a stopped "
                             "sweep")
    parser.add_argument("--section", help="store the runs as this section of --out, keeping the file's other "
                                          "sections (each section keeps its own `measured`)")
    parser.add_argument("--merge", nargs="+", metavar="SECTION",
                        help="replace these stored sections of --out by one, --section, whose summary pools their runs "
                             "(seeds run apart then share one interval)")
    parser.add_argument("--judge-only", action="store_true",
                        help="add the judge's figures to --section's stored runs from their assets in --runs")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "generate.json"))
    args = parser.parse_args()

    if args.merge:
        if not args.section:
            parser.error("--merge needs --section")
        results = json.loads(Path(args.out).read_text())
        results[args.section] = merged_sections({name: results.pop(name) for name in args.merge})
        print_table(results[args.section]["summary"])
        write_text(args.out, json.dumps(results, indent=2))
        return
    if args.judge_only:
        if not (args.section and args.runs):
            parser.error("--judge-only needs --section and --runs")
        results = json.loads(Path(args.out).read_text())
        section = results[args.section]
        rows = add_judge(section["runs"], args.runs, load_prior(args.prior, args.device), GenerateConfig())
        results[args.section] = section | {"runs": rows, "summary": summary(rows), "judged": measured()}
        print_table(results[args.section]["summary"])
        write_text(args.out, json.dumps(results, indent=2))
        return

    results = {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                           "torch": torch.__version__, "threads": torch.get_num_threads()}, "measured": measured()}
    if not args.skip_quality:
        prior = load_prior(args.prior, args.device)
        prompts = args.only or (one_per_shape(single_prompts()) if args.one_per_shape else
                                single_prompts()[:args.prompts or None])
        config = GenerateConfig(steps=args.steps or None, guidance_scale=args.guidance_scale or None)

        guidances = ([INITIAL] if args.baseline else []) + args.guidances
        folder = args.runs or Path(tempfile.mkdtemp(prefix="fieldkit-bench-generate-"))
        started = time.perf_counter()
        rows = quality_rows(prior, args.prior, args.reps, guidances, prompts, args.seeds, config, args.workers, folder)
        results |= {"prior": prior.source, "runs": rows, "summary": summary(rows), "workers": args.workers,
                    "sweep_wall_seconds": time.perf_counter() - started}
        print_table(results["summary"])
        if args.section:
            kept = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
            results = kept | {args.section: results}
    if not args.skip_sd:
        results["sd21_base_step"] = [sd_step_seconds(args.device, guidance, args.sd_steps)
                                     for guidance in args.sd_guidances]
        for row in results["sd21_base_step"]:
            print(f"SD 2.1 base size ({row['resolution']} px, {row['device']}), {row['guidance']}: "
                  f"{row['seconds_per_step']:.2f} s per step")
    write_text(args.out, json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
