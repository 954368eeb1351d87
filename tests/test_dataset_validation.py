"""Dataset validation: image paths that leave the dataset, impossible cameras, wrong JSON types and
bad images are each one FieldkitError line naming the file and the problem."""
from __future__ import annotations

import contextlib
import io
import json
import math

import pytest
import torch
from PIL import Image

from fieldkit.cameras import look_at
from fieldkit.cli import main
from fieldkit.data import load_cameras, load_dataset
from fieldkit.errors import FieldkitError
from fieldkit.gaussians import Splats, save_splats


def ring(count: int) -> list:
    angles = torch.arange(count) * (2 * math.pi / count)
    eyes = torch.stack([4 * torch.cos(angles), 4 * torch.sin(angles), torch.full_like(angles, 1.5)], dim=-1)
    return look_at(eyes, torch.zeros(3)).tolist()


def write_scene(root) -> dict:
    """Two 8 x 6 frames (frame 0 is the test split, frame 1 the training split) and a point cloud;
    an image outside the dataset directory, for the cases that try to reach it."""
    (root / "scene" / "images").mkdir(parents=True)
    frames = []
    for index, pose in enumerate(ring(2)):
        Image.new("RGB", (8, 6), (10 * index, 100, 200)).save(root / "scene" / "images" / f"frame_{index}.png")
        frames.append({"file_path": f"images/frame_{index}.png", "transform_matrix": pose})
    Image.new("RGB", (8, 6)).save(root / "outside.png")
    (root / "scene" / "points.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 1\n"
                                                b"property float x\nproperty float y\nproperty float z\n"
                                                b"end_header\n" + bytes(12))
    document = {"fl_x": 7.0, "w": 8, "h": 6, "frames": frames}
    (root / "scene" / "transforms.json").write_text(json.dumps(document))
    return document


def change(edit):
    """A case that edits the parsed document."""
    def apply(root, document):
        edit(document)
        (root / "scene" / "transforms.json").write_text(json.dumps(document))
    return apply


def frame_key(key, value, index=0):
    return change(lambda document: document["frames"][index].__setitem__(key, value))


def top_key(key, value):
    return change(lambda document: document.__setitem__(key, value))


def raw_text(text):
    def apply(root, document):
        (root / "scene" / "transforms.json").write_text(text)
    return apply


def raw_bytes(data):
    def apply(root, document):
        (root / "scene" / "transforms.json").write_bytes(data)
    return apply


def symlinked_image(root, document):
    (root / "scene" / "images" / "link.png").symlink_to(root / "outside.png")
    frame_key("file_path", "images/link.png")(root, document)


def symlinked_folder(root, document):
    (root / "scene" / "elsewhere").symlink_to(root, target_is_directory=True)
    frame_key("file_path", "elsewhere/outside.png")(root, document)


def image_file(write):
    def apply(root, document):
        write(root / "scene" / "images" / "frame_0.png")
    return apply


SINGULAR = [[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
PARALLEL = [[1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]

# case -> (change, what the message must say, whether `fieldkit render --cameras` reads it too)
BAD_DATASETS = {
    "file_path up and out": (frame_key("file_path", "../../etc/passwd"), "leads outside the dataset directory", True),
    "file_path up to an image": (frame_key("file_path", "images/../../outside.png"), "leads outside", True),
    "file_path absolute": (frame_key("file_path", "/etc/passwd"), "is an absolute path outside the dataset", True),
    "file_path through a symlink": (symlinked_image, "through '..' or a symbolic link", True),
    "file_path through a symlinked folder": (symlinked_folder, "through '..' or a symbolic link", True),
    "file_path with a NUL": (frame_key("file_path", "images/a\x00b.png"), "NUL character", True),
    "file_path a number": (frame_key("file_path", 3), "frame 0 has no \"file_path\"", True),
    "transform_matrix singular": (frame_key("transform_matrix", SINGULAR), "transform_matrix is singular", True),
    "transform_matrix parallel axes": (frame_key("transform_matrix", PARALLEL), "transform_matrix is singular", True),
    "transform_matrix NaN": (frame_key("transform_matrix", [[math.nan] * 4] * 4), "4x4 matrix of finite numbers", True),
    "transform_matrix infinite": (frame_key("transform_matrix", [[math.inf, 0, 0, 0]] + SINGULAR[1:]),
                                  "4x4 matrix of finite numbers", True),
    "transform_matrix beyond float32": (frame_key("transform_matrix", [[1e39, 0, 0, 0]] + SINGULAR[1:]),
                                        "4x4 matrix of finite numbers", True),
    "transform_matrix of huge integers": (frame_key("transform_matrix", [[10**400] * 4] * 4), "finite numbers", True),
    "transform_matrix 3x4": (frame_key("transform_matrix", SINGULAR[:3]), "must be a 4x4 matrix", True),
    "transform_matrix a string": (frame_key("transform_matrix", "identity"), "must be a 4x4 matrix", True),
    "transform_matrix missing": (change(lambda document: document["frames"][0].pop("transform_matrix")),
                                 "has no \"transform_matrix\"", True),
    "w zero": (top_key("w", 0), "w must be a whole number of pixels from 1 to 16384, got 0", True),
    "h negative": (top_key("h", -6), "h must be a whole number of pixels from 1 to 16384, got -6", True),
    "w too large": (top_key("w", 16385), "w must be a whole number of pixels from 1 to 16384", True),
    "w fractional": (top_key("w", 8.5), "w must be a whole number of pixels", True),
    "w a string": (top_key("w", "8"), "w must be a number, got '8'", True),
    "w huge integer": (top_key("w", 10**400), "w must be a number", True),
    "fl_x zero": (top_key("fl_x", 0), "fl_x must be between", True),
    "fl_x negative": (top_key("fl_x", -7), "fl_x must be between", True),
    "fl_x absurd": (top_key("fl_x", 1e9), "fl_x must be between 0.001 and 1000 times the image size", True),
    "fl_x NaN": (top_key("fl_x", math.nan), "fl_x must be a number, got nan", True),
    "fl_x a list": (top_key("fl_x", [7.0]), "fl_x must be a number", True),
    "fl_y absurd": (top_key("fl_y", 1e-9), "fl_y must be between", True),
    "no focal length": (change(lambda document: document.pop("fl_x")), "no focal length", True),
    "camera_angle_x zero": (change(lambda document: document.update(camera_angle_x=0) or document.pop("fl_x")),
                            "camera_angle_x must be an angle in radians in (0, pi), got 0", True),
    "camera_angle_x pi": (change(lambda document: document.update(camera_angle_x=math.pi) or document.pop("fl_x")),
                          "camera_angle_x must be an angle in radians in (0, pi)", True),
    "camera_angle_x degrees": (change(lambda document: document.update(camera_angle_x=40) or document.pop("fl_x")),
                               "camera_angle_x must be an angle", True),
    "camera_angle_x tiny": (change(lambda document: document.update(camera_angle_x=1e-12) or document.pop("fl_x")),
                            "the focal length from camera_angle_x must be between", True),
    "cx absurd": (top_key("cx", 1e12), "cx must be a number of at most", True),
    "k1 absurd": (top_key("k1", 1e6), "k1 must be a number of at most 100", True),
    "camera_model a list": (top_key("camera_model", ["OPENCV"]), "camera_model ['OPENCV'] is not supported", True),
    "camera_model fisheye": (top_key("camera_model", "OPENCV_FISHEYE"), "is not supported", True),
    "no frames key": (change(lambda document: document.pop("frames")), "no frames", True),
    "frames empty": (top_key("frames", []), "no frames", True),
    "frames an object": (top_key("frames", {"0": {}}), "no frames", True),
    "frame a string": (change(lambda document: document["frames"].__setitem__(0, "images/frame_0.png")),
                       "frame 0 has no \"file_path\"", True),
    "document a list": (raw_text("[1, 2]"), "expected a JSON object at the top level", True),
    "JSON nested too deep": (raw_text("[" * 100000 + "]" * 100000), "cannot read as JSON", True),
    "JSON integer of 5000 digits": (raw_text('{"w": ' + "9" * 5000 + "}"), "cannot read as JSON", True),
    "JSON not UTF-8": (raw_bytes(b"\xff\xfe{"), "cannot read as JSON text", True),
    "aabb NaN": (top_key("aabb", [[math.nan, 0, 0], [1, 1, 1]]), "\"aabb\" must be", False),
    "aabb huge integers": (top_key("aabb", [[0, 0, 0], [10**400, 1, 1]]), "\"aabb\" must be", False),
    "offset NaN": (change(lambda document: document.update(aabb_scale=4, offset=math.nan)),
                   "offset must be a finite number", False),
    "aabb_scale beyond float range": (change(lambda document: document.update(aabb_scale=1e300, scale=1e-300)),
                                      "no finite box", False),
    "ply_file_path a number": (top_key("ply_file_path", 7), "ply_file_path must be a file name, got 7", False),
    "ply_file_path outside": (top_key("ply_file_path", "../outside.png"), "ply_file_path ../outside.png leads "
                              "outside the dataset directory", False),
    "image missing": (image_file(lambda path: path.unlink()), "missing image file", False),
    "image undecodable": (image_file(lambda path: path.write_bytes(b"not an image")), "cannot read image", False),
    "image truncated": (image_file(lambda path: path.write_bytes(path.read_bytes()[:40])), "cannot read image", False),
    "image a directory": (image_file(lambda path: path.unlink() or path.mkdir()), "missing image file", False),
    "image of another shape": (image_file(lambda path: Image.new("RGB", (8, 8)).save(path)),
                               "the image is 8 x 8 but the file declares w x h = 8 x 6, another shape", False),
    "image too large": (image_file(lambda path: Image.new("L", (16385, 1)).save(path)),
                        "16385 x 1 pixels; fieldkit reads images of 1 to 16384 pixels a side", False),
    "split without frames": (change(lambda document: document.update(
        train_filenames=["images/frame_0.png", "images/frame_1.png"], test_filenames=[])),
        "the test split has no frames (of 2 in the scene)", False),
}


def apply_case(case, tmp_path):
    document = write_scene(tmp_path)
    load_dataset(tmp_path / "scene", "test")  # the untouched scene loads
    edit, expected, _ = BAD_DATASETS[case]
    edit(tmp_path, document)
    return expected


@pytest.mark.parametrize("case", list(BAD_DATASETS))
def test_bad_datasets_are_one_clear_error(case, tmp_path):
    expected = apply_case(case, tmp_path)
    with pytest.raises(FieldkitError) as error:
        load_dataset(tmp_path / "scene", "test")
    message = str(error.value)
    assert expected in message, message
    assert "\n" not in message and "\r" not in message
    assert str(tmp_path / "scene") in message or "scene" in message, message


def write_splats(path) -> None:
    generator = torch.Generator().manual_seed(0)
    save_splats(Splats(torch.randn(4, 3, generator=generator) * 0.2, torch.full((4, 3), -2.5),
                       torch.randn(4, 4, generator=generator), torch.zeros(4), torch.zeros(4, 3)), path)


@pytest.mark.parametrize("case", [name for name, (_, _, cameras) in BAD_DATASETS.items() if cameras])
def test_render_refuses_bad_cameras_in_one_line(case, tmp_path):
    """`fieldkit render --cameras` reads only the cameras of a transforms file: each camera case is
    exit code 2 and one error line."""
    expected = apply_case(case, tmp_path)
    write_splats(tmp_path / "scene.ply")
    with pytest.raises(FieldkitError, match=None):
        load_cameras(tmp_path / "scene" / "transforms.json")  # what render reads
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["render", str(tmp_path / "scene.ply"), "--cameras", str(tmp_path / "scene" / "transforms.json"),
                     "--out", str(tmp_path / "views")])
    assert code == 2 and not stdout.getvalue()
    assert stderr.getvalue().startswith("fieldkit: error: ") and stderr.getvalue().count("\n") == 1
    assert expected in stderr.getvalue(), stderr.getvalue()


def test_a_file_path_with_a_newline_stays_on_one_line(tmp_path):
    document = write_scene(tmp_path)
    frame_key("file_path", "images/frame\n0.png")(tmp_path, document)
    with pytest.raises(FieldkitError, match=r"frame\\n0\.png") as error:
        load_dataset(tmp_path / "scene", "test")
    assert "\n" not in str(error.value)


def test_images_inside_the_dataset_may_use_dots_and_symlinks_that_stay_inside(tmp_path):
    document = write_scene(tmp_path)
    (tmp_path / "scene" / "images" / "alias.png").symlink_to(tmp_path / "scene" / "images" / "frame_0.png")
    document["frames"][0]["file_path"] = "./images/../images/alias.png"
    document["frames"][1]["file_path"] = str(tmp_path / "scene" / "images" / "frame_1.png")  # absolute, inside
    (tmp_path / "scene" / "transforms.json").write_text(json.dumps(document))
    assert len(load_dataset(tmp_path / "scene", "test")) == 1
    assert len(load_dataset(tmp_path / "scene", "train")) == 1
