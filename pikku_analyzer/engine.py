"""The analysis pipeline: discover → load (cache) → extract → link → check → render.

* discover: :func:`pikku_analyzer.files.discover`, the ``.py`` files under ``src``;
* load: :func:`read` (``UNREADABLE_FILE``), the pre-filter, :func:`too_large`;
* extract: :class:`FactsStore`, the per-file facts (:mod:`pikku_analyzer.detect`) with the
  content-hashed facts cache (:mod:`pikku_analyzer.cache`) as a layer around it;
* link, check: :func:`conclude` (:mod:`pikku_analyzer.link`, :mod:`pikku_analyzer.checks`),
  then the ``# pikku: ignore`` suppressions, into an :class:`AnalysisResult`;
* render: :func:`pikku_analyzer.report.render`.

:func:`analyze` runs it once (the CLI); :class:`pikku_analyzer.watch.IncrementalAnalyzer`
runs the same stages for the files that changed (``--watch``).

The files that pass the pre-filter (the candidates: they mention the API) are parsed and
their facts extracted; a candidate that does not parse is always ``SYNTAX_ERROR``. The other
files cannot hold a workflow, an RPC or an event (SPEC section 4, ``SYNTAX_ERROR``): by
default they are only read (pre-filter) and parsed on demand when the linker imports a name
from one (a broken one is then reported). With ``check_syntax=True`` (``pikku-analyze
--check-syntax``) they are syntax-checked too, as ruff would (about 1.4 s on the
317k-line benchmark tree, cold): a known-good content digest in the
:class:`~pikku_analyzer.cache.SyntaxIndex` skips the check, else it runs in the same worker
processes as the extraction (``_symtable``, which parses without building Python AST
objects, about 1.5x faster than ``ast.parse``). A file the check rejects is confirmed with
:func:`extract_facts` (``ast.parse``), so exactly the files ``--all-files`` would report
are reported, with the same diagnostic; its facts are cached like any other file's.

Nothing here imports pydantic or ``pikku_typing``: the report is kept as plain dicts in
the shape of ``AnalysisReport`` and turned into the pydantic model only on demand
(:attr:`AnalysisResult.report`), which keeps a warm ``pikku-analyze`` run fast.
"""

from __future__ import annotations

import ast
import importlib
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from pikku_analyzer.cache import (
    SYNTAX_INDEX_NAME,
    FactsCache,
    SyntaxIndex,
    cache_key,
    content_digest,
)
from pikku_analyzer.checks import Diag, LinkResult, link, make_diag
from pikku_analyzer.config import PikkuConfig
from pikku_analyzer.detect.extract import (
    decode_problem,
    extract_facts,
    passes_prefilter,
    prefilter_tokens,
)
from pikku_analyzer.facts import FileFacts, ReportData, Unit
from pikku_analyzer.files import SourceFile, discover, read_source
from pikku_analyzer.link import Loader

# The "pikku.analyzer" logger of pikku_typing._log, named here: the analyzer never imports
# pikku_typing (nor pydantic). Silent by default, like the rest of pikku.
analyzer_log = logging.getLogger("pikku.analyzer")
if not any(isinstance(h, logging.NullHandler) for h in logging.getLogger("pikku").handlers):
    logging.getLogger("pikku").addHandler(logging.NullHandler())

if TYPE_CHECKING:
    from concurrent.futures import Future, ProcessPoolExecutor

    from pikku_typing.meta import AnalysisReport

REPORT_VERSION = 1
PARSE_LIMIT_BYTES = 8 * 1024 * 1024
PARALLEL_THRESHOLD = 64
"""Parse in worker processes when at least this many files miss the cache."""
CHECKS_PER_PARSE = 3
"""Syntax checks that weigh as much as one extraction, when counting work for processes."""
BATCH = 48
"""Jobs sent to a worker process at once."""

ProgressCallback = Callable[[int, int], None]


@dataclass
class Stats:
    files: int = 0
    candidates: int = 0
    parsed: int = 0
    cache_hits: int = 0
    lazily_loaded: int = 0
    syntax_checked: int = 0
    """Files outside the pre-filter that were syntax-checked (not known to parse)."""
    syntax_known: int = 0
    """Files outside the pre-filter known to parse (from the syntax index)."""
    processes: int = 1
    seconds: float = 0.0


@dataclass
class AnalysisResult:
    """What :func:`analyze` found. ``data`` is the JSON report as plain Python values."""

    config: PikkuConfig
    data: ReportData
    diagnostics: list[Diag]
    stats: Stats = field(default_factory=Stats)
    suppressions: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    @property
    def report(self) -> AnalysisReport:
        """The report as the pydantic model (``pikku_typing.meta.AnalysisReport``)."""
        from pikku_typing.meta import AnalysisReport

        return AnalysisReport.model_validate(self.data)

    @property
    def has_errors(self) -> bool:
        return any(d.severity == "error" for d in self.diagnostics)

    @property
    def has_syntax_errors(self) -> bool:
        return any(d.code == "SYNTAX_ERROR" for d in self.diagnostics)

    @property
    def exit_code(self) -> int:
        return 1 if self.has_errors else 0


Job = tuple[bool, bytes, str, bool, str, str]
"""(extract, source, module, is_package, rel, package): extract facts, or only check syntax."""


def _load_fast_check() -> Callable[[bytes, str, str], object] | None:
    """CPython's ``_symtable.symtable``: parses and builds the symbol table, without the
    Python AST objects. None when missing or when it does not take bytes as expected."""
    try:
        check: Callable[[bytes, str, str], object] = importlib.import_module("_symtable").symtable
        check(b"# -*- coding: latin-1 -*-\nx = '\xe9'\n", "<probe>", "exec")
    except Exception:
        return None
    try:
        check(b"def f(:\n", "<probe>", "exec")
    except SyntaxError:
        return check
    except Exception:
        return None
    return None


_FAST_CHECK = _load_fast_check()


def parses(source: bytes, filename: str = "<unknown>") -> bool:
    """Whether ``source`` certainly parses. False means "maybe not": :func:`extract_facts`
    decides (the symbol table also rejects e.g. ``nonlocal`` at module level, which
    ``ast.parse`` accepts)."""
    if decode_problem(source) is not None:
        return False  # compile() accepts some bytes that `python file.py` refuses to decode
    try:
        if _FAST_CHECK is not None:
            _FAST_CHECK(source, filename, "exec")
        else:
            compile(source, filename, "exec", ast.PyCF_ONLY_AST, dont_inherit=True)
    except (SyntaxError, ValueError, UnicodeDecodeError, RecursionError, MemoryError):
        return False
    return True


def _job(args: Job) -> FileFacts | None:
    """Facts of a candidate; for a syntax check, None when the file parses, else its facts
    (with a ``syntax_error``)."""
    extract, source, module, is_package, rel, package = args
    if not extract and parses(source, rel):
        return None
    facts = extract_facts(source, module=module, is_package=is_package, filename=rel, package=package)
    if not extract and not facts["syntax_error"]:
        return None  # the fast check was stricter than ast.parse
    return facts


def _batch(jobs: list[Job]) -> list[FileFacts | None]:
    """Run in a worker process. Without the cyclic GC while it runs (about 5% faster: the
    symbol tables and facts are dicts, and a collection would also walk every object
    inherited from the parent); it is turned on again, and collects, between batches."""
    import gc

    enabled = gc.isenabled()
    gc.disable()
    try:
        return [_job(job) for job in jobs]
    finally:
        if enabled:
            gc.enable()


class _Runner:
    """Runs the jobs of :func:`analyze` in order: serially, or in worker processes started
    as soon as enough work has been found, so they parse while the main process is still
    reading (and hashing) the other files."""

    def __init__(self, jobs: int | None, total_files: int) -> None:
        self.jobs = jobs
        self.total_files = total_files
        self.all: list[Job] = []
        self.queue: list[Job] = []
        self.weight = 0
        """Work found so far, in syntax checks."""
        self.futures: list[Future[list[FileFacts | None]]] = []
        self.pool: ProcessPoolExecutor | None = None
        self.workers = 1
        self.failed = False

    def __enter__(self) -> _Runner:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=kind is None, cancel_futures=True)
            self.pool = None

    def add(self, job: Job, read: int) -> None:
        """Queue ``job``; ``read``: how many files have been read so far."""
        self.all.append(job)
        self.weight += CHECKS_PER_PARSE if job[0] else 1
        if self.failed or (self.jobs is not None and self.jobs <= 1):
            return
        self.queue.append(job)
        if self.pool is None and self.weight >= PARALLEL_THRESHOLD * CHECKS_PER_PARSE:
            projected = self.weight * self.total_files // max(read, 1)  # the work still to find
            workers = _worker_count(self.jobs, projected // CHECKS_PER_PARSE)
            if workers > 1:
                from concurrent.futures import ProcessPoolExecutor  # ~50 ms: only when needed

                try:
                    self.pool = ProcessPoolExecutor(max_workers=workers)
                except (OSError, RuntimeError):
                    self.failed = True
                    return
                self.workers = workers
        if self.pool is not None and len(self.queue) >= BATCH:
            self._submit()

    def _submit(self) -> None:
        queue, self.queue = self.queue, []
        if self.pool is None:
            return
        try:
            for start in range(0, len(queue), BATCH):
                self.futures.append(self.pool.submit(_batch, queue[start : start + BATCH]))
        except (OSError, RuntimeError):  # no processes available: serial
            self.failed = True

    def results(self, progress: ProgressCallback | None, total: int) -> list[FileFacts | None]:
        """The result of every job, in the order they were added."""
        offset = total - len(self.all)
        if self.pool is not None and not self.failed:
            self._submit()
            out: list[FileFacts | None] = []
            try:
                for future in self.futures:
                    out.extend(future.result())
                    if progress is not None:
                        progress(max(0, offset + len(out)), total)
                if len(out) == len(self.all):
                    return out
            except (OSError, RuntimeError):  # a worker died (BrokenProcessPool): serial
                pass
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None
        self.workers = 1
        out = []
        for done, job in enumerate(self.all):
            out.append(_job(job))
            if progress is not None and done % 32 == 0:
                progress(max(0, offset + done), total)
        return out


def analyze(
    config: PikkuConfig,
    *,
    use_cache: bool = True,
    jobs: int | None = None,
    progress: ProgressCallback | None = None,
    prefilter: bool = True,
    read_only_cache: bool = False,
    check_syntax: bool = False,
) -> AnalysisResult:
    """Analyse the project of ``config`` statically; never imports or runs user code.

    ``check_syntax``: also syntax-check the files that do not mention the API (off by
    default: they cannot hold a workflow, an RPC or an event; ``prefilter=False`` extracts
    every file, which reports their syntax errors anyway)."""
    started = time.perf_counter()
    discovery = discover(config)
    run = _Run(
        config,
        use_cache=use_cache,
        prefilter=prefilter,
        read_only=read_only_cache,
        check_syntax=check_syntax,
    )
    run.problems.extend(make_diag(p.code, p.rel, 1, 1, p.message) for p in discovery.problems)
    files = discovery.files
    total = run.stats.files = len(files)
    with _Runner(jobs, total) as runner:
        for index, source_file in enumerate(files):
            if progress is not None and index % 64 == 0:
                progress(index, total)
            run.load(source_file, runner, index + 1)
        results = runner.results(progress, total)
    run.stats.processes = runner.workers
    run.collect(results)
    result = conclude(config, run.units, run.load_other, run.problems, run.stats)
    if progress is not None:
        progress(total, total)
    run.save()
    result.stats.seconds = time.perf_counter() - started
    stats = result.stats
    analyzer_log.debug(
        "analysed %s: %d files, %d candidates, %d parsed, %d from cache in %.2fs",
        config.root, stats.files, stats.candidates, stats.parsed, stats.cache_hits, stats.seconds,
    )
    return result


# ------------------------------------------------------------------ the stages


def read(source_file: SourceFile) -> bytes | Diag:
    """Load: the bytes of a discovered file, or its ``UNREADABLE_FILE`` diagnostic."""
    data = read_source(source_file.fspath)
    if isinstance(data, str):
        return make_diag("UNREADABLE_FILE", source_file.rel, 1, 1, data)
    return data


class Prefilter:
    """Whether a file mentions pikku (:func:`~pikku_analyzer.detect.extract.prefilter_tokens`),
    i.e. is a candidate for extraction. The same answer as ``passes_prefilter``, faster: one
    scan for ``pikku`` (which most tokens contain) first, so a file that does not mention
    pikku is scanned for the other tokens only (the pre-filter reads every byte of the tree)."""

    STEM: Final = b"pikku"

    def __init__(self, package: str) -> None:
        self.tokens = prefilter_tokens(package)
        self.without_stem = tuple(t for t in self.tokens if self.STEM not in t)

    def __call__(self, data: bytes) -> bool:
        if self.STEM in data:
            return passes_prefilter(data, self.tokens)
        return passes_prefilter(data, self.without_stem)


def too_large(source_file: SourceFile, data: bytes) -> Diag | None:
    """``FILE_TOO_LARGE`` for a file over :data:`PARSE_LIMIT_BYTES` (it is not analysed)."""
    if len(data) <= PARSE_LIMIT_BYTES:
        return None
    message = f"{source_file.rel} is {len(data) // 1024} KiB, over the 8 MiB limit: not analysed"
    return make_diag("FILE_TOO_LARGE", source_file.rel, 1, 1, message)


class FactsStore:
    """Extract, with the facts cache as a layer around it: the facts of a file are read from
    ``.pikku/cache/facts`` by content hash, else extracted (``detect``) and cached. Records
    the cache keys a run uses, so :meth:`prune` keeps them."""

    def __init__(self, config: PikkuConfig, *, use_cache: bool = True, read_only: bool = False) -> None:
        self.package = config.package
        self.cache = FactsCache(
            config.root / ".pikku" / "cache" / "facts", enabled=use_cache, read_only=read_only
        )
        self.used: set[str] = set()

    def key(self, source_file: SourceFile, data: bytes) -> str:
        return cache_key(
            data,
            module=source_file.module,
            rel=source_file.rel,
            is_package=source_file.is_package,
            package=self.package,
        )

    def cached(self, key: str) -> FileFacts | None:
        return self.cache.get(key)

    def put(self, key: str, facts: FileFacts) -> None:
        self.used.add(key)
        self.cache.put(key, facts)

    def job(self, extract: bool, source_file: SourceFile, data: bytes) -> Job:
        """A job for a worker process: extract the facts, or only check the syntax."""
        return (extract, data, source_file.module, source_file.is_package, source_file.rel, self.package)

    def facts(self, source_file: SourceFile, data: bytes) -> tuple[FileFacts, bool]:
        """The facts of a file, and whether they came from the cache."""
        key = self.key(source_file, data)
        self.used.add(key)
        facts = self.cache.get(key)
        if facts is not None:
            return facts, True
        facts = extract_facts(
            data,
            module=source_file.module,
            is_package=source_file.is_package,
            filename=source_file.rel,
            package=self.package,
        )
        self.put(key, facts)
        return facts, False

    def prune(self) -> None:
        if self.used:
            self.cache.prune(self.used)


def conclude(
    config: PikkuConfig,
    units: list[Unit],
    loader: Loader | None,
    problems: list[Diag],
    stats: Stats,
) -> AnalysisResult:
    """Link → check → result: the report of the facts of ``units`` (``loader`` parses other
    modules on demand) with the ``problems`` found while loading, suppressions applied."""
    linked = link(units, loader)
    suppressions = {rel: unit.facts["suppressions"] for rel, unit in linked.units.items()}
    diags = apply_suppressions([*problems, *linked.diagnostics], suppressions)
    diags = sorted(set(diags), key=Diag.sort_key)
    return AnalysisResult(
        config=config,
        data=report_data(linked, diags),
        diagnostics=diags,
        stats=stats,
        suppressions=suppressions,
    )


class _Run:
    """The state of one :func:`analyze`: what each file gave (units, problems, the other
    modules the linker may load) and the jobs sent to the runner."""

    def __init__(
        self, config: PikkuConfig, *, use_cache: bool, prefilter: bool, read_only: bool, check_syntax: bool
    ) -> None:
        self.store = FactsStore(config, use_cache=use_cache, read_only=read_only)
        self.check_syntax = check_syntax
        self.syntax_index = SyntaxIndex(
            config.root / ".pikku" / "cache" / SYNTAX_INDEX_NAME,
            enabled=use_cache and prefilter and check_syntax,
            read_only=read_only,
        )
        self.use_cache = use_cache
        self.prefilter = prefilter
        self.candidate = Prefilter(config.package)
        self.stats = Stats()
        self.units: list[Unit] = []
        self.problems: list[Diag] = []
        self.others: dict[str, SourceFile] = {}
        self.pending: list[tuple[SourceFile, bytes, str, bytes]] = []
        """In the order of the jobs: (file, bytes, cache key or "" for a check, digest or b"")."""

    def load(self, source_file: SourceFile, runner: _Runner, count: int) -> None:
        """Read one file (``count``: files read so far) and find its facts or queue a job."""
        data = read(source_file)
        if isinstance(data, Diag):
            self.problems.append(data)
        elif self.prefilter and not self.candidate(data):
            self._other(source_file, data, runner, count)
        else:
            self._candidate(source_file, data, runner, count)

    def _other(self, source_file: SourceFile, data: bytes, runner: _Runner, count: int) -> None:
        """A file that does not mention pikku: a module the linker may load; with
        ``check_syntax``, syntax-checked too (unless known to parse)."""
        if self.check_syntax and len(data) <= PARSE_LIMIT_BYTES:  # a bigger one is not analysed
            digest = content_digest(data)
            if self.syntax_index.known(digest):
                self.stats.syntax_known += 1
            else:
                if self.syntax_index.loaded:
                    # a file known NOT to parse has its facts cached (no index: none)
                    key = self.store.key(source_file, data)
                    facts = self.store.cached(key)
                    if facts is not None and facts["syntax_error"]:
                        self.store.used.add(key)
                        self.stats.cache_hits += 1
                        self.units.append(Unit(source_file.rel, source_file.module, facts))
                        return
                self.stats.syntax_checked += 1
                self.pending.append((source_file, data, "", digest))
                runner.add(self.store.job(False, source_file, data), count)
        self.others.setdefault(source_file.module, source_file)

    def _candidate(self, source_file: SourceFile, data: bytes, runner: _Runner, count: int) -> None:
        self.stats.candidates += 1
        problem = too_large(source_file, data)
        if problem is not None:
            self.problems.append(problem)
            return
        key = self.store.key(source_file, data)
        self.store.used.add(key)
        facts = self.store.cached(key)
        if facts is not None:
            self.stats.cache_hits += 1
            self.units.append(Unit(source_file.rel, source_file.module, facts))
        else:
            self.stats.parsed += 1
            self.pending.append((source_file, data, key, b""))
            runner.add(self.store.job(True, source_file, data), count)

    def collect(self, results: list[FileFacts | None]) -> None:
        """Take the results of the jobs, in order."""
        for (source_file, data, key, digest), facts in zip(self.pending, results, strict=True):
            if facts is None:  # a syntax check: the file parses
                self.syntax_index.add(digest)
                continue
            if not key:  # a syntax check: the file does not parse
                key = self.store.key(source_file, data)
                if self.others.get(source_file.module) is source_file:
                    del self.others[source_file.module]  # a unit now: the linker finds it there
            self.store.put(key, facts)  # a broken file too: the warm run reports it from the cache
            self.units.append(Unit(source_file.rel, source_file.module, facts))

    def load_other(self, module: str) -> Unit | None:
        """The linker's loader: a module that does not mention pikku, parsed on demand."""
        source_file = self.others.get(module)
        if source_file is None:
            return None
        data = read(source_file)
        if isinstance(data, Diag) or len(data) > PARSE_LIMIT_BYTES:
            return None
        facts, _ = self.store.facts(source_file, data)
        self.stats.lazily_loaded += 1
        return Unit(source_file.rel, source_file.module, facts)

    def save(self) -> None:
        """Write what this run learnt: prune the facts cache, save the syntax index."""
        if self.use_cache and self.pending:
            self.store.prune()
        self.syntax_index.save(checked=self.stats.syntax_checked > 0)


def _worker_count(jobs: int | None, misses: int) -> int:
    if jobs is not None and jobs <= 1:
        return 1
    if misses < PARALLEL_THRESHOLD:
        return 1
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    wanted = jobs if jobs is not None else available
    return max(1, min(wanted, available * 2, misses // 16 or 1, 32))


def apply_suppressions(diags: list[Diag], suppressions: dict[str, dict[str, list[str]]]) -> list[Diag]:
    """``diags`` without those silenced by a ``# pikku: ignore[...]`` on their line."""
    out: list[Diag] = []
    for diag in diags:
        codes = suppressions.get(diag.file, {}).get(str(diag.line))
        if codes and ("*" in codes or diag.code in codes):
            continue
        out.append(diag)
    return out


def report_data(linked: LinkResult, diags: list[Diag]) -> ReportData:
    return {
        "version": REPORT_VERSION,
        "workflows": linked.workflows,
        "rpcs": linked.rpcs,
        "events": linked.events,
        "diagnostics": [d.to_dict() for d in diags],
    }


def print_progress_factory(stream: Any = None, *, delay: float = 1.0) -> ProgressCallback:
    """A progress bar on ``stream`` (stderr) that appears only after ``delay`` seconds."""
    out = stream if stream is not None else sys.stderr
    started = time.perf_counter()
    state = {"shown": False}

    def progress(done: int, total: int) -> None:
        if time.perf_counter() - started < delay and not state["shown"]:
            return
        state["shown"] = True
        width = 30
        filled = int(width * done / total) if total else width
        bar = "#" * filled + "-" * (width - filled)
        end = "\n" if done >= total else ""
        out.write(f"\rpikku-analyze [{bar}] {done}/{total} files{end}")
        out.flush()

    return progress


def source_lines(path: Path) -> list[str]:
    """The lines of a file for excerpts (never raises)."""
    data = read_source(path)
    if isinstance(data, str):
        return []
    return data.decode("utf-8", "replace").splitlines()
