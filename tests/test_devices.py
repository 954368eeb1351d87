"""`--device` and the device guard: every verb's small case keeps each tensor it creates on the
model's device (tests/device_guard.py explains how that shows on a CPU-only machine), and the
guard itself catches a stray `torch.zeros(...)` in a step.

FIELDKIT_TEST_DEVICE=cuda runs the same cases with `--device cuda` on a GPU machine, where a mix
fails in torch itself."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from device_guard import keeps_to_model_device
from fieldkit import rendering
from fieldkit.cli import main
from fieldkit.devices import device_name, make_generator, resolve_device, restore_generator
from fieldkit.errors import FieldkitError
from fieldkit.runs import ResumableRun

DEVICE = os.environ.get("FIELDKIT_TEST_DEVICE", "cpu")
RUNS = (ResumableRun, "optimise")
"""Verbs are checked from the first step on: building a model on the CPU and then moving it is fine."""
TEST_FILE = (Path(__file__).resolve(),)


# -- the guard catches what it is for ------------------------------------------------------

def test_the_guard_catches_a_stray_tensor_meeting_the_models():
    weights = torch.nn.Parameter(torch.ones(4))
    with pytest.raises(AssertionError, match=r"test_devices.py:\d+.*made at .*test_devices.py"):
        with keeps_to_model_device(TEST_FILE):
            (weights + torch.zeros(4)).sum()


def test_the_guard_follows_a_stray_tensor_through_ops_and_lets_moves_and_scalars_pass():
    weights = torch.nn.Parameter(torch.ones(4))
    with keeps_to_model_device(TEST_FILE):
        (weights * torch.tensor(2.0) + torch.zeros(4).to(weights) + torch.ones(4, device=weights.device)).sum()
        torch.zeros(3).cumsum(0).tolist()  # default-device work that never meets the model is no mix
    with pytest.raises(AssertionError, match="left on the default device"):
        with keeps_to_model_device(TEST_FILE):
            weights - torch.linspace(0, 1, 4).exp()[None].expand(2, 4)


def test_the_guard_catches_draws_from_a_generator_made_without_a_device():
    with pytest.raises(AssertionError, match="generator made without device="):
        with keeps_to_model_device(TEST_FILE):
            torch.rand(3, generator=torch.Generator().manual_seed(0), device="cpu")
    with pytest.raises(AssertionError, match="default-device tensor"):
        with keeps_to_model_device(TEST_FILE):
            torch.rand(3, generator=make_generator(0, "cpu"))
    with keeps_to_model_device(TEST_FILE):
        torch.rand(3, generator=make_generator(0, "cpu"), device="cpu")


def test_the_guard_catches_a_stray_zeros_injected_into_a_generation_step(prior_directory, tmp_path, monkeypatch):
    from fieldkit.generate import run as generation

    def stray_background(*args):
        views = random_views(*args)
        views.background = torch.zeros(len(views.cameras), 3)  # the bug the guard is for
        return views

    random_views = generation.random_views
    monkeypatch.setattr(generation, "random_views", stray_background)
    with pytest.raises(AssertionError, match=r"shading.py:\d+.*made at .*test_devices.py"):
        with keeps_to_model_device((*TEST_FILE, Path(generation.__file__).parent), arm_at=RUNS):
            # on the CPU whatever FIELDKIT_TEST_DEVICE says: on CUDA torch itself would stop at the stray
            assert _generate(prior_directory, tmp_path, "gaussians", "--no-geometry-metrics", "--device", "cpu") == 0


# -- --device ------------------------------------------------------------------------------

def test_device_names_resolve_and_a_missing_gpu_is_one_line():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(Exception, match="choose one of auto, cpu, cuda"):
        device_name("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(FieldkitError, match="--device cuda: .* use --device cpu"):
            resolve_device("cuda")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_asking_for_cuda_without_one_is_one_line_and_writes_nothing(tmp_path, capsys):
    assert main(["train", "tabletop", "--out", str(tmp_path / "run"), "--device", "cuda"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("fieldkit: error: --device cuda") and len(error.splitlines()) == 1
    assert not (tmp_path / "run").exists()


# -- every verb keeps to its device ----------------------------------------------------------

def _generate(prior_directory, out, rep, *flags) -> int:
    return main(["generate", "a red cube", "--out", str(out / rep), "--prior", str(prior_directory), "--rep", rep,
                 "--device", DEVICE, "--steps", "3", "--resolution", "16", "--turntable-frames", "2",
                 "--turntable-resolution", "16", *flags])


@pytest.mark.parametrize("rep,flags", [
    ("gaussians", ["--lambertian", "0.5", "--textureless", "0.5", "--random-background", "1"]),
    ("field", ["--lambertian", "1", "--guidance", "vsd", "--views-per-step", "2", "--no-geometry-metrics"]),
])
def test_generate_keeps_to_the_device(prior_directory, tmp_path, rep, flags):
    from fieldkit.generate.geometry import _truth

    # the ground truth is traced on the CPU, as the metrics are compared there; a truth cached by an
    # earlier test was made outside the guard, so the guard could not tell where it lives
    _truth.cache_clear()
    with keeps_to_model_device(arm_at=RUNS):
        assert _generate(prior_directory, tmp_path, rep, *flags) == 0


@pytest.fixture(scope="module")
def trained_field(tiny_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("field") / "run"
    with keeps_to_model_device(arm_at=RUNS):
        assert main(["train", str(tiny_dataset), "--out", str(out), "--device", DEVICE, "--steps", "20",
                     "--batch-rays", "256", "--samples-per-diagonal", "32", "--occupancy-resolution", "16",
                     "--occupancy-every", "4", "--eval-every", "10", "--set", "levels=4", "--set", "log2_table_size=10",
                     "--set", "max_resolution=32"]) == 0
    return out / "field.safetensors"


def test_train_keeps_to_the_device(trained_field):
    assert trained_field.exists()


def test_train_gaussians_with_densification_keeps_to_the_device(tiny_dataset, tmp_path):
    settings = {"initial_splats": 200, "start": 1, "every": 2, "stop": 8, "reset_every": 6, "sh_degree_every": 3}
    with keeps_to_model_device(arm_at=RUNS):
        assert main(["train", str(tiny_dataset), "--arch", "gaussians", "--out", str(tmp_path / "run"),
                     "--device", DEVICE, "--steps", "9", "--eval-every", "4",
                     *[flag for name, value in settings.items() for flag in ("--set", f"{name}={value}")]]) == 0


STUDENT_SETTINGS = {"mlp": ["--set", "width=32", "--batch-rays", "128"],
                    "voxels": ["--set", "resolution=16", "--batch-rays", "128"],
                    "gaussians": ["--views", "4", "--set", "initial_splats=200", "--set", "start=1", "--set", "every=2"]}


@pytest.mark.parametrize("student", list(STUDENT_SETTINGS))
def test_convert_keeps_to_the_device(trained_field, tmp_path, student):
    with keeps_to_model_device(arm_at=RUNS):
        assert main(["convert", str(trained_field), "--to", student, "--out", str(tmp_path / "run"), "--device", DEVICE,
                     "--steps", "6", "--eval-views", "2", "--eval-resolution", "16",
                     *STUDENT_SETTINGS[student]]) == 0


def test_render_keeps_to_the_device(trained_field, tmp_path):
    with keeps_to_model_device(arm_at=(rendering, "render_each")):
        assert main(["render", str(trained_field), "--orbit", "2", "--resolution", "16", "--out", str(tmp_path),
                     "--device", DEVICE]) == 0
    assert len(list(tmp_path.glob("*.png"))) == 2


def test_prior_train_and_sample_keep_to_the_device(tmp_path):
    run = tmp_path / "run"
    with keeps_to_model_device(arm_at=RUNS):
        assert main(["prior", "train", "--out", str(run), "--steps", "2", "--batch-size", "4", "--views-per-object", "1",
                     "--stack-views", "4", "--checkpoint-seconds", "0", "--device", DEVICE]) == 0
    with keeps_to_model_device():
        assert main(["prior", "sample", "a red cube", "--n", "2", "--steps", "2", "--prior", str(run / "prior"),
                     "--out", str(tmp_path / "samples"), "--device", DEVICE]) == 0
    assert len(list((tmp_path / "samples").glob("*.png"))) == 2


def test_the_viewer_renders_an_asset_on_the_device(trained_field):
    from fieldkit.viewer.assets import open_asset
    from fieldkit.viewer.scene import View, ViewScene

    scene = ViewScene([open_asset(trained_field, resolve_device(DEVICE))])
    with keeps_to_model_device():
        image, depth = scene.render_view(View((1.0, 0.0, 0.0, 0.0), (0.0, -3.0, 0.0), 0.8, 1.0), rows=16)
    assert image.shape == (16, 16, 3) and np.isfinite(depth).all()


def test_a_checkpoint_from_another_device_type_is_one_line(tmp_path):
    cuda_state = torch.zeros(16, dtype=torch.uint8)  # a CUDA generator's state: seed and offset
    with pytest.raises(FieldkitError, match="another device than cpu; resume it with the --device"):
        restore_generator(make_generator(0, "cpu"), cuda_state, tmp_path / "checkpoint.safetensors")
