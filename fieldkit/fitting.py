"""Fitting a model to posed photos: what field and splat training share (the config, the
periodic test scores and the loop), on the run machinery of `fieldkit.runs`."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from fieldkit.data import Dataset
from fieldkit.defaults import TRAIN_BATCH_SAMPLES
from fieldkit.errors import FieldkitError
from fieldkit.metrics import mse_to_psnr, psnr, ssim
from fieldkit.ndc import SPACES
from fieldkit.options import check_numbers
from fieldkit.renderable import Renderable
from fieldkit.runs import ResumableRun


@dataclass
class TrainConfig:
    steps: int | None = None
    """optimisation steps (default for fields: the architecture's passes over the training pixels, see
    fieldkit/defaults.py; splats: 3000)"""
    max_seconds: float | None = None
    """end a field's training after this many seconds of optimisation, its learning rate decayed by then
    (default without --steps: 600, so a large capture does not run for hours on a CPU)"""
    batch_rays: int = 4096
    """rays per step (at most: a field's step renders only the rays whose samples fit in --batch-samples)"""
    batch_samples: int = TRAIN_BATCH_SAMPLES
    """occupied samples per field training step, at most (see fieldkit/defaults.py)"""
    samples_per_diagonal: int | None = None
    """ray-marching steps across the bounding-box diagonal (default: the architecture's)"""
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
    space: str = "auto"
    """where a field lives: ndc (a forward-facing capture's view from its near plane to infinity made a
    unit box, sampled evenly in disparity), box (world coordinates in the scene's bounds) or auto (ndc for a
    forward-facing LLFF capture, whose distant background would leave a world box mostly empty; box for
    everything else, splats included); recorded in the asset, so render, view and convert use it too"""

    def __post_init__(self):
        check_numbers(self, positive=("steps", "max_seconds", "batch_rays", "batch_samples", "samples_per_diagonal",
                                      "occupancy_resolution", "occupancy_every", "eval_every", "final_lr_fraction",
                                      "downscale"))
        if self.space not in SPACES:
            raise FieldkitError(f"unknown --space {self.space!r}; choose {', '.join(SPACES)}")


@torch.no_grad()
def evaluate(model: Renderable, dataset: Dataset, views: list[int] | None = None) -> dict:
    """Mean per-image PSNR and SSIM over test views (the NeRF convention)."""
    views = list(range(len(dataset))) if views is None else views
    model.eval()
    psnrs, ssims = [], []
    for index in views:
        image = model.render(dataset.cameras[index]).rgb[0].clamp(0, 1)
        target = dataset.images[index].to(image.device)
        psnrs.append(psnr(image, target))
        ssims.append(ssim(image, target))
    model.train()
    return {"psnr": sum(psnrs) / len(psnrs), "ssim": sum(ssims) / len(ssims)}


PROBE_VIEWS = 4  # test views of a periodic probe, spread over the test split


def probe_views(dataset: Dataset) -> list[int]:
    """The indices of `PROBE_VIEWS` test views spread over `dataset`, for cheap periodic scores."""
    return list(range(0, len(dataset), max(len(dataset) // PROBE_VIEWS, 1)))[:PROBE_VIEWS]


def first_time_reaching(history: list[tuple[int, float, float]], target: float) -> float | None:
    """Optimisation seconds at the first (step, seconds, PSNR) probe at or above `target`; None if never."""
    return next((seconds for _, seconds, psnr in history if psnr >= target), None)



class PhotoRun(ResumableRun):
    """Fits `self.model` to `self.train_set` one `train_step() -> mse` at a time, scoring a few
    test views every `eval_every` steps; subclasses build the model and implement `finish`."""

    def train_step(self) -> float:
        raise NotImplementedError

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

    def model_metrics(self) -> dict:
        """Figures of the trained model that only its kind has."""
        return {}

    def finish(self) -> dict:
        """Scores every test view and writes the results, with the settings the run used."""
        scores = evaluate(self.model, self.test_set)
        metrics = {"psnr_test": scores["psnr"], "ssim_test": scores["ssim"], "seconds": self.seconds,
                   "steps": self.step, "architecture": self.model.architecture,
                   "parameters": sum(parameter.numel() for parameter in self.model.parameters())}
        return self.write_results(metrics | self.model_metrics() | {"settings": self.settings})
