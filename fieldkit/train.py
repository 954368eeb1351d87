"""`fieldkit train`: fits a field (or, through `make_trainer`, splats) to posed images, in a
resumable run directory (see `fieldkit.runs`)."""
from __future__ import annotations

import ctypes
import ctypes.util
import sys
from dataclasses import asdict, replace
from pathlib import Path

import torch

from fieldkit.data import load_dataset
from fieldkit.defaults import resolve_train
from fieldkit.fields import build_field, make_config
from fieldkit.devices import make_generator, resolve_device
from fieldkit.errors import FieldkitError
from fieldkit.fitting import PhotoRun, TrainConfig
from fieldkit.gaussians.trainer import SplatTrainer
from fieldkit.ndc import training_space
from fieldkit.radiance import RadianceField
from fieldkit.render.occupancy import OccupancyGrid
from fieldkit.runs import RunDirectory

SAMPLED_FRACTION = 0.25
"""Once the field has taken shape, each occupancy update re-evaluates this random fraction of the
cells (instant-ngp)."""

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc's mallopt parameters


def keep_freed_memory() -> None:
    """Makes glibc keep freed memory for reuse instead of returning it to the system.

    A training step allocates and frees hundreds of megabytes of tensors; glibc serves each block
    above 32 MB with its own mmap, so every step pays again for page faults on fresh memory, as
    much system time as the step's own work. The process's memory then stays at its peak.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(_M_MMAP_MAX, 0)
        libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    except (OSError, AttributeError):  # not glibc (musl has no mallopt): nothing to tune
        pass


def make_trainer(source: str, architecture: str, out: str | Path, config: TrainConfig,
                 overrides: dict | None = None, device: str | torch.device = "cpu") -> "Trainer":
    """The trainer for an architecture: splats have their own, every field shares `Trainer`."""
    if architecture == "gaussians":
        if config.space == "ndc":
            raise FieldkitError("--space ndc trains fields only: splats live in world coordinates (use --space box)")
        return SplatTrainer(source, out, config, overrides, device)
    return Trainer(source, architecture, out, config, overrides, device)


class Trainer(PhotoRun):
    def __init__(self, source: str, architecture: str, out: str | Path, config: TrainConfig,
                 field_overrides: dict | None = None, device: str | torch.device = "cpu"):
        device = resolve_device(device)
        keep_freed_memory()
        self.run = RunDirectory(out)
        field_config = make_config(architecture, config.preset, field_overrides)
        self.train_set = load_dataset(source, "train", downscale=config.downscale)
        self.test_set = load_dataset(source, "test", downscale=config.downscale)
        self.rgb, self.camera_index, self.pixel_x, self.pixel_y = self.train_set.pixels()
        space = training_space(config.space, self.train_set.cameras, self.train_set.nearest_bound)
        aabb = self.train_set.aabb if space is None else space.bounds(self.train_set.cameras)
        config = replace(config, space="box" if space is None else space.kind)
        self.config = config = resolve_train(config, architecture, self.rgb.shape[0])
        self.steps, self.time_budget = config.steps, config.max_seconds
        self.settings = {"train_config": asdict(config), "field_config": asdict(field_config)}
        step_size = float((aabb[1] - aabb[0]).norm()) / config.samples_per_diagonal
        torch.manual_seed(config.seed)  # parameter initialisation
        field = build_field(architecture, aabb, field_config)  # a config that cannot be built writes nothing
        request = {"source": str(source), "architecture": architecture} | self.settings
        self.resuming = self.run.claim(request)
        self.model = RadianceField(field, OccupancyGrid(aabb, config.occupancy_resolution), step_size,
                                   self.train_set.background, space).to(device)
        self.train_set, self.test_set = self.train_set.to(device), self.test_set.to(device)
        self.rgb, self.camera_index, self.pixel_x, self.pixel_y = (
            pixels.to(device) for pixels in (self.rgb, self.camera_index, self.pixel_x, self.pixel_y))
        self.model.dataset = {"name": self.train_set.name, "source": self.train_set.source,
                              "train_views": len(self.train_set), "test_views": len(self.test_set)}
        self.optimizer = torch.optim.Adam(self.model.field.optimizer_groups(), eps=1e-15)
        self.base_lrs = [group["lr"] for group in self.optimizer.param_groups]
        self.generator = make_generator(config.seed, device)
        self.step, self.seconds = 0, 0.0

    # -- optimisation --------------------------------------------------------------------
    def train_step(self) -> float:
        batch = torch.randint(0, self.rgb.shape[0], (self.config.batch_rays,), generator=self.generator,
                              device=self.generator.device)
        origins, directions = self.train_set.cameras.generate_rays(
            self.camera_index[batch], self.pixel_x[batch], self.pixel_y[batch])
        jitter = torch.rand(batch.shape[0], generator=self.generator, device=self.generator.device)
        output = self.model.render_rays(origins, directions, jitter=jitter, max_samples=self.config.batch_samples)
        mse = (output.rgb - self.rgb[batch[:output.rgb.shape[0]]]).square().mean()
        self.apply_gradients(mse + self.model.field.regularization(self.generator))
        return mse.item()

    def after_step(self) -> None:
        """Occupancy-grid updates, every `occupancy_every` steps."""
        if self.step % self.config.occupancy_every == 0:
            self.update_occupancy()

    def update_occupancy(self) -> None:
        """Every cell while the field is still faint, then a random SAMPLED_FRACTION per update.

        The field counts as faint while the grid's mean density is below the occupancy threshold
        (one step's worth of opacity): its cells are then judged against their mean, and a cell
        dropped by one update may be needed by the next; once the mean passes the threshold the
        cells are judged by opacity alone and change slowly. Read from the grid, so the rule holds
        whatever the scene's size and survives a resumed run.
        """
        grid = self.model.grid
        faint = float(grid.density.mean()) < grid.opacity_threshold / self.model.step_size
        self.model.update_occupancy(1.0 if faint else SAMPLED_FRACTION, self.generator)

    def model_metrics(self) -> dict:
        return {"occupied_fraction": self.model.grid.occupied_fraction()}
