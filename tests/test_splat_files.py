"""Splat files: the 3DGS .ply (bit-exact round trips, gsplat's exporter layout, every kind of
bad input) and the web .splat, and `fieldkit.load` / `info` / `render` on them."""
from __future__ import annotations

import contextlib
import importlib
import io
import json
import math
import struct

import numpy as np
import pytest
import torch

import fieldkit
from fieldkit.cli import main
from fieldkit.errors import FieldkitError
from fieldkit.gaussians import Splats, load_splats, save_splats
from fieldkit.gaussians.model import SH_C0
from fieldkit.gaussians.websplat import RECORD

PARAMETERS = ("means", "log_scales", "quaternions", "opacity_logits", "sh_dc", "sh_rest")
INRIA_FIXED = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
INRIA_TAIL = ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]


def make_splats(count: int = 50, degree: int = 3, seed: int = 0) -> Splats:
    generator = torch.Generator().manual_seed(seed)

    def normal(*shape, scale=1.0):
        return torch.randn(*shape, generator=generator) * scale

    return Splats(normal(count, 3), normal(count, 3, scale=0.5) - 3, normal(count, 4, scale=3), normal(count),
                  normal(count, 3), normal(count, (degree + 1) ** 2 - 1, 3, scale=0.3))


def inria_names(rest_count: int) -> list[str]:
    return INRIA_FIXED + [f"f_rest_{index}" for index in range(rest_count)] + INRIA_TAIL


def ply_bytes(properties: list[tuple[str, str]], rows: np.ndarray, *, file_format: str = "binary_little_endian",
              count: int | None = None, after_vertices: str = "") -> bytes:
    """A PLY with one vertex element of `properties` (type, name) and the given row data."""
    header = [f"ply\nformat {file_format} 1.0\n", f"element vertex {len(rows) if count is None else count}\n",
              *(f"property {kind} {name}\n" for kind, name in properties), after_vertices, "end_header\n"]
    return "".join(header).encode("ascii") + rows.tobytes()


def inria_rows(splats: Splats) -> np.ndarray:
    """The INRIA table [N, 62 at degree 3], built the way the reference implementation saves it."""
    with torch.no_grad():
        rest = splats.sh_rest.transpose(1, 2).flatten(start_dim=1)  # [N, 3 * K], channel-major
        table = [splats.means, torch.zeros_like(splats.means), splats.sh_dc, rest, splats.opacity_logits[:, None],
                 splats.log_scales, splats.quaternions]
        return torch.cat(table, dim=1).numpy().astype("<f4")


def write_inria(path, splats: Splats, drop: tuple[str, ...] = (), **options) -> None:
    names, rows = inria_names(3 * splats.sh_rest.shape[1]), inria_rows(splats)
    keep = [index for index, name in enumerate(names) if name not in drop]
    path.write_bytes(ply_bytes([("float", names[index]) for index in keep], np.ascontiguousarray(rows[:, keep]),
                               **options))


def parse_by_name(data: bytes) -> dict[str, np.ndarray]:
    """The reference readers' way (INRIA's load_ply, gsplat's viewers): properties by name."""
    header, body = data.split(b"end_header\n", 1)
    names = [line.split()[2] for line in header.decode().splitlines() if line.startswith("property")]
    table = np.frombuffer(body, dtype=np.dtype([(name, "<f4") for name in names]))
    return {name: table[name] for name in names}


def gsplat_exporter():
    try:
        return importlib.import_module("gsplat.exporter")
    except ImportError as error:
        pytest.skip(f"gsplat's exporter is not importable ({error}); pip install 'fieldkit[test]' to run this check")


def assert_same_splats(loaded: Splats, expected: Splats) -> None:
    for name in PARAMETERS:
        assert torch.equal(getattr(loaded, name), getattr(expected, name)), name


# -- .ply round trips and interoperability -----------------------------------------------------

@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_ply_round_trip_is_bit_exact(tmp_path, degree):
    splats = make_splats(degree=degree, seed=degree)
    save_splats(splats, tmp_path / "splats.ply")
    loaded = fieldkit.load(tmp_path / "splats.ply")
    assert isinstance(loaded, Splats) and loaded.kind == "splats" and loaded.sh_degree == degree
    assert_same_splats(loaded, splats)
    assert not list(tmp_path.glob(".*.tmp")), "the atomic write left its temporary file"


def test_ply_is_written_in_the_inria_layout(tmp_path):
    splats = make_splats()
    save_splats(splats, tmp_path / "splats.ply")
    data = (tmp_path / "splats.ply").read_bytes()
    assert data.startswith(b"ply\nformat binary_little_endian 1.0\nelement vertex 50\n")
    columns = parse_by_name(data)
    assert list(columns) == inria_names(45)
    assert np.array_equal(np.stack(list(columns.values()), axis=1), inria_rows(splats))
    # the reference readers' SH ordering: f_rest sorted by index, reshaped to (N, 3, K)
    rest = np.stack([columns[f"f_rest_{index}"] for index in range(45)], axis=1).reshape(50, 3, 15)
    assert np.array_equal(rest.transpose(0, 2, 1), splats.sh_rest.detach().numpy())


def test_gsplat_export_loads_and_matches_fieldkit_layout(tmp_path):
    exporter = gsplat_exporter()
    splats = make_splats(seed=4)
    with torch.no_grad():
        exported = exporter.export_splats(splats.means, splats.log_scales, splats.quaternions, splats.opacity_logits,
                                          splats.sh_dc[:, None, :], splats.sh_rest, format="ply",
                                          save_to=str(tmp_path / "gsplat.ply"))
    assert_same_splats(fieldkit.load(tmp_path / "gsplat.ply"), splats)
    # gsplat's layout is fieldkit's without the normals
    save_splats(splats, tmp_path / "fieldkit.ply")
    ours, theirs = parse_by_name((tmp_path / "fieldkit.ply").read_bytes()), parse_by_name(exported)
    assert list(theirs) == [name for name in ours if name not in ("nx", "ny", "nz")]
    assert all(np.array_equal(ours[name], values) for name, values in theirs.items())


def test_big_endian_ply_reads_the_same(tmp_path):
    splats = make_splats(degree=1)
    names, rows = inria_names(9), inria_rows(splats).astype(">f4")
    (tmp_path / "big.ply").write_bytes(ply_bytes([("float", name) for name in names], rows,
                                                 file_format="binary_big_endian"))
    assert_same_splats(load_splats(tmp_path / "big.ply"), splats)


# -- .ply bad input ---------------------------------------------------------------------------

def test_missing_property_is_named(tmp_path):
    write_inria(tmp_path / "no_rot.ply", make_splats(), drop=("rot_3", "scale_1"))
    with pytest.raises(FieldkitError, match=r"no_rot\.ply is missing splat properties: scale_1, rot_3"):
        load_splats(tmp_path / "no_rot.ply")


@pytest.mark.parametrize("count, message", [(51, "truncated: its header declares 51 splats"),
                                            (49, "declares 49 splats .*wrong vertex count")])
def test_wrong_vertex_count(tmp_path, count, message):
    write_inria(tmp_path / "count.ply", make_splats(), count=count)
    with pytest.raises(FieldkitError, match=rf"count\.ply .*{message}"):
        load_splats(tmp_path / "count.ply")


def test_truncated_data(tmp_path):
    write_inria(tmp_path / "cut.ply", make_splats())
    data = (tmp_path / "cut.ply").read_bytes()
    (tmp_path / "cut.ply").write_bytes(data[:-7])
    with pytest.raises(FieldkitError, match=r"cut\.ply is truncated"):
        load_splats(tmp_path / "cut.ply")


def test_nan_and_infinite_splats_are_dropped_with_a_count(tmp_path):
    splats = make_splats()
    with torch.no_grad():
        splats.means[3, 1] = float("nan")
        splats.sh_rest[7, 14, 2] = float("inf")
        splats.opacity_logits[9] = -float("inf")
    save_splats(splats, tmp_path / "nan.ply")
    with pytest.warns(UserWarning, match=r"nan\.ply: dropped 3 of 50 splats with NaN or infinite values"):
        loaded = load_splats(tmp_path / "nan.ply")
    keep = torch.ones(50, dtype=torch.bool)
    keep[[3, 7, 9]] = False
    assert len(loaded) == 47
    assert torch.equal(loaded.sh_rest, splats.sh_rest[keep]) and torch.equal(loaded.means, splats.means[keep])


def test_splats_beyond_any_scene_are_dropped_with_a_count(tmp_path):
    splats = make_splats()
    with torch.no_grad():
        splats.means[4, 0] = 3e38  # finite, but an orbit around it overflows float32
        splats.log_scales[6, 2] = 80.0  # a scale of 5e34: its covariance overflows
    save_splats(splats, tmp_path / "far.ply")
    with pytest.warns(UserWarning, match=r"far\.ply: dropped 2 of 50 splats with a position beyond \+-1e\+08 or a "
                                         r"scale above e\^30"):
        loaded = load_splats(tmp_path / "far.ply")
    assert len(loaded) == 48 and float(loaded.means.detach().abs().max()) < 1e8


def test_all_nan_is_an_error(tmp_path):
    splats = make_splats(count=2)
    with torch.no_grad():
        splats.means.fill_(float("nan"))
    save_splats(splats, tmp_path / "all_nan.ply")
    with pytest.raises(FieldkitError, match=r"all_nan\.ply: every one of its 2 splats has NaN"):
        load_splats(tmp_path / "all_nan.ply")


def test_zero_quaternions_become_identity_and_others_stay_as_stored(tmp_path):
    splats = make_splats()
    with torch.no_grad():
        splats.quaternions[[2, 5]] = 0.0
    save_splats(splats, tmp_path / "zero_rotation.ply")
    with pytest.warns(UserWarning, match=r"zero_rotation\.ply: 2 of 50 splats have a zero rotation quaternion"):
        loaded = load_splats(tmp_path / "zero_rotation.ply")
    assert torch.equal(loaded.quaternions[[2, 5]], torch.tensor([[1.0, 0.0, 0.0, 0.0]] * 2))
    others = torch.ones(50, dtype=torch.bool)
    others[[2, 5]] = False
    assert torch.equal(loaded.quaternions[others], splats.quaternions[others])  # unnormalised, as stored
    assert not torch.allclose(loaded.quaternions[others].norm(dim=-1), torch.ones(48))


def point_cloud(path) -> None:
    rows = np.zeros(4, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"),
                              ("blue", "u1")])
    path.write_bytes(ply_bytes([("float", "x"), ("float", "y"), ("float", "z"), ("uchar", "red"),
                                ("uchar", "green"), ("uchar", "blue")], rows))


def mesh(path) -> None:
    vertices = np.zeros((3, 3), dtype="<f4")
    face = struct.pack("<B3i", 3, 0, 1, 2)
    data = ply_bytes([("float", "x"), ("float", "y"), ("float", "z")], vertices,
                     after_vertices="element face 1\nproperty list uchar int vertex_indices\n")
    path.write_bytes(data + face)


BAD_FILES = {
    "point_cloud.ply": (point_cloud, "point cloud or mesh, not Gaussian splats"),
    "mesh.ply": (mesh, "point cloud or mesh, not Gaussian splats"),
    "ascii.ply": (lambda path: path.write_bytes(b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\n"
                                                b"end_header\n0\n"), "'ascii' PLY; splat files are binary"),
    "not_ply.ply": (lambda path: path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100)), "not a PLY file"),
    "no_header_end.ply": (lambda path: path.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 3\n"),
                          "no complete PLY header"),
    "malformed.ply": (lambda path: path.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex many\n"
                                                    b"end_header\n"), "malformed PLY header line: 'element vertex many'"),
    "ten_rest.ply": (lambda path: path.write_bytes(ply_bytes(
        [("float", name) for name in INRIA_FIXED + [f"f_rest_{index}" for index in range(10)] + INRIA_TAIL],
        np.zeros((2, 27), dtype="<f4"))), "has 10 f_rest properties"),
    "empty.ply": (lambda path: path.write_bytes(ply_bytes([("float", name) for name in inria_names(0)],
                                                          np.zeros((0, 17), dtype="<f4"))), "holds no splats"),
    "short.splat": (lambda path: path.write_bytes(bytes(33)), "not a whole number of 32-byte splats"),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_bad_files_give_one_clear_error(tmp_path, name):
    write, message = BAD_FILES[name]
    write(tmp_path / name)
    with pytest.raises(FieldkitError, match=f"{name}.*{message}"):
        fieldkit.load(tmp_path / name)


def test_missing_file(tmp_path):
    with pytest.raises(FieldkitError, match=r"no splat file at .*missing\.ply"):
        fieldkit.load(tmp_path / "missing.ply")


# -- the web .splat -----------------------------------------------------------------------------

def assert_close_to_quantised(loaded: Splats, splats: Splats, rgb_steps: float) -> None:
    """Equal up to the format's 8-bit colour, opacity and rotation, keyed by position."""
    order, expected = torch.argsort(loaded.means[:, 0]), torch.argsort(splats.means[:, 0])
    with torch.no_grad():
        assert torch.equal(loaded.means[order], splats.means[expected])
        torch.testing.assert_close(loaded.log_scales[order], splats.log_scales[expected], rtol=0, atol=1e-6)
        colour = (0.5 + SH_C0 * splats.sh_dc[expected]).clamp(0, 1)
        torch.testing.assert_close(0.5 + SH_C0 * loaded.sh_dc[order], colour, rtol=0, atol=rgb_steps / 255)
        torch.testing.assert_close(torch.sigmoid(loaded.opacity_logits[order]),
                                   torch.sigmoid(splats.opacity_logits[expected]), rtol=0, atol=rgb_steps / 255)
        rotation = torch.nn.functional.normalize(splats.quaternions[expected], dim=-1)
        torch.testing.assert_close(loaded.quaternions[order], rotation, rtol=0, atol=1.01 / 128)
        assert loaded.sh_degree == 0


def test_splat_round_trip_within_quantisation(tmp_path):
    splats = make_splats(count=40, seed=5)
    save_splats(splats, tmp_path / "scene.splat")
    assert (tmp_path / "scene.splat").stat().st_size == 40 * RECORD.itemsize == 40 * 32
    assert_close_to_quantised(load_splats(tmp_path / "scene.splat"), splats, rgb_steps=0.51)


def test_gsplat_splat_export_loads(tmp_path):
    exporter = gsplat_exporter()
    splats = make_splats(count=40, seed=6)
    with torch.no_grad():
        exporter.export_splats(splats.means, splats.log_scales, splats.quaternions, splats.opacity_logits,
                               splats.sh_dc[:, None, :], splats.sh_rest, format="splat",
                               save_to=str(tmp_path / "gsplat.splat"))
    # gsplat truncates to 8 bits where fieldkit rounds: up to a whole step apart
    assert_close_to_quantised(load_splats(tmp_path / "gsplat.splat"), splats, rgb_steps=1.01)


# -- load, info and render on splat files --------------------------------------------------------

def run(argv) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main([str(arg) for arg in argv])
    return code, stdout.getvalue(), stderr.getvalue()


def test_info_describes_a_ply(tmp_path):
    splats = make_splats(count=1234, degree=2)
    save_splats(splats, tmp_path / "scene.ply")
    code, stdout, _ = run(["info", tmp_path / "scene.ply"])
    assert code == 0
    assert "kind          splats" in stdout and "splats        1,234" in stdout and "sh degree     2" in stdout
    code, stdout, _ = run(["info", tmp_path / "scene.ply", "--json"])
    summary = json.loads(stdout)
    assert summary["count"] == 1234 and summary["sh_degree"] == 2
    torch.testing.assert_close(torch.tensor(summary["bounds"]), splats.aabb)


def test_info_on_a_bad_ply_is_one_error_line(tmp_path):
    point_cloud(tmp_path / "cloud.ply")
    code, stdout, stderr = run(["info", tmp_path / "cloud.ply"])
    assert code == 2 and not stdout
    assert stderr.count("\n") == 1 and "cloud.ply is a point cloud or mesh" in stderr


def test_render_a_ply_from_cameras_and_on_an_orbit(tmp_path):
    splats = make_splats(count=200, degree=1)
    with torch.no_grad():
        splats.means.mul_(0.3)
        splats.log_scales.fill_(math.log(0.05))
        splats.opacity_logits.fill_(3.0)
    save_splats(splats, tmp_path / "scene.ply")
    pose = [[1, 0, 0, 0], [0, 0, -1, -3], [0, 1, 0, 0], [0, 0, 0, 1]]  # at y = -3, looking along +y
    transforms = {"camera_angle_x": 0.8, "w": 24, "h": 16,
                  "frames": [{"file_path": "./test/r_0", "transform_matrix": pose},
                             {"file_path": "./test/r_1", "transform_matrix": pose}]}
    (tmp_path / "transforms.json").write_text(json.dumps(transforms))
    code, stdout, stderr = run(["render", tmp_path / "scene.ply", "--cameras", tmp_path / "transforms.json",
                                "--out", tmp_path / "views"])
    assert code == 0, stderr
    assert sorted(path.name for path in (tmp_path / "views").iterdir()) == ["r_0.png", "r_1.png"]
    code, _, stderr = run(["render", tmp_path / "scene.ply", "--orbit", 2, "--resolution", 16, "--out",
                           tmp_path / "orbit"])
    assert code == 0, stderr
    assert len(list((tmp_path / "orbit").glob("orbit_*.png"))) == 2
