"""Batched pinhole cameras with OpenCV radial-tangential distortion, and ray generation.

Conventions: camera-to-world 4x4 matrices in OpenGL/Blender axes (x right, y up, the camera
looks down -z), pixel centres at +0.5, image rows counted from the top.
Dimension letters: C cameras, R rays.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import Tensor

UNDISTORT_ITERATIONS = 10
FIELD_OF_VIEW = 0.6911112070083618
"""Horizontal field of view (radians) of every camera fieldkit places itself: NeRF-Synthetic's."""


@dataclass
class Cameras:
    """C cameras, each with its own pose, intrinsics, resolution and distortion."""

    c2w: Tensor  # [C, 4, 4]
    fx: Tensor  # [C]
    fy: Tensor  # [C]
    cx: Tensor  # [C]
    cy: Tensor  # [C]
    width: Tensor  # [C] int64
    height: Tensor  # [C] int64
    distortion: Tensor  # [C, 4] k1, k2, p1, p2

    @classmethod
    def create(cls, c2w, fx, fy=None, cx=None, cy=None, width=None, height=None, distortion=None) -> "Cameras":
        """Builds cameras from tensors or numbers, broadcasting scalars to every camera."""
        c2w = torch.as_tensor(c2w, dtype=torch.float32)
        if c2w.shape[-2:] == (3, 4):
            bottom = c2w.new_tensor([0.0, 0.0, 0.0, 1.0]).expand(*c2w.shape[:-2], 1, 4)
            c2w = torch.cat([c2w, bottom], dim=-2)
        c2w = c2w.reshape(-1, 4, 4)
        count = c2w.shape[0]

        def per_camera(value, dtype=torch.float32):
            # every other tensor follows the poses' device
            value = value.to(c2w.device, dtype) if isinstance(value, Tensor) else c2w.new_tensor(value, dtype=dtype)
            return value.reshape(-1).expand(count).clone()

        width = per_camera(width, torch.int64)
        height = per_camera(height, torch.int64)
        fx = per_camera(fx)
        fy = fx.clone() if fy is None else per_camera(fy)
        cx = width.float() / 2 if cx is None else per_camera(cx)
        cy = height.float() / 2 if cy is None else per_camera(cy)
        if distortion is None:
            distortion = c2w.new_zeros(count, 4)
        distortion = torch.as_tensor(distortion, dtype=torch.float32, device=c2w.device).reshape(-1, 4).expand(count, 4).clone()
        return cls(c2w, fx, fy, cx, cy, width, height, distortion)

    @classmethod
    def from_fov(cls, c2w, width: int, height: int, camera_angle_x: float) -> "Cameras":
        """Blender-style cameras: a horizontal field of view and a centred principal point."""
        focal = 0.5 * width / math.tan(0.5 * camera_angle_x)
        return cls.create(c2w, focal, focal, width=width, height=height)

    def __len__(self) -> int:
        return self.c2w.shape[0]

    def __getitem__(self, index) -> "Cameras":
        if isinstance(index, int):
            # a one-element list keeps the camera dimension and, unlike slice(i, i + 1),
            # handles negative and out-of-range indices as Python does
            index = [index]
        return Cameras(*(getattr(self, name)[index] for name in self._fields()))

    @staticmethod
    def _fields() -> tuple[str, ...]:
        return ("c2w", "fx", "fy", "cx", "cy", "width", "height", "distortion")

    def to(self, device) -> "Cameras":
        return Cameras(*(getattr(self, name).to(device) for name in self._fields()))

    @property
    def device(self) -> torch.device:
        return self.c2w.device

    @property
    def positions(self) -> Tensor:  # [C, 3]
        return self.c2w[:, :3, 3]

    @property
    def has_distortion(self) -> bool:
        return bool(self.distortion.abs().sum() > 0)

    def downscaled(self, factor: float) -> "Cameras":
        """The same cameras with resolution and intrinsics divided by `factor`."""
        if factor == 1:
            return self
        width = torch.div(self.width, factor, rounding_mode="floor").long().clamp(min=1)
        height = torch.div(self.height, factor, rounding_mode="floor").long().clamp(min=1)
        scale_x, scale_y = width / self.width, height / self.height
        return replace(self, fx=self.fx * scale_x, fy=self.fy * scale_y, cx=self.cx * scale_x,
                       cy=self.cy * scale_y, width=width, height=height)

    def supersampled(self, samples_per_axis: int) -> "Cameras":
        """The same cameras with `samples_per_axis` times the pixels per side: each pixel of these
        cameras is one of the sub-pixels of a pixel of the originals."""
        if samples_per_axis == 1:
            return self
        return replace(self, fx=self.fx * samples_per_axis, fy=self.fy * samples_per_axis,
                       cx=self.cx * samples_per_axis, cy=self.cy * samples_per_axis,
                       width=self.width * samples_per_axis, height=self.height * samples_per_axis)

    def generate_rays(self, camera_indices: Tensor, pixel_x: Tensor, pixel_y: Tensor) -> tuple[Tensor, Tensor]:
        """World-space origins [R, 3] and unit directions [R, 3] through pixel coordinates.

        `pixel_x`/`pixel_y` are continuous image coordinates; integer pixel (i, j) has its
        centre at (i + 0.5, j + 0.5).
        """
        fx, fy = self.fx[camera_indices], self.fy[camera_indices]
        x = (pixel_x - self.cx[camera_indices]) / fx
        y = (pixel_y - self.cy[camera_indices]) / fy
        if self.has_distortion:
            x, y = undistort(x, y, self.distortion[camera_indices])
        # image y grows downwards and the camera looks down -z in OpenGL axes
        directions_cam = torch.stack([x, -y, -torch.ones_like(x)], dim=-1)  # [R, 3]
        c2w = self.c2w[camera_indices]  # [R, 4, 4]
        directions = torch.einsum("rij,rj->ri", c2w[:, :3, :3], directions_cam)
        directions = directions / directions.norm(dim=-1, keepdim=True)
        return c2w[:, :3, 3], directions

    def pixel_grid(self, index: int) -> tuple[Tensor, Tensor]:
        """Pixel-centre coordinates (x [H*W], y [H*W]) of camera `index`, row-major."""
        width, height = int(self.width[index]), int(self.height[index])
        ys, xs = torch.meshgrid(torch.arange(height, device=self.device), torch.arange(width, device=self.device),
                                indexing="ij")
        return xs.reshape(-1).float() + 0.5, ys.reshape(-1).float() + 0.5

    def image_rays(self, index: int) -> tuple[Tensor, Tensor]:
        """Origins and directions [H*W, 3] for every pixel of camera `index`, row-major."""
        pixel_x, pixel_y = self.pixel_grid(index)
        camera_indices = torch.full_like(pixel_x, index, dtype=torch.long)
        return self.generate_rays(camera_indices, pixel_x, pixel_y)


def distort(x: Tensor, y: Tensor, coefficients: Tensor) -> tuple[Tensor, Tensor]:
    """OpenCV radial-tangential model on normalised coordinates; coefficients [R, 4] = k1, k2, p1, p2."""
    k1, k2, p1, p2 = coefficients.unbind(-1)
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 * r2
    x_distorted = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    y_distorted = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return x_distorted, y_distorted


def undistort(x_distorted: Tensor, y_distorted: Tensor, coefficients: Tensor) -> tuple[Tensor, Tensor]:
    """Inverts `distort` by fixed-point iteration, as OpenCV's undistortPoints does."""
    k1, k2, p1, p2 = coefficients.unbind(-1)
    x, y = x_distorted, y_distorted
    for _ in range(UNDISTORT_ITERATIONS):
        r2 = x * x + y * y
        radial = 1 + k1 * r2 + k2 * r2 * r2
        delta_x = 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
        delta_y = p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
        x = (x_distorted - delta_x) / radial
        y = (y_distorted - delta_y) / radial
    return x, y


def _like(value, reference: Tensor) -> Tensor:
    """Numbers or a tensor as a tensor of `reference`'s dtype on its device (constants follow the cameras)."""
    return value.to(reference) if isinstance(value, Tensor) else reference.new_tensor(value)


def look_at(eye: Tensor, target: Tensor, up: Tensor | None = None) -> Tensor:
    """Camera-to-world matrices [C, 4, 4] (OpenGL axes) for cameras at `eye` [C, 3] looking at `target`."""
    eye = torch.as_tensor(eye, dtype=torch.float32).reshape(-1, 3)
    target = _like(target, eye).reshape(-1, 3).expand_as(eye)
    up = _like([0.0, 0.0, 1.0] if up is None else up, eye)
    up = up.reshape(-1, 3).expand_as(eye)
    backward = eye - target
    backward = backward / backward.norm(dim=-1, keepdim=True)
    right = torch.cross(up, backward, dim=-1)
    # a camera looking straight along `up` has no defined right vector; any perpendicular will do:
    # world x made perpendicular to the view, or world y when the view is along x
    degenerate = right.norm(dim=-1) < 1e-6
    view = backward[degenerate]  # [D, 3]
    x_perpendicular = view.new_tensor([1.0, 0.0, 0.0]) - view[:, :1] * view
    y_perpendicular = view.new_tensor([0.0, 1.0, 0.0]) - view[:, 1:2] * view
    use_y = x_perpendicular.norm(dim=-1, keepdim=True) < 0.5
    right[degenerate] = torch.where(use_y, y_perpendicular, x_perpendicular)
    right = right / right.norm(dim=-1, keepdim=True)
    true_up = torch.cross(backward, right, dim=-1)
    c2w = eye.new_zeros(eye.shape[0], 4, 4)
    c2w[:, 3, 3] = 1
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2], c2w[:, :3, 3] = right, true_up, backward, eye
    return c2w


def orbit_eyes(azimuth_degrees: Tensor, elevation_degrees: Tensor, distance: float, target=(0.0, 0.0, 0.0)) -> Tensor:
    """Camera positions [C, 3] on a sphere of radius `distance` around `target`, z up (Blender);
    azimuth 0 lies on +x, the front of fieldkit's objects."""
    azimuth, elevation = torch.deg2rad(torch.as_tensor(azimuth_degrees, dtype=torch.float32)), \
        torch.deg2rad(torch.as_tensor(elevation_degrees, dtype=torch.float32))
    azimuth, elevation = torch.broadcast_tensors(azimuth, elevation)
    direction = torch.stack([elevation.cos() * azimuth.cos(), elevation.cos() * azimuth.sin(), elevation.sin()], -1)
    return distance * direction + _like(target, direction)


def orbit_cameras(azimuth_degrees: Tensor, elevation_degrees: Tensor, distance: float, resolution: int,
                  target=(0.0, 0.0, 0.0), fov: float = FIELD_OF_VIEW) -> Cameras:
    """Square cameras at `orbit_eyes` looking at `target`: every orbit and turntable fieldkit renders."""
    eyes = orbit_eyes(azimuth_degrees, elevation_degrees, distance, target)
    return Cameras.from_fov(look_at(eyes, _like(target, eyes)), resolution, resolution, fov)


def turntable_azimuths(count: int, device: torch.device | str | None = None) -> Tensor:
    """`count` azimuths [count] in degrees, evenly around, starting at the front."""
    return torch.arange(count, dtype=torch.float32, device=device) * (360.0 / count)


def framing_distance(aabb: Tensor, fov: float = FIELD_OF_VIEW) -> float:
    """How far from the centre of `aabb` a camera keeps the whole box in view from any side."""
    return float((aabb[1] - aabb[0]).norm()) / 2 / math.sin(fov / 2)
