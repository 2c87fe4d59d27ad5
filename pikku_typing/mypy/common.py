"""What the checks share: the map for this run, literal names, assignability, messages."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

from mypy.errorcodes import ErrorCode
from mypy.messages import format_type_distinctly
from mypy.nodes import Context, Expression
from mypy.plugin import CheckerPluginInterface, MethodContext
from mypy.subtypes import is_subtype
from mypy.typeops import try_getting_str_literals
from mypy.types import Instance, Type, get_proper_type

from pikku_typing.mypy import errorcodes, typestrings
from pikku_typing.mypy.meta import MetaStore, WorkflowMap
from pikku_typing.mypy.stale import Kind, StaleChecker
from pikku_typing.mypy.typestrings import Lookup

_AWAITABLES = frozenset({"typing.Coroutine", "typing.Awaitable", "collections.abc.Coroutine"})
MAX_DETAILS = 3


class PikkuContext:
    """State shared by the hooks of one plugin instance (one mypy run, or one dmypy daemon)."""

    def __init__(self, store: MetaStore, lookup: Lookup) -> None:
        self.store = store
        self.lookup = lookup
        self.note_site: tuple[str, int, int] | None = None
        config = store.config
        self.stale = StaleChecker(
            config.src,
            config.root,
            config.meta_path.parent if config.meta_path is not None else None,
        )

    def unknown(self, wmap: WorkflowMap, kind: Kind, name: str) -> str:
        """The message for a name the map does not have: "the workflow map is stale" when a
        source defines it or changed since the map was generated, else "did you mean" (or a
        hint to run pikku-analyze)."""
        label = {"rpc": "RPC", "workflow": "workflow", "event": "event"}[kind]
        staleness = self.stale.check(wmap.path, kind, name)
        if staleness is not None:
            return f"Unknown {label} {name!r}: {staleness.message()}"
        known = {"rpc": wmap.rpcs, "workflow": wmap.workflows, "event": wmap.events}[kind]
        defines = {
            "rpc": "no @pikku_func has",
            "workflow": "no wire_workflow has",
            "event": "no wire_event declares",
        }[kind]
        hint = did_you_mean(name, known) or (
            f" ({defines} this name in the generated map; run pikku-analyze if it was just added)"
        )
        return f"Unknown {label} {name!r}{hint}"

    def current_map(self, api: CheckerPluginInterface, context: Context) -> WorkflowMap | None:
        """The map, or None after telling the user (once per run) why there is none.

        The note goes to the first call site that needs the map. mypy may check one call more
        than once (overload matching checks a call with errors filtered out, then again), so the
        note is repeated at that same site, never at another one.
        """
        loaded = self.store.get()
        if loaded.map is None:
            site = (api.path, context.line, context.column)
            if self.note_site is None:
                self.note_site = site
            if site == self.note_site and loaded.problem is not None:
                api.msg.note(loaded.problem, context, code=errorcodes.NO_MAP)
            return None
        return loaded.map

    def resolve(self, type_str: str | None) -> Type | None:
        return typestrings.resolve(type_str, self.lookup)


def arg_expr(ctx: MethodContext, index: int) -> Expression | None:
    """The single expression passed for formal argument ``index`` (None: absent or ``*args``)."""
    if index >= len(ctx.args) or len(ctx.args[index]) != 1:
        return None
    return ctx.args[index][0]


def literal_str(ctx: MethodContext, index: int) -> str | None:
    """The value of a string-literal argument (also a ``Final`` constant), else None."""
    expr = arg_expr(ctx, index)
    if expr is None:
        return None
    values = try_getting_str_literals(expr, ctx.arg_types[index][0])
    return values[0] if values is not None and len(values) == 1 else None


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


@dataclass(frozen=True)
class Mismatch:
    got: Type
    """The expression's own type (inferred without the expected type as context)."""
    reasons: list[str]
    """What mypy said while inferring it against the expected type (missing keys...)."""


def mismatch(api: CheckerPluginInterface, expr: Expression, expected: Type) -> Mismatch | None:
    """None when ``expr`` is assignable to ``expected``.

    The expression is inferred again with ``expected`` as its type context, as mypy does for an
    annotated assignment (a dict literal against a TypedDict, a list literal of a union...).
    """
    with api.msg.filter_errors(save_filtered_errors=True, filter_deprecated=True) as watcher:
        inferred = api.get_expression_type(expr, type_context=expected)
    reasons = [e.message for e in watcher.filtered_errors() if e.severity == "error"]
    if not reasons and is_subtype(inferred, expected, options=api.options):
        return None
    with api.msg.filter_errors(filter_deprecated=True) as plain:
        got = api.get_expression_type(expr)
    if plain.has_new_errors():
        # Wrong without the context too: that was reported where the expression was checked.
        return None
    return Mismatch(got, reasons[:MAX_DETAILS])


def report_incompatible(
    api: CheckerPluginInterface,
    *,
    subject: str,
    found: Mismatch,
    expected: Type,
    context: Context,
    code: ErrorCode,
) -> None:
    got_s, expected_s = format_type_distinctly(found.got, expected, options=api.options)
    api.fail(f"{subject} has incompatible type {got_s}; expected {expected_s}", context, code=code)
    for reason in found.reasons:
        api.msg.note(reason, context, code=code)


def check_value(
    api: CheckerPluginInterface,
    expr: Expression | None,
    expected: Type | None,
    *,
    subject: str,
    code: ErrorCode,
) -> None:
    """Report ``expr`` (an argument) when it is not assignable to ``expected`` (nothing when
    either is unknown): ``{subject} has incompatible type ...`` plus mypy's reasons as notes."""
    if expr is None or expected is None:
        return
    found = mismatch(api, expr, expected)
    if found is not None:
        report_incompatible(
            api, subject=subject, expected=expected, found=found, context=expr, code=code
        )


def with_awaited_result(default: Type, result: Type) -> Type:
    """``Coroutine[Any, Any, Any]`` (the default return type of an async method) -> ``...[result]``."""
    proper = get_proper_type(default)
    if isinstance(proper, Instance) and proper.args and proper.type.fullname in _AWAITABLES:
        return proper.copy_modified(args=[*proper.args[:-1], result])
    return default
