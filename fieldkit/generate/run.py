"""One text-to-3D run: a representation optimised by a score-distillation loss from a prior,
on the run contract of `fieldkit train` (run directory, resumable atomic checkpoints, NaN stop,
Ctrl-C checkpoint, asset + metrics.json at the end).

Each step renders random views from the prior's own camera distribution, shades them and puts
them on a background, and lets the guidance loss turn the prior's opinion into gradients.
Representations differ only in how they are built, rendered and checkpointed: `fields.py` and
`splats.py`.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from fieldkit.devices import make_generator
from fieldkit.errors import FieldkitError
from fieldkit.generate.config import BUILTIN_PROFILE, GenerateConfig, profile_of
from fieldkit.generate.outputs import (
    evaluate,
    render_turntable,
    write_preview,
    write_turntable,
)
from fieldkit.generate.shading import Renders, shaded_images
from fieldkit.generate.views import random_views
from fieldkit.guidance.base import Guidance
from fieldkit.guidance.prior import Prior
from fieldkit.guidance.prompts import PromptProcessor
from fieldkit.asset_file import read_tensors, write_tensors
from fieldkit.runs import CHECKPOINT_NAME, ResumableRun, RunDirectory

GUIDANCE_CHECKPOINT_NAME = "guidance_checkpoint.safetensors"
PREVIEW_NAME = "preview.png"
FINAL_LOSS_STEPS = 20
"""metrics.json's final loss is the mean over this many last steps (one step's loss is noisy)."""


def make_guidance(config: GenerateConfig, prior: Prior) -> Guidance:
    from fieldkit.guidance.bsd import BSD
    from fieldkit.guidance.sds import SDS
    from fieldkit.guidance.vsd import VSD

    if config.guidance == "vsd":
        return VSD(prior, config.scale, config.weighting, config.lora_rank, config.lora_learning_rate)
    if config.guidance in ("bsd", "bsd-auto"):
        return BSD(prior, config.scale, "auto" if config.guidance == "bsd-auto" else "standard")
    return SDS(prior, config.scale, config.weighting)


class GenerationRun(ResumableRun):
    """Subclasses implement `build` (model, optimizer, base_lrs) and `render(cameras) -> Renders`."""

    nan_advice = "try a lower --learning-rate-scale or --guidance-scale"
    live_view = None
    """Something with `update(step, figures, model=...)` called after every step (the viewer's LiveView,
    which throttles itself)."""

    def __init__(self, prompt: str, out: str | Path, config: GenerateConfig, prior: Prior):
        self.prior, self.run, self.profile = prior, RunDirectory(out), profile_of(prior)
        self.prompt = prior.normalise_prompt(prompt)  # bad prompts fail before any file is written
        self.resuming = self.run.claim({"prompt": self.prompt, "prior": prior.source, "config": asdict(config)})
        # what the user left to the default is the prior's profile's (metrics.json records the result)
        self.config = config = config.resolved(self.profile)
        self.steps = config.total_steps
        torch.manual_seed(config.seed)  # parameter initialisation, the LoRA's included
        self.device = prior.device  # the representation is built and optimised where the prior runs
        self.generator = make_generator(config.seed, self.device)  # views, noise and timesteps are drawn there
        self.prompts = PromptProcessor.build(prior, self.prompt, config.negative_prompt, config.view_prompts,
                                             config.perp_neg)
        self.schedule = config.timestep_schedule()
        self.build()
        self.guidance = make_guidance(config, prior)
        self.step, self.seconds, self.history = 0, 0.0, []

    def build(self) -> None:
        raise NotImplementedError

    def render(self, cameras) -> Renders:
        raise NotImplementedError

    def regularisation(self, renders: Renders) -> torch.Tensor | float:
        """A loss added to the guidance's on this step's renders (splats: alpha entropy)."""
        return 0.0

    def after_gradients(self) -> None:
        """Work that needs this step's gradients (splats: densification statistics)."""

    # -- optimisation --------------------------------------------------------------------
    def train_step(self) -> dict:
        # the splat rasterizer culls NaN splats, so a NaN parameter need not show in the loss
        self.check_finite(sum(parameter.detach().sum() for parameter in self.model.parameters()), "a parameter")
        views = random_views(self.config.views_per_step, self.config.render_resolution,
                             self.config.random_background, self.generator, self.config.camera_ranges())
        renders = self.render(views.cameras)
        images = shaded_images(renders, views.cameras, views.background, self.config.lambertian,
                               self.config.textureless, self.generator)
        timesteps = self.schedule.sample(len(views.cameras), self.step, self.steps, self.prior.num_train_timesteps,
                                         self.generator).to(self.prior.device)
        condition = self.prompts.condition(views.azimuth, views.elevation)
        output = self.guidance(images.to(self.prior.device), timesteps, condition,
                               views.cameras.c2w.to(self.prior.device), self.generator)
        if not output.loss.requires_grad:
            raise FieldkitError(f"the {self.config.rep} became empty at step {self.step} (no view sees anything); "
                                "try another --seed or a lower --learning-rate-scale")
        regularisation = self.regularisation(renders)
        self.apply_gradients(output.loss + regularisation)
        self.after_gradients()
        figures = {"loss": float(output.loss.detach()), **output.figures}
        if isinstance(regularisation, torch.Tensor):
            figures["regularisation"] = float(regularisation.detach())
        self.history.append(figures)
        return figures

    def report(self) -> dict:
        """Refreshes the preview image and the live view (not timed)."""
        if self.step % self.config.preview_every == 0 or self.step == self.steps:
            write_preview(self.model, self.run.file(PREVIEW_NAME), self.config.render_resolution)
        if self.live_view is not None:
            self.live_view.update(self.step, self.history[-1] if self.history else {}, model=self.model)
        return {}

    def generate(self) -> dict:
        """Runs (or resumes) to the last step and writes the results; a finished run returns its metrics."""
        finished = self.finished_metrics()
        if finished is not None:
            return finished
        self.optimise(f"generate {self.config.rep} {self.config.guidance}", self.train_step)
        return self.finish()

    # -- checkpoints: the representation's, plus whatever the guidance trains (VSD's LoRA) --
    def save_checkpoint(self) -> None:
        state = self.guidance.state_tensors()
        if state:
            write_tensors(self.run.file(GUIDANCE_CHECKPOINT_NAME), state, {"format_version": 1, "kind": "checkpoint"})
        super().save_checkpoint()

    def load_checkpoint(self) -> None:
        super().load_checkpoint()
        path = self.run.file(GUIDANCE_CHECKPOINT_NAME)
        if self.run.file(CHECKPOINT_NAME).exists() and path.exists():
            self.guidance.load_state_tensors(read_tensors(path)[0])

    # -- results -------------------------------------------------------------------------
    def finish(self) -> dict:
        self.model.eval()
        frames, _ = render_turntable(self.model, self.config.turntable_frames, self.config.turntable_resolution)
        write_turntable(frames, self.run.file(f"turntable.{self.config.turntable_format}"))
        metrics = {"prompt": self.prompt, "prior": self.prior.source, "rep": self.config.rep,
                   "guidance": self.config.guidance, "guidance_scale": self.config.scale, "seed": self.config.seed,
                   "seconds": self.seconds, "steps": self.step, "final_loss": self.mean_figure("loss", last=True)}
        for name in ("lora_loss", "lora_ratio"):  # VSD: the LoRA's loss, and its ratio to the prior's, should fall
            if self.history and name in self.history[0]:
                metrics |= {f"{name}_start": self.mean_figure(name, last=False),
                            f"{name}_end": self.mean_figure(name, last=True)}
        metrics |= {"profile": self.profile.name, "settings": asdict(self.config)}
        return self.write_results(metrics | self.fidelity() | self.geometry() | self.representation_metrics())

    def fidelity(self) -> dict:
        """The built-in evaluator and the judge know the built-in prior's world only: they score nothing else."""
        if self.profile is not BUILTIN_PROFILE:
            return {"fidelity": None, "judge": None,
                    "fidelity_note": f"not scored: the built-in evaluator and judge know the built-in "
                                     f"prior's world only, not {self.prior.source}'s"} | \
                evaluate(self.model, self.prompt, score=False)
        return evaluate(self.model, self.prompt)

    def geometry(self) -> dict:
        """Geometry against the ground truth (`geometry.py`): only the built-in world has one."""
        from fieldkit.generate.geometry import geometry_metrics, truth_pieces

        if not self.config.geometry_metrics:
            return {"geometry": None, "geometry_note": "not measured (--no-geometry-metrics)"}
        if self.prior.closed_vocabulary is None:
            return {"geometry": None, "geometry_note": "no ground truth: only the built-in prior's world has one"}
        try:
            truth_pieces(self.prompt)
        except FieldkitError as error:
            return {"geometry": None, "geometry_note": f"no ground truth: {error}"}
        return {"geometry": geometry_metrics(self.model, self.prompt)}

    def mean_figure(self, name: str, last: bool) -> float | None:
        """The mean of a figure over the last (or first) FINAL_LOSS_STEPS steps this process ran."""
        window = self.history[-FINAL_LOSS_STEPS:] if last else self.history[:FINAL_LOSS_STEPS]
        return sum(figures[name] for figures in window) / len(window) if window else None

    def representation_metrics(self) -> dict:
        return {}

    def write_results(self, metrics: dict) -> dict:
        metrics = super().write_results(metrics)
        self.run.file(GUIDANCE_CHECKPOINT_NAME).unlink(missing_ok=True)
        return metrics
