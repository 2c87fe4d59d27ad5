"""Issue 10, analyzer: no finding is lost, nothing CPython accepts is refused, nothing it
refuses is accepted. Each test failed before its fix."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from pikku_analyzer import analyze, load_config, render
from pikku_analyzer.codegen import render_package
from pikku_analyzer.compat import compare, parse_baseline
from pikku_analyzer.engine import parses

RPCS = """
from pikku_typing import pikku_func

@pikku_func(name="users.create")
async def create_user(data: dict) -> dict:
    return data
"""


def project(tmp_path: Path, files: dict[str, str | bytes]) -> Path:
    (tmp_path / "pyproject.toml").write_text('[tool.pikku]\nsrc = ["."]\n', encoding="utf-8")
    for rel, content in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(textwrap.dedent(content), encoding="utf-8")
    return tmp_path


def codes(root: Path) -> list[tuple[str, str, int]]:
    result = analyze(load_config(root), use_cache=False)
    return [(d.code, d.file, d.line) for d in result.diagnostics]


# --------------------------------------------------------------------------- duplicates


DUPLICATES = {
    "app/__init__.py": "",
    "app/rpcs.py": RPCS,
    "app/first.py": """
        from pikku_typing import Workflow, wire_workflow

        class FirstIn(dict): ...

        async def first(workflow: Workflow, data: FirstIn) -> None:
            await workflow.do("a", "users.create", {})

        wire_workflow(name="same", func=first)
    """,
    "app/second.py": """
        import time
        from pikku_typing import Workflow, wire_workflow

        class SecondIn(dict): ...

        async def second(workflow: Workflow, data: SecondIn) -> None:
            await workflow.do("b", "users.craete", {})
            t = time.time()

        wire_workflow(name="same", func=second)
    """,
}


def test_duplicate_workflow_keeps_every_wiring_and_checks_every_body(tmp_path: Path) -> None:
    root = project(tmp_path, DUPLICATES)
    result = analyze(load_config(root), use_cache=False)
    found = [(d.code, d.file, d.line) for d in result.diagnostics]
    assert ("DUPLICATE_WORKFLOW_NAME", "app/second.py", 11) in found
    # the later body is still checked
    assert ("UNKNOWN_RPC", "app/second.py", 8) in found
    assert ("NON_DETERMINISTIC_CALL", "app/second.py", 9) in found
    workflows = result.data["workflows"]
    assert [(w["name"], w["func"]) for w in workflows] == [
        ("same", "app.first:first"),
        ("same", "app.second:second"),
    ]
    assert [s["step_name"] for s in workflows[1]["steps"]] == ["b"]
    # generated from the first wiring, workflow_meta.json included
    generated = {f.path.name: f.content for f in render_package(result.report, result.config)}
    typed = generated["workflow_map.pyi"]
    assert "FirstIn" in typed and "SecondIn" not in typed
    meta = json.loads(generated["workflow_meta.json"])
    assert [(w["name"], w["func"]) for w in meta["workflows"]] == [("same", "app.first:first")]
    # --baseline compares the first wiring too (the one that is generated and runs)
    baseline = parse_baseline(generated["workflow_meta.json"], "baseline")
    assert compare(baseline, result.report) == []


# --------------------------------------------------------------------------- constant names


def test_names_built_from_constants_are_static(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {
            "app/__init__.py": "",
            "app/rpcs.py": RPCS,
            "app/consts.py": 'from typing import Final\nUSERS: Final = "users"\n',
            "app/flow.py": """
                from typing import Final
                from pikku_typing import Workflow, wire_workflow
                from app import consts
                from app.consts import USERS

                PREFIX: Final = "step"
                NAME = PREFIX + "-two"
                CREATE = USERS + ".create"

                async def flow(workflow: Workflow, data: dict) -> None:
                    await workflow.do("step" "-one", "users" ".create", {})
                    await workflow.do(NAME, consts.USERS + ".create", {})
                    await workflow.do(f"{PREFIX}-{3}", f"{USERS}.create", {})
                    await workflow.do(PREFIX + "-4", CREATE, {})
                    await workflow.do(f"{PREFIX}-{data}", lambda: 1, description="runtime value")

                wire_workflow(name="flow", func=flow)
            """,
        },
    )
    result = analyze(load_config(root), use_cache=False)
    steps = result.data["workflows"][0]["steps"]
    assert [s["step_name"] for s in steps] == ["step-one", "step-two", "step-3", "step-4", "<dynamic>"]
    assert [s.get("rpc_name") for s in steps[:4]] == ["users.create"] * 4
    assert [d.code for d in result.diagnostics] == []


# --------------------------------------------------------------------------- outside functions


def test_function_of_an_outside_module_is_an_inline_step(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {
            "app/__init__.py": "",
            "app/rpcs.py": RPCS,
            "app/names.py": 'RPC = "users.create"\n',
            "app/flow.py": """
                import os
                import time
                import uuid
                from pikku_typing import Workflow, wire_workflow
                from app import names

                async def flow(workflow: Workflow, data: dict) -> None:
                    await workflow.do("t", time.time)
                    await workflow.do("u", uuid.uuid4)
                    await workflow.do("c", os.getcwd)
                    await workflow.do("r", names.RPC, {})
                    await workflow.do("x", names.MISSING, {})

                wire_workflow(name="flow", func=flow)
            """,
        },
    )
    result = analyze(load_config(root), use_cache=False)
    steps = {s["step_name"]: s for s in result.data["workflows"][0]["steps"]}
    assert [steps[n]["type"] for n in "tuc"] == ["inline"] * 3
    assert steps["r"]["type"] == "rpc" and steps["r"]["rpc_name"] == "users.create"
    # a project module's unknown name is still undecidable
    assert [(d.code, d.line) for d in result.diagnostics] == [("UNRESOLVED_STEP_KIND", 13)]


# --------------------------------------------------------------------------- decoding


def test_undecodable_file_is_a_syntax_error_like_cpython(tmp_path: Path) -> None:
    files: dict[str, str | bytes] = {
        "app/__init__.py": "",
        "app/rpcs.py": RPCS,
        # non-UTF-8 only in a comment: ast.parse/compile accept it, `python file.py` does not
        "app/candidate.py": b"from pikku_typing import wire_workflow\n# caf\xe9\n",
        "app/plain.py": b"x = 1\n# caf\xe9\n",
        # a valid coding cookie is honoured (and columns count characters)
        "app/latin.py": (
            b"# -*- coding: latin-1 -*-\n"
            b"from pikku_typing import Workflow, wire_workflow\n"
            b"async def flow(workflow: Workflow, data: dict) -> None:\n"
            b"    x = '\xe9\xe9'; await workflow.do(f'caf\xe9', 'users.craete', {})\n"
            b"wire_workflow(name='caf\xe9', func=flow)\n"
        ),
    }
    root = project(tmp_path, files)
    for rel in ("app/candidate.py", "app/plain.py"):
        run = subprocess.run([sys.executable, str(root / rel)], capture_output=True, text=True, check=False)
        assert "SyntaxError" in run.stderr  # CPython refuses them
    run = subprocess.run([sys.executable, str(root / "app/latin.py")], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    result = analyze(load_config(root), use_cache=False, check_syntax=True)  # plain.py: no pikku
    found = {(d.code, d.file, d.line) for d in result.diagnostics}
    assert ("SYNTAX_ERROR", "app/candidate.py", 2) in found
    assert ("SYNTAX_ERROR", "app/plain.py", 2) in found
    message = next(d.message for d in result.diagnostics if d.file == "app/plain.py")
    assert "Non-UTF-8" in message and "no encoding declared" in message
    # the other files are analysed, the cookie file with its encoding
    assert [w["name"] for w in result.data["workflows"]] == ["café"]
    assert result.data["workflows"][0]["steps"][0]["step_name"] == "café"
    unknown = next(d for d in result.diagnostics if d.code == "UNKNOWN_RPC")
    assert (unknown.file, unknown.line, unknown.column) == ("app/latin.py", 4, 42)
    # the fast syntax check agrees
    assert not parses(b"x = 1\n# caf\xe9\n")
    assert parses(b"# coding: latin-1\nx = 1\n# caf\xe9\n")


def test_undecodable_file_in_the_cli_report(tmp_path: Path) -> None:
    root = project(tmp_path, {"ok.py": RPCS, "bad.py": b"import pikku_typing\nx = 1  # \xff\n"})
    result = analyze(load_config(root), use_cache=False)
    data = json.loads(render(result, "json"))
    assert [(d["code"], d["file"]) for d in data["diagnostics"]] == [("SYNTAX_ERROR", "bad.py")]
    assert [r["name"] for r in data["rpcs"]] == ["users.create"]


def test_folding_is_bounded(tmp_path: Path) -> None:
    """Constant folding never builds huge strings (a hostile or generated file)."""
    doubling = "".join(f"S{i + 1} = S{i} + S{i}\n" for i in range(60))
    root = project(
        tmp_path,
        {
            "flow.py": "from pikku_typing import Workflow, wire_workflow\n"
            'S0 = "ab"\n' + doubling + "async def flow(workflow: Workflow, data: dict) -> None:\n"
            '    await workflow.do(S60, lambda: 1, description="d")\n'
            '    await workflow.do(f"{S0:>999999999}", lambda: 1, description="d")\n'
            '    await workflow.do(S5, lambda: 1)\n'
            'wire_workflow(name="flow", func=flow)\n',
        },
    )
    result = analyze(load_config(root), use_cache=False)
    names = [s["step_name"] for s in result.data["workflows"][0]["steps"]]
    assert names == ["<dynamic>", "<dynamic>", "ab" * 32]


def test_function_used_in_the_body_and_inside_a_step(tmp_path: Path) -> None:
    """A helper called from the body (its steps are the workflow's) and from inside an inline
    step (NESTED_STEP), in either order: both uses are seen."""
    orders = ("await inner()\n    await workflow.do('a', inner)", "await workflow.do('a', inner)\n    await inner()")
    for index, order in enumerate(orders):
        (tmp_path / str(index)).mkdir()
        root = project(
            tmp_path / str(index),
            {
                "flow.py": "from pikku_typing import Workflow, wire_workflow\n"
                "async def flow(workflow: Workflow, data: dict) -> None:\n"
                "    async def inner():\n"
                "        await workflow.do('b', lambda: 1)\n"
                f"    {order}\n"
                "wire_workflow(name='flow', func=flow)\n",
            },
        )
        result = analyze(load_config(root), use_cache=False)
        assert [s["step_name"] for s in result.data["workflows"][0]["steps"]] == ["b", "a"]
        assert [(d.code, d.line) for d in result.diagnostics] == [("NESTED_STEP", 4)]
