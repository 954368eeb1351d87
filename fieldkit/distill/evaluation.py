"""How close a student is to its teacher, on held-out synthetic views."""
from __future__ import annotations

import torch

from fieldkit.metrics import psnr
from fieldkit.radiance import RadianceField
from fieldkit.render.volume import sample_along_rays, visible_samples
from fieldkit.rendering import orbit_cameras


@torch.no_grad()
def compare_to_teacher(teacher: RadianceField, student: RadianceField, views: int, resolution: int) -> dict:
    """psnr_vs_teacher over a turntable (never a training camera: those are random on a
    sphere), and the RMS log-density difference at the teacher's visible samples of one view."""
    cameras = orbit_cameras(teacher.aabb, views, resolution)
    teacher_images, student_images = teacher.render(cameras).rgb, student.render(cameras).rgb  # [C, H, W, 3]
    scores = [psnr(image.clamp(0, 1), reference.clamp(0, 1)) for image, reference in zip(student_images, teacher_images)]
    origins, directions = cameras.image_rays(0)
    _, points, mask = sample_along_rays(origins, directions, teacher.grid, teacher.step_size, None)
    points = points[visible_samples(teacher.field.log_density, points, mask, teacher.step_size)]  # [M, 3]
    error = (student.field.log_density(points) - teacher.field.log_density(points)).square().mean()
    return {"psnr_vs_teacher": sum(scores) / len(scores), "log_density_rmse": float(error.sqrt())}
