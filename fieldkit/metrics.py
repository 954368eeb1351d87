"""Image quality metrics: PSNR and SSIM (Wang et al. 2004, 11x11 Gaussian window, sigma 1.5)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def mse_to_psnr(mse: float) -> float:
    return -10.0 * math.log10(max(mse, 1e-12))


def psnr(image: Tensor, reference: Tensor) -> float:
    return mse_to_psnr(float((image - reference).square().mean()))


def ssim(image: Tensor, reference: Tensor, window: int = 11, sigma: float = 1.5) -> float:
    """Mean SSIM of two images [H, W, 3] in [0, 1] (valid region, as in skimage/TensoRF)."""
    return float(structural_similarity(image, reference, window, sigma))


def structural_similarity(image: Tensor, reference: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """`ssim` as a differentiable scalar tensor, for losses (3DGS trains on 1 - SSIM)."""
    coordinates = torch.arange(window, dtype=image.dtype, device=image.device) - (window - 1) / 2
    gauss = torch.exp(-coordinates.square() / (2 * sigma * sigma))
    gauss = gauss / gauss.sum()
    kernel = (gauss[:, None] * gauss[None, :]).expand(3, 1, window, window)

    def blur(x: Tensor) -> Tensor:
        return F.conv2d(x, kernel, groups=3)

    x, y = image.permute(2, 0, 1)[None], reference.permute(2, 0, 1)[None]
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x.square()
    var_y = blur(y * y) - mu_y.square()
    covariance = blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    numerator = (2 * mu_x * mu_y + c1) * (2 * covariance + c2)
    denominator = (mu_x.square() + mu_y.square() + c1) * (var_x + var_y + c2)
    return (numerator / denominator).mean()
