"""Options a user can get wrong: each gives one error line, exit status 2, and writes nothing."""
from __future__ import annotations

import contextlib
import io
import json

import pytest
import torch

from fieldkit.cli import main
from fieldkit.fields import make_config, make_field
from fieldkit.io import save_field
from fieldkit.radiance import RadianceField
from fieldkit.render.occupancy import OccupancyGrid
from fieldkit.rendering import distinct_names

AABB = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])


def run(argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(arg) for arg in argv])
        except SystemExit as exit:  # argparse's usage errors
            code = exit.code
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def asset(tmp_path_factory, small_fields):
    path = tmp_path_factory.mktemp("asset") / "field.safetensors"
    field = make_field("mlp", AABB, make_config("mlp", overrides=small_fields["mlp"]))
    save_field(RadianceField(field, OccupancyGrid(AABB, 8), 0.05), path)
    return path


CASES = {
    "negative steps": (["train", "{data}", "--out", "{out}", "--steps", "-5"], "--steps must be"),
    "zero eval-every": (["train", "{data}", "--out", "{out}", "--eval-every", "0"], "--eval-every must be"),
    "zero batch rays": (["train", "{data}", "--out", "{out}", "--batch-rays", "0"], "--batch-rays must be"),
    "nan downscale": (["train", "{data}", "--out", "{out}", "--downscale", "nan"], "--downscale must be"),
    "setting not a number": (["train", "{data}", "--arch", "voxels", "--out", "{out}", "--set", "resolution=abc"],
                             "resolution=abc: expected a whole number"),
    "setting not a switch": (["train", "{data}", "--arch", "voxels", "--out", "{out}", "--set", "resolution=1.5"],
                             "resolution=1.5: expected a whole number"),
    "negative setting": (["train", "{data}", "--arch", "voxels", "--out", "{out}", "--set", "resolution=-4"],
                         "cannot hold the scene"),
    "negative max-seconds": (["convert", "{asset}", "--to", "mlp", "--out", "{out}", "--max-seconds", "-1"],
                             "--max-seconds must be"),
    "zero views": (["convert", "{asset}", "--to", "gaussians", "--out", "{out}", "--views", "0"], "--views must be"),
    "negative orbit": (["render", "{asset}", "--orbit", "-3", "--out", "{out}"], "--orbit: must be at least 0"),
    "negative resolution": (["render", "{asset}", "--orbit", "2", "--resolution", "-8", "--out", "{out}"],
                            "--resolution: must be at least 1"),
    "resolution not a number": (["render", "{asset}", "--orbit", "2", "--resolution", "abc", "--out", "{out}"],
                                "expected a whole number"),
    "zero views per step": (["generate", "a red cube", "--out", "{out}", "--views-per-step", "0"],
                            "--views-per-step must be"),
    "zero evaluation views": (["eval-prompt", "{asset}", "a red cube", "--views", "0"], "--views: must be at least 1"),
    "out is a file (train)": (["train", "{data}", "--out", "{file}", "--steps", "1"], "is an existing file"),
    "out is a file (convert)": (["convert", "{asset}", "--to", "mlp", "--out", "{file}", "--steps", "1"],
                                "is an existing file"),
    "out is a file (render)": (["render", "{asset}", "--orbit", "1", "--resolution", "8", "--out", "{file}"],
                               "is an existing file"),
    "out is a file (generate)": (["generate", "a red cube", "--out", "{file}", "--steps", "1"], "is an existing file"),
}


@pytest.mark.parametrize("case", CASES)
def test_a_bad_option_is_one_line_and_writes_nothing(case, asset, tiny_dataset, tmp_path):
    argv, expected = CASES[case]
    file = tmp_path / "notes.txt"
    file.write_text("keep me")
    places = {"data": tiny_dataset, "asset": asset, "out": tmp_path / "out", "file": file}
    code, _, stderr = run([arg.format(**places) for arg in argv])
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, stderr
    assert expected in lines[0] and "Traceback" not in stderr
    assert not (tmp_path / "out").exists() and file.read_text() == "keep me"


def test_frames_of_one_stem_get_names_of_their_own(asset, tmp_path):
    """A transforms file may list frames of one stem (from different folders): each gets its own
    image, numbered past every name in use."""
    frame = {"transform_matrix": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 4], [0, 0, 0, 1]]}
    frames = [{"file_path": "train/r_0", **frame}, {"file_path": "test/r_0", **frame},
              {"file_path": "r_0-2", **frame}]
    (tmp_path / "transforms.json").write_text(json.dumps({"camera_angle_x": 0.7, "w": 8, "h": 8, "frames": frames}))
    code, _, stderr = run(["render", asset, "--cameras", tmp_path / "transforms.json", "--out", tmp_path / "frames"])
    assert code == 0, stderr
    assert sorted(path.name for path in (tmp_path / "frames").iterdir()) == ["r_0-2.png", "r_0-3.png", "r_0.png"]
    assert distinct_names(["a", "a", "a-2", "b", "a"]) == ["a", "a-3", "a-2", "b", "a-4"]
