"""The analyzer's typed facts: what extraction finds in one file, and what linking reports.

Pipeline: ``files.discover`` → ``cache`` (load) → ``detect.extract`` (:class:`FileFacts` of
one file) → ``link`` (resolve names across modules: the :class:`~pikku_analyzer.link.Project`)
→ ``checks`` (diagnostics) → ``report`` (render).

The per-file facts are JSON-cached (``.pikku/cache/facts``), so they are ``TypedDict``\\ s:
loading a cache entry is one ``json.loads``, with no conversion, and mypy checks every key
that extraction writes and linking, the checks, the report, codegen and watch read. A change
of their shape bumps :data:`FACTS_VERSION` (old cache entries are then misses).

A string-ish value in the facts (:data:`StrValue`) is a literal ``str``, ``"<dynamic>"``
(:data:`DYNAMIC`: not known statically), a :class:`Ref` to a name in another module (a
constant imported from elsewhere, resolved when linking), or ``None`` (absent).

The ``TypedDict`` classes exist for the type checker only: at run time each name is ``dict``
(creating them costs ~14 million instructions, a few ms, at every start of a warm
``pikku-analyze`` run).

To add a fact: add the key to the TypedDict here (``NotRequired`` if older extractors did not
write it), write it in ``detect/extract.py``, bump :data:`FACTS_VERSION`, read it in a check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, NotRequired, TypedDict

DYNAMIC: Final = "<dynamic>"
FACTS_VERSION: Final = 7

JSON = Any
"""A JSON-able value (plain dicts, lists, str, int, float, bool, None)."""


if TYPE_CHECKING:

    class Ref(TypedDict):
        """A dotted name resolved when linking (e.g. an imported string constant)."""

        ref: str

    class Concat(TypedDict):
        """A string built from constants of which some are imported (``USERS + ".create"``):
        the parts are joined when linking (:data:`DYNAMIC` if one is not a string constant)."""

        concat: list[str | Ref]

else:  # plain dicts at run time (see the module docstring)
    Ref = Concat = dict

StrValue = str | Ref | Concat | None
"""A literal string (also one built from constants only: implicit concatenation, ``+``,
f-strings of constants), :data:`DYNAMIC`, a :class:`Ref`, a :class:`Concat`, or ``None``
(not given)."""
Number = int | float | str | None
"""A literal number, :data:`DYNAMIC`, or ``None``."""
Branch = list[int]
"""``[branch id, arm]``: the ``if``/``match`` arm a step is in (ids are per function)."""


if TYPE_CHECKING:

    class SyntaxErrorFact(TypedDict):
        line: int
        column: int
        message: str

    class StepFact(TypedDict):
        """One ``workflow.do(...)`` / ``workflow.sleep(...)`` / ``workflow.wait_for_event(...)`` /
        ``workflow.run_child(...)`` / ``workflow.start_child(...)`` call."""

        step_name: StrValue
        description: StrValue
        line: int
        column: int
        in_loop: bool
        branches: list[Branch]
        type: NotRequired[str]
        """``"rpc"``, ``"inline"``, ``"sleep"``, ``"event"``, ``"child"``, or ``"ref"`` (decided
        when linking)."""
        duration: NotRequired[Number]
        retries: NotRequired[Number]
        retry_delay: NotRequired[Number]
        rpc_name: NotRequired[StrValue]
        rpc_span: NotRequired[list[int]]
        """``[line, column, end line, end column]`` of the RPC name literal (0-based columns)."""
        unresolved: NotRequired[str]
        """Why the step kind cannot be told (``UNRESOLVED_STEP_KIND``)."""
        ref: NotRequired[str]
        """``type == "ref"``: the dotted name of the second argument."""
        has_data: NotRequired[bool]
        event_name: NotRequired[StrValue]
        """``type == "event"``: the event waited for."""
        timeout: NotRequired[Number]
        """``type == "event"``: the timeout as written (``"3d"``, seconds), None without one."""
        workflow_name: NotRequired[StrValue]
        """``type == "child"``: the child workflow."""
        wait: NotRequired[bool]
        """``type == "child"``: ``run_child`` (True) or ``start_child`` (False)."""
        name_span: NotRequired[list[int]]
        """``[line, column]`` (1-based column) of the event/workflow name argument."""

    class NestedFact(TypedDict):
        """A step call reached from the function of an inline step (``NESTED_STEP``)."""

        line: int
        column: int
        call: str
        """``workflow.do``, ``w.sleep``...: as written."""
        step_name: StrValue
        outer: StrValue
        """The name of the inline step whose function makes the call."""

    class NondetFact(TypedDict):
        """A non-deterministic call made in a workflow body outside a step."""

        line: int
        column: int
        name: str
        message: str
        hint: str
        alias: NotRequired[str]
        """The workflow parameter's name where the call is (for ``--fix``: ``await <alias>.now()``)."""

    class HelperCallFact(TypedDict):
        """A call of an imported function with the workflow object as its first argument."""

        ref: str
        line: int
        column: int
        in_loop: bool
        in_step: bool
        branches: list[Branch]

    class FunctionFact(TypedDict):
        """A module-level ``async def`` with a first parameter (a possible workflow body)."""

        line: int
        column: int
        params: list[str]
        input_type: str | None
        output_type: str | None
        steps: list[StepFact]
        nondet: list[NondetFact]
        helper_calls: list[HelperCallFact]
        nested: list[NestedFact]

    class RpcFact(TypedDict):
        """A function registered with ``@pikku_func`` (or ``pikku_func(...)(fn)``)."""

        name: StrValue
        func: str
        line: int
        column: int
        name_line: int
        name_column: int
        is_async: bool
        input_type: str | None
        output_type: str | None

    class WiringFact(TypedDict):
        """A ``wire_workflow(...)`` call."""

        line: int
        column: int
        name: StrValue
        name_line: int
        name_column: int
        func: Ref | str | None
        """A :class:`Ref` to the function, :data:`DYNAMIC` (not a name), or ``None`` (missing)."""
        func_text: str | None
        description: StrValue
        execution_mode: StrValue
        mode_line: int
        mode_column: int
        tags: list[StrValue] | str
        middleware: list[str]
        docs: dict[str, JSON] | str | None
        starred: bool
        """Positional arguments or ``**kwargs``: name/func may be hidden there."""

    class EventFact(TypedDict):
        """A ``wire_event(name=..., payload=...)`` call."""

        line: int
        column: int
        name: StrValue
        name_line: int
        name_column: int
        payload_type: str | None
        starred: bool

    class UseFact(TypedDict):
        """A workflow or event name used outside a workflow body: ``runtime.client("x")``,
        ``workflow_client(runtime, "x")``, ``client.send_event(run_id, "e", payload)``."""

        kind: str
        """``"workflow"`` or ``"event"``."""
        via: str
        """``client``, ``workflow_client`` or ``send_event``."""
        name: StrValue
        line: int
        column: int
        receiver: NotRequired[str]
        """The dotted name of an imported receiver (``from app.runtime import runtime``): the
        use counts when linking finds that name bound to a runtime or client in its module."""

    class FileFacts(TypedDict):
        """Everything extraction found in one file (one cache entry)."""

        v: int
        module: str
        syntax_error: SyntaxErrorFact | None
        internal_error: str | None
        imports: dict[str, str]
        """Local name -> dotted name it is bound to."""
        star_imports: list[str]
        constants: dict[str, str | int | float | Ref | Concat]
        defs: list[str]
        functions: dict[str, FunctionFact]
        rpcs: list[RpcFact]
        wirings: list[WiringFact]
        events: list[EventFact]
        uses: list[UseFact]
        runtimes: dict[str, str]
        """Module-level names bound to a pikku runtime (``"runtime"``) or client (``"client"``)."""
        suppressions: dict[str, list[str]]
        """``{"<line>": [codes]}`` of ``# pikku: ignore[...]`` (``["*"]``: every code)."""

else:  # plain dicts at run time (see the module docstring)
    SyntaxErrorFact = StepFact = NestedFact = NondetFact = HelperCallFact = FunctionFact = RpcFact = WiringFact = EventFact = UseFact = FileFacts = dict

def empty_facts(module: str) -> FileFacts:
    return {
        "v": FACTS_VERSION,
        "module": module,
        "syntax_error": None,
        "internal_error": None,
        "imports": {},
        "star_imports": [],
        "constants": {},
        "defs": [],
        "functions": {},
        "rpcs": [],
        "wirings": [],
        "events": [],
        "uses": [],
        "runtimes": {},
        "suppressions": {},
    }


@dataclass(slots=True)
class Unit:
    """A parsed file: where it is and its facts."""

    rel: str
    module: str
    facts: FileFacts


# ---------------------------------------------------------------- what linking reports
# (the JSON report, ``pikku_typing.meta.AnalysisReport``, as plain values)


if TYPE_CHECKING:

    class StepInfo(TypedDict):
        type: str
        step_name: str
        description: str | None
        line: int
        column: int
        in_loop: bool
        rpc_name: NotRequired[str]
        duration: NotRequired[Number]
        retries: NotRequired[Number]
        retry_delay: NotRequired[Number]
        event_name: NotRequired[str]
        timeout: NotRequired[Number]
        workflow_name: NotRequired[str]
        wait: NotRequired[bool]

    class WorkflowInfo(TypedDict):
        name: str
        description: str | None
        execution_mode: str
        tags: list[str]
        middleware: list[str]
        docs: dict[str, JSON] | None
        func: str
        file: str
        line: int
        input_type: str | None
        output_type: str | None
        steps: list[StepInfo]

    class RpcInfo(TypedDict):
        name: str
        func: str
        input_type: str | None
        output_type: str | None
        is_async: bool
        file: str
        line: int

    class EventInfo(TypedDict):
        """``pikku_typing.meta.EventMeta``."""

        name: str
        payload_type: str | None
        file: str
        line: int
        module: str

    class DiagnosticInfo(TypedDict):
        code: str
        severity: str
        file: str
        line: int
        column: int
        message: str
        hint: str | None

    class ReportData(TypedDict):
        version: int
        workflows: list[WorkflowInfo]
        rpcs: list[RpcInfo]
        events: list[EventInfo]
        diagnostics: list[DiagnosticInfo]

else:  # plain dicts at run time (see the module docstring)
    StepInfo = WorkflowInfo = RpcInfo = EventInfo = DiagnosticInfo = ReportData = dict
