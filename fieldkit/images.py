"""Image files: float images [H, W, 3] in [0, 1] to 8-bit PNG, written atomically."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fieldkit.atomic import atomic_path


def to_uint8(image: torch.Tensor) -> np.ndarray:
    return (image.detach().clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)


def write_png(path: str | Path, image: torch.Tensor) -> None:
    with atomic_path(path) as temporary:
        Image.fromarray(to_uint8(image)).save(temporary, format="PNG")
