"""The built-in prior: vocabulary, training data, the training command, the shipped weights'
samples as judged by the evaluator, and the evaluator itself."""
from __future__ import annotations

import json
import os
import signal

import pytest
import torch

from fieldkit.cli import main
from fieldkit.errors import FieldkitError
from fieldkit.guidance.prior import BUILTIN_DIRECTORY, load_prior
from fieldkit.prior.dataset import render_objects
from fieldkit.prior.eval_prompt import evaluate_path
from fieldkit.prior.evaluator import accuracy, load_evaluator, score_images
from fieldkit.prior.sampling import sample_images
from fieldkit.prior.vocabulary import WORDS, normalise

KNOWN = frozenset(WORDS)


def test_prompts_are_normalised_for_case_articles_and_plurals():
    assert normalise("A Red CUBE", KNOWN) == "red cube"
    assert normalise("the blue spheres, with a green cone on top!", KNOWN) == "blue sphere with green cone on top"


def test_unknown_words_name_the_vocabulary_and_the_open_vocabulary_route():
    with pytest.raises(FieldkitError) as error:
        normalise("a red banana", KNOWN)
    message = str(error.value)
    assert "'banana'" in message and "cube" in message and "--prior" in message
    with pytest.raises(FieldkitError, match="empty"):
        normalise("  the ", KNOWN)


def test_training_renders_are_deterministic_and_labelled():
    first, second = render_objects(7, 1, 4), render_objects(7, 1, 4)
    assert torch.equal(first.images, second.images)
    assert len(first) == 72 + 4
    assert not torch.equal(first.images, render_objects(8, 1, 4).images)
    # the background is white, and every image shows an object on it
    assert (first.images[:, :, 0, 0] > 0.99).all()
    assert ((first.images < 0.9).any(dim=1).float().mean(dim=(1, 2)) > 0.02).all()


def test_the_evaluator_recognises_held_out_renders():
    held_out = render_objects(3000, 2, 0)  # a seed that neither the evaluator nor the prior trained on
    scores = accuracy(load_evaluator(), held_out)
    assert scores["shape"] >= 0.97 and scores["colour"] >= 0.97


def test_the_shipped_prior_draws_what_the_prompt_says():
    prior = load_prior(None)
    assert prior.source == str(BUILTIN_DIRECTORY) and prior.vae is None
    evaluator = load_evaluator()
    for prompt in ("a red cube", "a blue sphere", "a green cone"):
        scores = score_images(sample_images(prior, prompt, 6, seed=1), prompt, evaluator)
        assert scores["fidelity"] >= 0.66, (prompt, scores)


def test_prior_train_export_and_sample_commands_run_end_to_end(tmp_path):
    run = tmp_path / "run"
    arguments = ["prior", "train", "--out", str(run), "--steps", "3", "--batch-size", "4", "--views-per-object", "1",
                 "--stack-views", "8", "--checkpoint-seconds", "0"]
    assert main(arguments) == 0
    assert (run / "loss.png").exists() and json.loads((run / "metrics.json").read_text())["steps"] == 3
    assert main(arguments) == 0  # rerunning a finished run only reports it
    assert main(["prior", "export", str(run), "--out", str(tmp_path / "exported")]) == 2  # finished: no checkpoint
    assert main(["prior", "sample", "a small red cube", "--n", "8", "--steps", "2", "--prior", str(run / "prior"),
                 "--out", str(tmp_path / "samples")]) == 0
    assert len(list((tmp_path / "samples").glob("*.png"))) == 8
    prior = load_prior(str(run / "prior"))
    assert prior.closed_vocabulary == KNOWN


def test_an_interrupted_prior_run_exports_and_resumes(tmp_path, monkeypatch):
    from fieldkit.prior import training

    run, calls = tmp_path / "run", {"count": 0}
    original = training.PriorTrainer.train_step

    def interrupt_on_third(self):
        calls["count"] += 1
        if calls["count"] == 3:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: the step finishes, then the run checkpoints and stops
        return original(self)

    monkeypatch.setattr(training.PriorTrainer, "train_step", interrupt_on_third)
    arguments = ["prior", "train", "--out", str(run), "--steps", "4", "--batch-size", "2", "--views-per-object", "1",
                 "--stack-views", "0"]
    assert main(arguments) == 130
    assert not (run / "prior").exists()
    assert main(["prior", "export", str(run), "--out", str(tmp_path / "partial")]) == 0
    assert (tmp_path / "partial" / "unet" / "config.json").exists()
    assert main(arguments) == 0
    assert json.loads((run / "metrics.json").read_text())["steps"] == 4


def test_eval_prompt_scores_images_and_rejects_bad_prompts(tmp_path, capsys):
    from fieldkit.images import write_png
    from fieldkit.cameras import orbit_cameras
    from fieldkit.scenes.objects import CAMERA_DISTANCE, Piece, object_scene, render_views

    from fieldkit.prior.vocabulary import COLOURS

    views = render_views(object_scene([Piece("torus", COLOURS["yellow"], 1.0)]),
                         orbit_cameras(torch.tensor([0.0, 90.0, 200.0]), torch.tensor([10.0, 20.0, 30.0]), CAMERA_DISTANCE, 64))
    for index, image in enumerate(views):
        write_png(tmp_path / f"view_{index}.png", image)
    scores = evaluate_path(tmp_path, "a yellow torus")
    assert scores["fidelity"] == 1.0 and scores["judge"] == 1.0
    assert evaluate_path(tmp_path, "a yellow cube")["fidelity"] == 0.0
    assert main(["eval-prompt", str(tmp_path), "--prompt", "Yellow Tori", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["fidelity"] == 1.0
    assert main(["eval-prompt", str(tmp_path), "--prompt", "a cube"]) == 2
    assert "exactly one shape and one colour" in capsys.readouterr().err
