"""The INRIA 3DGS `.ply`: one binary vertex element with a float property per parameter.

Layout (as the reference implementation writes it): x y z, nx ny nz (unused, zero),
f_dc_0..2, f_rest_0..3K-1 channel-major (every R coefficient, then G, then B), opacity as a
logit, scale_0..2 as log-scales, rot_0..3 as a wxyz quaternion. Normals are optional on
read (gsplat's exporter omits them); any numeric property type is accepted.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from fieldkit.atomic import write_bytes
from fieldkit.errors import FieldkitError
from fieldkit.gaussians.checks import checked_splats, file_bytes
from fieldkit.gaussians.model import Splats, sh_degree_for

_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
              "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
              "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}
_BYTE_ORDERS = {"binary_little_endian": "<", "binary_big_endian": ">"}
_SPLAT_PROPERTIES = ("f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
                     "rot_0", "rot_1", "rot_2", "rot_3")
_POSITION = ("x", "y", "z")


@dataclass
class _Element:
    name: str
    count: int
    properties: list[list[str]] = field(default_factory=list)  # the words after "property"


@dataclass
class _Header:
    format: str
    elements: list[_Element]
    data_offset: int


def _parse_header(data: bytes, path: Path) -> _Header:
    if not data.startswith(b"ply"):
        raise FieldkitError(f"{path} is not a PLY file (it does not start with 'ply')")
    end = data.find(b"end_header")
    newline = data.find(b"\n", end)
    if end < 0 or newline < 0:
        raise FieldkitError(f"{path} has no complete PLY header (no end_header line): truncated or not a PLY file")
    file_format, elements = "", []
    for line in data[:end].decode("ascii", errors="replace").splitlines()[1:]:
        words = line.split()
        try:
            if words and words[0] == "format":
                file_format = words[1]
            elif words and words[0] == "element":
                elements.append(_Element(words[1], int(words[2])))
                if elements[-1].count < 0:
                    raise ValueError("a negative count")
            elif words and words[0] == "property":
                if len(words) < 2:
                    raise ValueError("a property without a type")
                elements[-1].properties.append(words[1:])
        except (IndexError, ValueError):
            raise FieldkitError(f"{path} has a malformed PLY header line: {_quoted(line.strip())}") from None
    return _Header(file_format, elements, newline + 1)


def _quoted(text: str) -> str:
    """A header line in an error message: quoted, and escaped when it holds unprintable characters."""
    return f"'{text[:200]}'" if text.isprintable() else repr(text[:200])


def _vertex_dtype(header: _Header, path: Path, holding: str = "splats") -> np.dtype:
    """The numpy record type of one vertex; checks that the file is binary and vertices come first."""
    if header.format not in _BYTE_ORDERS:
        raise FieldkitError(f"{path} is a {_quoted(header.format)} PLY; {holding.rstrip('s')} files are binary "
                            f"(re-export it as binary_little_endian)")
    if not header.elements or header.elements[0].name != "vertex":
        raise FieldkitError(f"{path} does not start with a vertex element, so it holds no {holding}")
    columns = []
    for words in header.elements[0].properties:
        if words[0] == "list" or len(words) != 2 or words[0] not in _PLY_TYPES:
            raise FieldkitError(f"{path} has a vertex property {_quoted(' '.join(words))} that no "
                                f"{holding.rstrip('s')} file has")
        columns.append((words[1], _BYTE_ORDERS[header.format] + _PLY_TYPES[words[0]]))
    try:
        return np.dtype(columns)
    except ValueError as error:  # duplicate property names
        raise FieldkitError(f"{path} has an invalid vertex layout: {error}") from None


def _rest_names(names: tuple[str, ...], path: Path) -> list[str]:
    """f_rest_0..f_rest_{3K-1}, checked to be complete and to match an SH degree."""
    count = sum(name.startswith("f_rest_") for name in names)
    expected = [f"f_rest_{index}" for index in range(count)]
    if count % 3 or sh_degree_for(count // 3) is None or not set(expected) <= set(names):
        raise FieldkitError(f"{path} has {count} f_rest properties; 3DGS files have f_rest_0 to f_rest_N-1 "
                            f"with N = 0, 9, 24 or 45 (SH degree 0 to 3)")
    return expected


def _check_splat_properties(names: tuple[str, ...], path: Path) -> None:
    missing = [name for name in _POSITION + _SPLAT_PROPERTIES if name not in names]
    if set(_SPLAT_PROPERTIES) <= set(missing):
        raise FieldkitError(f"{path} is a point cloud or mesh, not Gaussian splats "
                            f"(its vertices have no f_dc, opacity, scale or rot properties)")
    if missing:
        raise FieldkitError(f"{path} is missing splat properties: {', '.join(missing)}")


def _vertices(data: bytes, header: _Header, dtype: np.dtype, path: Path, holding: str = "splats") -> np.ndarray:
    count = header.elements[0].count
    needed, available = count * dtype.itemsize, len(data) - header.data_offset
    if available < needed:
        raise FieldkitError(f"{path} is truncated: its header declares {count} {holding} ({needed} bytes) "
                            f"but only {available} bytes of data follow")
    if len(header.elements) == 1 and available > needed:
        raise FieldkitError(f"{path} holds {available} bytes of vertex data but its header declares {count} "
                            f"{holding} ({needed} bytes): a wrong vertex count or a corrupt file")
    return np.frombuffer(data, dtype=dtype, count=count, offset=header.data_offset)


def read_ply(path: str | Path) -> Splats:
    """Splats from a 3DGS `.ply`; every problem with the file is one FieldkitError naming it."""
    path = Path(path)
    data = file_bytes(path)
    header = _parse_header(data, path)
    dtype = _vertex_dtype(header, path)
    _check_splat_properties(dtype.names, path)
    rest = _rest_names(dtype.names, path)
    vertices = _vertices(data, header, dtype, path)

    def columns(*names: str) -> np.ndarray:  # [N, len(names)] float32
        table = np.empty((len(vertices), len(names)), dtype=np.float32)
        for index, name in enumerate(names):
            table[:, index] = vertices[name]
        return table

    # channel-major on disk: [N, 3, K] -> [N, K, 3]
    sh_rest = columns(*rest).reshape(len(vertices), 3, len(rest) // 3).transpose(0, 2, 1)
    return checked_splats(path, columns(*_POSITION), columns("scale_0", "scale_1", "scale_2"),
                          columns("rot_0", "rot_1", "rot_2", "rot_3"), columns("opacity")[:, 0],
                          columns("f_dc_0", "f_dc_1", "f_dc_2"), sh_rest)


def read_point_cloud(path: str | Path) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Points [N, 3] and, when the vertices have red, green and blue, colours [N, 3] in [0, 1]
    (8-bit channels are divided by 255) of a binary point cloud .ply, as COLMAP and nerfstudio
    write them."""
    path = Path(path)
    data = file_bytes(path)
    header = _parse_header(data, path)
    dtype = _vertex_dtype(header, path, "points")
    missing = [name for name in _POSITION if name not in dtype.names]
    if missing:
        raise FieldkitError(f"{path} is not a point cloud: its vertices have no {', '.join(missing)}")
    vertices = _vertices(data, header, dtype, path, "points")
    if len(vertices) == 0:
        raise FieldkitError(f"{path} holds no points")
    points = np.stack([vertices[name] for name in _POSITION], axis=-1).astype(np.float32)
    if not np.isfinite(points).all():
        raise FieldkitError(f"{path} has points that are NaN or infinite")
    if not {"red", "green", "blue"} <= set(dtype.names):
        return torch.from_numpy(points), None
    colours = np.stack([vertices[name] for name in ("red", "green", "blue")], axis=-1).astype(np.float32)
    if dtype["red"].kind == "u" and dtype["red"].itemsize == 1:
        colours /= 255
    return torch.from_numpy(points), torch.from_numpy(colours.clip(0, 1))


def write_ply(splats: Splats, path: str | Path) -> None:
    """Writes the INRIA layout (float32, little endian) atomically; reads back bit-exact."""
    count, coefficients = len(splats), splats.sh_rest.shape[1]
    names = [*_POSITION, "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2",
             *(f"f_rest_{index}" for index in range(3 * coefficients)), "opacity",
             "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    header = "".join(["ply\nformat binary_little_endian 1.0\n", f"element vertex {count}\n",
                      *(f"property float {name}\n" for name in names), "end_header\n"])
    with torch.no_grad():
        table = torch.cat([splats.means, torch.zeros_like(splats.means), splats.sh_dc,
                           splats.sh_rest.transpose(1, 2).reshape(count, -1), splats.opacity_logits[:, None],
                           splats.log_scales, splats.quaternions], dim=1)  # [N, len(names)]
    write_bytes(path, header.encode("ascii") + table.cpu().numpy().astype("<f4").tobytes())
