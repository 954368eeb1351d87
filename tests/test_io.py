"""The asset file: safetensors with a JSON header, round trips, clear errors, atomic writes."""
from __future__ import annotations

import json
import os
import pickle
import random
import struct

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import fieldkit
import fieldkit.asset_file
from fieldkit.cameras import Cameras, look_at
from fieldkit.errors import FieldkitError
from fieldkit.fields import ARCHITECTURES, make_config, make_field
from fieldkit.asset_file import FORMAT_VERSION, HEADER_KEY
from fieldkit.io import field_from_header, save_field
from fieldkit.radiance import RadianceField
from fieldkit.render.occupancy import OccupancyGrid

AABB = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])


def random_model(architecture: str, overrides: dict, seed: int = 0) -> RadianceField:
    """A small model with random parameters and a random occupancy grid, so that every tensor
    shows in its renders."""
    torch.manual_seed(seed)
    field = make_field(architecture, AABB, make_config(architecture, overrides=overrides))
    with torch.no_grad():
        for parameter in field.parameters():
            parameter.copy_(torch.randn_like(parameter) * 0.5)
        if architecture == "voxels":
            field.density.add_(1.0)
    grid = OccupancyGrid(AABB, resolution=8)
    grid.density.copy_(torch.rand(grid.density.shape) * 3)
    grid.occupied.copy_(torch.rand(grid.occupied.shape) < 0.8)
    model = RadianceField(field, grid, step_size=0.037, background=(0.1, 0.2, 0.3))
    model.metrics = {"psnr_test": 12.5, "steps": 7}
    model.dataset = {"name": "unit-test"}
    return model


def two_cameras(size: int = 12) -> Cameras:
    eyes = torch.tensor([[3.0, 1.0, 1.5], [-1.0, -3.0, 0.5]])
    return Cameras.from_fov(look_at(eyes, torch.zeros(3)), size, size, 0.9)




@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_round_trip_renders_identical_images(architecture, small_fields, tmp_path):
    model = random_model(architecture, small_fields[architecture]).eval()
    path = tmp_path / "asset.safetensors"
    save_field(model, path)
    loaded = fieldkit.load(path)
    assert callable(getattr(loaded, "render", None))
    assert loaded.architecture == architecture
    assert loaded.metrics == model.metrics and loaded.dataset == model.dataset
    assert loaded.step_size == model.step_size
    cameras = two_cameras()
    before, after = model.render(cameras), loaded.render(cameras)
    assert after.rgb.shape == (2, 12, 12, 3)
    for name in ("rgb", "alpha", "depth"):
        assert torch.equal(getattr(before, name), getattr(after, name)), name
    assert before.rgb.std() > 0.02 and before.alpha.max() > 0.1, "the test scene shows next to nothing"
    # the same header with freshly initialised tensors renders differently: the tensors carry the content
    with safe_open(str(path), framework="pt") as handle:
        header = json.loads(handle.metadata()[HEADER_KEY])
    assert not torch.equal(field_from_header(header).eval().render(cameras).rgb, before.rgb)


def test_the_file_is_plain_safetensors_with_a_json_header(small_fields, tmp_path):
    model = random_model("hashgrid", small_fields["hashgrid"])
    path = tmp_path / "asset.safetensors"
    save_field(model, path)
    raw = path.read_bytes()
    (header_length,) = struct.unpack("<Q", raw[:8])
    outer = json.loads(raw[8:8 + header_length])  # safetensors' own header: plain JSON
    header = json.loads(outer["__metadata__"][HEADER_KEY])
    with safe_open(str(path), framework="pt") as handle:
        assert json.loads(handle.metadata()[HEADER_KEY]) == header
        assert "occupancy.occupied" in set(handle.keys())
    for key in ("format_version", "kind", "architecture", "config", "bounds", "occupancy", "metrics"):
        assert key in header, key
    assert header["format_version"] == FORMAT_VERSION and header["kind"] == "field"
    assert header["architecture"] == "hashgrid"
    assert header["config"] == model.field.config_dict()
    assert header["bounds"] == AABB.tolist()
    assert header["occupancy"]["resolution"] == 8
    assert header["metrics"] == {"psnr_test": 12.5, "steps": 7}


def test_loading_never_unpickles(small_fields, tmp_path, monkeypatch):
    path = tmp_path / "asset.safetensors"
    save_field(random_model("voxels", small_fields["voxels"]), path)

    def refuse(*args, **kwargs):
        raise AssertionError("loading an asset must not unpickle")

    for module, name in ((pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load")):
        monkeypatch.setattr(module, name, refuse)
    assert fieldkit.load(path).architecture == "voxels"


# -- bad input -----------------------------------------------------------------------------

def truncated(good: bytes, path) -> None:
    path.write_bytes(good[: len(good) // 2])


def random_bytes(good: bytes, path) -> None:
    path.write_bytes(random.Random(0).randbytes(len(good) // 4))


def empty(good: bytes, path) -> None:
    path.write_bytes(b"")


def foreign_safetensors(good: bytes, path) -> None:
    save_file({"weight": torch.zeros(3, 3)}, str(path), metadata={"format": "pt"})


def rewritten_header(change):
    def write(good: bytes, path) -> None:
        source = path.with_suffix(".source")
        source.write_bytes(good)
        with safe_open(str(source), framework="pt") as handle:
            header = json.loads(handle.metadata()[HEADER_KEY])
        save_file(load_file(str(source)), str(path), metadata={HEADER_KEY: change(header)})

    return write


BAD_FILES = {
    "truncated": (truncated, "not a readable safetensors file"),
    "random bytes": (random_bytes, "not a readable safetensors file"),
    "empty": (empty, "not a readable safetensors file"),
    "foreign safetensors": (foreign_safetensors, "not a fieldkit asset"),
    "newer format": (rewritten_header(lambda h: json.dumps(h | {"format_version": FORMAT_VERSION + 1})), "upgrade"),
    "corrupt header": (rewritten_header(lambda h: json.dumps(h)[:-5]), "header"),
    "incomplete header": (rewritten_header(lambda h: json.dumps({k: v for k, v in h.items() if k != "config"})),
                          "header"),
    "unknown kind": (rewritten_header(lambda h: json.dumps(h | {"kind": "hologram"})), "hologram"),
    "tensors of another config": (rewritten_header(
        lambda h: json.dumps(h | {"config": h["config"] | {"resolution": 9}})), "does not match"),
}


@pytest.fixture(scope="module")
def good_asset(tmp_path_factory):
    path = tmp_path_factory.mktemp("good") / "asset.safetensors"
    save_field(random_model("voxels", {"resolution": 8}), path)
    return path.read_bytes()


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_files_give_one_clear_error_naming_the_file(case, good_asset, tmp_path):
    make, expected = BAD_FILES[case]
    path = tmp_path / "bad.safetensors"
    make(good_asset, path)
    with pytest.raises(FieldkitError) as error:
        fieldkit.load(path)
    message = str(error.value)
    assert str(path) in message and expected in message, message
    assert "\n" not in message


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.safetensors"
    with pytest.raises(FieldkitError, match="no asset") as error:
        fieldkit.load(path)
    assert str(path) in str(error.value)


# -- atomic writes -------------------------------------------------------------------------

def failing_save(tensors, filename, metadata=None):
    """Writes half a file, then fails, as a full disk or a crash would."""
    with open(filename, "wb") as handle:
        handle.write(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"half\": ")
    raise OSError("No space left on device")


def test_a_failed_write_leaves_nothing_behind(small_fields, tmp_path, monkeypatch):
    folder = tmp_path / "assets"
    folder.mkdir()
    monkeypatch.setattr(fieldkit.asset_file, "save_file", failing_save)
    with pytest.raises(OSError):
        save_field(random_model("voxels", small_fields["voxels"]), folder / "asset.safetensors")
    assert list(folder.iterdir()) == []


def test_a_failed_overwrite_keeps_the_old_asset(small_fields, tmp_path, monkeypatch):
    path = tmp_path / "asset.safetensors"
    save_field(random_model("voxels", small_fields["voxels"]), path)
    before = path.read_bytes()
    monkeypatch.setattr(fieldkit.asset_file, "save_file", failing_save)
    with pytest.raises(OSError):
        save_field(random_model("voxels", small_fields["voxels"], seed=1), path)
    assert path.read_bytes() == before
    assert [entry.name for entry in tmp_path.iterdir()] == ["asset.safetensors"]
    assert fieldkit.load(path).metrics["steps"] == 7


def test_written_assets_get_the_permissions_of_any_new_file(small_fields, tmp_path):
    """The temporary file behind an atomic write is owner-only; the asset must not stay so."""
    previous = os.umask(0o022)
    try:
        path = tmp_path / "shared.safetensors"
        save_field(random_model("voxels", small_fields["voxels"]), path)
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == 0o644
