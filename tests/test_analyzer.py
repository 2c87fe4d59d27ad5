"""The analyzer's detection: the example app field by field, imports and aliases,
cross-module resolution, step detection at any nesting, purely static analysis."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from pikku_analyzer import SPEC_CODES, AnalysisResult, analyze, load_config
from pikku_analyzer.detect import DYNAMIC
from pikku_typing.meta import AnalysisReport

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def project(tmp_path: Path, files: dict[str, str], table: str = 'src = ["."]') -> Path:
    (tmp_path / "pyproject.toml").write_text(f"[tool.pikku]\n{table}\n", encoding="utf-8")
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return tmp_path


def run(root: Path, **kwargs: Any) -> AnalysisResult:
    kwargs.setdefault("use_cache", False)
    return analyze(load_config(root), **kwargs)


def codes(result: AnalysisResult) -> list[str]:
    return [d.code for d in result.diagnostics]


# --------------------------------------------------------------------------- example app


@pytest.fixture(scope="module")
def example() -> AnalysisResult:
    return run(EXAMPLES)


def test_example_workflow_fields(example: AnalysisResult) -> None:
    report = example.report
    assert report.version == 1
    assert [w.name for w in report.workflows] == ["onboarding"]
    wf = report.workflows[0]
    assert wf.description == "Create a user, send the welcome email and follow-ups"
    assert wf.execution_mode == "remote"
    assert wf.tags == ["users"]
    assert wf.middleware == []
    assert wf.docs == {"summary": "User onboarding", "owner": "growth"}
    assert wf.func == "app.onboarding:onboarding"
    assert wf.file == "app/onboarding.py"
    assert wf.line == 15
    assert wf.input_type == "app.types.OnboardingInput"
    assert wf.output_type == "app.types.OnboardingOutput"


def test_example_steps_field_by_field(example: AnalysisResult) -> None:
    steps = example.data["workflows"][0]["steps"]
    assert [s["type"] for s in steps] == ["rpc", "inline", "rpc", "sleep", "inline", "rpc"]
    create, tax, welcome, cool, profile, follow = steps
    assert create == {
        "type": "rpc",
        "step_name": "createUser",
        "rpc_name": "users.create",
        "description": "Create the account",
        "line": 16,
        "column": 18,
        "retries": 3,
        "retry_delay": "2s",
        "in_loop": False,
    }
    assert tax["step_name"] == "calcTax" and tax["description"] is None and tax["line"] == 24
    assert welcome["step_name"] == "sendWelcome" and welcome["rpc_name"] == "emails.send"
    assert welcome["retries"] is None and welcome["retry_delay"] is None
    assert cool == {
        "type": "sleep",
        "step_name": "coolOff",
        "duration": "1s",
        "description": "Let the welcome email land",
        "line": 28,
        "column": 11,
        "in_loop": False,
    }
    assert profile["step_name"] == "loadProfile" and profile["line"] == 34
    # f-string step name: dynamic, but the literal RPC name is kept
    assert follow["step_name"] == DYNAMIC
    assert follow["rpc_name"] == "emails.send"
    assert follow["description"] == "Send a follow-up email"
    assert follow["in_loop"] is True


def test_example_rpcs_field_by_field(example: AnalysisResult) -> None:
    rpcs = example.data["rpcs"]
    assert [r["name"] for r in rpcs] == ["emails.send", "users.create", "users.get"]
    by_name = {r["name"]: r for r in rpcs}
    assert by_name["users.create"] == {
        "name": "users.create",
        "func": "app.rpcs:create_user",
        "input_type": "app.types.CreateUserInput",
        "output_type": "app.types.User",
        "is_async": True,
        "file": "app/rpcs.py",
        "line": 20,
    }
    assert by_name["users.get"]["input_type"] == "app.types.GetUserInput"
    assert by_name["emails.send"]["func"] == "app.rpcs:send_email"
    assert by_name["emails.send"]["is_async"] is False
    assert by_name["emails.send"]["output_type"] == "app.types.EmailReceipt"


def test_example_has_no_diagnostics(example: AnalysisResult) -> None:
    assert example.diagnostics == []
    assert example.exit_code == 0


def test_report_data_is_exactly_the_pydantic_dump(example: AnalysisResult) -> None:
    dumped = AnalysisReport.model_validate(example.data).model_dump(mode="json")
    assert dumped == example.data
    assert list(dumped) == ["version", "workflows", "rpcs", "events", "diagnostics"]


def test_spec_json_keys_present(example: AnalysisResult) -> None:
    wf = example.data["workflows"][0]
    for key in (
        "name", "description", "execution_mode", "tags", "middleware", "func", "file", "line",
        "input_type", "output_type", "steps",
    ):
        assert key in wf
    for key in ("name", "func", "input_type", "output_type"):
        assert key in example.data["rpcs"][0]


# --------------------------------------------------------------------------- static only


def test_user_code_is_never_imported(tmp_path: Path) -> None:
    marker = tmp_path / "IMPORTED"
    root = project(
        tmp_path,
        {
            "boom/__init__.py": "",
            "boom/side.py": f"""
                from pathlib import Path
                Path({str(marker)!r}).write_text("imported")
                raise SystemExit("never import me")
            """,
            "boom/flow.py": """
                from pikku_typing import Workflow, wire_workflow
                from boom.side import helper
                import boom.side

                async def flow(workflow: Workflow, data: int) -> int:
                    return await workflow.do("a", helper)

                wire_workflow(name="flow", func=flow)
            """,
        },
    )
    result = run(root)
    assert [w["name"] for w in result.data["workflows"]] == ["flow"]
    assert not marker.exists()
    assert "boom.side" not in sys.modules and "boom" not in sys.modules


# --------------------------------------------------------------------------- imports


@pytest.mark.parametrize(
    "imports, call",
    [
        ("from pikku_typing import wire_workflow", "wire_workflow"),
        ("from pikku_typing import wire_workflow as ww", "ww"),
        ("import pikku_typing as pk", "pk.wire_workflow"),
        ("import pikku_typing", "pikku_typing.wire_workflow"),
        ("from pikku_typing.wiring import wire_workflow as w2", "w2"),
        ("from pikku_gen import wire_workflow", "wire_workflow"),
    ],
)
def test_wire_workflow_however_imported(tmp_path: Path, imports: str, call: str) -> None:
    root = project(
        tmp_path,
        {
            "flow.py": f"""
                {imports}

                async def flow(wf, data):
                    await wf.do("a", lambda: 1)

                {call}(name="flow", func=flow)
            """
        },
    )
    result = run(root)
    assert [w["name"] for w in result.data["workflows"]] == ["flow"]
    assert result.data["workflows"][0]["steps"][0]["step_name"] == "a"


def test_unrelated_wire_workflow_is_ignored(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {
            "flow.py": """
                from mylib import wire_workflow

                async def flow(wf, data):
                    pass

                wire_workflow(name="flow", func=flow)
            """
        },
    )
    assert run(root).data["workflows"] == []


@pytest.mark.parametrize(
    "decorator, name",
    [
        ("@pikku_func", "do_it"),
        ("@pikku_func()", "do_it"),
        ('@pikku_func(name="x.y")', "x.y"),
        ("@pikku_func(name=NAME)", "from.constant"),
        ("@pk.pikku_func(name='aliased')", "aliased"),
    ],
)
def test_pikku_func_forms(tmp_path: Path, decorator: str, name: str) -> None:
    root = project(
        tmp_path,
        {
            "rpcs.py": f"""
                import pikku_typing as pk
                from pikku_typing import pikku_func

                NAME = "from.constant"

                {decorator}
                def do_it(data: int) -> str:
                    return str(data)
            """
        },
    )
    rpcs = run(root).data["rpcs"]
    assert [(r["name"], r["func"], r["input_type"], r["output_type"], r["is_async"]) for r in rpcs] == [
        (name, "rpcs:do_it", "int", "str", False)
    ]


def test_type_expressions_resolved_to_importable_names(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {
            "app/__init__.py": "",
            "app/types.py": "class In: ...\nclass Out: ...\n",
            "app/sub/__init__.py": "",
            "app/sub/rpcs.py": """
                from __future__ import annotations
                import typing as t
                from typing import Optional
                from .. import types as ty
                from ..types import In
                from app.types import Out as O
                from pikku_typing import pikku_func

                class Local: ...

                @pikku_func(name="a")
                async def a(data: ty.In) -> "list[O]": ...

                @pikku_func(name="b")
                async def b(data: dict[str, In]) -> Optional[Local]: ...

                @pikku_func(name="c")
                async def c(data: In | None) -> t.Any: ...

                @pikku_func(name="d")
                async def d(data) -> None: ...
            """,
        },
    )
    rpcs = {r["name"]: r for r in run(root).data["rpcs"]}
    assert rpcs["a"]["input_type"] == "app.types.In"
    assert rpcs["a"]["output_type"] == "list[app.types.Out]"
    assert rpcs["b"]["input_type"] == "dict[str, app.types.In]"
    assert rpcs["b"]["output_type"] == "typing.Optional[app.sub.rpcs.Local]"
    assert rpcs["c"]["input_type"] == "app.types.In | None"
    assert rpcs["c"]["output_type"] == "typing.Any"
    assert rpcs["d"]["input_type"] is None
    assert rpcs["d"]["output_type"] == "None"
    assert rpcs["a"]["func"] == "app.sub.rpcs:a"


# --------------------------------------------------------------------------- cross-module


CROSS = {
    "app/__init__.py": "from app.flows.impl import reexported as reexported\n",
    "app/flows/__init__.py": "",
    "app/names.py": 'RPC = "users.create"\nSTEP = "fromConst"\n',
    "app/flows/impl.py": """
        # no pikku import here at all: found by following func=
        from ..names import RPC, STEP
        from app import names

        async def flow_a(workflow, data: int) -> str:
            await workflow.do(STEP, RPC, data)
            await workflow.do("viaModule", names.RPC, data)
            return "x"

        async def reexported(w, data):
            await w.sleep("nap", 3)
    """,
    "app/rpcs.py": """
        from pikku_typing import pikku_func

        @pikku_func(name="users.create")
        async def create(data: int) -> int:
            return data
    """,
    "app/wiring.py": """
        from pikku_typing import wire_workflow
        from app.flows.impl import flow_a
        from app.flows import impl
        from . import flows
        import app as root_pkg
        from app import reexported

        wire_workflow(name="a", func=flow_a)
        wire_workflow(name="b", func=impl.flow_a)
        wire_workflow(name="c", func=flows.impl.flow_a)
        wire_workflow(name="d", func=reexported)
        wire_workflow(name="e", func=root_pkg.reexported)
    """,
}


def test_func_imported_from_another_module(tmp_path: Path) -> None:
    result = run(project(tmp_path, CROSS))
    workflows = {w["name"]: w for w in result.data["workflows"]}
    assert sorted(workflows) == ["a", "b", "c", "d", "e"]
    for name in "abc":
        wf = workflows[name]
        assert wf["func"] == "app.flows.impl:flow_a"
        assert wf["file"] == "app/flows/impl.py"
        assert wf["input_type"] == "int" and wf["output_type"] == "str"
        assert [(s["step_name"], s["rpc_name"]) for s in wf["steps"]] == [
            ("fromConst", "users.create"),
            ("viaModule", "users.create"),
        ]
    for name in "de":
        assert workflows[name]["func"] == "app.flows.impl:reexported"
        assert workflows[name]["steps"][0]["duration"] == 3.0
    assert result.diagnostics == []


def test_func_from_outside_the_sources_is_reported(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {
            "w.py": """
                from pikku_typing import wire_workflow
                from thirdparty.flows import flow
                wire_workflow(name="ext", func=flow)
            """
        },
    )
    result = run(root)
    assert result.data["workflows"][0]["func"] == "thirdparty.flows:flow"
    assert codes(result) == ["UNRESOLVED_WORKFLOW_FUNC"]


# --------------------------------------------------------------------------- steps


def steps_of(tmp_path: Path, body: str, header: str = "") -> list[dict[str, Any]]:
    source = (
        "import functools\nimport asyncio\nfrom datetime import timedelta\n"
        "from pikku_typing import wire_workflow, pikku_func\n"
        + textwrap.dedent(header)
        + "\nasync def flow(wf, data):\n"
        + textwrap.indent(textwrap.dedent(body), "    ")
        + '\n\nwire_workflow(name="flow", func=flow)\n'
    )
    (tmp_path / "pyproject.toml").write_text("[tool.pikku]\n", encoding="utf-8")
    (tmp_path / "flow.py").write_text(source, encoding="utf-8")
    steps: list[dict[str, Any]] = run(tmp_path).data["workflows"][0]["steps"]
    return steps


def test_steps_at_any_nesting(tmp_path: Path) -> None:
    steps = steps_of(
        tmp_path,
        """
        if data:
            await wf.do("if", lambda: 1)
        elif data > 1:
            await wf.do("elif", lambda: 1)
        else:
            await wf.do("else", lambda: 1)
        for x in data:
            await wf.do("for", lambda: 1)
        while data:
            await wf.do("while", lambda: 1)
        try:
            await wf.do("try", lambda: 1)
        except Exception:
            await wf.do("except", lambda: 1)
        else:
            await wf.do("tryelse", lambda: 1)
        finally:
            await wf.do("finally", lambda: 1)
        with open_thing() as t:
            await wf.do("with", lambda: 1)
        async with open_thing() as t:
            await wf.do("asyncwith", lambda: 1)
        match data:
            case {"a": 1}:
                await wf.do("case1", lambda: 1)
            case _:
                await wf.do("case2", lambda: 1)
        async for y in aiter(data):
            await wf.sleep("asyncfor", "1s")
        value = (await wf.do("expr", lambda: 1)) if data else 0
        results = await asyncio.gather(wf.do("g1", lambda: 1), wf.do("g2", lambda: 2))
        """,
    )
    names = [s["step_name"] for s in steps]
    assert names == [
        "if", "elif", "else", "for", "while", "try", "except", "tryelse", "finally", "with",
        "asyncwith", "case1", "case2", "asyncfor", "expr", "g1", "g2",
    ]
    loops = {s["step_name"] for s in steps if s["in_loop"]}
    assert loops == {"for", "while", "asyncfor"}


def test_nested_functions_and_helpers(tmp_path: Path) -> None:
    steps = steps_of(
        tmp_path,
        """
        async def closure():
            await wf.do("closure", "svc.a", {})

        async def receives(w2, n):
            await w2.do("viaParam", lambda: n)

        async def shadowing(wf):
            await wf.do("shadowed-not-ours", lambda: 1)

        for i in range(3):
            await closure()
        await receives(wf, 1)
        await module_helper(wf)
        await wf.do("lambdaStep", lambda: wf.do("insideLambda", lambda: 2))
        """,
        header="""
        async def module_helper(flow_obj):
            await flow_obj.do("moduleHelper", lambda: 3)
        """,
    )
    by_name = {s["step_name"]: s for s in steps}
    assert "shadowed-not-ours" not in by_name
    assert by_name["closure"]["in_loop"] is True
    assert by_name["closure"]["rpc_name"] == "svc.a"
    assert by_name["viaParam"]["type"] == "inline"
    assert by_name["moduleHelper"]["type"] == "inline"
    assert "insideLambda" not in by_name and "lambdaStep" in by_name  # nested: NESTED_STEP


def test_step_classification(tmp_path: Path) -> None:
    steps = steps_of(
        tmp_path,
        """
        await wf.do("literal", "svc.a", data)
        await wf.do("constant", RPC_NAME, data)
        await wf.do("fstring", f"svc.{data}", data)
        await wf.do("lambda", lambda: 1)
        await wf.do("function", helper)
        async def local(): return 1
        await wf.do("local", local)
        await wf.do("partial", functools.partial(helper, 1))
        await wf.do("dataOnlyUnknown", data.name, data)
        """,
        header='RPC_NAME = "svc.const"\n\ndef helper(*a):\n    return 1\n',
    )
    got = {s["step_name"]: (s["type"], s.get("rpc_name")) for s in steps}
    assert got == {
        "literal": ("rpc", "svc.a"),
        "constant": ("rpc", "svc.const"),
        "fstring": ("rpc", DYNAMIC),
        "lambda": ("inline", None),
        "function": ("inline", None),
        "local": ("inline", None),
        "partial": ("inline", None),
        "dataOnlyUnknown": ("rpc", DYNAMIC),
    }


def test_step_options_and_durations(tmp_path: Path) -> None:
    steps = steps_of(
        tmp_path,
        """
        await wf.do("a", "svc.a", {}, description="Desc", retries=0, retry_delay=2.5)
        await wf.do("b", lambda: 1, retries=n, retry_delay=timedelta(minutes=1), description=d)
        await wf.sleep("s1", "1d")
        await wf.sleep("s2", 30)
        await wf.sleep("s3", timedelta(hours=1, minutes=30))
        await wf.sleep("s4", DELAY)
        await wf.sleep("s5", data.delay)
        await wf.sleep(step_name="s6", duration="2h", description="kw")
        """,
        header='DELAY = "10m"\n',
    )
    by_name = {s["step_name"]: s for s in steps}
    assert by_name["a"]["description"] == "Desc"
    assert by_name["a"]["retries"] == 0
    assert by_name["a"]["retry_delay"] == 2.5
    assert by_name["b"]["retries"] == DYNAMIC
    assert by_name["b"]["retry_delay"] == 60.0
    assert by_name["b"]["description"] == DYNAMIC
    assert [by_name[f"s{i}"]["duration"] for i in range(1, 7)] == [
        "1d", 30.0, 5400.0, "10m", DYNAMIC, "2h",
    ]
    assert by_name["s6"]["description"] == "kw"


def test_workflow_param_any_name_and_other_objects_ignored(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {
            "f.py": """
                from pikku_typing import wire_workflow

                async def flow(interaction, data):
                    await interaction.do("mine", lambda: 1)
                    await data.do("notMine", lambda: 1)
                    await other.sleep("notMine2", 1)

                wire_workflow(name="f", func=flow)
            """
        },
    )
    steps = run(root).data["workflows"][0]["steps"]
    assert [s["step_name"] for s in steps] == ["mine"]


def test_wiring_metadata(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {
            "f.py": """
                from pikku_typing import wire_workflow
                from mw import audit
                import mw

                NAME = "const-name"
                MODE = "inline"

                async def flow(wf, data): ...

                wire_workflow(
                    name=NAME,
                    func=flow,
                    description="d",
                    execution_mode=MODE,
                    middleware=[audit, mw.timing, make(1)],
                    tags=("a", "b"),
                    docs={"summary": "s", "n": 1, "nested": {"x": [1, 2]}, "dyn": some_value},
                )
            """
        },
    )
    wf = run(root).data["workflows"][0]
    assert wf["name"] == "const-name"
    assert wf["execution_mode"] == "inline"
    assert wf["middleware"] == ["mw.audit", "mw.timing", "make(1)"]
    assert wf["tags"] == ["a", "b"]
    assert wf["docs"] == {"summary": "s", "n": 1, "nested": {"x": [1, 2]}, "dyn": DYNAMIC}


def test_stable_order(tmp_path: Path) -> None:
    files = {
        f"m{i}.py": f"""
            from pikku_typing import wire_workflow, pikku_func

            @pikku_func(name="rpc{9 - i}")
            def r(data): ...

            async def flow(wf, data):
                await wf.do(v, lambda: 1)

            wire_workflow(name="wf{9 - i}", func=flow)
        """
        for i in range(10)
    }
    result = run(project(tmp_path, files))
    assert [w["name"] for w in result.data["workflows"]] == [f"wf{i}" for i in range(10)]
    assert [r["name"] for r in result.data["rpcs"]] == [f"rpc{i}" for i in range(10)]
    keys = [(d.file, d.line, d.column, d.code) for d in result.diagnostics]
    assert keys == sorted(keys) and len(keys) == 10


def test_spec_codes_are_all_known() -> None:
    from pikku_analyzer import CODES

    for code in SPEC_CODES:
        assert code in CODES


def test_explicit_none_options(tmp_path: Path) -> None:
    steps = steps_of(
        tmp_path,
        """
        await wf.do("a", "svc.a", {}, description=None, retries=None, retry_delay=None)
        await wf.do(f"b{data}", lambda: 1, description=None)
        """,
    )
    assert steps[0]["description"] is None and steps[0]["retries"] is None
    assert steps[0]["retry_delay"] is None
    assert steps[1]["description"] is None


def test_wiring_none_description(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {
            "f.py": """
                from pikku_typing import wire_workflow
                async def flow(wf, data): ...
                wire_workflow(name="f", func=flow, description=None, tags=None, middleware=None, docs=None)
            """
        },
    )
    wf = run(root).data["workflows"][0]
    assert (wf["description"], wf["tags"], wf["middleware"], wf["docs"]) == (None, [], [], None)


def test_exclude_generated_and_hidden_directories(tmp_path: Path) -> None:
    flow = """
        from pikku_typing import wire_workflow
        async def flow(wf, data): ...
        wire_workflow(name="{name}", func=flow)
    """
    root = project(
        tmp_path,
        {
            "app/keep.py": flow.format(name="keep"),
            "app/legacy/old.py": flow.format(name="legacy"),
            "app/thing_test.py": flow.format(name="test"),
            "app/migrations/m1.py": flow.format(name="migration"),
            "gen/pikku_gen/workflow_types.py": flow.format(name="generated"),
            ".venv/lib.py": flow.format(name="venv"),
            "app/__pycache__/x.py": flow.format(name="pycache"),
            "node_modules/x.py": flow.format(name="node"),
        },
        table='src = ["."]\nexclude = ["app/legacy", "*_test.py", "**/migrations/**"]\nout_dir = "gen"',
    )
    assert [w["name"] for w in run(root).data["workflows"]] == ["keep"]


def test_module_names_from_src_roots(tmp_path: Path) -> None:
    flow = """
        from pikku_typing import wire_workflow
        async def flow(wf, data): ...
        wire_workflow(name="{name}", func=flow)
    """
    root = project(
        tmp_path,
        {
            "src/pkg/__init__.py": "",
            "src/pkg/a.py": flow.format(name="a"),
            "src/ns/b.py": flow.format(name="b"),  # namespace package
            "lib/app/__init__.py": "",
            "lib/app/c.py": flow.format(name="c"),
        },
        table='src = ["src", "lib/app"]',
    )
    funcs = {w["name"]: (w["func"], w["file"]) for w in run(root).data["workflows"]}
    assert funcs == {
        "a": ("pkg.a:flow", "src/pkg/a.py"),
        "b": ("ns.b:flow", "src/ns/b.py"),
        "c": ("app.c:flow", "lib/app/c.py"),  # src entry that is a package: named from its parent
    }


def test_star_import(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {
            "f.py": """
                from os.path import *
                from pikku_typing import *

                @pikku_func(name="r")
                def r(data): ...

                async def flow(wf, data):
                    await wf.do("a", "r", data)

                wire_workflow(name="star", func=flow)
            """
        },
    )
    result = run(root)
    assert [w["name"] for w in result.data["workflows"]] == ["star"]
    assert [r["name"] for r in result.data["rpcs"]] == ["r"]
    assert result.diagnostics == []


def test_local_lambda_and_partial_variables_are_inline_steps(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {
            "f.py": """
                import functools
                import time
                from pikku_typing import wire_workflow

                def work(x): return x

                async def flow(wf, data):
                    now = lambda: time.time()
                    later: object = lambda: time.monotonic()
                    job = functools.partial(work, 1)
                    await wf.do("now", now)
                    await wf.do("job", job)
                    stray = lambda: time.time()
                    return stray

                wire_workflow(name="f", func=flow)
            """
        },
    )
    result = run(root)
    steps = result.data["workflows"][0]["steps"]
    assert [(s["step_name"], s["type"]) for s in steps] == [("now", "inline"), ("job", "inline")]
    # the body of `now` runs inside a step; `later` and `stray` are not step callables
    lines = sorted(d.line for d in result.diagnostics)
    assert [d.code for d in result.diagnostics] == ["NON_DETERMINISTIC_CALL"] * 2
    assert lines == [9, 13]


def test_helpers_from_other_modules_receiving_the_workflow(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {
            "app/__init__.py": "",
            "app/helpers.py": """
                import random

                async def send_all(w, items):
                    for item in items:
                        await w.do(f"send-{item}", "mail.send", item, description="send")
                    x = random.random()  # line 6: in the workflow body, through the helper
                    await audit(w)

                async def audit(w2):
                    await w2.do("audit", lambda: 1)

                async def once(w):
                    await w.sleep("pause", "1m")
                    await w.do("flow-step", lambda: 2)  # line 14: same name as a workflow step
            """,
            "app/flow.py": """
                from pikku_typing import wire_workflow, pikku_func
                from app import helpers
                from app.helpers import once

                @pikku_func(name="mail.send")
                def send(data): ...

                async def flow(workflow, data):
                    await workflow.do("flow-step", lambda: 1)
                    await helpers.send_all(workflow, data)
                    if data:
                        await once(workflow)

                wire_workflow(name="flow", func=flow)
            """,
        },
    )
    result = run(root)
    steps = result.data["workflows"][0]["steps"]
    got = [(s["step_name"], s["type"], s["line"], s["in_loop"]) for s in steps]
    assert got == [
        ("flow-step", "inline", 9, False),
        (DYNAMIC, "rpc", 10, True),  # reported at the call site in the workflow's file
        ("audit", "inline", 10, False),
        ("pause", "sleep", 12, False),
        ("flow-step", "inline", 12, False),
    ]
    diags = [(d.code, d.file, d.line) for d in result.diagnostics]
    assert diags == [
        ("NON_DETERMINISTIC_CALL", "app/helpers.py", 6),
        ("DUPLICATE_STEP_NAME", "app/helpers.py", 14),
    ]
    assert "app/flow.py:9" in result.diagnostics[1].message


def test_pikku_func_called_on_a_function(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {
            "rpcs.py": """
                from pikku_typing import pikku_func

                async def impl(data: int) -> str: ...
                def other(data: str) -> int: ...
                def third(data): ...

                registered = pikku_func(name="svc.impl")(impl)
                pikku_func(other)
                for n in ("x", "y"):
                    pikku_func(name=f"dyn.{n}")(third)  # in a loop: not followed
            """
        },
    )
    rpcs = run(root).data["rpcs"]
    assert [(r["name"], r["func"], r["input_type"], r["output_type"], r["is_async"]) for r in rpcs] == [
        ("other", "rpcs:other", "str", "int", False),
        ("svc.impl", "rpcs:impl", "int", "str", True),
    ]
