"""Captures made by other tools, read as transforms documents: COLMAP sparse models and LLFF
`poses_bounds.npy` files."""
from fieldkit.captures.colmap import find_model, read_colmap
from fieldkit.captures.llff import is_llff, read_llff

__all__ = ["find_model", "is_llff", "read_colmap", "read_llff"]
