"""nerfstudio `nerfacto` checkpoints (a run's config.yml + nerfstudio_models/step-*.ckpt) as fields.

The field's tcnn modules are read from the checkpoint's state dict: `mlp_base_grid` (the hash
grid), `mlp_base_mlp` (to log-density and 15 features) and `mlp_head` (SH of the view direction,
the features and an appearance embedding, to rgb). Positions go through nerfacto's scene
contraction (L-infinity, into [-2, 2]^3, then [0, 1]^3) unless the run disabled it. The
proposal networks only place samples, so they are not read. nerfstudio's scene coordinates are
its capture's moved by the dataparser (dataparser_transforms.json: x -> scale * (R x + t)); the
field answers in the capture's coordinates, and fieldkit distils its scene box carried there.
"""
from __future__ import annotations

import math
import pickle
import re
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from torch import Tensor

from fieldkit.errors import FieldkitError
from fieldkit.fields.activations import clamp_log_density
from fieldkit.fields.base import FieldOutput, GeometryVectorField
from fieldkit.fields.encodings import spherical_harmonics
from fieldkit.teachers.field_import import imported_model
from fieldkit.teachers.tcnn import TcnnHashGrid, TcnnMLP, load_flat

CHECKPOINT_FOLDER = "nerfstudio_models"
PREFIX = "_model.field."
GRID, BASE, HEAD = "mlp_base_grid.tcnn_encoding.params", "mlp_base_mlp.tcnn_encoding.params", \
    "mlp_head.tcnn_encoding.params"
FUSED_BASE = "mlp_base.params"  # nerfstudio before 0.2: grid and MLP in one tcnn module
APPEARANCE = "embedding_appearance.embedding.weight"


@dataclass
class NerfactoConfig:
    """NerfactoModelConfig's field settings (nerfstudio's defaults) and NerfactoField's layer counts."""

    num_levels: int = 16
    base_res: int = 16
    max_res: int = 2048
    log2_hashmap_size: int = 19
    features_per_level: int = 2
    hidden_dim: int = 64
    hidden_dim_color: int = 64
    num_layers: int = 2
    num_layers_color: int = 3
    geo_feat_dim: int = 15
    appearance_embed_dim: int = 32
    use_average_appearance_embedding: bool = True
    disable_scene_contraction: bool = False
    average_init_density: float = 1.0
    colour_width: int = 64
    scene_box: list = field(default_factory=lambda: [[-1.0] * 3, [1.0] * 3])
    """the field's box in nerfstudio's scene coordinates (its `aabb`)"""
    world_transform: list = field(default_factory=lambda: [[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0]])
    """the dataparser's 3x4 transform from the capture's coordinates to the scene's (before its scale)"""
    world_scale: float = 1.0
    """the dataparser's scale"""


class NerfactoField(GeometryVectorField):
    """nerfacto's field on fieldkit's hash encoding: its base MLP's outputs are PVD's geometry
    vector; its head sees the direction's SH, the 15 features and the appearance embedding that
    nerfstudio renders with (the images' mean, or zeros)."""

    architecture = "nerfacto"
    config_class = NerfactoConfig

    def __init__(self, config: NerfactoConfig, appearance: Tensor | None = None, held: int = 2**31,
                 where: str = "nerfacto checkpoint"):
        transform = torch.tensor(config.world_transform, dtype=torch.float32)  # [3, 4]
        scene_box = torch.tensor(config.scene_box, dtype=torch.float32)
        super().__init__(config, capture_box(scene_box, transform, config.world_scale))
        self.register_buffer("rotation", transform[:, :3].clone())
        self.register_buffer("translation", transform[:, 3].clone())
        self.register_buffer("scene_box", scene_box)
        # nerfstudio's HashEncoding: per_level_scale from its min and max resolutions
        growth = math.exp((math.log(config.max_res) - math.log(config.base_res)) / max(config.num_levels - 1, 1))
        self.grid = TcnnHashGrid.checked(config.num_levels, config.features_per_level, config.log2_hashmap_size,
                                         config.base_res, growth, held, where)
        # a tcnn.Network starts with an identity encoding, which pads its input with ones
        self.base_mlp = TcnnMLP(self.grid.output_dim, config.hidden_dim, config.num_layers - 1,
                                1 + config.geo_feat_dim, pad_value=1.0)
        self.colour_head = TcnnMLP(16 + config.geo_feat_dim + config.appearance_embed_dim, config.hidden_dim_color,
                                   config.num_layers_color - 1, 3, pad_value=1.0)
        self.colour_head.sigmoid_output = True
        appearance = torch.zeros(config.appearance_embed_dim) if appearance is None else appearance
        self.register_buffer("appearance", appearance.float().reshape(config.appearance_embed_dim))
        # densities per unit of the capture's coordinates: the scene's are world_scale times smaller
        self.log_density_scale = math.log(config.average_init_density) + math.log(config.world_scale)

    def normalize(self, points: Tensor) -> Tensor:  # [N, 3] capture coordinates -> [N, 3] in [0, 1]
        points = self.config.world_scale * (points @ self.rotation.T + self.translation)  # scene coordinates
        if self.config.disable_scene_contraction:
            unit = (points - self.scene_box[0]) / (self.scene_box[1] - self.scene_box[0])
            return unit.clamp(0.0, 1.0 - 1e-6)
        magnitude = points.abs().amax(dim=-1, keepdim=True)  # nerfacto's contraction: the L-infinity norm
        contracted = torch.where(magnitude < 1, points, (2 - 1 / magnitude.clamp(min=1)) * points / magnitude.clamp(min=1))
        return ((contracted + 2) / 4).clamp(0.0, 1.0 - 1e-6)

    def encode(self, unit_points: Tensor) -> tuple[Tensor, Tensor]:
        encoding = self.grid(unit_points)
        raw = self.base_mlp(encoding)[:, :1 + self.config.geo_feat_dim]
        return encoding, torch.cat([raw[:, :1] + self.log_density_scale, raw[:, 1:]], dim=-1)

    def output_from_geometry(self, geometry: Tensor, directions: Tensor) -> FieldOutput:
        directions = torch.nn.functional.normalize(directions @ self.rotation.T, dim=-1)
        inputs = [spherical_harmonics(directions, 4), geometry[:, 1:], self.appearance.expand(len(geometry), -1)]
        rgb = self.colour_head(torch.cat(inputs, dim=-1))[:, :3]
        return FieldOutput(clamp_log_density(geometry[:, 0]), rgb, {"geometry": geometry})


def capture_box(scene_box: Tensor, transform: Tensor, scale: float) -> Tensor:  # [2, 3] scene -> capture
    """The box around the scene box's corners, carried back to the capture's coordinates."""
    corners = torch.cartesian_prod(*scene_box.T)  # [8, 3]
    capture = (corners / scale - transform[:, 3]) @ transform[:, :3]  # the inverse of a rotation is its transpose
    return torch.stack([capture.amin(dim=0), capture.amax(dim=0)])


SETTING_RANGES = {"num_levels": (1, 32), "base_res": (1, 2**16), "max_res": (1, 2**20), "log2_hashmap_size": (1, 30),
                  "hidden_dim": (1, 1024), "hidden_dim_color": (1, 1024), "num_layers": (1, 32),
                  "num_layers_color": (1, 32), "geo_feat_dim": (1, 256), "appearance_embed_dim": (0, 1024),
                  "average_init_density": (1e-30, 1e30)}
"""What a run's settings may be: beyond them a config is damaged (a grid would not fit in memory)."""


class _TaggedLoader(yaml.SafeLoader):
    """YAML that reads nerfstudio's `!!python/...` tags as plain data, never as objects: an
    object becomes a dict with its class under `__class__`."""


def _plain(loader: _TaggedLoader, suffix: str, node: yaml.Node):
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True) | {"__class__": suffix}
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)


_TaggedLoader.add_multi_constructor("tag:yaml.org,2002:python/", _plain)


def read_config(path: Path) -> dict:
    """A nerfstudio config.yml, its pipeline.model section checked to be nerfacto's."""
    try:
        document = yaml.load(path.read_text(), Loader=_TaggedLoader)
    except OSError as error:
        raise FieldkitError(f"cannot read {path}: {error.strerror or error}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise FieldkitError(f"{path} is not a readable nerfstudio config: {str(error).splitlines()[0]}") from None
    model = document.get("pipeline", {}).get("model") if isinstance(document, dict) else None
    if not isinstance(model, dict):
        raise FieldkitError(f"{path} has no pipeline.model section: not a nerfstudio run's config.yml")
    kind = str(model.get("__class__", ""))
    if "Nerfacto" not in kind:
        raise FieldkitError(f"{path} is a nerfstudio {kind.rpartition('.')[2] or 'unknown'} run; fieldkit reads "
                            f"nerfacto checkpoints")
    if str(model.get("implementation", "tcnn")) != "tcnn":
        raise FieldkitError(f"{path}: a nerfacto run with implementation={model['implementation']}; fieldkit reads "
                            f"the tcnn layout (nerfstudio's default)")
    return document


def model_config(model: dict, path) -> NerfactoConfig:
    """The field settings a run's model section names (nerfstudio's defaults for the rest)."""
    known = {name: spec for name, spec in NerfactoConfig.__dataclass_fields__.items()
             if name not in ("scene_box", "world_transform", "world_scale")}
    settings = {name: model[name] for name in known if name in model}
    for name, value in settings.items():
        default = known[name].default
        low, high = SETTING_RANGES.get(name, (-math.inf, math.inf))
        if (type(value) is not type(default) and not (isinstance(default, float) and type(value) is int)) or \
                (not isinstance(value, bool) and not low <= value <= high):
            raise FieldkitError(f"{path}: model setting {name} is {value!r}; expected a {type(default).__name__}"
                                + (f" from {low} to {high}" if name in SETTING_RANGES else ""))
    if settings.get("features_per_level", 2) not in (1, 2, 4, 8):
        raise FieldkitError(f"{path}: features_per_level is {settings['features_per_level']}; tcnn allows 1, 2, 4 or 8")
    return NerfactoConfig(**settings, colour_width=settings.get("hidden_dim_color", 64))


def checkpoint_paths(path: str | Path) -> tuple[Path | None, Path]:
    """(config.yml or None, the latest checkpoint) for a run directory, its config.yml or a .ckpt."""
    path = Path(path)
    if path.suffix == ".ckpt":
        config = path.parent.parent / "config.yml"
        return (config if config.exists() else None), path
    run = path if path.is_dir() else path.parent
    checkpoints = sorted(run.glob(f"{CHECKPOINT_FOLDER}/step-*.ckpt"),
                         key=lambda item: int(re.sub(r"\D", "", item.stem) or 0))
    if not checkpoints:
        raise FieldkitError(f"{run} has no {CHECKPOINT_FOLDER}/step-*.ckpt: train the nerfacto run first, or name "
                            f"its checkpoint")
    config = run / "config.yml"
    return (config if config.exists() else None), checkpoints[-1]


def read_state(path: Path) -> dict[str, Tensor]:
    """The pipeline's state dict from a checkpoint, keys without DDP's `module.` prefix."""
    try:
        # weights_only: a checkpoint is untrusted input, and unpickling could run its code
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as error:
        raise FieldkitError(f"cannot read {path}: {error.strerror or error}") from None
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError, KeyError) as error:
        raise FieldkitError(f"{path} is not a readable nerfstudio checkpoint (truncated, damaged, or holding "
                            f"objects other than tensors): {str(error).splitlines()[0][:160]}") from None
    state = checkpoint.get("pipeline") if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise FieldkitError(f"{path} has no 'pipeline' state: not a nerfstudio checkpoint")
    return {name.removeprefix("module."): value for name, value in state.items() if isinstance(value, Tensor)}


def _tensor(state: dict, name: str, path) -> Tensor:
    if PREFIX + name not in state:
        raise FieldkitError(f"{path} has no {PREFIX + name}: not a nerfacto checkpoint in the tcnn layout")
    return state[PREFIX + name].float()


def read_dataparser_transform(run: Path) -> dict:
    """The run's dataparser_transforms.json as config settings (none where the run has none)."""
    path = run / "dataparser_transforms.json"
    if not path.is_file():
        return {}
    try:
        document = json.loads(path.read_text())
        transform, scale = document["transform"], float(document["scale"])
        matrix = torch.tensor(transform, dtype=torch.float64)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise FieldkitError(f"{path} is not a readable dataparser transform: {str(error)[:120]}") from None
    if matrix.shape != (3, 4) or not torch.isfinite(matrix).all() or not scale > 0 or not math.isfinite(scale):
        raise FieldkitError(f"{path}: expected a finite 3x4 'transform' and a positive 'scale'")
    return {"world_transform": matrix.tolist(), "world_scale": scale}


def nerfacto_field(config: NerfactoConfig, state: dict, path) -> NerfactoField:
    box = _tensor(state, "aabb", path)
    if box.numel() != 6 or not torch.isfinite(box).all() or not (box.reshape(2, 3)[1] > box.reshape(2, 3)[0]).all():
        raise FieldkitError(f"{path}: the field's aabb is {box.tolist()}, not a box of 2 x 3 finite numbers")
    config = dataclasses.replace(config, scene_box=box.reshape(2, 3).tolist())
    appearance = None
    if config.appearance_embed_dim and config.use_average_appearance_embedding:
        embedding = _tensor(state, APPEARANCE, path)
        if embedding.dim() != 2 or embedding.shape[1] != config.appearance_embed_dim or not len(embedding):
            raise FieldkitError(f"{path}: the appearance embedding is {list(embedding.shape)}, not [images, "
                                f"{config.appearance_embed_dim}] as the config says")
        appearance = embedding.mean(dim=0)
    fused = state.get(PREFIX + FUSED_BASE)
    grid = fused if fused is not None else _tensor(state, GRID, path)
    field = NerfactoField(config, appearance, held=grid.numel(), where=str(path))
    if fused is not None:  # NetworkWithInputEncoding: the network's parameters, then the grid's
        field.base_mlp.pad_value = 0.0  # there the grid itself pads the network's input, with zeros
        load_flat([field.base_mlp, field.grid], state[PREFIX + FUSED_BASE].float().reshape(-1), f"{path} mlp_base")
    else:
        load_flat([field.grid], _tensor(state, GRID, path).reshape(-1), f"{path} mlp_base_grid")
        load_flat([field.base_mlp], _tensor(state, BASE, path).reshape(-1), f"{path} mlp_base_mlp")
    load_flat([field.colour_head], _tensor(state, HEAD, path).reshape(-1), f"{path} mlp_head")
    return field


def capture_of(document: dict) -> dict:
    """The capture a run was trained on (its dataparser's `data`), where fieldkit can read it."""
    datamanager = document.get("pipeline", {}).get("datamanager", {})
    data = datamanager.get("data") or datamanager.get("dataparser", {}).get("data")
    data = Path(*data) if isinstance(data, list) else Path(str(data)) if data else None
    if data is not None and data.is_dir() and (data / "transforms.json").is_file():
        return {"name": data.name, "source": str(data)}
    return {}


def load_nerfacto(path: str | Path):
    """A nerfacto run (its directory, config.yml or a step-*.ckpt) as a renderable field, in the
    coordinates of the capture it was trained on where the run says how (dataparser_transforms.json)."""
    config_path, checkpoint = checkpoint_paths(path)
    document = read_config(config_path) if config_path is not None else {}
    model = document.get("pipeline", {}).get("model", {})
    config = model_config(model, config_path or checkpoint)
    config = dataclasses.replace(config, **read_dataparser_transform(checkpoint.parent.parent))
    background = (0.0, 0.0, 0.0) if str(model.get("background_color")) == "black" else (1.0, 1.0, 1.0)
    field = nerfacto_field(config, read_state(checkpoint), checkpoint)
    return imported_model(field, background, {"format": "nerfstudio nerfacto", "checkpoint": checkpoint.name},
                          capture_of(document))


def is_nerfstudio_run(path: str | Path) -> bool:
    """A nerfstudio run directory, its config.yml, or one of its checkpoints."""
    path = Path(path)
    if path.suffix == ".ckpt":
        return True
    if path.name == "config.yml":
        return (path.parent / CHECKPOINT_FOLDER).is_dir()
    return path.is_dir() and (path / CHECKPOINT_FOLDER).is_dir()
