"""Asset validation: every damaged header value, tensor and foreign file is one FieldkitError line
naming the file and the problem, from `fieldkit.load`, `fieldkit.io.describe` (what `fieldkit info`
runs) and the command line; loading never builds a field its file cannot hold."""
from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import pickle
import struct
import zipfile

import pytest
import torch
from safetensors.torch import save_file

import fieldkit
from fieldkit.asset_file import HEADER_KEY, read_tensors
from fieldkit.cli import main
from fieldkit.errors import FieldkitError
from fieldkit.fields import ARCHITECTURES, make_config, make_field
from fieldkit.gaussians import Splats
from fieldkit.gaussians.asset import save_splats_asset
from fieldkit.io import describe, expected_parameters, save_field
from fieldkit.radiance import RadianceField
from fieldkit.render.occupancy import OccupancyGrid

AABB = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])


def voxel_model() -> RadianceField:
    torch.manual_seed(0)
    field = make_field("voxels", AABB, make_config("voxels", overrides={"resolution": 4, "sh_degree": 1}))
    grid = OccupancyGrid(AABB, resolution=4)
    model = RadianceField(field, grid, step_size=0.1, background=(0.1, 0.2, 0.3))
    model.metrics, model.dataset = {"psnr_test": 20.0}, {"name": "unit", "source": "nowhere"}
    return model


def small_splats(count: int = 5) -> Splats:
    generator = torch.Generator().manual_seed(0)
    return Splats(torch.randn(count, 3, generator=generator), torch.full((count, 3), -2.0),
                  torch.randn(count, 4, generator=generator), torch.zeros(count), torch.zeros(count, 3),
                  torch.zeros(count, 3, 3))


@pytest.fixture(scope="module")
def field_asset(tmp_path_factory):
    path = tmp_path_factory.mktemp("assets") / "field.safetensors"
    save_field(voxel_model(), path)
    return read_tensors(path)


@pytest.fixture(scope="module")
def splat_asset(tmp_path_factory):
    path = tmp_path_factory.mktemp("assets") / "splats.safetensors"
    save_splats_asset(small_splats(), path)
    return read_tensors(path)


def write_asset(path, tensors: dict, header) -> None:
    header_text = header if isinstance(header, str) else json.dumps(header)
    save_file({name: value.contiguous() for name, value in tensors.items()}, str(path),
              metadata={HEADER_KEY: header_text})


def run(argv) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main([str(arg) for arg in argv])
    return code, stdout.getvalue(), stderr.getvalue()


# -- damaged field headers and tensors ---------------------------------------------------------------

def header_change(change):
    def apply(tensors, header):
        header = copy.deepcopy(header)
        return tensors, change(header) or header
    return apply


def tensor_change(change):
    def apply(tensors, header):
        tensors = dict(tensors)
        change(tensors)
        return tensors, header
    return apply


def set_path(*keys_and_value):
    *keys, value = keys_and_value

    def change(header):
        node = header
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
    return header_change(change)


def drop(key):
    return header_change(lambda header: header.pop(key) and None)


def poke(name, value, index=0):
    def change(tensors):
        tensor = tensors[name].clone()
        tensor.view(-1)[index] = value
        tensors[name] = tensor
    return tensor_change(change)


def retype(name, dtype):
    return tensor_change(lambda tensors: tensors.__setitem__(name, tensors[name].to(dtype)))


BAD_FIELD_ASSETS = {
    "header is a list": (header_change(lambda header: [header]), "not an object"),
    "header is a number": (header_change(lambda header: 7), "not an object"),
    "background is a word": (set_path("render", "background", "red"), "'render.background' must be three numbers"),
    "background of two numbers": (set_path("render", "background", [0.1, 0.2]), "'render.background'"),
    "background of four numbers": (set_path("render", "background", [0.1, 0.2, 0.3, 1]), "'render.background'"),
    "background NaN": (set_path("render", "background", [math.nan, 0, 0]), "'render.background'"),
    "background above 1": (set_path("render", "background", [2, 0, 0]), "'render.background'"),
    "bounds NaN": (set_path("bounds", [[math.nan, -1, -1], [1, 1, 1]]), "'bounds' must be"),
    "bounds infinite": (set_path("bounds", [[-math.inf, -1, -1], [1, 1, 1]]), "'bounds' must be"),
    "bounds inverted": (set_path("bounds", [[1, 1, 1], [-1, -1, -1]]), "with min < max"),
    "bounds flat": (set_path("bounds", [[0, -1, -1], [0, 1, 1]]), "with min < max"),
    "bounds beyond float32 framing": (set_path("bounds", [[-1e30, -1, -1], [1, 1, 1]]), "within +-1e+08"),
    "bounds of the wrong shape": (set_path("bounds", [-1, -1, -1, 1, 1, 1]), "'bounds' must be"),
    "bounds of strings": (set_path("bounds", [["a", "b", "c"], [1, 1, 1]]), "'bounds' must be"),
    "step size 0": (set_path("render", "step_size", 0), "'render.step_size' must be a positive number, got 0"),
    "step size negative": (set_path("render", "step_size", -0.1), "'render.step_size'"),
    "step size NaN": (set_path("render", "step_size", math.nan), "'render.step_size'"),
    "step size infinite": (set_path("render", "step_size", math.inf), "'render.step_size'"),
    "step size a string": (set_path("render", "step_size", "0.1"), "'render.step_size'"),
    "step size that marches for ever": (set_path("render", "step_size", 1e-12), "'render.step_size' must be at least"),
    "occupancy resolution 10^6": (set_path("occupancy", "resolution", 10**6), "'occupancy.resolution' must be a whole"),
    "occupancy resolution 0": (set_path("occupancy", "resolution", 0), "'occupancy.resolution'"),
    "occupancy resolution 2.5": (set_path("occupancy", "resolution", 2.5), "'occupancy.resolution'"),
    "occupancy resolution not the file's": (set_path("occupancy", "resolution", 5), "tensor 'occupancy.density'"),
    "occupancy decay 2": (set_path("occupancy", "decay", 2), "'occupancy.decay' must be a number in [0, 1], got 2"),
    "occupancy threshold NaN": (set_path("occupancy", "opacity_threshold", math.nan),
                                "'occupancy.opacity_threshold' must be a finite number >= 0, got nan"),
    "voxels of resolution 10^5": (set_path("config", "resolution", 10**5), "values but the file holds"),
    "voxels of resolution 10^9": (set_path("config", "resolution", 10**9), "'config.resolution' must be a whole"),
    "voxels of SH degree 40": (set_path("config", "sh_degree", 40), "'config.sh_degree'"),
    "config setting a string": (set_path("config", "resolution", "4"), "'config.resolution'"),
    "config setting true": (set_path("config", "resolution", True), "'config.resolution'"),
    "config float NaN": (set_path("config", "learning_rate", math.nan), "'config.learning_rate'"),
    "config setting unknown": (set_path("config", "width", 8), "setting 'width' that voxels does not have"),
    "config a list": (set_path("config", [4]), "'config' must be a JSON object"),
    "no config": (drop("config"), "incomplete fieldkit header (no 'config')"),
    "no render": (drop("render"), "no 'render'"),
    "no occupancy": (drop("occupancy"), "no 'occupancy'"),
    "no bounds": (drop("bounds"), "no 'bounds'"),
    "no step size": (header_change(lambda header: header["render"].pop("step_size") and None), "'render.step_size'"),
    "no kind": (drop("kind"), "no asset kind"),
    "kind a number": (set_path("kind", 3), "no asset kind"),
    "unknown kind": (set_path("kind", "hologram"), "'hologram' asset"),
    "unknown architecture": (set_path("architecture", "nerfacto"), "unknown architecture 'nerfacto'"),
    "architecture a list": (set_path("architecture", ["voxels"]), "'architecture' must be"),
    "format version a string": (set_path("format_version", "1"), "format version '1'"),
    "format version 0": (set_path("format_version", 0), "format version 0"),
    "format version true": (set_path("format_version", True), "format version True"),
    "parameters a string": (set_path("parameters", "many"), "'parameters'"),
    "metrics a list": (set_path("metrics", [1, 2]), "'metrics' must be a JSON object"),
    "dataset source a number": (set_path("dataset", "source", 5), "'dataset.source' must be a string"),
    "NaN parameter": (poke("field.density", math.nan), "tensor 'field.density' has NaN or infinite values"),
    "infinite parameter": (poke("field.sh", math.inf, 7), "tensor 'field.sh' has NaN or infinite values"),
    "NaN occupancy": (poke("occupancy.density", math.nan), "'occupancy.density' has NaN"),
    "float64 parameter": (retype("field.sh", torch.float64), "tensor 'field.sh' is float64"),
    "integer parameter": (retype("field.density", torch.int32), "tensor 'field.density' is int32"),
    "float16 occupancy": (retype("occupancy.density", torch.float16), "tensor 'occupancy.density' is float16"),
    "occupied as bytes": (retype("occupancy.occupied", torch.uint8), "tensor 'occupancy.occupied' is uint8"),
    "missing parameter": (tensor_change(lambda tensors: tensors.pop("field.sh")), "no tensor 'field.sh'"),
    "missing occupancy": (tensor_change(lambda tensors: tensors.pop("occupancy.occupied")),
                          "no tensor 'occupancy.occupied'"),
    "extra parameter": (tensor_change(lambda tensors: tensors.__setitem__("field.extra", torch.zeros(2))),
                        "unexpected tensor 'field.extra'"),
    "parameter of another shape": (tensor_change(lambda tensors: tensors.__setitem__(
        "field.sh", tensors["field.sh"].reshape(-1))), "tensor 'field.sh' is float32 [192]"),
}


def assert_refused_in_one_line(path, expected: str) -> None:
    """Loading and `info` both refuse the asset, in one line naming the file and the problem."""
    for read in (fieldkit.load, describe):
        with pytest.raises(FieldkitError) as error:
            read(path)
        message = str(error.value)
        assert str(path) in message and expected in message, message
        assert "\n" not in message


@pytest.mark.parametrize("case", list(BAD_FIELD_ASSETS))
def test_bad_field_assets_are_one_clear_error(case, field_asset, tmp_path):
    change, expected = BAD_FIELD_ASSETS[case]
    path = tmp_path / "bad.safetensors"
    write_asset(path, *change(*field_asset))
    assert_refused_in_one_line(path, expected)


@pytest.mark.parametrize("case", ["background is a word", "bounds NaN", "step size 0", "occupancy resolution 10^6",
                                  "voxels of resolution 10^5", "NaN parameter", "float64 parameter", "header is a list"])
@pytest.mark.parametrize("verb", ["render", "info"])
def test_the_command_line_refuses_them_in_one_line(case, verb, field_asset, tmp_path):
    """`fieldkit info` refuses every asset `fieldkit render` refuses."""
    change, expected = BAD_FIELD_ASSETS[case]
    path = tmp_path / "bad.safetensors"
    write_asset(path, *change(*field_asset))
    extra = ["--orbit", "1", "--resolution", "4", "--out", tmp_path / "views"] if verb == "render" else []
    code, stdout, stderr = run([verb, path, *extra])
    assert code == 2 and not stdout
    assert stderr.startswith("fieldkit: error: ") and stderr.count("\n") == 1 and expected in stderr, stderr


def test_a_valid_asset_still_loads_renders_and_describes(field_asset, tmp_path):
    path = tmp_path / "good.safetensors"
    write_asset(path, *field_asset)
    assert describe(path)["architecture"] == "voxels"
    assert fieldkit.load(path).step_size == 0.1
    code, stdout, _ = run(["info", path])
    assert code == 0 and "voxels" in stdout


def test_an_absurd_config_is_refused_before_anything_is_built(field_asset, tmp_path, monkeypatch):
    """A header asking for 10^15 voxels must not reach the constructor (it would try to allocate them)."""
    built = []
    monkeypatch.setattr("fieldkit.fields.voxels.VoxelField.__init__",
                        lambda *args, **kwargs: built.append(args) or (_ for _ in ()).throw(AssertionError("built")))
    change = set_path("config", "resolution", 10**5)
    path = tmp_path / "huge.safetensors"
    write_asset(path, *change(*field_asset))
    with pytest.raises(FieldkitError, match=r"describes a voxels field of 4,000,000,000,000,000 values"):
        fieldkit.load(path)
    assert not built


PARAMETER_CASES = [
    ("mlp", {}), ("mlp", {"depth": 1, "frequencies": 0, "width": 8}), ("mlp", {"depth": 7, "width": 16}),
    ("hashgrid", {}), ("hashgrid", {"levels": 3, "features_per_level": 4, "log2_table_size": 8}),
    ("tensorf-vm", {}), ("tensorf-vm", {"resolution": 9, "components": 3}),
    ("tensorf-cp", {}), ("tensorf-cp", {"resolution": 9, "components": 3}),
    ("voxels", {"resolution": 8}), ("voxels", {"resolution": 5, "sh_degree": 3}),
]


@pytest.mark.parametrize("architecture, overrides", PARAMETER_CASES)
def test_the_parameter_count_check_knows_every_architecture(architecture, overrides):
    """The size check before building counts exactly what the built field holds: if an
    architecture changes its layout, this fails and `fieldkit.io` needs the new count."""
    config = make_config(architecture, overrides=overrides)
    field = make_field(architecture, AABB, config)
    held = sum(value.numel() for name, value in field.state_dict().items() if name != "aabb")
    assert expected_parameters(architecture, field.config) == held


def test_every_architecture_has_a_parameter_count():
    assert {architecture for architecture, _ in PARAMETER_CASES} == set(ARCHITECTURES)


# -- splat assets: the .ply reader's checks -----------------------------------------------------------------

BAD_SPLAT_ASSETS = {
    "float64 means": (retype("means", torch.float64), "tensor 'means' is float64; splat assets store it as float32"),
    "integer opacities": (retype("opacity_logits", torch.int64), "tensor 'opacity_logits' is int64"),
    "float16 colours": (retype("sh_dc", torch.float16), "tensor 'sh_dc' is float16"),
    "every splat NaN": (tensor_change(lambda tensors: tensors.__setitem__(
        "means", torch.full_like(tensors["means"], math.nan))), "every one of its 5 splats has NaN, infinite or out-of-range values"),
    "missing tensor": (tensor_change(lambda tensors: tensors.pop("quaternions")), "without quaternions"),
    "inconsistent shapes": (tensor_change(lambda tensors: tensors.__setitem__("sh_dc", torch.zeros(4, 3))),
                            "inconsistent splats"),
    "background a word": (set_path("background", "red"), "'background' must be three numbers"),
    "background of two": (set_path("background", [1, 1]), "'background'"),
    "bounds a string": (set_path("bounds", "everywhere"), "'bounds' must be"),
    "metrics a number": (set_path("metrics", 3), "'metrics'"),
    "header a list": (header_change(lambda header: [header]), "not an object"),
}


@pytest.mark.parametrize("case", list(BAD_SPLAT_ASSETS))
def test_bad_splat_assets_are_one_clear_error(case, splat_asset, tmp_path):
    change, expected = BAD_SPLAT_ASSETS[case]
    path = tmp_path / "bad.safetensors"
    write_asset(path, *change(*splat_asset))
    assert_refused_in_one_line(path, expected)


def test_splats_with_nan_are_dropped_from_assets_as_from_ply(splat_asset, tmp_path):
    tensors, header = splat_asset
    change = poke("log_scales", math.inf, 4)
    path = tmp_path / "some-nan.safetensors"
    write_asset(path, *change(dict(tensors), header))
    zero = dict(tensors)
    with pytest.warns(UserWarning, match="dropped 1 of 5 splats with NaN or infinite values"):
        splats = fieldkit.load(path)
    assert len(splats) == 4 and torch.isfinite(splats.log_scales).all()
    zero["quaternions"] = torch.zeros(5, 4)
    write_asset(path, zero, header)
    with pytest.warns(UserWarning, match="zero rotation"):
        assert torch.equal(fieldkit.load(path).quaternions, torch.tensor([[1.0, 0, 0, 0]]).expand(5, 4))


# -- files that are not fieldkit assets ----------------------------------------------------------------

def glb(path) -> None:
    body = json.dumps({"asset": {"version": "2.0"}}).encode()
    path.write_bytes(b"glTF" + struct.pack("<II", 2, 20 + len(body)) + struct.pack("<I", len(body)) + b"JSON" + body)


def torch_zip(path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"weights": [1, 2]}))


# a .glb or .obj under its own name loads as a mesh (fieldkit.mesh); under another name it is
# named for what it is
FOREIGN_FILES = {
    "mesh.safetensors": (glb, "is a binary glTF (.glb) mesh, not a fieldkit asset"),
    "mesh.bin": (glb, "is a binary glTF (.glb) mesh, not a fieldkit asset"),
    "render.png": (lambda path: path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64)), "is a PNG image, not a fieldkit"),
    "photo.jpg": (lambda path: path.write_bytes(b"\xff\xd8\xff\xe0" + bytes(64)), "is a JPEG image"),
    "header.json": (lambda path: path.write_text(json.dumps({"kind": "field", "bounds": [[0, 0, 0], [1, 1, 1]]})),
                    "is a JSON text file, not a fieldkit asset"),
    "mesh.asset": (lambda path: path.write_text("# exported\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n"),
                   "a Wavefront .obj mesh?"),
    "model.pt": (torch_zip, "zip archive (a PyTorch .pt/.pth checkpoint? fieldkit never unpickles)"),
    "weights.pkl": (lambda path: path.write_bytes(pickle.dumps([1, 2, 3], protocol=4)), "Python pickle"),
    "empty.safetensors": (lambda path: path.write_bytes(b""), "not a readable safetensors file"),
    "short.safetensors": (lambda path: path.write_bytes(b"\x01\x02"), "not a readable safetensors file"),
    "huge-length.safetensors": (lambda path: path.write_bytes(struct.pack("<Q", 2**60) + b"{}"),
                                "first 8 bytes are not a safetensors header length"),
}


@pytest.mark.parametrize("name", list(FOREIGN_FILES))
def test_files_that_are_not_assets_say_what_they_are(name, tmp_path):
    write, expected = FOREIGN_FILES[name]
    path = tmp_path / name
    write(path)
    with pytest.raises(FieldkitError) as error:
        fieldkit.load(path)
    assert str(path) in str(error.value) and expected in str(error.value), str(error.value)
    assert "header too large" not in str(error.value)
    code, stdout, stderr = run(["info", path])
    assert code == 2 and not stdout and stderr.count("\n") == 1 and expected in stderr, stderr
