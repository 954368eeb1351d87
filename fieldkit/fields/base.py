"""The one interface every field architecture implements.

A field maps world points [N, 3] and unit view directions [N, 3] to a clamped log-density,
an rgb colour and its named distillation stages: the intermediate tensors that a converter
can match between a teacher and a student.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from fieldkit.fields.activations import clamp_log_density
from fieldkit.fields.encodings import spherical_harmonics

GEOMETRY_FEATURES = 15  # PVD's K: the geometry vector is [log_density, 15 features]


@dataclass
class FieldOutput:
    log_density: Tensor  # [N] clamped pre-activation; density = exp(log_density)
    rgb: Tensor  # [N, 3] in [0, 1]
    stages: dict[str, Tensor]  # stage name -> [N, D]


class Field(nn.Module):
    """Base class. Subclasses set `architecture`, `config_class`, `stage_names` and implement
    `_forward_normalized` on points scaled to [0, 1]^3 inside the field's bounding box."""

    architecture: ClassVar[str]
    config_class: ClassVar[type]
    stage_names: ClassVar[tuple[str, ...]]

    def __init__(self, config, aabb: Tensor):
        super().__init__()
        self.config = config
        self.register_buffer("aabb", torch.as_tensor(aabb, dtype=torch.float32).reshape(2, 3).clone())

    def normalize(self, points: Tensor) -> Tensor:  # [N, 3] world -> [N, 3] in [0, 1)
        unit = (points - self.aabb[0]) / (self.aabb[1] - self.aabb[0])
        return unit.clamp(0.0, 1.0 - 1e-6)

    def forward(self, points: Tensor, directions: Tensor) -> FieldOutput:
        return self._forward_normalized(self.normalize(points), directions)

    def log_density(self, points: Tensor) -> Tensor:  # [N]
        """Density only, for occupancy-grid updates; cheaper where the architecture allows."""
        return self._log_density_normalized(self.normalize(points))

    def _forward_normalized(self, unit_points: Tensor, directions: Tensor) -> FieldOutput:
        raise NotImplementedError

    def _log_density_normalized(self, unit_points: Tensor) -> Tensor:
        return self._forward_normalized(unit_points, torch.zeros_like(unit_points)).log_density

    def optimizer_groups(self) -> list[dict]:
        """Parameter groups with their learning rates (the architecture knows what trains well)."""
        return [{"params": list(self.parameters()), "lr": self.config.learning_rate}]

    def regularization(self, generator: torch.Generator | None = None) -> Tensor:
        """An architecture's own prior term (total variation etc.), zero by default; random
        choices come from `generator`, so that a resumed run repeats them."""
        return self.aabb.new_zeros(())

    def config_dict(self) -> dict:
        return dataclasses.asdict(self.config)


class ColourHead(nn.Module):
    """Encoded view direction + geometry features -> rgb. Shared by every architecture that
    emits the geometry vector, so a student can inherit its teacher's head."""

    def __init__(self, width: int, sh_degree: int = 4):
        super().__init__()
        self.sh_degree = sh_degree
        self.mlp = nn.Sequential(
            nn.Linear(sh_degree**2 + GEOMETRY_FEATURES, width), nn.ReLU(inplace=True),
            nn.Linear(width, width), nn.ReLU(inplace=True),
            nn.Linear(width, 3),
        )

    def forward(self, features: Tensor, directions: Tensor) -> Tensor:  # [N, K], [N, 3] -> [N, 3]
        encoded = spherical_harmonics(directions, self.sh_degree)
        return torch.sigmoid(self.mlp(torch.cat([encoded, features], dim=-1)))


class GeometryVectorField(Field):
    """A field whose architecture-specific part ends in the shared geometry vector
    [log_density, K features], followed by the shared colour head."""

    stage_names = ("encoding", "geometry")

    def __init__(self, config, aabb: Tensor):
        super().__init__(config, aabb)
        self.colour_head = ColourHead(config.colour_width)

    def encode(self, unit_points: Tensor) -> tuple[Tensor, Tensor]:
        """-> (encoding [N, E], geometry vector [N, 1 + K])."""
        raise NotImplementedError

    def _forward_normalized(self, unit_points: Tensor, directions: Tensor) -> FieldOutput:
        encoding, geometry = self.encode(unit_points)
        output = self.output_from_geometry(geometry, directions)
        output.stages["encoding"] = encoding
        return output

    def output_from_geometry(self, geometry: Tensor, directions: Tensor) -> FieldOutput:
        """The output at points whose geometry vector [N, 1 + K] is known: only the colour head runs."""
        return FieldOutput(clamp_log_density(geometry[:, 0]), self.colour_head(geometry[:, 1:], directions),
                           {"geometry": geometry})

    def geometry_rows(self, points: Tensor) -> Tensor:
        """The geometry vector [N, 1 + K] at world points, its log-density clamped: a visibility
        pass that keeps it lets `output_from_geometry` colour the visible samples."""
        geometry = self.encode(self.normalize(points))[1]
        return torch.cat([clamp_log_density(geometry[:, :1]), geometry[:, 1:]], dim=-1)

    def _log_density_normalized(self, unit_points: Tensor) -> Tensor:
        return clamp_log_density(self.encode(unit_points)[1][:, 0])


def mlp(input_dim: int, width: int, hidden_layers: int, output_dim: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for index in range(hidden_layers):
        layers += [nn.Linear(input_dim if index == 0 else width, width), nn.ReLU(inplace=True)]
    layers.append(nn.Linear(width if hidden_layers else input_dim, output_dim))
    return nn.Sequential(*layers)
