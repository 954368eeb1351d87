"""Splat training: the asset file, densification on hand-made splats, and `fieldkit train --arch
gaussians` on the tiny dataset (fit, resume, files)."""
from __future__ import annotations

import json
import math

import pytest
import torch

import fieldkit
from fieldkit.cli import main
from fieldkit.errors import FieldkitError
from fieldkit.gaussians import Splats, load_splats
from fieldkit.gaussians.asset import save_splats_asset
from fieldkit.gaussians.densify import (
    SPLIT_SHRINK,
    DensifyConfig,
    ScreenGradientStats,
    densify_and_prune,
    reset_opacities,
)
from fieldkit.gaussians.model import PARAMETER_NAMES
from fieldkit.gaussians.trainer import SplatTrainer
from fieldkit.fitting import TrainConfig, evaluate


def make_splats(count: int, log_scale: float = math.log(0.001), opacity: float = 0.5) -> Splats:
    generator = torch.Generator().manual_seed(1)
    return Splats(torch.randn(count, 3, generator=generator), torch.full((count, 3), log_scale),
                  torch.tensor([1.0, 0.0, 0.0, 0.0]).repeat(count, 1), torch.full((count,), opacity).logit(),
                  torch.randn(count, 3, generator=generator), torch.randn(count, 3, 3, generator=generator))


def adam_with_row_labels(splats: Splats) -> torch.optim.Adam:
    """Adam whose moments hold each row's index, so a test can see which rows followed which splat."""
    optimizer = torch.optim.Adam([{"params": [getattr(splats, name)], "lr": 1e-3} for name in PARAMETER_NAMES])
    for parameter in splats.parameters():
        labels = torch.arange(len(splats), dtype=torch.float32).reshape(-1, *[1] * (parameter.dim() - 1))
        optimizer.state[parameter] = {"step": torch.tensor(7.0), "exp_avg": labels.expand_as(parameter).clone(),
                                      "exp_avg_sq": labels.expand_as(parameter).clone() + 100}
    return optimizer


def stats_with(average_grads: list[float]) -> ScreenGradientStats:
    stats = ScreenGradientStats(len(average_grads))
    stats.grad_norm_sum, stats.visible_count = torch.tensor(average_grads) * 2, torch.full((len(average_grads),), 2.0)
    return stats


# -- densification -------------------------------------------------------------------------

CONFIG = DensifyConfig(grad_threshold=1e-3, dense_fraction=0.01, min_opacity=0.005, max_scale_fraction=0.1)


def test_gradient_stats_average_visible_views_in_ndc_units():
    stats = ScreenGradientStats(2)
    grad = torch.tensor([[[3e-4, 0.0], [1.0, 1.0]]])  # [C=1, N=2, 2] in pixels
    stats.accumulate(grad, torch.tensor([[[2, 2], [0, 0]]]), width=20, height=10)
    stats.accumulate(grad * 0, torch.tensor([[[2, 2], [0, 0]]]), width=20, height=10)
    # splat 0: |3e-4 * 20 / 2| on one of two visible steps; splat 1 was never visible
    assert stats.average().tolist() == pytest.approx([1.5e-3, 0.0])


def test_a_small_splat_with_a_large_gradient_is_cloned_exactly():
    splats = make_splats(3)  # scales 0.001 <= 0.01 * extent 1: small
    before = {name: getattr(splats, name).detach().clone() for name in PARAMETER_NAMES}
    optimizer = adam_with_row_labels(splats)
    counts = densify_and_prune(splats, optimizer, stats_with([0.0, 2e-3, 5e-4]), CONFIG, extent=1.0, prune_large=True)
    assert counts == {"cloned": 1, "split": 0, "pruned": 0, "splats": 4}
    for name in PARAMETER_NAMES:
        assert torch.equal(getattr(splats, name), torch.cat([before[name], before[name][1:2]])), name


def test_a_splat_cap_grows_only_the_highest_gradients_up_to_the_cap():
    splats = make_splats(4)
    before = splats.means.detach().clone()
    capped = DensifyConfig(**(vars(CONFIG) | {"max_splats": 6}))
    counts = densify_and_prune(splats, adam_with_row_labels(splats), stats_with([3e-3, 1e-3, 5e-3, 4e-3]), capped,
                               extent=1.0, prune_large=True)
    assert counts == {"cloned": 2, "split": 0, "pruned": 0, "splats": 6}
    assert torch.equal(splats.means[4:], before[[2, 3]]), "the two largest gradients are cloned"


def test_a_large_splat_with_a_large_gradient_is_split_inside_itself():
    splats = make_splats(2, log_scale=math.log(0.05))  # 0.05 > 0.01 * extent 1: large
    with torch.no_grad():  # splat 1 is flat along its local z, turned 90 degrees about x: flat along world y
        splats.log_scales[1, 2] = math.log(1e-6)
        splats.quaternions[1] = torch.tensor([math.cos(math.pi / 4), math.sin(math.pi / 4), 0.0, 0.0])
    parent = {name: getattr(splats, name)[1].detach().clone() for name in PARAMETER_NAMES}
    optimizer = adam_with_row_labels(splats)
    counts = densify_and_prune(splats, optimizer, stats_with([0.0, 2e-3]), CONFIG, extent=1.0, prune_large=False,
                               generator=torch.Generator().manual_seed(0))
    assert counts == {"cloned": 0, "split": 1, "pruned": 0, "splats": 3}
    children = slice(1, 3)  # the parent is gone; its two children follow the untouched splat 0
    assert torch.allclose(splats.log_scales[children], (parent["log_scales"].exp() / SPLIT_SHRINK).log().expand(2, 3))
    offsets = splats.means[children] - parent["means"]  # [2, 3]
    assert offsets[:, 1].abs().max() < 1e-5, "children must lie in the parent's flat plane (world x-z)"
    assert offsets[:, [0, 2]].abs().max() > 1e-3 and offsets[:, [0, 2]].abs().max() < 0.05 * 5
    for name in ("quaternions", "opacity_logits", "sh_dc", "sh_rest"):
        assert torch.equal(getattr(splats, name)[children], parent[name].expand_as(getattr(splats, name)[children]))


def test_pruning_removes_exactly_the_transparent_and_the_oversized():
    splats = make_splats(5)
    with torch.no_grad():
        splats.opacity_logits[[1, 3]] = torch.tensor(0.004).logit()
        splats.log_scales[4] = math.log(0.2)  # over 0.1 * extent
    kept_means = splats.means[[0, 2]].detach().clone()
    optimizer = adam_with_row_labels(splats)
    counts = densify_and_prune(splats, optimizer, stats_with([0.0] * 5), CONFIG, extent=1.0, prune_large=True)
    assert counts == {"cloned": 0, "split": 0, "pruned": 3, "splats": 2}
    assert torch.equal(splats.means, kept_means)


def test_optimizer_rows_follow_their_splats():
    splats = make_splats(4)
    with torch.no_grad():
        splats.opacity_logits[2] = torch.tensor(0.001).logit()  # pruned
    optimizer = adam_with_row_labels(splats)
    densify_and_prune(splats, optimizer, stats_with([0.0, 2e-3, 0.0, 2e-3]), CONFIG, extent=1.0, prune_large=True)
    # rows: 0, 1, 3 kept, then clones of 1 and 3 with fresh (zero) moments; row 2 pruned
    assert [group["params"][0] for group in optimizer.param_groups] == [getattr(splats, n) for n in PARAMETER_NAMES]
    for parameter in splats.parameters():
        state = optimizer.state[parameter]
        assert state["exp_avg"].shape == parameter.shape and state["exp_avg_sq"].shape == parameter.shape
        assert state["exp_avg"].reshape(5, -1)[:, 0].tolist() == [0, 1, 3, 0, 0]
        assert state["exp_avg_sq"].reshape(5, -1)[:, 0].tolist() == [100, 101, 103, 0, 0]
        assert state["step"] == 7
    splats.render(_camera()).rgb.sum().backward()
    optimizer.step()  # Adam accepts the reshaped state


def test_opacity_reset_caps_opacity_and_clears_its_moments():
    splats = make_splats(2)
    with torch.no_grad():
        splats.opacity_logits[0] = torch.tensor(0.001).logit()
    optimizer = adam_with_row_labels(splats)
    reset_opacities(splats, optimizer, 0.01)
    assert torch.sigmoid(splats.opacity_logits).tolist() == pytest.approx([0.001, 0.01])
    assert not optimizer.state[splats.opacity_logits]["exp_avg"].any()
    assert optimizer.state[splats.means]["exp_avg"].any()


def _camera():
    from fieldkit.cameras import Cameras

    c2w = torch.eye(4)
    c2w[2, 3] = 5.0
    return Cameras.create(c2w, 20.0, width=16, height=16)


# -- the asset -----------------------------------------------------------------------------

def test_the_asset_round_trips_through_fieldkit_load(tmp_path):
    splats = make_splats(6)
    splats.metrics, splats.dataset = {"psnr_test": 30.5}, {"name": "tabletop"}
    save_splats_asset(splats, tmp_path / "s.safetensors")
    loaded = fieldkit.load(tmp_path / "s.safetensors")
    assert isinstance(loaded, Splats) and loaded.metrics == splats.metrics and loaded.dataset == splats.dataset
    for name in PARAMETER_NAMES:
        assert torch.equal(getattr(loaded, name), getattr(splats, name)), name
    assert loaded.sh_degree == 1


def test_an_asset_missing_a_tensor_is_one_clear_error(tmp_path):
    from fieldkit.asset_file import read_tensors, write_tensors

    save_splats_asset(make_splats(2), tmp_path / "s.safetensors")
    tensors, header = read_tensors(tmp_path / "s.safetensors")
    del tensors["sh_dc"]
    write_tensors(tmp_path / "s.safetensors", tensors, header)
    with pytest.raises(FieldkitError, match="without sh_dc"):
        fieldkit.load(tmp_path / "s.safetensors")


# -- training ------------------------------------------------------------------------------

FAST = TrainConfig(steps=200, eval_every=10**9, checkpoint_seconds=1e9)
# 300 random splats, densified every 50 steps until step 150, SH raised every 50 steps; centres
# learn 10x faster than 3DGS (tuned for 30k steps) to settle within 200
FAST_SPLATS = {"initial_splats": "300", "means_lr": "1.6e-3", "start": "50", "every": "50", "reset_every": "1000", "stop": "150",
               "sh_degree_every": "50"}


@pytest.fixture(scope="module")
def trained(tiny_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("splat-run") / "run"
    trainer = SplatTrainer(tiny_dataset, out, FAST, FAST_SPLATS)
    initial = evaluate(trainer.model, trainer.test_set)["psnr"]
    return out, initial, trainer.run_training()


def test_training_fits_the_tiny_scene(trained):
    # measured on the 32 px tiny scene: 10.6 dB for the random initial splats, 23.8 dB after 200
    # steps (300 -> 588 splats); predicting the mean training image gives 19.3 dB (conftest)
    out, initial, metrics = trained
    assert initial < 13
    assert metrics["psnr_test"] > 22.0
    assert metrics["splats"] != 300, "densification never changed the splat count"
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert not (out / "checkpoint.safetensors").exists()


def test_the_run_writes_a_loadable_asset_and_ply(trained, tiny_dataset):
    out, _, metrics = trained
    asset, ply = fieldkit.load(out / "splats.safetensors"), load_splats(out / "splats.ply")
    assert len(asset) == len(ply) == metrics["splats"] and asset.metrics == metrics
    for name in PARAMETER_NAMES:
        assert torch.equal(getattr(asset, name), getattr(ply, name)), name
    test_set = fieldkit.data.load_dataset(tiny_dataset, "test")
    assert evaluate(asset, test_set)["psnr"] == pytest.approx(metrics["psnr_test"], abs=1e-4)


def test_info_describes_a_splats_asset(trained, capsys):
    out, _, metrics = trained
    assert main(["info", str(out / "splats.safetensors")]) == 0
    text = capsys.readouterr().out
    assert "kind          splats" in text and "gaussians" in text and f"{metrics['psnr_test']:.4g}" in text


def _train_args(dataset, out, steps=40) -> list[str]:
    overrides = {"initial_splats": "100", "start": "5", "every": "10", "stop": "35", "reset_every": "20",
                 "sh_degree_every": "10"}
    return ["train", str(dataset), "--arch", "gaussians", "--out", str(out), "--steps", str(steps),
            "--eval-every", str(10**9), "--checkpoint-seconds", "0",
            *(arg for name, value in overrides.items() for arg in ("--set", f"{name}={value}"))]


def test_an_interrupted_run_resumes_from_its_checkpoint_exactly(tiny_dataset, tmp_path, monkeypatch):
    """Interrupted after 15 of 40 steps (after densifications changed the count): the same command
    does the 25 remaining steps and ends bit-exactly where an uninterrupted run ends."""
    calls = {"count": 0, "interrupt_at": 16}
    original = SplatTrainer.train_step

    def counting_step(trainer):
        calls["count"] += 1
        if calls["count"] == calls["interrupt_at"]:
            raise KeyboardInterrupt
        return original(trainer)

    monkeypatch.setattr(SplatTrainer, "train_step", counting_step)
    assert main(_train_args(tiny_dataset, tmp_path / "run")) == 130
    calls.update(count=0, interrupt_at=None)
    assert main(_train_args(tiny_dataset, tmp_path / "run")) == 0
    assert calls["count"] == 25
    assert main(_train_args(tiny_dataset, tmp_path / "straight")) == 0
    resumed, straight = fieldkit.load(tmp_path / "run" / "splats.safetensors"), \
        fieldkit.load(tmp_path / "straight" / "splats.safetensors")
    assert len(resumed) == len(straight) != 100
    for name in PARAMETER_NAMES:
        assert torch.equal(getattr(resumed, name), getattr(straight, name)), name


def test_another_command_in_a_splat_run_directory_is_refused(tiny_dataset, tmp_path, capsys):
    assert main(_train_args(tiny_dataset, tmp_path / "run", steps=2)) == 0
    assert main(_train_args(tiny_dataset, tmp_path / "run", steps=3)) == 2
    assert "holds another run (different train_config)" in capsys.readouterr().err


def test_an_unknown_splat_setting_is_one_error(tiny_dataset, tmp_path, capsys):
    assert main(["train", str(tiny_dataset), "--arch", "gaussians", "--out", str(tmp_path / "r"),
                 "--set", "initial_splat=3"]) == 2
    assert "gaussians has no setting 'initial_splat'" in capsys.readouterr().err


# -- point cloud initialisation ----------------------------------------------------------------

def dataset_with_point_cloud(tiny_dataset, tmp_path, cloud: bytes | None) -> str:
    """A copy of the tiny dataset whose transforms_train.json names sparse_pc.ply (nerfstudio's key)."""
    import shutil

    copy = tmp_path / "scene"
    shutil.copytree(tiny_dataset, copy)
    transforms = json.loads((copy / "transforms_train.json").read_text())
    (copy / "transforms_train.json").write_text(json.dumps(transforms | {"ply_file_path": "sparse_pc.ply"}))
    if cloud is not None:
        (copy / "sparse_pc.ply").write_bytes(cloud)
    return str(copy)


def point_cloud_ply(points, colours) -> bytes:
    """A binary point cloud as COLMAP exports it: float x y z, uchar red green blue."""
    import numpy as np

    header = ("ply\nformat binary_little_endian 1.0\n" f"element vertex {len(points)}\n"
              "property float x\nproperty float y\nproperty float z\n"
              "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n")
    table = np.zeros(len(points), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"),
                                         ("blue", "u1")])
    for index, name in enumerate("xyz"):
        table[name] = points[:, index]
    for index, name in enumerate(("red", "green", "blue")):
        table[name] = colours[:, index]
    return header.encode() + table.tobytes()


def test_training_starts_from_the_datasets_point_cloud(tiny_dataset, tmp_path):
    generator = torch.Generator().manual_seed(3)
    points = torch.rand(50, 3, generator=generator) - 0.5
    colours = torch.randint(0, 256, (50, 3), generator=generator)
    source = dataset_with_point_cloud(tiny_dataset, tmp_path, point_cloud_ply(points.numpy(), colours.numpy()))
    trainer = SplatTrainer(source, tmp_path / "run", FAST, FAST_SPLATS)
    assert len(trainer.model) == 50  # not initial_splats=300
    torch.testing.assert_close(trainer.model.means.detach(), points)
    rgb = trainer.model.sh_dc.detach() * 0.28209479177387814 + 0.5
    torch.testing.assert_close(rgb, colours.float() / 255, atol=1e-6, rtol=0)


@pytest.mark.parametrize("cloud, message", [
    (None, "does not exist"),
    ((b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\nproperty float z\n"
      b"end_header\n0 0 0\n"), "binary"),
    ((b"ply\nformat binary_little_endian 1.0\nelement vertex 9\nproperty float x\nproperty float y\n"
      b"property float z\nend_header\n") + bytes(12), "truncated"),
])
def test_a_bad_point_cloud_is_one_clear_error(tiny_dataset, tmp_path, capsys, cloud, message):
    source = dataset_with_point_cloud(tiny_dataset, tmp_path, cloud)
    assert main(["train", source, "--arch", "gaussians", "--out", str(tmp_path / "run"), "--steps", "5"]) != 0
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and message in error[0] and error[0].startswith("fieldkit: error:")
    assert not (tmp_path / "run").exists()


def test_opacities_are_never_reset_in_the_second_half_of_a_run():
    """A reset at the last step once left a finished 3000-step run at 13 dB (every splat at 1%)."""
    config = DensifyConfig()  # resets every 3000 steps
    assert not config.resets_at(3000, steps=3000)
    assert config.resets_at(3000, steps=30000) and not config.resets_at(15000, steps=30000)
