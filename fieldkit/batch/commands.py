"""`fieldkit batch JOBS --out DIR`: the command line of the batch runner."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fieldkit.options import number


def cmd_batch(args) -> int:
    from fieldkit.batch.jobs import read_jobs
    from fieldkit.batch.runner import run_batch

    out = Path(args.out).resolve()
    jobs = read_jobs(args.jobs, out, args.parser)  # every job is checked before any runs
    batch = run_batch(jobs, out, args.workers, args.ray_address, args.cpus_per_job, args.gpus_per_job)
    outcomes = [batch.outcomes[job.name] for job in jobs]
    failed = [(job.name, outcome.error) for job, outcome in zip(jobs, outcomes) if outcome.status == "failed"]
    for name, error in failed:
        print(f"fieldkit: job {name} failed: {error} (log: {out / 'logs' / (name + '.log')})", file=sys.stderr)
    print(f"{len(jobs) - len(failed)} of {len(jobs)} jobs done; wrote {out / 'batch.json'}")
    return 1 if failed else 0


def add_verbs(verbs: argparse._SubParsersAction) -> None:
    batch = verbs.add_parser("batch", help="run many train/convert/generate/render jobs, on Ray when installed",
                             description="Runs the jobs of a YAML list or a JSON-lines file, each a fieldkit "
                                         "command line (with an optional name), each in OUT/NAME. A rerun "
                                         "skips the jobs already done and resumes the others.")
    batch.add_argument("jobs", help="jobs file: .yaml (a list of 'command: ...' entries) or .jsonl (one per line)")
    batch.add_argument("--out", required=True, help="batch directory: OUT/NAME per job, OUT/batch.json, OUT/logs")
    batch.add_argument("--workers", type=number(int, 1), default=None,
                       help="jobs at once (default: this machine's cores, or as many as the cluster fits); 1 runs "
                            "them one at a time in this process")
    batch.add_argument("--cpus-per-job", type=number(float, 0, above=True), default=1.0,
                       help="CPU cores each job reserves, and its torch threads (default: 1)")
    batch.add_argument("--gpus-per-job", type=number(float), default=0.0,
                       help="GPUs each job reserves on Ray, fractions allowed (default: 0)")
    batch.add_argument("--ray-address", default=None,
                       help="a running Ray cluster (ray start --head ...; every machine must see the same paths); "
                            "default: a local Ray started for this command")
    batch.set_defaults(run=cmd_batch)
