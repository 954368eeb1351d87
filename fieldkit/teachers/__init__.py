"""Fields trained by other tools, read from their own files as fieldkit fields: instant-ngp
snapshots and nerfstudio nerfacto checkpoints. Each loads as a `RadianceField`, so it renders,
shows in the viewer and teaches `fieldkit convert` like a fieldkit asset."""
from __future__ import annotations

from pathlib import Path


def is_teacher_file(path: str | Path) -> bool:
    """Whether `path` names another tool's field: a snapshot by its suffix."""
    from fieldkit.teachers.instant_ngp import SNAPSHOT_SUFFIXES

    return Path(path).suffix.lower() in SNAPSHOT_SUFFIXES


def load_teacher_file(path: str | Path):
    """The field in another tool's file (see `is_teacher_file`) as a RadianceField."""
    from fieldkit.teachers.instant_ngp import load_snapshot

    return load_snapshot(path)


__all__ = ["is_teacher_file", "load_teacher_file"]
