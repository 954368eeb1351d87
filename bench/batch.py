"""Wall time of the 36-prompt text-to-3D sweep run through `fieldkit batch`, one job at a time and
with more workers at once, on this machine.

    python bench/batch.py [--workers 1 2] [--steps N] [--out bench/results/batch.json]

Each run starts from empty directories (under a temporary folder), so nothing is skipped; every
prompt is a default `fieldkit generate` job with the built-in prior. Prints a table and writes JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from fieldkit.atomic import write_text
from fieldkit.batch import Job, run_batch
from fieldkit.generate.commands import prompt_directory
from fieldkit.prior.vocabulary import single_prompts
from provenance import measured


def sweep(workers: int, steps: int | None, folder: Path) -> dict:
    extra = ["--steps", str(steps)] if steps else []
    jobs = [Job(prompt_directory(prompt), ("generate", prompt, *extra, "--out", str(folder / prompt_directory(prompt))))
            for prompt in single_prompts()]
    started = time.perf_counter()
    batch = run_batch(jobs, folder, workers)
    seconds = time.perf_counter() - started
    outcomes = [batch.outcomes[job.name] for job in jobs]
    return {"workers": workers, "jobs": len(jobs), "done": sum(o.status == "done" for o in outcomes),
            "wall_seconds": seconds, "job_seconds_mean": sum(o.seconds for o in outcomes) / len(outcomes),
            "fidelity_mean": sum((o.metrics or {}).get("fidelity") or 0.0 for o in outcomes) / len(outcomes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to compare")
    parser.add_argument("--steps", type=int, default=None, help="steps per prompt (default: generate's)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "batch.json"))
    args = parser.parse_args()
    results = {"machine": {"platform": platform.platform(), "torch": torch.__version__, "cpus": os.cpu_count(),
                           "load_average": os.getloadavg()}, "prompts": len(single_prompts()), "runs": []}
    print(f"{'workers':>7} {'done':>5} {'wall s':>8} {'job s':>7} {'speedup':>7}")
    for workers in args.workers:
        with tempfile.TemporaryDirectory() as folder:
            run = sweep(workers, args.steps, Path(folder))
        results["runs"].append(run)
        run["speedup"] = results["runs"][0]["wall_seconds"] / run["wall_seconds"]
        print(f"{workers:>7} {run['done']:>5} {run['wall_seconds']:>8.0f} {run['job_seconds_mean']:>7.1f} "
              f"{run['speedup']:>7.2f}")
    results["measured"] = measured()
    write_text(args.out, json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
