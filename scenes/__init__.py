"""Built-in procedural scenes, rendered into datasets in the Blender/NeRF-Synthetic layout.

Scenes are signed distance functions with materials (see `library`); `export` sphere-traces
them on CPU, deterministically, into `transforms_{train,val,test}.json` plus RGBA PNGs.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fieldkit.cameras import Cameras, look_at, orbit_eyes
from fieldkit.errors import FieldkitError
from fieldkit.progress import progress_bar

from .library import CAPTURES, SCENES, Capture
from .tracer import Scene, render_batches

__all__ = ["DEFAULT_SCENE", "names", "describe", "get", "capture", "export", "cached", "sample_poses",
           "forward_poses", "code_version"]

DEFAULT_SCENE = "tabletop"
CAMERA_ANGLE_X = 0.6911112070083618
"""NeRF-Synthetic's horizontal field of view, in radians."""
CAMERA_DISTANCE = 4.0
ELEVATION_DEGREES = (5.0, 80.0)
FORWARD_CENTRE, FORWARD_SIZE = (0.0, -4.0, -0.4), (1.2, 0.6)
"""A forward rig's cameras stand in a rectangle FORWARD_SIZE wide and high, centred on FORWARD_CENTRE
in the plane y = -4."""
SAMPLES_PER_AXIS = 3
"""Anti-aliasing: each pixel averages a SAMPLES_PER_AXIS^2 grid of sub-samples."""
SPLITS = ("train", "val", "test")
_SOURCES = ("sdf.py", "materials.py", "tracer.py", "library.py", "__init__.py")


def names() -> list[str]:
    """Built-in scene names, the default first."""
    return list(SCENES)


def get(name: str) -> Scene:
    if name not in SCENES:
        raise FieldkitError(f"unknown scene {name!r}: choose one of {', '.join(names())}")
    return SCENES[name]()


def capture(name: str) -> Capture:
    """How scene `name` is photographed: its image size and camera rig."""
    get(name)
    return CAPTURES.get(name, Capture())


def describe(name: str) -> str:
    """A one-line description of scene `name`."""
    return get(name).description


def code_version() -> str:
    """A digest of the scene and renderer sources: any change to them invalidates cached datasets."""
    digest = hashlib.sha256()
    for source in _SOURCES:
        digest.update((Path(__file__).parent / source).read_bytes())
    return digest.hexdigest()[:12]


def sample_poses(count: int, generator: torch.Generator) -> torch.Tensor:
    """Camera-to-world matrices [count, 4, 4] on the upper part of a sphere, looking at the origin.

    Sampling the sine of the elevation uniformly spreads cameras evenly over that spherical band.
    Each camera takes its own pair of draws, so the first k of n poses are the k poses of a k-view set.
    """
    azimuth_draw, height_draw = torch.rand(count, 2, generator=generator).unbind(-1)  # [count] each
    low, high = (math.sin(math.radians(angle)) for angle in ELEVATION_DEGREES)
    elevation = torch.rad2deg(torch.asin(low + height_draw * (high - low)))
    eye = orbit_eyes(azimuth_draw * 360, elevation, CAMERA_DISTANCE)
    return look_at(eye, torch.zeros(3))


def forward_poses(count: int, generator: torch.Generator) -> torch.Tensor:
    """Camera-to-world matrices [count, 4, 4] on the rectangle FORWARD_SIZE around FORWARD_CENTRE, all
    looking along +y, as a hand-held forward-facing (LLFF) capture; the first k of n poses are
    the poses of a k-view set, as for `sample_poses`."""
    across, up = (torch.rand(count, 2, generator=generator) - 0.5).unbind(-1)  # [count] each
    offset = torch.stack([across * FORWARD_SIZE[0], torch.zeros_like(across), up * FORWARD_SIZE[1]], dim=-1)
    eye = torch.tensor(FORWARD_CENTRE) + offset  # [count, 3]
    return look_at(eye, eye + torch.tensor([0.0, 1.0, 0.0]))


def _poses(rig: str, count: int, generator: torch.Generator) -> torch.Tensor:
    return forward_poses(count, generator) if rig == "forward" else sample_poses(count, generator)


def _split_seed(seed: int, split_index: int) -> int:
    # distinct generators per split: test views are new views from the same distribution
    return seed * len(SPLITS) + split_index


@contextlib.contextmanager
def _one_torch_thread():
    """Runs torch on one thread, then restores the caller's setting.

    The tracer issues many short element-wise ops; extra threads gain little on them, and when
    another process holds a core every op waits for a descheduled worker.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _to_png(rgba: torch.Tensor, path: Path) -> None:
    pixels = (rgba * 255).round().clamp(0, 255).to(torch.uint8).numpy()  # [H, W, 4]
    Image.fromarray(np.ascontiguousarray(pixels)).save(path)  # [H, W, 4] uint8 is RGBA


def _write_split(scene: Scene, name: str, split: str, poses: torch.Tensor, size: tuple[int, int], root: Path) -> None:
    (root / split).mkdir()
    cameras = Cameras.from_fov(poses, *size, CAMERA_ANGLE_X)
    index = 0
    with progress_bar(f"rendering {name} {split}", total=len(poses)) as advance:
        for images in render_batches(scene, cameras, SAMPLES_PER_AXIS):
            for image in images:
                _to_png(image, root / split / f"r_{index}.png")
                index += 1
                advance()
    frames = [{"file_path": f"./{split}/r_{i}", "transform_matrix": pose.tolist()} for i, pose in enumerate(poses)]
    aabb = [list(corner) for corner in scene.bounds]
    meta = {"camera_angle_x": CAMERA_ANGLE_X, "aabb": aabb, "scene": name, "frames": frames}
    (root / f"transforms_{split}.json").write_text(json.dumps(meta, indent=2))


def export(name: str, out_dir: str | os.PathLike, *, resolution: int | None = None, train_views: int = 100,
           val_views: int = 10, test_views: int = 20, seed: int = 0) -> Path:
    """Renders scene `name` into a NeRF-Synthetic style dataset at `out_dir` and returns its path.

    `resolution` is the image width (default: the scene's `capture`); the height follows its aspect.

    The dataset is rendered into a temporary sibling directory and renamed into place, so an
    interrupted export never leaves a partial dataset. `out_dir` must be absent or empty.
    """
    scene, out_dir, chosen = get(name), Path(out_dir), capture(name)
    resolution = chosen.resolution if resolution is None else resolution
    size = (resolution, max(1, round(resolution * chosen.aspect)))  # width, height
    if resolution < 1 or min(train_views, val_views, test_views) < 0:
        raise FieldkitError(f"cannot export {resolution}x{resolution} images with {train_views}/{val_views}/"
                            f"{test_views} views: the resolution must be positive and view counts not negative")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FieldkitError(f"{out_dir} already exists and is not empty: choose a new directory or remove it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        staging.chmod(0o755)  # mkdtemp makes it private; a dataset is meant to be shared
        counts = (train_views, val_views, test_views)
        with _one_torch_thread():
            for split_index, (split, count) in enumerate(zip(SPLITS, counts)):
                generator = torch.Generator().manual_seed(_split_seed(seed, split_index))
                _write_split(scene, name, split, _poses(chosen.rig, count, generator), size, staging)
        try:
            os.replace(staging, out_dir)  # replaces an empty directory, fails on a filled one
        except OSError as error:
            raise FieldkitError(f"{out_dir} was filled by someone else during the export ({error})") from None
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return out_dir


def cache_root() -> Path:
    return Path(os.environ.get("FIELDKIT_CACHE", Path.home() / ".cache" / "fieldkit"))


def cached(name: str, *, resolution: int | None = None, train_views: int = 100, val_views: int = 10,
           test_views: int = 20, seed: int = 0) -> Path:
    """The dataset `export` would write, from the cache (FIELDKIT_CACHE, default ~/.cache/fieldkit).

    Keyed by every argument and `code_version()`; exported on first use.
    """
    resolution = capture(name).resolution if resolution is None else resolution  # an unknown name fails here
    key = f"{name}-{resolution}px-{train_views}-{val_views}-{test_views}-seed{seed}-{code_version()}"
    path = cache_root() / "scenes" / key
    if not (path / "transforms_train.json").exists():
        try:
            export(name, path, resolution=resolution, train_views=train_views, val_views=val_views,
                   test_views=test_views, seed=seed)
        except FieldkitError:
            # another process may have finished the same export first; its result is as good
            if not (path / "transforms_train.json").exists():
                raise
    return path
