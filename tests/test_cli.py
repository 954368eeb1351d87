"""The `fieldkit` command, called in-process through `fieldkit.cli.main` (and the installed
console script once, for the exit code and the one-line error a shell sees)."""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors import safe_open

from fieldkit import scenes
from fieldkit.cli import main
from fieldkit.train import Trainer

ARCH = "voxels"  # the quickest architecture to train


def train_args(dataset, out, config, overrides, arch=ARCH, **changes) -> list[str]:
    """`fieldkit train` arguments for a TrainConfig and field overrides."""
    args = ["train", str(dataset), "--arch", arch, "--out", str(out)]
    for name, value in (dataclasses.asdict(config) | changes).items():
        if value is not None:  # an unset option keeps its default
            args += ["--" + name.replace("_", "-"), str(value)]
    for name, value in overrides.items():
        args += ["--set", f"{name}={value}"]
    return args


def run(argv) -> tuple[int, str, str]:
    """main(argv) -> (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(arg) for arg in argv])
    return code, out.getvalue(), err.getvalue()


def error_line(stderr: str) -> str:
    """The single line of a CLI error (the progress display may print lines before it)."""
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("train ")]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("fieldkit: error: "), lines[0]
    assert "Traceback" not in stderr
    return lines[0]


@pytest.fixture(scope="module")
def fast(fast_settings):
    config, overrides = fast_settings[ARCH]
    return dataclasses.replace(config, steps=150), overrides


@pytest.fixture(scope="module")
def trained(tiny_dataset, fast, tmp_path_factory):
    """A run directory of `fieldkit train` on the tiny dataset."""
    out = tmp_path_factory.mktemp("cli") / "run"
    code, stdout, stderr = run(train_args(tiny_dataset, out, *fast))
    assert code == 0, stderr
    return out, stdout


def read_rgb(path, background=1.0) -> np.ndarray:
    """An image [H, W, 3] in [0, 1]; RGBA composited onto `background`."""
    pixels = np.asarray(Image.open(path).convert("RGBA"), dtype=np.float64) / 255
    return pixels[..., :3] * pixels[..., 3:] + background * (1 - pixels[..., 3:])


# -- scenes --------------------------------------------------------------------------------

def test_scenes_lists_the_default_first():
    code, stdout, _ = run(["scenes"])
    assert code == 0
    lines = stdout.splitlines()
    assert len(lines) == len(scenes.names()) >= 4
    assert lines[0].split()[0] == scenes.DEFAULT_SCENE and "(default)" in lines[0]
    assert all("(default)" not in line for line in lines[1:])


def test_scenes_export_writes_a_dataset(tmp_path):
    out = tmp_path / "exported"
    code, stdout, _ = run(["scenes", "export", "tabletop", "--out", out, "--resolution", 16, "--train-views", 3,
                           "--test-views", 2])
    assert code == 0 and str(out) in stdout
    for split, count in (("train", 3), ("test", 2)):
        meta = json.loads((out / f"transforms_{split}.json").read_text())
        assert len(meta["frames"]) == count
        for frame in meta["frames"]:
            image = Image.open(out / f"{frame['file_path']}.png")
            assert image.size == (16, 16) and image.mode == "RGBA"


# -- train, render, info -------------------------------------------------------------------

def test_train_writes_the_asset_and_metrics(trained):
    out, stdout = trained
    assert (out / "field.safetensors").is_file() and not (out / "checkpoint.safetensors").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"psnr_test", "ssim_test", "seconds", "steps"} <= set(metrics)
    assert metrics["steps"] == 150 and metrics["seconds"] > 0
    assert metrics["psnr_test"] > 25.0 and metrics["ssim_test"] > 0.85  # measured 28.2 dB, 0.944
    assert f"{metrics['psnr_test']:.2f}" in stdout


def test_rerunning_a_finished_run_trains_nothing(trained, tiny_dataset, fast, monkeypatch):
    out, _ = trained
    before = (out / "field.safetensors").read_bytes()
    monkeypatch.setattr(Trainer, "train_step", lambda self: pytest.fail("a finished run trained again"))
    code, _, _ = run(train_args(tiny_dataset, out, *fast))
    assert code == 0 and (out / "field.safetensors").read_bytes() == before


def test_render_matches_the_reported_psnr(trained, tiny_dataset, tmp_path):
    out, _ = trained
    code, _, stderr = run(["render", out / "field.safetensors", "--cameras", tiny_dataset / "transforms_test.json",
                           "--out", tmp_path / "renders"])
    assert code == 0, stderr
    frames = json.loads((tiny_dataset / "transforms_test.json").read_text())["frames"]
    written = sorted(path.name for path in (tmp_path / "renders").iterdir())
    assert written == sorted(f"{Path(frame['file_path']).name}.png" for frame in frames)
    psnrs = []
    for frame in frames:
        rendered = read_rgb(tmp_path / "renders" / f"{Path(frame['file_path']).name}.png")
        truth = read_rgb(tiny_dataset / f"{frame['file_path']}.png")
        assert rendered.shape == truth.shape == (32, 32, 3)
        psnrs.append(-10 * math.log10(np.mean((rendered - truth) ** 2)))
    reported = json.loads((out / "metrics.json").read_text())["psnr_test"]
    assert abs(np.mean(psnrs) - reported) < 0.1, (psnrs, reported)


def test_render_orbit_and_downscale(trained, tiny_dataset, tmp_path):
    asset = trained[0] / "field.safetensors"
    code, _, stderr = run(["render", asset, "--orbit", 3, "--resolution", 24, "--out", tmp_path / "orbit"])
    assert code == 0, stderr
    orbit = sorted((tmp_path / "orbit").iterdir())
    assert len(orbit) == 3 and all(Image.open(path).size == (24, 24) for path in orbit)
    # a turntable around the scene shows it: not a blank image
    assert all(read_rgb(path).std() > 0.05 for path in orbit)
    code, _, stderr = run(["render", asset, "--cameras", tiny_dataset / "transforms_test.json", "--downscale", 2,
                           "--out", tmp_path / "half"])
    assert code == 0, stderr
    half = sorted((tmp_path / "half").iterdir())
    assert len(half) == 3 and all(Image.open(path).size == (16, 16) for path in half)


def test_info_describes_the_asset(trained):
    out, _ = trained
    code, stdout, _ = run(["info", out / "field.safetensors"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert ARCH in stdout
    assert f"{metrics['parameters']:,}" in stdout and metrics["parameters"] == 13 * 32**3
    assert "[-1.0, -1.0, -1.0]" in stdout and "[1.0, 1.0, 1.0]" in stdout
    psnr_line = next(line for line in stdout.splitlines() if line.startswith("psnr_test"))
    assert float(psnr_line.split()[1]) == pytest.approx(metrics["psnr_test"], abs=0.01)
    code, stdout, _ = run(["info", out / "field.safetensors", "--json"])
    assert code == 0 and json.loads(stdout)["metrics"] == metrics


# -- resuming ------------------------------------------------------------------------------

class StepCounter:
    """Counts Trainer.train_step calls; raises KeyboardInterrupt on call `interrupt_at`, or sends the
    process a real SIGINT (Ctrl-C) at the end of call `ctrl_c_at`, when the step has changed the
    model and drawn its random numbers but the loop has not yet counted it."""

    def __init__(self, monkeypatch, interrupt_at: int | None = None, ctrl_c_at: int | None = None):
        self.calls, self.interrupt_at = 0, interrupt_at
        original = Trainer.train_step

        def train_step(trainer):
            self.calls += 1
            if self.calls == self.interrupt_at:
                raise KeyboardInterrupt
            result = original(trainer)
            if self.calls == ctrl_c_at:
                os.kill(os.getpid(), signal.SIGINT)
            return result

        monkeypatch.setattr(Trainer, "train_step", train_step)


RESUME_FIELD = {"levels": 4, "log2_table_size": 12, "max_resolution": 32, "hidden_width": 16, "colour_width": 16}


def test_an_interrupted_run_resumes_where_it_stopped(tiny_dataset, fast, tmp_path, monkeypatch):
    """Interrupted after 15 of 40 steps: exit 130 with a checkpoint; the same command then does the
    25 remaining steps, and ends exactly where an uninterrupted run ends."""
    config = dataclasses.replace(fast[0], steps=40, checkpoint_seconds=0)

    def args(out):  # hashgrid: its training draws every random number from the checkpointed generator
        return train_args(tiny_dataset, out, config, RESUME_FIELD, arch="hashgrid")

    with monkeypatch.context() as patch:
        counter = StepCounter(patch, interrupt_at=16)
        code, _, stderr = run(args(tmp_path / "run"))
    assert code == 130, stderr
    assert "rerun the same command" in stderr
    assert (tmp_path / "run" / "checkpoint.safetensors").is_file()
    assert not (tmp_path / "run" / "field.safetensors").exists()
    with safe_open(str(tmp_path / "run" / "checkpoint.safetensors"), framework="pt") as handle:
        assert json.loads(handle.metadata()["fieldkit"])["step"] == 15

    with monkeypatch.context() as patch:
        counter = StepCounter(patch)
        code, _, stderr = run(args(tmp_path / "run"))
    assert code == 0, stderr
    assert counter.calls == 25, "the second run must start from step 15"
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["steps"] == 40
    assert not (tmp_path / "run" / "checkpoint.safetensors").exists()

    code, _, stderr = run(args(tmp_path / "straight"))
    assert code == 0, stderr
    straight = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    assert metrics["psnr_test"] == straight["psnr_test"]
    with safe_open(str(tmp_path / "run" / "field.safetensors"), framework="pt") as resumed, \
            safe_open(str(tmp_path / "straight" / "field.safetensors"), framework="pt") as uninterrupted:
        for name in uninterrupted.keys():
            assert (resumed.get_tensor(name) == uninterrupted.get_tensor(name)).all(), name


def test_ctrl_c_checkpoints_after_the_step_under_way_and_resumes_exactly(tiny_dataset, fast, tmp_path,
                                                                        monkeypatch):
    """A real Ctrl-C during step 16 lets that step finish, checkpoints step 16 (the only checkpoint:
    none is due by time), exits 130; the rerun ends bit for bit where an uninterrupted run ends."""
    config = dataclasses.replace(fast[0], steps=30, checkpoint_seconds=1e9)

    def args(out):
        return train_args(tiny_dataset, out, config, RESUME_FIELD, arch="hashgrid")

    with monkeypatch.context() as patch:
        StepCounter(patch, ctrl_c_at=16)
        code, _, stderr = run(args(tmp_path / "run"))
    assert code == 130, stderr
    with safe_open(str(tmp_path / "run" / "checkpoint.safetensors"), framework="pt") as handle:
        assert json.loads(handle.metadata()["fieldkit"])["step"] == 16
    with monkeypatch.context() as patch:
        counter = StepCounter(patch)
        assert run(args(tmp_path / "run"))[0] == 0
    assert counter.calls == 14
    assert run(args(tmp_path / "straight"))[0] == 0
    with safe_open(str(tmp_path / "run" / "field.safetensors"), framework="pt") as resumed, \
            safe_open(str(tmp_path / "straight" / "field.safetensors"), framework="pt") as uninterrupted:
        for name in uninterrupted.keys():
            assert (resumed.get_tensor(name) == uninterrupted.get_tensor(name)).all(), name


def console_script() -> str:
    script = Path(sys.executable).with_name("fieldkit")
    return str(script) if script.exists() else "fieldkit"


def test_a_killed_run_resumes_from_its_last_checkpoint(tiny_dataset, fast, tmp_path, monkeypatch):
    config = dataclasses.replace(fast[0], steps=150, checkpoint_seconds=0)
    argv = train_args(tiny_dataset, tmp_path / "run", config, fast[1])
    checkpoint = tmp_path / "run" / "checkpoint.safetensors"
    process = subprocess.Popen([console_script(), *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env=os.environ | {"OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 60
        while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()
    assert not (tmp_path / "run" / "field.safetensors").exists()
    with safe_open(str(checkpoint), framework="pt") as handle:  # whole, though the writer was killed
        step = json.loads(handle.metadata()["fieldkit"])["step"]
    assert 0 < step < 150
    counter = StepCounter(monkeypatch)
    code, _, stderr = run(argv)
    assert code == 0, stderr
    assert counter.calls == 150 - step
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["steps"] == 150


# -- errors --------------------------------------------------------------------------------

def test_another_command_in_a_run_directory_is_refused(trained, tiny_dataset, fast):
    out, _ = trained
    code, _, stderr = run(train_args(tiny_dataset, out, *fast, steps=151))
    assert code == 2
    line = error_line(stderr)
    assert str(out) in line and "another run" in line


def test_a_directory_with_other_files_is_refused(tiny_dataset, fast, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    code, _, stderr = run(train_args(tiny_dataset, tmp_path, *fast))
    assert code == 2 and str(tmp_path) in error_line(stderr)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("case", ["unknown arch", "unknown scene", "unknown setting", "unknown export scene",
                                  "nothing to render"])
def test_bad_arguments_give_one_error_line(case, tiny_dataset, trained, tmp_path):
    out = tmp_path / "run"
    argv, expected = {
        "unknown arch": (["train", tiny_dataset, "--arch", "nerfacto", "--out", out], "nerfacto"),
        "unknown scene": (["train", "teapot", "--arch", ARCH, "--out", out, "--steps", 5], "teapot"),
        "unknown setting": (["train", tiny_dataset, "--arch", ARCH, "--out", out, "--set", "widht=3"], "widht"),
        "unknown export scene": (["scenes", "export", "teapot", "--out", out], "teapot"),
        "nothing to render": (["render", trained[0] / "field.safetensors", "--out", out], "--cameras"),
    }[case]
    code, _, stderr = run(argv)
    assert code == 2
    assert expected in error_line(stderr)
    assert not out.exists(), "a failed command left a directory behind"


def test_a_corrupt_asset_is_one_error_line_from_the_shell(trained, tmp_path):
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes((trained[0] / "field.safetensors").read_bytes()[:1000])
    result = subprocess.run([console_script(), "info", str(corrupt)], capture_output=True, text=True, timeout=120,
                            env=os.environ | {"OMP_NUM_THREADS": "1"})
    assert result.returncode == 2
    assert result.stdout == ""
    assert str(corrupt) in error_line(result.stderr)
    assert result.stderr.count("\n") == 1


def diverging_args(tiny_dataset, fast, out) -> list[str]:
    config, overrides = fast
    return train_args(tiny_dataset, out, dataclasses.replace(config, steps=20), overrides | {"learning_rate": 1e30})


def test_a_diverging_run_is_one_error_line(tiny_dataset, fast, tmp_path):
    out = tmp_path / "run"
    code, _, stderr = run(diverging_args(tiny_dataset, fast, out))
    assert code == 2
    line = error_line(stderr)
    assert "loss became" in line and "learning rate" in line and str(out) in line
    assert not (out / "field.safetensors").exists()


def test_a_diverging_run_prints_only_the_error_line_in_a_shell(tiny_dataset, fast, tmp_path):
    """In a subprocess, as a user sees it: a warning would print its own lines beside the error
    (torch warns once per process, so only a fresh process shows it)."""
    argv = diverging_args(tiny_dataset, fast, tmp_path / "run")
    result = subprocess.run([console_script(), *argv], capture_output=True, text=True, timeout=120,
                            env=os.environ | {"OMP_NUM_THREADS": "1"})
    assert result.returncode == 2
    assert "loss became" in error_line(result.stderr)
