"""`fieldkit train`: fits a field to posed images, with resumable checkpoints.

A run directory holds run.json (what was asked), checkpoint.safetensors (model + optimiser
state, written atomically every few seconds), and at the end field.safetensors and
metrics.json. Rerunning the same command in the same directory resumes.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from fieldkit.atomic import write_text
from fieldkit.data import Dataset, load_dataset
from fieldkit.errors import FieldkitError
from fieldkit.fields import make_config, make_field
from fieldkit.io import load_model_tensors, model_tensors, read_tensors, save_field, write_tensors, field_header
from fieldkit.metrics import mse_to_psnr, psnr, ssim
from fieldkit.progress import progress_bar
from fieldkit.radiance import RadianceField
from fieldkit.render.occupancy import OccupancyGrid

ASSET_NAME = "field.safetensors"
CHECKPOINT_NAME = "checkpoint.safetensors"
RUN_NAME = "run.json"
METRICS_NAME = "metrics.json"

# per architecture: steps that meet its quality target on the default scene on a 2-core CPU,
# and ray-marching density (an MLP sample costs most, and its smooth field needs fewer)
DEFAULT_STEPS = {"hashgrid": 600, "mlp": 1800, "tensorf-vm": 1500, "tensorf-cp": 2000, "voxels": 1200}
DEFAULT_SAMPLES_PER_DIAGONAL = {"hashgrid": 256, "mlp": 128, "tensorf-vm": 256, "tensorf-cp": 256, "voxels": 256}


@dataclass
class TrainConfig:
    steps: int = 0
    """optimisation steps (0: the architecture's default)"""
    batch_rays: int = 4096
    """rays per step"""
    samples_per_diagonal: int = 0
    """ray-marching steps across the bounding-box diagonal (0: the architecture's default)"""
    occupancy_resolution: int = 64
    """cells per axis of the occupancy grid"""
    occupancy_every: int = 16
    """steps between occupancy-grid updates"""
    eval_every: int = 500
    """steps between test-PSNR reports (on a few test views)"""
    checkpoint_seconds: float = 30.0
    """seconds between checkpoints"""
    final_lr_fraction: float = 0.1
    """learning rate at the last step, as a fraction of the first"""
    downscale: float = 1.0
    """divide image resolution by this"""
    seed: int = 0
    """random seed"""
    preset: str = "cpu"
    """architecture preset: cpu or gpu"""


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
        if self.path.exists() and any(self.path.iterdir()):
            raise FieldkitError(f"{self.path} is not empty and holds no fieldkit run; choose another --out")
        self.path.mkdir(parents=True, exist_ok=True)
        write_text(run_file, json.dumps(request, indent=2))
        return False


@torch.no_grad()
def evaluate(model: RadianceField, dataset: Dataset, views: list[int] | None = None) -> dict:
    """Mean per-image PSNR and SSIM over test views (the NeRF convention)."""
    views = list(range(len(dataset))) if views is None else views
    model.eval()
    psnrs, ssims = [], []
    for index in views:
        image = model.render(dataset.cameras[index]).rgb[0].clamp(0, 1)
        psnrs.append(psnr(image, dataset.images[index]))
        ssims.append(ssim(image, dataset.images[index]))
    model.train()
    return {"psnr": sum(psnrs) / len(psnrs), "ssim": sum(ssims) / len(ssims)}


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
    generator.set_state(tensors["rng"])
    return header["step"], header["seconds"]


def make_trainer(source: str, architecture: str, out: str | Path, config: TrainConfig,
                 overrides: dict | None = None) -> "Trainer":
    """The trainer for an architecture: splats have their own, every field shares `Trainer`."""
    if architecture == "gaussians":
        from fieldkit.gaussians.trainer import SplatTrainer  # it imports this module: import it late

        return SplatTrainer(source, out, config, overrides)
    return Trainer(source, architecture, out, config, overrides)


PROBE_VIEWS = 4  # test views of a periodic probe, spread over the test split


def probe_views(dataset: Dataset) -> list[int]:
    """The indices of `PROBE_VIEWS` test views spread over `dataset`, for cheap periodic scores."""
    return list(range(0, len(dataset), max(len(dataset) // PROBE_VIEWS, 1)))[:PROBE_VIEWS]


def first_time_reaching(history: list[tuple[int, float, float]], target: float) -> float | None:
    """Optimisation seconds at the first (step, seconds, PSNR) probe at or above `target`; None if never."""
    return next((seconds for _, seconds, psnr in history if psnr >= target), None)


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
        """How far the run is, in [0, 1]: by steps, or by seconds when that is further along."""
        fraction = self.step / max(self.steps, 1)
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
            factor *= min(1.0, (progress + 1 / max(self.steps, 1)) / self.warmup)
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
        every few seconds and on Ctrl-C."""
        self.load_checkpoint()
        self.model.train()
        last_checkpoint = time.monotonic()
        with progress_bar(description, self.steps, self.step) as advance:
            try:
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
                    if time.monotonic() - last_checkpoint > self.config.checkpoint_seconds:
                        self.save_checkpoint()
                        last_checkpoint = time.monotonic()
            except KeyboardInterrupt:
                self.save_checkpoint()
                raise

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


class Trainer(ResumableRun):
    def __init__(self, source: str, architecture: str, out: str | Path, config: TrainConfig,
                 field_overrides: dict | None = None):
        self.config = config
        self.run = RunDirectory(out)
        field_config = make_config(architecture, config.preset, field_overrides)
        self.steps = config.steps or DEFAULT_STEPS[architecture]
        self.train_set = load_dataset(source, "train", downscale=config.downscale)
        self.test_set = load_dataset(source, "test", downscale=config.downscale)
        request = {"source": str(source), "architecture": architecture, "field_config": asdict(field_config),
                   "train_config": asdict(config)}
        self.resuming = self.run.claim(request)
        aabb = self.train_set.aabb
        samples = config.samples_per_diagonal or DEFAULT_SAMPLES_PER_DIAGONAL[architecture]
        step_size = float((aabb[1] - aabb[0]).norm()) / samples
        torch.manual_seed(config.seed)  # parameter initialisation
        self.model = RadianceField(make_field(architecture, aabb, field_config),
                                   OccupancyGrid(aabb, config.occupancy_resolution), step_size,
                                   self.train_set.background)
        self.model.dataset = {"name": self.train_set.name, "source": self.train_set.source,
                              "train_views": len(self.train_set), "test_views": len(self.test_set)}
        self.optimizer = torch.optim.Adam(self.model.field.optimizer_groups(), eps=1e-15)
        self.base_lrs = [group["lr"] for group in self.optimizer.param_groups]
        self.generator = torch.Generator().manual_seed(config.seed)
        self.step, self.seconds = 0, 0.0
        self.rgb, self.camera_index, self.pixel_x, self.pixel_y = self.train_set.pixels()

    # -- optimisation --------------------------------------------------------------------
    def train_step(self) -> float:
        batch = torch.randint(0, self.rgb.shape[0], (self.config.batch_rays,), generator=self.generator)
        origins, directions = self.train_set.cameras.generate_rays(
            self.camera_index[batch], self.pixel_x[batch], self.pixel_y[batch])
        jitter = torch.rand(batch.shape[0], generator=self.generator)
        output = self.model.render_rays(origins, directions, jitter=jitter)
        mse = (output.rgb - self.rgb[batch]).square().mean()
        self.apply_gradients(mse + self.model.field.regularization(self.generator))
        return mse.item()

    def after_step(self) -> None:
        """Occupancy-grid updates, every `occupancy_every` steps."""
        if self.step % self.config.occupancy_every == 0:
            self.update_occupancy()

    def update_occupancy(self) -> None:
        # every cell while the field takes shape, then a random quarter per update (instant-ngp)
        fraction = 1.0 if self.step < 256 else 0.25
        self.model.update_occupancy(fraction, self.generator)

    def run_training(self, on_eval=None) -> dict:
        """Trains to the last step; `on_eval(step, seconds, psnr)` sees every periodic test score."""
        finished = self.finished_metrics()
        if finished is not None:
            return finished
        self._on_eval = on_eval
        self._eval_views = probe_views(self.test_set)
        self._status = {"psnr_test": float("nan"), "ssim_test": float("nan")}

        def step() -> dict:
            mse = self.train_step()
            return {"loss": mse, "psnr_train": mse_to_psnr(mse)}

        self.optimise(f"train {self.model.architecture}", step)
        return self.finish()

    def report(self) -> dict:
        """Test PSNR/SSIM on a few views every `eval_every` steps."""
        if self.step % self.config.eval_every == 0:
            scores = evaluate(self.model, self.test_set, self._eval_views)
            self._status = {"psnr_test": scores["psnr"], "ssim_test": scores["ssim"]}
            if self._on_eval is not None:
                self._on_eval(self.step, self.seconds, scores["psnr"])
        return self._status

    def finish(self) -> dict:
        scores = evaluate(self.model, self.test_set)
        metrics = {"psnr_test": scores["psnr"], "ssim_test": scores["ssim"], "seconds": self.seconds,
                   "steps": self.step, "architecture": self.model.architecture,
                   "parameters": sum(p.numel() for p in self.model.field.parameters()),
                   "occupied_fraction": self.model.grid.occupied_fraction()}
        return self.write_results(metrics)

