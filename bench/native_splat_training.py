"""Splat training with the native kernels and with the torch rasterizer: the same test PSNR?

    OMP_NUM_THREADS=2 python bench/native_splat_training.py [--steps 300] [--downscale 2] [--seed 0]
                                                            [--out bench/results/native_splat_training.json]

Trains splats on the default built-in scene twice in one process, once with FIELDKIT_NATIVE=1 and
once with FIELDKIT_NATIVE=0, from the same seed, and reports each run's test PSNR, splat count and
seconds. A short schedule (SCHEDULE: 1000 initial splats, densified every 50 steps) keeps the torch
run affordable while densification, which reads the screen-space mean gradients, still runs.
Densification follows each run's own gradients, so the two runs part ways in their last digits;
their PSNRs should agree within 0.2 dB. The machine may be shared, so its load average is recorded.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import torch
from fieldkit.scenes import DEFAULT_SCENE

from fieldkit import native
from fieldkit.atomic import write_text
from fieldkit.fitting import TrainConfig
from fieldkit.gaussians.trainer import SplatTrainer
from provenance import measured


# centres learn 10x faster than 3DGS's rate (tuned for 30k steps) to settle within a few hundred
SCHEDULE = {"initial_splats": "1000", "means_lr": "1.6e-3", "start": "50", "every": "50", "stop": "250",
            "reset_every": "100000", "sh_degree_every": "75"}


def train(steps: int, downscale: float, seed: int, use_native: bool, out: Path) -> dict:
    os.environ["FIELDKIT_NATIVE"] = "1" if use_native else "0"
    torch.manual_seed(seed)
    config = TrainConfig(steps=steps, downscale=downscale, seed=seed, eval_every=10**9, checkpoint_seconds=1e9)
    trainer = SplatTrainer(DEFAULT_SCENE, out, config, SCHEDULE)
    metrics = trainer.run_training()
    return {"native": use_native, "psnr_test": metrics["psnr_test"], "splats": metrics["splats"],
            "seconds": metrics["seconds"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="training steps of each run")
    parser.add_argument("--downscale", type=float, default=2.0,
                        help="image downscale factor (2: 64 px views of the 128 px scene, affordable for the torch run)")
    parser.add_argument("--seed", type=int, default=0, help="seed of both runs (initial splats, view order)")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "native_splat_training.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not native.available("cpu"):
        sys.exit("the native CPU kernels did not build (see the log line above); nothing to compare")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as scratch:
        runs = [train(args.steps, args.downscale, args.seed, use_native, Path(scratch) / f"native-{use_native}")
                for use_native in (True, False)]
    os.environ.pop("FIELDKIT_NATIVE", None)
    results = {"machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": args.threads},
               "measured": measured(), "load_average": {"before": list(load_before), "after": list(os.getloadavg())},
               "scene": DEFAULT_SCENE, "downscale": args.downscale, "seed": args.seed, "steps": args.steps, "schedule": SCHEDULE,
               "runs": runs,
               "psnr_difference": runs[0]["psnr_test"] - runs[1]["psnr_test"]}
    print(f"{args.steps} steps on {DEFAULT_SCENE}; load average {load_before[0]:.1f} before, "
          f"{results['load_average']['after'][0]:.1f} after")
    print(f"{'path':<8} {'test PSNR':>10} {'splats':>8} {'seconds':>8}")
    for run in runs:
        print(f"{'native' if run['native'] else 'torch':<8} {run['psnr_test']:>10.2f} {run['splats']:>8} "
              f"{run['seconds']:>8.0f}")
    print(f"difference {results['psnr_difference']:+.3f} dB")
    write_text(args.out, json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
