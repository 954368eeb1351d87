"""A batch's jobs: read from a YAML or JSON-lines file, each a `fieldkit` command line with a name,
checked against the real command-line parser before anything runs."""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from fieldkit.errors import FieldkitError

VERBS = ("train", "convert", "generate", "render")
"""What a batch runs: the verbs that write one output directory each."""


@dataclass(frozen=True)
class Job:
    name: str
    """the job's output directory under the batch's, and its key in batch.json"""
    argv: tuple[str, ...]
    """the command line after `fieldkit`, with `--out` set to the job's directory"""

    @property
    def verb(self) -> str:
        return self.argv[0]


def _entries(path: Path) -> list:
    """The file's job entries: a YAML list, or one JSON value per non-empty line."""
    try:
        text = path.read_text()
    except OSError as error:
        raise FieldkitError(f"cannot read the jobs file {path}: {error.strerror}") from None
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            entries = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise FieldkitError(f"{path} is not valid YAML: {str(error).splitlines()[0]}") from None
        if not isinstance(entries, list):
            raise FieldkitError(f"{path} must hold a list of jobs (- command: ...)")
        return entries
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip() and not line.lstrip().startswith("#"):
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise FieldkitError(f"{path}:{number} is not a JSON value: {error.msg}") from None
    return entries


def _command(entry, where: str) -> tuple[str | None, list[str]]:
    """(name or None, argv) of one entry: a command line, a list of arguments, or a mapping with
    `command` (either form) and an optional `name`."""
    name = None
    if isinstance(entry, dict):
        unknown = sorted(set(entry) - {"name", "command"})
        if unknown or "command" not in entry:
            raise FieldkitError(f"{where}: a job is a mapping with 'command' and an optional 'name'"
                                + (f", not {', '.join(unknown)}" if unknown else ""))
        name, entry = entry.get("name"), entry["command"]
        if name is not None and not isinstance(name, str):
            raise FieldkitError(f"{where}: a job's name must be text")
    if isinstance(entry, str):
        try:
            return name, shlex.split(entry)
        except ValueError as error:
            raise FieldkitError(f"{where}: cannot split the command line: {error}") from None
    if isinstance(entry, list) and all(isinstance(arg, (str, int, float)) for arg in entry):
        return name, [str(arg) for arg in entry]
    raise FieldkitError(f"{where}: a job is a command line, a list of arguments or a mapping with 'command'")


def read_jobs(path: str | Path, out: Path, parser: argparse.ArgumentParser) -> list[Job]:
    """Every job of the file, named, with `{out}` (the batch directory) filled in and `--out` set;
    a job that `parser` (fieldkit's command line) would refuse is refused here, before any job runs."""
    path, jobs = Path(path), []
    for index, entry in enumerate(_entries(path)):
        where = f"{path} job {index + 1}"
        name, argv = _command(entry, where)
        argv = [arg.replace("{out}", str(out)) for arg in argv]
        if not argv or argv[0] not in VERBS:
            raise FieldkitError(f"{where}: the command must start with one of {', '.join(VERBS)}, "
                                f"not {argv[0] if argv else 'nothing'!r}")
        if any(arg == "--out" or arg.startswith("--out=") for arg in argv):
            raise FieldkitError(f"{where}: leave --out out: a job writes into the batch's --out, under its name")
        name = name or f"{index:03d}-{argv[0]}"
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
            raise FieldkitError(f"{where}: the name {name!r} must be letters, digits, '.', '_' or '-'")
        job = Job(name, (*argv, "--out", str(out / name)))
        said = io.StringIO()
        try:
            with contextlib.redirect_stderr(said):
                parser.parse_args(list(job.argv))
        except SystemExit:  # the parser's one line, said for this job
            reason = said.getvalue().strip().splitlines()[-1].split(": error: ", 1)[-1] if said.getvalue() else "--help"
            raise FieldkitError(f"{where} ({name}): {reason}") from None
        jobs.append(job)
    names = [job.name for job in jobs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise FieldkitError(f"{path}: job names must differ; repeated: {', '.join(repeated)}")
    if not jobs:
        raise FieldkitError(f"{path} holds no job")
    return jobs
