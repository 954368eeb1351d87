"""How close a student is to its teacher, on held-out synthetic views, and the teacher's own
test photos to score both against."""
from __future__ import annotations

import torch

from fieldkit.cameras import Cameras
from fieldkit.data import Dataset, load_dataset
from fieldkit.errors import FieldkitError
from fieldkit.metrics import psnr
from fieldkit.radiance import RadianceField
from fieldkit.render.volume import march
from fieldkit.rendering import turntable_around


@torch.no_grad()
def psnr_vs_teacher(teacher, student, cameras: Cameras) -> float:
    """Mean PSNR of the student's renders against the teacher's; either may be a field or splats."""
    teacher_images, student_images = teacher.render(cameras).rgb, student.render(cameras).rgb  # [C, H, W, 3]
    scores = [psnr(image.clamp(0, 1), reference.clamp(0, 1))
              for image, reference in zip(student_images, teacher_images)]
    return sum(scores) / len(scores)


@torch.no_grad()
def compare_to_teacher(teacher: RadianceField, student: RadianceField, views: int, resolution: int,
                       cameras: Cameras | None = None) -> dict:
    """psnr_vs_teacher over `cameras`, by default a turntable of `views` at `resolution` (never a
    training camera: those are random), and the RMS log-density difference at the teacher's
    visible samples of the first view."""
    cameras = turntable_around(teacher.aabb, views, resolution) if cameras is None else cameras
    origins, directions = cameras.image_rays(0)
    points = march(teacher.field.log_density, teacher.grid, *teacher.marched_rays(origins, directions),
                   teacher.step_size).points  # [M, 3]
    error = (student.field.log_density(points) - teacher.field.log_density(points)).square().mean()
    return {"psnr_vs_teacher": psnr_vs_teacher(teacher, student, cameras),
            "log_density_rmse": float(error.sqrt())}


def teacher_test_set(teacher) -> tuple[Dataset | None, str]:
    """The test split of the dataset the teacher was trained on, or None and why not."""
    source = teacher.dataset.get("source")
    if not source:
        return None, "the teacher carries no dataset: psnr_test skipped"
    try:
        return load_dataset(source, "test", background=teacher.background.tolist()), ""
    except (FieldkitError, OSError) as error:
        return None, f"the teacher's dataset cannot be read ({error}): psnr_test skipped"
