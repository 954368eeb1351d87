"""Native kernels against their torch references, forward + backward, on this machine's CPU.

    OMP_NUM_THREADS=2 python bench/native_kernels.py [--threads 2] [--out bench/results/kernels.json]

Each op runs both paths in one process on the same inputs: the hash encoding (HashGridConfig's
defaults: 16 levels, 2 features, 2^17 rows per level, resolutions 16 to 512) at 2^14, 2^16 and
2^18 random points, compositing over packed samples at 4096 and 16384 rays of 64 samples,
splat rasterization (projection and tiles) of 25k and 100k splats at 256x256, and
occupancy-grid ray marching with early termination (no gradient: sample places come from the grid)
at 4096 and 16384 rays through a 64^3 grid, 256 steps across its diagonal.
The time is the best of a few repeats after a warm-up; the difference is the largest between the
two paths' outputs and gradients, relative to the reference's largest magnitude. The extension's
first-use build time is measured in a fresh cache. The machine may be shared, so its load average
is recorded before and after.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from fieldkit import native
from fieldkit.atomic import write_text
from fieldkit.cameras import Cameras, look_at
from fieldkit.fields.encodings import HashEncoding
from fieldkit.fields.hashgrid import HashGridConfig
from fieldkit.render.splats import rasterize
from fieldkit.render.volume import accumulate, accumulate_reference
from fieldkit.render.occupancy import OccupancyGrid
from fieldkit.render.volume import (accumulate, accumulate_reference, sample_along_rays, sample_along_rays_reference,
                                    visible_samples, visible_samples_reference)
from provenance import measured

REPEATS = 5
HASH_SIZES = (2**14, 2**16, 2**18)
COMPOSITE_SIZES = ((4096, 64), (16384, 64))
MARCH_SIZES = (4096, 16384)
STEP = 0.01
SPLAT_SIZES = ((25_000, 256), (100_000, 256))  # (splats, image side)
SPLAT_REPEATS = 2


def best_time(run, repeats: int = REPEATS) -> float:
    run()  # warm-up: allocations and caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def relative_difference(native_value: torch.Tensor, reference: torch.Tensor) -> float:
    """The largest difference relative to the reference's largest magnitude."""
    native_value, reference = native_value.detach(), reference.detach()
    return float((native_value - reference).abs().max() / reference.abs().max().clamp(min=1e-12))


def hash_encoding_rows(generator: torch.Generator) -> list[dict]:
    config = HashGridConfig()
    encoding = HashEncoding(config.levels, config.features_per_level, config.log2_table_size,
                            config.base_resolution, config.max_resolution)
    rows = []
    for count in HASH_SIZES:
        points = torch.rand(count, 3, generator=generator)
        cotangent = torch.randn(count, encoding.output_dim, generator=generator)

        def step(forward):
            encoding.table.grad = None
            forward(points).backward(cotangent)
            return encoding.table.grad

        native_grad, reference_grad = step(encoding), step(encoding.reference)
        with torch.no_grad():
            pairs = [(encoding(points), encoding.reference(points)), (native_grad, reference_grad)]
        difference = max(relative_difference(a, b) for a, b in pairs)
        rows.append({"op": "hash encoding", "size": f"{count:,} points", "elements": count,
                     "native_seconds": best_time(lambda: step(encoding)),
                     "reference_seconds": best_time(lambda: step(encoding.reference)),
                     "max_difference": difference})
    return rows


def compositing_rows(generator: torch.Generator) -> list[dict]:
    rows = []
    for ray_count, per_ray in COMPOSITE_SIZES:
        count = ray_count * per_ray
        rays = torch.arange(ray_count).repeat_interleave(per_ray)
        log_density = (torch.randn(count, generator=generator) * 2 + 2).requires_grad_()
        rgb = torch.rand(count, 3, generator=generator).requires_grad_()
        t = torch.rand(count, generator=generator) + rays
        cotangent = torch.randn(ray_count, 5, generator=generator)

        def step(function):
            weights, per_ray_sums = function(log_density, rgb, t, rays, ray_count, STEP)
            grads = torch.autograd.grad(per_ray_sums, [log_density, rgb], cotangent)
            return per_ray_sums, *grads

        difference = max(relative_difference(a, b) for a, b in zip(step(accumulate), step(accumulate_reference)))
        rows.append({"op": "compositing", "size": f"{ray_count:,} rays x {per_ray} samples", "elements": count,
                     "native_seconds": best_time(lambda: step(accumulate)),
                     "reference_seconds": best_time(lambda: step(accumulate_reference)),
                     "max_difference": difference})
    return rows


def splat_scene(count: int, generator: torch.Generator) -> dict:
    """`count` splats in a 2-unit cube, 0.007 to 0.05 units across (1 to 4 px sigma at 256 px), as
    a trained object's splats are."""
    return {"means": (torch.rand(count, 3, generator=generator) - 0.5) * 2,
            "quaternions": torch.randn(count, 4, generator=generator),
            "scales": torch.exp(torch.rand(count, 3, generator=generator) * 2 - 5),
            "opacities": torch.rand(count, generator=generator), "colours": torch.rand(count, 3, generator=generator)}


def splat_rows(generator: torch.Generator) -> list[dict]:
    """Splat rasterization (projection, binning, compositing) forward + backward of rgb and alpha,
    native against the torch path (FIELDKIT_NATIVE=0), one camera. The torch path takes tens of
    seconds a step here, hence fewer repeats."""
    rows = []
    for count, resolution in SPLAT_SIZES:
        scene = splat_scene(count, generator)
        camera = Cameras.create(look_at(torch.tensor([[0.0, -3.5, 1.0]]), torch.zeros(3)), fx=resolution * 1.2,
                                width=resolution, height=resolution)
        cotangent = torch.randn(1, resolution, resolution, 4, generator=generator)

        def step(use_native: bool):
            os.environ["FIELDKIT_NATIVE"] = "1" if use_native else "0"
            inputs = {name: value.clone().requires_grad_() for name, value in scene.items()}
            output = rasterize(**inputs, cameras=camera, background=torch.ones(3))
            images = torch.cat([output.rgb, output.alpha[..., None]], dim=-1)
            images.backward(cotangent)
            return [images.detach(), *(inputs[name].grad for name in scene)]

        try:
            difference = max(relative_difference(a, b) for a, b in zip(step(True), step(False)))
            native_seconds = best_time(lambda: step(True))
            reference_seconds = best_time(lambda: step(False), repeats=SPLAT_REPEATS)
        finally:
            os.environ.pop("FIELDKIT_NATIVE", None)
        rows.append({"op": "splats", "size": f"{count // 1000}k splats, {resolution}x{resolution}", "elements": count,
                     "native_seconds": native_seconds, "reference_seconds": reference_seconds,
                     "max_difference": difference, "reference_repeats": SPLAT_REPEATS})
    return rows


def marching_rows(generator: torch.Generator) -> list[dict]:
    """Rays from a sphere of cameras through a grid whose occupied cells form a ball (about half
    of the grid), marched to the first opaque samples of a ball-shaped density."""
    grid = OccupancyGrid(torch.tensor([[-1.0] * 3, [1.0] * 3]), 64)
    grid.occupied.copy_(grid.cell_centres(torch.arange(64**3)).norm(dim=-1) < 0.98)
    step = float((grid.aabb[1] - grid.aabb[0]).norm()) / 256

    def log_density(points: torch.Tensor) -> torch.Tensor:
        return 6 - 8 * points.norm(dim=-1)

    rows = []
    for ray_count in MARCH_SIZES:
        origins = torch.nn.functional.normalize(torch.randn(ray_count, 3, generator=generator), dim=-1) * 3
        targets = (torch.rand(ray_count, 3, generator=generator) - 0.5) * 1.5
        directions = torch.nn.functional.normalize(targets - origins, dim=-1)
        jitter = torch.rand(ray_count, generator=generator)

        def march(sample, keep):
            return keep(log_density, sample(origins, directions, grid, step, jitter), ray_count, step)

        native_samples = march(sample_along_rays, visible_samples)
        reference_samples = march(sample_along_rays_reference, visible_samples_reference)
        same_shape = native_samples.t.shape == reference_samples.t.shape
        difference = relative_difference(native_samples.t, reference_samples.t) if same_shape else float("nan")
        rows.append({"op": "ray marching", "size": f"{ray_count:,} rays", "elements": ray_count,
                     "native_seconds": best_time(lambda: march(sample_along_rays, visible_samples)),
                     "reference_seconds": best_time(lambda: march(sample_along_rays_reference,
                                                                  visible_samples_reference)),
                     "max_difference": difference, "samples": native_samples.t.numel(),
                     "identical_samples": same_shape and torch.equal(native_samples.rays, reference_samples.rays)
                     and torch.equal(native_samples.t, reference_samples.t)})
    return rows


def build_seconds() -> float:
    """The first use's build, in a fresh cache directory (then loaded into this process)."""
    with tempfile.TemporaryDirectory() as cache:
        os.environ["FIELDKIT_CACHE"] = cache
        start = time.perf_counter()
        if not native.available("cpu"):
            sys.exit("the native CPU kernels did not build (see the log line above); nothing to compare")
        return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "kernels.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    seconds_to_build = build_seconds()
    generator = torch.Generator().manual_seed(0)
    rows = hash_encoding_rows(generator) + compositing_rows(generator) + marching_rows(generator) + \
        splat_rows(generator)
    for row in rows:
        row["speedup"] = row["reference_seconds"] / row["native_seconds"]
    results = {"machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": args.threads},
               "measured": measured(), "load_average": {"before": list(load_before), "after": list(os.getloadavg())},
               "build_seconds": seconds_to_build, "repeats": REPEATS, "ops": rows}
    print(f"build on first use: {seconds_to_build:.1f} s; load average {load_before[0]:.1f} before, "
          f"{results['load_average']['after'][0]:.1f} after")
    print(f"{'op':<14} {'size':<24} {'native (s)':>11} {'torch (s)':>10} {'speedup':>8} {'difference':>11}")
    for row in rows:
        print(f"{row['op']:<14} {row['size']:<24} {row['native_seconds']:>11.4f} {row['reference_seconds']:>10.4f} "
              f"{row['speedup']:>7.1f}x {row['max_difference']:>11.1e}")
    write_text(args.out, json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
