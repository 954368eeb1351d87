"""Prior profiles: the built-in prior generates with today's defaults, a Stable Diffusion prior with
its users' (renders of 256-512 px, CFG 100 for SDS and 7.5 for VSD, its own camera ranges), and a
user's setting wins over either; the built-in evaluator scores the built-in prior's runs only.
The Stable Diffusion prior is a tiny random-weight StableDiffusionPipeline built from configs."""
from __future__ import annotations

import json
import math

import pytest
import torch

from fieldkit.cameras import FIELD_OF_VIEW
from fieldkit.errors import FieldkitError
from fieldkit.generate.api import make_run
from fieldkit.generate.config import GenerateConfig, profile_of
from fieldkit.guidance.prior import load_prior
from test_guidance import pixel_prior, sd_directory  # noqa: F401 (fixtures)

TINY_OUTPUTS = dict(turntable_frames=2, turntable_resolution=16, preview_every=10**6, geometry_metrics=False)


@pytest.fixture(scope="module")
def sd_prior(sd_directory):  # noqa: F811
    return load_prior(str(sd_directory))


@pytest.mark.parametrize("rep,guidance,steps,resolution,scale", [
    ("gaussians", "sds", 300, 64, 20.0), ("field", "vsd", 400, 32, 7.5), ("gaussians", "bsd-auto", 300, 64, None)])
def test_the_builtin_prior_keeps_its_defaults(pixel_prior, rep, guidance, steps, resolution, scale):  # noqa: F811
    config = GenerateConfig(rep=rep, guidance=guidance).resolved(profile_of(pixel_prior))
    assert (config.total_steps, config.render_resolution, config.scale) == (steps, resolution, scale)
    distance, elevation, fov = config.camera_ranges()
    assert distance == (2.3, 2.3) and elevation == (0.0, 40.0)
    assert fov[0] == fov[1] and math.radians(fov[0]) == pytest.approx(FIELD_OF_VIEW, abs=1e-12)
    assert config.background_prune == 0.7


@pytest.mark.parametrize("rep,guidance,resolution,scale", [("gaussians", "sds", 512, 100.0), ("field", "vsd", 256, 7.5)])
def test_a_stable_diffusion_prior_gets_its_users_settings(sd_prior, rep, guidance, resolution, scale):
    config = GenerateConfig(rep=rep, guidance=guidance).resolved(profile_of(sd_prior))
    assert (config.render_resolution, config.scale) == (resolution, scale)
    assert config.camera_ranges() == ((2.0, 2.8), (-10.0, 60.0), (40.0, 60.0))
    assert config.background_prune == 0.0  # its objects may be white


def test_the_users_settings_win_over_the_profile(sd_prior):
    asked = GenerateConfig(guidance_scale=30.0, resolution=96, steps=7, elevation="0,20", camera_distance="2.5", fov="50",
                           background_prune=0.3)
    config = asked.resolved(profile_of(sd_prior))
    assert (config.scale, config.render_resolution, config.total_steps, config.background_prune) == (30.0, 96, 7, 0.3)
    assert config.camera_ranges() == ((2.5, 2.5), (0.0, 20.0), (50.0, 50.0))


@pytest.mark.parametrize("text", ["20,0", "a,b", "1,2,3", "nan"])
def test_a_bad_camera_range_is_one_line(text):
    with pytest.raises(FieldkitError, match="--elevation"):
        GenerateConfig(elevation=text)


def test_random_views_cover_the_profiles_ranges(sd_prior):
    from fieldkit.generate.views import random_views

    config = GenerateConfig().resolved(profile_of(sd_prior))
    generator = torch.Generator().manual_seed(0)
    views = [random_views(4, 8, 0.5, generator, config.camera_ranges()) for _ in range(50)]
    distances = torch.cat([view.cameras.positions.norm(dim=-1) for view in views])
    elevations = torch.cat([view.elevation for view in views])
    focals = torch.stack([view.cameras.fx[0] for view in views])
    assert 2.0 <= distances.min() < 2.1 and 2.7 < distances.max() <= 2.8
    assert -10 <= elevations.min() < -5 and 55 < elevations.max() <= 60
    fovs = 2 * torch.atan(4 / focals).rad2deg()  # 8 px wide
    assert 40 <= fovs.min() < 43 and 57 < fovs.max() <= 60


def test_one_sds_step_at_the_profiles_size_moves_the_splats(sd_prior, tmp_path):
    run = make_run("a red cube", tmp_path, GenerateConfig(**TINY_OUTPUTS), sd_prior)
    assert run.config.render_resolution == 512
    before = run.model.sh_dc.detach().clone()
    figures = run.train_step()
    assert math.isfinite(figures["loss"]) and figures["loss"] > 0
    assert (run.model.sh_dc.detach() - before).abs().max() > 0  # the guidance's gradient reached the splats


def test_the_builtin_evaluator_scores_only_the_builtin_priors_runs(sd_prior, pixel_prior, tmp_path):  # noqa: F811
    settings = dict(steps=2, resolution=16, **TINY_OUTPUTS)
    sd = make_run("a red cube", tmp_path / "sd", GenerateConfig(**settings), sd_prior).generate()
    assert sd["fidelity"] is None and "built-in evaluator" in sd["fidelity_note"]
    assert sd["profile"] == "stable-diffusion" and sd["settings"]["guidance_scale"] == 100.0
    builtin = make_run("a red cube", tmp_path / "builtin", GenerateConfig(**settings), pixel_prior).generate()
    assert 0 <= builtin["fidelity"] <= 1 and "fidelity_note" not in builtin and builtin["profile"] == "builtin"
    recorded = json.loads((tmp_path / "sd" / "metrics.json").read_text())
    assert recorded["settings"]["camera_distance"] == "2.0,2.8" and recorded["settings"]["resolution"] == 16
