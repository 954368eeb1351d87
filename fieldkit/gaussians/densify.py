"""Adaptive density control of 3DGS: clone, split, prune, and periodic opacity reset.

A splat whose projected centre keeps being pushed hard (a large average screen-space
gradient) covers a region it cannot fit: a small one is cloned (the copy then moves away
under the same gradient), a large one is split into two smaller ones sampled inside it.
Splats that became transparent or grew huge are pruned. Resetting every opacity to a
small value lets the optimiser re-decide which splats matter; the next prune removes the
ones it does not raise again.
Dimension letters: N splats, C cameras, M selected splats, S children per split splat.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from fieldkit.gaussians.model import PARAMETER_NAMES, Splats
from fieldkit.gaussians.rows import append_splats, keep_splats, zero_state
from fieldkit.render.splats import quaternion_to_rotation

SPLIT_CHILDREN = 2  # S
# 3DGS shrinks each child's scales by 0.8 * S, so the children together cover about the parent
SPLIT_SHRINK = 0.8 * SPLIT_CHILDREN


@dataclass
class DensifyConfig:
    grad_threshold: float = 2e-4
    """average screen-space gradient norm of a splat's centre (NDC units, as 3DGS) above which it is cloned or split"""
    dense_fraction: float = 0.01
    """splats whose largest scale is at most this fraction of the scene extent are cloned, larger ones split"""
    min_opacity: float = 0.005
    """splats less opaque than this are pruned"""
    max_scale_fraction: float = 0.1
    """splats larger than this fraction of the scene extent are pruned, once opacity resets have begun"""
    reset_opacity: float = 0.01
    """opacity ceiling that every splat is reset to"""
    start: int = 500
    """first step after which splats are densified"""
    stop: int = 15000
    """step from which the splat count stays fixed (no more densifying, pruning or resets)"""
    every: int = 100
    """steps between densifications"""
    reset_every: int = 3000
    """steps between opacity resets"""
    max_splats: int = 0
    """densifying stops growing at this many splats, growing the highest-gradient ones first (0: no cap)"""

    def refines_at(self, step: int) -> bool:
        return self.start < step < self.stop and step % self.every == 0

    def resets_at(self, step: int, steps: int) -> bool:
        """Resets happen in the first half of a run of `steps` only, as 3DGS's (every 3k steps
        up to 15k of 30k): a reset near the end leaves every splat at 1% opacity with no time
        to recover."""
        return step < min(self.stop, steps // 2) and step % self.reset_every == 0


class ScreenGradientStats:
    """Per-splat sums of the screen-space gradient norm of its centre, and how often it was seen."""

    def __init__(self, count: int, device: torch.device | str = "cpu"):
        # on the splats' device: each step adds their gradients
        self.grad_norm_sum = torch.zeros(count, device=device)  # [N]
        self.visible_count = torch.zeros(count, device=device)  # [N]

    @torch.no_grad()
    def accumulate(self, means2d_grad: Tensor, radii: Tensor, width: int, height: int) -> None:
        """Adds one step's gradients of the pixel-space centres [C, N, 2] of splats with radii [C, N, 2].

        3DGS thresholds gradients in NDC units (pixels / half the image size); a loss averaged
        over C cameras divides each camera's gradient by C, which the factor C undoes (gsplat).
        """
        cameras = means2d_grad.shape[0]
        to_ndc = means2d_grad.new_tensor([width / 2, height / 2]) * cameras
        visible = (radii > 0).all(dim=-1)  # [C, N]
        self.grad_norm_sum += ((means2d_grad * to_ndc).norm(dim=-1) * visible).sum(dim=0)
        self.visible_count += visible.sum(dim=0)

    def average(self) -> Tensor:  # [N]; zero for splats never seen
        return self.grad_norm_sum / self.visible_count.clamp(min=1)


def split_children(splats: Splats, parents: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """S children per parent ([N] bool): centres drawn from the parent's Gaussian, scales shrunk."""
    scales = splats.log_scales[parents].exp()  # [M, 3]
    rotations = quaternion_to_rotation(splats.quaternions[parents])  # [M, 3, 3]
    noise = torch.randn(SPLIT_CHILDREN, *scales.shape, generator=generator, device=scales.device) * scales  # [S, M, 3]
    means = splats.means[parents] + torch.einsum("mij,smj->smi", rotations, noise)  # [S, M, 3]
    children = {name: getattr(splats, name)[parents].repeat(SPLIT_CHILDREN, *([1] * (getattr(splats, name).dim() - 1)))
                for name in PARAMETER_NAMES}
    children["means"] = means.reshape(-1, 3)
    children["log_scales"] = (scales / SPLIT_SHRINK).log().repeat(SPLIT_CHILDREN, 1)
    return children


@torch.no_grad()
def densify_and_prune(splats: Splats, optimizer: torch.optim.Optimizer, stats: ScreenGradientStats,
                      config: DensifyConfig, extent: float, prune_large: bool,
                      generator: torch.Generator | None = None) -> dict[str, int]:
    """Clones and splits the splats whose average gradient exceeds the threshold, then prunes.

    Splits replace their parent; clones are exact copies. Returns the counts of each change.
    """
    average = stats.average()  # [N]
    grown = average > config.grad_threshold
    if config.max_splats:
        # a clone adds one splat and a split replaces one with SPLIT_CHILDREN
        room = max(config.max_splats - len(splats), 0) // max(SPLIT_CHILDREN - 1, 1)
        if int(grown.sum()) > room:
            grown &= average >= (average.topk(room).values[-1] if room else float("inf"))
    small = splats.log_scales.exp().amax(dim=-1) <= config.dense_fraction * extent
    clone, split = grown & small, grown & ~small
    new = {name: torch.cat([getattr(splats, name)[clone], rows])
           for name, rows in split_children(splats, split, generator).items()}
    append_splats(splats, optimizer, new)
    remove = torch.cat([split, torch.zeros(len(splats) - len(split), dtype=torch.bool, device=split.device)])
    remove |= torch.sigmoid(splats.opacity_logits) < config.min_opacity
    if prune_large:
        remove |= splats.log_scales.exp().amax(dim=-1) > config.max_scale_fraction * extent
    keep_splats(splats, optimizer, ~remove)
    return {"cloned": int(clone.sum()), "split": int(split.sum()),
            "pruned": int(remove.sum()) - int(split.sum()), "splats": len(splats)}


@torch.no_grad()
def reset_opacities(splats: Splats, optimizer: torch.optim.Optimizer, ceiling: float) -> None:
    """Caps every opacity at `ceiling`, and clears the opacities' optimiser moments (as 3DGS does)."""
    splats.opacity_logits.clamp_(max=math.log(ceiling / (1 - ceiling)))
    zero_state(optimizer, splats.opacity_logits)
