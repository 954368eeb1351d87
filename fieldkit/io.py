"""Fields and splats to and from asset files (see `fieldkit.asset_file` for the format).

Loading validates before it builds: every header value that shapes the model is checked for
type and range, and the parameter count its config implies is compared with what the file
holds before anything is allocated, so a damaged header can neither crash deep inside torch
nor ask for terabytes. `describe` runs the same validation for `fieldkit info`.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch

from fieldkit.asset_file import (FORMAT_VERSION, box, check_descriptive_keys, colour, finite_number, header_error,
                                 header_section, read_tensors, whole_number, write_tensors)
from fieldkit.errors import FieldkitError
from fieldkit.fields import field_class
from fieldkit.gaussians import Splats, is_splat_file, load_splats
from fieldkit.gaussians.asset import splats_from_asset
from fieldkit.mesh import Mesh, is_mesh_file, load_mesh
from fieldkit.ndc import space_from_header
from fieldkit.radiance import RadianceField
from fieldkit.teachers import is_teacher_file, load_teacher_file
from fieldkit.render.occupancy import OccupancyGrid

MAX_OCCUPANCY_RESOLUTION = 1024  # 1024^3 cells: 5 GB of grid; trained assets use 64 to 256
MAX_SAMPLES_PER_DIAGONAL = 65536  # a smaller step would march for ever
# integer config settings whose range is narrower than (0, 2^24): loop counts and exponents
CONFIG_LIMITS = {"frequencies": (0, 64), "depth": (1, 64), "levels": (1, 64), "features_per_level": (1, 64),
                 "log2_table_size": (1, 30), "sh_degree": (1, 4), "base_resolution": (1, 2**20),
                 "max_resolution": (1, 2**20), "width": (1, 2**24), "hidden_width": (1, 2**24),
                 "colour_width": (1, 2**24), "resolution": (1, 2**24), "components": (1, 2**24)}
DEFAULT_INT_LIMITS = (0, 2**24)
# a header may describe up to twice the parameters the file holds (plus this slack) before the
# build is refused: tinycudann lays out its tables a little differently from the estimate
PARAMETER_SLACK = 2**20
OCCUPANCY_TENSORS = {"occupancy.density": torch.float32, "occupancy.occupied": torch.bool}


def field_header(model: RadianceField) -> dict:
    space = {} if model.space is None else {"space": model.space.header()}
    return space | {
        "format_version": FORMAT_VERSION,
        "kind": "field",
        "architecture": model.architecture,
        "config": model.field.config_dict(),
        "bounds": model.aabb.tolist(),
        "render": {"step_size": model.step_size, "background": model.background.tolist()},
        "occupancy": {"resolution": model.grid.resolution, "decay": model.grid.decay,
                      "opacity_threshold": model.grid.opacity_threshold},
        "parameters": sum(parameter.numel() for parameter in model.field.parameters()),
        "metrics": model.metrics,
        "dataset": model.dataset,
    }


def model_tensors(model: RadianceField) -> dict[str, torch.Tensor]:
    return {f"field.{name}": value for name, value in model.field.state_dict().items() if name != "aabb"} | {
        "occupancy.density": model.grid.density, "occupancy.occupied": model.grid.occupied}


def save_field(model: RadianceField, path: str | Path) -> None:
    write_tensors(path, model_tensors(model), field_header(model))


def field_from_header(header: dict, path="asset") -> RadianceField:
    """An untrained model with the architecture, config, bounds and space that a header describes
    (a header that `check_field_header` passed)."""
    cls = field_class(header["architecture"])
    config = cls.config_class(**header["config"])
    bounds = torch.tensor(header["bounds"], dtype=torch.float32)
    occupancy = header["occupancy"]
    grid = OccupancyGrid(bounds, occupancy["resolution"], occupancy["decay"], occupancy["opacity_threshold"])
    model = RadianceField(cls(config, bounds), grid, header["render"]["step_size"], header["render"]["background"],
                          space_from_header(header, path))
    model.metrics, model.dataset = header.get("metrics", {}), header.get("dataset", {})
    return model


def load_model_tensors(model: RadianceField, tensors: dict[str, torch.Tensor], path) -> None:
    field_state = {name[len("field."):]: value for name, value in tensors.items() if name.startswith("field.")}
    field_state["aabb"] = model.field.aabb
    try:
        model.field.load_state_dict(field_state)
        model.grid.density.copy_(tensors["occupancy.density"])
        model.grid.occupied.copy_(tensors["occupancy.occupied"])
    except (RuntimeError, KeyError) as error:
        raise FieldkitError(f"{path} does not match its own header: {str(error).splitlines()[0]}") from None


def load(path: str | Path) -> RadianceField | Splats | Mesh:
    """Loads any fieldkit asset, a 3DGS `.ply` / web `.splat`, a textured `.glb` / `.obj` mesh, or a
    field trained by another tool (fieldkit.teachers), into an object with `render(cameras)`."""
    if is_splat_file(path):
        return load_splats(path)
    if is_mesh_file(path):
        return load_mesh(path)
    if is_teacher_file(path):
        return load_teacher_file(path)
    return _from_tensors(*read_tensors(path), path)


def describe(path: str | Path) -> dict:
    """What `fieldkit info` shows, after the validation `load` does: the header of an asset,
    or the summary of a `.ply` / `.splat` (or a `.glb` / `.obj` mesh). Anything `load` refuses
    raises the same error."""
    if is_splat_file(path) or is_mesh_file(path):
        return load(path).summary()
    if is_teacher_file(path):
        return imported_header(load_teacher_file(path))
    tensors, header = read_tensors(path)
    _from_tensors(tensors, header, path)
    return header


def imported_header(model: RadianceField) -> dict:
    """What `fieldkit info` shows of a field read from another tool's file."""
    return {"kind": "field", "architecture": model.architecture, "bounds": model.aabb.tolist(),
            "parameters": sum(parameter.numel() for parameter in model.field.parameters()), "metrics": model.metrics,
            "dataset": model.dataset}


def _from_tensors(tensors: dict[str, torch.Tensor], header: dict, path) -> RadianceField | Splats:
    kind = header.get("kind")
    if kind == Splats.kind:
        return splats_from_asset(tensors, header, path).eval()
    if kind != "field":
        raise FieldkitError(f"{path} holds a {kind!r} asset, which this fieldkit cannot load or render "
                            f"(it loads 'field' and 'splats' assets)" if isinstance(kind, str) else
                            f"{path} has no asset kind in its header ('kind' is {kind!r}): a damaged asset")
    return load_field(tensors, header, path).eval()


def load_field(tensors: dict[str, torch.Tensor], header: dict, path) -> RadianceField:
    """A field asset's model, after every check in this module."""
    header = check_field_header(header, path)
    check_occupancy_tensors(tensors, header["occupancy"]["resolution"], path)
    check_parameter_count(tensors, header, path)
    try:
        model = field_from_header(header, path)
    except FieldkitError as error:  # e.g. a tinycudann hash grid on a machine without it
        message = str(error)
        raise FieldkitError(message if str(path) in message else f"{path}: {message}") from None
    except (ValueError, TypeError, RuntimeError, OverflowError, ZeroDivisionError) as error:
        raise FieldkitError(f"{path}: cannot build the field its header describes: {str(error).splitlines()[0]}"
                            ) from None
    check_field_tensors(model, tensors, path)
    load_model_tensors(model, tensors, path)
    return model


def check_field_header(header: dict, path) -> dict:
    """The header with every value the model is built from checked; numbers normalised."""
    check_descriptive_keys(header, path)
    architecture = header.get("architecture")
    if not isinstance(architecture, str):
        raise header_error(path, "architecture", "an architecture name", architecture)
    try:
        cls = field_class(architecture)
    except FieldkitError as error:
        raise FieldkitError(f"{path}: {error}") from None
    config = check_config(header_section(header, "config", path), cls.config_class, architecture, path)
    if "bounds" not in header:
        raise FieldkitError(f"{path} has an incomplete fieldkit header (no 'bounds'): a damaged asset (re-save it)")
    bounds = box(header, "bounds", path)
    render = header_section(header, "render", path)
    diagonal = math.dist(*bounds)
    step_size = finite_number(render, "step_size", path, "render.", low=0.0, low_open=True)
    if diagonal / step_size > MAX_SAMPLES_PER_DIAGONAL:
        raise header_error(path, "render.step_size", f"at least the bounds' diagonal / {MAX_SAMPLES_PER_DIAGONAL} "
                           f"({diagonal / MAX_SAMPLES_PER_DIAGONAL:.3g})", step_size)
    if "background" not in render:
        raise FieldkitError(f"{path} has an incomplete fieldkit header (no 'render.background'): a damaged asset")
    background = colour(render, "background", path, "render.")
    space_from_header(header, path)  # refused here, before anything is built
    occupancy = header_section(header, "occupancy", path)
    grid = {"resolution": whole_number(occupancy, "resolution", path, "occupancy.", low=1,
                                       high=MAX_OCCUPANCY_RESOLUTION),
            "decay": finite_number(occupancy, "decay", path, "occupancy.", low=0.0, high=1.0),
            "opacity_threshold": finite_number(occupancy, "opacity_threshold", path, "occupancy.", low=0.0)}
    return header | {"config": config, "bounds": bounds, "render": render | {"step_size": step_size,
                                                                             "background": background},
                     "occupancy": grid}


def check_config(config: dict, config_class, architecture: str, path) -> dict:
    """Each setting of the architecture's config dataclass, with the type of its default."""
    known = {field.name: field for field in dataclasses.fields(config_class)}
    unknown = [name for name in config if name not in known]
    if unknown:
        raise FieldkitError(f"{path}: header 'config' has a setting {unknown[0]!r} that {architecture} does not "
                            f"have: an asset of another fieldkit version, or a damaged file")
    checked = {}
    for name, value in config.items():
        default = known[name].default
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise header_error(path, f"config.{name}", "true or false", value)
            checked[name] = value
        elif isinstance(default, int):
            low, high = CONFIG_LIMITS.get(name, DEFAULT_INT_LIMITS)
            checked[name] = whole_number(config, name, path, "config.", low=low, high=high)
        elif isinstance(default, float):
            checked[name] = finite_number(config, name, path, "config.")
        elif isinstance(default, str):
            if not isinstance(value, str):
                raise header_error(path, f"config.{name}", "a string", value)
            checked[name] = value
        else:  # a setting of a type this check does not know: leave it to the constructor
            checked[name] = value
    return checked


def expected_parameters(architecture: str, config) -> int | None:
    """The number of values in a field's state (without its aabb), from its config alone;
    None for an architecture this table does not know."""
    if architecture not in _PARAMETER_COUNTS:
        return None
    return _PARAMETER_COUNTS[architecture](config)


def _linear(inputs: int, outputs: int) -> int:
    return inputs * outputs + outputs


def _colour_head(c) -> int:  # ColourHead: 4 SH bands + 15 geometry features -> width -> width -> 3
    return _linear(16 + 15, c.colour_width) + _linear(c.colour_width, c.colour_width) + _linear(c.colour_width, 3)


def _mlp_count(c) -> int:
    encoding = 3 + 6 * c.frequencies
    layers = sum(_linear((encoding if index == 0 else c.width) + (encoding if index == c.depth // 2 > 0 else 0),
                         c.width) for index in range(c.depth))
    return layers + _linear(c.width, 16) + _colour_head(c)


def _hashgrid_count(c) -> int:
    table = c.levels * 2**c.log2_table_size * c.features_per_level
    return table + _linear(c.levels * c.features_per_level, c.hidden_width) + _linear(c.hidden_width, 16) + \
        _colour_head(c)


_PARAMETER_COUNTS = {
    "mlp": _mlp_count,
    "hashgrid": _hashgrid_count,
    "tensorf-vm": lambda c: 3 * c.components * (c.resolution**2 + c.resolution) + _linear(3 * c.components, 16)
    + _colour_head(c),
    "tensorf-cp": lambda c: 12 * c.components * c.resolution + _linear(4 * c.components, 16) + _colour_head(c),
    "voxels": lambda c: c.resolution**3 * (1 + 3 * c.sh_degree**2),
}


def check_parameter_count(tensors: dict[str, torch.Tensor], header: dict, path) -> None:
    """Refuses a header whose config would build far more than the file holds, before building it."""
    cls = field_class(header["architecture"])
    try:
        config = cls.config_class(**header["config"])
    except (TypeError, ValueError) as error:
        raise FieldkitError(f"{path}: header 'config' is not a valid {header['architecture']} config: "
                            f"{str(error).splitlines()[0]}") from None
    expected = expected_parameters(header["architecture"], config)
    held = sum(tensor.numel() for name, tensor in tensors.items() if name.startswith("field."))
    if expected is not None and expected > 2 * held + PARAMETER_SLACK:
        raise FieldkitError(f"{path}: header 'config' describes a {header['architecture']} field of {expected:,} "
                            f"values but the file holds {held:,}: a damaged header (re-save the asset)")


def check_occupancy_tensors(tensors: dict[str, torch.Tensor], resolution: int, path) -> None:
    for name, dtype in OCCUPANCY_TENSORS.items():
        if name not in tensors:
            raise FieldkitError(f"{path} has no tensor '{name}': a damaged asset (re-save it)")
        tensor = tensors[name]
        if tuple(tensor.shape) != (resolution**3,) or tensor.dtype != dtype:
            raise FieldkitError(f"{path}: tensor '{name}' is {_described(tensor)}, but its header's occupancy "
                                f"resolution {resolution} needs {str(dtype).removeprefix('torch.')} "
                                f"[{resolution**3}]: a damaged asset")
    if not torch.isfinite(tensors["occupancy.density"]).all():
        raise FieldkitError(f"{path}: tensor 'occupancy.density' has NaN or infinite values: a damaged asset")


def check_field_tensors(model: RadianceField, tensors: dict[str, torch.Tensor], path) -> None:
    """The file's field tensors against the freshly built model: names, shapes, dtypes, finite values."""
    expected = {f"field.{name}": value for name, value in model.field.state_dict().items() if name != "aabb"}
    held = {name for name in tensors if name.startswith("field.")}
    missing, unexpected = sorted(set(expected) - held), sorted(held - set(expected))
    if missing or unexpected:
        detail = f"no tensor '{missing[0]}'" if missing else f"an unexpected tensor '{unexpected[0]}'"
        raise FieldkitError(f"{path} does not match its own header: {detail} for its {model.architecture} "
                            f"config (a damaged asset)")
    for name, reference in expected.items():
        tensor = tensors[name]
        if tensor.shape != reference.shape or tensor.dtype != reference.dtype:
            raise FieldkitError(f"{path} does not match its own header: tensor '{name}' is {_described(tensor)}, "
                                f"its config needs {_described(reference)} (a damaged asset)")
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise FieldkitError(f"{path}: tensor '{name}' has NaN or infinite values: a damaged asset "
                                f"(re-train, or re-save it from a checkpoint before the values diverged)")


def _described(tensor: torch.Tensor) -> str:
    return f"{str(tensor.dtype).removeprefix('torch.')} {list(tensor.shape)}"


__all__ = ["describe", "field_from_header", "field_header", "load", "load_field", "model_tensors", "save_field"]
