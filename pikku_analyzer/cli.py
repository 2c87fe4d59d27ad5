"""``pikku-analyze [ROOT]``: analyse a project statically, report, and generate its package.

Exit codes: 0 no error diagnostic, 1 an error diagnostic (or stale generated files with
``--check``, or changes pending with ``--diff``), 2 a usage or configuration error. Never a
traceback: anything unexpected is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from pikku_analyzer.codes import CODES

if TYPE_CHECKING:
    from pikku_analyzer.engine import AnalysisResult


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{message} (see pikku-analyze --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pikku-analyze",
        description=(
            "Statically analyse pikku workflows ([tool.pikku] in pyproject.toml): report "
            "workflows, steps, RPCs and diagnostics, and generate the typed package."
        ),
    )
    parser.add_argument("root", nargs="?", default=None, metavar="ROOT", help="project directory (default: .)")
    parser.add_argument(
        "--format", choices=("text", "json", "sarif", "mermaid"), default="text", help="report format"
    )
    parser.add_argument("--output", "-o", metavar="FILE", help="write the report to FILE instead of stdout")
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 when the generated files are stale (or on error diagnostics)",
    )
    parser.add_argument("--no-generate", action="store_true", help="do not generate the package")
    parser.add_argument(
        "--fix", action="store_true", help="apply safe fixes (UNKNOWN_RPC, UNKNOWN_EVENT, UNKNOWN_WORKFLOW with exactly one close match; time.time(), datetime.now(), uuid.uuid4(), random.random() in a workflow body to await workflow.now()/uuid4()/random())"
    )
    parser.add_argument("--diff", action="store_true", help="with --fix/--add-ignore: print a diff, change nothing")
    parser.add_argument(
        "--add-ignore",
        metavar="CODE",
        action="append",
        default=[],
        help="add '# pikku: ignore[CODE]' to every line with that diagnostic (repeatable)",
    )
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write .pikku/cache")
    parser.add_argument("--jobs", "-j", type=int, default=None, metavar="N", help="worker processes for parsing")
    parser.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    parser.add_argument(
        "--all-files",
        action="store_true",
        help=(
            "run the full detection on every file, not only on those that mention pikku "
            "(their syntax errors are then reported too; slower)"
        ),
    )
    parser.add_argument(
        "--check-syntax",
        action="store_true",
        help=(
            "also syntax-check the files that do not mention pikku and report SYNTAX_ERROR for "
            "them (off by default: they cannot hold a workflow, an RPC or an event; a file that "
            "mentions pikku and does not parse is always reported)"
        ),
    )
    parser.add_argument(
        "--baseline",
        metavar="PATH|git:REF",
        help=(
            "compare with a baseline workflow_meta.json (a file, or git:REF to read the committed "
            "one from git) and report changes that break runs in flight (SPEC section 9)"
        ),
    )
    return parser


def _err(message: str) -> None:
    print(f"pikku-analyze: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(list(sys.argv[1:] if argv is None else argv))
    except _UsageError as exc:
        _err(f"error: {exc}")
        return 2
    except SystemExit as exc:  # --help / --version from argparse
        return exc.code if isinstance(exc.code, int) else 0
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except BrokenPipeError:
        # stdout was closed (e.g. piped into head): silence the interpreter's flush at exit
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:  # never a traceback
        _err(f"internal error: {type(exc).__name__}: {exc} (please report this)")
        return 2


def _main(argv: list[str]) -> int:
    from pikku_analyzer.config import ConfigError, defaults_warning, load_config

    parser = build_parser()
    parser.add_argument(  # --watch: the loop lives in pikku_analyzer.watch
        "--watch", action="store_true", help="analyse, then re-analyse and regenerate on every save"
    )
    args = parser.parse_args(argv)
    if args.watch and args.baseline:
        raise _UsageError("--baseline cannot be combined with --watch")
    if args.watch:
        try:
            from pikku_analyzer.watch import run_watch
        except ModuleNotFoundError as exc:
            if exc.name != "watchfiles":
                raise
            _err("error: --watch needs the watchfiles package: pip install watchfiles")
            return 2
        return run_watch(args)
    if args.jobs is not None and args.jobs < 1:
        raise _UsageError("--jobs must be at least 1")
    for code in args.add_ignore:
        if code.upper() not in CODES:
            raise _UsageError(f"--add-ignore: unknown code {code!r} (known: {', '.join(CODES)})")
    if args.diff and not (args.fix or args.add_ignore):
        args.fix = True
    try:
        config = load_config(args.root)
    except ConfigError as exc:
        _err(f"config error: {exc}")
        return 2
    warning = defaults_warning(config)
    if warning is not None:
        _err(f"warning: {warning}")

    from pikku_analyzer.engine import analyze, print_progress_factory

    progress = None
    if not args.no_progress and sys.stderr.isatty():
        progress = print_progress_factory(sys.stderr)
    use_cache = not args.no_cache
    result = analyze(
        config,
        use_cache=use_cache,
        jobs=args.jobs,
        progress=progress,
        read_only_cache=args.check,
        prefilter=not args.all_files,
        check_syntax=args.check_syntax,
    )

    if args.fix or args.add_ignore:
        from pikku_analyzer.fix import apply_edits, plan_edits

        edits = plan_edits(result, fix=args.fix, add_ignore=[c.upper() for c in args.add_ignore])
        if args.diff:
            diff = apply_edits(edits, dry_run=True)
            sys.stdout.write(diff)
            return 1 if diff else 0
        changed = apply_edits(edits, dry_run=False)
        if changed:
            count = sum(1 for line in changed.splitlines() if line.startswith("--- a/"))
            print(f"pikku-analyze: fixed {count} file{'s' if count != 1 else ''}", file=sys.stderr)
            result = analyze(
                config,
                use_cache=use_cache,
                jobs=args.jobs,
                prefilter=not args.all_files,
                check_syntax=args.check_syntax,
            )

    if args.baseline:
        from pikku_analyzer.compat import BaselineError, check_baseline

        try:
            check_baseline(result, args.baseline)
        except BaselineError as exc:
            _err(f"error: --baseline: {exc}")
            return 2

    from pikku_analyzer.report import render
    from pikku_typing._term import use_colour

    color = args.output is None and use_colour(sys.stdout)
    text = render(result, args.format, color=color)
    if args.output:
        try:
            out_path = Path(args.output)
            out_path.parent.mkdir(parents=True, exist_ok=True)
            out_path.write_text(text, encoding="utf-8")
        except OSError as exc:
            _err(f"error: cannot write {args.output}: {exc.strerror or exc}")
            return 2
    else:
        sys.stdout.write(text)
        sys.stdout.flush()

    code = result.exit_code
    if not args.no_generate:
        try:
            stale = _generate(result, check=args.check)
        except OSError as exc:
            _err(f"error: cannot write the generated files: {exc}")
            return 2
        except Exception as exc:  # a codegen bug must not hide the report above
            _err(f"error: code generation failed: {type(exc).__name__}: {exc}")
            return 2
        if stale:
            code = 1
    return code


def _generate(result: AnalysisResult, *, check: bool) -> bool:
    """Render the package (codegen) and write it, or with ``check`` list stale files.
    Returns True when ``check`` found stale files."""
    if result.has_syntax_errors:
        _err("not generating: fix the SYNTAX_ERROR diagnostics first (the last output is kept)")
        return False
    from pikku_analyzer.codegen import (
        obsolete_generated,
        remove_obsolete,
        render_package,
        stale_generated,
        write_generated,
    )

    config = result.config
    files = render_package(result.report, config)
    root = config.root
    if check:
        stale = [*stale_generated(files), *obsolete_generated(files, config)]
        if stale:
            names = ", ".join(_rel(p, root) for p in stale)
            _err(f"generated files are stale: {names} (run pikku-analyze to regenerate)")
            return True
        return False
    written = write_generated(files)
    removed = remove_obsolete(files, config)
    if written:
        names = ", ".join(_rel(p, root) for p in written)
        _err(f"generated {len(written)} file{'s' if len(written) != 1 else ''}: {names}")
    if removed:
        _err(f"removed {len(removed)} obsolete generated file(s): {', '.join(_rel(p, root) for p in removed)}")
    return False


def _rel(path: Path, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(root).as_posix()
    except ValueError:
        return str(path)


if __name__ == "__main__":
    raise SystemExit(main())
