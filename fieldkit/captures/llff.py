"""LLFF captures (`poses_bounds.npy`, images in DIR/images/) as a transforms document: each row
holds a 3x5 matrix (the camera's down, right and backward axes, its position, and height, width
and focal length) and the near and far bounds of the scene along that camera's view.
Dimension letters: C cameras.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from fieldkit.errors import FieldkitError

POSES_NAME = "poses_bounds.npy"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def is_llff(root: Path) -> bool:
    return (root / POSES_NAME).is_file()


def _poses(path: Path) -> np.ndarray:  # [C, 17]
    try:
        array = np.load(path, allow_pickle=False)  # an object array would need unpickling: refused
    except (ValueError, OSError, EOFError) as error:
        raise FieldkitError(f"{path} is not a readable .npy array ({str(error).splitlines()[0][:80]})") from None
    if array.ndim != 2 or array.shape[1] != 17 or array.shape[0] == 0 or not np.issubdtype(array.dtype, np.number):
        raise FieldkitError(f"{path}: expected a numeric array of shape [cameras, 17], got {array.dtype} {array.shape}")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise FieldkitError(f"{path} holds NaN or infinite numbers")
    return array


def _frustum_corners(c2w: np.ndarray, near: float, far: float, width: float, height: float,
                     focal: float) -> np.ndarray:  # [8, 3]
    """The corners of a camera's view between its near and far bounds (OpenGL axes)."""
    x, y = width / 2 / focal, height / 2 / focal
    directions = np.array([[sx * x, sy * y, -1.0] for sx in (-1, 1) for sy in (-1, 1)])  # [4, 3]
    world = directions @ c2w[:3, :3].T  # [4, 3] per unit depth
    return np.concatenate([c2w[:3, 3] + depth * world for depth in (near, far)])


def read_llff(root: Path) -> dict:
    """A transforms document for the capture at `root` (image paths relative to `root`); the scene
    bounds hold every camera's view between its near and far bounds, and "nearest_bound" is the
    nearest of the near bounds (where NDC starts, fieldkit.ndc)."""
    array = _poses(root / POSES_NAME)
    folder = root / "images"
    names = sorted(path.name for path in folder.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES) \
        if folder.is_dir() else []
    if len(names) != len(array):
        raise FieldkitError(f"{root / POSES_NAME} holds {len(array)} cameras but {folder} holds {len(names)} images "
                            "(PNG or JPEG); they must match one to one, in name order")
    matrices, bounds = array[:, :15].reshape(-1, 3, 5), array[:, 15:]
    if not (bounds[:, 0] > 0).all() or not (bounds[:, 1] > bounds[:, 0]).all():
        raise FieldkitError(f"{root / POSES_NAME}: every camera's near bound must be positive and below its far one")
    frames, corners = [], []
    for name, matrix, (near, far) in zip(names, matrices, bounds):
        down, right, backward, position, (height, width, focal) = matrix.T
        if not (height >= 1 and width >= 1 and focal > 0):
            raise FieldkitError(f"{root / POSES_NAME}: camera of {name} has height {height:g}, width {width:g} and "
                                f"focal {focal:g}; all must be positive")
        c2w = np.eye(4)
        c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, -down, backward, position
        frames.append({"file_path": f"images/{name}", "transform_matrix": c2w.tolist(), "fl_x": focal,
                       "fl_y": focal, "w": int(round(width)), "h": int(round(height))})
        corners.append(_frustum_corners(c2w, near, far, width, height, focal))
    corners = np.concatenate(corners)
    return {"frames": frames, "aabb": [corners.min(axis=0).tolist(), corners.max(axis=0).tolist()],
            "source_format": "llff", "nearest_bound": float(bounds[:, 0].min())}
