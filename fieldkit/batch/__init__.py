"""`fieldkit batch`: many independent jobs (train, convert, generate, render), on Ray or in this process."""
from fieldkit.batch.jobs import Job, read_jobs
from fieldkit.batch.runner import run_batch

__all__ = ["Job", "read_jobs", "run_batch"]
