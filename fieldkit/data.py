"""Datasets of posed photos: the Blender/NeRF-Synthetic layout and the single-file
instant-ngp/nerfstudio `transforms.json`.

Both formats share one schema (top-level intrinsics, `frames[]` with `file_path` and a c2w
`transform_matrix` in OpenGL axes); they differ only in how the frames are split into
train/val/test. Dimension letters: C cameras, P pixels.
"""
from __future__ import annotations

import contextlib
import json
import math
import numbers
import os
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from fieldkit.cameras import Cameras
from fieldkit.captures import find_model, is_llff, read_colmap, read_llff
from fieldkit.captures.llff import POSES_NAME
from fieldkit.errors import FieldkitError

SPLITS = ("train", "val", "test")
SINGLE_FILE = "transforms.json"
HOLDOUT_INTERVAL = 8  # every 8th frame is held out, as nerfstudio and mip-NeRF 360 evaluate
NGP_DEFAULT_SCALE = 0.33
NGP_DEFAULT_OFFSET = 0.5
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".exr"}
SUPPORTED_CAMERA_MODELS = {"OPENCV", "PINHOLE", "SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL"}
DISTORTION_KEYS = ("k1", "k2", "p1", "p2")
# below this, the smallest eigenvalue of the mean axis projector means the axes are parallel
PARALLEL_AXES_EIGENVALUE = 1e-4
MAX_IMAGE_SIZE = 16384  # pixels per side, for declared w/h and stored images alike
# a focal length outside (size / 1000, size * 1000) pixels is a field of view above 179.9 degrees
# or below 0.06 degrees: a unit mistake (millimetres for pixels) or a damaged file
FOCAL_RANGE = (1e-3, 1e3)
# a rotation block whose determinant is below this (relative to its column lengths) is singular
SINGULAR_DETERMINANT = 1e-6
MAX_DISTORTION = 100.0  # |k1|, |k2|, |p1|, |p2|: real lenses stay well below 10


@dataclass
class Dataset:
    """One split of a scene: images composited on `background`, and one camera per image."""

    name: str
    split: str
    images: list[Tensor]  # each [H, W, 3] float32 in [0, 1]
    cameras: Cameras
    aabb: Tensor  # [2, 3] min and max corner
    background: Tensor  # [3]
    image_names: list[str]
    source: str
    point_cloud: Path | tuple[Tensor, Tensor] | None = None
    """the scene's sparse points: a .ply (nerfstudio's ply_file_path), or positions [P, 3] and
    colours [P, 3] read with the cameras (a COLMAP model's points3D)"""
    nearest_bound: float | None = None
    """an LLFF capture's nearest near bound (world units): where a forward-facing scene starts,
    which its NDC needs (fieldkit.ndc)"""

    def __len__(self) -> int:
        return len(self.images)

    def to(self, device) -> "Dataset":
        """The same split with its images, cameras and bounds on `device` (the model's)."""
        return replace(self, images=[image.to(device) for image in self.images], cameras=self.cameras.to(device),
                       aabb=self.aabb.to(device), background=self.background.to(device))

    def pixels(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Every pixel of every image as flat rgb [P, 3], camera_index [P], pixel_x [P], pixel_y [P].

        A flat table lets a training loop draw uniform random rays across images of different sizes.
        """
        grids = [self.cameras.pixel_grid(index) for index in range(len(self))]
        rgb = torch.cat([image.reshape(-1, 3) for image in self.images])  # [P, 3]
        camera_index = torch.cat([torch.full(x.shape, index, dtype=torch.long, device=x.device)
                                  for index, (x, _) in enumerate(grids)])  # [P]
        pixel_x = torch.cat([x for x, _ in grids])  # [P]
        pixel_y = torch.cat([y for _, y in grids])  # [P]
        return rgb, camera_index, pixel_x, pixel_y


@dataclass
class _Transforms:
    """A transforms file: its top-level keys and a selection of its (validated) frames."""

    path: Path
    document: dict
    frames: list[dict]
    poses: Tensor  # [C, 4, 4]
    points: tuple[Tensor, Tensor] | None = None  # sparse points read with the cameras: [P, 3] positions, colours
    nearest_bound: float | None = None  # an LLFF capture's nearest near bound

    def keys(self, index: int) -> dict:
        # a frame's own intrinsics override the file-wide ones (nerfstudio per-frame cameras)
        return {**self.document, **self.frames[index]}

    def file(self, index: int) -> str:
        # colmap2nerf run on Windows writes backslashes
        return self.frames[index]["file_path"].replace("\\", "/")

    def where(self, index: int) -> str:
        return f"{self.path} (frame {index}, {_shown(self.file(index))})"

    def stem(self, index: int) -> str:
        name = PurePosixPath(self.file(index))
        # Blender paths usually have no extension, so only strip a real image suffix
        return name.stem if name.suffix.lower() in IMAGE_SUFFIXES else name.name

    def image_path(self, index: int) -> Path:
        given = inside_dataset(self.path, self.file(index), f"{self.where(index)}: file_path")
        # Blender's file paths have no suffix: "./train/r_0" is train/r_0.png
        for candidate in (given, given.parent / (given.name + ".png")):
            if _is_file(candidate, self.where(index)):
                inside_dataset(self.path, str(candidate.resolve()), f"{self.where(index)}: file_path")
                return candidate
        raise FieldkitError(f"{self.where(index)}: missing image file {_shown(str(given))}")

    def subset(self, indices: list[int]) -> "_Transforms":
        return replace(self, frames=[self.frames[i] for i in indices], poses=self.poses[indices])


@dataclass
class _Intrinsics:
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    distortion: list[float]

    def scaled_to(self, width: int, height: int) -> "_Intrinsics":
        scale_x, scale_y = width / self.width, height / self.height
        return _Intrinsics(self.fx * scale_x, self.fy * scale_y, self.cx * scale_x, self.cy * scale_y,
                           width, height, self.distortion)


def resolve_source(source: str | os.PathLike) -> Path:
    """A dataset path on disk, or the cached directory of a built-in scene name."""
    return _resolve(source)[0]


def load_dataset(source: str | os.PathLike, split: str = "train", *, background=(1.0, 1.0, 1.0),
                 downscale: float = 1.0) -> Dataset:
    """One split of a Blender-layout directory or a `transforms.json` (file or its directory)."""
    path, name = _resolve(source)
    _check_split(split, path)
    factor = _check_downscale(downscale)
    background = _background(background)
    transforms, scene = _split_and_scene(path, split)
    if not transforms.frames:
        raise FieldkitError(f"{transforms.path}: the {split} split has no frames (of {len(scene.frames)} in the "
                            f"scene); add frames, or list them in \"{split}_filenames\"")
    image_paths = [transforms.image_path(index) for index in range(len(transforms.frames))]
    # intrinsics always follow the stored image, which may differ from the declared w/h
    cameras = _cameras(transforms, [_image_size(image_path) for image_path in image_paths]).downscaled(factor)
    images = [_read_image(image_path, background, int(cameras.width[index]), int(cameras.height[index]))
              for index, image_path in enumerate(image_paths)]
    return Dataset(name=name, split=split, images=images, cameras=cameras, aabb=_scene_aabb(scene),
                   background=background, image_names=[transforms.stem(i) for i in range(len(images))],
                   source=str(path), point_cloud=_point_cloud(scene), nearest_bound=scene.nearest_bound)


def load_cameras(path: str | os.PathLike, *, downscale: float = 1.0) -> tuple[Cameras, list[str]]:
    """Cameras and frame stems of a transforms file (every frame) or a dataset directory (its
    test split), reading at most image headers, and only where the file gives no w/h."""
    path = resolve_source(path)
    factor = _check_downscale(downscale)
    transforms = _read_transforms(path) if path.is_file() else _split_and_scene(path, "test")[0]
    cameras = _cameras(transforms, _undeclared_image_sizes(transforms)).downscaled(factor)
    return cameras, [transforms.stem(index) for index in range(len(transforms.frames))]


def _resolve(source: str | os.PathLike) -> tuple[Path, str]:
    """The dataset path and the scene's name."""
    path = Path(source)
    if path.exists():
        return path, path.resolve().name if path.is_dir() else path.resolve().parent.name
    from fieldkit import scenes  # imported lazily: built-in scenes are only needed for scene names

    names = scenes.names()
    if str(source) in names:
        return Path(scenes.cached(str(source))), str(source)
    raise FieldkitError(f"no dataset at {source} (not a path, and not a built-in scene: {', '.join(names)})")


def inside_dataset(transforms_path: Path, name: str, what: str) -> Path:
    """The path `name` (relative to the transforms file's directory) names, refused when it is
    absolute or leads outside that directory: through "..", or through a symbolic link."""
    root = transforms_path.parent.resolve()
    if "\0" in name:
        raise FieldkitError(f"{what} {_shown(name)} contains a NUL character: a damaged file")
    candidate = Path(name)
    if candidate.is_absolute() and not str(candidate).startswith(str(root) + os.sep):
        raise FieldkitError(f"{what} {_shown(name)} is an absolute path outside the dataset directory {root}; "
                            f"give image paths relative to the transforms file")
    joined = transforms_path.parent / name
    try:
        resolved = joined.resolve()
    except (OSError, RuntimeError) as error:  # a symlink loop
        raise FieldkitError(f"{what} {_shown(name)} cannot be resolved ({error})") from None
    if not resolved.is_relative_to(root):
        raise FieldkitError(f"{what} {_shown(name)} leads outside the dataset directory {root} (through '..' or a "
                            f"symbolic link); keep the dataset's files inside it")
    return joined


def _is_file(path: Path, where: str) -> bool:
    try:
        return path.is_file()
    except OSError as error:  # a name too long for the file system, ...
        raise FieldkitError(f"{where}: cannot look up {_shown(str(path))} ({error.strerror})") from None


def _shown(text: str) -> str:
    """A name from a file, in an error message: quoted when it holds characters that would break the line."""
    return text if text.isprintable() and len(text) <= 200 else repr(text[:200])


def _check_split(split: str, path: Path) -> None:
    if split not in SPLITS:
        raise FieldkitError(f"unknown split {split!r} for {path} (use train, val or test)")


def _check_downscale(downscale) -> float:
    if isinstance(downscale, bool) or not isinstance(downscale, numbers.Real) or not downscale >= 1:
        raise FieldkitError(f"downscale must be a number >= 1, got {downscale!r}")
    return float(downscale)


def _background(background) -> Tensor:
    colour = torch.as_tensor(background, dtype=torch.float32).reshape(-1)
    if colour.shape != (3,):
        raise FieldkitError(f"background must be three numbers (r, g, b), got {background!r}")
    return colour


def _split_and_scene(path: Path, split: str) -> tuple[_Transforms, _Transforms]:
    """The frames of `split`, and the frames the scene bounds are estimated from."""
    if path.is_dir() and any((path / f"transforms_{name}.json").exists() for name in SPLITS):
        transforms = _read_transforms(path / f"transforms_{split}.json")
        train_file = path / "transforms_train.json"
        # every split gets the same bounds: those of the training cameras
        return transforms, _read_transforms(train_file) if train_file.exists() else transforms
    if path.is_dir() and (find_model(path) is not None or is_llff(path)):
        scene = _capture_transforms(path)
        return _select_split(scene, split), scene
    single_file = path / SINGLE_FILE if path.is_dir() else path
    if not single_file.is_file():
        raise FieldkitError(f"{path}: no dataset here (expected {SINGLE_FILE}, or "
                            f"transforms_train.json, transforms_val.json and transforms_test.json)")
    scene = _read_transforms(single_file)
    return _select_split(scene, split), scene


def _capture_transforms(root: Path) -> _Transforms:
    """An LLFF capture's or a COLMAP model's cameras, as the transforms document they make (image
    paths relative to `root`); a COLMAP model's sparse points come along."""
    if is_llff(root):
        document = read_llff(root)
        scene = _transforms_from_document(root / POSES_NAME, document)
        scene.nearest_bound = document["nearest_bound"]
        return scene
    document, (positions, colours) = read_colmap(root)
    scene = _transforms_from_document(root / "sparse", document)
    scene.points = (torch.as_tensor(positions, dtype=torch.float32), torch.as_tensor(colours, dtype=torch.float32))
    return scene


def _read_transforms(path: Path) -> _Transforms:
    return _transforms_from_document(path, _read_json(path))


def _transforms_from_document(path: Path, document: dict) -> _Transforms:
    """The validated frames of a transforms document; `path` names it in errors, and image paths are
    relative to its folder."""
    frames = document.get("frames")
    if not isinstance(frames, list) or not frames:
        raise FieldkitError(f"{path}: no frames (expected a non-empty \"frames\" list)")
    for index, frame in enumerate(frames):
        if not isinstance(frame, dict) or not isinstance(frame.get("file_path"), str):
            raise FieldkitError(f"{path}: frame {index} has no \"file_path\"")
        # every frame's image must lie inside the dataset, whichever split is read
        inside_dataset(path, frame["file_path"].replace("\\", "/"),
                       f"{path}: frame {index} ({_shown(frame['file_path'])}): file_path")
    poses = torch.stack([_pose(path, index, frame) for index, frame in enumerate(frames)])  # [C, 4, 4]
    return _Transforms(path, document, frames, poses)


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise FieldkitError(f"{path}: file not found")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise FieldkitError(f"{path}: malformed JSON at line {error.lineno}, column {error.colno}: "
                            f"{error.msg}") from None
    except (UnicodeDecodeError, OSError) as error:
        raise FieldkitError(f"{path}: cannot read as JSON text ({error})") from None
    except (ValueError, RecursionError) as error:  # an integer of thousands of digits, or nesting too deep
        raise FieldkitError(f"{path}: cannot read as JSON ({str(error).splitlines()[0][:100]})") from None
    if not isinstance(document, dict):
        raise FieldkitError(f"{path}: expected a JSON object at the top level")
    return document


def _pose(path: Path, index: int, frame: dict) -> Tensor:  # [4, 4]
    where = f"{path}: frame {index} ({_shown(frame['file_path'])})"
    if "transform_matrix" not in frame:
        raise FieldkitError(f"{where} has no \"transform_matrix\"")
    try:
        matrix = np.asarray(frame["transform_matrix"], dtype=np.float64)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer beyond float range
        matrix = None
    with np.errstate(over="ignore"):
        if matrix is None or matrix.shape != (4, 4) or not np.isfinite(matrix.astype(np.float32)).all():
            raise FieldkitError(f"{where}: transform_matrix must be a 4x4 matrix of finite numbers")
    rotation = matrix[:3, :3]
    if not abs(np.linalg.det(rotation)) > SINGULAR_DETERMINANT * np.linalg.norm(rotation, axis=0).prod():
        raise FieldkitError(f"{where}: transform_matrix is singular (its rotation columns are zero or parallel); "
                            f"a camera-to-world matrix has three independent axes")
    return torch.as_tensor(matrix, dtype=torch.float32)


def _select_split(scene: _Transforms, split: str) -> _Transforms:
    """nerfstudio's explicit filename lists when present, else every 8th frame held out."""
    # nerfstudio sorts frames by file name before splitting, so the same frames are held out
    order = sorted(range(len(scene.frames)), key=scene.file)
    if any(f"{name}_filenames" in scene.document for name in SPLITS):
        return scene.subset(_listed_indices(scene, split, order))
    held_out = [rank % HOLDOUT_INTERVAL == 0 for rank in range(len(order))]
    return scene.subset([index for index, test in zip(order, held_out) if test == (split != "train")])


def _listed_indices(scene: _Transforms, split: str, order: list[int]) -> list[int]:
    key = f"{split}_filenames"
    if key not in scene.document and split == "val":
        key = "test_filenames"  # without a validation list, validate on the test frames
    listed = scene.document.get(key)
    if not isinstance(listed, list) or not all(isinstance(name, str) for name in listed):
        raise FieldkitError(f"{scene.path}: has filename lists, but no list of file names in \"{key}\"")
    wanted = {os.path.normpath(name.replace("\\", "/")) for name in listed}
    indices = [index for index in order if os.path.normpath(scene.file(index)) in wanted]
    found = {os.path.normpath(scene.file(index)) for index in indices}
    if wanted - found:
        raise FieldkitError(f"{scene.path}: \"{key}\" names files that no frame has: "
                            f"{', '.join(sorted(wanted - found)[:3])}")
    return indices


def _cameras(transforms: _Transforms, image_sizes: list[tuple[int, int] | None]) -> Cameras:
    """One camera per frame; `image_sizes[i]` (when given) is the stored size of frame i's image."""
    rows = [_frame_intrinsics(transforms.keys(index), size, transforms.where(index))
            for index, size in enumerate(image_sizes)]
    return Cameras.create(transforms.poses, fx=[row.fx for row in rows], fy=[row.fy for row in rows],
                          cx=[row.cx for row in rows], cy=[row.cy for row in rows],
                          width=[row.width for row in rows], height=[row.height for row in rows],
                          distortion=[row.distortion for row in rows])


def _undeclared_image_sizes(transforms: _Transforms) -> list[tuple[int, int] | None]:
    """Image header sizes, read only for frames whose w and h the file does not give."""
    return [None if _declared_size(transforms.keys(index), transforms.where(index))
            else _image_size(transforms.image_path(index)) for index in range(len(transforms.frames))]


def _frame_intrinsics(keys: dict, image_size: tuple[int, int] | None, where: str) -> _Intrinsics:
    """Intrinsics of one frame, scaled to `image_size` when the image is stored at another size."""
    camera_model = keys.get("camera_model", "OPENCV")
    if not isinstance(camera_model, str) or camera_model not in SUPPORTED_CAMERA_MODELS:
        raise FieldkitError(f"{where}: camera_model {_shown(repr(camera_model))} is not supported "
                            f"(pinhole with k1, k2, p1, p2 distortion only)")
    width, height = _declared_size(keys, where) or image_size
    fx = _focal(keys, "fl_x", "camera_angle_x", width, where)
    if fx is None:
        raise FieldkitError(f"{where}: no focal length (give fl_x, or camera_angle_x)")
    fy = _focal(keys, "fl_y", "camera_angle_y", height, where)
    cx = _number(keys, "cx", where, limit=FOCAL_RANGE[1] * width)
    cy = _number(keys, "cy", where, limit=FOCAL_RANGE[1] * height)
    intrinsics = _Intrinsics(fx=fx, fy=fx if fy is None else fy, cx=width / 2 if cx is None else cx,
                             cy=height / 2 if cy is None else cy, width=width, height=height,
                             distortion=[_number(keys, name, where, limit=MAX_DISTORTION) or 0.0
                                         for name in DISTORTION_KEYS])
    if image_size is not None and image_size != (width, height):
        _check_aspect(image_size, (width, height), where)
        intrinsics = intrinsics.scaled_to(*image_size)
    return intrinsics


def _check_aspect(stored: tuple[int, int], declared: tuple[int, int], where: str) -> None:
    """An image stored at another resolution than w x h must be a uniform rescale of it (to the pixel)."""
    (width, height), (declared_width, declared_height) = stored, declared
    if abs(declared_height * width / declared_width - height) > 1 and \
            abs(declared_width * height / declared_height - width) > 1:
        raise FieldkitError(f"{where}: the image is {width} x {height} but the file declares w x h = "
                            f"{declared_width} x {declared_height}, another shape (fix w and h, or the image)")


def _declared_size(keys: dict, where: str) -> tuple[int, int] | None:
    width, height = _number(keys, "w", where), _number(keys, "h", where)
    if width is None or height is None:
        return None
    for name, value in (("w", width), ("h", height)):
        if not value.is_integer() or not 1 <= value <= MAX_IMAGE_SIZE:
            raise FieldkitError(f"{where}: {name} must be a whole number of pixels from 1 to {MAX_IMAGE_SIZE}, "
                                f"got {value:g}")
    return int(width), int(height)


def _focal(keys: dict, focal_key: str, angle_key: str, size: int, where: str) -> float | None:
    focal, angle = _number(keys, focal_key, where), _number(keys, angle_key, where)
    if focal is None and angle is not None:
        if not 0 < angle < math.pi:
            raise FieldkitError(f"{where}: {angle_key} must be an angle in radians in (0, pi), got {angle:g}")
        focal = 0.5 * size / math.tan(0.5 * angle)
        focal_key = f"the focal length from {angle_key}"
    if focal is not None and not FOCAL_RANGE[0] * size < focal < FOCAL_RANGE[1] * size:
        raise FieldkitError(f"{where}: {focal_key} must be between {FOCAL_RANGE[0]:g} and {FOCAL_RANGE[1]:g} times "
                            f"the image size ({size} px) in pixels, got {focal:g}")
    return focal


def _number(keys: dict, name: str, where: str, limit: float = math.inf) -> float | None:
    """keys[name] as a float (None when absent), which must be a finite number of at most `limit` in size."""
    value = keys.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not abs(value) <= min(limit, 1e300):
        expected = "a number" if limit == math.inf else f"a number of at most {limit:g} in size"
        raise FieldkitError(f"{where}: {name} must be {expected}, got {_shown(repr(value))}")
    return float(value)


@contextlib.contextmanager
def _image_errors(path: Path):
    """Turns PIL's many ways of failing on a bad file into one error line naming it."""
    try:
        yield
    except FieldkitError:
        raise
    except Exception as error:  # noqa: BLE001 - PIL's decoders raise OSError, SyntaxError, zlib.error, struct.error, ...
        detail = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        raise FieldkitError(f"{path}: cannot read image ({detail})") from None


def _image_size(path: Path) -> tuple[int, int]:
    with _image_errors(path), Image.open(path) as image:  # decodes only the header
        width, height = image.size
    if not (1 <= width <= MAX_IMAGE_SIZE and 1 <= height <= MAX_IMAGE_SIZE):
        raise FieldkitError(f"{path}: the image is {width} x {height} pixels; fieldkit reads images of 1 to "
                            f"{MAX_IMAGE_SIZE} pixels a side (downscale it)")
    return width, height


def _read_image(path: Path, background: Tensor, width: int, height: int) -> Tensor:  # [H, W, 3]
    """An image composited on `background`, area-resized to width x height."""
    with _image_errors(path), Image.open(path) as image:  # decoding a truncated file fails in here
        has_alpha = "A" in image.getbands() or "transparency" in image.info
        pixels = np.asarray(image.convert("RGBA" if has_alpha else "RGB"), dtype=np.float32) / 255
    rgb = pixels[..., :3]  # [H, W, 3]
    if has_alpha:
        alpha = pixels[..., 3:]  # [H, W, 1]
        rgb = rgb * alpha + background.numpy() * (1 - alpha)
    if rgb.shape[:2] != (height, width):
        rgb = _resize_area(rgb, width, height)
    return torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32))


def _resize_area(rgb: np.ndarray, width: int, height: int) -> np.ndarray:  # [H, W, 3]
    # resizing after compositing, in float, averages the colours actually seen, with no
    # 8-bit rounding of semi-transparent pixels
    channels = [Image.fromarray(np.ascontiguousarray(rgb[..., channel])).resize((width, height), Image.Resampling.BOX)
                for channel in range(3)]
    return np.stack([np.asarray(channel) for channel in channels], axis=-1)


def _point_cloud(scene: _Transforms) -> Path | tuple[Tensor, Tensor] | None:
    """The sparse points read with the cameras, or the point cloud a transforms file names
    (nerfstudio's "ply_file_path"), which must exist."""
    if scene.points is not None and len(scene.points[0]):
        return scene.points
    if "ply_file_path" not in scene.document:
        return None
    name = scene.document["ply_file_path"]
    if not isinstance(name, str):
        raise FieldkitError(f"{scene.path}: ply_file_path must be a file name, got {_shown(repr(name))}")
    path = inside_dataset(scene.path, name.replace("\\", "/"), f"{scene.path}: ply_file_path")
    if not path.is_file():
        raise FieldkitError(f"{scene.path}: ply_file_path names {_shown(str(path))}, which does not exist")
    return path


def _scene_aabb(scene: _Transforms) -> Tensor:  # [2, 3]
    """An explicit "aabb", else instant-ngp's aabb_scale box, else an estimate from the cameras."""
    if "aabb" in scene.document:
        return _explicit_aabb(scene.document["aabb"], scene.path)
    if "aabb_scale" in scene.document:
        return _ngp_aabb(scene.document, scene.path)
    return _camera_aabb(_cameras(scene, _undeclared_image_sizes(scene)), scene.path)


def _explicit_aabb(value, path: Path) -> Tensor:  # [2, 3]
    try:
        aabb = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        aabb = None
    if aabb is None or aabb.shape != (2, 3) or not np.isfinite(aabb).all() or not (aabb[0] < aabb[1]).all():
        raise FieldkitError(f"{path}: \"aabb\" must be [[x0, y0, z0], [x1, y1, z1]] with min < max")
    return torch.as_tensor(aabb, dtype=torch.float32)


def _ngp_aabb(document: dict, path: Path) -> Tensor:  # [2, 3]
    """instant-ngp's box: the unit cube of p * scale + offset, inflated aabb_scale times, in world units."""
    where = str(path)
    aabb_scale = _number(document, "aabb_scale", where)
    scale = _number(document, "scale", where)
    scale = NGP_DEFAULT_SCALE if scale is None else scale
    if not aabb_scale or aabb_scale <= 0 or scale == 0:
        raise FieldkitError(f"{path}: aabb_scale must be positive and scale non-zero")
    offset = _ngp_offset(document.get("offset", NGP_DEFAULT_OFFSET), path)  # [3]
    # instant-ngp adds the offset before cycling the axes, so it is in world axis order, and the
    # cube is the same on every axis, so the cycle itself does not change the box
    corners = (0.5 + torch.tensor([[-0.5], [0.5]]) * aabb_scale - offset) / scale  # [2, 3]
    aabb = torch.stack([corners.min(dim=0).values, corners.max(dim=0).values])
    if not torch.isfinite(aabb).all() or not (aabb[0] < aabb[1]).all():
        raise FieldkitError(f"{path}: aabb_scale {aabb_scale:g}, scale {scale:g} and offset give no finite box "
                            f"{aabb.tolist()}")
    return aabb


def _ngp_offset(value, path: Path) -> Tensor:  # [3]
    try:
        offset = torch.as_tensor(value, dtype=torch.float32).reshape(-1).expand(3)
    except (TypeError, ValueError, RuntimeError, OverflowError):
        offset = None
    if offset is None or isinstance(value, bool) or not torch.isfinite(offset).all():
        raise FieldkitError(f"{path}: offset must be a finite number or three finite numbers, "
                            f"got {_shown(repr(value))}")
    return offset


def _camera_aabb(cameras: Cameras, path: Path) -> Tensor:  # [2, 3]
    """A cube around the point the cameras look at, as wide as their median view of it."""
    origins = cameras.positions.double()  # [C, 3]
    axes = -cameras.c2w[:, :3, 2].double()  # [C, 3]
    axes = axes / axes.norm(dim=-1, keepdim=True)
    # the point closest to all axes solves sum_c (I - a a^T) p = sum_c (I - a a^T) o
    projectors = torch.eye(3, dtype=torch.float64) - axes[:, :, None] * axes[:, None, :]  # [C, 3, 3]
    system = projectors.mean(dim=0)  # [3, 3]
    if torch.linalg.eigvalsh(system).min() < PARALLEL_AXES_EIGENVALUE:
        raise FieldkitError(f"{path}: cannot estimate the scene bounds, the cameras all look the same way; "
                            f"add \"aabb\": [[x0, y0, z0], [x1, y1, z1]] to the file")
    centre = torch.linalg.solve(system, torch.einsum("cij,cj->i", projectors, origins) / len(cameras))  # [3]
    # tan of half the smaller field of view: the object's half-size that fills every view
    tan_half_fov = torch.minimum(cameras.width / (2 * cameras.fx), cameras.height / (2 * cameras.fy)).double()
    half_extent = ((origins - centre).norm(dim=-1) * tan_half_fov).median()
    if not half_extent > 0:
        raise FieldkitError(f"{path}: cannot estimate the scene bounds, the cameras sit at the point they "
                            f"look at; add \"aabb\": [[x0, y0, z0], [x1, y1, z1]] to the file")
    return torch.stack([centre - half_extent, centre + half_extent]).float()
