"""What the viewer shows: a path opened as a model (a field or splats, through `fieldkit.load`) or a
mesh (through trimesh), with what its panels list.

How an asset is shown follows from its model's type, never from a name: Splats and trimesh
meshes go to the browser, which draws them itself; any other `fieldkit.renderable.Renderable`
is rendered by fieldkit for each browser camera.

Only paths given on the command line (or objects handed over by a live run) are ever opened;
nothing the browser sends names a file.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import trimesh

from fieldkit.errors import FieldkitError
from fieldkit.gaussians import Splats
from fieldkit.renderable import Renderable

MESH_SUFFIXES = (".glb", ".gltf", ".obj", ".ply")
RUN_ASSETS = ("field.safetensors", "splats.safetensors")  # what train/convert leave in a run directory


@dataclass
class ViewAsset:
    """One asset in the scene: `model` is Splats or a trimesh.Trimesh (drawn by the browser) or any
    other Renderable (rendered by fieldkit)."""

    name: str
    model: object
    aabb: torch.Tensor  # [2, 3]
    info: dict = field(default_factory=dict)  # shown in the asset panel
    dataset: dict = field(default_factory=dict)  # where the training cameras come from
    offset: torch.Tensor = field(default_factory=lambda: torch.zeros(3))  # [3] where a comparison places it
    layer_of: str | None = None
    """the layered asset this is a layer of: it keeps its place there, and the panel can hide it"""

    def __post_init__(self):
        if not isinstance(self.model, (Splats, trimesh.Trimesh, Renderable)):
            raise TypeError(f"the viewer shows Splats, a trimesh.Trimesh or a fieldkit Renderable, "
                            f"not {type(self.model).__name__}")

    @property
    def drawn_by_browser(self) -> bool:
        """Splats and meshes are sent to the browser as they are; anything else fieldkit renders."""
        return isinstance(self.model, (Splats, trimesh.Trimesh))


def resolve_path(path: str | Path) -> Path:
    """A run directory stands for the asset it holds."""
    path = Path(path)
    if path.is_dir():
        for name in RUN_ASSETS:
            if (path / name).is_file():
                return path / name
        raise FieldkitError(f"{path} is a directory without {' or '.join(RUN_ASSETS)}; "
                            "give an asset file or a finished run directory")
    if not path.is_file():
        raise FieldkitError(f"no asset at {path}")
    return path


def open_asset(path: str | Path, device: str | torch.device = "cpu") -> ViewAsset:
    """`device`: where fieldkit renders the asset; splats and meshes, which the browser draws, stay on the CPU."""
    path = resolve_path(path)
    if path.suffix.lower() in MESH_SUFFIXES and not _is_splat_ply(path):
        return _mesh_asset(path)
    from fieldkit.io import load

    model = load(path)
    if not isinstance(model, Splats):
        model = model.to(device)
    info = {"file": path.name, "size": _megabytes(path)} | _model_info(model)
    return ViewAsset(path.name, model, model.aabb.detach().cpu(), info, dict(model.dataset))


def open_assets(path: str | Path, layer: str | None = None, device: str | torch.device = "cpu") -> list[ViewAsset]:
    """The assets a path stands for: one, or each layer of a layered asset placed where it belongs
    (only `layer`, when named)."""
    from fieldkit.layers.manifest import is_layered, read_layered

    if not is_layered(path):
        if layer is not None:
            raise FieldkitError(f"--layer needs a layered asset (a directory with layers.json); {path} is not one")
        return [open_asset(path, device)]
    layered = read_layered(path)
    chosen = [layered.layer(layer)] if layer is not None else layered.layers
    title = Path(path).name if Path(path).is_dir() else Path(path).parent.name
    return [ViewAsset(each.name, each.splats, each.splats.aabb.cpu(),
                      {"layer of": title, "prompt": each.prompt or "-"} | _model_info(each.splats),
                      offset=torch.tensor(each.translation), layer_of=title) for each in chosen]


def model_asset(name: str, model: Renderable) -> ViewAsset:
    """A Renderable in memory (the live view of a running job): a field, splats, or any other."""
    return ViewAsset(name, model, model.aabb.detach().cpu(), _model_info(model), dict(model.dataset))


def _model_info(model: Renderable) -> dict:
    """What the asset panel lists: kind and architecture (where the model names them), size, metrics."""
    info = {"kind": getattr(model, "kind", type(model).__name__), "architecture": getattr(model, "architecture", "-")}
    if isinstance(model, torch.nn.Module):
        info["parameters"] = sum(parameter.numel() for parameter in model.parameters())
    if isinstance(model, Splats):
        info["splats"] = len(model)
    return info | {name: value for name, value in model.metrics.items() if name not in info}


def _is_splat_ply(path: Path) -> bool:
    """A 3DGS .ply declares its splats' opacity; a mesh .ply does not."""
    if path.suffix.lower() != ".ply":
        return False
    with path.open("rb") as handle:
        header = handle.read(4096).split(b"end_header")[0]
    return b"property float opacity" in header


def _mesh_asset(path: Path) -> ViewAsset:
    mesh = read_mesh(path)
    aabb = torch.tensor(mesh.bounds, dtype=torch.float32)
    info = {"file": path.name, "size": _megabytes(path), "kind": "mesh", "vertices": len(mesh.vertices),
            "faces": len(mesh.faces)}
    return ViewAsset(path.name, mesh, aabb, info)


def read_mesh(path: Path) -> trimesh.Trimesh:
    """A mesh file through trimesh, checked as far as the browser needs it: triangles, finite vertices,
    faces that name existing vertices, and a GLB that viser can send. Anything else is one
    FieldkitError line: trimesh raises a dozen types (KeyError, IndexError, ValueError, json errors,
    ...) for broken or foreign files, and some broken files load but fail only when sent."""
    from .native import mesh_glb

    kind = path.suffix.lower()
    if path.stat().st_size == 0:
        raise FieldkitError(f"{path} is empty; give a mesh file ({', '.join(MESH_SUFFIXES)})")
    try:
        # unprocessed: processing drops the faces of NaN vertices without a word, and such a file is broken
        mesh = trimesh.load(str(path), force="mesh", process=False)
    except Exception as error:  # noqa: BLE001 - see above
        raise FieldkitError(f"{path} is not a readable {kind} mesh ({_one_line(error)}); check the file or "
                            "export it again") from None
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise FieldkitError(f"{path} holds no triangles to show; is it a {kind} mesh with faces?")
    vertices, faces = np.asarray(mesh.vertices), np.asarray(mesh.faces)
    if not np.isfinite(vertices).all():
        raise FieldkitError(f"{path} has NaN or infinite vertex coordinates; check the file or export it again")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise FieldkitError(f"{path} has triangles naming vertices it does not hold; check the file or export it again")
    try:
        mesh_glb(mesh)
    except Exception as error:  # noqa: BLE001 - see above
        raise FieldkitError(f"{path} cannot be sent to the browser ({_one_line(error)}); check the file or "
                            "export it again") from None
    return mesh


def _one_line(error: Exception) -> str:
    """`TypeName: first line of the message`, at most 120 characters."""
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def _megabytes(path: Path) -> str:
    return f"{path.stat().st_size / 1e6:.2f} MB"
