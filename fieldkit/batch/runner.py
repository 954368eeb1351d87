"""Runs a batch's jobs: as Ray tasks (a local Ray started for the command, or a cluster), or one at
a time in this process. Each job is its verb's own command with its own run directory, so a job
resumes as that verb does; batch.json records what each job ended as, so a rerun of a killed batch
runs only what did not finish.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fieldkit.atomic import output_directory, write_text
from fieldkit.batch.jobs import Job
from fieldkit.errors import FieldkitError
from fieldkit.progress import progress_bar

SUMMARY_NAME = "batch.json"
LOGS = "logs"
EXIT_INTERRUPTED = 130


@dataclass
class Outcome:
    """What one job ended as: done or failed (with its error line), its seconds and its metrics."""

    command: list[str]
    status: str
    seconds: float = 0.0
    error: str | None = None
    metrics: dict | None = field(default=None)


def run_job(job: Job, log_path: str, cwd: str, threads: int) -> Outcome:
    """Runs `job` as its own `fieldkit` process, its output in `log_path`: a job's state never leaks
    into the next, and a Ray worker runs it exactly as this machine would."""
    environment = os.environ | {"OMP_NUM_THREADS": str(threads)}
    started = time.perf_counter()
    with open(log_path, "w") as log:
        code = subprocess.run([sys.executable, "-m", "fieldkit.cli", *job.argv], cwd=cwd, env=environment,
                              stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - started
    if code in (EXIT_INTERRUPTED, -signal.SIGINT):
        raise KeyboardInterrupt
    if code != 0:
        lines = [line for line in Path(log_path).read_text().splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("fieldkit: error")] or lines[-1:] or ["no output"]
        return Outcome(list(job.argv), "failed", seconds, errors[-1])
    metrics_path = Path(cwd, job.argv[job.argv.index("--out") + 1]) / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else None
    return Outcome(list(job.argv), "done", seconds, metrics=metrics)


class Batch:
    """The jobs, their summary file, and the rule that a job done with the same command is not rerun."""

    def __init__(self, jobs: list[Job], out: Path):
        self.jobs, self.out = jobs, output_directory(out)
        output_directory(self.out / LOGS)
        self.outcomes: dict[str, Outcome] = {}
        summary = self.out / SUMMARY_NAME
        if summary.is_file():
            try:
                recorded = json.loads(summary.read_text())["jobs"]
                self.outcomes = {name: Outcome(**outcome) for name, outcome in recorded.items()}
            except (json.JSONDecodeError, KeyError, TypeError):
                raise FieldkitError(f"{summary} is corrupt; remove it to run every job again") from None

    def pending(self) -> list[Job]:
        def done(job: Job) -> bool:
            outcome = self.outcomes.get(job.name)
            return outcome is not None and outcome.status == "done" and outcome.command == list(job.argv)

        return [job for job in self.jobs if not done(job)]

    def record(self, job: Job, outcome: Outcome, backend: str) -> None:
        self.outcomes[job.name] = outcome
        names = [job.name for job in self.jobs]
        ordered = {name: asdict(self.outcomes[name]) for name in names if name in self.outcomes}
        counts = {status: sum(outcome["status"] == status for outcome in ordered.values()) for status in ("done", "failed")}
        write_text(self.out / SUMMARY_NAME, json.dumps({"backend": backend, "jobs_total": len(names)} | counts
                                                       | {"jobs": ordered}, indent=2))

    def log_path(self, job: Job) -> str:
        return str((self.out / LOGS / f"{job.name}.log").resolve())


def run_in_process(batch: Batch, jobs: list[Job]) -> None:
    with progress_bar("batch", len(jobs)) as advance:
        for job in jobs:
            outcome = run_job(job, batch.log_path(job), os.getcwd(), threads=_threads())
            batch.record(job, outcome, "in-process")
            advance(**_counts(batch, jobs, running=0))


def run_on_ray(batch: Batch, jobs: list[Job], workers: int | None, address: str | None, cpus_per_job: float,
               gpus_per_job: float) -> None:
    """Each job a Ray task with its resources, at most `workers` at once (None: as many as fit)."""
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        options = {"address": address} if address else {"num_cpus": workers or os.cpu_count()}
        ray.init(**options, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    task = ray.remote(run_job).options(num_cpus=cpus_per_job, num_gpus=gpus_per_job)
    waiting, running = list(jobs), {}
    try:
        with progress_bar("batch", len(jobs)) as advance:
            while waiting or running:
                while waiting and (workers is None or len(running) < workers):
                    job = waiting.pop(0)
                    running[task.remote(job, batch.log_path(job), os.getcwd(), max(int(cpus_per_job), 1))] = job
                ready, _ = ray.wait(list(running), num_returns=1)
                job = running.pop(ready[0])
                try:
                    outcome = ray.get(ready[0])
                except ray.exceptions.RayError as error:  # the worker died: the job failed, the batch goes on
                    outcome = Outcome(list(job.argv), "failed", error=str(error).splitlines()[0])
                batch.record(job, outcome, "ray")
                advance(**_counts(batch, jobs, running=len(running)))
    finally:
        if started_here:
            ray.shutdown()


def _counts(batch: Batch, jobs: list[Job], running: int) -> dict:
    outcomes = [batch.outcomes.get(job.name) for job in jobs]
    return {"done": sum(o is not None and o.status == "done" for o in outcomes),
            "failed": sum(o is not None and o.status == "failed" for o in outcomes), "running": running}


def _threads() -> int:
    import torch

    return torch.get_num_threads()  # a job alone gets this process's threads


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def run_batch(jobs: list[Job], out: str | Path, workers: int | None = None, address: str | None = None,
              cpus_per_job: float = 1.0, gpus_per_job: float = 0.0) -> Batch:
    """Runs every job not yet done; Ray when it is installed and more than one job may run at once
    (or a cluster is named), else one job at a time in this process."""
    batch = Batch(jobs, Path(out).resolve())
    pending = batch.pending()
    skipped = len(jobs) - len(pending)
    if skipped:
        print(f"fieldkit: {skipped} of {len(jobs)} jobs already done in {batch.out}", file=sys.stderr)
    wants_ray = address is not None or workers is None or workers > 1
    if pending and wants_ray and not ray_available():
        if address is not None:
            raise FieldkitError('--ray-address needs Ray: pip install "fieldkit[batch]"')
        print('fieldkit: Ray is not installed (pip install "fieldkit[batch]"): running the jobs one at a time '
              "in this process", file=sys.stderr)
        wants_ray = False
    if pending:
        if wants_ray:
            run_on_ray(batch, pending, workers, address, cpus_per_job, gpus_per_job)
        else:
            run_in_process(batch, pending)
    return batch
