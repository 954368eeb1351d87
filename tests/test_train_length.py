"""How long `fieldkit train` runs by default: the architecture's passes over the training pixels,
or TRAIN_SECONDS of optimisation, whichever ends first."""
from __future__ import annotations

import pytest

from fieldkit.defaults import TRAIN_SECONDS, resolve_train
from fieldkit.errors import FieldkitError
from fieldkit.fitting import TrainConfig
from fieldkit.train import Trainer

TABLETOP_PIXELS = 100 * 128 * 128
CAROUSEL_PIXELS = 100 * 200 * 200


def test_passes_give_tabletop_its_fitted_steps_and_a_larger_scene_more():
    tabletop = resolve_train(TrainConfig(), "hashgrid", TABLETOP_PIXELS)
    carousel = resolve_train(TrainConfig(), "hashgrid", CAROUSEL_PIXELS)
    assert (tabletop.steps, carousel.steps) == (600, 1465)
    assert tabletop.max_seconds == carousel.max_seconds == TRAIN_SECONDS
    assert resolve_train(TrainConfig(batch_rays=2048), "hashgrid", TABLETOP_PIXELS).steps == 1200
    assert resolve_train(TrainConfig(), "mlp", TABLETOP_PIXELS).steps == 1800


def test_given_steps_are_exact_and_untimed():
    config = resolve_train(TrainConfig(steps=50), "hashgrid", CAROUSEL_PIXELS)
    assert (config.steps, config.max_seconds) == (50, None)
    assert resolve_train(TrainConfig(steps=50, max_seconds=5), "hashgrid", CAROUSEL_PIXELS).max_seconds == 5


def test_splats_refuse_a_time_budget():
    assert resolve_train(TrainConfig(), "gaussians").steps == 3000
    with pytest.raises(FieldkitError, match="--max-seconds"):
        resolve_train(TrainConfig(max_seconds=60), "gaussians")


def test_a_time_budget_ends_the_run_before_its_passes(tiny_dataset, fast_settings, tmp_path):
    config, overrides = fast_settings["hashgrid"]
    trainer = Trainer(str(tiny_dataset), "hashgrid", tmp_path / "run",
                      TrainConfig(**{**config.__dict__, "steps": None, "max_seconds": 1e-6}), overrides)
    assert trainer.steps == resolve_train(TrainConfig(batch_rays=config.batch_rays), "hashgrid",
                                          48 * 32 * 32).steps > 1
    metrics = trainer.run_training()
    assert metrics["steps"] == 1 and metrics["settings"]["train_config"]["max_seconds"] == 1e-6
