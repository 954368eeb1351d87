"""`fieldkit train --arch gaussians`: fits splats to posed images, as 3DGS does, on the field
trainer's run contract (run directory, progress, periodic test scores, atomic resumable
checkpoints, metrics.json); only the model, the step and the checkpoint contents differ.

Each step renders one whole training view and takes 3DGS's loss, (1 - w) L1 + w (1 - SSIM),
with w = 0.2: on CPU the SSIM (an 11x11 separable blur of five maps) costs little next to the
rasterizer. Between steps, densification changes the splat count (fieldkit.gaussians.densify).
The run writes splats.safetensors (the fieldkit asset), splats.ply (for other 3DGS tools) and
splats.glb (for glTF viewers).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from fieldkit.data import Dataset, load_dataset
from fieldkit.defaults import resolve_train
from fieldkit.devices import make_generator, resolve_device, restore_generator
from fieldkit.errors import FieldkitError
from fieldkit.options import parse_setting
from fieldkit.gaussians.asset import (
    save_splats_asset,
    splat_tensors,
    splats_from_tensors,
    splats_header,
)
from fieldkit.gaussians.densify import (
    DensifyConfig,
    ScreenGradientStats,
    densify_and_prune,
    reset_opacities,
)
from fieldkit.gaussians.initialise import random_points, splats_from_points
from fieldkit.gaussians.model import MAX_SH_DEGREE, PARAMETER_NAMES, Splats
from fieldkit.gaussians.gltf import write_glb
from fieldkit.gaussians.ply import read_point_cloud, write_ply
from fieldkit.asset_file import read_tensors, write_tensors
from fieldkit.metrics import structural_similarity
from fieldkit.fitting import PhotoRun, TrainConfig
from fieldkit.runs import CHECKPOINT_NAME, RunDirectory, load_optimizer_tensors, optimizer_tensors

ASSET_NAME = "splats.safetensors"
PLY_NAME = "splats.ply"
GLB_NAME = "splats.glb"  # glTF viewers' splats (KHR_gaussian_splatting), or points where unsupported
# 3DGS's scene extent: the radius of the camera centres around their mean, plus 10%
EXTENT_MARGIN = 1.1


@dataclass
class SplatConfig:
    initial_splats: int = 10000
    """splats placed at random in the scene bounds at the start (when the dataset has no point cloud)"""
    initial_opacity: float = 0.1
    """opacity of every initial splat"""
    sh_degree: int = 3
    """highest spherical-harmonic degree of the colour"""
    sh_degree_every: int = 1000
    """steps between raising the active SH degree by one band"""
    means_lr: float = 1.6e-4
    """learning rate of the centres, times the scene extent; it decays to final_lr_fraction of itself"""
    log_scales_lr: float = 5e-3
    """learning rate of the log-scales"""
    quaternions_lr: float = 1e-3
    """learning rate of the rotations"""
    opacity_logits_lr: float = 5e-2
    """learning rate of the opacity logits"""
    sh_dc_lr: float = 2.5e-3
    """learning rate of the constant colour"""
    sh_rest_lr: float = 1.25e-4
    """learning rate of the view-dependent colour (3DGS: the constant colour's over 20)"""
    ssim_weight: float = 0.2
    """weight of 1 - SSIM in the loss; the rest is L1"""


def _with_overrides(configs: list, overrides: dict[str, str]) -> list:
    """Each config with the overrides (name -> text) that name one of its fields applied."""
    known = {field.name: index for index, config in enumerate(configs) for field in dataclasses.fields(config)}
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise FieldkitError(f"gaussians has no setting '{unknown[0]}'; settings: {', '.join(known)}")
    for name, value in overrides.items():
        config = configs[known[name]]
        configs[known[name]] = dataclasses.replace(config, **{name: parse_setting(name, value, getattr(config, name))})
    return configs


def scene_extent(camera_positions: torch.Tensor) -> float:  # [C, 3]
    centre = camera_positions.mean(dim=0)
    return EXTENT_MARGIN * float((camera_positions - centre).norm(dim=-1).max())


class SplatTrainer(PhotoRun):
    """Trains splats with `PhotoRun.run_training`'s loop; TrainConfig's ray-marching and
    occupancy settings (batch_rays, samples_per_diagonal, occupancy_*, preset) do not apply."""

    asset_name = ASSET_NAME

    def __init__(self, source: str, out: str | Path, config: TrainConfig, overrides: dict | None = None,
                 device: str | torch.device = "cpu"):
        train_set = load_dataset(source, "train", downscale=config.downscale)
        test_set = load_dataset(source, "test", downscale=config.downscale)
        # read before the run directory is claimed: a bad file leaves nothing behind
        cloud = train_set.point_cloud
        self.point_cloud = read_point_cloud(cloud) if isinstance(cloud, Path) else cloud
        self.prepare(out, config, overrides, {"source": str(source)}, lambda: (train_set, test_set), device)

    def prepare(self, out: str | Path, config: TrainConfig, overrides: dict | None, request: dict,
                datasets: Callable[[], tuple[Dataset, Dataset]], device: str | torch.device = "cpu") -> None:
        """Claims the run directory for `request`, then gets the (train, test) datasets and the
        initial splats on `device`; `datasets` runs only once the directory is known to be this run's."""
        self.device = resolve_device(device)
        self.run = RunDirectory(out)
        self.splat_config, self.densify = _with_overrides([SplatConfig(), DensifyConfig()], overrides or {})
        if not 0 <= self.splat_config.sh_degree <= MAX_SH_DEGREE:
            raise FieldkitError(f"sh_degree must be 0 to {MAX_SH_DEGREE}, got {self.splat_config.sh_degree}")
        self.config = config = resolve_train(config, "gaussians")
        self.steps = config.steps
        self.settings = {"splat_config": asdict(self.splat_config), "densify_config": asdict(self.densify),
                         "train_config": asdict(config)}
        request = request | {"architecture": "gaussians"} | self.settings
        self.resuming = self.run.claim(request)
        self.train_set, self.test_set = (dataset.to(self.device) for dataset in datasets())
        self.extent = scene_extent(self.train_set.cameras.positions)
        self.generator = make_generator(config.seed, self.device)
        self.model = self.initial_splats().to(self.device)
        self.model.dataset = {"name": self.train_set.name, "source": self.train_set.source,
                              "train_views": len(self.train_set), "test_views": len(self.test_set)}
        self._start_optimizer()
        self.step, self.seconds = 0, 0.0

    def initial_splats(self) -> Splats:
        """The dataset's point cloud when it has one (3DGS starts from COLMAP's points), else
        `initial_splats` random points in the scene bounds; random colours where none are given."""
        if self.point_cloud is not None:
            points, colours = (None if value is None else value.to(self.device) for value in self.point_cloud)
        else:
            points, colours = random_points(self.train_set.aabb, self.splat_config.initial_splats, self.generator), None
        if colours is None:
            colours = torch.rand(len(points), 3, generator=self.generator, device=self.device)
        return splats_from_points(points, colours, self.splat_config.initial_opacity, self.splat_config.sh_degree,
                                  self.train_set.background)

    def _start_optimizer(self) -> None:
        rates = {name: getattr(self.splat_config, f"{name}_lr") for name in PARAMETER_NAMES}
        rates["means"] *= self.extent
        self.optimizer = torch.optim.Adam([{"params": [getattr(self.model, name)], "lr": rates[name], "name": name}
                                           for name in PARAMETER_NAMES], eps=1e-15)
        self.means_lr = rates["means"]
        self.stats = ScreenGradientStats(len(self.model), self.device)

    # -- checkpoints ---------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        tensors = splat_tensors(self.model) | optimizer_tensors(self.optimizer) | {
            "densify.grad_norm_sum": self.stats.grad_norm_sum, "densify.visible_count": self.stats.visible_count,
            "rng": self.generator.get_state()}
        header = splats_header(self.model) | {"kind": "checkpoint", "step": self.step, "seconds": self.seconds}
        write_tensors(self.run.file(CHECKPOINT_NAME), tensors, header)

    def load_checkpoint(self) -> None:
        path = self.run.file(CHECKPOINT_NAME)
        if not path.exists():
            return
        tensors, header = read_tensors(path)
        # the checkpoint holds as many splats as densification had made: rebuild to that count
        self.model = splats_from_tensors(tensors, header, path).to(self.device)
        self._start_optimizer()
        load_optimizer_tensors(self.optimizer, tensors)
        self.stats.grad_norm_sum, self.stats.visible_count = tensors["densify.grad_norm_sum"].to(self.device), \
            tensors["densify.visible_count"].to(self.device)
        restore_generator(self.generator, tensors["rng"], path)
        self.step, self.seconds = header["step"], header["seconds"]

    # -- optimisation --------------------------------------------------------------------
    def train_step(self) -> float:
        self.model.active_sh_degree = min(self.step // self.splat_config.sh_degree_every, self.model.sh_degree)
        index = int(torch.randint(0, len(self.train_set), (1,), generator=self.generator, device=self.device))
        camera, target = self.train_set.cameras[index], self.train_set.images[index]
        output = self.model.render(camera)
        image = output.rgb[0]  # [H, W, 3]
        weight = self.splat_config.ssim_weight
        loss = (1 - weight) * (image - target).abs().mean() + weight * (1 - structural_similarity(image, target))
        self.check_finite(loss)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if output.means2d.grad is not None:  # None when no splat reached a pixel of this view
            self.stats.accumulate(output.means2d.grad, output.radii, int(camera.width[0]), int(camera.height[0]))
        self.optimizer.param_groups[0]["lr"] = self.means_lr * self.config.final_lr_fraction ** self.progress()
        self.optimizer.step()
        return float((image.detach() - target).square().mean())

    def after_step(self) -> None:
        if self.densify.refines_at(self.step):
            densify_and_prune(self.model, self.optimizer, self.stats, self.densify, self.extent,
                              prune_large=self.step > self.densify.reset_every, generator=self.generator)
            self.stats = ScreenGradientStats(len(self.model), self.device)
        if self.densify.resets_at(self.step, self.steps):
            reset_opacities(self.model, self.optimizer, self.densify.reset_opacity)

    def model_metrics(self) -> dict:
        return {"splats": len(self.model)}

    def save_asset(self) -> None:
        # the .ply first: a run counts as finished once the asset and metrics.json exist
        write_ply(self.model, self.run.file(PLY_NAME))
        write_glb(self.model, self.run.file(GLB_NAME))
        save_splats_asset(self.model, self.run.file(ASSET_NAME))
