"""Events (SPEC section 8): ``NON_LITERAL_EVENT_NAME`` (a ``wire_event`` whose name is not
static), ``DUPLICATE_EVENT_NAME`` (two ``wire_event`` with one name) and ``UNKNOWN_EVENT`` (a
wait or a send names an event no ``wire_event`` declares)."""

from __future__ import annotations

from pikku_analyzer.checks.base import Check, Loc, Report, did_you_mean
from pikku_analyzer.checks.names import name_uses
from pikku_analyzer.facts import DYNAMIC
from pikku_analyzer.link import Project


def check_events(project: Project, report: Report) -> None:
    for decl in project.events:
        fact = decl.fact
        if decl.name == DYNAMIC:
            if fact["name"] is None:
                why = "the name is passed positionally or through **kwargs" if fact["starred"] else "it has no name="
            else:
                why = "name= is empty or not a string known statically"
            report(
                "NON_LITERAL_EVENT_NAME",
                Loc(decl.unit.rel, fact["name_line"], fact["name_column"]),
                f"wire_event(...): {why}; waits and sends of this event cannot be checked",
            )
        elif decl.duplicate_of is not None:
            rel, line = decl.duplicate_of
            report(
                "DUPLICATE_EVENT_NAME",
                Loc(decl.unit.rel, decl.fact["name_line"], decl.fact["name_column"]),
                f"event {decl.name!r} is already declared at {rel}:{line}",
                event=decl.name,
                first_file=rel,
                first_line=line,
            )
    known = sorted(e["name"] for e in project.event_infos())
    for use in name_uses(project):
        if use.kind != "event" or use.name in known:
            continue
        hint, close = did_you_mean(use.name, known, "declare it with wire_event(name=..., payload=...)")
        what = "waits for" if use.via == "wait_for_event" else "sends"
        report(
            "UNKNOWN_EVENT",
            use.at,
            f"{use.via}(...) {what} event {use.name!r}, which no wire_event declares",
            hint=hint,
            event=use.name,
            suggestion=close[0] if len(close) == 1 else None,
        )


CHECK = Check(
    "events", frozenset({"NON_LITERAL_EVENT_NAME", "DUPLICATE_EVENT_NAME", "UNKNOWN_EVENT"}), check_events
)
