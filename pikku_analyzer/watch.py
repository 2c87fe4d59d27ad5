"""``pikku-analyze --watch``: keep the generated package and its stubs fresh while you edit.

The watcher analyses the project once, generates, then waits for changes (``watchfiles``:
inotify/FSEvents/kqueue, polling where those are missing). On each batch of saved files it
runs :func:`pikku_analyzer.engine.analyze` again: the per-file cache (content-hashed) means
only the files that changed are parsed again; everything else is a cache hit. The package is
then rendered and written by codegen's ``write_generated``, which rewrites only the files
whose content changed, so editors reload exactly the stubs that moved.

Rules:

* A file that does not parse (saved half-written) is reported with its position and NOTHING
  is generated until it parses again: the last good package and stubs stay in place (the
  same rule as ``pikku-analyze``).
* The watcher never dies on bad input: unreadable, binary or vanished files are diagnostics;
  an invalid ``pyproject.toml`` is reported and the previous configuration is kept; even an
  unexpected internal error is one line, and watching goes on.
* Ctrl-C (SIGINT) or SIGTERM ends it with exit code 0.

Each batch prints one summary line (time, changed files, counts, the generated files that
were rewritten, the latency), then the diagnostics that appeared since the previous batch
and how many went away.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any, Final, TextIO

from pikku_analyzer.checks import Diag
from pikku_analyzer.config import ConfigError, PikkuConfig, load_config
from pikku_analyzer.engine import AnalysisResult, analyze

DEBOUNCE_MS: Final = 400
"""Longest time changes are grouped before a batch is analysed."""
STEP_MS: Final = 25
"""A batch is analysed once no new change arrived for this long (an editor's save)."""
CONFIG_POLL_MS: Final = 1000
"""How often ``pyproject.toml`` is checked when it is outside the watched directories."""

DiagKey = tuple[str, str, int, int, str]

_COLOURS: Final = {"error": "31", "warning": "33", "dim": "2", "bold": "1", "green": "32"}


# ------------------------------------------------------------------ options


@dataclass
class WatchOptions:
    root: str | None = None
    use_cache: bool = True
    jobs: int | None = None
    generate: bool = True
    colour: bool = False
    debounce_ms: int = DEBOUNCE_MS
    step_ms: int = STEP_MS
    force_polling: bool | None = None


INCOMPATIBLE: Final = (
    ("check", "--check"),
    ("fix", "--fix"),
    ("diff", "--diff"),
    ("add_ignore", "--add-ignore"),
    ("output", "--output"),
)


def options_from_args(args: argparse.Namespace, stream: TextIO) -> WatchOptions | str:
    """The watch options from ``pikku-analyze``'s arguments, or a usage error message."""
    for attr, flag in INCOMPATIBLE:
        if getattr(args, attr, None):
            return f"--watch cannot be combined with {flag}"
    if getattr(args, "format", "text") not in (None, "text"):
        return "--watch prints a text summary: it cannot be combined with --format"
    return WatchOptions(
        root=getattr(args, "root", None),
        use_cache=not getattr(args, "no_cache", False),
        jobs=getattr(args, "jobs", None),
        generate=not getattr(args, "no_generate", False),
        colour=_isatty(stream) and "NO_COLOR" not in os.environ,
    )


def _isatty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


# ------------------------------------------------------------------ codegen


@dataclass
class Codegen:
    """codegen's ``render_package`` and ``write_generated`` (``None`` until it exists)."""

    render_package: Callable[..., Any]
    write_generated: Callable[..., Any]

    @classmethod
    def load(cls) -> Codegen | str:
        try:
            module = importlib.import_module("pikku_analyzer.codegen")
            return cls(module.render_package, module.write_generated)
        except (ImportError, AttributeError) as exc:
            return f"code generation is not available ({exc}); analysing only"


# ------------------------------------------------------------------ session


@dataclass
class BatchOutcome:
    """What one analysis + generation did (also used by tests and the benchmark)."""

    result: AnalysisResult | None
    written: list[Path] = field(default_factory=list)
    generated: bool = False
    kept_last_good: bool = False
    seconds: float = 0.0


class WatchSession:
    """The analysis state between batches: the configuration, the diagnostics last shown,
    and whether the last generation succeeded."""

    def __init__(self, options: WatchOptions, out: TextIO) -> None:
        self.options = options
        self.out = out
        self.config: PikkuConfig = load_config(options.root)  # ConfigError: caller reports
        self.codegen: Codegen | None = None
        if options.generate:
            loaded = Codegen.load()
            if isinstance(loaded, str):
                self.say(self.paint(f"note: {loaded}", "dim"))
            else:
                self.codegen = loaded
        self.shown: set[DiagKey] = set()
        self.pyproject = self.config.root / "pyproject.toml"
        self.pyproject_stamp = _stamp(self.pyproject)

    # -------------------------------------------------------------- output
    def paint(self, text: str, style: str) -> str:
        if not self.options.colour:
            return text
        return f"\x1b[{_COLOURS[style]}m{text}\x1b[0m"

    def say(self, line: str) -> None:
        try:
            self.out.write(line + "\n")
            self.out.flush()
        except (OSError, ValueError):  # a closed or broken stdout must not stop the watcher
            pass

    def rel(self, path: Path | str) -> str:
        try:
            return Path(path).resolve().relative_to(self.config.root).as_posix()
        except (ValueError, OSError):
            return str(path)

    # ---------------------------------------------------------- watching
    def watch_paths(self) -> list[Path]:
        """The ``src`` directories that exist (the root when none does)."""
        paths = [p for p in self.config.src if p.is_dir()]
        return _outermost(paths) or [self.config.root]

    def config_is_watched(self) -> bool:
        return any(_is_within(self.pyproject, p) for p in self.watch_paths())

    def ignored_dirs(self) -> tuple[Path, ...]:
        return (
            self.config.package_dir.resolve(),
            self.config.stub_package_dir.resolve(),
            (self.config.root / ".pikku").resolve(),
        )

    # ---------------------------------------------------------- batches
    def run_batch(self) -> BatchOutcome:
        started = time.perf_counter()
        result = analyze(self.config, use_cache=self.options.use_cache, jobs=self.options.jobs)
        outcome = BatchOutcome(result)
        if result.has_syntax_errors:
            outcome.kept_last_good = True
        elif self.codegen is not None:
            files = self.codegen.render_package(result.report, result.config)
            written = self.codegen.write_generated(files)
            outcome.written = [Path(p) for p in (written or ())]
            outcome.generated = True
        outcome.seconds = time.perf_counter() - started
        return outcome

    def report(self, outcome: BatchOutcome, changed: Sequence[str], *, first: bool) -> None:
        result = outcome.result
        if result is None:
            return
        data = result.data
        errors = sum(1 for d in result.diagnostics if d.severity == "error")
        warnings = sum(1 for d in result.diagnostics if d.severity == "warning")
        counts = (
            f"{_plural(len(data.get('workflows', [])), 'workflow')}, "
            f"{_plural(len(data.get('rpcs', [])), 'RPC')}, "
            + self.paint(_plural(errors, "error"), "error" if errors else "green")
            + ", "
            + self.paint(_plural(warnings, "warning"), "warning" if warnings else "dim")
        )
        if outcome.kept_last_good:
            broken = sorted({d.file for d in result.diagnostics if d.code == "SYNTAX_ERROR"})
            counts = self.paint(f"SYNTAX_ERROR in {', '.join(broken)}", "error")
            action = "kept the last good generated files"
        elif outcome.generated and outcome.written:
            names = ", ".join(self.rel(p) for p in outcome.written)
            action = f"updated {names}"
        elif outcome.generated:
            action = "generated files unchanged"
        else:
            action = "not generating"
        took = f"({outcome.seconds * 1000:.0f} ms)"
        stamp = datetime.now().strftime("%H:%M:%S")
        what = "initial analysis" if first else _changed_text(changed)
        self.say(f"[{stamp}] {what}: {counts}; {action} {self.paint(took, 'dim')}")

        if outcome.kept_last_good:
            # Only the syntax errors: the errors they cause elsewhere (an RPC that "vanished"
            # with its half-written module) are noise until the file parses again.
            syntax = {_key(d): d for d in result.diagnostics if d.code == "SYNTAX_ERROR"}
            self._print_new([syntax[k] for k in sorted(set(syntax) - self.shown)])
            self.shown |= set(syntax)
            return
        keys = {_key(d): d for d in result.diagnostics}
        gone = len(self.shown - set(keys))
        self._print_new([keys[k] for k in sorted(set(keys) - self.shown)])
        if gone and not first:
            self.say(self.paint(f"  {_plural(gone, 'diagnostic')} resolved", "green"))
        self.shown = set(keys)

    def _print_new(self, diags: Sequence[Diag]) -> None:
        for diag in diags:
            colour = "error" if diag.severity == "error" else "warning"
            self.say(
                f"  {diag.file}:{diag.line}:{diag.column} "
                + self.paint(f"{diag.severity} {diag.code}", colour)
                + f" {diag.message}"
            )

    def reload_config(self) -> bool:
        """Re-read ``pyproject.toml`` if it changed; True when the configuration changed."""
        stamp = _stamp(self.pyproject)
        if stamp == self.pyproject_stamp:
            return False
        self.pyproject_stamp = stamp
        try:
            config = load_config(self.options.root)
        except ConfigError as exc:
            self.say(self.paint(f"config error: {exc} (keeping the previous configuration)",
                                "error"))
            return False
        if config == self.config:
            return False
        self.config = config
        self.say(self.paint("pyproject.toml changed: configuration reloaded", "dim"))
        return True


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size)


def _key(diag: Diag) -> DiagKey:
    return (diag.file, diag.code, diag.line, diag.column, diag.message)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _changed_text(changed: Sequence[str]) -> str:
    if not changed:
        return "change"
    if len(changed) <= 3:
        return ", ".join(changed)
    return f"{', '.join(changed[:3])} and {len(changed) - 3} more"


def _is_within(path: Path, directory: Path) -> bool:
    try:
        path.resolve().relative_to(directory.resolve())
    except (ValueError, OSError):
        return False
    return True


def _outermost(paths: Iterable[Path]) -> list[Path]:
    """Drop directories inside another one of the list (watched recursively anyway)."""
    resolved = sorted({p.resolve() for p in paths}, key=lambda p: len(p.parts))
    out: list[Path] = []
    for path in resolved:
        if not any(_is_within(path, kept) for kept in out):
            out.append(path)
    return out


# ------------------------------------------------------------------ filter


class SourceFilter:
    """Python sources and ``pyproject.toml``; never the generated package, the stubs, the
    cache, editors' swap and backup files, or the usual tool directories."""

    SKIP_PARTS: Final = frozenset(
        {"__pycache__", ".git", ".hg", ".svn", ".venv", "venv", ".tox", ".mypy_cache",
         ".pytest_cache", ".ruff_cache", ".hypothesis", "node_modules", ".pikku", ".idea"}
    )

    def __init__(self, ignored: Sequence[Path]) -> None:
        self.ignored = tuple(str(p) + os.sep for p in ignored)

    def __call__(self, change: object, path: str) -> bool:
        name = os.path.basename(path)
        if not (name.endswith(".py") or name == "pyproject.toml"):
            return False
        if name.startswith(".#") or name.startswith("."):
            return False
        if any(part in self.SKIP_PARTS for part in Path(path).parts):
            return False
        return not path.startswith(self.ignored)


# ------------------------------------------------------------------ the loop


class _Stop(Exception):
    """SIGTERM: stop like Ctrl-C."""


def run_watch(
    args: argparse.Namespace | WatchOptions | None = None,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
    stop_event: threading.Event | None = None,
    on_batch: Callable[[BatchOutcome], None] | None = None,
) -> int:
    """Run the watcher until Ctrl-C, SIGTERM or ``stop_event``; return the exit code (0; 2
    for a usage or configuration error before watching starts)."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    if isinstance(args, WatchOptions):
        options: WatchOptions | str = args
    elif args is None:
        options = WatchOptions()
    else:
        options = options_from_args(args, out)
    if isinstance(options, str):
        err.write(f"pikku-analyze: error: {options}\n")
        return 2
    try:
        session = WatchSession(options, out)
    except ConfigError as exc:
        err.write(f"pikku-analyze: config error: {exc}\n")
        return 2

    with _sigterm_as_stop():
        try:
            return _loop(session, stop_event, on_batch)
        except (KeyboardInterrupt, _Stop):
            session.say("stopped")
            return 0


@contextlib.contextmanager
def _sigterm_as_stop() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise _Stop()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _safe_batch(
    session: WatchSession,
    changed: Sequence[str],
    first: bool,
    on_batch: Callable[[BatchOutcome], None] | None,
) -> None:
    try:
        outcome = session.run_batch()
    except (KeyboardInterrupt, _Stop):
        raise
    except Exception as exc:  # the watcher never dies: one line, keep watching
        session.say(session.paint(
            f"internal error: {type(exc).__name__}: {exc} (still watching; please report this)",
            "error"))
        return
    session.report(outcome, changed, first=first)
    if on_batch is not None:
        on_batch(outcome)


def _loop(
    session: WatchSession,
    stop_event: threading.Event | None,
    on_batch: Callable[[BatchOutcome], None] | None,
) -> int:
    import watchfiles

    _safe_batch(session, [], True, on_batch)
    while True:
        paths = session.watch_paths()
        poll_config = not session.config_is_watched()
        shown = ", ".join(session.rel(p) or "." for p in paths)
        session.say(f"watching {shown} for changes (Ctrl-C to stop)")
        restart = False
        for changes in watchfiles.watch(
            *paths,
            watch_filter=SourceFilter(session.ignored_dirs()),
            debounce=session.options.debounce_ms,
            step=session.options.step_ms,
            stop_event=stop_event,
            rust_timeout=CONFIG_POLL_MS if poll_config else 5000,
            yield_on_timeout=poll_config,
            raise_interrupt=True,
            force_polling=session.options.force_polling,
        ):
            changed = sorted({session.rel(path) for _, path in changes})
            config_changed = any(Path(p).name == "pyproject.toml" for _, p in changes)
            if (config_changed or poll_config) and session.reload_config():
                _safe_batch(session, ["pyproject.toml"], False, on_batch)
                if session.watch_paths() != paths:
                    restart = True
                    break
                continue
            if not changes:
                continue
            _safe_batch(session, changed, False, on_batch)
        if not restart:
            return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pikku_analyzer.watch [ROOT]`` (the same as ``pikku-analyze --watch``)."""
    parser = argparse.ArgumentParser(prog="pikku-analyze --watch")
    parser.add_argument("root", nargs="?", default=None)
    parser.add_argument("--no-cache", action="store_true")
    parser.add_argument("--no-generate", action="store_true")
    parser.add_argument("--jobs", "-j", type=int, default=None)
    return run_watch(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
