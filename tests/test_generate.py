"""`fieldkit generate`: outputs, determinism, batch = one by one, Ctrl-C and resume, bad input.
A random-weight built-in-style prior (16 px) keeps every run to a few steps of a second."""
from __future__ import annotations

import json
import os
import signal

import pytest
import torch

from fieldkit.cli import main
from fieldkit.generate.api import generate
from fieldkit.generate.config import GenerateConfig
from fieldkit.guidance.prior import load_prior
from fieldkit.asset_file import read_tensors

FAST = dict(steps=4, resolution=16, turntable_frames=3, turntable_resolution=16, preview_every=2,
            geometry_metrics=False)
FAST_FLAGS = ["--steps", "4", "--resolution", "16", "--turntable-frames", "3", "--turntable-resolution", "16",
              "--no-geometry-metrics"]
ASSETS = {"gaussians": "splats.safetensors", "field": "field.safetensors"}


@pytest.fixture(scope="module")
def prior(prior_directory):
    return load_prior(str(prior_directory))


def _tensors(path):
    return read_tensors(path)[0]


def _assert_same_tensors(first, second):
    a, b = _tensors(first), _tensors(second)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.mark.parametrize("rep", ["gaussians", "field"])
def test_generate_writes_asset_turntable_preview_and_metrics(prior_directory, tmp_path, capsys, rep):
    out = tmp_path / "run"
    flags = FAST_FLAGS[:-1] if rep == "gaussians" else FAST_FLAGS  # geometry metrics on splats only: ~10 s
    assert main(["generate", "a red cube", "--out", str(out), "--prior", str(prior_directory), "--rep", rep,
                 *flags]) == 0
    for name in (ASSETS[rep], "turntable.gif", "preview.png", "metrics.json"):
        assert (out / name).stat().st_size > 0, name
    assert not (out / "checkpoint.safetensors").exists()
    assert (out / "splats.ply").exists() == (rep == "gaussians")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 4 and metrics["prompt"] == "red cube" and metrics["seconds"] > 0
    assert {"final_loss", "fidelity", "saturation"} <= set(metrics) and 0 <= metrics["judge"] <= 1
    if rep == "gaussians":
        geometry = metrics["geometry"]
        assert 0 < geometry["iou"] < 1 and 0 <= geometry["stray"] < 1 and geometry["depth_error"] > 0
        assert len(geometry["iou_by_elevation"]) == 5 and geometry["colour_distance"] > 0
    else:
        assert metrics["geometry"] is None and "not measured" in metrics["geometry_note"]
    assert "wrote" in capsys.readouterr().out
    from fieldkit.io import load

    assert load(out / ASSETS[rep]).render is not None


@pytest.mark.parametrize("rep", ["gaussians", "field"])
def test_a_seed_gives_the_same_asset(prior, tmp_path, rep):
    for name in ("a", "b"):
        generate("a red cube", tmp_path / name, GenerateConfig(rep=rep, seed=3, **FAST), prior)
    _assert_same_tensors(tmp_path / "a" / ASSETS[rep], tmp_path / "b" / ASSETS[rep])
    generate("a red cube", tmp_path / "c", GenerateConfig(rep=rep, seed=4, **FAST), prior)
    first, other = _tensors(tmp_path / "a" / ASSETS[rep]), _tensors(tmp_path / "c" / ASSETS[rep])
    assert any(not torch.equal(first[name], other[name]) for name in first)  # another seed, another asset


def test_batch_prompts_match_one_by_one(prior_directory, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red cube\n\n# a comment\na blue sphere\n")
    flags = ["--prior", str(prior_directory), *FAST_FLAGS]
    assert main(["generate", "--prompts", str(prompts), "--out", str(tmp_path / "batch"), *flags]) == 0
    assert main(["generate", "a blue sphere", "--out", str(tmp_path / "single"), *flags]) == 0
    assert (tmp_path / "batch" / "a_red_cube" / "splats.ply").exists()
    _assert_same_tensors(tmp_path / "batch" / "a_blue_sphere" / "splats.safetensors",
                         tmp_path / "single" / "splats.safetensors")


class _InterruptAt:
    """A live view that presses Ctrl-C at a step."""

    def __init__(self, step: int):
        self.step = step

    def update(self, step, figures, model=None):
        if step == self.step:
            os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.parametrize("rep,guidance", [("gaussians", "sds"), ("field", "vsd")])
def test_ctrl_c_keeps_a_checkpoint_and_resuming_gives_the_uninterrupted_asset(prior, tmp_path, rep, guidance):
    config = GenerateConfig(rep=rep, guidance=guidance, **(FAST | {"preview_every": 1}))
    with pytest.raises(KeyboardInterrupt):
        generate("a red cube", tmp_path / "cut", config, prior, live_view=_InterruptAt(2))
    assert (tmp_path / "cut" / "checkpoint.safetensors").exists()
    assert not (tmp_path / "cut" / ASSETS[rep]).exists() and not (tmp_path / "cut" / "metrics.json").exists()
    assert generate("a red cube", tmp_path / "cut", config, prior)["steps"] == 4
    generate("a red cube", tmp_path / "whole", config, prior)
    _assert_same_tensors(tmp_path / "cut" / ASSETS[rep], tmp_path / "whole" / ASSETS[rep])


@pytest.mark.parametrize("prompt,message", [("   ", "the prompt is empty"), ("a red dragon", "does not know 'dragon'")])
def test_bad_prompts_give_one_line_and_write_nothing(prior_directory, tmp_path, capsys, prompt, message):
    out = tmp_path / "run"
    assert main(["generate", prompt, "--out", str(out), "--prior", str(prior_directory), *FAST_FLAGS]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and len(error.splitlines()) == 1
    assert not out.exists()


def test_a_prior_that_is_not_a_pipeline_is_one_line(tmp_path, capsys):
    (tmp_path / "not_a_pipeline").mkdir()
    assert main(["generate", "a red cube", "--out", str(tmp_path / "run"), "--prior",
                 str(tmp_path / "not_a_pipeline")]) == 2
    error = capsys.readouterr().err.strip()
    assert "not a diffusers pipeline" in error and len(error.splitlines()) == 1


def test_nan_stops_with_one_line_and_no_asset(prior_directory, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["generate", "a red cube", "--out", str(out), "--prior", str(prior_directory), *FAST_FLAGS,
                 "--learning-rate-scale", "1e30"]) == 2
    error = capsys.readouterr().err
    lines = [line for line in error.splitlines() if line.startswith("fieldkit: error")]  # besides progress lines
    assert len(lines) == 1 and "became nan" in lines[0] and "Traceback" not in error
    assert not (out / "splats.safetensors").exists() and not (out / "splats.ply").exists()


def test_unknown_choices_are_refused(prior_directory, tmp_path, capsys):
    assert main(["generate", "a red cube", "--out", str(tmp_path), "--guidance", "magic"]) == 2
    assert "--guidance magic" in capsys.readouterr().err


def test_cleaning_finds_floaters_and_splats_that_no_view_needs():
    from fieldkit.gaussians.initialise import splats_from_points
    from fieldkit.generate.splats import NEEDED_WEIGHT, alpha_entropy, background_coloured, isolated, largest_blend_weights

    generator = torch.Generator().manual_seed(0)
    body = (torch.rand(300, 3, generator=generator) - 0.5) * 0.6
    points = torch.cat([body, torch.tensor([[0.0, 0.0, 0.0], [0.95, 0.0, 0.6]])])  # a hidden centre, a floater
    splats = splats_from_points(points, torch.rand(len(points), 3, generator=generator), 0.9, 0, torch.ones(3))
    with torch.no_grad():
        splats.log_scales[300] = -6.0  # tiny, and inside the opaque body
    assert isolated(splats.means).nonzero().flatten().tolist() == [301]
    weights = largest_blend_weights(splats, 32)
    assert weights[300] < NEEDED_WEIGHT < weights[301] and int((weights[:300] > NEEDED_WEIGHT).sum()) > 50
    # the alpha entropy is zero on empty and opaque pixels and largest at one half
    assert float(alpha_entropy(torch.tensor([[[0.0, 1.0]]]))) < 0.01
    assert float(alpha_entropy(torch.full((1, 1, 2), 0.5))) > 1.3  # two pixels of ln 2 each
    # white and pale splats are background paint; the palette's lightest colour (yellow) is not
    palette = splats_from_points(torch.zeros(4, 3), torch.tensor([[1.0, 1.0, 1.0], [0.8, 0.85, 0.9], [0.95, 0.85, 0.15],
                                                                  [0.12, 0.3, 0.9]]), 0.9, 0, torch.ones(3))
    assert background_coloured(palette, 0.7).tolist() == [True, True, False, False]
    assert not background_coloured(palette, 0.0).any()
