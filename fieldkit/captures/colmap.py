"""COLMAP sparse models (binary or text `cameras`, `images`, `points3D`) as a transforms document:
the cameras in OpenGL axes, their intrinsics and distortion per frame, the images they name, the
scene bounds from the sparse points, and the points themselves (what 3DGS starts splats from).

Layouts read: DIR/sparse/0/, DIR/sparse/, or DIR itself holding the model; images in DIR/images/.
Dimension letters: C cameras (images), P points.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from fieldkit.errors import FieldkitError

# model id -> (name, number of parameters, the transforms keys they fill); the pinhole models with
# the radial-tangential distortion that fieldkit's cameras undistort
CAMERA_MODELS = {
    0: ("SIMPLE_PINHOLE", ("f", "cx", "cy")),
    1: ("PINHOLE", ("fl_x", "fl_y", "cx", "cy")),
    2: ("SIMPLE_RADIAL", ("f", "cx", "cy", "k1")),
    3: ("RADIAL", ("f", "cx", "cy", "k1", "k2")),
    4: ("OPENCV", ("fl_x", "fl_y", "cx", "cy", "k1", "k2", "p1", "p2")),
}
OTHER_MODELS = {5: "OPENCV_FISHEYE", 6: "FULL_OPENCV", 7: "FOV", 8: "SIMPLE_RADIAL_FISHEYE", 9: "RADIAL_FISHEYE",
                10: "THIN_PRISM_FISHEYE"}
MODEL_IDS = {name: model_id for model_id, (name, _) in CAMERA_MODELS.items()} | \
    {name: model_id for model_id, name in OTHER_MODELS.items()}
MODEL_FOLDERS = ("sparse/0", "sparse", ".")
BOUNDS_PERCENTILE = 1.0
"""The bounds ignore this percentage of the sparse points on each side of each axis: outliers."""
BOUNDS_MARGIN = 0.1
"""The bounds grow by this fraction of their size on each side, so surfaces at their edge stay in."""
MAX_COUNT = 10**8


def find_model(root: Path) -> Path | None:
    """The folder of a COLMAP model under `root`, if there is one."""
    for folder in MODEL_FOLDERS:
        candidate = root / folder
        if any((candidate / f"cameras.{suffix}").is_file() for suffix in ("bin", "txt")):
            return candidate.resolve()
    return None


class _Reader:
    """Little-endian values from a binary file, with one clear error where the file ends early."""

    def __init__(self, path: Path):
        self.path, self.data, self.at = path, path.read_bytes(), 0

    def read(self, layout: str) -> tuple:
        size = struct.calcsize("<" + layout)
        if self.at + size > len(self.data):
            raise FieldkitError(f"{self.path} ends early (truncated at byte {len(self.data)}): re-export the model")
        values = struct.unpack_from("<" + layout, self.data, self.at)
        self.at += size
        return values

    def count(self) -> int:
        (count,) = self.read("Q")
        if count > MAX_COUNT:
            raise FieldkitError(f"{self.path} claims {count} entries: not a COLMAP model, or a damaged one")
        return count

    def name(self) -> str:
        end = self.data.find(b"\0", self.at)
        if end < 0:
            raise FieldkitError(f"{self.path} ends inside an image name: re-export the model")
        name = self.data[self.at:end].decode("utf-8", errors="replace")
        self.at = end + 1
        return name


def _cameras_bin(path: Path) -> dict[int, tuple[str, int, int, list[float]]]:
    reader, cameras = _Reader(path), {}
    for _ in range(reader.count()):
        camera_id, model_id, width, height = reader.read("iiQQ")
        if model_id not in CAMERA_MODELS:
            _unsupported(path, OTHER_MODELS.get(model_id, f"model {model_id}"))
        name, keys = CAMERA_MODELS[model_id]
        cameras[camera_id] = (name, width, height, list(reader.read("d" * len(keys))))
    return cameras


def _images_bin(path: Path) -> list[tuple[str, int, np.ndarray, np.ndarray]]:
    reader, images = _Reader(path), []
    for _ in range(reader.count()):
        _, qw, qx, qy, qz, tx, ty, tz, camera_id = reader.read("idddddddi")
        name = reader.name()
        (points,) = reader.read("Q")
        if points > MAX_COUNT:
            raise FieldkitError(f"{path} claims {points} observations of {name}: a damaged model")
        reader.read("ddq" * points)
        images.append((name, camera_id, np.array([qw, qx, qy, qz]), np.array([tx, ty, tz])))
    return images


def _points_bin(path: Path) -> tuple[np.ndarray, np.ndarray]:  # [P, 3] positions, [P, 3] colours in [0, 1]
    reader, positions, colours = _Reader(path), [], []
    for _ in range(reader.count()):
        values = reader.read("QdddBBBd")
        positions.append(values[1:4])
        colours.append(values[4:7])
        (track,) = reader.read("Q")
        if track > MAX_COUNT:
            raise FieldkitError(f"{path} claims a track of {track} observations: a damaged model")
        reader.read("ii" * track)
    return np.array(positions, dtype=np.float64).reshape(-1, 3), np.array(colours, dtype=np.float64).reshape(-1, 3) / 255


def _rows(path: Path) -> list[list[str]]:
    """The non-comment lines of a text model file, split into fields."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise FieldkitError(f"cannot read {path}: {error}") from None
    return [line.split() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _numbers(row: list[str], kind, path: Path) -> list:
    try:
        return [kind(value) for value in row]
    except ValueError:
        raise FieldkitError(f"{path}: expected numbers in the line '{' '.join(row)[:80]}'") from None


def _cameras_txt(path: Path) -> dict[int, tuple[str, int, int, list[float]]]:
    cameras = {}
    for row in _rows(path):
        if len(row) < 4 or row[1] not in MODEL_IDS:
            raise FieldkitError(f"{path}: expected 'CAMERA_ID MODEL WIDTH HEIGHT PARAMS...', got '{' '.join(row)[:80]}'")
        model_id = MODEL_IDS[row[1]]
        if model_id not in CAMERA_MODELS:
            _unsupported(path, row[1])
        camera_id, width, height = _numbers([row[0], row[2], row[3]], int, path)
        params = _numbers(row[4:], float, path)
        if len(params) != len(CAMERA_MODELS[model_id][1]):
            raise FieldkitError(f"{path}: camera {camera_id} ({row[1]}) has {len(params)} parameters, "
                                f"expected {len(CAMERA_MODELS[model_id][1])}")
        cameras[camera_id] = (row[1], width, height, params)
    return cameras


def _images_txt(path: Path) -> list[tuple[str, int, np.ndarray, np.ndarray]]:
    images = []
    lines = _rows_keeping_empty(path)
    for first in lines[0::2]:  # each image has a second line: its 2D points
        if len(first) < 10:
            raise FieldkitError(f"{path}: expected 'IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME', got "
                                f"'{' '.join(first)[:80]}'")
        values = _numbers(first[1:8], float, path)
        images.append((" ".join(first[9:]), _numbers([first[8]], int, path)[0], np.array(values[:4]),
                       np.array(values[4:7])))
    return images


def _rows_keeping_empty(path: Path) -> list[list[str]]:
    """images.txt's lines, comments dropped, empty point lines kept: images come in line pairs."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise FieldkitError(f"cannot read {path}: {error}") from None
    rows = [line.split() for line in lines if not line.lstrip().startswith("#")]
    while rows and not rows[-1]:
        rows.pop()
    return rows


def _points_txt(path: Path) -> tuple[np.ndarray, np.ndarray]:
    rows = [_numbers(row[:7], float, path) for row in _rows(path) if len(row) >= 7]
    points = np.array(rows, dtype=np.float64).reshape(-1, 7)
    return points[:, 1:4], points[:, 4:7] / 255


def _unsupported(path: Path, model: str):
    raise FieldkitError(f"{path}: camera model {model} is not supported (pinhole models with k1, k2, p1, p2 "
                        "only); undistort the images with `colmap image_undistorter` first")


def _c2w_opengl(quaternion: np.ndarray, translation: np.ndarray) -> np.ndarray:  # [4, 4]
    """COLMAP's world-to-camera (OpenCV axes) as a camera-to-world matrix in OpenGL axes."""
    norm = np.linalg.norm(quaternion)
    if not np.isfinite(norm) or norm < 1e-12 or not np.isfinite(translation).all():
        raise ValueError("not a rotation")
    w, x, y, z = quaternion / norm
    rotation = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                         [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                         [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])
    c2w = np.eye(4)
    c2w[:3, :3], c2w[:3, 3] = rotation.T, -rotation.T @ translation
    c2w[:3, 1:3] *= -1  # OpenCV (y down, z forward) to OpenGL (y up, z backward)
    return c2w


def _frame_keys(model: str, width: int, height: int, params: list[float]) -> dict:
    keys = dict(zip(CAMERA_MODELS[MODEL_IDS[model]][1], params))
    if "f" in keys:
        keys["fl_x"] = keys["fl_y"] = keys.pop("f")
    return keys | {"w": width, "h": height, "camera_model": "OPENCV"}


def _bounds(positions: np.ndarray) -> list[list[float]] | None:  # [P, 3] -> [2, 3]
    if len(positions) < 8:
        return None
    low, high = np.percentile(positions, [BOUNDS_PERCENTILE, 100 - BOUNDS_PERCENTILE], axis=0)
    margin = BOUNDS_MARGIN * np.maximum(high - low, 1e-6)
    return [(low - margin).tolist(), (high + margin).tolist()]


def read_colmap(root: Path) -> tuple[dict, tuple[np.ndarray, np.ndarray]]:
    """A transforms document for the model under `root` (image paths relative to `root`), and the
    sparse points -> (document, (positions [P, 3], colours [P, 3]))."""
    model = find_model(root)
    if model is None:
        raise FieldkitError(f"{root}: no COLMAP model (cameras.bin or cameras.txt under sparse/0, sparse or here)")
    binary = (model / "cameras.bin").is_file()
    files = {name: model / f"{name}.{'bin' if binary else 'txt'}" for name in ("cameras", "images", "points3D")}
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        raise FieldkitError(f"{model}: the COLMAP model lacks {', '.join(missing)}")
    readers = (_cameras_bin, _images_bin, _points_bin) if binary else (_cameras_txt, _images_txt, _points_txt)
    cameras, images, (positions, colours) = (read(files[name]) for read, name in
                                             zip(readers, ("cameras", "images", "points3D")))
    if not images:
        raise FieldkitError(f"{files['images']} registers no image")
    image_folder = root / "images"
    frames = []
    for name, camera_id, quaternion, translation in sorted(images, key=lambda image: image[0]):
        if camera_id not in cameras:
            raise FieldkitError(f"{files['images']}: image {name} names camera {camera_id}, which {files['cameras']} "
                                "does not hold")
        try:
            c2w = _c2w_opengl(quaternion, translation)
        except ValueError:
            raise FieldkitError(f"{files['images']}: image {name} has no valid pose (a zero or non-finite "
                                "quaternion or translation)") from None
        frames.append({"file_path": (image_folder / name).relative_to(root).as_posix(),
                       "transform_matrix": c2w.tolist(), **_frame_keys(*cameras[camera_id])})
    document = {"frames": frames, "source_format": "colmap"}
    bounds = _bounds(positions)
    if bounds is not None:
        document["aabb"] = bounds
    return document, (positions, colours)
