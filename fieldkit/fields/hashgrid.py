"""Instant-NGP: multiresolution hash grid + a small MLP to the geometry vector.

Backend "torch" is fieldkit's own grid: the native kernel (cuda/hash_encoding.h) wherever it is
built, its vectorised torch reference otherwise; the two share one table layout, so an asset
moves freely between them. tinycudann's fused encoding runs only when asked for (`--set
backend=tinycudann`, or `tcnn`): an importable package must not change what a default run trains.
The backend is stored in the asset's config, because the two lay out their tables differently.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from fieldkit.errors import FieldkitError
from fieldkit.fields.base import GEOMETRY_FEATURES, GeometryVectorField, mlp
from fieldkit.fields.encodings import HashEncoding


@dataclass
class HashGridConfig:
    levels: int = 16
    """number of resolution levels"""
    features_per_level: int = 2
    """features stored per table entry"""
    log2_table_size: int = 17
    """log2 of the entries per level (instant-ngp uses 19)"""
    base_resolution: int = 16
    """coarsest grid resolution"""
    max_resolution: int = 512
    """finest grid resolution"""
    hidden_width: int = 64
    """width of the density MLP"""
    colour_width: int = 64
    """width of the colour head"""
    learning_rate: float = 1e-2
    """Adam learning rate"""
    backend: str = "torch"
    """hash-grid implementation: torch (fieldkit's, native where built) or tinycudann (alias tcnn; needs CUDA)"""


PRESETS = {"cpu": HashGridConfig(), "gpu": HashGridConfig(log2_table_size=19, max_resolution=2048)}


def resolve_backend(requested: str) -> str:
    """The backend a grid is built with: torch unless tinycudann is named (assets written with
    "auto" by older fieldkits were resolved before they were saved)."""
    requested = {"tcnn": "tinycudann", "auto": "torch"}.get(requested, requested)
    if requested not in ("torch", "tinycudann"):
        raise FieldkitError(f"unknown hash-grid backend '{requested}'; choose torch or tinycudann (tcnn)")
    has_tcnn = importlib.util.find_spec("tinycudann") is not None and torch.cuda.is_available()
    if requested == "tinycudann" and not has_tcnn:
        raise FieldkitError("this hash grid needs tinycudann with CUDA (pip install it from its repository), "
                            "or retrain with --set backend=torch")
    return requested


class _TinyCudaHashEncoding(nn.Module):
    """tinycudann's fused hash encoding with the same hyper-parameters."""

    def __init__(self, config: HashGridConfig):
        super().__init__()
        import tinycudann

        growth = (config.max_resolution / config.base_resolution) ** (1 / max(config.levels - 1, 1))
        self.encoding = tinycudann.Encoding(3, {
            "otype": "HashGrid", "n_levels": config.levels, "n_features_per_level": config.features_per_level,
            "log2_hashmap_size": config.log2_table_size, "base_resolution": config.base_resolution,
            "per_level_scale": growth})
        self.output_dim = config.levels * config.features_per_level

    def forward(self, x: Tensor) -> Tensor:
        return self.encoding(x).float()


class HashGridField(GeometryVectorField):
    architecture = "hashgrid"
    presets = PRESETS  # the config each preset names (cpu, gpu)
    config_class = HashGridConfig

    def __init__(self, config: HashGridConfig, aabb: Tensor):
        backend = resolve_backend(config.backend)
        config = HashGridConfig(**{**config.__dict__, "backend": backend})
        super().__init__(config, aabb)
        if backend == "tinycudann":
            self.grid = _TinyCudaHashEncoding(config)
        else:
            self.grid = HashEncoding(config.levels, config.features_per_level, config.log2_table_size,
                                     config.base_resolution, config.max_resolution)
        self.geometry_mlp = mlp(self.grid.output_dim, config.hidden_width, 1, 1 + GEOMETRY_FEATURES)

    def encode(self, unit_points: Tensor) -> tuple[Tensor, Tensor]:
        encoding = self.grid(unit_points)
        return encoding, self.geometry_mlp(encoding)
