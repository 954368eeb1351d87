"""Meshes to `.usdz` (what Apple's AR Quick Look and USD tools open), through usd-core's `pxr`.

The package holds one stage, z-up like fieldkit's world: a mesh whose `st` primvar is indexed
by the UV faces (a seam does not split the surface), and a UsdPreviewSurface whose diffuse
colour reads the texture PNG, which the package carries beside the stage.
"""
from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

from fieldkit.atomic import write_bytes
from fieldkit.errors import FieldkitError
from fieldkit.mesh.model import Mesh

TEXTURE_NAME = "texture.png"


def usd_available() -> bool:
    return importlib.util.find_spec("pxr") is not None


def _define_material(stage, texture: str):
    from pxr import Sdf, UsdShade

    material = UsdShade.Material.Define(stage, "/Mesh/Material")
    surface = UsdShade.Shader.Define(stage, "/Mesh/Material/Surface")
    surface.CreateIdAttr("UsdPreviewSurface")
    surface.CreateInput("metallic", Sdf.ValueTypeNames.Float).Set(0.0)
    surface.CreateInput("roughness", Sdf.ValueTypeNames.Float).Set(1.0)
    reader = UsdShade.Shader.Define(stage, "/Mesh/Material/UV")
    reader.CreateIdAttr("UsdPrimvarReader_float2")
    reader.CreateInput("varname", Sdf.ValueTypeNames.Token).Set("st")
    image = UsdShade.Shader.Define(stage, "/Mesh/Material/Texture")
    image.CreateIdAttr("UsdUVTexture")
    image.CreateInput("file", Sdf.ValueTypeNames.Asset).Set(texture)
    image.CreateInput("st", Sdf.ValueTypeNames.Float2).ConnectToSource(reader.ConnectableAPI(), "result")
    image.CreateInput("sourceColorSpace", Sdf.ValueTypeNames.Token).Set("sRGB")
    image.CreateOutput("rgb", Sdf.ValueTypeNames.Float3)
    surface.CreateInput("diffuseColor", Sdf.ValueTypeNames.Color3f).ConnectToSource(image.ConnectableAPI(), "rgb")
    material.CreateSurfaceOutput().ConnectToSource(surface.ConnectableAPI(), "surface")
    return material


def _write_stage(mesh: Mesh, stage_path: Path) -> None:
    from pxr import Sdf, Usd, UsdGeom, UsdShade, Vt

    stage = Usd.Stage.CreateNew(str(stage_path))
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.z)
    UsdGeom.SetStageMetersPerUnit(stage, 1.0)
    root = UsdGeom.Xform.Define(stage, "/Mesh")
    stage.SetDefaultPrim(root.GetPrim())
    surface = UsdGeom.Mesh.Define(stage, "/Mesh/Surface")
    surface.CreatePointsAttr(Vt.Vec3fArray.FromNumpy(mesh.vertices.detach().cpu().numpy()))
    surface.CreateFaceVertexCountsAttr(Vt.IntArray([3] * mesh.faces.shape[0]))
    surface.CreateFaceVertexIndicesAttr(Vt.IntArray.FromNumpy(mesh.faces.int().reshape(-1).cpu().numpy()))
    surface.CreateSubdivisionSchemeAttr(UsdGeom.Tokens.none)
    surface.CreateExtentAttr(Vt.Vec3fArray.FromNumpy(mesh.aabb.detach().cpu().numpy()))
    st = UsdGeom.PrimvarsAPI(surface).CreatePrimvar("st", Sdf.ValueTypeNames.TexCoord2fArray,
                                                    UsdGeom.Tokens.faceVarying)
    st.Set(Vt.Vec2fArray.FromNumpy(mesh.uvs.cpu().numpy()))
    st.SetIndices(Vt.IntArray.FromNumpy(mesh.uv_faces.int().reshape(-1).cpu().numpy()))
    UsdShade.MaterialBindingAPI.Apply(surface.GetPrim()).Bind(_define_material(stage, TEXTURE_NAME))
    stage.GetRootLayer().Save()


def write_usdz(mesh: Mesh, path: str | Path, texture_png: bytes) -> None:
    """Writes `path` atomically: the stage and its texture, packaged by usd-core."""
    if not usd_available():
        raise FieldkitError(f"writing {path} needs usd-core: pip install 'fieldkit[usd]'")
    from pxr import Sdf, UsdUtils

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        (folder / TEXTURE_NAME).write_bytes(texture_png)
        _write_stage(mesh, folder / "mesh.usdc")
        if not UsdUtils.CreateNewUsdzPackage(Sdf.AssetPath(str(folder / "mesh.usdc")), str(folder / "mesh.usdz")):
            raise FieldkitError(f"usd-core could not package {path}")
        write_bytes(path, (folder / "mesh.usdz").read_bytes())
