"""The 32-byte `.splat` records of web viewers (antimatter15's format).

Per splat: position float32 x3, scale float32 x3 (linear, not log), rgba uint8 x4 (rgb is the
degree-0 SH colour 0.5 + C0 * dc, a = sigmoid(opacity)), rotation uint8 x4 (the normalised
wxyz quaternion as q * 128 + 128). Colour above degree 0 is not stored, and colour,
opacity and rotation are quantised to 8 bits, so a round trip is lossy.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fieldkit.atomic import write_bytes
from fieldkit.errors import FieldkitError
from fieldkit.gaussians.checks import checked_splats, file_bytes
from fieldkit.gaussians.model import SH_C0, Splats

RECORD = np.dtype([("position", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rotation", "u1", 4)])
# an alpha byte of 0 or 255 has an infinite logit; half a step inside keeps it finite
_ALPHA_LIMIT = 0.5 / 255


def _to_bytes(values: torch.Tensor) -> np.ndarray:  # [0, 255] -> uint8, rounded and saturated
    return values.round().clamp(0, 255).to(torch.uint8).cpu().numpy()


def write_splat(splats: Splats, path: str | Path) -> None:
    """Writes `.splat` records atomically, largest and most opaque first, as the web viewers'
    converter orders them, so that a progressively loading viewer shows the bulk first."""
    with torch.no_grad():
        opacity = torch.sigmoid(splats.opacity_logits)
        order = torch.argsort(splats.log_scales.sum(dim=-1).exp() * opacity, descending=True)
        records = np.empty(len(splats), dtype=RECORD)
        records["position"] = splats.means[order].cpu().numpy()
        records["scale"] = splats.log_scales[order].exp().cpu().numpy()
        records["rgba"] = _to_bytes(torch.cat([splats.base_colours(), opacity[:, None]], dim=-1)[order] * 255)
        records["rotation"] = _to_bytes(F.normalize(splats.quaternions[order], dim=-1) * 128 + 128)
    write_bytes(path, records.tobytes())


def read_splat(path: str | Path) -> Splats:
    """Splats (SH degree 0) from `.splat` records; every problem is one FieldkitError naming the file."""
    path = Path(path)
    data = file_bytes(path)
    if len(data) % RECORD.itemsize:
        raise FieldkitError(f"{path} is not a .splat file, or is truncated: its {len(data)} bytes are not a "
                            f"whole number of {RECORD.itemsize}-byte splats")
    records = np.frombuffer(data, dtype=RECORD)
    rgba = records["rgba"].astype(np.float32) / 255
    alpha = rgba[:, 3].clip(_ALPHA_LIMIT, 1 - _ALPHA_LIMIT)
    with np.errstate(divide="ignore", invalid="ignore"):  # a zero or negative scale becomes a dropped splat
        log_scales = np.log(records["scale"])
    return checked_splats(path, records["position"], log_scales,
                          (records["rotation"].astype(np.float32) - 128) / 128, np.log(alpha / (1 - alpha)),
                          (rgba[:, :3] - 0.5) / SH_C0, np.zeros((len(records), 0, 3), dtype=np.float32))
