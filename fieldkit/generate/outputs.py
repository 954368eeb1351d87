"""What a generation run shows and leaves besides its asset: the preview strip refreshed during
the run, the turntable animation, and the figures of metrics.json (prompt fidelity from the
built-in prior's evaluator, the judge's verdict from views the prior never trained on,
foreground saturation).
Dimension letters: C views, H, W image size.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from fieldkit.atomic import atomic_path
from fieldkit.errors import FieldkitError
from fieldkit.generate.views import turntable_views
from fieldkit.images import to_uint8, write_png

PREVIEW_VIEWS = 4
EVALUATION_VIEWS = 8
EVALUATION_RESOLUTION = 64
TURNTABLE_FPS = 12
FOREGROUND_ALPHA = 0.5


@torch.no_grad()
def render_turntable(model, count: int, resolution: int) -> tuple[Tensor, Tensor]:
    """A turntable on white -> (rgb [C, H, W, 3], alpha [C, H, W]), one view at a time."""
    views = turntable_views(count, resolution)
    outputs = [model.render(views.cameras[index]) for index in range(count)]
    return torch.cat([output.rgb for output in outputs]).clamp(0, 1), torch.cat([output.alpha for output in outputs])


def write_preview(model, path: Path, resolution: int) -> None:
    rgb, _ = render_turntable(model, PREVIEW_VIEWS, resolution)
    write_png(path, torch.cat(list(rgb), dim=1))  # [H, C*W, 3]


def write_turntable(frames: Tensor, path: Path) -> None:
    """frames [C, H, W, 3] in [0, 1] -> an animated GIF or an MP4 (by suffix), written atomically."""
    import imageio.v2 as imageio

    pixels = [to_uint8(frame) for frame in frames]
    with atomic_path(path) as temporary:
        if path.suffix == ".mp4":
            imageio.mimwrite(temporary, pixels, format="FFMPEG", fps=TURNTABLE_FPS, macro_block_size=1)
        else:
            imageio.mimwrite(temporary, pixels, format="GIF", duration=1000 / TURNTABLE_FPS, loop=0)


def foreground_saturation(rgb: Tensor, alpha: Tensor) -> float:
    """Mean HSV saturation (max - min) / max of the pixels an object covers (alpha > 0.5)."""
    high, low = rgb.amax(dim=-1), rgb.amin(dim=-1)
    saturation = (high - low) / high.clamp(min=1e-6)
    mask = alpha > FOREGROUND_ALPHA
    return float(saturation[mask].mean()) if mask.any() else 0.0


def prompt_fidelity(images: Tensor, prompt: str) -> dict:
    """The built-in prior evaluator's scores of `images` [C, 3, H, W] for `prompt`; where no evaluator
    is installed or the prompt is not one it can score, a note that says why instead."""
    from fieldkit.prior.evaluator import score_images

    try:
        return score_images(images, prompt)
    except FieldkitError as error:
        return {"note": f"not scored: {error}"}


def judge(model, prompt: str) -> dict:
    """The judge's scores (`prior.judge`) of `model` for `prompt`; where the prompt is not one it
    can judge or no judge is installed, a note that says why instead."""
    from fieldkit.prior.judge import judge_asset

    try:
        return judge_asset(model, prompt)
    except FieldkitError as error:
        return {"judge": None, "judge_note": f"not judged: {error}"}


def evaluate(model, prompt: str, score: bool = True) -> dict:
    """Prompt fidelity and the judge's verdict (when `score`), and foreground saturation over
    EVALUATION_VIEWS turntable views."""
    rgb, alpha = render_turntable(model, EVALUATION_VIEWS, EVALUATION_RESOLUTION)
    saturation = {"saturation": foreground_saturation(rgb, alpha)}
    if not score:
        return saturation
    scores = prompt_fidelity(rgb.permute(0, 3, 1, 2), prompt)
    note = {"fidelity_note": scores["note"]} if "note" in scores else {}
    return {"fidelity": scores.get("fidelity"), "fidelity_shape": scores.get("shape"),
            "fidelity_colour": scores.get("colour")} | note | judge(model, prompt) | saturation
