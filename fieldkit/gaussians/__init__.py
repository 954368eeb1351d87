"""Gaussian splats: the model, its SH colour, and the 3DGS `.ply` / web `.splat` files."""
from fieldkit.gaussians.files import (
    SPLAT_SUFFIXES,
    is_splat_file,
    load_splats,
    save_splats,
)
from fieldkit.gaussians.model import Splats

__all__ = ["SPLAT_SUFFIXES", "Splats", "is_splat_file", "load_splats", "save_splats"]
