"""Time-to-PSNR and final test PSNR of every field architecture on the built-in scenes.

    python bench/train.py [--scenes tabletop ...] [--archs hashgrid ...] [--reference-gap] [--out FILE]

Each run uses `fieldkit train`'s defaults (the architecture's passes over the training pixels, or
600 s of optimisation, whichever ends first); test PSNR is probed on 4 test views every
`--eval-every` steps to find when 25, 28 and 30 dB are first reached (optimisation seconds,
evaluation excluded). The machine is shared: each row records the load average before and after
its run, and the process's CPU seconds (user and system) beside the wall-clock ones. Prints a
table and writes JSON. With --reference-gap each run is repeated with the native kernels off
(FIELDKIT_NATIVE=0) for the same number of steps, and the row records both test PSNRs.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
from pathlib import Path

import torch

from fieldkit import fitting, native
from fieldkit.atomic import write_text
from fieldkit.fields import ARCHITECTURES
from fieldkit.scenes import DEFAULT_SCENE, names
from fieldkit.fitting import TrainConfig, first_time_reaching
from fieldkit.train import Trainer
from provenance import measured

TARGETS = (25.0, 28.0, 30.0)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class EvaluationClock:
    """The process's CPU seconds spent in test probes, so that a probe can report the CPU seconds
    of optimisation alone: on a loaded machine they say what the wall-clock seconds of a quiet
    one would be (one thread)."""

    def __init__(self):
        self.seconds = 0.0
        self._evaluate = fitting.evaluate

    def __enter__(self):
        def timed(*args, **kwargs):
            start = cpu_seconds()
            try:
                return self._evaluate(*args, **kwargs)
            finally:
                self.seconds += cpu_seconds() - start

        fitting.evaluate = timed
        return self

    def __exit__(self, *exc):
        fitting.evaluate = self._evaluate


def train(scene: str, architecture: str, config: TrainConfig, history: list, cpu_history: list | None = None
          ) -> dict:
    """Trains to the end; `history` gets (step, seconds, PSNR) of every probe and `cpu_history`
    (step, CPU seconds of optimisation) beside it."""
    cpu_start = cpu_seconds()
    with tempfile.TemporaryDirectory() as out, EvaluationClock() as evaluation:
        def on_eval(step: int, seconds: float, psnr: float) -> None:
            history.append((step, seconds, psnr))
            if cpu_history is not None:
                cpu_history.append((step, cpu_seconds() - cpu_start - evaluation.seconds))

        return Trainer(scene, architecture, out, config).run_training(on_eval=on_eval)


def reference_gap(scene: str, architecture: str, steps: int, eval_every: int) -> dict:
    """The same run on the torch references (FIELDKIT_NATIVE=0) for `steps` steps."""
    load_before = os.getloadavg()
    os.environ["FIELDKIT_NATIVE"] = "0"
    try:
        metrics = train(scene, architecture, TrainConfig(steps=steps, eval_every=eval_every), [])
    finally:
        del os.environ["FIELDKIT_NATIVE"]
    return {"psnr_test": metrics["psnr_test"], "seconds": metrics["seconds"], "steps": metrics["steps"],
            "load_average": {"before": list(load_before), "after": list(os.getloadavg())}}


def run_one(scene: str, architecture: str, eval_every: int, with_reference: bool, max_seconds: float | None,
            steps: int | None = None) -> dict:
    history: list[tuple[int, float, float]] = []
    cpu_history: list[tuple[int, float]] = []
    load_before, cpu_before = os.getloadavg(), cpu_seconds()
    metrics = train(scene, architecture, TrainConfig(steps=steps, eval_every=eval_every, max_seconds=max_seconds),
                    history, cpu_history)
    row = {"scene": scene, "architecture": architecture, "steps": metrics["steps"], "seconds": metrics["seconds"],
           "psnr_test": metrics["psnr_test"], "ssim_test": metrics["ssim_test"], "parameters": metrics["parameters"],
           "history": history, "cpu_history": cpu_history, "threads": torch.get_num_threads(),
           "max_seconds": metrics["settings"]["train_config"]["max_seconds"],
           "cpu_seconds_with_evaluation": cpu_seconds() - cpu_before,
           "load_average": {"before": list(load_before), "after": list(os.getloadavg())}}
    if "occupied_fraction" in metrics:
        row["occupied_fraction"] = metrics["occupied_fraction"]
    row["native_kernels"] = native.available("cpu")
    if with_reference:
        row["torch_reference"] = reference_gap(scene, architecture, metrics["steps"], eval_every)
    row |= {f"seconds_to_{target:g}dB": first_time_reaching(history, target) for target in TARGETS}
    cpu_by_step = dict(cpu_history)
    row |= {f"cpu_seconds_to_{target:g}dB": next((cpu_by_step[step] for step, _, psnr in history if psnr >= target),
                                                 None) for target in TARGETS}
    return row | {"measured": measured()}


def merged_runs(path: Path, rows: list[dict]) -> list[dict]:
    """The rows already in `path`, with the new rows replacing those of the same scene and
    architecture, so that architectures can be benchmarked one at a time (each row keeps its own
    `measured` entry)."""
    fresh = {(row["scene"], row["architecture"]) for row in rows}
    document = json.loads(path.read_text()) if path.exists() else {"runs": []}
    # rows from before threads were recorded per row ran on the file's machine's thread count
    threads = document.get("machine", {}).get("threads")
    earlier = [{"threads": threads} | row if threads else row for row in document["runs"]]
    return [row for row in earlier if (row["scene"], row["architecture"]) not in fresh] + rows


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def print_table(rows: list[dict]) -> None:
    header = f"{'scene':<10} {'architecture':<12} {'steps':>6} {'seconds':>8} {'PSNR':>6} {'SSIM':>6}" + "".join(
        f" {'t@' + format(target, 'g') + 'dB':>8}" for target in TARGETS)
    print(header)
    for row in rows:
        times = "".join(f" {_seconds(row.get(f'seconds_to_{target:g}dB')):>8}" for target in TARGETS)
        reference = row.get("torch_reference")
        print(f"{row['scene']:<10} {row['architecture']:<12} {row['steps']:>6} {row['seconds']:>8.0f} "
              f"{row['psnr_test']:>6.2f} {row['ssim_test']:>6.3f}{times}" +
              (f"  (torch reference: {reference['psnr_test']:.2f} dB)" if reference else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", nargs="+", default=[DEFAULT_SCENE], help=f"any of {names()} or 'all'")
    parser.add_argument("--archs", nargs="+", default=list(ARCHITECTURES))
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--reference-gap", action="store_true",
                        help="repeat each run on the torch references to measure the native kernels' PSNR gap")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="lift (or lower) the default time budget: on a loaded machine the default 600 s cut "
                             "a run short that a quiet machine finishes; the rows record the CPU seconds as well")
    parser.add_argument("--steps", type=int, default=None,
                        help="a fixed step count instead of the defaults' (to compare FIELDKIT_NATIVE=0 and =1 "
                             "runs of equal length in separate --out files)")
    parser.add_argument("--out", default="bench/results/train.json")
    args = parser.parse_args()
    scenes = names() if args.scenes == ["all"] else args.scenes
    rows = []
    for scene in scenes:
        for architecture in args.archs:
            rows.append(run_one(scene, architecture, args.eval_every, args.reference_gap, args.max_seconds,
                                args.steps))
            print_table(rows[-1:])
    print()
    print_table(rows)
    machine = {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
               "torch": torch.__version__}
    previous = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
    # a note on the earlier rows (what code they describe) stays with them
    note = {"note": previous["note"]} if "note" in previous else {}
    write_text(args.out, json.dumps({"machine": machine, "measured": measured(),
                                     "runs": merged_runs(Path(args.out), rows)} | note, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
