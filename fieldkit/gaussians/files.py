"""Splat files by suffix: the INRIA `.ply` (lossless) and the web viewers' `.splat` (8-bit), read and
written; glTF `.glb` (KHR_gaussian_splatting) written only, since a `.glb` read is a mesh."""
from __future__ import annotations

from pathlib import Path

from fieldkit.errors import FieldkitError
from fieldkit.gaussians.gltf import write_glb
from fieldkit.gaussians.model import Splats
from fieldkit.gaussians.ply import read_ply, write_ply
from fieldkit.gaussians.websplat import read_splat, write_splat

_READERS = {".ply": read_ply, ".splat": read_splat}
_WRITERS = {".ply": write_ply, ".splat": write_splat, ".glb": write_glb}
SPLAT_SUFFIXES = tuple(_READERS)


def is_splat_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in SPLAT_SUFFIXES


def load_splats(path: str | Path) -> Splats:
    suffix = Path(path).suffix.lower()
    if suffix not in _READERS:
        raise FieldkitError(f"{path} is not a splat file (expected one of: {', '.join(SPLAT_SUFFIXES)})")
    return _READERS[suffix](path)


def save_splats(splats: Splats, path: str | Path) -> None:
    suffix = Path(path).suffix.lower()
    if suffix not in _WRITERS:
        raise FieldkitError(f"cannot write splats to {path} (use one of: {', '.join(_WRITERS)})")
    _WRITERS[suffix](splats, path)
