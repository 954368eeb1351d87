"""instant-ngp snapshots (`.ingp`: zlib-compressed msgpack; `.msgpack`: plain) as fields.

A snapshot is instant-ngp's network config (`encoding`, `network`, `rgb_network`,
`dir_encoding`) with a `snapshot` section: `params_binary`, every parameter of its NerfNetwork
in one array (density MLP, colour MLP, hash grid; `params_type` says half or float), the
training box `aabb` in instant-ngp's space, and `nerf.dataset`'s `scale` and `offset`, which
map a transforms.json position p there as cycle(p * scale + offset), cycle (x, y, z) -> (y, z, x).
msgpack holds plain data, so reading a snapshot runs no code from it.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import msgpack
import numpy as np
import torch
from torch import Tensor

from fieldkit.errors import FieldkitError
from fieldkit.fields.activations import clamp_log_density
from fieldkit.fields.base import FieldOutput, GeometryVectorField
from fieldkit.fields.encodings import spherical_harmonics
from fieldkit.teachers.field_import import imported_model
from fieldkit.teachers.tcnn import TcnnHashGrid, TcnnMLP, load_flat

SNAPSHOT_SUFFIXES = (".ingp", ".msgpack")
NGP_TO_NERF_AXES = (2, 0, 1)  # instant-ngp's (x, y, z) is transforms.json's (y, z, x)
NERF_TO_NGP_AXES = (1, 2, 0)
PARAMETER_TYPES = {"__half": np.float16, "float": np.float32}
# what instant-ngp's loader assumes for transforms.json without `scale` / `offset`
DEFAULT_SCALE, DEFAULT_OFFSET = 0.33, (0.5, 0.5, 0.5)


@dataclass
class InstantNGPConfig:
    encoding: dict
    network: dict
    rgb_network: dict
    dir_encoding: dict
    scale: float = DEFAULT_SCALE
    """instant-ngp units per transforms.json unit"""
    offset: tuple = DEFAULT_OFFSET
    from_mitsuba: bool = False
    """a scene that instant-ngp did not cycle the axes of"""
    network_box: list = field(default_factory=lambda: [[0.0] * 3, [1.0] * 3])
    """the training box in instant-ngp's space: the network sees positions relative to it"""
    colour_width: int = 64


class InstantNGPField(GeometryVectorField):
    """instant-ngp's NerfNetwork on fieldkit's hash encoding. Its density MLP's 16 outputs are
    PVD's geometry vector (log-density, 15 features), the log-density moved to transforms.json
    units; its colour MLP reads those 16 outputs and the view direction's SH."""

    architecture = "instant-ngp"
    config_class = InstantNGPConfig

    def __init__(self, config: InstantNGPConfig, aabb: Tensor, where: str = "instant-ngp snapshot",
                 held: int = 2**31):
        super().__init__(config, aabb)
        self.grid = TcnnHashGrid.from_config(config.encoding, held, where)
        outputs = config.network.get("n_output_dims", 16)
        # the grid's output is padded with zeros to the density network's alignment
        self.density_mlp = TcnnMLP.from_config(config.network, self.grid.output_dim,
                                               outputs if isinstance(outputs, int) and outputs > 0 else 16, where)
        self.sh_degree = direction_degree(config.dir_encoding, where)
        rgb_inputs = self.density_mlp.padded_outputs + self.sh_degree**2
        self.colour_head = TcnnMLP.from_config(config.rgb_network, rgb_inputs, 3, where)
        if self.colour_head.padded_inputs != rgb_inputs:
            raise FieldkitError(f"{where}: its colour network's input is padded, which this reader does not know how "
                                f"to fill")
        self.log_scale = math.log(config.scale)
        self.axes = list(range(3)) if config.from_mitsuba else list(NERF_TO_NGP_AXES)
        self.register_buffer("offset", torch.tensor(config.offset, dtype=torch.float32))
        self.register_buffer("network_box", torch.tensor(config.network_box, dtype=torch.float32))

    def networks(self) -> list:
        """The modules in the order of `params_binary`."""
        return [self.density_mlp, self.colour_head, self.grid]

    def normalize(self, points: Tensor) -> Tensor:  # [N, 3] transforms.json -> [N, 3] in the network box
        ngp = (points * self.config.scale + self.offset)[:, self.axes]
        unit = (ngp - self.network_box[0]) / (self.network_box[1] - self.network_box[0])
        return unit.clamp(0.0, 1.0 - 1e-6)

    def encode(self, unit_points: Tensor) -> tuple[Tensor, Tensor]:
        encoding = self.grid(unit_points)
        raw = self.density_mlp(encoding)  # [N, 16]; column 0: log-density per instant-ngp unit
        return encoding, torch.cat([raw[:, :1] + self.log_scale, raw[:, 1:]], dim=-1)

    def output_from_geometry(self, geometry: Tensor, directions: Tensor) -> FieldOutput:
        raw = torch.cat([geometry[:, :1] - self.log_scale, geometry[:, 1:]], dim=-1)
        encoded = spherical_harmonics(directions[:, self.axes], self.sh_degree)
        rgb = torch.sigmoid(self.colour_head(torch.cat([raw, encoded], dim=-1))[:, :3])
        return FieldOutput(clamp_log_density(geometry[:, 0]), rgb, {"geometry": geometry})


def direction_degree(config: dict, where: str) -> int:
    """The SH degree of instant-ngp's direction encoding: SphericalHarmonics, alone or first in a
    Composite whose other parts encode no dimensions (no extra learnable dimensions)."""
    encoding = config
    if str(config.get("otype", "")).lower() == "composite":
        nested = config.get("nested")
        encoding = nested[0] if isinstance(nested, list) and nested and isinstance(nested[0], dict) else {}
    degree = encoding.get("degree")
    if str(encoding.get("otype", "")).lower() != "sphericalharmonics" or degree != 4:
        raise FieldkitError(f"{where}: unknown direction encoding {config!r}; fieldkit reads degree-4 "
                            f"SphericalHarmonics (instant-ngp's default)")
    return degree


def read_snapshot(path: str | Path) -> dict:
    """The snapshot's msgpack document, zlib-compressed or not."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise FieldkitError(f"cannot read {path}: {error.strerror or error}") from None
    if data[:1] == b"\x78":  # a zlib stream's header; msgpack maps start 0x8_ or 0xde / 0xdf
        try:
            data = zlib.decompress(data)
        except zlib.error as error:
            raise FieldkitError(f"{path} is not a readable instant-ngp snapshot: a truncated or damaged zlib "
                                f"stream ({error})") from None
    try:
        document = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except (ValueError, TypeError, msgpack.exceptions.UnpackException) as error:
        raise FieldkitError(f"{path} is not a readable instant-ngp snapshot: truncated or damaged msgpack "
                            f"({str(error).splitlines()[0] if str(error) else type(error).__name__})") from None
    if not isinstance(document, dict) or not isinstance(document.get("snapshot"), dict):
        raise FieldkitError(f"{path} has no 'snapshot' section: an instant-ngp network config, not a snapshot "
                            f"(save one with --save_snapshot)")
    return document


def _section(document: dict, name: str, path) -> dict:
    value = document.get(name)
    if not isinstance(value, dict):
        raise FieldkitError(f"{path}: the snapshot has no {name!r} section (not an instant-ngp NeRF snapshot, "
                            f"or a damaged one)")
    return value


def _vector(value, name: str, path) -> list[float]:
    if not (isinstance(value, (list, tuple)) and len(value) == 3 and
            all(isinstance(v, (int, float)) and math.isfinite(v) for v in value)):
        raise FieldkitError(f"{path}: snapshot {name} is {value!r}; expected three finite numbers")
    return [float(v) for v in value]


def _box(value, name: str, path) -> list[list[float]]:
    if not isinstance(value, dict):
        raise FieldkitError(f"{path}: snapshot {name} is {value!r}; expected a box with 'min' and 'max'")
    return [_vector(value.get("min"), f"{name}.min", path), _vector(value.get("max"), f"{name}.max", path)]


def snapshot_parameters(snapshot: dict, path) -> torch.Tensor:
    kind = snapshot.get("params_type", "__half")  # snapshots before params_type held halves
    blob = snapshot.get("params_binary")
    blob = blob.data if isinstance(blob, msgpack.ExtType) else blob
    if kind not in PARAMETER_TYPES or not isinstance(blob, bytes):
        raise FieldkitError(f"{path}: the snapshot's parameters are missing or of unknown type {kind!r} "
                            f"(expected params_binary of __half or float)")
    dtype = PARAMETER_TYPES[kind]
    if len(blob) % np.dtype(dtype).itemsize:
        raise FieldkitError(f"{path}: params_binary is {len(blob)} bytes, not whole {kind} values: a truncated file")
    values = torch.from_numpy(np.frombuffer(blob, dtype=dtype).astype(np.float32))
    if "n_params" in snapshot and snapshot["n_params"] != values.numel():
        raise FieldkitError(f"{path}: the snapshot says {snapshot['n_params']!r} parameters but holds "
                            f"{values.numel():,}: a damaged file")
    return values


def snapshot_field(document: dict, path) -> InstantNGPField:
    snapshot = document["snapshot"]
    if snapshot.get("mode", "Nerf") != "Nerf":
        raise FieldkitError(f"{path} is an instant-ngp {snapshot.get('mode')} snapshot; fieldkit reads NeRF ones")
    dataset = _section(snapshot, "nerf", path).get("dataset", {})
    dataset = dataset if isinstance(dataset, dict) else {}
    if dataset.get("n_extra_learnable_dims", 0):
        raise FieldkitError(f"{path}: a snapshot with per-image latent dimensions is not supported")
    scale = dataset.get("scale", DEFAULT_SCALE)
    if not isinstance(scale, (int, float)) or not scale > 0 or not math.isfinite(scale):
        raise FieldkitError(f"{path}: snapshot nerf.dataset.scale is {scale!r}; expected a positive number")
    config = InstantNGPConfig(
        encoding=_section(document, "encoding", path), network=_section(document, "network", path),
        rgb_network=_section(document, "rgb_network", path), dir_encoding=_section(document, "dir_encoding", path),
        scale=float(scale), offset=tuple(_vector(dataset.get("offset", DEFAULT_OFFSET), "nerf.dataset.offset", path)),
        from_mitsuba=bool(dataset.get("from_mitsuba", False)), network_box=_box(snapshot.get("aabb"), "aabb", path))
    network_box = torch.tensor(config.network_box)
    if not (network_box[1] > network_box[0]).all():
        raise FieldkitError(f"{path}: snapshot aabb {config.network_box} is empty")
    render_box = snapshot.get("render_aabb")
    render_box = torch.tensor(_box(render_box, "render_aabb", path)) if render_box is not None else network_box
    render_box = torch.stack([render_box[0].maximum(network_box[0]), render_box[1].minimum(network_box[1])])
    if not (render_box[1] > render_box[0]).all():
        render_box = network_box
    parameters = snapshot_parameters(snapshot, path)
    field = InstantNGPField(config, world_box(render_box, config), str(path), held=parameters.numel())
    load_flat(field.networks(), parameters, str(path))
    return field


def world_box(ngp_box: Tensor, config: InstantNGPConfig) -> Tensor:  # [2, 3] instant-ngp -> transforms.json
    axes = list(range(3)) if config.from_mitsuba else list(NGP_TO_NERF_AXES)
    return (ngp_box[:, axes] - torch.tensor(config.offset)) / config.scale


def snapshot_background(snapshot: dict) -> tuple[float, float, float]:
    """The snapshot's background colour where it is an opaque one, else white."""
    colour = snapshot.get("background_color")
    if (isinstance(colour, (list, tuple)) and len(colour) == 4 and
            all(isinstance(v, (int, float)) and math.isfinite(v) for v in colour) and colour[3] > 0):
        return tuple(min(max(float(v), 0.0), 1.0) for v in colour[:3])
    return (1.0, 1.0, 1.0)


def capture_beside(path: str | Path) -> dict:
    """The capture a snapshot was trained on, where the snapshot sits in its folder (beside its
    transforms.json): its cameras then pose and scale a conversion's views, and its test split
    scores the student, as for fieldkit's own assets. The snapshot's positions are that file's."""
    folder = Path(path).resolve().parent
    if any((folder / name).is_file() for name in ("transforms.json", "transforms_train.json")):
        return {"name": folder.name, "source": str(folder)}
    return {}


def load_snapshot(path: str | Path):
    """An instant-ngp snapshot as a renderable field (fieldkit.radiance.RadianceField)."""
    document = read_snapshot(path)
    snapshot = document["snapshot"]
    step = snapshot.get("training_step")
    metrics = {"format": "instant-ngp snapshot"} | ({"training_step": step} if isinstance(step, int) else {})
    return imported_model(snapshot_field(document, path), snapshot_background(snapshot), metrics, capture_beside(path))
