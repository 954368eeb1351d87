"""TensoRF (Chen et al. 2022): the radiance field as a low-rank tensor decomposition.

VM: three (plane, line) pairs; CP: three lines per component. Both decompositions give a
feature vector per point which a linear basis maps to the shared geometry vector.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fieldkit.fields.base import GEOMETRY_FEATURES, GeometryVectorField

# (plane axes, line axis) of the VM decomposition: XY plane with Z line, and so on
_VM_AXES = ((0, 1, 2), (0, 2, 1), (1, 2, 0))


@dataclass
class TensoRFConfig:
    resolution: int = 128
    """grid resolution per axis"""
    components: int = 24
    """components per plane/line pair (VM) or rank (CP, multiplied by 4)"""
    colour_width: int = 64
    """width of the colour head"""
    learning_rate: float = 2e-2
    """Adam learning rate of the tensors"""
    network_learning_rate: float = 2e-3
    """Adam learning rate of the basis and colour head"""
    init_scale: float = 0.1
    """standard deviation of the initial tensor values"""


VM_PRESETS = {"cpu": TensoRFConfig(), "gpu": TensoRFConfig(resolution=300, components=48)}
# a CP component is a product of three lines, so it starts larger and learns faster than a VM pair
CP_PRESETS = {"cpu": TensoRFConfig(components=12, learning_rate=5e-2, init_scale=0.2),
              "gpu": TensoRFConfig(resolution=300, components=48, learning_rate=5e-2, init_scale=0.2)}


def _sample_lines(lines: Tensor, coordinates: Tensor) -> Tensor:
    """Linear interpolation of lines [A, C, R] at coordinates [N, A] in [-1, 1] -> [A, N, C].

    A batched product with the interpolation weights as a dense [A, N, R] matrix (two non-zeros
    per row): on a CPU, faster forward and backward than looking the rows up or gathering over an
    [A, C, N] index.
    """
    axes, _, size = lines.shape
    position = ((coordinates + 1) * 0.5 * (size - 1)).T  # [A, N]
    left = position.floor().clamp(0, size - 2)
    weight = (position - left)[:, :, None]  # [A, N, 1]
    index = left.long()[:, :, None]
    interpolation = lines.new_zeros(axes, coordinates.shape[0], size)
    interpolation.scatter_(2, index, 1 - weight).scatter_(2, index + 1, weight)
    return torch.bmm(interpolation, lines.transpose(1, 2))


class _TensoRFField(GeometryVectorField):
    config_class = TensoRFConfig

    def __init__(self, config: TensoRFConfig, aabb: Tensor, feature_dim: int):
        super().__init__(config, aabb)
        self.basis = nn.Linear(feature_dim, 1 + GEOMETRY_FEATURES)

    def tensor_parameters(self) -> list[nn.Parameter]:
        raise NotImplementedError

    def optimizer_groups(self) -> list[dict]:
        tensors = self.tensor_parameters()
        tensor_ids = {id(parameter) for parameter in tensors}
        networks = [parameter for parameter in self.parameters() if id(parameter) not in tensor_ids]
        return [{"params": tensors, "lr": self.config.learning_rate},
                {"params": networks, "lr": self.config.network_learning_rate}]

    def encode(self, unit_points: Tensor) -> tuple[Tensor, Tensor]:
        features = self.features(unit_points * 2 - 1)
        return features, self.basis(features)

    def features(self, coordinates: Tensor) -> Tensor:
        raise NotImplementedError


class TensoRFVMField(_TensoRFField):
    architecture = "tensorf-vm"
    presets = VM_PRESETS  # the config each preset names (cpu, gpu)

    def __init__(self, config: TensoRFConfig, aabb: Tensor):
        super().__init__(config, aabb, 3 * config.components)
        size, components = config.resolution, config.components
        self.planes = nn.Parameter(config.init_scale * torch.randn(3, components, size, size))
        self.lines = nn.Parameter(config.init_scale * torch.randn(3, components, size))

    def tensor_parameters(self) -> list[nn.Parameter]:
        return [self.planes, self.lines]

    def features(self, coordinates: Tensor) -> Tensor:  # [N, 3] in [-1, 1] -> [N, 3C]
        plane_coordinates = torch.stack([coordinates[:, [a, b]] for a, b, _ in _VM_AXES])[:, :, None, :]  # [3, N, 1, 2]
        planes = F.grid_sample(self.planes, plane_coordinates, mode="bilinear", align_corners=True)[..., 0]  # [3, C, N]
        lines = _sample_lines(self.lines, coordinates[:, [axis for _, _, axis in _VM_AXES]])  # [3, N, C]
        return (planes.transpose(1, 2) * lines).transpose(0, 1).reshape(coordinates.shape[0], -1)


class TensoRFCPField(_TensoRFField):
    architecture = "tensorf-cp"
    presets = CP_PRESETS  # the config each preset names (cpu, gpu)

    def __init__(self, config: TensoRFConfig, aabb: Tensor):
        rank = 4 * config.components
        super().__init__(config, aabb, rank)
        self.lines = nn.Parameter(config.init_scale * torch.randn(3, rank, config.resolution))

    def tensor_parameters(self) -> list[nn.Parameter]:
        return [self.lines]

    def features(self, coordinates: Tensor) -> Tensor:  # [N, 3] -> [N, rank]
        x, y, z = _sample_lines(self.lines, coordinates)  # [N, rank] each
        return x * y * z
