"""What every check uses: :class:`Diag`, :class:`Loc`, the :class:`Check` registration and
the ``report(code, at, message, **data)`` helper (:class:`Reporter`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple, Protocol

from pikku_analyzer.codes import CODES

if TYPE_CHECKING:
    from pikku_analyzer.facts import DiagnosticInfo
    from pikku_analyzer.link import Project


@dataclass(frozen=True, slots=True)
class Diag:
    """One diagnostic (``pikku_typing.meta.Diagnostic`` as a plain value).

    ``data``: structured values of the finding (e.g. ``rpc_name`` and ``suggestion`` of an
    ``UNKNOWN_RPC``) for tools such as ``--fix``; not part of the report, nor of equality."""

    code: str
    severity: str
    file: str
    line: int
    column: int
    message: str
    hint: str | None = None
    data: Mapping[str, object] = field(default_factory=dict, compare=False)

    def to_dict(self) -> DiagnosticInfo:
        return {
            "code": self.code,
            "severity": self.severity,
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "message": self.message,
            "hint": self.hint,
        }

    def sort_key(self) -> tuple[str, int, int, str, str]:
        return (self.file, self.line, self.column, self.code, self.message)


def make_diag(
    code: str,
    file: str,
    line: int,
    column: int,
    message: str,
    hint: str | None = None,
    data: Mapping[str, object] | None = None,
) -> Diag:
    """A diagnostic of ``code`` (its severity and default hint from :data:`CODES`)."""
    spec = CODES[code]
    return Diag(
        code,
        spec.severity,
        file,
        max(int(line), 1),
        max(int(column), 1),
        message,
        hint or spec.hint,
        data if data is not None else {},
    )


class Loc(NamedTuple):
    """Where a diagnostic points: a file (relative to the root), 1-based line and column."""

    file: str
    line: int
    column: int


class Report(Protocol):
    def __call__(
        self, code: str, at: Loc, message: str, *, hint: str | None = None, **data: object
    ) -> None: ...


@dataclass(frozen=True, slots=True, eq=False)
class Check:
    """A diagnostic family: the codes it reports and the function that finds them."""

    name: str
    codes: frozenset[str]
    run: Callable[[Project, Report], None]


class Reporter:
    """Collects the diagnostics of the checks; ``report(code, at, message, hint=..., **data)``
    (the shape of Fixit's ``LintRule.report``). A check may only report its own codes."""

    def __init__(self) -> None:
        self.diagnostics: list[Diag] = []
        self._check: Check | None = None

    def run(self, check: Check, project: Project) -> None:
        self._check = check
        try:
            check.run(project, self)
        finally:
            self._check = None

    def __call__(
        self, code: str, at: Loc, message: str, *, hint: str | None = None, **data: object
    ) -> None:
        if self._check is not None and code not in self._check.codes:
            raise ValueError(f"check {self._check.name!r} reported {code}, not one of its codes")
        self.diagnostics.append(make_diag(code, at.file, at.line, at.column, message, hint, data))


def did_you_mean(name: str, known: Sequence[str], otherwise: str) -> tuple[str, list[str]]:
    """The hint for an unknown ``name``: "did you mean ...?" with its close matches among
    ``known`` (difflib, cutoff 0.6, at most 3), or ``otherwise``; and the matches."""
    import difflib  # only when a name is unknown: keeps a clean run's imports small

    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    return (f"did you mean {' or '.join(repr(c) for c in close)}?" if close else otherwise), close
