"""``NON_LITERAL_RPC_NAME``, ``DUPLICATE_RPC_NAME``: every RPC has one static, unique name."""

from __future__ import annotations

from pikku_analyzer.checks.base import Check, Loc, Report
from pikku_analyzer.facts import DYNAMIC
from pikku_analyzer.link import Project


def check_rpc_names(project: Project, report: Report) -> None:
    first: dict[str, tuple[str, int]] = {}
    for decl in project.rpcs:
        fact = decl.fact
        at = Loc(decl.unit.rel, fact["name_line"], fact["name_column"])
        if decl.name == DYNAMIC:
            report(
                "NON_LITERAL_RPC_NAME",
                at,
                f"the RPC name of `{fact['func']}` is not a string literal",
                func=fact["func"],
            )
        elif decl.first:
            first[decl.name] = (decl.unit.rel, fact["line"])
        else:
            rel, line = first[decl.name]
            report(
                "DUPLICATE_RPC_NAME",
                at,
                f"RPC name {decl.name!r} is already defined at {rel}:{line}",
                rpc_name=decl.name,
                first_file=rel,
                first_line=line,
            )


CHECK = Check(
    "RPC names", frozenset({"NON_LITERAL_RPC_NAME", "DUPLICATE_RPC_NAME"}), check_rpc_names
)
