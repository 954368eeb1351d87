"""The asset file format: one safetensors file, its JSON header under the metadata key "fieldkit".

Reading returns tensors and JSON only: nothing is ever unpickled. A file that is not a
safetensors file (a .glb, a PNG, a JSON file, ...) is named for what it is, and a header that
is not a JSON object is refused here; what each kind of asset needs from its header is
checked where that kind is loaded (`fieldkit.io`, `fieldkit.gaussians.asset`), with the
helpers at the end of this module.
"""
from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from fieldkit.atomic import atomic_path
from fieldkit.errors import FieldkitError

FORMAT_VERSION = 1
HEADER_KEY = "fieldkit"
MAX_COORDINATE = 1e8  # bounds beyond this overflow float32 when a camera frames them
# what other files start with, for a clear "this is a ..., not a fieldkit asset"
_MAGIC = ((b"glTF", "a binary glTF (.glb) mesh"), (b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"),
          (b"GIF8", "a GIF image"), (b"ply", "a PLY file (a 3DGS .ply loads under its .ply name)"),
          (b"PK\x03\x04", "a zip archive (a PyTorch .pt/.pth checkpoint? fieldkit never unpickles)"),
          (b"\x80\x02", "a Python pickle (fieldkit never unpickles)"),
          (b"\x80\x04", "a Python pickle (fieldkit never unpickles)"),
          (b"\x93NUMPY", "a NumPy .npy array"), (b"\x1f\x8b", "a gzip archive"), (b"%PDF", "a PDF document"))
_OBJ_KEYWORDS = (b"v ", b"vt ", b"vn ", b"f ", b"o ", b"g ", b"mtllib ", b"usemtl ")


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
    _check_safetensors_prefix(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except Exception as error:  # safetensors raises its own error types for truncated or foreign bytes
        raise FieldkitError(f"{path} is not a readable safetensors file (truncated or another format): "
                            f"{_first_line(error)}") from None
    if HEADER_KEY not in metadata:
        raise FieldkitError(f"{path} is a safetensors file but not a fieldkit asset (no '{HEADER_KEY}' header)")
    try:
        header = json.loads(metadata[HEADER_KEY])
    except (ValueError, RecursionError) as error:  # ValueError: JSONDecodeError and over-long integers
        raise FieldkitError(f"{path} has a corrupt fieldkit header: {_first_line(error)}") from None
    if not isinstance(header, dict):
        raise FieldkitError(f"{path} has a fieldkit header that is a JSON {type(header).__name__}, not an object: "
                            f"a damaged file (re-save the asset)")
    version = header.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1 or version > FORMAT_VERSION:
        raise FieldkitError(f"{path} has asset format version {_shown(version)}; this fieldkit reads 1 to "
                            f"{FORMAT_VERSION} (upgrade fieldkit)")
    return tensors, header


def _check_safetensors_prefix(path: Path) -> None:
    """safetensors reads the first 8 bytes as the length of a JSON header: say what a file is when
    they are not (a .glb would otherwise be "header too large")."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
            size = handle.seek(0, 2)
    except OSError as error:
        raise FieldkitError(f"cannot read {path}: {error.strerror}") from None
    if len(head) >= 9:
        (length,) = struct.unpack("<Q", head[:8])
        if 0 < length <= size - 8 and head[8:9] == b"{":
            return
    what = _looks_like(head)
    if what:
        raise FieldkitError(f"{path} is {what}, not a fieldkit asset (fieldkit assets are .safetensors files "
                            f"that fieldkit train, convert or generate wrote)")
    detail = "it is empty" if not head else f"its first 8 bytes are not a safetensors header length ({size} bytes)"
    raise FieldkitError(f"{path} is not a readable safetensors file (truncated or another format): {detail}")


def _looks_like(head: bytes) -> str | None:
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return what
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text[:1] in (b"{", b"["):
        return "a JSON text file"
    if text.startswith(b"#") or text.startswith(_OBJ_KEYWORDS):
        return "a text file (a Wavefront .obj mesh?)"
    return None


def _first_line(error: BaseException) -> str:
    lines = str(error).splitlines()
    return lines[0] if lines else type(error).__name__


def _shown(value) -> str:
    """A header value in an error message: short, and on one line."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# -- header checks shared by the loaders: each failure is one line naming the file and the key ----

def header_error(path, key: str, expected: str, value) -> FieldkitError:
    return FieldkitError(f"{path}: header '{key}' must be {expected}, got {_shown(value)}: a damaged or foreign "
                         f"asset (re-save it with fieldkit)")


def header_section(header: dict, key: str, path) -> dict:
    """header[key], which must be a JSON object."""
    if key not in header:
        raise FieldkitError(f"{path} has an incomplete fieldkit header (no '{key}'): a damaged asset (re-save it)")
    value = header[key]
    if not isinstance(value, dict):
        raise header_error(path, key, "a JSON object", value)
    return value


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def finite_number(section: dict, key: str, path, prefix: str = "", *, low: float = -math.inf,
                  high: float = math.inf, low_open: bool = False, default=None) -> float:
    """section[key]: a finite number in [low, high] (or (low, high] with low_open)."""
    name = prefix + key
    if key not in section:
        if default is not None:
            return default
        raise FieldkitError(f"{path} has an incomplete fieldkit header (no '{name}'): a damaged asset (re-save it)")
    value = section[key]
    if not is_number(value) or not _finite(value) or value < low or value > high or (low_open and value == low):
        raise header_error(path, name, _range_text(low, high, low_open), value)
    return float(value)


def _range_text(low: float, high: float, low_open: bool) -> str:
    if high == math.inf:
        if low == -math.inf:
            return "a finite number"
        return "a positive number" if (low, low_open) == (0, True) else \
            f"a finite number {'>' if low_open else '>='} {low:g}"
    return f"a number in {'(' if low_open else '['}{low:g}, {high:g}]"


def whole_number(section: dict, key: str, path, prefix: str = "", *, low: int = 0, high: int = 2**31 - 1) -> int:
    """section[key]: an integer in [low, high] (JSON 3.0 counts as 3)."""
    name = prefix + key
    if key not in section:
        raise FieldkitError(f"{path} has an incomplete fieldkit header (no '{name}'): a damaged asset (re-save it)")
    value = section[key]
    if isinstance(value, float) and _finite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise header_error(path, name, f"a whole number in [{low}, {high}]", value)
    return value


def colour(section: dict, key: str, path, prefix: str = ""):
    """section[key]: three numbers in [0, 1]."""
    value = section[key]
    if not isinstance(value, list) or len(value) != 3 or \
            not all(is_number(x) and _finite(x) and 0 <= x <= 1 for x in value):
        raise header_error(path, prefix + key, "three numbers in [0, 1] (r, g, b)", value)
    return [float(x) for x in value]


def box(header: dict, key: str, path, *, strict: bool = True) -> list[list[float]]:
    """header[key]: [[x0, y0, z0], [x1, y1, z1]], finite with min < max (or only its shape, unless strict)."""
    value = header[key]
    rows_ok = isinstance(value, list) and len(value) == 2 and \
        all(isinstance(row, list) and len(row) == 3 and all(is_number(x) for x in row) for row in value)
    if rows_ok and strict:
        rows_ok = all(_finite(x) and abs(x) <= MAX_COORDINATE for row in value for x in row) and \
            all(a < b for a, b in zip(*value))
    if not rows_ok:
        expected = f"[[x0, y0, z0], [x1, y1, z1]] with min < max, within +-{MAX_COORDINATE:g}" if strict else \
            "[[x0, y0, z0], [x1, y1, z1]]"
        raise header_error(path, key, expected, value)
    return [[float(x) for x in row] for row in value]


def check_descriptive_keys(header: dict, path) -> None:
    """What `fieldkit info` prints and converters read back: metrics, dataset and parameters."""
    for key in ("metrics", "dataset"):
        if key in header and not isinstance(header[key], dict):
            raise header_error(path, key, "a JSON object", header[key])
    for key in ("name", "source"):
        value = header.get("dataset", {}).get(key)
        if value is not None and not isinstance(value, str):
            raise header_error(path, f"dataset.{key}", "a string", value)
    if "parameters" in header:
        whole_number(header, "parameters", path, high=2**62)


def check_float_tensors(tensors: dict[str, torch.Tensor], names, path, what: str = "fieldkit assets") -> None:
    """Every named tensor is float32 (a float64 or integer tensor is a damaged or foreign file)."""
    for name in names:
        if tensors[name].dtype != torch.float32:
            raise FieldkitError(f"{path}: tensor '{name}' is {str(tensors[name].dtype).removeprefix('torch.')}; "
                                f"{what} store it as float32 (a damaged or foreign file)")


def _finite(value) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond float range
        return False
