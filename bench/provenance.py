"""When and on what code benchmark figures were measured: the `measured` entry every results
JSON carries, {"date": "YYYY-MM-DD", "commit": "<short hash>"}, plus "uncommitted_changes": true
when the checkout's tracked files differed from that commit. Outside a git checkout the commit is
"unknown"."""
from __future__ import annotations

import datetime
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _git(*arguments: str) -> str | None:
    try:
        result = subprocess.run(["git", *arguments], cwd=ROOT, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def measured() -> dict:
    """Today's date and the checked-out commit, for a results JSON."""
    entry = {"date": datetime.date.today().isoformat(), "commit": _git("rev-parse", "--short", "HEAD") or "unknown"}
    # the results files themselves are about to change: only code changes count
    changes = _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)bench/results")
    if changes:
        entry["uncommitted_changes"] = True
    return entry
