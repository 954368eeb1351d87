"""Fields trained by other tools, read from their own files as fieldkit fields: instant-ngp
snapshots and nerfstudio nerfacto checkpoints. Each loads as a `RadianceField`, so it renders,
shows in the viewer and teaches `fieldkit convert` like a fieldkit asset."""
from __future__ import annotations

from pathlib import Path


def is_teacher_file(path: str | Path) -> bool:
    """Whether `path` names another tool's field: a snapshot by its suffix, a nerfstudio run by
    its layout (the run directory, its config.yml, or a checkpoint)."""
    from fieldkit.teachers.instant_ngp import SNAPSHOT_SUFFIXES
    from fieldkit.teachers.nerfacto import is_nerfstudio_run

    return Path(path).suffix.lower() in SNAPSHOT_SUFFIXES or is_nerfstudio_run(path)


def load_teacher_file(path: str | Path):
    """The field in another tool's file (see `is_teacher_file`) as a RadianceField."""
    from fieldkit.teachers.instant_ngp import SNAPSHOT_SUFFIXES, load_snapshot
    from fieldkit.teachers.nerfacto import load_nerfacto

    return load_snapshot(path) if Path(path).suffix.lower() in SNAPSHOT_SUFFIXES else load_nerfacto(path)


__all__ = ["is_teacher_file", "load_teacher_file"]
