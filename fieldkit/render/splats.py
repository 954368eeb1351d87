"""Gaussian splat rasterization (3DGS), differentiable: native kernels where built, and their
torch reference.

`rasterize` is the one public entry point. It runs the native projection and tile rasterizer
(cuda/splats.h, through fieldkit.render.splat_native) when they are built for the tensors'
device, and the torch reference below otherwise (logged once; FIELDKIT_NATIVE=0 forces it). The
reference's pipeline is 3DGS's: project every splat (EWA splatting with the perspective
Jacobian), list the pixels inside each footprint's bounding box, sort those pixel-splat pairs
by pixel and then front to back, and alpha-composite each pixel's run of pairs. Pairs rather
than 3DGS's 16 px tiles because on a CPU the work is per pair: a tile makes every one of its
pixels visit every splat touching it, most of them far outside the splat's footprint. Conventions match gsplat's reference so that its tests can check ours:
pixel centres at +0.5, a 0.3 px low-pass added to every 2D covariance, footprints cut at
3.33 sigma, alpha clamped to 0.99 and skipped below 1/255, and a pixel stops accumulating
before the splat that would take its transmittance below 1e-4.

Cameras come in fieldkit's OpenGL axes (x right, y up, looking down -z); the projection runs
in OpenCV axes (x right, y down, looking down +z), where depth is positive and image rows
grow with y, as in gsplat.
Dimension letters: C cameras, N splats, I pixel-splat pairs.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from fieldkit.cameras import Cameras
from fieldkit.errors import FieldkitError
from fieldkit.render import splat_native
from fieldkit.render.splat_composite import ALPHA_MIN, PixelPairs, composite
from fieldkit.render.volume import RenderOutput

NEAR_PLANE = 0.01
LOW_PASS = 0.3  # px^2 added to each 2D covariance: a splat never gets thinner than about a pixel
# exp(-3.33^2 / 2) < 1/255: beyond 3.33 sigma along either axis a splat's alpha is below the
# skip threshold (gsplat's radii; pairs are cut tighter still, by each splat's opacity)
SIGMA_EXTENT = 3.33
# 3DGS clamps the Jacobian's x/z and y/z to the field of view plus 30%: a splat far outside
# the view would otherwise get a huge, unstable footprint
FOV_MARGIN = 0.3
_OPENGL_TO_OPENCV = torch.tensor([1.0, -1.0, -1.0, 1.0])


@dataclass
class Projection:
    """Splats in screen space, per camera."""

    means2d: Tensor  # [C, N, 2] pixel coordinates
    conics: Tensor  # [C, N, 3] inverse 2D covariance (a, b, c) of a x^2 + 2 b x y + c y^2
    depths: Tensor  # [C, N] camera-space z (distance along the optical axis)
    radii: Tensor  # [C, N, 2] int32 half-extent in pixels along x and y; 0 where culled


@dataclass(kw_only=True)
class SplatRenderOutput(RenderOutput):
    means2d: Tensor  # [C, N, 2]; when it requires grad, its .grad after backward drives densification
    radii: Tensor  # [C, N, 2] int32; 0 for splats that no camera pixel sees


@dataclass
class _ImageSize:
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def world_to_opencv(c2w: Tensor) -> Tensor:  # [C, 4, 4] OpenGL camera-to-world -> [C, 4, 4]
    """World-to-camera matrices in OpenCV axes (gsplat's `viewmats`)."""
    return torch.linalg.inv(c2w * _OPENGL_TO_OPENCV.to(c2w)[None, None, :])


def quaternion_to_rotation(quaternions: Tensor) -> Tensor:  # [N, 4] wxyz, any norm -> [N, 3, 3]
    w, x, y, z = F.normalize(quaternions, dim=-1).unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=-1).view(-1, 3, 3)


def covariances(quaternions: Tensor, scales: Tensor) -> Tensor:  # [N, 4], [N, 3] -> [N, 3, 3]
    """Sigma = R S S^T R^T: an ellipsoid with axis lengths `scales`, rotated by the quaternion."""
    rotation_scale = quaternion_to_rotation(quaternions) * scales[:, None, :]
    return rotation_scale @ rotation_scale.transpose(-1, -2)


def _perspective_jacobian(means_cam: Tensor, cameras: Cameras, z: Tensor) -> Tensor:  # -> [C, N, 2, 3]
    """d(pixel)/d(camera point), evaluated with x/z and y/z clamped to the widened view."""
    fx, fy, cx, cy = (value[:, None] for value in (cameras.fx, cameras.fy, cameras.cx, cameras.cy))
    width, height = cameras.width[:, None].to(fx), cameras.height[:, None].to(fy)
    margin_x, margin_y = FOV_MARGIN * 0.5 * width / fx, FOV_MARGIN * 0.5 * height / fy
    u = (means_cam[..., 0] / z).clamp(min=-cx / fx - margin_x, max=(width - cx) / fx + margin_x)
    v = (means_cam[..., 1] / z).clamp(min=-cy / fy - margin_y, max=(height - cy) / fy + margin_y)
    zero = torch.zeros_like(u)
    return torch.stack([fx / z, zero, -fx * u / z, zero, fy / z, -fy * v / z], dim=-1).view(*u.shape, 2, 3)


def project(means: Tensor, covariances3d: Tensor, cameras: Cameras) -> Projection:
    """EWA projection of splats (means [N, 3], covariances [N, 3, 3]) into every camera."""
    viewmats = world_to_opencv(cameras.c2w)
    rotation, translation = viewmats[:, :3, :3], viewmats[:, :3, 3]  # [C, 3, 3], [C, 3]
    means_cam = torch.einsum("cij,nj->cni", rotation, means) + translation[:, None, :]  # [C, N, 3]
    covariances_cam = rotation[:, None] @ covariances3d[None] @ rotation.transpose(-1, -2)[:, None]  # [C, N, 3, 3]
    depths = means_cam[..., 2]
    in_front = depths > NEAR_PLANE
    # culled splats still flow through autograd: a safe depth keeps their (unused) values finite
    z = torch.where(in_front, depths, torch.ones_like(depths))
    jacobian = _perspective_jacobian(means_cam, cameras, z)
    covariances2d = jacobian @ covariances_cam @ jacobian.transpose(-1, -2)  # [C, N, 2, 2]
    a = covariances2d[..., 0, 0] + LOW_PASS
    b = covariances2d[..., 0, 1]
    c = covariances2d[..., 1, 1] + LOW_PASS
    determinant = (a * c - b * b).clamp(min=1e-10)
    conics = torch.stack([c, -b, a], dim=-1) / determinant[..., None]
    means2d = torch.stack([cameras.fx[:, None] * means_cam[..., 0] / z + cameras.cx[:, None],
                           cameras.fy[:, None] * means_cam[..., 1] / z + cameras.cy[:, None]], dim=-1)
    return Projection(means2d, conics, depths, _radii(means2d, a, c, in_front, cameras))


@torch.no_grad()
def _radii(means2d: Tensor, variance_x: Tensor, variance_y: Tensor, in_front: Tensor, cameras: Cameras) -> Tensor:
    """Half-extents [C, N, 2] of each footprint's bounding box; 0 behind the camera or off screen."""
    radii = torch.stack([variance_x, variance_y], dim=-1).sqrt().mul(SIGMA_EXTENT).ceil()
    size = torch.stack([cameras.width, cameras.height], dim=-1)[:, None, :].to(radii)  # [C, 1, 2]
    on_screen = ((means2d + radii > 0) & (means2d - radii < size)).all(dim=-1)
    return torch.where((in_front & on_screen)[..., None], radii, torch.zeros_like(radii)).int()


def _visible_extent(projection: Projection, opacities: Tensor) -> Tensor:  # -> [C, N, 2] float half-extents
    """How far from its centre each footprint reaches along x and y before its alpha drops
    below ALPHA_MIN: o exp(-s) >= 1/255 needs the Mahalanobis term s <= ln(255 o), which for an
    opacity-0.1 splat is 2.5 sigma rather than the 3.33 of the radii. 0 where culled or too faint."""
    a, b, c = projection.conics.unbind(-1)
    determinant = (a * c - b * b).clamp(min=1e-20)
    variances = torch.stack([c, a], dim=-1) / determinant[..., None]  # the 2D covariance's diagonal
    reach = (2 * torch.log(opacities * (1 / ALPHA_MIN)).clamp(min=0))[None, :, None]
    extent = (variances * reach).sqrt() + 1e-3  # the margin absorbs rounding at the threshold
    return torch.where((projection.radii > 0).all(dim=-1, keepdim=True) & (reach > 0), extent,
                       torch.zeros_like(extent))


@torch.no_grad()
def _pixel_pairs(projection: Projection, opacities: Tensor, size: _ImageSize) -> PixelPairs:
    """Every pixel-splat pair whose pixel centre lies in the splat's visible box, sorted by
    pixel, then front to back.

    Pixels are numbered across cameras (camera * H * W + row * W + column); splats index the
    flattened [C * N] projection.
    """
    count_per_camera = projection.depths.shape[1]
    centres = projection.means2d.reshape(-1, 2)
    extent = _visible_extent(projection, opacities).reshape(-1, 2)
    limit = centres.new_tensor([size.width, size.height])
    # pixel centres sit at +0.5: column x is inside when |x + 0.5 - centre| <= extent
    low = torch.minimum((centres - extent - 0.5).ceil().clamp(min=0), limit)
    high = torch.minimum((centres + extent - 0.5).floor().clamp(min=-1) + 1, limit)
    # int32 throughout: integer division and sorting cost about half of what they do in int64
    box = torch.where((extent > 0).all(dim=-1, keepdim=True), (high - low).clamp(min=0), 0).int()  # [C * N, 2]
    # enumerating splats front to back makes the stable sort by pixel keep depth order
    by_depth = torch.argsort(projection.depths.reshape(-1), stable=True).int()
    counts = box[by_depth, 0] * box[by_depth, 1]
    splats = torch.repeat_interleave(by_depth, counts)  # [I]
    rank = torch.arange(len(splats), dtype=torch.int32, device=counts.device) - \
        torch.repeat_interleave(torch.cumsum(counts, 0, dtype=torch.int32) - counts, counts)
    box_width = box[splats, 0]
    row_in_box = torch.div(rank, box_width, rounding_mode="floor")
    corner = (splats // count_per_camera * size.height + low[splats, 1].int()) * size.width + low[splats, 0].int()
    pixels = corner + row_in_box * size.width + (rank - row_in_box * box_width)
    pixels, order = torch.sort(pixels, stable=True)
    return PixelPairs.from_sorted(pixels, splats[order].long(), size.width, size.pixels)


def _ray_lengths(cameras: Cameras, size: _ImageSize) -> Tensor:  # [C, H, W]
    """Length of each pixel's ray per unit of camera depth: converts z-depth to ray distance."""
    xs = (torch.arange(size.width, device=cameras.device) + 0.5 - cameras.cx[:, None]) / cameras.fx[:, None]
    ys = (torch.arange(size.height, device=cameras.device) + 0.5 - cameras.cy[:, None]) / cameras.fy[:, None]
    return torch.sqrt(1 + xs[:, None, :] ** 2 + ys[:, :, None] ** 2)


def _check_shapes(means: Tensor, quaternions: Tensor, scales: Tensor, opacities: Tensor, colours: Tensor,
                  cameras: Cameras) -> None:
    count = means.shape[0]
    expected = {"means": (count, 3), "quaternions": (count, 4), "scales": (count, 3), "opacities": (count,)}
    given = {"means": means, "quaternions": quaternions, "scales": scales, "opacities": opacities}
    problems = [f"{name} {tuple(given[name].shape)} (expected {shape})" for name, shape in expected.items()
                if tuple(given[name].shape) != shape]
    if tuple(colours.shape) not in ((count, 3), (len(cameras), count, 3)):
        problems.append(f"colours {tuple(colours.shape)} (expected ({count}, 3) or ({len(cameras)}, {count}, 3))")
    if problems:
        raise ValueError(f"rasterize() got mismatched shapes: {', '.join(problems)}")


def _check_cameras(cameras: Cameras) -> _ImageSize:
    if len(set(zip(cameras.width.tolist(), cameras.height.tolist()))) != 1:
        raise ValueError("rasterize() needs cameras of one resolution; render them one at a time")
    if cameras.has_distortion:
        raise FieldkitError("splats render through pinhole cameras only; these cameras have lens distortion "
                            "(undistort the images, or drop k1, k2, p1, p2)")
    return _ImageSize(int(cameras.width[0]), int(cameras.height[0]))


def rasterize(means: Tensor, quaternions: Tensor, scales: Tensor, opacities: Tensor, colours: Tensor,
              cameras: Cameras, background: Tensor) -> SplatRenderOutput:
    """Renders N splats into C cameras of one resolution.

    means [N, 3]; quaternions [N, 4] wxyz, any norm; scales [N, 3] (linear); opacities [N] in
    [0, 1]; colours [N, 3] or per camera [C, N, 3]; background [3]. Returns rgb [C, H, W, 3],
    alpha and depth (ray distance, as fields render it) [C, H, W], and the screen-space means
    [C, N, 2] and radii [C, N, 2] that densification reads.
    """
    _check_shapes(means, quaternions, scales, opacities, colours, cameras)
    size = _check_cameras(cameras)
    camera_count = len(cameras)
    colours = colours.expand(camera_count, len(means), 3)
    if splat_native.wanted(cameras, means, quaternions, scales, opacities, colours):
        projection, values = _native_project_and_composite(means, quaternions, scales, opacities, colours, cameras,
                                                           size)
    else:
        projection, values = _project_and_composite(means, quaternions, scales, opacities, colours, cameras, size)
    images = values.view(camera_count, size.height, size.width, 5)
    rgb, z_depth, alpha = images[..., :3], images[..., 3], images[..., 4]
    rgb = rgb + (1 - alpha[..., None]) * background.reshape(-1, 1, 1, 3)
    depth = z_depth / alpha.clamp(min=1e-6) * _ray_lengths(cameras, size)
    return SplatRenderOutput(rgb, alpha, depth, means2d=projection.means2d, radii=projection.radii)


def _project_and_composite(means: Tensor, quaternions: Tensor, scales: Tensor, opacities: Tensor, colours: Tensor,
                           cameras: Cameras, size: _ImageSize) -> tuple[Projection, Tensor]:
    """The torch reference: the projection, and per pixel the composited colour, z-depth and alpha."""
    camera_count = len(cameras)
    projection = project(means, covariances(quaternions, scales), cameras)
    if projection.means2d.requires_grad:
        projection.means2d.retain_grad()
    pairs = _pixel_pairs(projection, opacities.detach(), size)
    table = torch.cat([projection.means2d, projection.conics, opacities.expand(camera_count, -1)[..., None],
                       colours, projection.depths[..., None]], dim=-1).reshape(camera_count * len(means), -1)
    return projection, composite(table, pairs, camera_count * size.pixels)


def _native_project_and_composite(means: Tensor, quaternions: Tensor, scales: Tensor, opacities: Tensor,
                                  colours: Tensor, cameras: Cameras, size: _ImageSize) -> tuple[Projection, Tensor]:
    """`_project_and_composite` by the native kernels (cuda/splats.h)."""
    intrinsics = torch.stack([cameras.fx, cameras.fy, cameras.cx, cameras.cy, cameras.width.to(cameras.fx),
                              cameras.height.to(cameras.fx)], dim=-1)
    projection = Projection(*splat_native.project(means, quaternions, scales, world_to_opencv(cameras.c2w),
                                                  intrinsics))
    if projection.means2d.requires_grad:
        projection.means2d.retain_grad()
    features = torch.cat([colours, projection.depths[..., None]], dim=-1)
    values = splat_native.composite(projection.means2d, projection.conics, opacities, features, projection.depths,
                                    projection.radii, size.width, size.height)
    return projection, values.to(torch.promote_types(means.dtype, colours.dtype))
