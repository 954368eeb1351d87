"""`fieldkit generate "PROMPT" --out DIR`: text-to-3D by score distillation."""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from fieldkit.devices import add_device_option
from fieldkit.errors import FieldkitError
from fieldkit.options import add_dataclass_options, config_argv, dataclass_from_args, number
from fieldkit.viewer.commands import add_live_options, check_live_address


def read_prompts(path: str) -> list[str]:
    """One prompt per non-empty line; '#' starts a comment line."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as error:
        raise FieldkitError(f"cannot read --prompts {path}: {error.strerror}") from None
    prompts = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not prompts:
        raise FieldkitError(f"--prompts {path} holds no prompt (one per line)")
    return prompts


def prompt_directory(prompt: str) -> str:
    """A file-system-safe directory name for a prompt ("a red cube" -> "a_red_cube")."""
    return "_".join(re.findall(r"[a-z0-9]+", prompt.lower()))[:80] or "prompt"


def _report(metrics: dict, out: Path) -> None:
    fidelity = "" if metrics.get("fidelity") is None else f", prompt fidelity {metrics['fidelity']:.3f}"
    if metrics.get("judge") is not None:
        fidelity += f", judge {metrics['judge']:.3f}"
    loss = "" if metrics.get("final_loss") is None else f", final loss {metrics['final_loss']:.4g}"
    print(f"{metrics['prompt']!r}: {metrics['steps']} steps in {metrics['seconds']:.0f} s{loss}{fidelity}; "
          f"wrote {out}")


def _quiet_model_loading() -> None:
    """Loading a prior prints per-file progress bars and an `accelerate` hint: noise on the terminal."""
    import diffusers
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.set_verbosity_error()


def cmd_generate(args) -> int:
    from fieldkit.devices import resolve_device
    from fieldkit.guidance.prior import load_prior

    from .api import make_run
    from .config import GenerateConfig

    if (args.prompt is None) == (args.prompts is None):
        raise FieldkitError('give one prompt ("a red cube") or --prompts FILE, not both')
    config = dataclass_from_args(GenerateConfig, args)
    check_live_address(args)
    prompts = read_prompts(args.prompts) if args.prompts else [args.prompt]
    _quiet_model_loading()
    prior = load_prior(args.prior, resolve_device(args.device))
    for prompt in prompts:  # fail on any bad prompt before the first run starts
        prior.normalise_prompt(prompt)
    out = Path(args.out)
    if args.workers is not None and args.workers > 1 and len(prompts) > 1:
        return _generate_as_batch(prompts, out, config, args)
    for prompt in prompts:
        directory = out / prompt_directory(prompt) if args.prompts else out
        run = make_run(prompt, directory, config, prior)
        if run.resuming:
            print(f"fieldkit: resuming the run in {directory}", file=sys.stderr)
        _report(_with_live_view(run, prompt, args) if args.view else run.generate(), directory)
    return 0


def _generate_as_batch(prompts: list[str], out: Path, config, args: argparse.Namespace) -> int:
    """One `fieldkit batch` job a prompt, `--workers` at once, each in OUT/PROMPT as without workers."""
    from fieldkit.batch import Job, run_batch

    common = [*(["--prior", args.prior] if args.prior else []), "--device", args.device, *config_argv(config)]
    jobs = [Job(prompt_directory(prompt), ("generate", prompt, *common, "--out", str(out / prompt_directory(prompt))))
            for prompt in prompts]
    batch = run_batch(jobs, out, args.workers)
    for job in jobs:
        outcome = batch.outcomes[job.name]
        if outcome.status == "done":
            _report(outcome.metrics, out / job.name)
        else:
            print(f"fieldkit: {job.argv[1]!r} failed: {outcome.error}", file=sys.stderr)
    return 0 if all(batch.outcomes[job.name].status == "done" for job in jobs) else 1


def _with_live_view(run, prompt: str, args: argparse.Namespace) -> dict:
    """Runs with the browser viewer showing the model as it forms."""
    from fieldkit.viewer.live import LiveView

    view = LiveView(title=prompt, host=args.view_host, port=args.view_port)
    print(f"fieldkit: live view at {view.start(run.model)}", file=sys.stderr)
    run.live_view = view
    try:
        return run.generate()
    finally:
        view.close()


def add_verbs(verbs: argparse._SubParsersAction) -> None:

    from .config import GenerateConfig

    parser = verbs.add_parser("generate", help="text-to-3D: distil a diffusion prior into splats or a field",
                              description="Generates a 3D asset from a text prompt by score distillation (SDS, BSD, "
                                          "VSD). With no --prior it uses fieldkit's built-in prior (a closed "
                                          "vocabulary of coloured shapes, CPU-sized).")
    parser.add_argument("prompt", nargs="?", help='what to generate, e.g. "a red cube"')
    parser.add_argument("--out", required=True, help="run directory (rerun the same command to resume); with "
                                                      "--prompts, one subdirectory per prompt")
    parser.add_argument("--prompts", help="a text file with one prompt per line: one asset each")
    parser.add_argument("--workers", type=number(int, 1), default=None,
                        help="with --prompts: prompts generated at once, as `fieldkit batch` jobs (default: 1)")
    parser.add_argument("--prior", default=None,
                        help="diffusers Stable Diffusion 1.x/2.x directory or hub id (default: the built-in prior)")
    add_device_option(parser)  # cuda runs the prior in fp16
    add_live_options(parser)
    add_dataclass_options(parser, GenerateConfig)
    parser.set_defaults(run=cmd_generate)
