"""The five field architectures behind one interface, and their registry."""
from __future__ import annotations

import dataclasses

import torch

from fieldkit.errors import FieldkitError
from fieldkit.fields import hashgrid, mlp, tensorf, voxels
from fieldkit.fields.base import Field, FieldOutput

ARCHITECTURES: dict[str, type[Field]] = {
    "mlp": mlp.MLPField,
    "hashgrid": hashgrid.HashGridField,
    "tensorf-vm": tensorf.TensoRFVMField,
    "tensorf-cp": tensorf.TensoRFCPField,
    "voxels": voxels.VoxelField,
}
_PRESETS = {"mlp": mlp.PRESETS, "hashgrid": hashgrid.PRESETS, "tensorf-vm": tensorf.VM_PRESETS,
            "tensorf-cp": tensorf.CP_PRESETS, "voxels": voxels.PRESETS}


def field_class(architecture: str) -> type[Field]:
    if architecture not in ARCHITECTURES:
        raise FieldkitError(f"unknown architecture '{architecture}'; choose one of: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[architecture]


def make_config(architecture: str, preset: str = "cpu", overrides: dict | None = None):
    """The preset config of an architecture with `overrides` (name -> value) applied."""
    presets = _PRESETS[field_class(architecture).architecture]
    if preset not in presets:
        raise FieldkitError(f"unknown preset '{preset}' for {architecture}; choose one of: {', '.join(presets)}")
    config = presets[preset]
    known = {field.name: field for field in dataclasses.fields(config)}
    for name, value in (overrides or {}).items():
        if name not in known:
            raise FieldkitError(f"{architecture} has no setting '{name}'; settings: {', '.join(known)}")
        config = dataclasses.replace(config, **{name: type(getattr(config, name))(value)})
    return config


def make_field(architecture: str, aabb: torch.Tensor, config=None) -> Field:
    cls = field_class(architecture)
    return cls(config if config is not None else make_config(architecture), aabb)


__all__ = ["ARCHITECTURES", "Field", "FieldOutput", "field_class", "make_config", "make_field"]
