"""Input encodings: positional (NeRF), spherical harmonics (view directions) and the
multiresolution hash grid (instant-ngp). The hash grid runs the native kernel of cuda/hash_encoding.h
when it is built (fieldkit/native.py) and its vectorised torch reference otherwise."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from fieldkit import native


class PositionalEncoding(nn.Module):
    """[x, sin(2^k pi x), cos(2^k pi x)] for k < frequencies (NeRF)."""

    def __init__(self, frequencies: int):
        super().__init__()
        self.register_buffer("scales", (2.0 ** torch.arange(frequencies)) * math.pi, persistent=False)
        self.output_dim = 3 + 6 * frequencies

    def forward(self, x: Tensor) -> Tensor:  # [N, 3] in [-1, 1] -> [N, output_dim]
        scaled = (x[:, None, :] * self.scales[:, None]).reshape(x.shape[0], -1)
        return torch.cat([x, torch.sin(scaled), torch.cos(scaled)], dim=-1)


def spherical_harmonics(directions: Tensor, degree: int) -> Tensor:
    """Real SH basis up to `degree` (1..4 bands) of unit directions [N, 3] -> [N, degree**2]."""
    x, y, z = directions.unbind(-1)
    bands = [torch.full_like(x, 0.28209479177387814)]
    if degree > 1:
        bands += [-0.48860251190291987 * y, 0.48860251190291987 * z, -0.48860251190291987 * x]
    if degree > 2:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        bands += [
            1.0925484305920792 * xy, -1.0925484305920792 * yz, 0.31539156525252005 * (2 * zz - xx - yy),
            -1.0925484305920792 * xz, 0.5462742152960396 * (xx - yy),
        ]
    if degree > 3:
        bands += [
            -0.5900435899266435 * y * (3 * xx - yy), 2.890611442640554 * xy * z,
            -0.4570457994644658 * y * (4 * zz - xx - yy), 0.3731763325901154 * z * (2 * zz - 3 * xx - 3 * yy),
            -0.4570457994644658 * x * (4 * zz - xx - yy), 1.445305721320277 * z * (xx - yy),
            -0.5900435899266435 * x * (xx - 3 * yy),
        ]
    if degree > 4:
        raise ValueError(f"spherical harmonics degree {degree} is not supported (1 to 4)")
    return torch.stack(bands, dim=-1)


# instant-ngp's spatial hash primes, written as signed int32 so that multiplication wraps
# like the uint32 arithmetic of the original; the table size is a power of two, so the
# low bits (a bitwise AND) are the same either way.
_HASH_PRIMES = (1, 2654435761 - 2**32, 805459861)


class _TableGather(torch.autograd.Function):
    """Trilinear blend of table rows: out[l, n] = sum_c weights[l, n, c] * table[index[l, n, c]].

    Level-major, so that the backward's scatter visits one level's slice of the table at a time
    (it stays in cache), and the scatter is one index_add, several times faster on CPU than
    autograd's embedding backward for millions of indices. The forward's embedding_bag blends the
    8 corners without materialising their rows.
    """

    @staticmethod
    def forward(ctx, table: Tensor, index: Tensor, weights: Tensor) -> Tensor:  # [L, N, 8] -> [L, N, F]
        ctx.save_for_backward(table, index, weights)
        corners = index.shape[-1]
        blended = F.embedding_bag(index.reshape(-1, corners), table, per_sample_weights=weights.reshape(-1, corners),
                                  mode="sum")
        return blended.view(*index.shape[:-1], table.shape[1])

    @staticmethod
    def backward(ctx, grad: Tensor):  # grad [L, N, F]
        table, index, weights = ctx.saved_tensors
        grad_table = grad_weights = None
        if ctx.needs_input_grad[0]:
            contributions = (weights[..., None] * grad[:, :, None, :]).reshape(-1, table.shape[1])
            grad_table = torch.zeros_like(table).index_add_(0, index.reshape(-1), contributions)
        if ctx.needs_input_grad[2]:
            rows = table.index_select(0, index.reshape(-1)).view(*index.shape, table.shape[1])
            grad_weights = torch.einsum("lnf,lncf->lnc", grad, rows)
        return grad_table, None, grad_weights


class _NativeHashEncode(torch.autograd.Function):
    """torch.ops.fieldkit.hash_encode_*: the same values and gradients as `HashEncoding.reference`.
    Saves the points and references to the table and grid constants; the corners are recomputed
    in the backward rather than stored (they would be [L, N, 8] rows and weights)."""

    @staticmethod
    def forward(ctx, points: Tensor, table: Tensor, resolution: Tensor, multipliers: Tensor, dense_levels: int,
                log2_table_size: int) -> Tensor:  # [N, 3] -> [N, L * F]
        ctx.save_for_backward(points, table, resolution, multipliers)
        ctx.grid = (dense_levels, log2_table_size)
        return torch.ops.fieldkit.hash_encode_forward(points, table, resolution, multipliers, dense_levels,
                                                      log2_table_size)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        points, table, resolution, multipliers = ctx.saved_tensors
        grad_table, grad_points = torch.ops.fieldkit.hash_encode_backward(
            grad.contiguous(), points, table, resolution, multipliers, *ctx.grid, ctx.needs_input_grad[1],
            ctx.needs_input_grad[0])
        return grad_points, grad_table, None, None, None, None


def hash_encode(points: Tensor, table: Tensor, resolution: Tensor, multipliers: Tensor, dense_levels: int,
                log2_table_size: int) -> Tensor:
    """The native hash encoding [N, 3] -> [N, L * F] (see `HashEncoding`); callers check
    `native.wanted` first. Other dtypes and strided inputs are converted, with one logged line."""
    dtype = torch.promote_types(points.dtype, table.dtype)
    points, table = native.prepare("hash encoding", points, table)
    out = _NativeHashEncode.apply(points, table, resolution.float().contiguous(), multipliers.int().contiguous(),
                                  dense_levels, log2_table_size)
    return out.to(dtype)


class HashEncoding(nn.Module):
    """Multiresolution hash encoding (Mueller et al. 2022) over points in [0, 1]^3.

    Coarse levels whose grid fits in the table are indexed densely (no collisions); finer
    levels use the spatial hash.
    """

    def __init__(self, levels: int, features_per_level: int, log2_table_size: int, base_resolution: int,
                 max_resolution: int):
        super().__init__()
        self.levels, self.features_per_level = levels, features_per_level
        self.table_size, self.log2_table_size = 2**log2_table_size, log2_table_size
        growth = math.exp((math.log(max_resolution) - math.log(base_resolution)) / max(levels - 1, 1))
        resolution = torch.tensor([math.floor(base_resolution * growth**level) for level in range(levels)])
        dense = (resolution + 1) ** 3 <= self.table_size
        strides = torch.stack([torch.ones_like(resolution), resolution + 1, (resolution + 1) ** 2], dim=-1)
        multipliers = torch.where(dense[:, None], strides, torch.tensor(_HASH_PRIMES)[None, :])
        self.register_buffer("resolution", resolution.float(), persistent=False)
        self.register_buffer("multipliers", multipliers.int(), persistent=False)  # [L, 3]
        # resolutions grow with the level, so the dense levels are the first ones
        self.dense_levels = int(dense.sum())
        self.register_buffer("level_offsets", (torch.arange(levels) * self.table_size).int(), persistent=False)
        # the lattice as the torch reference reads it (another tool's grid sets other values,
        # fieldkit.teachers.tcnn): a level's position is x * scale + shift, its lower corner
        # at most corner_limit, and a dense level's index wraps at its dense_rows
        self.register_buffer("scale", resolution.float(), persistent=False)
        self.shift = 0.0
        self.register_buffer("corner_limit", resolution.float() - 1, persistent=False)
        self.register_buffer("dense_rows", ((resolution + 1) ** 3)[dense].int(), persistent=False)
        self.table = nn.Parameter(torch.empty(levels * self.table_size, features_per_level).uniform_(-1e-4, 1e-4))
        self.output_dim = levels * features_per_level

    def forward(self, x: Tensor) -> Tensor:  # [N, 3] in [0, 1] -> [N, L * F]
        if native.wanted(x, self.table):
            return hash_encode(x, self.table, self.resolution, self.multipliers, self.dense_levels,
                               self.log2_table_size)
        return self.reference(x)

    def reference(self, x: Tensor) -> Tensor:  # [N, 3] in [0, 1] -> [N, L * F]
        """The torch reference: the specification the native kernel is tested against, and the
        fallback where it is not built."""
        count, dense_levels = x.shape[0], self.dense_levels
        position = x[None] * self.scale[:, None, None] + self.shift  # [L, N, 3]
        # a coordinate of exactly 1 belongs to the last cell, not to one past the grid
        corner = torch.minimum(position.floor(), self.corner_limit[:, None, None])
        fraction = position - corner
        # per axis, the two corner coordinates times that axis' multiplier: [L, N, 3, 2]
        terms = torch.stack([corner, corner + 1], dim=-1).int() * self.multipliers[:, None, :, None]
        dense, hashed = terms[:dense_levels], terms[dense_levels:]
        dense_index = dense[:, :, 0, :, None, None] + dense[:, :, 1, None, :, None] + dense[:, :, 2, None, None, :]
        dense_index = dense_index % self.dense_rows[:, None, None, None, None]
        hashed_index = (hashed[:, :, 0, :, None, None] ^ hashed[:, :, 1, None, :, None]
                        ^ hashed[:, :, 2, None, None, :]) & (self.table_size - 1)
        index = torch.cat([dense_index.reshape(dense_levels, count, 8), hashed_index.reshape(-1, count, 8)])
        index = (index + self.level_offsets[:, None, None]).long()  # [L, N, 8]
        axis_weights = torch.stack([1 - fraction, fraction], dim=-1)  # [L, N, 3, 2]
        weights_xy = axis_weights[:, :, 0, :, None] * axis_weights[:, :, 1, None, :]  # [L, N, 2, 2]
        weights = (weights_xy[..., None] * axis_weights[:, :, 2, None, None, :]).reshape(self.levels, count, 8)
        return _TableGather.apply(self.table, index, weights).transpose(0, 1).reshape(count, -1)
