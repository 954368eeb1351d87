"""Progressive volume distillation benchmark on the default built-in scene.

    python bench/convert.py [--teachers DIR] [--pairs hashgrid:mlp ...] [--skip-matrix]
                            [--skip-headline] [--out bench/results/convert.json]

(a) The matrix: every teacher architecture (trained with `fieldkit train`'s defaults, kept in
    --teachers so that later runs reuse them) distilled into every other at `fieldkit convert`'s
    defaults: seconds, PSNR against the teacher on held-out synthetic views, and test PSNR
    against the real test images next to the teacher's. Teachers and pairs run as `fieldkit
    batch` jobs (--workers at once), so a stopped matrix resumes where it stopped.
(b) PVD's headline experiment, in one run: the MLP trained from scratch on the photos, against
    the same MLP distilled from the hash-grid teacher, with active learning on and off, and
    distilled from a stronger teacher (--strong-teacher, trained for --strong-teacher-steps, at
    convert's defaults) for when the hash grid scores below the scratch MLP, and from that
    teacher again with a tenth of the time the scratch run needed (--max-seconds: its whole
    schedule in that time), which reaches the scratch run's PSNR if distillation is 10x faster.
    Test PSNR is probed every few steps (probes are not timed), and the seconds each run needs to
    reach the scratch run's final test PSNR are compared.
Prints tables and writes JSON (after every run, so a stopped benchmark keeps what it measured).
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

import torch
from fieldkit.scenes import DEFAULT_SCENE

from fieldkit.atomic import write_text
from fieldkit.batch import Job, run_batch
from fieldkit.data import load_dataset
from fieldkit.distill import ConvertConfig, Converter
from fieldkit.fields import ARCHITECTURES
from fieldkit.fitting import TrainConfig, evaluate, first_time_reaching, probe_views
from fieldkit.train import Trainer
from provenance import measured


def teacher_path(directory: Path, architecture: str, steps: int = 0) -> Path:
    """A teacher trained with `fieldkit train`'s defaults, or for `steps`, on the default scene
    (trained once)."""
    out = directory / (f"{architecture}-{steps}" if steps else architecture)
    Trainer(DEFAULT_SCENE, architecture, out, TrainConfig(steps=steps or None)).run_training()
    return out / "field.safetensors"


def matrix(teachers: Path, runs: Path, pairs: list[tuple[str, str]], workers: int) -> list[dict]:
    """Every pair as a `fieldkit batch` of convert jobs (the teachers first, as a batch of train
    jobs), `workers` at once: a rerun skips what is done."""
    architectures = sorted({teacher for teacher, _ in pairs})
    run_batch([Job(arch, ("train", DEFAULT_SCENE, "--arch", arch, "--out", str(teachers / arch)))
               for arch in architectures], teachers, workers)
    jobs = [Job(f"{teacher}-{student}", ("convert", str(teachers / teacher / "field.safetensors"), "--to", student,
                                        "--out", str(runs / f"{teacher}-{student}"))) for teacher, student in pairs]
    batch = run_batch(jobs, runs, workers)
    rows = []
    for job, (teacher, student) in zip(jobs, pairs):
        outcome = batch.outcomes[job.name]
        if outcome.status != "done":
            print(f"{job.name} failed: {outcome.error}")
            continue
        rows.append({"teacher": teacher, "student": student} | {key: outcome.metrics.get(key) for key in (
            "seconds", "steps", "planned_steps", "psnr_vs_teacher", "psnr_test", "teacher_psnr_test",
            "log_density_rmse", "stages")} | {"workers": workers, "measured": measured()})
    return rows


class PSNRProbe:
    """Test PSNR on a few views every `every` steps, as (step, optimisation seconds, PSNR)."""

    def __init__(self, run, every: int):
        test_set = load_dataset(DEFAULT_SCENE, "test")
        views = probe_views(test_set)
        self.run, self.every, self.history = run, every, []
        self.score = lambda model: evaluate(model, test_set, views)["psnr"]

    def __call__(self, step: int, figures: dict) -> None:
        if step % self.every == 0 or self.run.progress() >= 1:  # a time limit may end it before its steps
            model = self.run.model
            model.eval()
            self.history.append((step, self.run.seconds, self.score(model)))
            model.train()


def headline(teachers: Path, probe_every: int, steps: int, strong_teacher: str, strong_steps: int) -> dict:
    """Scratch MLP against the MLP distilled from the hash grid, with and without active learning,
    and from `strong_teacher` (none: "") trained for `strong_steps` (0: its defaults)."""
    runs = {}
    with tempfile.TemporaryDirectory() as out:
        scratch = Trainer(DEFAULT_SCENE, "mlp", Path(out) / "scratch", TrainConfig(eval_every=probe_every))
        history = []
        metrics = scratch.run_training(on_eval=lambda step, seconds, psnr: history.append((step, seconds, psnr)))
        runs["scratch"] = {"seconds": metrics["seconds"], "steps": metrics["steps"],
                           "psnr_test": metrics["psnr_test"], "history": history}
        tenth = (first_time_reaching(history, metrics["psnr_test"]) or metrics["seconds"]) / 10
        hash_grid = teacher_path(teachers, "hashgrid")
        distillations = [("distilled", hash_grid, ConvertConfig(steps=steps)),
                         ("distilled_no_active", hash_grid, ConvertConfig(steps=steps, active=False))]
        if strong_teacher:
            strong = teacher_path(teachers, strong_teacher, strong_steps)
            distillations += [(f"distilled_from_{strong_teacher}", strong, ConvertConfig()),
                              (f"from_{strong_teacher}_in_a_tenth", strong, ConvertConfig(max_seconds=tenth))]
        for name, teacher, config in distillations:
            converter = Converter(teacher, "mlp", Path(out) / name, config)
            probe = converter.step_callback = PSNRProbe(converter, probe_every)
            metrics = converter.run_conversion()
            runs[name] = {"seconds": metrics["seconds"], "steps": metrics["steps"],
                          "planned_steps": metrics["planned_steps"], "psnr_test": metrics["psnr_test"],
                          "psnr_vs_teacher": metrics["psnr_vs_teacher"],
                          "teacher_psnr_test": metrics["teacher_psnr_test"], "history": probe.history}
    target = runs["scratch"]["psnr_test"]
    for run in runs.values():
        run["seconds_to_scratch_psnr"] = first_time_reaching(run["history"], target)
    scratch_time = runs["scratch"]["seconds_to_scratch_psnr"]
    for name, run in runs.items():
        if name != "scratch":
            reached = run["seconds_to_scratch_psnr"]
            run["speedup"] = scratch_time / reached if reached else None
    return {"target_psnr": target, "runs": runs, "measured": measured()}


def _figure(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_matrix(rows: list[dict]) -> None:
    print(f"{'teacher':<11} {'student':<11} {'seconds':>7} {'vs teacher':>10} {'test':>6} {'teacher':>7} {'gap':>6}")
    for row in rows:
        gap = row["psnr_test"] - row["teacher_psnr_test"]
        print(f"{row['teacher']:<11} {row['student']:<11} {row['seconds']:>7.0f} {row['psnr_vs_teacher']:>10.2f} "
              f"{row['psnr_test']:>6.2f} {row['teacher_psnr_test']:>7.2f} {gap:>+6.2f}")


def print_headline(result: dict) -> None:
    print(f"target: the scratch MLP's final test PSNR, {result['target_psnr']:.2f} dB")
    print(f"{'run':<26} {'steps':>5} {'seconds':>7} {'test PSNR':>9} {'s to target':>11} {'speedup':>7}")
    for name, run in result["runs"].items():
        print(f"{name:<26} {run['steps']:>5} {run['seconds']:>7.0f} {run['psnr_test']:>9.2f} "
              f"{_figure(run['seconds_to_scratch_psnr'], 0):>11} {_figure(run.get('speedup'), 1):>7}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teachers", default=str(Path(tempfile.gettempdir()) / "fieldkit-bench-teachers"),
                        help="directory of the trained teachers (reused when present)")
    parser.add_argument("--pairs", nargs="+", metavar="TEACHER:STUDENT", help="only these pairs of the matrix")
    parser.add_argument("--runs", default=str(Path(tempfile.gettempdir()) / "fieldkit-bench-matrix"),
                        help="directory of the matrix's conversions (a rerun skips the pairs done)")
    parser.add_argument("--workers", type=int, default=1,
                        help="matrix jobs at once (fieldkit batch; more than 1 runs them on a local Ray, each "
                             "on one thread, which changes their timings)")
    parser.add_argument("--skip-matrix", action="store_true")
    parser.add_argument("--skip-headline", action="store_true")
    parser.add_argument("--probe-every", type=int, default=50, help="steps between test probes in (b)")
    parser.add_argument("--headline-steps", type=int, default=4600,
                        help="distillation steps of the hash-grid runs in (b): the same for both, so that active "
                             "learning is compared at equal steps")
    parser.add_argument("--strong-teacher", default="tensorf-vm", choices=[*ARCHITECTURES, ""],
                        help="(b) also distils the MLP from this teacher ('' for none)")
    parser.add_argument("--strong-teacher-steps", type=int, default=4000,
                        help="its training steps (0: fieldkit train's defaults); a student's error adds to its "
                             "teacher's, so the headline's strong teacher is trained past the defaults")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "convert.json"))
    args = parser.parse_args()

    teachers = Path(args.teachers)
    pairs = [tuple(pair.split(":")) for pair in args.pairs] if args.pairs else [
        (teacher, student) for teacher in ARCHITECTURES for student in ARCHITECTURES if teacher != student]
    results = {"machine": {"platform": platform.platform(), "torch": torch.__version__,
                           "threads": torch.get_num_threads()}, "measured": measured(), "scene": DEFAULT_SCENE,
               "matrix": []}

    def save() -> None:
        write_text(args.out, json.dumps(results, indent=2))

    if not args.skip_headline:
        results["headline"] = headline(teachers, args.probe_every, args.headline_steps, args.strong_teacher,
                                       args.strong_teacher_steps)
        print_headline(results["headline"])
        save()
    if not args.skip_matrix:
        results["matrix"] = matrix(teachers, Path(args.runs), pairs, args.workers)
        print_matrix(results["matrix"])
    save()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
