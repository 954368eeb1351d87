"""Meshes as .usdz (usd-core): the package opens in USD, its mesh, UVs and texture rebuild a mesh
that renders like the one written."""
from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from fieldkit.errors import FieldkitError
from fieldkit.mesh import Mesh, save_mesh
from fieldkit.mesh.usdz import usd_available
from fieldkit.metrics import psnr
from test_mesh import BOUNDS, cameras, textured_sphere

needs_usd = pytest.mark.skipif(not usd_available(), reason="needs usd-core (pip install 'fieldkit[usd]')")


@needs_usd
def test_a_usdz_mesh_renders_like_the_mesh_written(tmp_path):
    from pxr import Usd, UsdGeom, UsdShade

    sphere = textured_sphere()
    path = tmp_path / "mesh.usdz"
    assert save_mesh(sphere, path) == [path]
    stage = Usd.Stage.Open(str(path))
    assert UsdGeom.GetStageUpAxis(stage) == UsdGeom.Tokens.z
    surface = UsdGeom.Mesh(stage.GetPrimAtPath("/Mesh/Surface"))
    st = UsdGeom.PrimvarsAPI(surface).GetPrimvar("st")
    assert st.GetInterpolation() == UsdGeom.Tokens.faceVarying
    material, _ = UsdShade.MaterialBindingAPI(surface.GetPrim()).ComputeBoundMaterial()
    assert material.GetPath() == "/Mesh/Material"
    with zipfile.ZipFile(path) as package:
        (texture_name,) = [name for name in package.namelist() if name.endswith(".png")]
        texture = np.asarray(Image.open(io.BytesIO(package.read(texture_name))).convert("RGB")) / 255.0
    rebuilt = Mesh(torch.tensor(np.array(surface.GetPointsAttr().Get()), dtype=torch.float32),
                   torch.tensor(np.array(surface.GetFaceVertexIndicesAttr().Get())).view(-1, 3),
                   torch.tensor(np.array(st.Get()), dtype=torch.float32),
                   torch.tensor(np.array(st.GetIndices())).view(-1, 3),
                   torch.tensor(texture, dtype=torch.float32), bounds=BOUNDS)
    views = cameras()
    # the texture is stored as 8-bit PNG: the rest is exact
    assert psnr(rebuilt.render(views).rgb, sphere.render(views).rgb) > 45.0


def test_usdz_without_usd_core_is_one_error_line(tmp_path, monkeypatch):
    import fieldkit.mesh.usdz as usdz

    monkeypatch.setattr(usdz, "usd_available", lambda: False)
    with pytest.raises(FieldkitError, match="usd-core"):
        save_mesh(textured_sphere(), tmp_path / "mesh.usdz")
    assert not (tmp_path / "mesh.usdz").exists()
