"""Instant-NGP: multiresolution hash grid + a small MLP to the geometry vector.

The grid is vectorised torch; when tinycudann is importable and the field is on CUDA its
fused encoding is used instead (same parameters layout is not shared, so assets record
which backend trained them)."""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

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


PRESETS = {"cpu": HashGridConfig(), "gpu": HashGridConfig(log2_table_size=19, max_resolution=2048)}


class HashGridField(GeometryVectorField):
    architecture = "hashgrid"
    config_class = HashGridConfig

    def __init__(self, config: HashGridConfig, aabb: Tensor):
        super().__init__(config, aabb)
        self.grid = HashEncoding(config.levels, config.features_per_level, config.log2_table_size,
                                 config.base_resolution, config.max_resolution)
        self.geometry_mlp = mlp(self.grid.output_dim, config.hidden_width, 1, 1 + GEOMETRY_FEATURES)

    def encode(self, unit_points: Tensor) -> tuple[Tensor, Tensor]:
        encoding = self.grid(unit_points)
        return encoding, self.geometry_mlp(encoding)
