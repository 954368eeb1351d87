"""Shared fixtures: a tiny exported dataset, a private scene cache, and small training settings.

The test machine is a shared 2-core box: torch runs on one thread (with another process
busy on the other core, a second OpenMP thread makes every op wait, measured 20x slower).
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

from fieldkit import scenes  # noqa: E402
from fieldkit.fitting import TrainConfig  # noqa: E402

torch.set_num_threads(int(os.environ.get("FIELDKIT_TEST_THREADS", "1")))

# The parser fuzz tests (tests/test_fuzz_parsers.py) run FIELDKIT_FUZZ_EXAMPLES cases per parser:
# 100 in CI (reproducible: derandomized), 2000 nightly (docs/reliability.md). Each case writes
# its file into tmp_path, hence the function-scoped fixture health check is off.
settings.register_profile(
    "fuzz", max_examples=int(os.environ.get("FIELDKIT_FUZZ_EXAMPLES", "100")), deadline=None,
    derandomize=os.environ.get("FIELDKIT_FUZZ_RANDOM", "") != "1", database=None, print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])

# 48 training views, not 12: with 12 views of 32 px every architecture overfits, and its test
# PSNR stays at ~20 dB, no better than predicting the mean training image (19.3 dB), so a
# fitting test could not tell a working field from a blurry blob. Exporting costs 0.6 s.
TINY = dict(resolution=32, train_views=48, val_views=2, test_views=3)

# Training settings that fit the tiny scene in a few seconds on one core: small grids, fewer
# samples per ray, and learning rates raised for a few hundred steps (the cpu presets are tuned
# for the architectures' default step counts on 128 px images).
FAST_TRAIN = dict(batch_rays=512, samples_per_diagonal=64, occupancy_resolution=32, eval_every=10**9,
                  checkpoint_seconds=1e9)
FAST_FIELDS = {
    "mlp": (300, {"width": 64, "frequencies": 6, "learning_rate": 1e-2}),
    "hashgrid": (200, {"levels": 8, "log2_table_size": 14, "max_resolution": 64, "learning_rate": 6e-2}),
    "tensorf-vm": (200, {"resolution": 48, "components": 8, "learning_rate": 5e-2, "network_learning_rate": 5e-3}),
    "tensorf-cp": (250, {"resolution": 32, "components": 4, "learning_rate": 5e-2, "network_learning_rate": 5e-3}),
    "voxels": (200, {"resolution": 32, "tv_voxels": 4096, "learning_rate": 0.15}),
}
# Small (untrained) configs, for tests that only build, save or render fields.
SMALL_FIELDS = {
    "mlp": {"width": 32, "depth": 2, "frequencies": 4, "colour_width": 16},
    "hashgrid": {"levels": 4, "log2_table_size": 10, "max_resolution": 32, "hidden_width": 16, "colour_width": 16},
    "tensorf-vm": {"resolution": 16, "components": 4, "colour_width": 16},
    "tensorf-cp": {"resolution": 16, "components": 2, "colour_width": 16},
    "voxels": {"resolution": 16, "tv_voxels": 512},
}


@pytest.fixture(scope="session", autouse=True)
def fieldkit_cache(tmp_path_factory):
    """No test writes to ~/.cache: built-in scenes are cached in a directory of this test run."""
    path = tmp_path_factory.mktemp("fieldkit-cache")
    patch = pytest.MonkeyPatch()
    patch.setenv("FIELDKIT_CACHE", str(path))
    yield path
    patch.undo()


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """The default scene, 32 px, 48 train / 2 val / 3 test views, in the Blender layout."""
    return scenes.export(scenes.DEFAULT_SCENE, tmp_path_factory.mktemp("data") / "tabletop", **TINY)


@pytest.fixture(scope="session")
def fast_settings():
    """architecture -> (TrainConfig, field overrides) that train in a few seconds."""
    return {arch: (TrainConfig(steps=steps, **FAST_TRAIN), overrides)
            for arch, (steps, overrides) in FAST_FIELDS.items()}


@pytest.fixture(scope="session")
def small_fields():
    """architecture -> field overrides of a small, quick-to-build config."""
    return SMALL_FIELDS


def pytest_configure(config):
    """FIELDKIT_TEST_DEVICE=cuda runs the verbs' device checks (tests/test_devices.py) with --device cuda:
    asked for where there is no GPU, the run stops rather than passing on the CPU."""
    if os.environ.get("FIELDKIT_TEST_DEVICE", "cpu") == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError("FIELDKIT_TEST_DEVICE=cuda, but this machine's torch sees no CUDA device")


def pytest_collection_modifyitems(config, items):
    """Tests marked gpu skip with a reason where no CUDA device is present, never pass silently."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; none is present on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def prior_directory(tmp_path_factory):
    """A tiny built-in-prior pipeline directory (random weights): the generate tests' prior."""
    from fieldkit.prior.model import PriorArchitecture, PriorComponents

    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("prior")
    PriorComponents.build(PriorArchitecture(resolution=16, channels=(16, 32), text_width=32, text_layers=1)) \
        .save_pretrained(directory)
    return directory
