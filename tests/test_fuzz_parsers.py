"""Property-based fuzzing of every file parser: transforms.json datasets, the 3DGS .ply, the web
.splat and fieldkit assets (safetensors + JSON header).

Each case takes a valid file, applies one to four random mutations (byte flips, truncations,
insertions, special numbers written over the data, JSON values replaced by random values of
random types, tensors of another dtype or shape, ...) and parses the result. The parser must
either load it (and then what it returns must be sane: finite, of consistent shapes, and
renderable) or raise one FieldkitError of one line: no other exception, no hang.

Size: FIELDKIT_FUZZ_EXAMPLES cases per parser (the "fuzz" profile in conftest.py; 100 by
default, 2000 nightly). FIELDKIT_FUZZ_COLLECT=FILE records every crash in FILE (one JSON line
each) instead of failing at the first: the census docs/reliability.md reports.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import shutil
import signal
import struct
import traceback
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, note, settings, strategies as st
from PIL import Image
from safetensors.torch import save_file

import fieldkit
from fieldkit.asset_file import HEADER_KEY, read_tensors
from fieldkit.cameras import Cameras, look_at
from fieldkit.data import load_cameras, load_dataset
from fieldkit.errors import FieldkitError
from fieldkit.fields import make_config, make_field
from fieldkit.gaussians import Splats, load_splats, save_splats
from fieldkit.gaussians.asset import save_splats_asset
from fieldkit.io import describe, save_field
from fieldkit.radiance import RadianceField
from fieldkit.render.occupancy import OccupancyGrid
from fieldkit.rendering import turntable_around

FUZZ = settings.get_profile("fuzz")
CASE_SECONDS = 30  # a case that takes longer is a hang
COLLECT = os.environ.get("FIELDKIT_FUZZ_COLLECT")

SPECIAL_FLOATS = [math.nan, math.inf, -math.inf, 3.4e38, -3.4e38, 3.5e38, 1e30, 1e-45, 0.0, -0.0, 88.8, -1e10,
                  1e300, 5e-324]
SPECIAL_INTS = [0, 1, -1, 2, 3, 255, 256, 16384, 16385, 2**31 - 1, 2**31, 2**32, 2**63 - 1, 2**64, -2**63,
                10**6, 10**400]
# an integer of 5000 digits (beyond Python's int-from-string limit): drawn as this marker, which
# `dumps` replaces in the JSON text (hypothesis cannot print such an integer in its reports)
HUGE_INT = "<5000-digit integer>"
SPECIAL_STRINGS = ["", ".", "..", "../../etc/passwd", "/etc/passwd", "images", "images/", "a\nb", "\x00", "\\..\\x",
                   "NaN", "Infinity", "field", "splats", "checkpoint", "voxels", "hashgrid", "mlp", "tensorf-vm",
                   "tensorf-cp", "gaussians", "tinycudann", "torch", "OPENCV", "PINHOLE", "FISHEYE", "x" * 300,
                   "images/frame_000.png", "./train/r_0", "outside.png", "../outside.png"]


# -- running one case ------------------------------------------------------------------------------

class Hang(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: int):
    def on_alarm(signum, frame):
        raise Hang(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _record(parser: str, stage: str, error: BaseException) -> None:
    """Appends one crash to the COLLECT file: its type and the innermost fieldkit frame."""
    frames = traceback.extract_tb(error.__traceback__)
    inside = [frame for frame in frames if "/fieldkit/" in frame.filename] or frames
    where = f"{Path(inside[-1].filename).name}:{inside[-1].lineno}" if inside else "?"
    line = (str(error).splitlines() or [""])[0][:160]
    with open(COLLECT, "a") as handle:
        handle.write(json.dumps({"parser": parser, "stage": stage, "type": type(error).__name__, "where": where,
                                 "message": line}) + "\n")


def loads_or_refuses(parser: str, parse, check=lambda result: None):
    """parse() must return (then `check` its result) or raise a one-line FieldkitError.
    Returns the result, or None when the input was refused."""
    try:
        with time_limit(CASE_SECONDS), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = parse()
    except FieldkitError as error:
        message = str(error)
        if not message or "\n" in message or "\r" in message:
            problem = AssertionError(f"not one line: {message!r}")
            if not COLLECT:
                raise problem from None
            _record(parser, "error message not one line", problem)
        return None
    except Exception as error:  # noqa: BLE001 - the point: any other exception is a finding
        if COLLECT:
            _record(parser, "crash" if not isinstance(error, Hang) else "hang", error)
            return None
        raise
    try:
        with time_limit(CASE_SECONDS), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            check(result)
    except Exception as error:  # noqa: BLE001
        if COLLECT:
            _record(parser, "wrong success", error)
            return None
        raise
    return result


# -- mutation strategies ------------------------------------------------------------------------------

def json_leaves():
    return st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.sampled_from(SPECIAL_INTS + [HUGE_INT]),
                     st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(SPECIAL_FLOATS),
                     st.text(max_size=12), st.sampled_from(SPECIAL_STRINGS))


def json_values():
    matrices = st.lists(st.lists(st.one_of(st.floats(), st.sampled_from(SPECIAL_FLOATS), st.integers(-3, 3)),
                                 min_size=2, max_size=5), min_size=2, max_size=5)
    return st.one_of(json_leaves(), matrices, st.recursive(
        json_leaves(), lambda children: st.lists(children, max_size=5) |
        st.dictionaries(st.text(max_size=8), children, max_size=4), max_leaves=10))


def dumps(document) -> str:
    return json.dumps(document).replace(json.dumps(HUGE_INT), "9" * 5000)


def _nodes(value, path=()):
    """Every (path, value) of a JSON document, the root included."""
    yield path, value
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _nodes(child, path + (key,))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _nodes(child, path + (index,))


def _set(document, path, value):
    if not path:
        return value
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return document


def mutate_json(data, document, known_keys: list[str]):
    """One random change to a JSON document: a value replaced, a key removed or added, an element
    appended or removed."""
    nodes = list(_nodes(document))
    path, node = data.draw(st.sampled_from(nodes), label="node")
    operation = data.draw(st.sampled_from(["replace", "delete", "add key", "grow list", "shrink list"]),
                          label="json operation")
    if operation == "delete" and path:
        parent = document
        for key in path[:-1]:
            parent = parent[key]
        del parent[path[-1]]
        return document
    if operation == "add key" and isinstance(node, dict):
        key = data.draw(st.sampled_from(known_keys) | st.text(max_size=6), label="key")
        node[key] = data.draw(json_values(), label="value")
        return document
    if operation == "grow list" and isinstance(node, list):
        node.append(data.draw(json_values() | st.sampled_from(node or [0]), label="element"))
        return document
    if operation == "shrink list" and isinstance(node, list) and node:
        node.pop(data.draw(st.integers(0, len(node) - 1), label="index"))
        return document
    return _set(document, path, data.draw(json_values(), label="value"))


def mutate_bytes(data, raw: bytes, start: int = 0, align: int = 1) -> bytes:
    """One random change to bytes: a flip, a truncation, an insertion, a deletion, or a special
    float or integer written over them (at `align`-byte boundaries from `start`)."""
    raw = bytearray(raw)
    operation = data.draw(st.sampled_from(["flip", "truncate", "insert", "delete", "float", "u32", "u64", "append"]),
                          label="byte operation")
    if not raw or operation == "append":
        return bytes(raw + data.draw(st.binary(min_size=1, max_size=64), label="appended"))
    position = data.draw(st.integers(min(start, len(raw) - 1), len(raw) - 1), label="position")
    if operation == "flip":
        raw[position] ^= 1 << data.draw(st.integers(0, 7), label="bit")
    elif operation == "truncate":
        del raw[position:]
    elif operation == "insert":
        raw[position:position] = data.draw(st.binary(min_size=1, max_size=16), label="inserted")
    elif operation == "delete":
        del raw[position:position + data.draw(st.integers(1, 16), label="deleted")]
    else:
        position = start + (position - start) // align * align
        if operation == "float":
            with np.errstate(over="ignore"):
                value = struct.pack("<f", np.float32(data.draw(st.sampled_from(SPECIAL_FLOATS) | st.floats(width=32),
                                                               label="float")))
        elif operation == "u32":
            value = struct.pack("<I", data.draw(st.integers(0, 2**32 - 1) | st.sampled_from([0, 2**31, 2**32 - 1]),
                                                label="u32"))
        else:
            value = struct.pack("<Q", data.draw(st.integers(0, 2**64 - 1), label="u64"))
        raw[position:position + len(value)] = value
    return bytes(raw)


def mutation_count(data) -> int:
    return data.draw(st.integers(1, 4), label="mutations")


# -- transforms.json datasets ---------------------------------------------------------------------------

TRANSFORMS_KEYS = ["w", "h", "fl_x", "fl_y", "cx", "cy", "camera_angle_x", "camera_angle_y", "k1", "k2", "p1", "p2",
                   "camera_model", "aabb", "aabb_scale", "scale", "offset", "ply_file_path", "train_filenames",
                   "val_filenames", "test_filenames", "frames", "file_path", "transform_matrix"]


def ring(count: int) -> list:
    angles = torch.arange(count) * (2 * math.pi / count)
    eyes = torch.stack([4 * torch.cos(angles), 4 * torch.sin(angles), torch.full_like(angles, 1.5)], dim=-1)
    return look_at(eyes, torch.zeros(3)).tolist()


@pytest.fixture(scope="module")
def dataset_template(tmp_path_factory) -> Path:
    """A 4-frame nerfstudio-style dataset (8 x 6 RGBA PNGs), a point cloud, and an image outside it."""
    root = tmp_path_factory.mktemp("fuzz-dataset")
    template = root / "template"
    (template / "images").mkdir(parents=True)
    frames = []
    for index, pose in enumerate(ring(4)):
        pixels = np.random.default_rng(index).integers(0, 256, size=(6, 8, 4)).astype(np.uint8)
        Image.fromarray(pixels).save(template / "images" / f"frame_{index:03d}.png")
        frames.append({"file_path": f"images/frame_{index:03d}.png", "transform_matrix": pose})
    frames[1]["fl_x"] = 7.5  # a per-frame override
    (template / "points.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 1\n"
                                          b"property float x\nproperty float y\nproperty float z\nend_header\n"
                                          + bytes(12))
    document = {"camera_model": "OPENCV", "fl_x": 7.0, "fl_y": 7.0, "cx": 4.0, "cy": 3.0, "w": 8, "h": 6,
                "k1": 0.01, "k2": 0.0, "p1": 0.0, "p2": 0.0, "ply_file_path": "points.ply", "frames": frames}
    (template / "transforms.json").write_text(json.dumps(document))
    Image.fromarray(np.zeros((6, 8, 3), dtype=np.uint8)).save(root / "outside.png")
    return template


def mutate_image(data, folder: Path) -> None:
    path = folder / "images" / f"frame_{data.draw(st.integers(0, 3), label='image'):03d}.png"
    kind = data.draw(st.sampled_from(["bytes", "size", "mode", "empty", "directory", "float nan"]), label="image change")
    if not path.is_file():  # an earlier change made it a directory
        return
    if kind == "bytes":
        path.write_bytes(mutate_bytes(data, path.read_bytes()))
    elif kind == "size":
        size = (data.draw(st.integers(1, 24), label="width"), data.draw(st.integers(1, 24), label="height"))
        Image.new("RGB", size, (10, 20, 30)).save(path, format="PNG")
    elif kind == "mode":
        mode = data.draw(st.sampled_from(["L", "LA", "P", "I", "I;16", "1", "CMYK", "RGBX"]), label="mode")
        Image.new(mode, (8, 6)).save(path, format="PNG" if mode in ("L", "LA", "P", "1") else "TIFF")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "directory":
        path.unlink()
        path.mkdir()
    else:
        Image.fromarray(np.full((6, 8), np.nan, dtype=np.float32), mode="F").save(path, format="TIFF")


def escape(data, folder: Path, document: dict) -> bool:
    """A frame whose image lies outside the dataset: through "..", an absolute path or a symlink;
    False when the (mutated) document has no frame to change."""
    outside = folder.parent / "outside.png"
    if not isinstance(document, dict):
        return False
    how = data.draw(st.sampled_from(["dots", "absolute", "symlink", "symlinked folder"]), label="escape")
    frame = document["frames"][data.draw(st.integers(0, len(document["frames"]) - 1), label="frame")] \
        if isinstance(document.get("frames"), list) and document["frames"] else None
    if not isinstance(frame, dict):
        return False
    if how == "dots":
        frame["file_path"] = "images/../../outside.png"
    elif how == "absolute":
        frame["file_path"] = str(outside)
    elif how == "symlink":
        (folder / "images" / "link.png").symlink_to(outside)
        frame["file_path"] = "images/link.png"
    else:
        (folder / "elsewhere").symlink_to(folder.parent, target_is_directory=True)
        frame["file_path"] = "elsewhere/outside.png"
    return True


def check_cameras(cameras: Cameras) -> None:
    assert len(cameras) >= 1
    for name in ("c2w", "fx", "fy", "cx", "cy", "distortion"):
        assert torch.isfinite(getattr(cameras, name)).all(), name
    assert (cameras.fx > 0).all() and (cameras.fy > 0).all()
    assert (cameras.width >= 1).all() and (cameras.height >= 1).all()
    assert (cameras.width <= 16384).all() and (cameras.height <= 16384).all()


def check_dataset(dataset) -> None:
    check_cameras(dataset.cameras)
    assert len(dataset.images) == len(dataset.cameras) >= 1
    for index, image in enumerate(dataset.images):
        assert image.dtype == torch.float32 and torch.isfinite(image).all()
        assert image.min() >= 0 and image.max() <= 1
        assert image.shape == (int(dataset.cameras.height[index]), int(dataset.cameras.width[index]), 3)
    assert torch.isfinite(dataset.aabb).all() and (dataset.aabb[0] < dataset.aabb[1]).all()
    if dataset.point_cloud is not None:
        assert dataset.point_cloud.resolve().is_relative_to(Path(dataset.source).resolve().parent) or \
            dataset.point_cloud.resolve().is_relative_to(Path(dataset.source).resolve())


_cases = itertools.count()


@settings(FUZZ)
@given(data=st.data())
def test_transforms_json(dataset_template, tmp_path, data):
    folder = tmp_path / f"case-{next(_cases)}"
    shutil.copytree(dataset_template, folder, symlinks=True)
    try:
        document = json.loads((folder / "transforms.json").read_text())
        escaped, text = False, None
        for _ in range(mutation_count(data)):
            kind = data.draw(st.sampled_from(["json", "json", "json", "text", "image"]), label="mutation")
            if kind == "json":
                document = mutate_json(data, document, TRANSFORMS_KEYS)
            elif kind == "text":
                text = mutate_bytes(data, (text or dumps(document).encode()))
            else:
                mutate_image(data, folder)
        if text is None and data.draw(st.integers(0, 4), label="escape?") == 0:
            escaped = escape(data, folder, document)  # last, so that no later change undoes it
        raw = text if text is not None else dumps(document).encode()
        (folder / "transforms.json").write_bytes(raw)
        note(raw[:2000].decode("utf-8", errors="replace"))

        def no_escape(result):
            assert not escaped, "loaded a dataset whose image lies outside its directory"

        split = data.draw(st.sampled_from(["train", "test", "val"]), label="split")
        loads_or_refuses("transforms.json", lambda: load_dataset(folder, split),
                         lambda dataset: (check_dataset(dataset), no_escape(dataset)))
        loads_or_refuses("transforms.json", lambda: load_cameras(folder / "transforms.json"),
                         lambda result: (check_cameras(result[0]), no_escape(result)))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- splat files -----------------------------------------------------------------------------------------

def small_splats(count: int = 6, degree: int = 1) -> Splats:
    generator = torch.Generator().manual_seed(0)
    return Splats(torch.randn(count, 3, generator=generator) * 0.3, torch.full((count, 3), -2.0),
                  torch.randn(count, 4, generator=generator), torch.randn(count, generator=generator),
                  torch.randn(count, 3, generator=generator),
                  torch.randn(count, (degree + 1) ** 2 - 1, 3, generator=generator) * 0.1)


def check_splats(splats) -> None:
    assert isinstance(splats, Splats) and len(splats) >= 1
    for name in ("means", "log_scales", "quaternions", "opacity_logits", "sh_dc", "sh_rest"):
        value = getattr(splats, name)
        assert value.dtype == torch.float32 and torch.isfinite(value).all(), name
    assert (splats.quaternions.norm(dim=-1) > 0).all()
    assert torch.isfinite(splats.background).all()
    with torch.no_grad():  # as `fieldkit render --orbit` frames it
        output = splats.render(turntable_around(splats.aabb, 1, 6))
    assert output.rgb.shape == (1, 6, 6, 3)


PLY_LINES = [b"element face 3", b"property list uchar int vertex_indices", b"property double f_rest_0",
             b"comment made by fuzz", b"format ascii 1.0", b"format binary_big_endian 1.0", b"element vertex -1",
             b"element vertex 99999999999", b"element vertex 0", b"property float", b"property", b"element",
             b"property uchar opacity", b"property float x", b"obj_info x", b"end_header"]
PLY_TOKENS = ["-1", "0", "1", "6", "7", "99999999999999999999", "1e9", "nan", "float", "double", "uchar", "int",
              "list", "vertex", "face", "x", "f_rest_8", "f_rest_99", "opacity", "binary_little_endian", "ascii", ""]


def mutate_ply_header(data, raw: bytes) -> bytes:
    head, separator, body = raw.partition(b"end_header\n")
    lines = head.split(b"\n")
    index = data.draw(st.integers(0, len(lines) - 1), label="line")
    operation = data.draw(st.sampled_from(["token", "delete", "duplicate", "swap", "insert"]), label="ply operation")
    if operation == "token":
        words = lines[index].split(b" ")
        position = data.draw(st.integers(0, len(words) - 1), label="word")
        words[position] = data.draw(st.sampled_from(PLY_TOKENS) | st.text(max_size=6), label="token").encode(
            "utf-8", errors="replace")
        lines[index] = b" ".join(words)
    elif operation == "delete":
        del lines[index]
    elif operation == "duplicate":
        lines.insert(index, lines[index])
    elif operation == "swap":
        other = data.draw(st.integers(0, len(lines) - 1), label="other line")
        lines[index], lines[other] = lines[other], lines[index]
    else:
        lines.insert(index, data.draw(st.sampled_from(PLY_LINES), label="inserted line"))
    return b"\n".join(lines) + separator + body


@pytest.fixture(scope="module")
def ply_template(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("fuzz-ply") / "template.ply"
    save_splats(small_splats(), path)
    return path.read_bytes()


@settings(FUZZ)
@given(data=st.data())
def test_ply(ply_template, tmp_path, data):
    raw = ply_template
    data_start = raw.index(b"end_header\n") + len(b"end_header\n")
    for _ in range(mutation_count(data)):
        if data.draw(st.booleans(), label="header?"):
            raw = mutate_ply_header(data, raw)
        else:
            raw = mutate_bytes(data, raw, start=min(data_start, max(len(raw) - 1, 0)), align=4)
    path = tmp_path / "case.ply"
    path.write_bytes(raw)
    loads_or_refuses(".ply", lambda: load_splats(path), check_splats)
    loads_or_refuses(".ply", lambda: fieldkit.load(path), check_splats)


@pytest.fixture(scope="module")
def splat_template(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("fuzz-splat") / "template.splat"
    save_splats(small_splats(degree=0), path)
    return path.read_bytes()


@settings(FUZZ)
@given(data=st.data())
def test_web_splat(splat_template, tmp_path, data):
    raw = splat_template
    for _ in range(mutation_count(data)):
        raw = mutate_bytes(data, raw, align=4)
    path = tmp_path / "case.splat"
    path.write_bytes(raw)
    loads_or_refuses(".splat", lambda: load_splats(path), check_splats)


# -- fieldkit assets -------------------------------------------------------------------------------------

AABB = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
TINY_FIELDS = {
    "voxels": {"resolution": 4, "sh_degree": 1, "tv_voxels": 8},
    "mlp": {"width": 8, "depth": 2, "frequencies": 2, "colour_width": 8},
    "hashgrid": {"levels": 2, "log2_table_size": 6, "base_resolution": 4, "max_resolution": 16, "hidden_width": 8,
                 "colour_width": 8},
    "tensorf-vm": {"resolution": 4, "components": 2, "colour_width": 8},
    "tensorf-cp": {"resolution": 4, "components": 2, "colour_width": 8},
}
ASSET_KEYS = ["format_version", "kind", "architecture", "config", "bounds", "render", "step_size", "background",
              "occupancy", "resolution", "decay", "opacity_threshold", "metrics", "dataset", "parameters", "count",
              "sh_degree", "name", "source", "width", "depth", "levels", "log2_table_size", "components", "backend"]
DTYPES = [torch.float64, torch.float16, torch.bfloat16, torch.int32, torch.int64, torch.uint8, torch.int8, torch.bool]


def tiny_field(architecture: str) -> RadianceField:
    torch.manual_seed(0)
    field = make_field(architecture, AABB, make_config(architecture, overrides=TINY_FIELDS[architecture]))
    grid = OccupancyGrid(AABB, resolution=4)
    grid.density.copy_(torch.rand(grid.density.shape))
    model = RadianceField(field, grid, step_size=float((AABB[1] - AABB[0]).norm()) / 32, background=(0.1, 0.2, 0.3))
    model.metrics, model.dataset = {"psnr_test": 20.0}, {"name": "fuzz", "source": "nowhere"}
    return model


class Templates(dict):
    def __repr__(self) -> str:  # hypothesis prints the fixtures of a failing case
        return f"<templates: {', '.join(self)}>"


@pytest.fixture(scope="module")
def asset_templates(tmp_path_factory) -> dict[str, tuple[dict, dict]]:
    """name -> (tensors, header) of a valid tiny asset of each kind."""
    folder = tmp_path_factory.mktemp("fuzz-assets")
    templates = Templates()
    for architecture in TINY_FIELDS:
        save_field(tiny_field(architecture), folder / f"{architecture}.safetensors")
    splats = small_splats()
    splats.metrics, splats.dataset = {"psnr_test": 20.0}, {"name": "fuzz"}
    save_splats_asset(splats, folder / "splats.safetensors")
    for path in folder.iterdir():
        templates[path.stem] = read_tensors(path)
    return templates


def mutate_tensors(data, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    names = sorted(tensors)
    name = data.draw(st.sampled_from(names), label="tensor")
    operation = data.draw(st.sampled_from(["dtype", "reshape", "drop", "extra", "special", "resize"]),
                          label="tensor operation")
    tensor = tensors[name]
    if operation == "dtype":
        tensors[name] = tensor.to(data.draw(st.sampled_from(DTYPES), label="dtype"))
    elif operation == "reshape":
        tensors[name] = tensor.reshape(-1) if tensor.dim() > 1 else tensor.reshape(1, -1)
    elif operation == "drop":
        del tensors[name]
    elif operation == "extra":
        tensors[data.draw(st.sampled_from(["field.extra", "occupancy.extra", "means2", "field.grid.table"]),
                          label="extra name")] = torch.zeros(data.draw(st.integers(0, 5), label="extra size"))
    elif operation == "special" and tensor.numel() and tensor.is_floating_point():
        tensor = tensor.clone()
        index = data.draw(st.integers(0, tensor.numel() - 1), label="element")
        with np.errstate(over="ignore"):  # 3.5e38 is inf in float32
            value = np.float32(data.draw(st.sampled_from(SPECIAL_FLOATS) | st.floats(width=32), label="float"))
        tensor.view(-1)[index] = float(value)
        tensors[name] = tensor
    else:
        tensors[name] = torch.zeros(data.draw(st.integers(0, 70), label="new size"), dtype=tensor.dtype)
    return tensors


def check_asset(model) -> None:
    if isinstance(model, Splats):
        check_splats(model)
        return
    assert isinstance(model, RadianceField)
    aabb = model.aabb
    assert torch.isfinite(aabb).all() and (aabb[0] < aabb[1]).all()
    assert math.isfinite(model.step_size) and model.step_size > 0
    for name, value in model.field.state_dict().items():
        assert value.dtype == torch.float32 and torch.isfinite(value).all(), name
    output = model.render(turntable_around(aabb, 1, 6))
    assert output.rgb.shape == (1, 6, 6, 3)


@settings(FUZZ)
@given(data=st.data())
def test_asset(asset_templates, tmp_path, data):
    name = data.draw(st.sampled_from(sorted(asset_templates)), label="template")
    tensors, header = asset_templates[name]
    tensors = dict(tensors)
    header = json.loads(json.dumps(header))
    header_text, raw_mutations = None, []
    for _ in range(mutation_count(data)):
        kind = data.draw(st.sampled_from(["header", "header", "header", "header text", "tensor", "tensor", "bytes"]),
                         label="mutation")
        if kind == "header":
            header = mutate_json(data, header, ASSET_KEYS)
        elif kind == "header text":
            header_text = mutate_bytes(data, (header_text or dumps(header)).encode()).decode(
                "utf-8", errors="replace")
        elif kind == "tensor" and tensors:
            tensors = mutate_tensors(data, tensors)
        else:
            raw_mutations.append(kind)
    path = tmp_path / "case.safetensors"
    metadata = {HEADER_KEY: header_text if header_text is not None else dumps(header)}
    note(metadata[HEADER_KEY][:2000])
    save_file({key: value.contiguous() for key, value in tensors.items()}, str(path), metadata=metadata)
    if raw_mutations:
        raw = path.read_bytes()
        for _ in raw_mutations:
            raw = mutate_bytes(data, raw)
        path.write_bytes(raw)
    loaded = loads_or_refuses("asset", lambda: fieldkit.load(path), check_asset)
    described = loads_or_refuses("asset", lambda: describe(path), check_header)
    if (loaded is None) != (described is None):
        disagreement = AssertionError(f"load {'refused' if loaded is None else 'loaded'} it but describe "
                                      f"(fieldkit info) {'refused' if described is None else 'accepted'} it")
        if not COLLECT:
            raise disagreement
        _record("asset", "info disagrees with load", disagreement)


def check_header(header) -> None:
    assert isinstance(header, dict)
