import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

import fieldkit.scenes
from fieldkit.cameras import look_at, orbit_eyes, turntable_azimuths
from fieldkit.data import load_cameras, load_dataset, resolve_source
from fieldkit.errors import FieldkitError

BLENDER_ANGLE = 0.6911112070083618  # NeRF-Synthetic's camera_angle_x


def write_json(path, document) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))


def write_image(path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(path)


def uniform(width: int, height: int, colour) -> np.ndarray:  # [H, W, len(colour)]
    return np.broadcast_to(np.asarray(colour, dtype=np.uint8), (height, width, len(colour))).copy()


def ring_poses(count: int, radius: float = 4.0, center=(0.0, 0.0, 0.0)) -> list:
    eyes = orbit_eyes(turntable_azimuths(count), torch.tensor(25.0), radius, center)
    return look_at(eyes, torch.tensor(center, dtype=torch.float32)).tolist()


def rgba_pattern(seed: int) -> np.ndarray:  # [4, 5, 4]: known colours and alphas, including 0 and 255
    pixels = np.random.default_rng(seed).integers(0, 256, size=(4, 5, 4))
    pixels[0, 0, 3], pixels[0, 1, 3] = 0, 255
    return pixels


def write_blender(root, splits=("train", "val", "test"), count=3):
    """A NeRF-Synthetic-style directory; returns the RGBA pixels written for each split."""
    written = {}
    for split in splits:
        frames = []
        for index, pose in enumerate(ring_poses(count, radius=4.031)):
            pixels = rgba_pattern(10 * len(written) + index)
            write_image(root / split / f"r_{index}.png", pixels)
            frames.append({"file_path": f"./{split}/r_{index}", "transform_matrix": pose})
            written.setdefault(split, []).append(pixels)
        write_json(root / f"transforms_{split}.json", {"camera_angle_x": BLENDER_ANGLE, "frames": frames})
    return written


def ngp_frames(root, count: int, size=(8, 6), suffix=".png", colour=(10, 200, 30, 255)) -> list[dict]:
    frames = []
    for index, pose in enumerate(ring_poses(count)):
        write_image(root / "images" / f"frame_{index:03d}{suffix}", uniform(*size, colour))
        frames.append({"file_path": f"images/frame_{index:03d}{suffix}", "transform_matrix": pose})
    return frames


def test_blender_round_trip_composites_on_the_background(tmp_path):
    written = write_blender(tmp_path / "lego")
    white = load_dataset(tmp_path / "lego", "train")
    black = load_dataset(tmp_path / "lego", "val", background=(0.0, 0.0, 0.0))
    assert (white.name, white.split, len(white), white.image_names) == ("lego", "train", 3, ["r_0", "r_1", "r_2"])
    for dataset, background in ((white, 1.0), (black, 0.0)):
        for image, pixels in zip(dataset.images, written[dataset.split]):
            rgb, alpha = pixels[..., :3] / 255, pixels[..., 3:] / 255
            expected = torch.tensor(rgb * alpha + background * (1 - alpha), dtype=torch.float32)
            assert image.shape == (4, 5, 3) and image.dtype == torch.float32
            torch.testing.assert_close(image, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(white.cameras.c2w, torch.tensor(ring_poses(3, radius=4.031)))
    expected_focal = 0.5 * 5 / math.tan(0.5 * BLENDER_ANGLE)
    torch.testing.assert_close(white.cameras.fx, torch.full((3,), expected_focal))
    torch.testing.assert_close(white.cameras.cy, torch.full((3,), 2.0))
    torch.testing.assert_close(white.background, torch.ones(3))
    # NeRF-Synthetic's cameras give about the usual [-1.5, 1.5]^3 (4:5 images: the vertical fov is smaller)
    half = 4.031 * math.tan(0.5 * BLENDER_ANGLE) * 4 / 5
    torch.testing.assert_close(white.aabb, torch.tensor([[-half] * 3, [half] * 3]), atol=1e-4, rtol=0)
    torch.testing.assert_close(black.aabb, white.aabb)  # every split shares the training bounds


def test_transforms_json_with_global_intrinsics_and_holdout_split(tmp_path):
    frames = ngp_frames(tmp_path, 17)
    write_json(tmp_path / "transforms.json", {"fl_x": 7.0, "fl_y": 7.5, "cx": 4.2, "cy": 2.9, "w": 8, "h": 6,
                                              "frames": frames})
    train = load_dataset(tmp_path / "transforms.json", "train")
    test = load_dataset(tmp_path, "test")
    val = load_dataset(tmp_path, "val")
    assert test.image_names == ["frame_000", "frame_008", "frame_016"] == val.image_names
    assert len(train) == 14 and not set(train.image_names) & set(test.image_names)
    assert test.cameras.fy.tolist() == [7.5] * 3 and test.cameras.cx.tolist() == pytest.approx([4.2] * 3)
    torch.testing.assert_close(test.cameras.c2w[1], torch.tensor(frames[8]["transform_matrix"]))
    torch.testing.assert_close(test.images[0][0, 0], torch.tensor([10.0, 200.0, 30.0]) / 255)


def test_per_frame_intrinsics_with_different_resolutions(tmp_path):
    frames = ngp_frames(tmp_path, 2)
    write_image(tmp_path / "images" / "frame_001.png", uniform(12, 10, (0, 0, 255)))
    frames[0].update(fl_x=9.0, w=8, h=6)
    frames[1].update(fl_x=11.0, fl_y=12.0, cx=6.5, w=12, h=10)
    write_json(tmp_path / "transforms.json", {"fl_x": 1.0, "train_filenames": [f["file_path"] for f in frames],
                                              "test_filenames": [], "frames": frames})
    dataset = load_dataset(tmp_path)
    assert [image.shape for image in dataset.images] == [(6, 8, 3), (10, 12, 3)]
    assert dataset.cameras.width.tolist() == [8, 12] and dataset.cameras.height.tolist() == [6, 10]
    assert dataset.cameras.fx.tolist() == [9.0, 11.0] and dataset.cameras.fy.tolist() == [9.0, 12.0]
    assert dataset.cameras.cx.tolist() == [4.0, 6.5] and dataset.cameras.cy.tolist() == [3.0, 5.0]


def test_camera_angle_only_takes_the_size_from_the_image(tmp_path):
    frames = ngp_frames(tmp_path, 3, size=(10, 4))
    write_json(tmp_path / "transforms.json", {"camera_angle_x": 1.2, "camera_angle_y": 0.5, "frames": frames})
    dataset = load_dataset(tmp_path, "test")
    assert (int(dataset.cameras.width[0]), int(dataset.cameras.height[0])) == (10, 4)
    assert float(dataset.cameras.fx[0]) == pytest.approx(5 / math.tan(0.6))
    assert float(dataset.cameras.fy[0]) == pytest.approx(2 / math.tan(0.25))


def test_intrinsics_follow_images_stored_at_another_resolution(tmp_path):
    frames = ngp_frames(tmp_path, 2, size=(20, 15))
    write_json(tmp_path / "transforms.json", {"fl_x": 50.0, "cx": 41.0, "cy": 29.0, "w": 80, "h": 60,
                                              "frames": frames})
    dataset = load_dataset(tmp_path, "test")
    assert (int(dataset.cameras.width[0]), int(dataset.cameras.height[0])) == (20, 15)
    assert float(dataset.cameras.fx[0]) == 12.5 and float(dataset.cameras.cx[0]) == 10.25
    assert float(dataset.cameras.cy[0]) == 7.25


def test_jpeg_images(tmp_path):
    frames = ngp_frames(tmp_path, 2, suffix=".jpg", colour=(180, 90, 40))
    write_json(tmp_path / "transforms.json", {"fl_x": 8.0, "frames": frames})
    dataset = load_dataset(tmp_path, "test", background=(0.0, 0.0, 0.0))
    assert dataset.image_names == ["frame_000"]
    torch.testing.assert_close(dataset.images[0], torch.tensor([180.0, 90.0, 40.0]).expand(6, 8, 3) / 255,
                               atol=3 / 255, rtol=0)


def test_distortion_rays_match_projected_points(tmp_path):
    coefficients = {"k1": -0.2, "k2": 0.05, "p1": 1e-3, "p2": -5e-4}
    frames = ngp_frames(tmp_path, 2, size=(64, 48))
    write_json(tmp_path / "transforms.json", {"fl_x": 50.0, "fl_y": 52.0, "cx": 31.0, "cy": 25.0, "w": 64, "h": 48,
                                              **coefficients, "frames": frames})
    cameras = load_dataset(tmp_path, "test").cameras
    torch.testing.assert_close(cameras.distortion[0], torch.tensor(list(coefficients.values())))
    # project a point with the distortion written out by hand, then check the pixel's ray hits it
    c2w, point = cameras.c2w[0], torch.tensor([0.4, -0.3, 0.35])
    camera = c2w[:3, :3].T @ (point - c2w[:3, 3])
    x, y = float(camera[0] / -camera[2]), float(camera[1] / camera[2])
    r2 = x * x + y * y
    radial = 1 + coefficients["k1"] * r2 + coefficients["k2"] * r2 * r2
    x_distorted = x * radial + 2 * coefficients["p1"] * x * y + coefficients["p2"] * (r2 + 2 * x * x)
    y_distorted = y * radial + coefficients["p1"] * (r2 + 2 * y * y) + 2 * coefficients["p2"] * x * y
    pixel = torch.tensor([50.0 * x_distorted + 31.0]), torch.tensor([52.0 * y_distorted + 25.0])
    origins, directions = cameras.generate_rays(torch.tensor([0]), *pixel)
    offset = point - origins[0]
    assert float((offset - (offset @ directions[0]) * directions[0]).norm()) < 1e-4


def test_aabb_from_explicit_key(tmp_path):
    write_json(tmp_path / "transforms.json", {"fl_x": 8.0, "aabb_scale": 16, "aabb": [[-1, -2, -3], [4, 5, 6]],
                                              "frames": ngp_frames(tmp_path, 2)})
    torch.testing.assert_close(load_dataset(tmp_path).aabb, torch.tensor([[-1.0, -2.0, -3.0], [4.0, 5.0, 6.0]]))


def test_aabb_from_instant_ngp_aabb_scale(tmp_path):
    frames = ngp_frames(tmp_path, 2)
    write_json(tmp_path / "transforms.json", {"fl_x": 8.0, "aabb_scale": 4, "scale": 0.5, "offset": [0.5, 0.7, 0.5],
                                              "frames": frames})
    # ngp cube [0.5 - 2, 0.5 + 2]^3, then p = (ngp - offset) / scale
    expected = torch.tensor([[-4.0, -4.4, -4.0], [4.0, 3.6, 4.0]])
    torch.testing.assert_close(load_dataset(tmp_path).aabb, expected)
    write_json(tmp_path / "transforms.json", {"fl_x": 8.0, "aabb_scale": 1, "frames": frames})
    torch.testing.assert_close(load_dataset(tmp_path).aabb, torch.tensor([[-0.5 / 0.33] * 3, [0.5 / 0.33] * 3]))


def test_aabb_from_cameras_recovers_the_centre(tmp_path):
    center = (0.3, -0.2, 0.5)
    frames = ngp_frames(tmp_path, 12, size=(8, 6))
    for frame, pose in zip(frames, ring_poses(12, radius=3.0, center=center)):
        frame["transform_matrix"] = pose
    write_json(tmp_path / "transforms.json", {"fl_x": 10.0, "w": 8, "h": 6, "frames": frames})
    aabb = load_dataset(tmp_path, "test").aabb
    torch.testing.assert_close(aabb.mean(dim=0), torch.tensor(center), atol=1e-4, rtol=0)
    half = 3.0 * min(8 / 20, 6 / 20)
    torch.testing.assert_close((aabb[1] - aabb[0]) / 2, torch.full((3,), half), atol=1e-4, rtol=0)


def test_aabb_needs_cameras_that_converge(tmp_path):
    frames = ngp_frames(tmp_path, 3)
    for index, frame in enumerate(frames):
        frame["transform_matrix"] = look_at(torch.tensor([index, 0.0, 4.0]), torch.tensor([index, 0.0, 0.0]),
                                            torch.tensor([0.0, 1.0, 0.0]))[0].tolist()
    write_json(tmp_path / "transforms.json", {"fl_x": 8.0, "frames": frames})
    with pytest.raises(FieldkitError, match="transforms.json.*aabb"):
        load_dataset(tmp_path)


@pytest.mark.parametrize("factor, expected_size", [(2, (50, 38)), (1.5, (67, 51))])
def test_downscale_of_an_odd_resolution(tmp_path, factor, expected_size):
    pixels = np.random.default_rng(0).integers(0, 256, size=(77, 101, 3))
    write_image(tmp_path / "images" / "frame_000.png", pixels)
    frame = {"file_path": "images/frame_000.png", "transform_matrix": ring_poses(1)[0]}
    write_json(tmp_path / "transforms.json", {"fl_x": 80.0, "cx": 50.5, "cy": 38.5, "aabb_scale": 1,
                                              "frames": [frame]})
    full = load_dataset(tmp_path, "test", downscale=1)
    small = load_dataset(tmp_path, "test", downscale=factor)
    width, height = expected_size
    assert small.images[0].shape == (height, width, 3)
    assert (int(small.cameras.width[0]), int(small.cameras.height[0])) == (width, height)
    assert float(small.cameras.fx[0]) == pytest.approx(80.0 * width / 101)
    assert float(small.cameras.cy[0]) == pytest.approx(38.5 * height / 77)
    # PIL's box filter: each output pixel averages the source pixels whose centres fall in its box
    expected, rows, columns = box_downscale(pixels / 255, width, height)
    assert len(rows) > 0.9 * height and len(columns) > 0.9 * width
    torch.testing.assert_close(small.images[0][rows][:, columns],
                               torch.tensor(expected[rows][:, columns], dtype=torch.float32), atol=1e-5, rtol=0)
    torch.testing.assert_close(full.images[0], torch.tensor(pixels / 255, dtype=torch.float32))


def box_downscale(pixels: np.ndarray, width: int, height: int) -> tuple[np.ndarray, list[int], list[int]]:
    """Reference box filter [h, w, 3], and the rows and columns free of ties: a source pixel centre
    exactly on a box edge goes either way, depending on PIL's rounding."""
    def bins(source: int, target: int) -> tuple[list[np.ndarray], list[int]]:
        centres, step = np.arange(source) + 0.5, source / target
        masks = [(centres > i * step) & (centres <= (i + 1) * step) for i in range(target)]
        on_edge = [np.isclose(centres, i * step).any() or np.isclose(centres, (i + 1) * step).any()
                   for i in range(target)]
        return masks, [i for i in range(target) if not on_edge[i]]

    row_masks, rows = bins(pixels.shape[0], height)
    column_masks, columns = bins(pixels.shape[1], width)
    reference = np.array([[pixels[r][:, c].mean(axis=(0, 1)) for c in column_masks] for r in row_masks])
    return reference, rows, columns


def test_pixels_table_agrees_with_images(tmp_path):
    frames = ngp_frames(tmp_path, 2)
    write_image(tmp_path / "images" / "frame_000.png", np.random.default_rng(1).integers(0, 256, size=(6, 8, 3)))
    write_image(tmp_path / "images" / "frame_001.png", np.random.default_rng(2).integers(0, 256, size=(3, 5, 3)))
    write_json(tmp_path / "transforms.json", {"fl_x": 8.0, "train_filenames": [f["file_path"] for f in frames],
                                              "test_filenames": [], "frames": frames})
    dataset = load_dataset(tmp_path)
    rgb, camera_index, pixel_x, pixel_y = dataset.pixels()
    assert rgb.shape == (6 * 8 + 3 * 5, 3) and camera_index.bincount().tolist() == [48, 15]
    for row in torch.randperm(rgb.shape[0], generator=torch.Generator().manual_seed(0))[:20].tolist():
        image = dataset.images[int(camera_index[row])]
        torch.testing.assert_close(rgb[row], image[int(pixel_y[row] - 0.5), int(pixel_x[row] - 0.5)])
    assert float(pixel_x.min()) == 0.5 and float(pixel_x[47]) == 7.5 and float(pixel_y[47]) == 5.5


def test_nerfstudio_filename_lists(tmp_path):
    frames = ngp_frames(tmp_path, 6)
    names = [frame["file_path"] for frame in frames]
    write_json(tmp_path / "transforms.json", {"fl_x": 8.0, "frames": frames[::-1],
                                              "train_filenames": names[1:4] + ["./" + names[5]],
                                              "val_filenames": [names[4]], "test_filenames": [names[0]]})
    assert load_dataset(tmp_path, "train").image_names == ["frame_001", "frame_002", "frame_003", "frame_005"]
    assert load_dataset(tmp_path, "val").image_names == ["frame_004"]
    assert load_dataset(tmp_path, "test").image_names == ["frame_000"]
    write_json(tmp_path / "transforms.json", {"fl_x": 8.0, "frames": frames, "train_filenames": names[2:],
                                              "test_filenames": names[:2]})
    assert load_dataset(tmp_path, "val").image_names == ["frame_000", "frame_001"]  # no val list: the test one
    write_json(tmp_path / "transforms.json", {"fl_x": 8.0, "frames": frames, "train_filenames": ["images/other.png"],
                                              "test_filenames": names})
    with pytest.raises(FieldkitError, match="transforms.json.*train_filenames.*images/other.png"):
        load_dataset(tmp_path, "train")


def test_load_cameras_reads_no_images_when_the_size_is_given(tmp_path):
    poses = ring_poses(3)
    frames = [{"file_path": f"missing/view_{i}.jpg", "transform_matrix": pose} for i, pose in enumerate(poses)]
    write_json(tmp_path / "path.json", {"camera_angle_x": 1.0, "w": 40, "h": 30, "frames": frames})
    cameras, names = load_cameras(tmp_path / "path.json", downscale=2)
    assert names == ["view_0", "view_1", "view_2"]
    assert cameras.width.tolist() == [20] * 3 and float(cameras.fx[0]) == pytest.approx(10 / math.tan(0.5))
    write_blender(tmp_path / "blender")
    cameras, names = load_cameras(tmp_path / "blender")  # a dataset directory: its test split
    assert names == ["r_0", "r_1", "r_2"] and cameras.width.tolist() == [5] * 3


def test_resolve_source_uses_built_in_scenes(tmp_path, monkeypatch):
    write_blender(tmp_path / "tabletop", splits=("train",))
    monkeypatch.setattr(fieldkit.scenes, "names", lambda: ["tabletop", "garden"], raising=False)
    monkeypatch.setattr(fieldkit.scenes, "cached", lambda name, **options: tmp_path / name, raising=False)
    monkeypatch.chdir(tmp_path / "tabletop")  # "tabletop" must not resolve as a relative path
    assert resolve_source("tabletop") == tmp_path / "tabletop"
    assert load_dataset("tabletop").name == "tabletop"
    with pytest.raises(FieldkitError, match="no dataset at nowhere .*tabletop, garden"):
        resolve_source("nowhere")


def write_two_frame_scene(root) -> None:
    write_json(root / "transforms.json", {"fl_x": 8.0, "frames": ngp_frames(root, 2)})


def corrupt_missing_image(root):
    (root / "images" / "frame_000.png").unlink()
    return "frame_000.png"


def corrupt_garbage_image(root):
    (root / "images" / "frame_000.png").write_bytes(b"this is not an image at all")
    return "frame_000.png"


def corrupt_truncated_image(root):
    path = root / "images" / "frame_000.png"
    write_image(path, np.random.default_rng(0).integers(0, 256, size=(64, 64, 3)))
    path.write_bytes(path.read_bytes()[:400])
    return "frame_000.png"


def corrupt_json_syntax(root):
    (root / "transforms.json").write_text('{\n  "fl_x": 8.0,\n  "frames": [}\n')
    return "transforms.json.*line 3, column 14"


def rewrite(change):
    def corrupt(root):
        document = json.loads((root / "transforms.json").read_text())
        change(document)
        write_json(root / "transforms.json", document)
        return "transforms.json"
    return corrupt


BAD_INPUTS = {
    "missing image": corrupt_missing_image,
    "garbage image": corrupt_garbage_image,
    "truncated image": corrupt_truncated_image,
    "malformed json": corrupt_json_syntax,
    "no frames key": rewrite(lambda document: document.pop("frames")),
    "empty frames": rewrite(lambda document: document.update(frames=[])),
    "no transform_matrix": rewrite(lambda document: document["frames"][1].pop("transform_matrix")),
    "3x3 transform_matrix": rewrite(lambda document: document["frames"][0].update(
        transform_matrix=[[1, 0, 0], [0, 1, 0], [0, 0, 1]])),
    "no focal length": rewrite(lambda document: document.pop("fl_x")),
}


@pytest.mark.parametrize("corrupt", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_names_the_file(tmp_path, corrupt):
    write_two_frame_scene(tmp_path)
    load_dataset(tmp_path, "test")  # the untouched scene loads
    expected = corrupt(tmp_path)
    with pytest.raises(FieldkitError, match=expected) as caught:
        load_dataset(tmp_path, "test")
    assert "\n" not in str(caught.value)


def test_unknown_split_and_unknown_layout(tmp_path):
    write_two_frame_scene(tmp_path / "scene")
    with pytest.raises(FieldkitError, match="unknown split 'holdout' for .*scene"):
        load_dataset(tmp_path / "scene", "holdout")
    (tmp_path / "photos").mkdir()
    with pytest.raises(FieldkitError, match="photos: no dataset here"):
        load_dataset(tmp_path / "photos")
    write_blender(tmp_path / "blender", splits=("train",))
    with pytest.raises(FieldkitError, match="transforms_val.json"):
        load_dataset(tmp_path / "blender", "val")
