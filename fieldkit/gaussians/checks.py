"""Checks shared by the splat file readers: files that cannot be read become one FieldkitError
naming the file; damaged splats are repaired or dropped with a warning that says how many.

Policy: a splat with any NaN or infinite value is dropped, and so is one whose position lies
beyond +-1e8 or whose scale exceeds e^30 (finite, but no scene is that large: the framing of an
orbit, and the rasterizer's covariances, overflow float32 there); a zero quaternion (norm below the
renderer's normalisation epsilon) becomes the identity rotation; other quaternions are kept
as stored, unnormalised, because the renderer normalises them (as 3DGS does) and a round
trip must not change them.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from fieldkit.errors import FieldkitError
from fieldkit.gaussians.model import Splats

QUATERNION_EPSILON = 1e-12  # torch.nn.functional.normalize's default, which the rasterizer uses
MAX_COORDINATE = 1e8  # |x|, |y|, |z| of a splat centre
MAX_LOG_SCALE = 30.0  # a scale of e^30 = 1e13; its square is still far from float32's limit


def file_bytes(path: str | Path) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise FieldkitError(f"no splat file at {path}")
    try:
        return path.read_bytes()
    except OSError as error:
        raise FieldkitError(f"cannot read {path}: {error.strerror}") from None


def checked_splats(path: str | Path, means: np.ndarray, log_scales: np.ndarray, quaternions: np.ndarray,
                   opacity_logits: np.ndarray, sh_dc: np.ndarray, sh_rest: np.ndarray) -> Splats:
    """Splats from float32 arrays read out of `path`, after the repairs in the module docstring."""
    count = len(means)
    if count == 0:
        raise FieldkitError(f"{path} holds no splats")
    columns = [means, log_scales, quaternions, opacity_logits[:, None], sh_dc, sh_rest.reshape(count, -1)]
    finite = np.isfinite(np.concatenate(columns, axis=1)).all(axis=1)  # [N]
    with np.errstate(invalid="ignore"):
        in_range = (np.abs(means) <= MAX_COORDINATE).all(axis=1) & (log_scales <= MAX_LOG_SCALE).all(axis=1)  # [N]
    usable = finite & in_range
    if not usable.any():
        raise FieldkitError(f"{path}: every one of its {count} splats has NaN, infinite or out-of-range values")
    if not finite.all():
        warnings.warn(f"{path}: dropped {int((~finite).sum())} of {count} splats with NaN or infinite values",
                      stacklevel=3)
    if not (in_range | ~finite).all():
        warnings.warn(f"{path}: dropped {int((finite & ~in_range).sum())} of {count} splats with a position beyond "
                      f"+-{MAX_COORDINATE:g} or a scale above e^{MAX_LOG_SCALE:g}", stacklevel=3)
    tensors = [torch.from_numpy(np.ascontiguousarray(array[usable], dtype=np.float32))
               for array in (means, log_scales, quaternions, opacity_logits, sh_dc, sh_rest)]
    rotations = tensors[2]
    degenerate = rotations.norm(dim=-1) < QUATERNION_EPSILON
    if degenerate.any():
        warnings.warn(f"{path}: {int(degenerate.sum())} of {len(rotations)} splats have a zero rotation "
                      f"quaternion; using the identity rotation", stacklevel=3)
        rotations[degenerate] = torch.tensor([1.0, 0.0, 0.0, 0.0])
    return Splats(*tensors)
