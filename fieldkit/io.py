"""Fields and splats to and from asset files (see `fieldkit.asset_file` for the format)."""
from __future__ import annotations

from pathlib import Path

import torch

from fieldkit.asset_file import FORMAT_VERSION, read_tensors, write_tensors
from fieldkit.errors import FieldkitError
from fieldkit.fields import field_class
from fieldkit.gaussians import Splats, is_splat_file, load_splats
from fieldkit.gaussians.asset import splats_from_tensors
from fieldkit.radiance import RadianceField
from fieldkit.render.occupancy import OccupancyGrid


def field_header(model: RadianceField) -> dict:
    return {
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


def field_from_header(header: dict) -> RadianceField:
    """An untrained model with the architecture, config and bounds that a header describes."""
    cls = field_class(header["architecture"])
    config = cls.config_class(**header["config"])
    bounds = torch.tensor(header["bounds"], dtype=torch.float32)
    occupancy = header["occupancy"]
    grid = OccupancyGrid(bounds, occupancy["resolution"], occupancy["decay"], occupancy["opacity_threshold"])
    model = RadianceField(cls(config, bounds), grid, header["render"]["step_size"], header["render"]["background"])
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


def load(path: str | Path) -> RadianceField | Splats:
    """Loads any fieldkit asset, or a 3DGS `.ply` / web `.splat`, into an object with `render(cameras)`."""
    if is_splat_file(path):
        return load_splats(path)
    tensors, header = read_tensors(path)
    kind = header.get("kind")
    if kind == Splats.kind:
        return splats_from_tensors(tensors, header, path).eval()
    if kind != "field":
        raise FieldkitError(f"{path} holds a '{kind}' asset, which this fieldkit cannot load")
    try:
        model = field_from_header(header)
    except (KeyError, TypeError) as error:
        raise FieldkitError(f"{path} has an incomplete fieldkit header (missing or wrong {error})") from None
    load_model_tensors(model, tensors, path)
    return model.eval()
