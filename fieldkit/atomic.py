"""Atomic file writes: a temporary file beside the target, then a rename, so that an
interrupted run never leaves a half-written file under the final name."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from fieldkit.errors import FieldkitError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yields a temporary path in the target's directory; renames it onto `path` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        yield Path(temporary)
        # mkstemp makes owner-only files, and writers may replace the file we made: set the
        # permissions any new file would get just before the rename
        os.chmod(temporary, 0o666 & ~_current_umask())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def output_directory(path: str | os.PathLike) -> Path:
    """`path` as a directory to write into, made if missing; one clear error where a file (or
    anything else that is not a directory) already has its name."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FieldkitError(f"--out {path} is an existing file, not a directory; choose another --out")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise FieldkitError(f"cannot make the directory {path}: {error.strerror}") from None
    return path
