"""The asset file format: one safetensors file, its JSON header under the metadata key "fieldkit".

Reading returns tensors and JSON only: nothing is ever unpickled.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from fieldkit.atomic import atomic_path
from fieldkit.errors import FieldkitError

FORMAT_VERSION = 1
HEADER_KEY = "fieldkit"


def write_tensors(path: str | Path, tensors: dict[str, torch.Tensor], header: dict) -> None:
    """Writes tensors and a JSON header (stamped with the format version) atomically."""
    contiguous = {name: tensor.detach().contiguous().cpu() for name, tensor in tensors.items()}
    header = {"format_version": FORMAT_VERSION} | header
    with atomic_path(path) as temporary:
        save_file(contiguous, str(temporary), metadata={HEADER_KEY: json.dumps(header)})


def read_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Reads a fieldkit safetensors file -> (tensors, header); one clear error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise FieldkitError(f"no asset at {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except Exception as error:  # safetensors raises its own error types for truncated or foreign bytes
        raise FieldkitError(f"{path} is not a readable safetensors file (truncated or another format): "
                            f"{str(error).splitlines()[0]}") from None
    if HEADER_KEY not in metadata:
        raise FieldkitError(f"{path} is a safetensors file but not a fieldkit asset (no '{HEADER_KEY}' header)")
    try:
        header = json.loads(metadata[HEADER_KEY])
    except json.JSONDecodeError as error:
        raise FieldkitError(f"{path} has a corrupt fieldkit header: {error}") from None
    version = header.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise FieldkitError(f"{path} has asset format version {version!r}; this fieldkit reads up to "
                            f"{FORMAT_VERSION} (upgrade fieldkit)")
    return tensors, header
