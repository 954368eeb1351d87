"""Gaussian splats in the 3DGS parameterisation: a Renderable like fields.

Parameters are stored pre-activation, as 3DGS trains and saves them: log-scales, opacity
logits, unnormalised wxyz quaternions, and colour as spherical-harmonic coefficients whose
degree-0 term is offset by 0.5 (zero coefficients are mid-grey).
Dimension letters: N splats, C cameras, K higher-order SH coefficients, B SH basis functions.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fieldkit.cameras import Cameras
from fieldkit.fields.encodings import spherical_harmonics
from fieldkit.render.splats import SplatRenderOutput, rasterize

SH_C0 = 0.28209479177387814  # the constant degree-0 SH basis function
MAX_SH_DEGREE = 3
# every per-splat parameter, in the order optimisers and files list them
PARAMETER_NAMES = ("means", "log_scales", "quaternions", "opacity_logits", "sh_dc", "sh_rest")


def sh_degree_for(rest_coefficients: int) -> int | None:
    """The SH degree whose basis has 1 + `rest_coefficients` functions, or None if there is none (up to 3)."""
    degree = math.isqrt(rest_coefficients + 1) - 1
    return degree if (degree + 1) ** 2 == rest_coefficients + 1 and degree <= MAX_SH_DEGREE else None


def sh_colours(sh_dc: Tensor, sh_rest: Tensor, degree: int, directions: Tensor) -> Tensor:
    """RGB [C, N, 3] of splats seen along unit `directions` [C, N, 3] (camera to splat).

    sh_dc [N, 3], sh_rest [N, K, 3]; only the first `degree` bands beyond the constant are used.
    """
    basis = spherical_harmonics(directions.reshape(-1, 3), degree + 1).view(*directions.shape[:-1], -1)  # [C, N, B]
    coefficients = torch.cat([sh_dc[:, None, :], sh_rest[:, :basis.shape[-1] - 1]], dim=1)  # [N, B, 3]
    return (torch.einsum("cnb,nbk->cnk", basis, coefficients) + 0.5).clamp(min=0)


class Splats(nn.Module):
    """N anisotropic 3D Gaussians with view-dependent colour; `render(cameras)` rasterizes them."""

    kind = "splats"
    architecture = "gaussians"  # the name `fieldkit train --arch` knows splats by

    def __init__(self, means: Tensor, log_scales: Tensor, quaternions: Tensor, opacity_logits: Tensor,
                 sh_dc: Tensor, sh_rest: Tensor | None = None, background=(1.0, 1.0, 1.0)):
        super().__init__()
        count = means.shape[0]
        sh_rest = means.new_zeros(count, 0, 3) if sh_rest is None else sh_rest
        expected = {"means": (count, 3), "log_scales": (count, 3), "quaternions": (count, 4),
                    "opacity_logits": (count,), "sh_dc": (count, 3)}
        given = {"means": means, "log_scales": log_scales, "quaternions": quaternions,
                 "opacity_logits": opacity_logits, "sh_dc": sh_dc}
        for name, shape in expected.items():
            if tuple(given[name].shape) != shape:
                raise ValueError(f"{name} has shape {tuple(given[name].shape)}, expected {shape}")
        if sh_rest.dim() != 3 or sh_rest.shape[0] != count or sh_rest.shape[2] != 3 or \
                sh_degree_for(sh_rest.shape[1]) is None:
            raise ValueError(f"sh_rest has shape {tuple(sh_rest.shape)}, expected ({count}, K, 3) with K in 0, 3, 8, 15")
        for name, value in (given | {"sh_rest": sh_rest}).items():
            setattr(self, name, nn.Parameter(value.detach().float().clone()))
        self.sh_degree = sh_degree_for(sh_rest.shape[1])
        self.active_sh_degree = self.sh_degree  # training raises it band by band, as 3DGS does
        self.register_buffer("background", torch.as_tensor(background, dtype=torch.float32).reshape(3).clone())
        self.metrics: dict = {}
        self.dataset: dict = {}

    def __len__(self) -> int:
        return self.means.shape[0]

    @property
    def aabb(self) -> Tensor:  # [2, 3] the box around every splat centre
        return torch.stack([self.means.amin(dim=0), self.means.amax(dim=0)]).detach()

    def base_colours(self) -> Tensor:  # -> [N, 3]
        """The degree-0 colour in [0, 1]: what a reader without view dependence shows."""
        return (SH_C0 * self.sh_dc + 0.5).clamp(0, 1)

    def colours(self, camera_positions: Tensor) -> Tensor:  # [C, 3] -> [C, N, 3]
        directions = F.normalize(self.means[None] - camera_positions[:, None, :], dim=-1)
        return sh_colours(self.sh_dc, self.sh_rest, min(self.active_sh_degree, self.sh_degree), directions)

    def render(self, cameras: Cameras, background: Tensor | None = None) -> SplatRenderOutput:
        """Renders every camera (all of one resolution) -> rgb [C, H, W, 3], alpha and depth [C, H, W].

        Differentiable: call it under torch.no_grad() when only the images are needed.
        """
        cameras = cameras.to(self.means.device)
        background = self.background if background is None else background
        return rasterize(self.means, self.quaternions, self.log_scales.exp(), torch.sigmoid(self.opacity_logits),
                         self.colours(cameras.positions), cameras, background)

    def summary(self) -> dict:
        """What `fieldkit info` prints."""
        return {"kind": self.kind, "count": len(self), "sh_degree": self.sh_degree, "bounds": self.aabb.tolist()}
