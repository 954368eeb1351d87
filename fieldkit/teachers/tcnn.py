"""tiny-cuda-nn's parameter layouts, read into fieldkit modules: the hash grid (evaluated by
fieldkit's own hash encoding) and the fully fused MLPs, so that instant-ngp snapshots and
nerfstudio checkpoints run without tinycudann.

A tcnn module keeps all its parameters in one flat array: a grid's levels one after another
(each level `min(next_multiple(resolution^3, 8), 2^log2_hashmap_size)` rows of features), an
MLP's bias-free weight matrices one after another, each row-major [outputs, inputs], the last
padded to 16 outputs.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from fieldkit.errors import FieldkitError
from fieldkit.fields.encodings import _HASH_PRIMES, HashEncoding

TENSOR_CORE_WIDTH = 16  # tcnn pads an MLP's outputs, and a fully fused MLP's inputs, to this


def next_multiple(value: int, divisor: int) -> int:
    return -(-value // divisor) * divisor


class TcnnHashGrid(HashEncoding):
    """tcnn's HashGrid (instant-ngp's and nerfacto's) on fieldkit's torch reference.

    tcnn places a level's lattice at x * scale + 0.5 with scale = base * growth^level - 1, keeps
    a level dense while its (ceil(scale) + 1)^3 vertices fit its table, and sizes each level's
    table to what it needs, so the levels' offsets are uneven.
    """

    def __init__(self, levels: int, features_per_level: int, log2_table_size: int, base_resolution: int,
                 per_level_scale: float):
        nn.Module.__init__(self)
        self.levels, self.features_per_level = levels, features_per_level
        self.table_size, self.log2_table_size = 2**log2_table_size, log2_table_size
        scale, vertices, rows = self.layout(levels, log2_table_size, base_resolution, per_level_scale)
        dense = [count**3 <= self.table_size for count in vertices]
        self.dense_levels = sum(dense)
        self.register_buffer("scale", scale, persistent=False)
        self.shift = 0.5
        # tcnn never clamps: a point's upper corner may lie one past the lattice, and wraps
        self.register_buffer("corner_limit", torch.tensor(vertices, dtype=torch.float32) - 1, persistent=False)
        self.register_buffer("multipliers", torch.tensor(
            [(1, count, count * count) if is_dense else _HASH_PRIMES for count, is_dense in zip(vertices, dense)],
            dtype=torch.int32), persistent=False)
        self.register_buffer("dense_rows", torch.tensor(rows[:self.dense_levels], dtype=torch.int32),
                             persistent=False)
        offsets = [0] + list(torch.tensor(rows).cumsum(0).tolist())
        self.register_buffer("level_offsets", torch.tensor(offsets[:-1], dtype=torch.int32), persistent=False)
        self.table = nn.Parameter(torch.zeros(offsets[-1], features_per_level))
        self.output_dim = levels * features_per_level

    @staticmethod
    def layout(levels: int, log2_table_size: int, base_resolution: int,
               per_level_scale: float) -> tuple[Tensor, list[int], list[int]]:
        """Each level's scale [L], vertices per axis and table rows, as tcnn computes them."""
        # float32 as tcnn computes it, so that cell borders fall where they fell in training
        log2_growth = torch.tensor(per_level_scale, dtype=torch.float32).log2()
        scale = torch.exp2(torch.arange(levels, dtype=torch.float32) * log2_growth) * base_resolution - 1.0
        vertices = [int(math.ceil(value)) + 1 for value in scale.tolist()]
        return scale, vertices, [min(next_multiple(count**3, 8), 2**log2_table_size) for count in vertices]

    @classmethod
    def checked(cls, levels: int, features: int, log2_table_size: int, base_resolution: int, per_level_scale: float,
                held: int, where: str) -> "TcnnHashGrid":
        """The grid, once its parameter count is known to be at most the `held` values a file
        holds: a damaged config must not allocate more than the file could fill."""
        wanted = sum(cls.layout(levels, log2_table_size, base_resolution, per_level_scale)[2]) * features
        if wanted > held:
            raise FieldkitError(f"{where}: its hash grid config needs {wanted:,} parameters but the file holds "
                                f"{held:,}: a damaged file")
        return cls(levels, features, log2_table_size, base_resolution, per_level_scale)

    @classmethod
    def from_config(cls, config: dict, held: int, where: str) -> "TcnnHashGrid":
        """A grid from tcnn's encoding JSON (`otype` HashGrid, or Grid of type Hash), for a file of
        `held` parameters."""
        otype = str(config.get("otype", ""))
        kind = str(config.get("type", "Hash"))
        if otype.lower() not in ("hashgrid", "grid", "multiresolutionhash") or kind.lower() != "hash":
            raise FieldkitError(f"{where}: unknown encoding {otype or config!r}; fieldkit reads tcnn's HashGrid only")
        if str(config.get("interpolation", "Linear")).lower() != "linear":
            raise FieldkitError(f"{where}: the hash grid's {config['interpolation']} interpolation is not supported "
                                f"(Linear only)")
        levels = whole(config, "n_levels", where, 1, 32)
        features = whole(config, "n_features_per_level", where, 1, 8)
        if features not in (1, 2, 4, 8):
            raise FieldkitError(f"{where}: n_features_per_level is {features}; tcnn allows 1, 2, 4 or 8")
        log2_size = whole(config, "log2_hashmap_size", where, 1, 30)
        base = whole(config, "base_resolution", where, 1, 2**16)
        growth = config.get("per_level_scale")
        if not isinstance(growth, (int, float)) or not 1.0 <= growth <= 64.0:
            raise FieldkitError(f"{where}: per_level_scale is {growth!r}; expected a number from 1 to 64")
        return cls.checked(levels, features, log2_size, base, float(growth), held, where)

    @property
    def parameter_count(self) -> int:
        return self.table.numel()

    def forward(self, x: Tensor) -> Tensor:  # [N, 3] in [0, 1] -> [N, L * F]
        # the native kernel knows fieldkit's lattice only
        return self.reference(x)


def whole(config: dict, name: str, where: str, low: int, high: int) -> int:
    value = config.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise FieldkitError(f"{where}: {name} is {value!r}; expected a whole number from {low} to {high}")
    return value


class TcnnMLP(nn.Module):
    """A tcnn FullyFusedMLP / CutlassMLP: bias-free layers, ReLU between them; inputs are padded
    to the network's alignment with `pad_value` (tcnn's grid pads with 0, its identity encoding,
    which every `tcnn.Network` starts with, with 1) and outputs keep tcnn's padding to 16."""

    def __init__(self, inputs: int, width: int, hidden_layers: int, outputs: int, alignment: int = TENSOR_CORE_WIDTH,
                 pad_value: float = 0.0):
        super().__init__()
        self.inputs, self.padded_inputs, self.pad_value = inputs, next_multiple(inputs, alignment), pad_value
        self.padded_outputs = next_multiple(outputs, TENSOR_CORE_WIDTH)
        widths = [self.padded_inputs] + [width] * hidden_layers + [self.padded_outputs]
        self.layers = nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in zip(widths[:-1], widths[1:]))
        self.sigmoid_output = False

    @classmethod
    def from_config(cls, config: dict, inputs: int, outputs: int, where: str, pad_value: float = 0.0) -> "TcnnMLP":
        otype = str(config.get("otype", ""))
        if otype not in ("FullyFusedMLP", "CutlassMLP"):
            raise FieldkitError(f"{where}: unknown network {otype or config!r}; fieldkit reads tcnn's FullyFusedMLP "
                                f"and CutlassMLP")
        activation, output = str(config.get("activation", "ReLU")), str(config.get("output_activation", "None"))
        if activation.lower() != "relu" or output.lower() not in ("none", "sigmoid"):
            raise FieldkitError(f"{where}: a network with {activation} / {output} activations; fieldkit reads ReLU "
                                f"networks whose output activation is None or Sigmoid")
        width = whole(config, "n_neurons", where, 1, 1024)
        hidden = whole(config, "n_hidden_layers", where, 1, 32)
        network = cls(inputs, width, hidden, outputs, TENSOR_CORE_WIDTH if otype == "FullyFusedMLP" else 8, pad_value)
        network.sigmoid_output = output.lower() == "sigmoid"
        return network

    @property
    def parameter_count(self) -> int:
        return sum(layer.weight.numel() for layer in self.layers)

    def forward(self, x: Tensor) -> Tensor:  # [N, inputs] -> [N, padded outputs]
        if self.padded_inputs > self.inputs:
            x = torch.cat([x, x.new_full((x.shape[0], self.padded_inputs - self.inputs), self.pad_value)], dim=-1)
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index < len(self.layers) - 1:
                x = torch.relu(x)
        return torch.sigmoid(x) if self.sigmoid_output else x


def load_flat(modules: list[nn.Module], flat: Tensor, where: str) -> None:
    """Fills `modules` (TcnnMLP / TcnnHashGrid, in the file's order) from one flat parameter array."""
    wanted = sum(module.parameter_count for module in modules)
    if flat.numel() != wanted:
        raise FieldkitError(f"{where} holds {flat.numel():,} parameters but its configuration needs {wanted:,}: "
                            f"a damaged file, or a configuration this reader does not know")
    if not torch.isfinite(flat).all():
        raise FieldkitError(f"{where} has NaN or infinite parameters: a diverged or damaged model")
    start = 0
    for module in modules:
        for parameter in module.parameters():
            size = parameter.numel()
            with torch.no_grad():
                parameter.copy_(flat[start:start + size].view_as(parameter))
            start += size


def flatten(modules: list[nn.Module]) -> Tensor:
    """The inverse of `load_flat`: the modules' parameters in tcnn's order, as one array."""
    return torch.cat([parameter.detach().reshape(-1) for module in modules for parameter in module.parameters()])
