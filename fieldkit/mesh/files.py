"""Meshes to and from `.glb` (texture embedded) and `.obj` (+ `.mtl` + PNG), through trimesh, and to
`.usdz` through usd-core (fieldkit.mesh.usdz).

A file holds one textured primitive. Reading checks what fieldkit needs before building the
model, so a damaged or unsuitable file gives one error line: no triangles, several primitives,
no UVs, no texture image, a texture beyond MAX_TEXTURE_SIZE. Writing goes through temporary
files and renames, so an interrupted write leaves no half file. A `.glb` also carries fieldkit's
bounds, background, metrics and dataset in the mesh's glTF `extras`.
"""
from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import torch
import trimesh
from PIL import Image

from fieldkit.atomic import write_bytes
from fieldkit.errors import FieldkitError
from fieldkit.mesh.model import Mesh
from fieldkit.mesh.usdz import write_usdz

MESH_SUFFIXES = (".glb", ".obj")
MAX_TEXTURE_SIZE = 8192
"""Texels per side beyond which a texture is refused (a 16k RGB texture is 3 GB of floats)."""
MAX_FACES = 20_000_000
METADATA_KEY = "fieldkit"


def is_mesh_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in MESH_SUFFIXES


def _corners(mesh: Mesh) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per (position, UV) pair a vertex, as glTF and trimesh want them: positions [N, 3], uvs
    [N, 2] and faces [F, 3] into them."""
    pairs = torch.stack([mesh.faces, mesh.uv_faces], dim=-1).reshape(-1, 2)  # [F * 3, 2]
    unique, inverse = torch.unique(pairs, dim=0, return_inverse=True)
    return (mesh.vertices[unique[:, 0]].numpy(), mesh.uvs[unique[:, 1]].numpy(),
            inverse.view(-1, 3).numpy())


def _texture_image(mesh: Mesh) -> Image.Image:
    pixels = (mesh.texture.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return Image.fromarray(np.ascontiguousarray(pixels), "RGB")


def _metadata(mesh: Mesh) -> dict:
    return {"bounds": mesh.aabb.tolist(), "background": mesh.background.tolist(), "metrics": mesh.metrics,
            "dataset": mesh.dataset}


def to_trimesh(mesh: Mesh, pbr: bool, name: str = "texture") -> trimesh.Trimesh:
    positions, uvs, faces = _corners(mesh)
    image = _texture_image(mesh)
    material = (trimesh.visual.material.PBRMaterial(name=name, baseColorTexture=image, metallicFactor=0.0,
                                                    roughnessFactor=1.0) if pbr else
                # viewers multiply the texture by Kd: white keeps its colours
                trimesh.visual.material.SimpleMaterial(name=name, image=image, diffuse=(255, 255, 255, 255),
                                                       ambient=(255, 255, 255, 255), specular=(0, 0, 0, 255)))
    result = trimesh.Trimesh(positions, faces, visual=trimesh.visual.TextureVisuals(uv=uvs, material=material),
                             process=False)
    result.metadata[METADATA_KEY] = json.dumps(_metadata(mesh))
    return result


def save_mesh(mesh: Mesh, path: str | Path) -> list[Path]:
    """Writes `path` (.glb, .obj, whose .mtl and PNG go beside it, or .usdz where usd-core is
    installed) -> the files written."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".glb":
        write_bytes(path, trimesh.exchange.gltf.export_glb(trimesh.Scene(to_trimesh(mesh, pbr=True))))
        return [path]
    if suffix == ".usdz":
        png = io.BytesIO()
        _texture_image(mesh).save(png, format="PNG")
        write_usdz(mesh, path, png.getvalue())
        return [path]
    if suffix != ".obj":
        raise FieldkitError(f"cannot write a mesh to {path} (use one of: {', '.join(MESH_SUFFIXES)}, .usdz)")
    text, files = trimesh.exchange.obj.export_obj(to_trimesh(mesh, pbr=False, name=path.stem), include_texture=True,
                                                  return_texture=True, mtl_name=f"{path.stem}.mtl",
                                                  include_normals=False)
    written = []
    for name, data in files.items():  # the .mtl and its texture first: the .obj names them
        write_bytes(path.parent / name, data)
        written.append(path.parent / name)
    write_bytes(path, text.encode("utf-8"))
    return written + [path]


def _read_scene(path: Path) -> trimesh.Scene:
    if not path.is_file():
        raise FieldkitError(f"{path} does not exist (or is not a file)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return trimesh.load(path, force="scene", process=False)
    except Image.DecompressionBombError:
        raise FieldkitError(f"{path}: its texture is too large to read (over {MAX_TEXTURE_SIZE} texels per side "
                            f"is refused)") from None
    except Exception as error:  # trimesh raises many kinds for damaged files
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise FieldkitError(f"{path} is not a readable {path.suffix.lower()} mesh ({detail}): a damaged file?") from None


def _texture(path: Path, visual) -> torch.Tensor:
    material = getattr(visual, "material", None)
    image = getattr(material, "baseColorTexture", None)
    if image is None:
        image = getattr(material, "image", None)
    # trimesh stands a 2x2 placeholder of its own in for a missing texture: only a decoded file has a format
    if image is None or getattr(image, "format", None) is None:
        raise FieldkitError(f"{path} has no texture image (its material has no base colour texture); fieldkit "
                            f"reads textured meshes: bake one, e.g. with fieldkit refine")
    if max(image.size) > MAX_TEXTURE_SIZE:
        raise FieldkitError(f"{path}: its texture is {image.size[0]}x{image.size[1]}, larger than the "
                            f"{MAX_TEXTURE_SIZE} texels per side fieldkit reads; downscale it")
    try:
        pixels = np.asarray(image.convert("RGB"), dtype=np.float32) / 255
    except (OSError, ValueError) as error:
        raise FieldkitError(f"{path}: its texture image cannot be decoded ({error})") from None
    return torch.from_numpy(pixels.copy())


def load_mesh(path: str | Path) -> Mesh:
    """A `.glb` or `.obj` holding one textured triangle primitive, as a `Mesh`."""
    path = Path(path)
    if not is_mesh_file(path):
        raise FieldkitError(f"{path} is not a mesh file (expected one of: {', '.join(MESH_SUFFIXES)})")
    scene = _read_scene(path)
    geometries = [geometry for geometry in scene.geometry.values() if isinstance(geometry, trimesh.Trimesh)]
    if not geometries or sum(len(geometry.faces) for geometry in geometries) == 0:
        raise FieldkitError(f"{path} holds no triangles: an empty mesh")
    if len(geometries) > 1:
        raise FieldkitError(f"{path} holds {len(geometries)} primitives; fieldkit reads one textured primitive "
                            f"(join them into one mesh with one texture first)")
    geometry = geometries[0]
    if len(geometry.faces) > MAX_FACES:
        raise FieldkitError(f"{path} holds {len(geometry.faces):,} faces, more than the {MAX_FACES:,} fieldkit reads")
    uv = getattr(geometry.visual, "uv", None)
    if not isinstance(geometry.visual, trimesh.visual.TextureVisuals) or uv is None or len(uv) != len(geometry.vertices):
        raise FieldkitError(f"{path} has no UV coordinates; fieldkit reads textured meshes "
                            f"(unwrap and bake it first, e.g. fieldkit refine)")
    texture = _texture(path, geometry.visual)
    corners = np.asarray(geometry.vertices, dtype=np.float32)
    faces = np.asarray(geometry.faces, dtype=np.int64)
    if not np.isfinite(corners).all() or not np.isfinite(np.asarray(uv, dtype=np.float64)).all():
        raise FieldkitError(f"{path} has NaN or infinite vertex positions or UVs: a damaged file")
    # glTF and OBJ exporters split vertices at UV seams: weld positions back into one surface
    positions, welded = np.unique(corners, axis=0, return_inverse=True)
    mesh = Mesh(torch.from_numpy(positions), torch.from_numpy(welded.reshape(-1)[faces]),
                torch.from_numpy(np.asarray(uv, dtype=np.float32)), torch.from_numpy(faces), texture)
    _apply_metadata(mesh, geometry.metadata.get(METADATA_KEY))
    return mesh.eval()


def _apply_metadata(mesh: Mesh, text) -> None:
    """fieldkit's own record in a .glb it wrote; anything unexpected in it is ignored (an .obj or
    another tool's file has none, and renders on a white background within its own bounds)."""
    try:
        record = json.loads(text) if isinstance(text, str) else None
    except json.JSONDecodeError:
        record = None
    if not isinstance(record, dict):
        return
    try:
        bounds = torch.tensor(record.get("bounds"), dtype=torch.float32)
        background = torch.tensor(record.get("background"), dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError):
        return
    if bounds.shape == (2, 3) and torch.isfinite(bounds).all() and (bounds[1] > bounds[0]).all():
        mesh.bounds = bounds
    if background.shape == (3,) and torch.isfinite(background).all():
        mesh.background.copy_(background.clamp(0, 1))
    mesh.metrics = record.get("metrics") if isinstance(record.get("metrics"), dict) else {}
    mesh.dataset = record.get("dataset") if isinstance(record.get("dataset"), dict) else {}


__all__ = ["MESH_SUFFIXES", "MAX_TEXTURE_SIZE", "is_mesh_file", "load_mesh", "save_mesh", "to_trimesh"]
