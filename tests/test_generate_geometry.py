"""Geometry metrics against the built-in world's ground truth: perfect on the truth itself, the fit
recovers a turned and rescaled copy, and the initial splat ball scores clearly below splats that
follow the true shape (a metric that cannot tell them apart would be useless)."""
from __future__ import annotations

import pytest
import torch

from fieldkit.errors import FieldkitError
from fieldkit.gaussians.initialise import splats_from_points
from fieldkit.generate import geometry
from fieldkit.generate.splats import initial_splats
from fieldkit.scenes.objects import Piece, object_scene

SMALL = 32  # metrics at 32 px keep each fit to a few seconds


def test_prompts_name_their_pieces():
    cube, = geometry.truth_pieces("a small red cube")
    assert (cube.shape, cube.scale) == ("cube", 0.7)
    bottom, top = geometry.truth_pieces("red cube with blue sphere on top")
    assert (bottom.shape, top.shape, bottom.scale > top.scale) == ("cube", "sphere", True)
    for prompt in ("red cube with blue sphere with green cone", "red blue cube", "cube"):
        with pytest.raises(FieldkitError):
            geometry.truth_pieces(prompt)


@pytest.mark.parametrize("prompt", ["a red cube", "green cone with purple torus on top"])
def test_the_truth_against_itself_is_perfect(prompt):
    metrics = geometry.geometry_metrics(geometry.SceneAsset(geometry.truth_pieces(prompt)), prompt, SMALL)
    assert metrics["iou"] == 1.0 and metrics["stray"] == 0.0
    assert metrics["depth_error"] == 0.0 and metrics["colour_distance"] == 0.0
    assert (metrics["scale"], metrics["turn_degrees"]) == (1.0, 0.0)


def test_a_turned_smaller_copy_is_recovered_by_the_fit():
    truth, = geometry.truth_pieces("a blue pyramid")
    copy = geometry.SceneAsset([Piece(truth.shape, truth.colour, 0.7, 30.0)])
    metrics = geometry.geometry_metrics(copy, "a blue pyramid", SMALL)
    assert metrics["scale"] == pytest.approx(1 / 0.7, rel=0.03)
    assert metrics["turn_degrees"] % 90 == pytest.approx(30.0)  # a square pyramid repeats every 90 degrees
    assert metrics["iou"] > 0.95 and metrics["stray"] < 0.003 and metrics["depth_error"] < 0.03


def _splats_of_the_truth(prompt: str, count: int = 1500) -> torch.nn.Module:
    """Splats filling the true shape in its shaded colour: what a well-trained asset looks like."""
    scene = object_scene(geometry.truth_pieces(prompt))
    generator = torch.Generator().manual_seed(0)
    points = torch.rand(40 * count, 3, generator=generator) * 2 - 1
    points = points[scene.distance(points) < 0][:count]
    colours = geometry.render_truth(prompt, SMALL).colour[geometry.render_truth(prompt, SMALL).alpha > 0].mean(0)
    splats = splats_from_points(points, colours.expand(len(points), 3), 0.9, 0, torch.ones(3))
    with torch.no_grad():
        splats.log_scales -= 0.7  # half the neighbour spacing: no halo around the surface
    return splats


def test_the_initial_ball_scores_clearly_below_splats_of_the_right_shape():
    prompt = "a red torus"
    ball = geometry.geometry_metrics(initial_splats(torch.Generator().manual_seed(0)), prompt, SMALL)
    shaped = geometry.geometry_metrics(_splats_of_the_truth(prompt), prompt, SMALL)
    assert shaped["iou"] > 0.8 and shaped["iou"] > ball["iou"] + 0.15
    assert shaped["stray"] < ball["stray"]
    assert shaped["colour_distance"] < 0.15 < ball["colour_distance"]
