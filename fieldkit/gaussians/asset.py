"""Splats as a fieldkit asset: one safetensors file whose JSON header has kind "splats".

Unlike the 3DGS `.ply`, the asset keeps what a run knows about itself (metrics, dataset,
background), so `fieldkit info` and `fieldkit.load` treat splats like fields.
"""
from __future__ import annotations

from pathlib import Path

import torch

from fieldkit.asset_file import FORMAT_VERSION, box, check_descriptive_keys, check_float_tensors, colour, write_tensors
from fieldkit.errors import FieldkitError
from fieldkit.gaussians.checks import checked_splats
from fieldkit.gaussians.model import PARAMETER_NAMES, Splats


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
    """Splats from what `read_tensors` returned for an asset (or checkpoint) of splats: every
    parameter present, float32 and of consistent shape; values are taken as stored."""
    missing = [name for name in PARAMETER_NAMES if name not in tensors]
    if missing:
        raise FieldkitError(f"{path} is a splats asset without {', '.join(missing)}: a damaged file")
    check_float_tensors(tensors, PARAMETER_NAMES, path, "splat assets")
    check_descriptive_keys(header, path)
    background = colour(header, "background", path) if "background" in header else (1.0, 1.0, 1.0)
    try:
        splats = Splats(*(tensors[name] for name in PARAMETER_NAMES), background=background)
    except ValueError as error:
        raise FieldkitError(f"{path} holds inconsistent splats: {error}") from None
    splats.metrics, splats.dataset = header.get("metrics", {}), header.get("dataset", {})
    return splats


def splats_from_asset(tensors: dict[str, torch.Tensor], header: dict, path: str | Path) -> Splats:
    """The splats of an asset, checked as the `.ply` reader checks them: splats with NaN or
    infinite values are dropped with a warning (all of them: an error), zero quaternions repaired."""
    stored = splats_from_tensors(tensors, header, path)
    if "bounds" in header:
        box(header, "bounds", path, strict=False)  # recomputed from the splats; only its shape is checked
    arrays = [getattr(stored, name).detach().numpy() for name in PARAMETER_NAMES]
    splats = checked_splats(path, *arrays)
    splats.background.copy_(stored.background)
    splats.metrics, splats.dataset = stored.metrics, stored.dataset
    return splats
