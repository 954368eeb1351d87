"""Density activation shared by every architecture (PVD's treatment of density).

Every field predicts a log-density pre-activation. It is clamped to a bounded range, so that
fields of different architectures can be matched in log space without exploding values, and
turned into density with a truncated exponential, whose gradient is capped for stability
(as in instant-ngp).
"""
import torch
from torch import Tensor

LOG_DENSITY_MIN = -15.0
LOG_DENSITY_MAX = 15.0
_GRADIENT_EXPONENT_CAP = 15.0


class _TruncatedExp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return grad * torch.exp(x.clamp(max=_GRADIENT_EXPONENT_CAP))


def clamp_log_density(raw: Tensor) -> Tensor:
    return raw.clamp(LOG_DENSITY_MIN, LOG_DENSITY_MAX)


def density_from_log(log_density: Tensor) -> Tensor:
    """sigma = exp(log_density) with a truncated gradient."""
    return _TruncatedExp.apply(log_density)
