"""Captures of other tools: a COLMAP model (binary and text, written by pycolmap) and an LLFF
`poses_bounds.npy` train like the same scene given as transforms.json; bad ones are one line."""
from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

from fieldkit.captures import read_colmap, read_llff
from fieldkit.cli import main
from fieldkit.data import load_dataset
from fieldkit.errors import FieldkitError
from fieldkit.train import Trainer

pycolmap = pytest.importorskip("pycolmap", reason="pycolmap writes the reference COLMAP models (a test extra)")


@pytest.fixture(scope="module")
def frames(tiny_dataset):
    """Every frame of the tiny scene as (image name, c2w in OpenGL axes [4, 4], focal), images copied
    into a shared folder; and the scene's bounds."""
    frames = []
    for split in ("train", "test"):
        document = json.loads((tiny_dataset / f"transforms_{split}.json").read_text())
        for frame in document["frames"]:
            source = tiny_dataset / (frame["file_path"] + ".png")
            frames.append((f"{split}_{source.stem}.png", np.array(frame["transform_matrix"]),
                           0.5 * 32 / np.tan(0.5 * document["camera_angle_x"]), source))
    return sorted(frames, key=lambda frame: frame[0])


def copy_images(frames, root):
    (root / "images").mkdir(parents=True)
    for name, _, _, source in frames:
        shutil.copy(source, root / "images" / name)


def write_colmap(frames, root, binary: bool, model: str = "PINHOLE"):
    """A COLMAP model of the frames, as COLMAP itself writes it (through pycolmap)."""
    copy_images(frames, root)
    reconstruction = pycolmap.Reconstruction()
    focal = frames[0][2]
    params = [focal, focal, 16.0, 16.0] if model == "PINHOLE" else [focal, focal, 16.0, 16.0, 0.0, 0.0, 0.0, 0.0]
    reconstruction.add_camera_with_trivial_rig(pycolmap.Camera(model=model, width=32, height=32, params=params,
                                                               camera_id=1))
    for index, (name, c2w, _, _) in enumerate(frames, start=1):
        opencv = c2w.copy()
        opencv[:3, 1:3] *= -1  # OpenGL to OpenCV camera axes
        w2c = np.linalg.inv(opencv)
        pose = pycolmap.Rigid3d(pycolmap.Rotation3d(w2c[:3, :3]), w2c[:3, 3])
        reconstruction.add_image_with_trivial_frame(pycolmap.Image(name=name, camera_id=1, image_id=index), pose)
    points = np.random.default_rng(0).uniform(-1, 1, size=(500, 3))
    for point in points:
        reconstruction.add_point3D(point, pycolmap.Track(), np.array([200, 100, 50], dtype=np.uint8))
    (root / "sparse" / "0").mkdir(parents=True)
    (reconstruction.write_binary if binary else reconstruction.write_text)(str(root / "sparse" / "0"))
    return root


def write_llff(frames, root, near=1.0, far=8.0):
    copy_images(frames, root)
    rows = []
    for _, c2w, focal, _ in frames:
        right, up, backward, position = c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3]
        matrix = np.stack([-up, right, backward, position, [32, 32, focal]], axis=1)  # LLFF: down, right, back
        rows.append(np.concatenate([matrix.reshape(-1), [near, far]]))
    np.save(root / "poses_bounds.npy", np.array(rows))
    return root


def write_transforms(frames, root, aabb):
    copy_images(frames, root)
    document = {"fl_x": frames[0][2], "fl_y": frames[0][2], "cx": 16.0, "cy": 16.0, "w": 32, "h": 32, "aabb": aabb,
                "frames": [{"file_path": f"images/{name}", "transform_matrix": c2w.tolist()}
                           for name, c2w, _, _ in frames]}
    (root / "transforms.json").write_text(json.dumps(document))
    return root / "transforms.json"


def test_pycolmap_models_read_back_the_poses_they_were_written_with(frames, tmp_path):
    for binary in (True, False):
        root = write_colmap(frames, tmp_path / f"binary-{binary}", binary)
        document, (positions, colours) = read_colmap(root)
        assert [frame["file_path"] for frame in document["frames"]] == [f"images/{name}" for name, *_ in frames]
        for frame, (_, c2w, focal, _) in zip(document["frames"], frames):
            assert np.allclose(frame["transform_matrix"], c2w, atol=1e-6)
            assert frame["fl_x"] == pytest.approx(focal) and frame["cx"] == 16.0
        assert positions.shape == (500, 3) and np.allclose(colours[0], [200 / 255, 100 / 255, 50 / 255])
        low, high = np.array(document["aabb"])
        assert (low < -0.9).all() and (high > 0.9).all() and (low > -1.3).all() and (high < 1.3).all()


def test_an_llff_capture_reads_back_its_poses_and_bounds(frames, tmp_path):
    document = read_llff(write_llff(frames, tmp_path / "llff"))
    for frame, (_, c2w, focal, _) in zip(document["frames"], frames):
        assert np.allclose(frame["transform_matrix"], c2w) and frame["fl_x"] == pytest.approx(focal)
    low, high = np.array(document["aabb"])  # every view between near 1 and far 8: the scene [-1, 1]^3 and more
    assert (low < -1).all() and (high > 1).all() and (high - low < 2 * 8 + 8).all()


def test_colmap_and_llff_train_to_the_psnr_of_the_same_scene_as_transforms_json(frames, fast_settings, tmp_path):
    # the poses reach the trainer through another route (a quaternion, a 3x5 matrix), equal to about
    # 1e-7, which a short training run turns into a difference of about 0.1 dB
    config, overrides = fast_settings["hashgrid"]
    config = dataclasses.replace(config, steps=120)
    colmap = write_colmap(frames, tmp_path / "colmap", binary=True)
    aabb = read_colmap(colmap)[0]["aabb"]
    llff = write_llff(frames, tmp_path / "llff")
    scores = {}
    for name, source in (("transforms", write_transforms(frames, tmp_path / "plain", aabb)), ("colmap", colmap)):
        scores[name] = Trainer(source, "hashgrid", tmp_path / f"run-{name}", config, overrides).run_training()["psnr_test"]
    assert scores["transforms"] > 15 and abs(scores["colmap"] - scores["transforms"]) < 0.3, scores
    llff_aabb = read_llff(llff)["aabb"]
    scores["llff"] = Trainer(llff, "hashgrid", tmp_path / "run-llff", config, overrides).run_training()["psnr_test"]
    scores["transforms-llff"] = Trainer(write_transforms(frames, tmp_path / "plain-llff", llff_aabb), "hashgrid",
                                        tmp_path / "run-plain-llff", config, overrides).run_training()["psnr_test"]
    assert abs(scores["llff"] - scores["transforms-llff"]) < 0.3, scores
    cloud = load_dataset(colmap, "train").point_cloud
    assert isinstance(cloud, tuple) and cloud[0].shape == (500, 3) and torch.isfinite(cloud[0]).all()


def truncate(path):
    path.write_bytes(path.read_bytes()[:-7])


@pytest.mark.parametrize("case, message", [
    ("truncated cameras", "ends early"),
    ("truncated images", "ends"),
    ("fisheye camera", "OPENCV_FISHEYE is not supported"),
    ("text with a word for a number", "expected numbers"),
    ("no images folder", "missing image file"),
    ("llff wrong shape", "shape [cameras, 17]"),
    ("llff count mismatch", "must match one to one"),
    ("llff pickled", "not a readable .npy"),
    ("llff bounds", "near bound must be positive"),
])
def test_a_bad_capture_is_one_error_line(case, message, frames, tmp_path, capsys):
    root = tmp_path / "capture"
    if case.startswith("llff"):
        write_llff(frames, root)
        poses = root / "poses_bounds.npy"
        if case == "llff wrong shape":
            np.save(poses, np.zeros((len(frames), 15)))
        elif case == "llff count mismatch":
            next((root / "images").iterdir()).unlink()
        elif case == "llff pickled":
            np.save(poses, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        else:
            array = np.load(poses)
            array[:, 15] = -1
            np.save(poses, array)
    else:
        write_colmap(frames, root, binary=case != "text with a word for a number",
                     model="OPENCV_FISHEYE" if case == "fisheye camera" else "PINHOLE")
        model = root / "sparse" / "0"
        if case == "truncated cameras":
            truncate(model / "cameras.bin")
        elif case == "truncated images":
            truncate(model / "images.bin")
        elif case == "text with a word for a number":
            text = (model / "images.txt").read_text().splitlines()
            first = next(index for index, line in enumerate(text) if line and not line.startswith("#"))
            text[first] = text[first].replace(" ", " x", 1)
            (model / "images.txt").write_text("\n".join(text) + "\n")
        elif case == "no images folder":
            shutil.rmtree(root / "images")
    with pytest.raises(FieldkitError, match=message.replace("[", r"\[")):
        load_dataset(root, "train")
    assert main(["train", str(root), "--out", str(tmp_path / "run"), "--steps", "1"]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0] and not (tmp_path / "run").exists()
