"""Front-to-back alpha compositing of pixel-splat pairs, with its backward pass written out.

The pairs come sorted by pixel and, within a pixel, front to back. A pixel's transmittance
before each pair is a product over the pixel's earlier pairs, taken as a segmented cumulative
sum of log(1 - alpha) in float64 (float32 would lose the small terms against a running sum
over many pixels). The backward pass is 3DGS's: the gradient reaching a pair's alpha is its
own colour times the transmittance before it, less everything behind it in the same pixel
divided by (1 - alpha); this runs as a reverse segmented sum, with no autograd graph over the
pairs. That keeps the saved state to one float a pair (and the pair indices), where autograd
through the forward ops would keep about a dozen. The native kernels (cuda/splats.h) do the same
work per 16 px tile and are checked against this function.

Each splat arrives as one row of a table: centre x, y (pixels), conic a, b, c, opacity, then
F features (colour, depth, ...). Dimension letters: S splat rows, I pairs, P pixels, F features.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from fieldkit.render.volume import TRANSMITTANCE_EPSILON

ALPHA_MAX = 0.99  # no single splat is fully opaque, so the transmittance stays invertible
ALPHA_MIN = 1 / 255
LOG_EPSILON = math.log(TRANSMITTANCE_EPSILON)
GEOMETRY_COLUMNS = 6  # centre x, y, conic a, b, c, opacity
# pairs composited at once: bounds the temporaries of both passes
CHUNK_PAIRS = 2**20


@dataclass
class PixelPairs:
    """Pairs sorted by pixel, then front to back; a pixel's pairs are contiguous."""

    pixels: Tensor  # [I] int32 pixel index into the output (camera * H * W + row * W + column)
    splats: Tensor  # [I] int64 row of the splat table
    centres: Tensor  # [I, 2] float pixel centre (column + 0.5, row + 0.5)
    starts: Tensor  # [I] int64 index of the first pair of the same pixel

    @classmethod
    def from_sorted(cls, pixels: Tensor, splats: Tensor, width: int, image_pixels: int) -> PixelPairs:
        local = pixels % image_pixels
        rows = torch.div(local, width, rounding_mode="floor")
        centres = torch.stack([local - rows * width, rows], dim=-1).float() + 0.5
        first = torch.ones_like(pixels, dtype=torch.bool)
        first[1:] = pixels[1:] != pixels[:-1]
        positions = torch.arange(len(pixels), device=pixels.device)  # int64: cummax gives int64 indices
        starts = torch.cummax(torch.where(first, positions, 0), 0).values
        return cls(pixels, splats, centres, starts)

    def chunks(self) -> list[slice]:
        """Slices of about CHUNK_PAIRS pairs, cut where a pixel begins."""
        cuts = self.starts[CHUNK_PAIRS::CHUNK_PAIRS].tolist()
        bounds = [0, *cuts, len(self.pixels)]
        return [slice(begin, end) for begin, end in itertools.pairwise(bounds) if end > begin]


def _alpha(rows: Tensor, centres: Tensor) -> tuple[Tensor, ...]:
    """Each pair's alpha [I] and what the backward pass needs: dx, dy [I] and exp(-sigma) [I]."""
    dx, dy = (centres.to(rows) - rows[:, :2]).unbind(-1)
    a, b, c, opacity = rows[:, 2:GEOMETRY_COLUMNS].unbind(-1)
    sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
    falloff = torch.exp(-sigma)
    alpha = (opacity * falloff).clamp(max=ALPHA_MAX)
    alpha = torch.where((sigma >= 0) & (alpha >= ALPHA_MIN), alpha, torch.zeros_like(alpha))
    return alpha, dx, dy, falloff


def _segmented_exclusive_sum(values: Tensor, starts: Tensor) -> Tensor:
    """For each position, the sum of the earlier values of its segment (in float64)."""
    inclusive = torch.cumsum(values.double(), 0)
    exclusive = inclusive - values.double()
    return exclusive - exclusive[starts]


def _transmittance(alpha: Tensor, starts: Tensor) -> Tensor:
    """Transmittance before each pair, and 0 from the pair that would take it below epsilon on
    (a pixel stops there; the transmittance only falls, so every later pair stops too)."""
    log_step = torch.log1p(-alpha)
    log_before = _segmented_exclusive_sum(log_step, starts)
    return torch.where(log_before + log_step >= LOG_EPSILON, torch.exp(log_before), 0.0).to(alpha)


class _Composite(torch.autograd.Function):
    @staticmethod
    def forward(ctx, table: Tensor, pairs: PixelPairs, pixel_count: int) -> Tensor:
        features = table.shape[1] - GEOMETRY_COLUMNS
        accumulated = table.new_zeros(pixel_count, features)
        opacity = table.new_zeros(pixel_count)
        transmittances = []
        for chunk in pairs.chunks():
            rows = table.index_select(0, pairs.splats[chunk])
            alpha = _alpha(rows, pairs.centres[chunk])[0]
            transmittance = _transmittance(alpha, pairs.starts[chunk] - chunk.start)
            weights = alpha * transmittance
            accumulated.index_add_(0, pairs.pixels[chunk], weights[:, None] * rows[:, GEOMETRY_COLUMNS:])
            opacity.index_add_(0, pairs.pixels[chunk], weights)
            transmittances.append(transmittance)
        ctx.pairs = pairs
        # alpha is recomputed in the backward pass (it needs dx, dy and the falloff too)
        ctx.save_for_backward(table, torch.cat(transmittances) if transmittances else table.new_zeros(0))
        return torch.cat([accumulated, opacity[:, None]], dim=-1)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        table, transmittance_all = ctx.saved_tensors
        pairs = ctx.pairs
        grad_table = torch.zeros_like(table)
        for chunk in pairs.chunks():
            rows = table.index_select(0, pairs.splats[chunk])
            alpha, dx, dy, falloff = _alpha(rows, pairs.centres[chunk])
            transmittance = transmittance_all[chunk]
            grad_pixel = grad_out.index_select(0, pairs.pixels[chunk])  # [I, F + 1]
            # d(loss)/d(weight): the pixel's gradient dotted with the pair's features and its alpha 1
            grad_weight = (grad_pixel[:, :-1] * rows[:, GEOMETRY_COLUMNS:]).sum(-1) + grad_pixel[:, -1]
            contribution = alpha * transmittance * grad_weight
            starts = pairs.starts[chunk] - chunk.start
            inclusive = _segmented_exclusive_sum(contribution, starts) + contribution.double()
            segment_total = torch.zeros(len(starts), dtype=torch.float64, device=starts.device).index_add_(
                0, starts, contribution.double())[starts]
            behind = (segment_total - inclusive).to(alpha)
            live = transmittance > 0
            grad_alpha = torch.where(live, transmittance * grad_weight - behind / (1 - alpha), 0.0)
            # alpha = opacity * exp(-sigma) where it is neither clamped nor skipped
            free = (alpha > 0) & (alpha < ALPHA_MAX) & live
            grad_alpha = torch.where(free, grad_alpha, 0.0)
            grad_sigma = -alpha * grad_alpha
            a, b, c = rows[:, 2:5].unbind(-1)
            grad_rows = torch.empty_like(rows)
            grad_rows[:, 0] = -grad_sigma * (a * dx + b * dy)
            grad_rows[:, 1] = -grad_sigma * (b * dx + c * dy)
            grad_rows[:, 2] = 0.5 * grad_sigma * dx * dx
            grad_rows[:, 3] = grad_sigma * dx * dy
            grad_rows[:, 4] = 0.5 * grad_sigma * dy * dy
            grad_rows[:, 5] = falloff * grad_alpha
            torch.mul((alpha * transmittance)[:, None], grad_pixel[:, :-1], out=grad_rows[:, GEOMETRY_COLUMNS:])
            grad_table.index_add_(0, pairs.splats[chunk], grad_rows)
        return grad_table, None, None


def composite(table: Tensor, pairs: PixelPairs, pixel_count: int) -> Tensor:
    """Composites `pairs` of the splats in `table` [S, 6 + F] -> [pixel_count, F + 1]: the
    weighted features of each pixel, then its alpha. Differentiable in `table`."""
    return _Composite.apply(table, pairs, pixel_count)
