"""``pikku-analyze --watch``: a real watcher process on a temporary copy of the example app.

No timed assertions here (the latency targets are measured in ``benchmarks/watch.py``); the
waits only bound how long a broken watcher can hang the suite."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
WAIT = 60.0

NEW_RPC = '''

@pikku_func(name="users.delete")
async def delete_user(data: GetUserInput) -> User:
    return User(id=data["user_id"], email="gone@example.com", name="gone")
'''

NEW_MODULE = '''"""Added while the watcher runs."""

from pikku_typing import pikku_func

from app.types import GetUserInput, User


@pikku_func(name="users.archive")
async def archive_user(data: GetUserInput) -> User:
    return User(id=data["user_id"], email="archived@example.com", name="archived")
'''


class Watcher:
    """``pikku-analyze --watch`` in a subprocess; its output lines are read by a thread."""

    def __init__(self, root: Path, *, ignore_sigint: bool = False) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1", NO_COLOR="1")
        command = [sys.executable, "-m", "pikku_analyzer.cli", "--watch", str(root)]
        if ignore_sigint:  # as in a background job of a shell (`bash scripts/test.sh &`)
            command[1:3] = [
                "-c",
                "import signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                "from pikku_analyzer.cli import main; sys.exit(main(sys.argv[1:]))",
            ]
        self.proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=root,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_line(self, predicate: Callable[[str], bool], what: str) -> str:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            self.seen.append(line)
            if predicate(line):
                return line
        raise AssertionError(f"no line {what} in the watcher's output:\n" + "\n".join(self.seen))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # never SIGINT: ignored in background jobs
        try:
            return self.proc.wait(timeout=WAIT)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


def wait_for(condition: Callable[[], bool], what: str, watcher: Watcher) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if condition():
            return
        if watcher.proc.poll() is not None:
            break
        time.sleep(0.02)
    while not watcher.lines.empty():
        watcher.seen.append(watcher.lines.get())
    raise AssertionError(f"timed out waiting for {what}; watcher output:\n" + "\n".join(watcher.seen))


@pytest.fixture
def app(tmp_path: Path) -> Path:
    """A copy of the example app whose stubs go to ``<copy>/stubs``."""
    root = tmp_path / "proj"
    shutil.copytree(EXAMPLES / "app", root / "app", ignore=shutil.ignore_patterns("__pycache__"))
    pyproject = (EXAMPLES / "pyproject.toml").read_text()
    pyproject = pyproject.replace('stub_dir = "../stubs"', 'stub_dir = "stubs"')
    pyproject = pyproject.replace('mypy_path = "../stubs"', 'mypy_path = "stubs"')
    (root / "pyproject.toml").write_text(pyproject)
    return root


@pytest.fixture
def watcher(app: Path) -> Iterator[Watcher]:
    w = Watcher(app)
    try:
        yield w
    finally:
        if w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait()


def stub_text(app: Path) -> str:
    """All generated stub text (every ``.pyi`` of the generated package)."""
    files = sorted((app / "stubs" / "pikku_gen").glob("*.pyi"))
    return "\n".join(p.read_text() for p in files)


def snapshot(app: Path) -> dict[str, tuple[bytes, int]]:
    """Every generated file: its bytes and its mtime."""
    out: dict[str, tuple[bytes, int]] = {}
    for base in (app / "pikku_gen", app / "stubs" / "pikku_gen"):
        for path in sorted(base.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                out[str(path.relative_to(app))] = (path.read_bytes(), path.stat().st_mtime_ns)
    return out


def save(path: Path, text: str) -> None:
    """Save like an editor: write a temporary file, then rename it over the original."""
    tmp = path.with_name(f".{path.name}.swp")
    tmp.write_text(text)
    os.replace(tmp, path)


def test_watch_updates_stubs_keeps_last_good_and_exits_0(app: Path, watcher: Watcher) -> None:
    watcher.wait_line(lambda line: "watching" in line.lower(), "saying it is watching")
    assert "users.create" in stub_text(app)
    assert "users.delete" not in stub_text(app)
    before = snapshot(app)
    assert before, "the first analysis generated nothing"

    # 1. a new RPC saved in an existing module appears in the stubs
    rpcs = app / "app" / "rpcs.py"
    good = rpcs.read_text()
    rpcs.write_text(good + NEW_RPC)
    wait_for(lambda: "users.delete" in stub_text(app), "users.delete in the stubs", watcher)
    # the summary line is printed once every generated file is written
    watcher.wait_line(lambda line: "5 RPCs" not in line and "4 RPCs" in line and "updated" in line,
                      "the batch that added users.delete")
    after = snapshot(app)
    changed = {name for name in after if after[name][0] != before.get(name, (b"", 0))[0]}
    assert changed, "no generated file changed"
    for name, (content, mtime) in after.items():
        if name in before and before[name][0] == content:
            assert before[name][1] == mtime, f"{name} was rewritten with the same content"

    # 2. a half-written file is reported and the last good stubs are kept
    last_good = snapshot(app)
    save(rpcs, good + NEW_RPC + "\n\n@pikku_func(name=\"users.purge\")\nasync def purge(data:\n")
    watcher.wait_line(lambda line: "SYNTAX_ERROR" in line and "rpcs.py" in line,
                      "reporting the syntax error")
    # the watcher is still alive and the stubs are exactly what they were
    assert watcher.proc.poll() is None
    assert snapshot(app) == last_good

    # 3. while it is broken, other saves do not generate either (the CLI's rule: nothing is
    #    generated from a project with a syntax error); once it parses, everything lands
    (app / "app" / "archive.py").write_text(NEW_MODULE)
    watcher.wait_line(lambda line: "archive.py" in line and "kept the last good" in line,
                      "reporting the new module while rpcs.py is still broken")
    assert snapshot(app) == last_good
    save(rpcs, good)
    wait_for(lambda: "users.archive" in stub_text(app), "users.archive in the stubs", watcher)
    wait_for(lambda: "users.delete" not in stub_text(app), "users.delete to disappear", watcher)
    assert "users.create" in stub_text(app)

    # 4. deleting a module removes what it defined
    (app / "app" / "archive.py").unlink()
    wait_for(lambda: "users.archive" not in stub_text(app), "users.archive to disappear", watcher)

    # 5. Ctrl-C: exit code 0
    assert watcher.stop() == 0


def test_watch_survives_bad_input(app: Path, watcher: Watcher) -> None:
    """Needs no code generation: the summary lines tell what the analysis saw."""
    watcher.wait_line(lambda line: "initial analysis" in line and "3 RPCs" in line,
                      "the initial analysis")
    watcher.wait_line(lambda line: "watching" in line.lower(), "saying it is watching")
    # binary junk, an empty file, a file that is not UTF-8: reported, never fatal
    (app / "app" / "junk.py").write_bytes(b"\x00\xff\xfe garbage pikku_func \x00")
    (app / "app" / "empty.py").write_text("")
    (app / "app" / "latin.py").write_bytes(b"from pikku_typing import pikku_func\nx = '\xe9'\n")
    rpcs = app / "app" / "rpcs.py"
    good = rpcs.read_text()
    save(rpcs, good + "\ndef broken(:\n")
    watcher.wait_line(lambda line: "SYNTAX_ERROR" in line and "rpcs.py" in line,
                      "reporting the syntax error")
    # an invalid pyproject.toml is reported; the previous configuration is kept
    pyproject = app / "pyproject.toml"
    config = pyproject.read_text()
    pyproject.write_text(config + "\n[tool.pikku\n")
    save(rpcs, good + NEW_RPC)
    watcher.wait_line(lambda line: "rpcs.py" in line and "4 RPCs" in line,
                      "the new RPC once rpcs.py parses again")
    pyproject.write_text(config)
    assert watcher.proc.poll() is None
    assert watcher.stop() == 0
    assert not any("Traceback" in line for line in watcher.seen)


def test_watch_rejects_incompatible_flags(app: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pikku_analyzer.cli", "--watch", "--check", str(app)],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "--watch cannot be combined with --check" in proc.stderr


# ------------------------------------------------- the incremental analysis, in process


@pytest.mark.parametrize("check_syntax", [False, True])
def test_incremental_analysis_matches_a_fresh_analyze(app: Path, check_syntax: bool) -> None:
    """After every kind of change, the watcher's in-memory analysis gives exactly the report
    and diagnostics of a fresh ``analyze`` (which re-reads every file), with or without
    ``--check-syntax``."""
    from pikku_analyzer import analyze, load_config
    from pikku_analyzer.watch import IncrementalAnalyzer

    config = load_config(app)
    incremental = IncrementalAnalyzer(config, check_syntax=check_syntax)

    def same(result: object) -> None:
        fresh = analyze(config, check_syntax=check_syntax)
        assert result.data == fresh.data  # type: ignore[attr-defined]
        assert result.diagnostics == fresh.diagnostics  # type: ignore[attr-defined]

    same(incremental.full())
    rpcs = app / "app" / "rpcs.py"
    good = rpcs.read_text()

    rpcs.write_text(good + NEW_RPC)  # a changed module
    result = incremental.update([rpcs])
    assert result.stats.files == 4 and any(r["name"] == "users.delete" for r in result.data["rpcs"])
    same(result)

    archive = app / "app" / "archive.py"
    archive.write_text(NEW_MODULE)  # a new module
    same(incremental.update([archive]))

    rpcs.write_text(good + "\ndef broken(:\n")  # a syntax error
    result = incremental.update([rpcs])
    assert result.has_syntax_errors
    same(result)

    rpcs.write_text(good)
    archive.unlink()  # a vanished module
    same(incremental.update([rpcs, archive]))

    unrelated = app / "app" / "util.py"  # a broken module that never mentions pikku
    unrelated.write_text("def helper(:\n")
    result = incremental.update([unrelated])
    expected = ["app/util.py"] if check_syntax else []  # off by default: it cannot hold a workflow
    assert [d.file for d in result.diagnostics if d.code == "SYNTAX_ERROR"] == expected
    same(result)
    unrelated.write_text("def helper() -> int:\n    return 1\n")
    result = incremental.update([unrelated])
    assert not result.has_syntax_errors
    same(result)

    # a module that the pre-filter skips, but whose constant a workflow step uses
    (app / "app" / "names.py").write_text('CREATE = "users.nope"\n')
    onboarding = app / "app" / "onboarding.py"
    onboarding.write_text(
        onboarding.read_text()
        .replace("from app.types import", "from app.names import CREATE\nfrom app.types import")
        .replace('"createUser",\n        "users.create",', '"createUser",\n        CREATE,')
    )
    result = incremental.update([app / "app" / "names.py", onboarding])
    assert any(d.code == "UNKNOWN_RPC" for d in result.diagnostics)
    same(result)
    (app / "app" / "names.py").write_text('CREATE = "users.create"\n')
    result = incremental.update([app / "app" / "names.py"])
    assert not any(d.code == "UNKNOWN_RPC" for d in result.diagnostics)
    same(result)


# ------------------------------------------------ pyright sees the new RPC, unprompted

USAGE = '''from app.types import GetUserInput, User
from pikku_gen import Workflow


async def remove(workflow: Workflow, data: GetUserInput) -> User:
    return await workflow.do("remove", "users.delete", data)
'''


def pyright_errors(root: Path) -> list[str]:
    proc = subprocess.run(
        ["pyright", "--outputjson", "-p", str(root / "pyrightconfig.json")],
        capture_output=True, text=True, timeout=300, cwd=root)
    report = json.loads(proc.stdout)
    return [d["message"] for d in report["generalDiagnostics"] if d["severity"] == "error"]


@pytest.mark.skipif(shutil.which("pyright") is None, reason="pyright not installed")
def test_pyright_sees_a_new_rpc_once_it_is_saved(app: Path, watcher: Watcher) -> None:
    """The editor loop: the watcher runs; a usage of an RPC that does not exist yet is an
    error for pyright; the RPC is saved; without any other command the stubs change and
    pyright accepts the usage."""
    (app / "usage.py").write_text(USAGE)
    (app / "pyrightconfig.json").write_text(
        '{"include": ["usage.py"], "stubPath": "stubs", "extraPaths": ["."],'
        ' "pythonVersion": "3.11"}'
    )
    watcher.wait_line(lambda line: "watching" in line.lower(), "saying it is watching")
    errors = pyright_errors(app)
    assert any("users.delete" in message for message in errors), errors

    rpcs = app / "app" / "rpcs.py"
    rpcs.write_text(rpcs.read_text() + NEW_RPC)
    watcher.wait_line(lambda line: "4 RPCs" in line and "updated" in line,
                      "the batch that added users.delete")
    assert pyright_errors(app) == []
    assert watcher.stop() == 0


def test_watch_follows_pyproject_and_stops_on_sigterm(app: Path, watcher: Watcher) -> None:
    watcher.wait_line(lambda line: "watching" in line.lower(), "saying it is watching")
    pyproject = app / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('package = "pikku_gen"',
                                                       'package = "pikku_gen2"'))
    watcher.wait_line(lambda line: "configuration reloaded" in line, "the configuration reload")
    wait_for(lambda: (app / "stubs" / "pikku_gen2" / "workflow_map.pyi").is_file(),
             "the package generated under its new name", watcher)
    watcher.proc.send_signal(signal.SIGTERM)
    assert watcher.proc.wait(timeout=WAIT) == 0


def test_watch_stops_on_sigterm_when_sigint_is_ignored(app: Path) -> None:
    w = Watcher(app, ignore_sigint=True)
    try:
        w.wait_line(lambda line: "watching" in line.lower(), "saying it is watching")
        w.proc.send_signal(signal.SIGINT)  # ignored, like in `bash scripts/test.sh &`
        w.proc.send_signal(signal.SIGTERM)
        assert w.proc.wait(timeout=WAIT) == 0
        w.wait_line(lambda line: line == "stopped", "saying it stopped")
    finally:
        if w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait()


def test_watch_uses_only_the_public_watchfiles_api() -> None:
    source = (REPO / "pikku_analyzer" / "watch.py").read_text(encoding="utf-8")
    assert "_rust_notify" not in source and "RustNotify" not in source


def test_watch_skips_the_directories_discovery_skips(tmp_path: Path) -> None:
    from pikku_analyzer.files import skipped_dir
    from pikku_analyzer.watch import SourceFilter

    root = tmp_path / "proj"
    keep = SourceFilter([root / "pikku_gen"], [root])
    for name in ("__pycache__", "node_modules", "site-packages", "venv", ".venv", ".git", ".tox"):
        assert skipped_dir(name)
        assert not keep(None, str(root / name / "mod.py")), name
    assert keep(None, str(root / "app" / "mod.py"))
    assert not keep(None, str(root / "pikku_gen" / "workflow_map.py"))
    # a project inside a dot directory is still watched (only parts below the root count)
    hidden = tmp_path / ".work" / "proj"
    assert SourceFilter([], [hidden])(None, str(hidden / "app" / "mod.py"))



def test_watch_without_watchfiles_is_a_clear_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pikku_analyzer.cli import main

    monkeypatch.setitem(sys.modules, "watchfiles", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "pikku_analyzer.watch", raising=False)
    assert main(["--watch", str(tmp_path)]) == 2
    assert "--watch needs the watchfiles package" in capsys.readouterr().err


def test_watch_options_pass_check_syntax() -> None:
    """``pikku-analyze --watch --check-syntax`` runs the incremental analysis with the check."""
    import io

    from pikku_analyzer.cli import build_parser
    from pikku_analyzer.watch import WatchOptions, options_from_args

    for argv, expected in (([], False), (["--check-syntax"], True)):
        options = options_from_args(build_parser().parse_args(argv), io.StringIO())
        assert isinstance(options, WatchOptions) and options.check_syntax is expected
