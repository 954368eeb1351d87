"""The native splat kernels (cuda/splats.h) as autograd functions: projection and tile
rasterization, each the values and gradients of its torch reference in `fieldkit.render.splats`
and `fieldkit.render.splat_composite`. `fieldkit.render.splats.rasterize` calls them when
`wanted` says the kernels are built for the tensors' device.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from fieldkit import native
from fieldkit.cameras import Cameras


def wanted(cameras: Cameras, *tensors: Tensor) -> bool:
    """Whether splats of these tensors, seen by `cameras`, take the native path. Cameras whose
    parameters require grad stay on the torch path: the kernels give no camera gradients."""
    camera_values = [getattr(cameras, name) for name in Cameras._fields()]
    if any(value.requires_grad for value in camera_values if isinstance(value, Tensor)):
        return False
    return native.wanted(*tensors, cameras.c2w)


class _NativeProject(torch.autograd.Function):
    """torch.ops.fieldkit.splat_project_*: `project(means, covariances(quaternions, scales), ...)`.
    Saves the inputs only; the backward recomputes each splat's covariance and Jacobian."""

    @staticmethod
    def forward(ctx, means: Tensor, quaternions: Tensor, scales: Tensor, viewmats: Tensor, intrinsics: Tensor):
        means2d, conics, depths, radii = torch.ops.fieldkit.splat_project_forward(means, quaternions, scales, viewmats,
                                                                                  intrinsics)
        ctx.save_for_backward(means, quaternions, scales, viewmats, intrinsics)
        ctx.mark_non_differentiable(radii)
        return means2d, conics, depths, radii

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_means2d: Tensor | None, grad_conics: Tensor | None, grad_depths: Tensor | None, _radii):
        means, quaternions, scales, viewmats, intrinsics = ctx.saved_tensors
        cameras, count = viewmats.shape[0], means.shape[0]

        def dense(grad: Tensor | None, *shape: int) -> Tensor:
            return means.new_zeros(shape) if grad is None else grad.to(means.dtype).contiguous()

        grads = torch.ops.fieldkit.splat_project_backward(
            means, quaternions, scales, viewmats, intrinsics, dense(grad_means2d, cameras, count, 2),
            dense(grad_conics, cameras, count, 3), dense(grad_depths, cameras, count))
        return *grads, None, None


class _NativeRasterize(torch.autograd.Function):
    """torch.ops.fieldkit.splat_rasterize_*: front-to-back compositing of the splats' features over
    each pixel. Saves the inputs and the forward's tiles (their pairs, in depth order)."""

    @staticmethod
    def forward(ctx, geometry: Tensor, opacities: Tensor, features: Tensor, depths: Tensor, radii: Tensor,
                width: int, height: int):
        out, *binning = torch.ops.fieldkit.splat_rasterize_forward(geometry, opacities, features, depths, radii,
                                                                   width, height)
        ctx.save_for_backward(geometry, opacities, features, *binning)
        ctx.size = (width, height)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        geometry, opacities, features, *binning = ctx.saved_tensors
        grad_geometry, grad_opacities, grad_features = torch.ops.fieldkit.splat_rasterize_backward(
            grad_out.to(geometry.dtype).contiguous(), geometry, opacities, features, *binning, *ctx.size)
        return grad_geometry, grad_opacities.sum(dim=0), grad_features, None, None, None, None


def project(means: Tensor, quaternions: Tensor, scales: Tensor, viewmats: Tensor,
            intrinsics: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """means2d [C, N, 2], conics [C, N, 3], depths [C, N] and int32 radii [C, N, 2] of N splats in C
    cameras: world-to-camera `viewmats` [C, 4, 4] (OpenCV axes), `intrinsics` [C, 6] (fx, fy, cx,
    cy, width, height)."""
    tensors = native.prepare("splat projection", means, quaternions, scales, viewmats, intrinsics)
    return _NativeProject.apply(*tensors)


def composite(means2d: Tensor, conics: Tensor, opacities: Tensor, features: Tensor, depths: Tensor, radii: Tensor,
              width: int, height: int) -> Tensor:
    """Composites the splats' features [C, N, F] front to back over every pixel -> [C, H, W, F + 1]:
    the weighted features, then alpha."""
    geometry = torch.cat([means2d, conics], dim=-1)
    geometry, opacities, features, depths = native.prepare("splat rasterization", geometry, opacities, features,
                                                           depths.detach())
    return _NativeRasterize.apply(geometry, opacities, features, depths, radii.int().contiguous(), width, height)
