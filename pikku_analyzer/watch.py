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
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Final, TextIO

import watchfiles
from watchfiles import Change

from pikku_analyzer import engine
from pikku_analyzer.checks import Diag, make_diag
from pikku_analyzer.config import ConfigError, PikkuConfig, defaults_warning, load_config
from pikku_analyzer.engine import AnalysisResult, Stats
from pikku_analyzer.facts import FileFacts, Unit
from pikku_analyzer.files import SourceFile, discover, skipped_dir
from pikku_typing._term import Painter, use_colour

DEBOUNCE_MS: Final = 400
"""Longest time changes are grouped before a batch is analysed."""
STEP_MS: Final = 25
"""A batch is analysed once no new change arrived for this long (an editor's save)."""
CONFIG_POLL_MS: Final = 1000
"""How often ``pyproject.toml`` is checked when it is outside the watched directories."""

DiagKey = tuple[str, str, int, int, str]



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
    check_syntax: bool = False
    """Also syntax-check the files that do not mention pikku (``--check-syntax``)."""


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
        colour=use_colour(stream),
        check_syntax=bool(getattr(args, "check_syntax", False)),
    )


# ------------------------------------------------------------ incremental analysis


@dataclass
class _Entry:
    """What one discovered file contributes: facts (a candidate), a diagnostic (unreadable,
    too large), or nothing but a module other files may import from (``other``)."""

    source: SourceFile
    unit: Unit | None = None
    problem: Diag | None = None
    other: bool = False
    lazy: Unit | None = None
    """Facts of an ``other`` file, parsed on demand by the linker and kept until it changes."""


class IncrementalAnalyzer:
    """The analysis pipeline of :func:`pikku_analyzer.engine.analyze`, kept in memory
    between batches.

    The first :meth:`full` run discovers and reads every file, like ``analyze`` (same
    stages: :func:`engine.read`, the pre-filter, :class:`engine.FactsStore` for the facts,
    :func:`engine.conclude` to link, check and report). After that, :meth:`update` reads and
    re-extracts ONLY the files that changed (through the same cache), re-discovers the tree
    only when files appeared or vanished, and links the facts of the whole project again
    (linking is cheap: no file is read). Its result has the same report data and diagnostics
    as a fresh ``analyze`` (``tests/test_watch.py`` checks it).
    """

    def __init__(self, config: PikkuConfig, *, use_cache: bool = True, check_syntax: bool = False) -> None:
        self.config = config
        self.check_syntax = check_syntax
        self.store = engine.FactsStore(config, use_cache=use_cache)
        self.candidate = engine.Prefilter(config.package)
        self.entries: dict[str, _Entry] = {}
        """By absolute path (a string, whatever type ``SourceFile.path`` has)."""
        self.discovery_diags: list[Diag] = []
        self.stats = Stats()

    # ------------------------------------------------------------ reading
    def _discover(self) -> None:
        discovery = discover(self.config)
        self.discovery_diags = [
            make_diag(p.code, p.rel, 1, 1, p.message) for p in discovery.problems
        ]
        old = self.entries
        self.entries = {}
        for source in discovery.files:
            key = os.fspath(source.path)
            previous = old.get(key)
            if previous is not None and previous.source == source:
                self.entries[key] = previous
            else:
                self.entries[key] = self._read(source)
        self.stats.files = len(self.entries)

    def _read(self, source: SourceFile) -> _Entry:
        entry = _Entry(source)
        data = engine.read(source)
        if isinstance(data, Diag):
            entry.problem = data
        elif not self.candidate(data):
            # Like a full run: with check_syntax, a file that does not mention pikku is
            # syntax-checked too, so a half-written unrelated module is reported.
            if (
                self.check_syntax
                and len(data) <= engine.PARSE_LIMIT_BYTES
                and not engine.parses(data, source.rel)
            ):
                facts = self._facts(source, data)
                if facts["syntax_error"]:
                    entry.unit = Unit(source.rel, source.module, facts)
                    return entry
            entry.other = True
        else:
            entry.problem = engine.too_large(source, data)
            if entry.problem is None:
                entry.unit = Unit(source.rel, source.module, self._facts(source, data))
        return entry

    def _facts(self, source: SourceFile, data: bytes) -> FileFacts:
        facts, hit = self.store.facts(source, data)
        if hit:
            self.stats.cache_hits += 1
        else:
            self.stats.parsed += 1
        return facts

    def _load_other(self, by_module: dict[str, _Entry]) -> Callable[[str], Unit | None]:
        def load(module: str) -> Unit | None:
            entry = by_module.get(module)
            if entry is None:
                return None
            if entry.lazy is None:
                data = engine.read(entry.source)
                if isinstance(data, Diag) or len(data) > engine.PARSE_LIMIT_BYTES:
                    return None
                entry.lazy = Unit(
                    entry.source.rel, entry.source.module, self._facts(entry.source, data)
                )
                self.stats.lazily_loaded += 1
            return entry.lazy

        return load

    # ------------------------------------------------------------ results
    def full(self) -> AnalysisResult:
        """Discover and read everything (the first batch, or after a configuration change)."""
        self.entries = {}
        return self._run(rediscover=True, changed=())

    def update(self, changed: Iterable[str | os.PathLike[str]]) -> AnalysisResult:
        """Re-read the ``changed`` files; re-discover when a file appeared or vanished."""
        paths = [os.path.abspath(os.fspath(p)) for p in changed]
        rediscover = False
        for path in paths:
            known = path in self.entries
            if known != os.path.isfile(path) or (not known and not path.endswith(".py")):
                rediscover = True  # a file (or a directory of files) appeared or vanished
        return self._run(rediscover=rediscover, changed=paths)

    def _run(self, *, rediscover: bool, changed: Sequence[str]) -> AnalysisResult:
        started = time.perf_counter()
        self.stats = Stats()
        if rediscover:
            self._discover()
        for path in changed:
            entry = self.entries.get(path)
            if entry is not None and os.path.isfile(path):
                self.entries[path] = self._read(entry.source)
        self.stats.files = len(self.entries)
        ordered = sorted(self.entries.values(), key=lambda e: e.source.rel)
        units = [e.unit for e in ordered if e.unit is not None]
        self.stats.candidates = len(units)
        others: dict[str, _Entry] = {}
        for entry in ordered:
            if entry.other:
                others.setdefault(entry.source.module, entry)
        problems = [*self.discovery_diags, *(e.problem for e in ordered if e.problem is not None)]
        result = engine.conclude(self.config, units, self._load_other(others), problems, self.stats)
        self.stats.seconds = time.perf_counter() - started
        return result


# ------------------------------------------------------------------ session


@dataclass
class BatchOutcome:
    """What one analysis + generation did (also used by tests and the benchmark)."""

    result: AnalysisResult | None
    written: list[Path] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)
    """Generated files no longer produced (e.g. after the package was renamed), deleted."""
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
        self.paint = Painter(options.colour)
        self.shown: set[DiagKey] = set()
        self.analyzer = IncrementalAnalyzer(
            self.config, use_cache=options.use_cache, check_syntax=options.check_syntax
        )
        self.needs_full = True
        self.pyproject = self.config.root / "pyproject.toml"
        self.pyproject_stamp = _stamp(self.pyproject)

    # -------------------------------------------------------------- output
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
    def run_batch(self, changed: Sequence[Path] | None = None) -> BatchOutcome:
        """Analyse (everything when ``changed`` is None, else only those files) and generate."""
        started = time.perf_counter()
        result = self.analyzer.full() if changed is None else self.analyzer.update(changed)
        outcome = BatchOutcome(result)
        if result.has_syntax_errors:
            outcome.kept_last_good = True
        elif self.options.generate:
            from pikku_analyzer.codegen import remove_obsolete, render_package, write_generated

            files = render_package(result.report, result.config)
            outcome.written = write_generated(files)
            outcome.removed = remove_obsolete(files, result.config)
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
            counts = self.paint(f"SYNTAX_ERROR in {', '.join(broken)}", "error") + (
                f" ({_plural(len(data.get('workflows', [])), 'workflow')}, "
                f"{_plural(len(data.get('rpcs', [])), 'RPC')} in the rest)"
            )
            action = "kept the last good generated files"
        elif outcome.generated and (outcome.written or outcome.removed):
            parts = []
            if outcome.written:
                parts.append("updated " + ", ".join(self.rel(p) for p in outcome.written))
            if outcome.removed:
                parts.append("removed " + ", ".join(self.rel(p) for p in outcome.removed))
            action = "; ".join(parts)
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
            self.say(
                self.paint(f"config error: {exc} (keeping the previous configuration)", "error")
            )
            return False
        if config == self.config:
            return False
        self.config = config
        self.analyzer = IncrementalAnalyzer(
            config, use_cache=self.options.use_cache, check_syntax=self.options.check_syntax
        )
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
    """Python sources, ``pyproject.toml`` and directories (a directory of sources may be moved
    in or out); never the generated package, the stubs, editors' swap and backup files, nor
    a directory discovery skips (:func:`pikku_analyzer.files.skipped_dir`)."""

    def __init__(self, ignored: Sequence[Path], roots: Sequence[Path] = ()) -> None:
        self.ignored = tuple(ignored)
        self.prefixes = tuple(str(p) + os.sep for p in ignored)
        self.roots = tuple(str(r) + os.sep for r in roots)

    def __call__(self, change: object, path: str) -> bool:
        name = os.path.basename(path)
        if name.startswith("."):
            return False
        is_source = name.endswith(".py") or name == "pyproject.toml"
        if not is_source and "." in name:
            return False  # another kind of file (a directory's name has no dot, usually)
        if path.startswith(self.prefixes):
            return False
        # the directories below the watched root, as discovery sees them
        inner = next((path[len(r) :] for r in self.roots if path.startswith(r)), path)
        if any(skipped_dir(part) for part in Path(inner).parts[:-1]):
            return False
        # the generated directories themselves, and the directories that hold them
        candidate = Path(path)
        return is_source or not any(d.is_relative_to(candidate) for d in self.ignored)


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
    warning = defaults_warning(session.config)
    if warning is not None:
        err.write(f"pikku-analyze: warning: {warning}\n")

    with _sigterm_as_stop():
        try:
            return _loop(session, stop_event, on_batch)
        except FileNotFoundError as exc:  # a watched directory vanished
            err.write(f"pikku-analyze: cannot watch: {exc}\n")
            return 2
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
    paths: Sequence[Path] | None,
    first: bool,
    on_batch: Callable[[BatchOutcome], None] | None,
) -> None:
    """One batch (``paths=None``: a full analysis); never raises but for a stop."""
    try:
        outcome = session.run_batch(paths)
    except (KeyboardInterrupt, _Stop):
        raise
    except Exception as exc:  # the watcher never dies: one line, keep watching
        session.say(
            session.paint(
                f"internal error: {type(exc).__name__}: {exc} (still watching; please report this)",
                "error",
            )
        )
        # start from scratch next time: the in-memory state may be half updated
        session.analyzer = IncrementalAnalyzer(
            session.config,
            use_cache=session.options.use_cache,
            check_syntax=session.options.check_syntax,
        )
        session.needs_full = True
        return
    session.needs_full = False
    changed = [] if paths is None else sorted({session.rel(p) for p in paths})
    session.report(outcome, changed, first=first)
    if on_batch is not None:
        on_batch(outcome)


def _force_polling(option: bool | None) -> bool:
    if option is not None:
        return option
    value = os.environ.get("WATCHFILES_FORCE_POLLING", "")
    return value.lower() not in ("", "0", "false", "disable", "no")


class _Flag:
    """The ``stop_event`` given to ``watchfiles.watch`` (anything with ``is_set()``): it
    stops the watcher thread, and its first call tells that the watch is armed (watchfiles
    calls it from its wait loop, after the file-system watch is set up)."""

    def __init__(self, external: threading.Event | None) -> None:
        self.armed = threading.Event()
        self.stop = threading.Event()
        self.external = external

    def is_set(self) -> bool:
        self.armed.set()
        return self.stop.is_set() or (self.external is not None and self.external.is_set())


class _Notifier:
    """``watchfiles.watch`` (its public API) in a daemon thread: each batch of changes is put
    on a queue (an empty set when nothing changed for ``timeout_ms``). The main thread stays
    free to analyse and to take signals (Ctrl-C, SIGTERM) at once."""

    def __init__(
        self,
        session: WatchSession,
        paths: Sequence[Path],
        stop_event: threading.Event | None,
        timeout_ms: int,
    ) -> None:
        self.flag = _Flag(stop_event)
        self.queue: queue.Queue[set[tuple[Change, str]] | BaseException | None] = queue.Queue()
        self._paths = [str(p) for p in paths]
        self._filter = SourceFilter(session.ignored_dirs(), session.watch_paths())
        self._options = session.options
        self._timeout_ms = timeout_ms
        self._thread = threading.Thread(target=self._run, name="pikku-watch", daemon=True)

    def __enter__(self) -> _Notifier:
        """Start watching; returns once the watch is armed (or failed)."""
        self._thread.start()
        while not self.flag.armed.wait(0.05):
            if not self._thread.is_alive():
                break
        return self

    def __exit__(self, *exc: object) -> None:
        self.flag.stop.set()
        self._thread.join(timeout=2.0)

    def _run(self) -> None:
        try:
            options = self._options
            for changes in watchfiles.watch(
                *self._paths,
                watch_filter=self._filter,
                debounce=options.debounce_ms,
                step=options.step_ms,
                stop_event=self.flag,
                rust_timeout=self._timeout_ms,
                yield_on_timeout=True,
                raise_interrupt=False,
                force_polling=_force_polling(options.force_polling),
            ):
                self.queue.put(changes)
        except BaseException as exc:  # reported by the main thread
            self.queue.put(exc)
        finally:
            self.flag.armed.set()
            self.queue.put(None)

    def get(self) -> set[tuple[Change, str]] | None:
        """The next batch (an empty set on a timeout); None once watching stopped."""
        while True:
            try:
                item = self.queue.get(timeout=0.5)
            except queue.Empty:
                continue  # wake up now and then: signals are handled between waits
            if isinstance(item, BaseException):
                raise item
            return item


def _loop(
    session: WatchSession,
    stop_event: threading.Event | None,
    on_batch: Callable[[BatchOutcome], None] | None,
) -> int:
    first = True
    while True:
        paths = session.watch_paths()
        poll_config = not session.config_is_watched()
        # The watch is armed BEFORE the first analysis: a file saved meanwhile is buffered
        # by the notifier and analysed in the next batch, never lost.
        timeout = CONFIG_POLL_MS if poll_config else 5000
        with _Notifier(session, paths, stop_event, timeout) as notifier:
            if first:
                _safe_batch(session, None, True, on_batch)
                first = False
            shown = ", ".join(session.rel(p) or "." for p in paths)
            session.say(f"watching {shown} for changes (Ctrl-C to stop)")
            restart = False
            while not restart:
                changes = notifier.get()
                if changes is None:
                    return 0  # stop_event
                if not changes and not poll_config:
                    continue
                config_changed = any(Path(p).name == "pyproject.toml" for _, p in changes)
                if (config_changed or poll_config) and session.reload_config():
                    _safe_batch(session, None, False, on_batch)
                    restart = session.watch_paths() != paths
                    continue
                if changes:
                    paths_changed = (
                        None
                        if session.needs_full
                        else sorted(
                            {Path(path) for _, path in changes if not path.endswith("pyproject.toml")}
                        )
                    )
                    _safe_batch(session, paths_changed, False, on_batch)


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
