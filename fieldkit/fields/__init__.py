"""The five field architectures behind one interface, and their registry."""
from __future__ import annotations

import dataclasses

import torch

from fieldkit.errors import FieldkitError
from fieldkit.options import parse_setting
from fieldkit.fields import hashgrid, mlp, tensorf, voxels
from fieldkit.fields.base import Field, FieldOutput

ARCHITECTURES: dict[str, type[Field]] = {
    "mlp": mlp.MLPField,
    "hashgrid": hashgrid.HashGridField,
    "tensorf-vm": tensorf.TensoRFVMField,
    "tensorf-cp": tensorf.TensoRFCPField,
    "voxels": voxels.VoxelField,
}


def field_class(architecture: str) -> type[Field]:
    if architecture not in ARCHITECTURES:
        raise FieldkitError(f"unknown architecture '{architecture}'; choose one of: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[architecture]


def make_config(architecture: str, preset: str = "cpu", overrides: dict | None = None):
    """The preset config of an architecture with `overrides` (name -> value) applied."""
    presets = field_class(architecture).presets
    if preset not in presets:
        raise FieldkitError(f"unknown preset '{preset}' for {architecture}; choose one of: {', '.join(presets)}")
    config = presets[preset]
    known = {field.name: field for field in dataclasses.fields(config)}
    for name, value in (overrides or {}).items():
        if name not in known:
            raise FieldkitError(f"{architecture} has no setting '{name}'; settings: {', '.join(known)}")
        config = dataclasses.replace(config, **{name: parse_setting(name, value, getattr(config, name))})
    return config


def make_field(architecture: str, aabb: torch.Tensor, config=None) -> Field:
    cls = field_class(architecture)
    return cls(config if config is not None else make_config(architecture), aabb)


def build_field(architecture: str, aabb: torch.Tensor, field_config, role: str = "field") -> Field:
    """A field of `architecture`, probed once at the centre of the bounds; a config that cannot be
    built (an empty layer, a grid of no cells, more memory than there is) is one clear error."""
    try:
        field = make_field(architecture, aabb, field_config)
        if any(parameter.numel() == 0 for parameter in field.parameters()):
            raise ValueError("a setting leaves a layer with no parameters")
        with torch.no_grad():
            field(((aabb[0] + aabb[1]) / 2)[None], torch.tensor([[0.0, 0.0, 1.0]]))
    except (RuntimeError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise FieldkitError(f"this {architecture} {role} config cannot hold the scene: {reason[:160]}") from None
    return field


__all__ = ["ARCHITECTURES", "Field", "FieldOutput", "build_field", "field_class", "make_config", "make_field"]
