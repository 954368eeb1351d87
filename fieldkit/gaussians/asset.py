"""Splats as a fieldkit asset: one safetensors file whose JSON header has kind "splats".

Unlike the 3DGS `.ply`, the asset keeps what a run knows about itself (metrics, dataset,
background), so `fieldkit info` and `fieldkit.load` treat splats like fields.
"""
from __future__ import annotations

from pathlib import Path

import torch

from fieldkit.errors import FieldkitError
from fieldkit.gaussians.model import PARAMETER_NAMES, Splats
from fieldkit.asset_file import FORMAT_VERSION, write_tensors


def splats_header(splats: Splats) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "kind": splats.kind,
        "architecture": splats.architecture,
        "count": len(splats),
        "sh_degree": splats.sh_degree,
        "parameters": sum(parameter.numel() for parameter in splats.parameters()),
        "bounds": splats.aabb.tolist(),
        "background": splats.background.tolist(),
        "metrics": splats.metrics,
        "dataset": splats.dataset,
    }


def splat_tensors(splats: Splats) -> dict[str, torch.Tensor]:
    return {name: getattr(splats, name) for name in PARAMETER_NAMES}


def save_splats_asset(splats: Splats, path: str | Path) -> None:
    """Writes the asset atomically."""
    write_tensors(path, splat_tensors(splats), splats_header(splats))


def splats_from_tensors(tensors: dict[str, torch.Tensor], header: dict, path: str | Path) -> Splats:
    """Splats from what `read_tensors` returned for an asset (or checkpoint) of splats."""
    missing = [name for name in PARAMETER_NAMES if name not in tensors]
    if missing:
        raise FieldkitError(f"{path} is a splats asset without {', '.join(missing)}: a damaged file")
    try:
        splats = Splats(*(tensors[name] for name in PARAMETER_NAMES), background=header.get("background", (1, 1, 1)))
    except ValueError as error:
        raise FieldkitError(f"{path} holds inconsistent splats: {error}") from None
    splats.metrics, splats.dataset = header.get("metrics", {}), header.get("dataset", {})
    return splats
