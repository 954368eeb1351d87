"""The original NeRF architecture: positional encoding + a ReLU MLP (with a skip
connection into the middle layer) to the geometry vector."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from fieldkit.fields.base import GEOMETRY_FEATURES, GeometryVectorField
from fieldkit.fields.encodings import PositionalEncoding


@dataclass
class MLPConfig:
    frequencies: int = 8
    """positional-encoding frequencies for positions (NeRF uses 10)"""
    width: int = 128
    """hidden width (NeRF uses 256)"""
    depth: int = 4
    """hidden layers (NeRF uses 8)"""
    colour_width: int = 64
    """width of the colour head"""
    learning_rate: float = 5e-3
    """Adam learning rate"""


PRESETS = {"cpu": MLPConfig(), "gpu": MLPConfig(frequencies=10, width=256, depth=8, learning_rate=5e-4)}


class MLPField(GeometryVectorField):
    architecture = "mlp"
    presets = PRESETS  # the config each preset names (cpu, gpu)
    config_class = MLPConfig

    def __init__(self, config: MLPConfig, aabb: Tensor):
        super().__init__(config, aabb)
        self.encoding = PositionalEncoding(config.frequencies)
        self.skip_layer = config.depth // 2
        layers = []
        for index in range(config.depth):
            input_dim = self.encoding.output_dim if index == 0 else config.width
            if index == self.skip_layer and index > 0:
                input_dim += self.encoding.output_dim
            layers.append(nn.Linear(input_dim, config.width))
        self.layers = nn.ModuleList(layers)
        self.output = nn.Linear(config.width, 1 + GEOMETRY_FEATURES)

    def encode(self, unit_points: Tensor) -> tuple[Tensor, Tensor]:
        encoding = self.encoding(unit_points * 2 - 1)
        hidden = encoding
        for index, layer in enumerate(self.layers):
            if index == self.skip_layer and index > 0:
                hidden = torch.cat([hidden, encoding], dim=-1)
            hidden = torch.relu(layer(hidden))
        return encoding, self.output(hidden)
