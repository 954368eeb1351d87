"""Layered splat assets: the files (layers.json, one .ply a layer, the composite), compose and
removal, decomposition, generate --layer's wiring, bad input, and the scores of a layered asset
built from the built-in world's ground truth (the evaluator's figures, not shapes).
Generation with the built-in prior takes many minutes on CPU: bench/layers.py measures it."""
from __future__ import annotations

import json

import pytest
import torch

from fieldkit.cli import main
from fieldkit.gaussians.model import PARAMETER_NAMES, Splats
from fieldkit.gaussians.ply import read_ply
from fieldkit.layers.decompose import split
from fieldkit.layers.frames import frame_of, frame_of_parts, merged, opaque_box
from fieldkit.layers.manifest import read_layered, write_layered
from fieldkit.layers.scoring import composite_scores, layer_scores
from fieldkit.layers.truth import truth_layers

FAST_FLAGS = ["--steps", "3", "--resolution", "16", "--turntable-frames", "2", "--turntable-resolution", "16",
              "--no-geometry-metrics", "--max-splats", "2500"]


@pytest.fixture(scope="module")
def stack():
    """A red cube with a blue sphere on top, sampled on the ground truth's surfaces."""
    return truth_layers(["a red cube", "a blue sphere"], count=3000)


@pytest.fixture(scope="module")
def stack_directory(stack, tmp_path_factory):
    directory = tmp_path_factory.mktemp("stack")
    write_layered(stack, directory)
    return directory


def test_the_ground_truth_stack_scores_as_its_prompts(stack):
    composite = composite_scores(stack)
    assert composite["fidelity"] >= 0.8, composite
    sphere = layer_scores(stack, "blue_sphere")
    # at elevation 0 the cube hides about a fifth of the sphere: those views are scored apart
    assert sphere["hidden_views"] >= 4 and sphere["fidelity_hidden_views"] >= 0.8, sphere
    assert sphere["fidelity"] >= 0.8


def test_scores_fail_a_wrong_layer(stack):
    """The same stack with the sphere's splats turned red: the layer alone and the composite fail."""
    layers = [layer for layer in stack.layers]
    red = layers[1].splats
    with torch.no_grad():
        sphere = type(red)(red.means, red.log_scales, red.quaternions, red.opacity_logits,
                           layers[0].splats.sh_dc[:len(red)].clone(), red.sh_rest)
    wrong = type(stack)([layers[0], type(layers[1])(layers[1].name, layers[1].prompt, sphere, layers[1].translation,
                                                     layers[1].placement)], stack.prompt)
    assert layer_scores(wrong, "blue_sphere")["fidelity"] < 0.2
    assert composite_scores(wrong)["fidelity"] < 0.2


def test_files_read_back_and_compose_without_a_layer_gives_the_base_back(stack, stack_directory, tmp_path):
    manifest = json.loads((stack_directory / "layers.json").read_text())
    assert [entry["name"] for entry in manifest["layers"]] == ["red_cube", "blue_sphere"]
    assert manifest["layers"][1]["placement"] == "on top"
    assert len(read_ply(stack_directory / "composite.ply")) == sum(len(layer.splats) for layer in stack.layers)
    again = read_layered(stack_directory)
    for before, after in zip(stack.layers, again.layers):
        assert torch.equal(before.splats.means, after.splats.means) and before.translation == after.translation
    assert main(["compose", str(stack_directory), "--without", "blue_sphere", "--out", str(tmp_path / "base")]) == 0
    base = read_layered(tmp_path / "base")
    assert base.names() == ["red_cube"]
    assert torch.equal(base.layers[0].splats.means, stack.layers[0].splats.means)
    before, after = layer_scores(stack, "red_cube"), layer_scores(base, "red_cube")
    assert after["hidden_views"] == 0 and after["fidelity"] == pytest.approx(
        layer_scores(type(stack)([stack.layers[0]]), "red_cube")["fidelity"])
    assert before["fidelity"] >= 0.8 and after["fidelity"] >= 0.8


def test_render_writes_each_layer_apart_and_together(stack_directory, tmp_path):
    out = tmp_path / "renders"
    assert main(["render", str(stack_directory), "--orbit", "2", "--resolution", "24", "--out", str(out)]) == 0
    for folder in ("composite", "red_cube", "blue_sphere"):
        assert len(list((out / folder).glob("*.png"))) == 2, folder
    import numpy as np
    from PIL import Image

    sphere, together = (torch.from_numpy(np.asarray(Image.open(out / folder / "orbit_000.png"), dtype=np.float32) / 255)
                        for folder in ("blue_sphere", "composite"))
    drawn = sphere.mean(dim=-1) < 0.9  # the sphere's pixels, on the same cameras as the composite
    assert drawn.any() and (together[drawn] - sphere[drawn]).abs().mean() < 0.1
    assert main(["render", str(stack_directory), "--orbit", "2", "--resolution", "24", "--layer", "blue_sphere",
                 "--out", str(tmp_path / "one")]) == 0
    assert len(list((tmp_path / "one").glob("*.png"))) == 2


def test_compose_places_one_assets_layer_on_another(stack_directory, tmp_path):
    out = tmp_path / "moved"
    assert main(["compose", str(stack_directory / "layers" / "red_cube.ply"), str(stack_directory),
                 "--layer", "blue_sphere", "--translate", "0", "0", "0.6", "--out", str(out)]) == 0
    moved = read_layered(out)
    assert moved.names() == ["red_cube", "blue_sphere"] and moved.layers[1].translation == [0.0, 0.0, 0.6]
    composite = read_ply(out / "composite.ply")
    sphere = read_ply(out / "layers" / "blue_sphere.ply")
    placed = composite.means.detach()[len(moved.layers[0].splats):]
    assert torch.allclose(placed, sphere.means.detach() + torch.tensor([0.0, 0.0, 0.6]), atol=1e-6)


def test_the_picture_frames_every_layer_whole(stack):
    """A small top layer has few splats in the composite: the composite's quantile box cuts off its
    top, the frame over the layers' own boxes does not."""
    cube, sphere = (layer.placed() for layer in stack.layers)
    few = torch.arange(len(sphere)) < 60
    small = Splats(**{name: getattr(sphere, name)[few] for name in PARAMETER_NAMES}, background=sphere.background)
    top = float(opaque_box(small)[1, 2])
    for frame, whole in ((frame_of_parts([cube, small]), True), (frame_of(merged([cube, small])), False)):
        assert (frame.centre[2] + frame.size / 2 >= top - 1e-6) == whole


def test_split_assigns_splats_to_their_objects(stack):
    """Colour and position k-means on the composite recovers which object each splat was sampled on."""
    parts = split(stack.composite(), ["a red cube", "a blue sphere"])
    truth_counts = [len(layer.splats) for layer in stack.layers]
    assert [len(part) for part in parts] == pytest.approx(truth_counts, rel=0.02)
    red, blue = (part.base_colours().mean(dim=0) for part in parts)
    assert red[0] > red[2] and blue[2] > blue[0]


def test_decompose_without_completion_writes_layers_that_score_alone(stack_directory, tmp_path, capsys):
    out = tmp_path / "split"
    assert main(["decompose", str(stack_directory / "composite.ply"), "--layer", "a red cube",
                 "--layer", "a blue sphere on top", "--no-complete", "--no-geometry-metrics", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["layers"]["blue_sphere"]["fidelity"] >= 0.8
    assert metrics["composite"]["fidelity"] >= 0.8
    assert (out / "layers.png").stat().st_size > 0
    assert "composite fidelity" in capsys.readouterr().out


def test_generate_with_a_layer_keeps_the_base_and_writes_every_file(prior_directory, tmp_path):
    out = tmp_path / "run"
    assert main(["generate", "a red cube", "--layer", "a blue sphere on top", "--prior", str(prior_directory),
                 "--out", str(out), *FAST_FLAGS]) == 0
    manifest = read_layered(out)
    assert manifest.names() == ["red_cube", "blue_sphere"] and manifest.prompt == "red cube with blue sphere on top"
    base = read_ply(out / "runs" / "red_cube" / "splats.ply")
    moved = manifest.layers[0].placed().means.detach() - base.means.detach()
    assert torch.allclose(moved, moved[0].expand_as(moved), atol=1e-5)  # the base only moved, as a whole
    assert torch.equal(manifest.layers[0].splats.sh_dc, base.sh_dc)  # and its colours are the base run's
    for name in ("composite.ply", "layers/red_cube.ply", "layers/blue_sphere.ply", "metrics.json", "layers.png"):
        assert (out / name).stat().st_size > 0, name
    # a finished run returns its metrics without running again
    assert main(["generate", "a red cube", "--layer", "a blue sphere on top", "--prior", str(prior_directory),
                 "--out", str(out), *FAST_FLAGS]) == 0


def test_decompose_completes_each_layer_from_its_own_splats(prior_directory, stack_directory, tmp_path):
    out = tmp_path / "completed"
    assert main(["decompose", str(stack_directory / "composite.ply"), "--layer", "a red cube", "--layer",
                 "a blue sphere on top", "--prior", str(prior_directory), "--out", str(out), *FAST_FLAGS]) == 0
    layered = read_layered(out)
    assert layered.names() == ["red_cube", "blue_sphere"]
    for name in layered.names():  # one completion run a layer, started from the split (not a random ball)
        stage = json.loads((out / "runs" / name / "metrics.json").read_text())
        assert stage["steps"] == 3 and stage["prompt"] == "red cube with blue sphere on top"
    red, blue = (layered.layer(name).splats.base_colours().mean(dim=0) for name in layered.names())
    assert red[0] > red[2] and blue[2] > blue[0]  # the splats each was split with, not a random ball


def test_a_layer_prunes_the_splats_no_view_needs_however_faint_the_rest(stack, prior_directory, tmp_path):
    """A layer's surface is many faint splats when its sharpening phase starts: its prune keeps
    most of them (the generator's opacity floor would leave the one opaque splat alone), and
    still drops the splats too small for any view to need."""
    from fieldkit.generate.config import GenerateConfig
    from fieldkit.generate.splats import PRUNE_OPACITY
    from fieldkit.guidance.prior import load_prior
    from fieldkit.layers.frames import merged, translated
    from fieldkit.layers.training import LayerGeneration

    cube, sphere = (layer.placed() for layer in stack.layers)
    specks = translated(sphere, torch.zeros(3))
    with torch.no_grad():
        specks.log_scales.fill_(-12.0)  # 6e-6 across: under a pixel of any view
    faint = merged([sphere, specks])
    with torch.no_grad():
        faint.opacity_logits.fill_(torch.logit(torch.tensor(0.1)).item())
        faint.opacity_logits[0] = torch.logit(torch.tensor(0.9))  # a floor would leave this one alone
    stage = LayerGeneration("red cube with blue sphere on top", "a blue sphere", "on top", [cube], tmp_path / "stage",
                            GenerateConfig(steps=3, resolution=16, max_splats=2500),
                            load_prior(str(prior_directory)), start=faint)
    stage.prune(PRUNE_OPACITY)
    assert len(stage.model) >= 0.5 * len(sphere)
    assert (stage.model.log_scales > -12.0).all()  # no speck kept


@pytest.mark.parametrize("argv, message", [
    (["render", "{dir}", "--orbit", "2", "--layer", "hat", "--out", "{tmp}/r"], "no layer named 'hat'"),
    (["compose", "{dir}", "--without", "hat", "--out", "{tmp}/c"], "no layer named 'hat'"),
    (["render", "{tmp}/bad", "--orbit", "2", "--out", "{tmp}/r"], "not valid JSON"),
    (["compose", "{tmp}/points.ply", "{dir}", "--out", "{tmp}/c"], "points.ply"),
    (["generate", "a red cube", "--layer", "a green hat on top", "--out", "{tmp}/g"], "'hat'"),
])
def test_bad_input_is_one_line(stack_directory, tmp_path, capsys, argv, message):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "layers.json").write_text('{"kind": "layered splats", "layers": [')
    (tmp_path / "points.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 1\nproperty float x\n"
                                          b"property float y\nproperty float z\nend_header\n" + bytes(12))
    argv = [part.format(dir=stack_directory, tmp=tmp_path) for part in argv]
    assert main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and len(error.splitlines()) == 1, error
    assert not (tmp_path / "c").exists() and not (tmp_path / "g").exists()


def test_the_viewer_shows_each_layer_in_place_with_a_toggle(stack, stack_directory):
    from fieldkit.viewer.app import Viewer
    from fieldkit.viewer.assets import open_assets

    assets = open_assets(stack_directory)
    assert [asset.name for asset in assets] == ["red_cube", "blue_sphere"]
    assert all(asset.layer_of == stack_directory.name for asset in assets)
    translations = torch.tensor([layer.translation for layer in stack.layers])
    assert torch.allclose(torch.stack([asset.offset for asset in assets]), translations)
    viewer = Viewer(assets, port=0)
    try:  # the layers stay in place, not spread side by side as compared assets are
        assert torch.allclose(torch.stack([asset.offset for asset in viewer.scene.assets]), translations)
        assert all(viewer.native[index].visible for index in range(2))
    finally:
        viewer.close()
    assert [asset.name for asset in open_assets(stack_directory, "blue_sphere")] == ["blue_sphere"]
