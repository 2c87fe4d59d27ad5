"""``pikku-worker``: run workflow workers from the command line.

    pikku-worker MODULE:RUNTIME [--concurrency N] [--queue QUEUE ...] [--recover]
                                [--log-level LEVEL] [--log-format text|json]
    pikku-worker migrate --dsn DSN

``MODULE:RUNTIME`` names a :class:`~pikku_typing.WorkflowRuntime` in an importable module (the
current directory is on ``sys.path``), e.g. ``myapp.workers:runtime``; importing the module
must register the workflows and RPCs (import the generated ``workflow_wirings``). ``RUNTIME``
may also be a function that returns a runtime (called with no arguments; may be async).

The worker runs ``runtime.serve()`` until SIGTERM or SIGINT: it stops taking jobs, lets the
in-flight ones finish (a second signal cancels them; the queue puts them back), closes the
store and queue and exits 0. Each job is logged on one line, with the runtime's records (logger
``pikku``: runs started and settled, step attempts, retries, recovery); ``--log-format json``
writes one JSON object per line (``time``, ``level``, ``logger``, ``message``, ``run_id``,
``workflow``, ``step_key``, ``attempt``, ``delay`` ...) for log shippers. ``--queue`` (repeatable) limits
the worker to some queues (``pikku-workflow-<workflow>-orchestrator``,
``pikku-workflow-<workflow>-rpc-<rpc name>``). ``--recover`` first queues a pass for every
run that is not settled (see ``WorkflowRuntime.recover``).

``migrate`` creates or upgrades the PostgreSQL schema of the state store and of the queue.

Exit codes: 0 stopped cleanly, 1 the worker failed, 2 usage error (bad ``MODULE:RUNTIME``),
3 the database cannot be reached. Errors are one line on stderr, never a traceback
(``PIKKU_DEBUG=1`` shows it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import inspect
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, NoReturn

from pikku_typing._log import JsonFormatter, OneLineFormatter, fields, worker_log
from pikku_typing._term import one_line
from pikku_typing.errors import StoreUnavailableError

if TYPE_CHECKING:
    from pikku_typing.runtime.runtime import WorkflowRuntime

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_UNAVAILABLE: Final = 3

PROG: Final = "pikku-worker"
log = worker_log


class CliError(Exception):
    """An expected failure: printed as one line, exit with ``code``."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        raise CliError(message, EXIT_USAGE)


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Run pikku workflow workers (or 'migrate --dsn DSN' the PostgreSQL schema).",
    )
    parser.add_argument("target", metavar="MODULE:RUNTIME", help="e.g. myapp.workers:runtime")
    parser.add_argument(
        "--concurrency", type=int, default=None, help="jobs run at once (default: the runtime's)"
    )
    parser.add_argument(
        "--queue",
        action="append",
        dest="queues",
        default=None,
        metavar="QUEUE",
        help="serve only this queue (repeatable; default: every queue)",
    )
    parser.add_argument(
        "--recover", action="store_true", help="first queue a pass for every unsettled run"
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    parser.add_argument(
        "--log-format",
        default="text",
        choices=["text", "json"],
        help="text: one readable line per record (default); json: one JSON object per line",
    )
    return parser


def _build_migrate_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=f"{PROG} migrate", description="Create or upgrade the PostgreSQL schema.")
    parser.add_argument(
        "--dsn",
        default=os.environ.get("PIKKU_POSTGRES_DSN"),
        help="PostgreSQL DSN or URL (default: $PIKKU_POSTGRES_DSN)",
    )
    return parser


# ------------------------------------------------------------------ loading


def load_runtime(target: str) -> WorkflowRuntime | _Awaitable:
    """Import ``MODULE:ATTR`` and return the runtime it names, or the awaitable a runtime
    factory returned (resolved once the event loop runs). Raises :class:`CliError`."""
    from pikku_typing.runtime.runtime import WorkflowRuntime

    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise CliError(f"expected MODULE:RUNTIME (e.g. myapp.workers:runtime), got {target!r}", EXIT_USAGE)
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise CliError(f"cannot import module {module_name!r}: {exc}", EXIT_USAGE) from None
        raise CliError(f"importing {module_name!r} failed: {one_line(exc)}", EXIT_USAGE) from None
    except StoreUnavailableError as exc:
        raise CliError(str(exc), EXIT_UNAVAILABLE) from None
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        raise CliError(f"importing {module_name!r} failed: {one_line(exc)}", EXIT_USAGE) from None
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise CliError(f"module {module_name!r} has no attribute {attr!r}", EXIT_USAGE) from None
    if not isinstance(obj, WorkflowRuntime) and callable(obj):
        try:
            obj = obj()
        except StoreUnavailableError as exc:
            raise CliError(str(exc), EXIT_UNAVAILABLE) from None
        except Exception as exc:
            raise CliError(f"calling {target!r} failed: {one_line(exc)}", EXIT_USAGE) from None
    if inspect.isawaitable(obj):
        obj = _Awaitable(obj)
    if not isinstance(obj, WorkflowRuntime | _Awaitable):
        raise CliError(f"{target!r} is a {type(obj).__name__}, not a WorkflowRuntime", EXIT_USAGE)
    return obj


class _Awaitable:
    """A runtime factory's coroutine, awaited once the event loop runs."""

    def __init__(self, awaitable: Any) -> None:
        self.awaitable = awaitable


# ------------------------------------------------------------------ serving


async def _resolve(loaded: Any, target: str) -> WorkflowRuntime:
    from pikku_typing.runtime.runtime import WorkflowRuntime

    if isinstance(loaded, _Awaitable):
        try:
            loaded = await loaded.awaitable
        except StoreUnavailableError as exc:
            raise CliError(str(exc), EXIT_UNAVAILABLE) from None
        except Exception as exc:
            raise CliError(f"calling {target!r} failed: {one_line(exc)}", EXIT_USAGE) from None
    if not isinstance(loaded, WorkflowRuntime):
        raise CliError(f"{target!r} is a {type(loaded).__name__}, not a WorkflowRuntime", EXIT_USAGE)
    return loaded


def _log_each_job(runtime: WorkflowRuntime) -> None:
    """One log line per job for queues that do not log jobs themselves (``PostgresQueue``
    does: ``kind workflow run=... [step=...] 12.3ms ok``)."""
    from pikku_typing.runtime.queues.base import Job
    from pikku_typing.runtime.queues.postgres import PostgresQueue

    if isinstance(runtime.queue, PostgresQueue):
        return
    inner = runtime.handle_job

    async def handle_job(job: Job) -> None:
        started = time.perf_counter()
        status = "ok"
        try:
            await inner(job)
        except asyncio.CancelledError:
            status = "released"
            raise
        except BaseException as exc:
            status = f"error {one_line(exc)}"
            raise
        finally:
            target = f" step={job.step_key}" if job.step_key else ""
            log.info(
                "%s %s run=%s%s %.1fms %s",
                job.kind, job.workflow, job.run_id, target,
                (time.perf_counter() - started) * 1000, status,
                extra=fields(
                    run_id=job.run_id, workflow=job.workflow, step_key=job.step_key,
                    status=status,
                ),
            )

    runtime.handle_job = handle_job  # type: ignore[method-assign]


async def _check_backends(runtime: WorkflowRuntime) -> None:
    """Reach the store and the queue before serving, so a dead database fails at once."""
    await runtime.state.list_runs(limit=0)
    await runtime.queue.check()


async def _serve(loaded: Any, args: argparse.Namespace) -> int:
    runtime = await _resolve(loaded, args.target)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    main_task = asyncio.current_task()
    signals = 0

    def on_signal(signum: int) -> None:
        nonlocal signals
        signals += 1
        name = signal.Signals(signum).name
        if signals == 1:
            log.info("%s: stopping (in-flight jobs finish; send it again to cancel them)", name)
            stop.set()
        elif main_task is not None:
            log.info("%s again: cancelling in-flight jobs", name)
            main_task.cancel()

    installed: list[int] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, on_signal, signum)
            installed.append(signum)
    try:
        try:
            await _check_backends(runtime)
            _log_each_job(runtime)
            if args.recover:
                queued = await runtime.recover()
                log.info("recover: queued a pass for %d unsettled run(s)", queued)
            concurrency = args.concurrency or runtime.concurrency
            queues = args.queues
            log.info(
                "pikku-worker %d serving %s (concurrency %d) on %r / %r",
                os.getpid(),
                ", ".join(queues) if queues else "every queue",
                concurrency,
                runtime.state,
                runtime.queue,
            )
            await runtime.serve(
                stop=stop, concurrency=concurrency, queues=queues, handle_signals=False
            )
        except asyncio.CancelledError:
            if signals < 2:
                raise
        except (KeyboardInterrupt, SystemExit) as exc:  # raised by a step: runs elsewhere
            log.warning(
                "pikku-worker %d stopped: a step raised %s (its attempt runs again)",
                os.getpid(), type(exc).__name__,
            )
            raise
        log.info("pikku-worker %d stopped", os.getpid())
        return EXIT_OK
    except StoreUnavailableError as exc:
        raise CliError(str(exc), EXIT_UNAVAILABLE) from None
    finally:
        for installed_signum in installed:
            loop.remove_signal_handler(installed_signum)
        with contextlib.suppress(Exception):
            await runtime.close()
        with contextlib.suppress(Exception):
            await runtime.queue.close()
        with contextlib.suppress(Exception):
            await runtime.state.close()


async def _migrate(dsn: str) -> str:
    from pikku_typing.runtime.queues.postgres import PostgresQueue
    from pikku_typing.state.postgres import PostgresWorkflowStateService, describe_dsn

    store = PostgresWorkflowStateService(dsn)
    try:
        version = await store.migrate()
    finally:
        await store.close()
    queue = PostgresQueue(dsn)
    try:
        await queue.migrate()
    finally:
        await queue.close()
    return f"migrated {describe_dsn(dsn)}: pikku schema version {version}, procrastinate schema ready"


def _setup_logging(level_name: str, log_format: str = "text") -> None:
    level = logging.getLevelName(level_name.upper())
    if not isinstance(level, int):
        raise CliError(f"unknown log level {level_name!r}", EXIT_USAGE)
    handler = logging.StreamHandler(sys.stderr)
    tracebacks = level <= logging.DEBUG or bool(os.environ.get("PIKKU_DEBUG"))
    formatter: logging.Formatter = (
        JsonFormatter(tracebacks=tracebacks)
        if log_format == "json"
        else OneLineFormatter(tracebacks=tracebacks)
    )
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # procrastinate logs several lines per job; ours is the one line per job.
    logging.getLogger("procrastinate").setLevel(max(level, logging.WARNING))
    logging.getLogger("psycopg").setLevel(max(level, logging.WARNING))


def _run(argv: Sequence[str]) -> int:
    if argv and argv[0] == "migrate":
        margs = _build_migrate_parser().parse_args(list(argv[1:]))
        if not margs.dsn:
            raise CliError("migrate needs --dsn DSN (or $PIKKU_POSTGRES_DSN)", EXIT_USAGE)
        try:
            message = asyncio.run(_migrate(margs.dsn))
        except StoreUnavailableError as exc:
            raise CliError(str(exc), EXIT_UNAVAILABLE) from None
        except ImportError as exc:
            raise CliError(f"{exc} (pip install 'pikku-workflows[postgres]')", EXIT_FAILED) from None
        print(message)
        return EXIT_OK
    args = _build_parser().parse_args(list(argv))
    if args.concurrency is not None and args.concurrency < 1:
        raise CliError("--concurrency must be at least 1", EXIT_USAGE)
    _setup_logging(args.log_level, args.log_format)
    loaded = load_runtime(args.target)
    return asyncio.run(_serve(loaded, args))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``pikku-worker``; returns the exit code."""
    try:
        return _run(sys.argv[1:] if argv is None else argv)
    except CliError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if os.environ.get("PIKKU_DEBUG"):
            raise
        print(f"{PROG}: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
