"""Where a conversion's rays come from, with PVD-AL's image and ray levels on top.

A field teacher colours any ray, so rays come from fresh synthetic poses (`RigRays`). A splat
teacher draws whole images, so its rays are pixels of renders made once (`RenderedRays`), and
their colours are known in advance. Either way a batch mixes replayed hard rays, rays near
the hardest views, and fresh ones; `offer` shows the source each ray's error afterwards.
Dimension letters: R rays, P pixels of all renders.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fieldkit.data import Dataset
from fieldkit.distill.active import HardestPool
from fieldkit.distill.sampling import CameraRig


@dataclass
class RayBatch:
    origins: Tensor  # [R, 3]
    directions: Tensor  # [R, 3] unit
    colours: Tensor | None  # [R, 3] the teacher's colour when known in advance, else None
    keys: tuple[Tensor, ...]  # what identifies each ray to the source's pools


@dataclass
class ActiveShares:
    """Shares of a batch replayed from the hardest rays and drawn near the hardest views."""

    replay: float = 0.0
    revisit: float = 0.0
    jitter: float = 0.0  # size of a revisited pose's perturbation, as a fraction of the rig's size


class RigRays:
    """Rays through random pixels of fresh rig poses; hard rays are replayed unchanged and the
    poses behind them revisited with small perturbations."""

    def __init__(self, rig: CameraRig, capacity: int, device: torch.device | str = "cpu"):
        self.rig = rig
        # rows: origin, direction, eye, target of each hard ray / eye, target of each hard pose
        self.hard_rays = HardestPool(capacity, (3, 3, 3, 3), device=device)
        self.hard_poses = HardestPool(capacity, (3, 3), device=device)

    def batch(self, total: int, shares: ActiveShares, generator: torch.Generator) -> RayBatch:
        replayed = self.hard_rays.draw(int(total * shares.replay), generator)
        eyes, targets = self.rig.perturbed(*self.hard_poses.draw(int(total * shares.revisit), generator),
                                           shares.jitter, generator)
        fresh_eyes, fresh_targets = self.rig.poses(total - replayed[0].shape[0] - eyes.shape[0], generator)
        eyes, targets = torch.cat([eyes, fresh_eyes]), torch.cat([targets, fresh_targets])
        rows = (*self.rig.rays(eyes, targets, generator), eyes, targets)
        origins, directions, eyes, targets = (torch.cat([old, new]) for old, new in zip(replayed, rows))
        return RayBatch(origins, directions, None, (eyes, targets))

    def offer(self, batch: RayBatch, errors: Tensor) -> None:
        self.hard_rays.offer((batch.origins, batch.directions, *batch.keys), errors)
        self.hard_poses.offer(batch.keys, errors)


class RenderedRays:
    """Random pixels of a fixed set of teacher renders; hard pixels are replayed and more pixels
    are drawn from the views they lie in."""

    def __init__(self, views: Dataset, capacity: int):
        self.cameras = views.cameras
        self.colours, self.view_of, self.pixel_x, self.pixel_y = views.pixels()  # [P, 3], [P] x 3
        device = self.cameras.device
        sizes = torch.tensor([image.shape[0] * image.shape[1] for image in views.images], device=device)
        self.view_start, self.view_size = torch.cumsum(sizes, 0) - sizes, sizes
        self.hard_pixels = HardestPool(capacity, (1,), torch.long, device)
        self.hard_views = HardestPool(capacity, (1,), torch.long, device)

    def batch(self, total: int, shares: ActiveShares, generator: torch.Generator) -> RayBatch:
        replayed = self.hard_pixels.draw(int(total * shares.replay), generator)[0][:, 0]
        views = self.hard_views.draw(int(total * shares.revisit), generator)[0][:, 0]
        near = self.view_start[views] + (torch.rand(len(views), generator=generator, device=generator.device)
                                         * self.view_size[views]).long().clamp(max=self.view_size[views] - 1)
        fresh = torch.randint(len(self.colours), (total - len(replayed) - len(views),), generator=generator,
                              device=generator.device)
        pixels = torch.cat([replayed, near, fresh])
        origins, directions = self.cameras.generate_rays(self.view_of[pixels], self.pixel_x[pixels],
                                                         self.pixel_y[pixels])
        return RayBatch(origins, directions, self.colours[pixels], (pixels,))

    def offer(self, batch: RayBatch, errors: Tensor) -> None:
        pixels = batch.keys[0]
        self.hard_pixels.offer((pixels[:, None],), errors)
        self.hard_views.offer((self.view_of[pixels][:, None],), errors)
