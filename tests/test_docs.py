"""The documentation stays true: docs/benchmarks.md and the README's figures match
bench/results/*.json, the README keeps what CI and users rely on, every `fieldkit` command shown
in the README and docs/ parses, links between them resolve, and no file speaks of how the work
was organised (run numbers, days) instead of the date and commit figures were measured on."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MAX_README_LINES = 230
TEST_COMMAND = "python -m pytest -q"
INSTALL_COMMANDS = ("pip install torch==2.13.0", 'pip install -e ".[test]"')
QUICK_START = (
    'fieldkit generate "a red cube" --out runs/red-cube',
    "fieldkit view runs/red-cube/splats.ply",
    "fieldkit train tabletop --arch hashgrid --out runs/tabletop-hashgrid",
    "fieldkit convert runs/tabletop-hashgrid/field.safetensors --to tensorf-vm --out runs/vm-from-hashgrid",
)
# run numbers and machine days, which a user cannot read: a figure names its date and commit instead
# (pytest's quoted scope name is code, not prose)
INTERNAL_WORDS = re.compile(
    r"\bstops? \d+\b|(?<![\"'])\bsessions?\b(?![\"'])|\bCPU days?\b|\b(?:slow|fast)(?:er)? days?\b", re.I)
THIS_FILE = Path(__file__).resolve().relative_to(ROOT).as_posix()


def documents() -> list[Path]:
    return [README, *sorted((ROOT / "docs").glob("*.md"))]


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.M | re.S)


def shown_commands(path: Path) -> list[list[str]]:
    """Every `fieldkit ...` command in the bash blocks of `path`, as argv (continuations joined)."""
    commands = []
    for block in code_blocks(path.read_text(), "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            argv = shlex.split(line, comments=True)
            if argv[:1] == ["fieldkit"]:
                commands.append(argv[1:])
    return commands


def test_benchmarks_page_is_in_sync_with_the_results():
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "report.py"), "--check"], capture_output=True,
                            text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr


def test_readme_is_short_and_keeps_what_ci_and_users_rely_on():
    text = README.read_text()
    lines = text.count("\n")
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines; keep it to {MAX_README_LINES} (detail: docs/)"
    bash = [line.strip() for block in code_blocks(text, "bash") for line in block.splitlines()]
    for command in (TEST_COMMAND, *INSTALL_COMMANDS, *QUICK_START):
        assert command in bash, f"README.md lost the command `{command}` from its ```bash blocks"


@pytest.mark.parametrize("path", documents(), ids=lambda path: path.name)
def test_every_command_shown_parses(path, capsys):
    from fieldkit.cli import build_parser

    parser = build_parser()
    for argv in shown_commands(path):
        try:
            parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"{path.name}: `fieldkit {shlex.join(argv)}` does not parse: {capsys.readouterr().err.strip()}")


@pytest.mark.parametrize("path", documents(), ids=lambda path: path.name)
def test_links_between_documents_resolve(path):
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text()):
        if re.match(r"[a-z]+://", target):
            continue
        assert (path.parent / target).exists(), f"{path.name} links to {target}, which does not exist"


def tracked_text_files() -> list[Path]:
    """Files git tracks or would track (untracked but not ignored), text only."""
    try:
        listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                                capture_output=True, check=True).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: no list of the repository's files")
    files = []
    for name in filter(None, listed):
        path = ROOT / name
        if name == THIS_FILE or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data:
            continue
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        files.append(path)
    return files


def test_no_file_speaks_of_how_the_work_was_organised():
    hits = []
    for path in tracked_text_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for match in INTERNAL_WORDS.finditer(line):
                hits.append(f"{path.relative_to(ROOT)}:{number}: '{match.group(0)}' in {line.strip()[:120]}")
    assert not hits, ("figures carry the date and commit they were measured on, never words about how the work "
                      "was organised; rephrase:\n" + "\n".join(hits))
