"""What `fieldkit eval-prompt` scores: an asset's turntable, a directory of images or one image,
by the evaluator (`prior.evaluator`) and by the judge (`prior.judge`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from fieldkit.errors import FieldkitError

from .evaluator import prepare, score_images
from .judge import judge_asset, judge_images

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def turntable(asset, views: int, resolution: int = 64) -> Tensor:
    """Renders [views, 3, H, W] on white around the origin, at the prior's camera distance."""
    from fieldkit.generate.views import turntable_views

    cameras = turntable_views(views, resolution).cameras
    with torch.no_grad():
        rgb = asset.render(cameras, background=torch.ones(3)).rgb  # [V, H, W, 3]
    return rgb.permute(0, 3, 1, 2).clamp(0, 1)


def _read_image(path: Path) -> Tensor:  # [3, H, W]
    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255
    except OSError as error:
        raise FieldkitError(f"cannot read image {path}: {error}") from None
    return torch.from_numpy(array).permute(2, 0, 1)


def load_images(path: Path) -> Tensor:
    """One image file, or every image in a directory -> [N, 3, 32, 32]."""
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if path.is_dir() else [path]
    if not files:
        raise FieldkitError(f"{path} holds no PNG or JPEG images")
    return torch.cat([prepare(_read_image(file)[None]) for file in files])


def evaluate_path(path: str | Path, prompt: str, views: int = 16) -> dict:
    """Scores an asset's turntable, a directory of images, or one image against `prompt`, by the
    evaluator and by the judge (which renders an asset on its own ring of views)."""
    from fieldkit.io import load

    path = Path(path)
    if not path.exists():
        raise FieldkitError(f"{path} does not exist")
    if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES:
        images = load_images(path)
        return score_images(images, prompt) | judge_images(images, prompt)
    asset = load(path)
    return score_images(turntable(asset, views), prompt) | judge_asset(asset, prompt)
