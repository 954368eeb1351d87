"""The judge: its held-out elevations stay out of training, it names held-out images it never saw
(including "none of these"), it passes the ground truth of a prompt and fails a wrong prompt, and
it calls a cloud of floaters no shape at all."""
from __future__ import annotations

import pytest
import torch

from fieldkit.generate.geometry import SceneAsset, truth_pieces
from fieldkit.prior.build_judge import named_accuracy
from fieldkit.prior.evaluator import load_evaluator
from fieldkit.prior.judge import judge_accuracy, judge_asset, load_judge
from fieldkit.prior.judge_data import HELD_OUT_ELEVATIONS, JUDGE_SHAPES, _elevations, render_judge_images


@pytest.fixture(scope="module")
def judge():
    return load_judge()


@pytest.fixture(scope="module")
def held_out():
    # a seed that neither training (1000) nor the stored report (2000) used, from the held-out bands only
    return render_judge_images(3000, views_per_object=8, held_out=True)


def _in_held_out_band(elevation: torch.Tensor) -> torch.Tensor:
    return torch.stack([(elevation >= low) & (elevation <= high) for low, high in HELD_OUT_ELEVATIONS]).any(dim=0)


def test_training_and_held_out_elevations_do_not_overlap():
    generator = torch.Generator().manual_seed(0)
    training, held_out = _elevations(4000, False, generator), _elevations(4000, True, generator)
    assert not _in_held_out_band(training).any() and _in_held_out_band(held_out).all()
    assert training.min() < -15 and training.max() > 75  # the whole range but the bands


def test_the_judge_names_held_out_elevations_and_none_of_these(judge, held_out):
    scores = judge_accuracy(judge, held_out)
    assert scores["shape"] > 0.8 and scores["colour"] > 0.85, scores
    assert scores["per_shape"]["none"] > 0.75, scores
    # the evaluator, trained on the prior's own renders, does much worse on the same images
    assert named_accuracy(load_evaluator(), held_out)["shape"] < scores["shape"] - 0.15


def test_the_judge_passes_a_prompts_truth_and_fails_a_wrong_prompt(judge):
    truth = SceneAsset(truth_pieces("a blue torus"))
    assert judge_asset(truth, "a blue torus", judge)["judge"] > 0.8
    assert judge_asset(truth, "a blue cone", judge)["judge"] < 0.1
    assert judge_asset(truth, "a red torus", judge)["judge"] < 0.1


def test_a_cloud_of_floaters_is_no_shape(judge):
    from fieldkit.gaussians.initialise import random_points, splats_from_points

    generator = torch.Generator().manual_seed(0)
    points = random_points(torch.tensor([[-0.6] * 3, [0.6] * 3]), 60, generator)
    floaters = splats_from_points(points, torch.rand(60, 3, generator=generator), 0.95, 0, torch.ones(3))
    floaters.log_scales.data.fill_(float(torch.tensor(0.03).log()))
    scores = judge_asset(floaters, "a red sphere", judge)
    assert scores["judge_none"] > 0.6 and scores["judge"] < 0.1, scores
    assert JUDGE_SHAPES[-1] == "none"


def test_a_missing_or_foreign_judge_file_is_one_error_line(tmp_path):
    from fieldkit.errors import FieldkitError
    from fieldkit.prior.evaluator import EVALUATOR_PATH

    with pytest.raises(FieldkitError, match="build_judge"):
        load_judge(tmp_path / "judge.safetensors")
    with pytest.raises(FieldkitError, match="not a judge"):
        load_judge(EVALUATOR_PATH)
