"""Every code block of ``README.md`` is executed (issue 11): the README cannot drift.

The README is cut into its ``## `` sections. Each section gets a fresh temporary project
directory, and its code blocks run there in order, so a section is one chained story (the quick
start writes ``pyproject.toml`` and ``app/orders.py``, analyses, type-checks and runs them).
Blocks run with this interpreter's ``bin`` directory first on ``PATH`` (``python``,
``pikku-analyze``, ``pikku-runs``, ``mypy``, ``pyright`` are the installed ones), no
``MYPYPATH``, and a timeout.

What a block does is said by an HTML comment on the line right before its opening fence
(invisible on GitHub)::

    <!-- readme-test: file PATH -->   write the block to PATH in the section's directory
                                      (a .py file is also compiled: it must at least parse)
    <!-- readme-test: examples -->    copy the repository's examples/ into the directory first,
                                      then run the block (bash)
    <!-- readme-test: install -->     the venv + pip install of the quick start: checked, not
                                      run (it would install into a new venv from the network);
                                      the checkout it names installs (pip --dry-run --no-deps)
    <!-- readme-test: setup -->       the repository's two set-up commands (`bash scripts/demo.sh`,
                                      `bash scripts/test.sh`): they cannot run inside the suite
                                      (one runs the suite); each named script must exist
    <!-- readme-test: output -->      sample output or a listing: not run (``text`` or no language)
    <!-- readme-test: skip REASON --> not run; the reason is required and shown in the test id

Without a comment, a ``python`` block runs as a script (``python block.py``) and a ``bash``
block runs with ``bash -euo pipefail``; a block in any other language must carry a comment.
A failing block fails its section's test with the README line of its fence.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DIRECTIVE = re.compile(r"^<!--\s*readme-test:\s*(?P<kind>[\w-]+)\s*(?P<arg>.*?)\s*-->\s*$")
KINDS = ("file", "examples", "install", "setup", "output", "skip")
SETUP_COMMANDS = ("bash scripts/demo.sh", "bash scripts/test.sh")
TIMEOUT = 240
HINT = "(the README's block conventions are in tests/test_readme.py's docstring)"


@dataclass(frozen=True)
class Block:
    line: int
    """1-based line of the opening fence."""
    lang: str
    code: str
    kind: str | None
    arg: str

    def where(self) -> str:
        return f"README.md line {self.line} (```{self.lang or ''} block)"


@dataclass(frozen=True)
class Section:
    title: str
    line: int
    blocks: list[Block]


def parse(text: str) -> list[Section]:
    sections: list[Section] = [Section("(top)", 1, [])]
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("## "):
            sections.append(Section(line[3:].strip(), index + 1, []))
        fence = re.match(r"^(?P<indent> *)(?P<ticks>`{3,})(?P<lang>\S*)\s*$", line)
        if fence:  # also an indented fence (a block inside a list item)
            start = index
            indent = len(fence.group("indent"))
            body: list[str] = []
            index += 1
            while index < len(lines) and lines[index].strip() != fence.group("ticks"):
                body.append(
                    lines[index][indent:] if lines[index][:indent].isspace() else lines[index]
                )
                index += 1
            assert index < len(lines), f"README.md line {start + 1}: unclosed code fence"
            previous = lines[start - 1] if start > 0 else ""
            directive = DIRECTIVE.match(previous.strip())
            kind, arg = (
                (directive.group("kind"), directive.group("arg")) if directive else (None, "")
            )
            sections[-1].blocks.append(
                Block(start + 1, fence.group("lang"), "\n".join(body) + "\n", kind, arg)
            )
        index += 1
    return [s for s in sections if s.blocks]


SECTIONS = parse(README.read_text(encoding="utf-8"))


def _env(project: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("MYPYPATH", None)
    env.pop("PIKKU_POSTGRES_DSN", None)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["HOME"] = str(project / ".home")
    return env


def _run(block: Block, args: list[str], project: Path) -> str:
    try:
        proc = subprocess.run(
            args,
            cwd=project,
            env=_env(project),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{block.where()} did not finish in {TIMEOUT} s {HINT}") from exc
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, (
        f"{block.where()} failed (exit {proc.returncode}) {HINT}:\n{block.code}\n--- output:\n"
        f"{output}"
    )
    return output


def check_install(block: Block, project: Path) -> None:
    assert "python -m venv" in block.code, f"{block.where()}: the install block makes a venv"
    match = re.search(
        r"pip install '(?P<target>path/to/checkout)(?P<extras>\[[^\]]*\])?'", block.code
    )
    assert match, f"{block.where()}: expected pip install 'path/to/checkout[...]' {HINT}"
    target = f"{REPO}{match.group('extras') or ''}"
    _run(
        block,
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--no-deps",
            "--disable-pip-version-check",
            "--quiet",
            target,
        ],
        project,
    )


def run_block(block: Block, project: Path) -> None:
    kind = block.kind
    if kind is not None and kind not in KINDS:
        raise AssertionError(f"{block.where()}: unknown directive {kind!r} {HINT}")
    if kind in ("output", "skip"):
        if kind == "skip":
            assert block.arg, f"{block.where()}: 'skip' needs a reason {HINT}"
        return
    if kind == "setup":
        commands = [c.split("#", 1)[0].strip() for c in block.code.splitlines() if c.strip()]
        assert tuple(commands) == SETUP_COMMANDS, f"{block.where()}: {commands} {HINT}"
        for command in commands:
            assert (REPO / command.split()[-1]).is_file(), f"{block.where()}: {command}"
        return
    if kind == "install":
        check_install(block, project)
        return
    if kind == "file":
        assert block.arg, f"{block.where()}: 'file' needs a path {HINT}"
        path = project / block.arg
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(block.code, encoding="utf-8")
        if path.suffix == ".py":
            compile(block.code, str(path), "exec")
        return
    if kind == "examples":
        shutil.copytree(
            REPO / "examples",
            project / "examples",
            ignore=shutil.ignore_patterns("__pycache__", ".pikku", ".mypy_cache"),
            dirs_exist_ok=True,
        )
    if block.lang == "python":
        script = project / f".readme_block_{block.line}.py"
        script.write_text(block.code, encoding="utf-8")
        _run(block, [sys.executable, str(script)], project)
    elif block.lang in ("bash", "sh", "shell"):
        _run(block, ["bash", "-euo", "pipefail", "-c", block.code], project)
    else:
        raise AssertionError(
            f"{block.where()}: a ```{block.lang} block needs a <!-- readme-test: ... --> "
            f"comment on the line before it {HINT}"
        )


def test_every_block_is_accounted_for() -> None:
    """Each block either runs or says why not, with a directive the runner knows."""
    problems: list[str] = []
    for section in SECTIONS:
        for block in section.blocks:
            if block.kind is not None and block.kind not in KINDS:
                problems.append(f"{block.where()}: unknown directive {block.kind!r}")
            elif block.kind is None and block.lang not in ("python", "bash", "sh", "shell"):
                problems.append(f"{block.where()}: ```{block.lang} needs a directive")
            elif block.kind == "skip" and not block.arg:
                problems.append(f"{block.where()}: skip without a reason")
    assert problems == [], "\n".join(problems) + f"\n{HINT}"


def test_the_quick_start_is_the_first_section_and_runs_most_of_its_blocks() -> None:
    first = SECTIONS[0]
    assert first.title == "Quick start"
    assert not any(b.kind == "skip" for b in first.blocks)
    assert sum(b.kind is None for b in first.blocks) >= 2  # analyse + check, run + list


@pytest.mark.parametrize(
    "section",
    SECTIONS,
    ids=[f"L{s.line}-{re.sub(r'[^a-z]+', '-', s.title.lower())}" for s in SECTIONS],
)
def test_section_blocks_run(section: Section, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / ".home").mkdir()
    for block in section.blocks:
        run_block(block, project)
    if section.title == "Quick start":
        runs = _run(section.blocks[-1], ["pikku-runs", "list"], project)
        assert "checkout" in runs and "completed" in runs, runs
        assert (project / "typings" / "pikku_typing" / "py.typed").read_text() == "partial\n"
