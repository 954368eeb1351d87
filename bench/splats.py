"""Gaussian splats benchmark on the default built-in scene, on this machine's CPU.

    python bench/splats.py [--teacher FIELD] [--skip-raster] [--skip-train] [--skip-convert]
                           [--out bench/results/splats.json]

(a) Rasterizer forward + backward time at 10k and 100k splats, 128 and 256 px, against a
    baseline in the same run: 3DGS's 16 px tiles composited in torch and differentiated by
    autograd, on the same splats and camera, with the images checked to agree.
(b) `fieldkit train --arch gaussians` at its defaults: test PSNR, seconds, and the seconds to
    first reach 27 dB (probed on four test views every 250 steps, probes not timed).
(c) `fieldkit convert` at its defaults: the hash-grid teacher (trained with `fieldkit train`'s
    defaults unless --teacher names one) to splats, the splats of (b) to a hash grid, and the
    splats that the teacher became back to a hash grid, each with test PSNR next to its teacher's.
Prints tables and writes JSON (after every part, so a stopped benchmark keeps what it measured).
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from fieldkit.scenes import DEFAULT_SCENE
from torch.utils.checkpoint import checkpoint

from fieldkit.atomic import write_text
from fieldkit.cameras import Cameras
from fieldkit.data import load_dataset
from fieldkit.distill import ConvertConfig, make_converter
from fieldkit.gaussians.trainer import SplatTrainer
from fieldkit.render import splat_composite
from fieldkit.render.splats import covariances, project, rasterize
from fieldkit.fitting import TrainConfig, first_time_reaching
from fieldkit.train import Trainer
from provenance import measured

TARGET_PSNR = 27.0
TILE = 16
TILE_CHUNK = 2**18  # pixel-splat slots per baseline chunk (its fastest on CPU)
REPEATS = 3


# -- (a) rasterizer -------------------------------------------------------------------------

def random_scene(count: int, aabb: torch.Tensor, generator: torch.Generator) -> dict:
    """Splats spread through the scene box with the sizes and opacities trained splats have."""
    return {"means": aabb[0] + torch.rand(count, 3, generator=generator) * (aabb[1] - aabb[0]),
            "quaternions": torch.randn(count, 4, generator=generator),
            "scales": torch.exp(torch.empty(count, 3).uniform_(math.log(0.004), math.log(0.03), generator=generator)),
            "opacities": torch.rand(count, generator=generator) * 0.95 + 0.05,
            "colours": torch.rand(count, 3, generator=generator)}


def tile_baseline(scene: dict, cameras: Cameras, background: torch.Tensor) -> torch.Tensor:
    """rgb [H, W, 3] by 3DGS's tiles: every pixel of a tile visits every splat touching the tile."""
    width, height = int(cameras.width[0]), int(cameras.height[0])
    tiles_x, tiles_y = -(-width // TILE), -(-height // TILE)
    projection = project(scene["means"], covariances(scene["quaternions"], scene["scales"]), cameras)
    means2d, conics = projection.means2d[0], projection.conics[0]
    with torch.no_grad():
        radii = projection.radii[0].float()
        low = ((means2d - radii) / TILE).floor().clamp(min=0)
        high = ((means2d + radii) / TILE).ceil().clamp(min=0)
        high = torch.minimum(high, torch.tensor([tiles_x, tiles_y]).float())
        extent = torch.where((radii > 0).all(-1, keepdim=True), (high - low).clamp(min=0), 0).long()
        counts = extent[:, 0] * extent[:, 1]
        splats = torch.repeat_interleave(torch.arange(len(counts)), counts)
        rank = torch.arange(len(splats)) - (torch.cumsum(counts, 0) - counts)[splats]
        tiles = (low[splats, 1].long() + rank // extent[splats, 0]) * tiles_x + low[splats, 0].long() \
            + rank % extent[splats, 0]
        by_depth = torch.argsort(projection.depths[0][splats], stable=True)
        order = by_depth[torch.argsort(tiles[by_depth], stable=True)]
        tiles, splats = tiles[order], splats[order]
        used, per_tile = torch.unique_consecutive(tiles, return_counts=True)
        starts = torch.cumsum(per_tile, 0) - per_tile
    offsets = torch.arange(TILE) + 0.5
    rows, columns = torch.meshgrid(offsets, offsets, indexing="ij")
    within = torch.stack([columns.reshape(-1), rows.reshape(-1)], dim=-1)  # [P, 2]

    def composite(pixels, present, means, conic, opacity, colour):
        dx, dy = (pixels[:, :, None, :] - means[:, None, :, :]).unbind(-1)
        a, b, c = (value[:, None, :] for value in conic.unbind(-1))
        sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
        alpha = (opacity[:, None, :] * torch.exp(-sigma)).clamp(max=splat_composite.ALPHA_MAX)
        alpha = torch.where(present[:, None, :] & (sigma >= 0) & (alpha >= splat_composite.ALPHA_MIN), alpha, 0.0)
        after = torch.cumprod(1 - alpha, dim=-1)
        before = F.pad(after[..., :-1], (1, 0), value=1.0)
        weights = torch.where(after >= math.exp(splat_composite.LOG_EPSILON), alpha * before, 0.0)
        return torch.cat([weights @ colour, weights.sum(-1, keepdim=True)], dim=-1)

    # tiles of similar length share a chunk, padded to its longest tile
    by_length = torch.argsort(per_tile, descending=True)
    used, per_tile, starts = used[by_length], per_tile[by_length], starts[by_length]
    image = torch.zeros(tiles_x * tiles_y, TILE * TILE, 4)
    parts, begin = [], 0
    while begin < len(used):
        longest = int(per_tile[begin])
        chunk = slice(begin, begin + max(1, TILE_CHUNK // (TILE * TILE * longest)))
        slots = torch.arange(longest)[None]
        present = slots < per_tile[chunk, None]
        members = splats[starts[chunk, None] + torch.minimum(slots, per_tile[chunk, None] - 1)]
        origin = torch.stack([used[chunk] % tiles_x, used[chunk] // tiles_x], dim=-1) * TILE
        parts.append(checkpoint(composite, (origin[:, None] + within[None]).float(), present, means2d[members],
                                conics[members], scene["opacities"][members], scene["colours"][members],
                                use_reentrant=False))
        begin = chunk.stop
    image = image.index_copy(0, used, torch.cat(parts))
    image = image.view(tiles_y, tiles_x, TILE, TILE, 4).permute(0, 2, 1, 3, 4).reshape(tiles_y * TILE, tiles_x * TILE, 4)
    image = image[:height, :width]
    return image[..., :3] + (1 - image[..., 3:]) * background


def timed(render) -> tuple[float, torch.Tensor]:
    """Best of REPEATS forward + backward times, and the image."""
    best = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter()
        image = render()
        image.sum().backward()
        best = min(best, time.perf_counter() - started)
    return best, image.detach()


def rasterizer_rows() -> list[dict]:
    test_set = load_dataset(DEFAULT_SCENE, "test")
    rows = []
    for count in (10_000, 100_000):
        for size in (128, 256):
            camera = test_set.cameras[0]
            scale = size / int(camera.width[0])
            camera = Cameras.create(camera.c2w, fx=float(camera.fx[0]) * scale, fy=float(camera.fy[0]) * scale,
                                    cx=float(camera.cx[0]) * scale, cy=float(camera.cy[0]) * scale,
                                    width=size, height=size)
            scene = random_scene(count, test_set.aabb, torch.Generator().manual_seed(count + size))
            scene = {name: value.requires_grad_() for name, value in scene.items()}
            background = test_set.background
            fieldkit_seconds, image = timed(
                lambda scene=scene, camera=camera, background=background: rasterize(
                    **scene, cameras=camera, background=background).rgb[0])
            baseline_seconds, reference = timed(
                lambda scene=scene, camera=camera, background=background: tile_baseline(scene, camera, background))
            rows.append({"splats": count, "pixels": size, "seconds": fieldkit_seconds,
                         "baseline_seconds": baseline_seconds, "speedup": baseline_seconds / fieldkit_seconds,
                         "max_difference": float((image - reference).abs().max()), "measured": measured()})
            print_raster(rows[-1:])
    return rows


def print_raster(rows: list[dict]) -> None:
    for row in rows:
        print(f"raster {row['splats']:>7,} splats {row['pixels']:>4} px: {row['seconds']:7.3f} s "
              f"(tiles baseline {row['baseline_seconds']:7.3f} s, {row['speedup']:4.1f}x; "
              f"max |difference| {row['max_difference']:.1e})")


# -- (b) training and (c) conversion ---------------------------------------------------------

def train_splats(out: Path) -> dict:
    trainer = SplatTrainer(DEFAULT_SCENE, out, TrainConfig(eval_every=250))
    history = []
    metrics = trainer.run_training(on_eval=lambda step, seconds, psnr: history.append((step, seconds, psnr)))
    return {key: metrics[key] for key in ("psnr_test", "ssim_test", "seconds", "steps", "splats")} | {
        "seconds_to_27db": first_time_reaching(history, TARGET_PSNR), "probes": history, "measured": measured()}


def convert(teacher: Path, architecture: str, out: Path) -> dict:
    """One conversion at convert's defaults; a teacher under the runs' directory is recorded by its
    path there (its parent directory and file name), since the directory is machine-local."""
    metrics = make_converter(teacher, architecture, out, ConvertConfig()).run_conversion()
    shown = f"{teacher.parent.name}/{teacher.name}" if teacher.parent.parent == out.parent else str(teacher)
    return {"teacher": shown, "architecture": architecture} | {
        key: metrics.get(key) for key in ("psnr_test", "teacher_psnr_test", "psnr_vs_teacher", "seconds",
                                          "render_seconds", "steps", "teacher_architecture")} | {"measured": measured()}


def print_run(name: str, row: dict) -> None:
    teacher = f", teacher {row['teacher_psnr_test']:.2f} dB" if row.get("teacher_psnr_test") else ""
    reach = f", 27 dB after {row['seconds_to_27db']:.0f} s" if row.get("seconds_to_27db") else ""
    print(f"{name}: test {row['psnr_test']:.2f} dB{teacher} in {row['seconds']:.0f} s "
          f"({row['steps']} steps{reach})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", help="hash-grid field asset to convert (default: train one at defaults)")
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "fieldkit-bench-splats"),
                        help="directory of the runs (reused when present)")
    parser.add_argument("--skip-raster", action="store_true")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--skip-convert", action="store_true")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "splats.json"))
    args = parser.parse_args()
    work = Path(args.work)
    results = {"machine": {"platform": platform.platform(), "torch": torch.__version__,
                           "threads": torch.get_num_threads()}, "measured": measured(), "scene": DEFAULT_SCENE}

    def save() -> None:
        write_text(args.out, json.dumps(results, indent=2))

    if not args.skip_raster:
        results["rasterizer"] = rasterizer_rows()
        save()
    if not args.skip_train:
        results["train"] = train_splats(work / "train")
        print_run("train --arch gaussians", results["train"])
        save()
    if not args.skip_convert:
        teacher = Path(args.teacher) if args.teacher else work / "hashgrid" / "field.safetensors"
        if not args.teacher:
            Trainer(DEFAULT_SCENE, "hashgrid", teacher.parent, TrainConfig()).run_training()
        results["field_to_splats"] = convert(teacher, "gaussians", work / "hashgrid-to-gaussians")
        print_run("convert hashgrid -> gaussians", results["field_to_splats"])
        save()
        results["splats_to_field"] = convert(work / "train" / "splats.safetensors", "hashgrid",
                                             work / "gaussians-to-hashgrid")
        print_run("convert gaussians -> hashgrid", results["splats_to_field"])
        save()
        # the splats that the field became, back to a field: a teacher within a field's reach
        results["round_trip"] = convert(work / "hashgrid-to-gaussians" / "splats.safetensors", "hashgrid",
                                        work / "round-trip")
        print_run("convert (hash grid -> gaussians) -> hashgrid", results["round_trip"])
    save()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
