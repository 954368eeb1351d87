"""Run machinery shared by `train`, `convert`, `generate` and `prior train`: a run directory
that holds one run, atomic resumable checkpoints, and the interruptible optimisation loop.

A run directory holds run.json (what was asked), checkpoint.safetensors (written atomically every
few seconds and on Ctrl-C), and at the end the asset and metrics.json. Rerunning the same command
in the same directory resumes.
"""
from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from pathlib import Path

import torch

from fieldkit.asset_file import read_tensors, write_tensors
from fieldkit.atomic import output_directory, write_text
from fieldkit.devices import restore_generator
from fieldkit.errors import FieldkitError
from fieldkit.io import field_header, load_model_tensors, model_tensors, save_field
from fieldkit.progress import progress_bar
from fieldkit.radiance import RadianceField

ASSET_NAME = "field.safetensors"
CHECKPOINT_NAME = "checkpoint.safetensors"
RUN_NAME = "run.json"
METRICS_NAME = "metrics.json"


class RunDirectory:
    """The files of one training run and the rule that a directory holds one run only."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def file(self, name: str) -> Path:
        return self.path / name

    def claim(self, request: dict) -> bool:
        """Records the request, or checks it matches the recorded one. True when resuming."""
        run_file = self.file(RUN_NAME)
        if run_file.exists():
            try:
                recorded = json.loads(run_file.read_text())
            except json.JSONDecodeError:
                raise FieldkitError(f"{run_file} is corrupt; remove {self.path} or choose another --out") from None
            if recorded != request:
                changed = sorted(key for key in set(recorded) | set(request) if recorded.get(key) != request.get(key))
                raise FieldkitError(f"{self.path} holds another run (different {', '.join(changed)}); "
                                    "choose another --out or rerun that run's command")
            return True
        if self.path.is_dir() and any(self.path.iterdir()):
            raise FieldkitError(f"{self.path} is not empty and holds no fieldkit run; choose another --out")
        output_directory(self.path)
        write_text(run_file, json.dumps(request, indent=2))
        return False


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """The optimiser's per-parameter state as flat checkpoint tensors (optimizer.INDEX.KEY)."""
    return {f"optimizer.{index}.{key}": torch.as_tensor(value)
            for index, state in optimizer.state_dict()["state"].items() for key, value in state.items()}


def load_optimizer_tensors(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    """Restores the state that `optimizer_tensors` wrote; other tensors are ignored."""
    state = optimizer.state_dict()
    indices = {int(name.split(".")[1]) for name in tensors if name.startswith("optimizer.")}
    state["state"] = {index: {name.split(".", 2)[2]: value for name, value in tensors.items()
                              if name.startswith(f"optimizer.{index}.")} for index in indices}
    optimizer.load_state_dict(state)


def write_checkpoint(path: Path, model: RadianceField, optimizer: torch.optim.Optimizer,
                     generator: torch.Generator, step: int, seconds: float) -> None:
    """Model, optimiser state and random state, written atomically: what a resumed run needs."""
    tensors = model_tensors(model) | optimizer_tensors(optimizer)
    tensors["rng"] = generator.get_state()
    header = field_header(model) | {"kind": "checkpoint", "step": step, "seconds": seconds}
    write_tensors(path, tensors, header)


def read_checkpoint(path: Path, model: RadianceField, optimizer: torch.optim.Optimizer,
                    generator: torch.Generator) -> tuple[int, float]:
    """Restores what `write_checkpoint` wrote -> (step, seconds)."""
    tensors, header = read_tensors(path)
    load_model_tensors(model, tensors, path)
    load_optimizer_tensors(optimizer, tensors)
    restore_generator(generator, tensors["rng"], path)
    return header["step"], header["seconds"]


@contextlib.contextmanager
def interrupts_between_steps():
    """Yields `interrupted() -> bool`. A first Ctrl-C only raises that flag, so the loop can finish
    its step and checkpoint a consistent state; a second one interrupts at once (the last periodic
    checkpoint then stands). Outside the main thread, where Python delivers no signals, it never
    raises the flag."""
    caught = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield caught.is_set
        return

    def on_interrupt(signum, frame):
        if caught.is_set():
            raise KeyboardInterrupt
        caught.set()

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield caught.is_set
    finally:
        signal.signal(signal.SIGINT, previous)


class ResumableRun:
    """What `train` and `convert` share: a run directory, an optimiser whose learning rate
    decays over `steps` (or `time_budget`), a seeded generator, atomic checkpoints and the
    interruptible loop.

    Subclasses set run, config (with checkpoint_seconds and final_lr_fraction), model,
    optimizer, base_lrs, generator, steps, step and seconds, and implement `finish`.
    """

    asset_name = ASSET_NAME
    max_gradient_norm: float | None = None
    """Gradients are clipped to this norm when set."""
    warmup: float = 0.0
    """Fraction of the run over which the learning rate rises linearly to its schedule (0: none)."""
    step_callback = None
    """`callback(step, figures)` after every step when set (the live viewer watches through it)."""
    time_budget: float | None = None
    """Optimisation seconds after which the run ends, when set: its schedule then follows whichever
    of steps and seconds is further along, so a slow machine gets a whole run of fewer steps."""

    def progress(self) -> float:
        """How far the run is, in [0, 1]: by steps, or by seconds when that is further along (a run
        with a time budget and no step count goes by seconds alone)."""
        fraction = self.step / max(self.steps, 1) if self.steps is not None else 0.0
        if self.time_budget is not None:
            fraction = max(fraction, self.seconds / max(self.time_budget, 1e-9))
        return min(fraction, 1.0)

    def finished_metrics(self) -> dict | None:
        """The metrics of a run that already completed in this directory."""
        if self.run.file(METRICS_NAME).exists() and self.run.file(self.asset_name).exists():
            return json.loads(self.run.file(METRICS_NAME).read_text())
        return None

    def save_checkpoint(self) -> None:
        write_checkpoint(self.run.file(CHECKPOINT_NAME), self.model, self.optimizer, self.generator,
                         self.step, self.seconds)

    def load_checkpoint(self) -> None:
        path = self.run.file(CHECKPOINT_NAME)
        if path.exists():
            self.step, self.seconds = read_checkpoint(path, self.model, self.optimizer, self.generator)

    nan_advice = "try a lower learning rate with --set learning_rate=..."
    """What the NaN error line suggests."""

    def check_finite(self, loss: torch.Tensor, what: str = "loss") -> None:
        """NaN or inf stops the run with one line; the last checkpoint stays."""
        if not torch.isfinite(loss):
            raise FieldkitError(f"{what} became {loss.item()} at step {self.step} ({self.nan_advice}); "
                                f"the last good checkpoint is kept in {self.run.path}")

    def apply_gradients(self, loss: torch.Tensor, what: str = "loss") -> None:
        """One optimiser step on `loss` at this step's learning rate; NaN stops the run."""
        self.check_finite(loss, what)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.max_gradient_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.max_gradient_norm)
        progress = self.progress()
        factor = self.config.final_lr_fraction ** progress
        if self.warmup > 0:
            first_step = 1 / max(self.steps, 1) if self.steps is not None else 0.0  # so step 0 moves too
            factor *= min(1.0, (progress + first_step) / self.warmup)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * factor
        self.optimizer.step()

    def after_step(self) -> None:
        """Work between optimisation steps, once `self.step` has advanced (timed with the step)."""

    def report(self) -> dict:
        """Figures for the progress line after a step (not timed: evaluation goes here)."""
        return {}

    def optimise(self, description: str, step_fn) -> None:
        """Calls `step_fn() -> figures` up to `self.steps` (or `self.time_budget`), checkpointing
        every few seconds and, on Ctrl-C, after the step under way: a resumed run then continues
        exactly where an uninterrupted one would be."""
        self.load_checkpoint()
        self.model.train()
        last_checkpoint = time.monotonic()
        with progress_bar(description, self.steps, self.step) as advance, interrupts_between_steps() as interrupted:
            while self.progress() < 1:
                started = time.perf_counter()
                figures = step_fn()
                self.step += 1
                self.after_step()
                self.seconds += time.perf_counter() - started
                figures = figures | self.report()
                advance(**figures)
                if self.step_callback is not None:
                    self.step_callback(self.step, figures)
                if interrupted():
                    self.save_checkpoint()
                    raise KeyboardInterrupt
                if time.monotonic() - last_checkpoint > self.config.checkpoint_seconds:
                    self.save_checkpoint()
                    last_checkpoint = time.monotonic()

    def save_asset(self) -> None:
        save_field(self.model, self.run.file(self.asset_name))

    def write_results(self, metrics: dict) -> dict:
        """The asset and metrics.json (a run counts as finished once both exist), then the
        checkpoint is no longer needed."""
        self.model.metrics = metrics
        self.save_asset()
        write_text(self.run.file(METRICS_NAME), json.dumps(metrics, indent=2))
        self.run.file(CHECKPOINT_NAME).unlink(missing_ok=True)
        return metrics
