"""VALID and INVALID examples for every diagnostic code (Fixit style).

Each snippet is the module ``app/flow.py`` of a project that also has ``app/rpcs.py``
defining the RPCs ``users.create`` and ``emails.send``. An INVALID snippet must produce
the code (on the line marked ``# <-``, when marked); a VALID one must not produce it.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pikku_analyzer import CODES, SPEC_CODES, analyze, load_config

RPCS = """
from pikku_typing import pikku_func

@pikku_func(name="users.create")
async def create_user(data: dict) -> dict:
    return data

@pikku_func(name="emails.send")
def send_email(data: dict) -> None:
    return None
"""

HEAD = "from pikku_typing import Workflow, pikku_func, rpc, wire_workflow\n"


EVENT = 'from pikku_typing import wire_event\nwire_event(name="paid", payload=dict)\n'
CLIENT = 'from pikku_typing import WorkflowRuntime\nruntime = WorkflowRuntime()\nclient = runtime.client("flow")\n'
HELPER = 'async def helper(w):\n    await w.do("inner", lambda: 1)\n'


def wf(body: str, wiring: str = 'wire_workflow(name="flow", func=flow)', header: str = "") -> str:
    return (
        HEAD
        + textwrap.dedent(header)
        + "\nasync def flow(workflow: Workflow, data: dict) -> None:\n"
        + textwrap.indent(textwrap.dedent(body).strip("\n"), "    ")
        + "\n\n"
        + wiring
        + "\n"
    )


CASES: dict[str, tuple[list[str], list[str]]] = {
    "DYNAMIC_STEP_NAME": (
        [
            wf('await workflow.do("literal", lambda: 1)'),
            wf('await workflow.do(f"item-{data}", lambda: 1, description="per item")'),
            wf('await workflow.do(NAME, lambda: 1)', header='NAME = "const"\n'),
            wf('await workflow.sleep(data["n"], 1, description="wait")'),
        ],
        [
            wf('await workflow.do(f"item-{data}", lambda: 1)  # <-'),
            wf('await workflow.do(data["name"], "users.create", {})  # <-'),
            wf('await workflow.sleep(data["n"], "1s")  # <-'),
        ],
    ),
    "DUPLICATE_STEP_NAME": (
        [
            wf('await workflow.do("a", lambda: 1)\nawait workflow.do("b", lambda: 2)'),
            wf('for x in data:\n    await workflow.do("a", lambda: 1)'),
            wf('if data:\n    await workflow.do("a", lambda: 1)\nelse:\n    await workflow.do("a", lambda: 2)'),
            wf(
                'match data:\n    case 1:\n        await workflow.do("a", lambda: 1)\n'
                '    case _:\n        await workflow.do("a", lambda: 2)'
            ),
        ],
        [
            wf('await workflow.do("a", lambda: 1)\nawait workflow.do("a", lambda: 2)  # <-'),
            wf('await workflow.do("a", "users.create", {})\nawait workflow.sleep("a", 1)  # <-'),
            wf('await workflow.do("a", lambda: 1)\nif data:\n    await workflow.do("a", lambda: 2)  # <-'),
        ],
    ),
    "UNKNOWN_RPC": (
        [
            wf('await workflow.do("a", "users.create", {})'),
            wf('await workflow.do("a", f"users.{data}", {})'),
            wf('await workflow.do("a", lambda: rpc.invoke("nope", {}))'),
            # names built from constants only are static (issue 10)
            wf('await workflow.do("a", "users" ".create", {})'),
            wf('await workflow.do("a", "users" + ".create", {})'),
            wf('await workflow.do("a", f"users.{ACTION}", {})', header='ACTION = "create"\n'),
            wf('await workflow.do("a", RPC, {})', header='from typing import Final\nP: Final = "users"\nRPC = P + ".create"\n'),
        ],
        [
            wf('await workflow.do("a", "users" + ".craete", {})  # <-'),
            wf('await workflow.do("a", f"users.{ACTION}", {})  # <-', header='ACTION = "craete"\n'),
            wf('await workflow.do("a", f"{P}.{1}", {})  # <-', header='P = "users"\n'),
            wf('await workflow.do("a", "users.craete", {})  # <-'),
            wf('await workflow.do("a", RPC, {})', header='RPC = "no.such.rpc"\n'),
        ],
    ),
    "DUPLICATE_WORKFLOW_NAME": (
        [
            wf("pass", 'wire_workflow(name="one", func=flow)\nwire_workflow(name="two", func=flow)'),
        ],
        [
            wf("pass", 'wire_workflow(name="one", func=flow)\nwire_workflow(name="one", func=flow)  # <-'),
        ],
    ),
    "DUPLICATE_RPC_NAME": (
        [
            wf("pass", header='@pikku_func(name="other.name")\ndef f(data): ...\n'),
        ],
        [
            wf("pass", header='@pikku_func(name="x")\ndef f(data): ...\n@pikku_func(name="x")  # <-\ndef g(data): ...\n'),
            wf("pass", header="@pikku_func\ndef same(data): ...\n@pikku_func(name='same')  # <-\ndef g(data): ...\n"),
        ],
    ),
    "MISSING_NAME": (
        [wf("pass")],
        [wf("pass", "wire_workflow(func=flow)  # <-")],
    ),
    "MISSING_FUNC": (
        [wf("pass")],
        [wf("pass", 'wire_workflow(name="flow")  # <-')],
    ),
    "NON_LITERAL_WORKFLOW_NAME": (
        [
            wf("pass", 'wire_workflow(name="flow", func=flow)'),
            wf("pass", "wire_workflow(name=NAME, func=flow)", header='NAME = "flow"\n'),
            # built from constants only: static (issue 10)
            wf("pass", 'wire_workflow(name=f"flow{1}", func=flow)'),
            wf("pass", 'wire_workflow(name="fl" "ow", func=flow)'),
            wf("pass", "wire_workflow(name=PREFIX + '.flow', func=flow)", header='PREFIX = "app"\n'),
        ],
        [
            wf("pass", 'wire_workflow(name=f"flow{suffix()}", func=flow)  # <-'),
            wf("pass", "wire_workflow(name=compute(), func=flow)  # <-"),
            wf("pass", 'wire_workflow(name="", func=flow)  # <-'),
        ],
    ),
    "INVALID_EXECUTION_MODE": (
        [
            wf("pass", 'wire_workflow(name="f", func=flow, execution_mode="inline")'),
            wf("pass", 'wire_workflow(name="f", func=flow, execution_mode="remote")'),
            wf("pass", 'wire_workflow(name="f", func=flow)'),
            wf("pass", 'wire_workflow(name="f", func=flow, execution_mode=mode())'),  # a warning instead
        ],
        [
            wf("pass", 'wire_workflow(name="f", func=flow, execution_mode="local")  # <-'),
            wf("pass", 'wire_workflow(name="f", func=flow, execution_mode="REMOTE")  # <-'),
        ],
    ),
    "NON_LITERAL_EXECUTION_MODE": (
        [
            wf("pass", 'wire_workflow(name="f", func=flow, execution_mode="inline")'),
            wf("pass", "wire_workflow(name='f', func=flow, execution_mode=MODE)", header='MODE = "inline"\n'),
        ],
        [
            wf("pass", 'wire_workflow(name="f", func=flow, execution_mode=mode())  # <-'),
            wf("pass", "import os\nwire_workflow(name='f', func=flow, execution_mode=os.environ['M'])  # <-"),
        ],
    ),
    "UNRESOLVED_STEP_KIND": (
        [
            wf('await workflow.do("a", lambda: 1)'),
            wf('await workflow.do("a", helper)', header="def helper(): return 1\n"),
            wf('await workflow.do("a", "users.create", {})'),
            wf("import functools\nawait workflow.do('a', functools.partial(print, 1))"),
            # a function of a module outside the project is an inline step (issue 10)
            wf("import time\nawait workflow.do('a', time.time)"),
            wf("import uuid\nawait workflow.do('a', uuid.uuid4)"),
            wf("import os\nawait workflow.do('a', os.getcwd)"),
            wf("from os import getcwd\nawait workflow.do('a', getcwd)"),
        ],
        [
            wf('await workflow.do("a", data["fn"])  # <-'),
            wf('fn = pick()\nawait workflow.do("a", fn)  # <-'),
            wf('await workflow.do("a", make_step())  # <-'),
        ],
    ),
    "NON_DETERMINISTIC_CALL": (
        [
            wf("import time\nawait workflow.do('now', time.time)"),
            wf("import time\nawait workflow.do('now', lambda: time.time())"),
            wf("import random\nasync def pick():\n    return random.random()\nawait workflow.do('r', pick)"),
            wf("await workflow.do('p', lambda: rpc.invoke('users.create', {}))"),
            wf("import random\nrng = random.Random(42)"),
            # the recorded helpers of SPEC 8
            wf("now = await workflow.now()\ntoken = await workflow.uuid4()\nx = await workflow.random()"),
        ],
        [
            wf("import time\nt = time.time()  # <-"),
            wf("import time\nt = time.monotonic()  # <-"),
            wf("from datetime import datetime\nt = datetime.now()  # <-"),
            wf("import datetime\nt = datetime.datetime.utcnow()  # <-"),
            wf("from datetime import date\nt = date.today()  # <-"),
            wf("import random\nx = random.randint(1, 6)  # <-"),
            wf("from random import choice\nx = choice([1, 2])  # <-"),
            wf("import uuid\nx = uuid.uuid4()  # <-"),
            wf("import uuid\nx = uuid.uuid1()  # <-"),
            wf("import os\nx = os.environ['HOME']  # <-"),
            wf("import os\nx = os.environ.get('HOME')  # <-"),
            wf("import os\nx = os.getenv('HOME')  # <-"),
            wf("x = open('f').read()  # <-"),
            wf("import requests\nx = requests.get('http://x')  # <-"),
            wf("import httpx\nasync with httpx.AsyncClient() as c:  # <-\n    pass"),
            wf("x = await rpc.invoke('users.create', {})  # <-"),
            wf("import asyncio\nawait asyncio.sleep(1)  # <-"),
            wf("import time\nawait workflow.do('a', 'users.create', {'t': time.time()})  # <-"),
            wf("import time\nif data:\n    for i in data:\n        t = time.time()  # <-"),
        ],
    ),
    "SYNTAX_ERROR": (
        [wf("pass")],
        [
            HEAD + "async def flow(workflow, data)  # <-\n    pass\n",
            "import pikku_typing\ndef (:  # <-\n",
            "from pikku_typing import rpc\nx = 'unterminated  # <-\n",
        ],
    ),
    "UNREADABLE_FILE": ([wf("pass")], []),
    "FILE_TOO_LARGE": ([wf("pass")], []),
    "SYMLINK_LOOP": ([wf("pass")], []),
    "NON_LITERAL_RPC_NAME": (
        [wf("pass", header='@pikku_func(name="a.b")\ndef f(data): ...\n')],
        [wf("pass", header="@pikku_func(name=make())  # <-\ndef f(data): ...\n")],
    ),
    "UNRESOLVED_WORKFLOW_FUNC": (
        [wf("pass")],
        [
            wf("pass", 'from ext import other\nwire_workflow(name="f", func=other)  # <-'),
            wf("pass", 'wire_workflow(name="f", func=lambda w, d: None)  # <-'),
            wf("pass", 'def sync(w, d): ...\nwire_workflow(name="f", func=sync)  # <-'),
        ],
    ),
    "ANALYZER_ERROR": ([wf("pass")], []),
    "NESTED_STEP": (
        [
            wf('await workflow.do("a", lambda: 1)'),
            wf('async def inner():\n    return 1\nawait workflow.do("a", inner)'),
            wf('await workflow.do("a", lambda: 1)\nawait helper(workflow)', header=HELPER),
            wf('await workflow.do("a", lambda: rpc.invoke("users.create", {}))'),
        ],
        [
            wf('await workflow.do("a", lambda: workflow.do("b", lambda: 1))  # <-'),
            wf('await workflow.do("a", lambda: workflow.sleep("b", 1))  # <-'),
            wf('async def inner():\n    await workflow.do("b", lambda: 1)  # <-\nawait workflow.do("a", inner)'),
            wf('fn = lambda: workflow.do("b", lambda: 1)  # <-\nawait workflow.do("a", fn)'),
            wf("await workflow.do('a', lambda: helper(workflow))", header=HELPER.replace("1)", "1)  # <-")),
            wf(
                "import functools\nawait workflow.do('a', functools.partial(helper, workflow))",
                header=HELPER.replace("1)", "1)  # <-"),
            ),
            # a function used both ways: its steps are steps of the body, and nested in the step
            wf("await helper(workflow)\nawait workflow.do('a', lambda: helper(workflow))", header=HELPER.replace("1)", "1)  # <-")),
            wf('async def inner():\n    await workflow.do("b", lambda: 1)  # <-\nawait inner()\nawait workflow.do("a", inner)'),
            wf('async def inner():\n    await workflow.do("b", lambda: 1)  # <-\nawait workflow.do("a", inner)\nawait inner()'),
        ],
    ),
    "UNKNOWN_EVENT": (
        [
            wf('await workflow.wait_for_event("w", "paid")', header=EVENT),
            wf('await workflow.wait_for_event("w", PAID, timeout="1d")', header=EVENT + 'PAID = "pa" + "id"\n'),
            wf('await workflow.wait_for_event("w", data["event"])'),  # not static: not checked
            wf("pass", CLIENT + 'async def h(): await client.send_event("r", "paid", {})\n', header=EVENT),
            wf("pass", CLIENT + 'async def h(): await runtime.send_event("r", "paid", {})\n', header=EVENT),
            wf("pass", 'class Bus:\n    def send_event(self, a, b): ...\nBus().send_event(1, "other")\n'),
        ],
        [
            wf('await workflow.wait_for_event("w", "payd")  # <-', header=EVENT),
            wf('await workflow.wait_for_event("w", "paid", timeout=5)  # <-'),
            wf("pass", CLIENT + 'async def h(): await client.send_event("r", "nope", {})  # <-\n', header=EVENT),
            wf("pass", CLIENT + 'async def h(): await runtime.send_event("r", "nope", {})  # <-\n'),
            wf(
                "pass",
                'from pikku_typing.testing import WorkflowTestEnv\n'
                'async def t(env: WorkflowTestEnv) -> None:\n'
                '    await env.send_event("r", "nope", {})  # <-\n',
            ),
        ],
    ),
    "NON_LITERAL_EVENT_NAME": (
        [
            wf("pass", header=EVENT),
            wf("pass", header=EVENT + 'P = "order"\nwire_event(name=P + ".paid", payload=dict)\n'),
        ],
        [
            wf("pass", header=EVENT + "wire_event(name=make_name(), payload=dict)  # <-\n"),
            wf("pass", header=EVENT + 'wire_event(name="", payload=dict)  # <-\n'),
            wf("pass", header=EVENT + "wire_event(payload=dict)  # <-\n"),
            wf("pass", header=EVENT + "wire_event(**spec)  # <-\n"),
        ],
    ),
    "DUPLICATE_EVENT_NAME": (
        [
            wf("pass", header=EVENT),
            wf("pass", header=EVENT + 'wire_event(name="refunded", payload=dict)\n'),
        ],
        [
            wf("pass", header=EVENT + 'wire_event(name="paid", payload=int)  # <-\n'),
            wf("pass", header=EVENT + 'wire_event(name="pa" "id", payload=dict)  # <-\n'),
        ],
    ),
    "UNKNOWN_WORKFLOW": (
        [
            wf('await workflow.run_child("c", "flow", {})'),
            wf('await workflow.start_child("c", "flow", {})'),
            wf("pass", 'wire_workflow(name="flow", func=flow)\n' + CLIENT),
            wf("pass", 'import boto3\ns3 = boto3.client("s3")\n'),  # not a pikku runtime
            wf("pass", 'wire_workflow(name="flow", func=flow)\nfrom pikku_gen import workflow_client\n'
               'c = workflow_client(WorkflowRuntime(), "flow")\nfrom pikku_typing import WorkflowRuntime\n'),
        ],
        [
            wf('await workflow.run_child("c", "flwo", {})  # <-'),
            wf('await workflow.start_child("c", "billing", {})  # <-'),
            wf("pass", 'wire_workflow(name="flow", func=flow)\n' + CLIENT.replace('"flow")', '"nope")  # <-')),
            wf(
                "pass",
                'wire_workflow(name="flow", func=flow)\nfrom pikku_typing import WorkflowRuntime\n'
                'async def main() -> None:\n'
                '    async with WorkflowRuntime() as rt:\n'
                '        await rt.client("nope").start({})  # <-\n',
            ),
            wf(
                "pass",
                'wire_workflow(name="flow", func=flow)\nfrom pikku_gen import workflow_client\n'
                'def make(runtime):\n    return workflow_client(runtime, "flwo")  # <-\n',
            ),
        ],
    ),
}

# UNREADABLE_FILE, FILE_TOO_LARGE, SYMLINK_LOOP and ANALYZER_ERROR are about files, not
# snippets: their INVALID cases are in tests/test_robustness.py.


def analyse_snippet(tmp_path: Path, source: str) -> list[tuple[str, int]]:
    (tmp_path / "pyproject.toml").write_text('[tool.pikku]\nsrc = ["."]\n', encoding="utf-8")
    app = tmp_path / "app"
    app.mkdir(exist_ok=True)
    (app / "__init__.py").write_text("", encoding="utf-8")
    (app / "rpcs.py").write_text(RPCS, encoding="utf-8")
    (app / "flow.py").write_text(source, encoding="utf-8")
    result = analyze(load_config(tmp_path), use_cache=False)
    return [(d.code, d.line) for d in result.diagnostics if d.file == "app/flow.py"]


def _params(kind: int) -> list[object]:
    out: list[object] = []
    for code, cases in CASES.items():
        for index, source in enumerate(cases[kind]):
            out.append(pytest.param(code, source, id=f"{code}-{index}"))
    return out


def test_every_code_has_cases() -> None:
    from pikku_analyzer.codes import COMPAT_CODES  # --baseline codes: tests/test_compat.py

    assert set(CASES) == set(CODES) - set(COMPAT_CODES)
    for code in SPEC_CODES:
        valid, invalid = CASES[code]
        assert valid and invalid, code


@pytest.mark.parametrize("code, source", _params(1))
def test_invalid(tmp_path: Path, code: str, source: str) -> None:
    found = analyse_snippet(tmp_path, source)
    assert code in [c for c, _ in found], found
    marked = [i for i, line in enumerate(source.splitlines(), start=1) if line.rstrip().endswith("# <-")]
    if marked:
        assert (code, marked[0]) in found, found


@pytest.mark.parametrize("code, source", _params(0))
def test_valid(tmp_path: Path, code: str, source: str) -> None:
    found = analyse_snippet(tmp_path, source)
    assert code not in [c for c, _ in found], found


@pytest.mark.parametrize("code", sorted(CODES))
def test_code_metadata(code: str) -> None:
    spec = CODES[code]
    assert spec.severity in ("error", "warning")
    assert spec.title and spec.help and spec.hint


SPEC_SEVERITIES = {
    "DYNAMIC_STEP_NAME": "warning",
    "DUPLICATE_STEP_NAME": "error",
    "UNKNOWN_RPC": "error",
    "DUPLICATE_WORKFLOW_NAME": "error",
    "DUPLICATE_RPC_NAME": "error",
    "MISSING_NAME": "error",
    "MISSING_FUNC": "error",
    "NON_LITERAL_WORKFLOW_NAME": "error",
    "INVALID_EXECUTION_MODE": "error",
    "UNRESOLVED_STEP_KIND": "warning",
    "NON_DETERMINISTIC_CALL": "warning",
    "SYNTAX_ERROR": "error",
}


def test_spec_severities() -> None:
    assert {c: CODES[c].severity for c in SPEC_CODES} == SPEC_SEVERITIES


def test_every_diagnostic_has_a_hint(tmp_path: Path) -> None:
    source = wf('await workflow.do(f"x{data}", "users.craete", {})\nimport time\ntime.time()')
    (tmp_path / "pyproject.toml").write_text("[tool.pikku]\n", encoding="utf-8")
    (tmp_path / "flow.py").write_text(source, encoding="utf-8")
    result = analyze(load_config(tmp_path), use_cache=False)
    assert {d.code for d in result.diagnostics} == {"DYNAMIC_STEP_NAME", "UNKNOWN_RPC", "NON_DETERMINISTIC_CALL"}
    assert all(d.hint for d in result.diagnostics)


# --------------------------------------------------------------------------- suppressions


def test_suppression_by_code(tmp_path: Path) -> None:
    source = wf(
        "import time\n"
        "a = time.time()  # pikku: ignore[NON_DETERMINISTIC_CALL]\n"
        "b = time.time()  # pikku: ignore[DYNAMIC_STEP_NAME]\n"
        "c = time.time()  # pikku: ignore\n"
        "d = time.time()  # noqa  # pikku: ignore[unknown_rpc, non_deterministic_call]\n"
        "e = '# pikku: ignore'; f = time.time()\n"
    )
    found = analyse_snippet(tmp_path, source)
    lines = sorted(line for code, line in found if code == "NON_DETERMINISTIC_CALL")
    first = source.splitlines().index("    import time") + 1
    assert lines == [first + 2, first + 5]


def test_suppression_on_the_diagnostic_line_only(tmp_path: Path) -> None:
    source = wf(
        'await workflow.do(  # pikku: ignore[UNKNOWN_RPC]\n    "a",\n    "users.craete",\n    {},\n)\n'
        'await workflow.do("b", "users.craete", {})  # pikku: ignore[UNKNOWN_RPC]\n'
    )
    found = analyse_snippet(tmp_path, source)
    assert [c for c, _ in found] == ["UNKNOWN_RPC"]  # the first reports on the literal's line


def test_suppressed_error_gives_exit_code_zero(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.pikku]\n", encoding="utf-8")
    (tmp_path / "f.py").write_text(
        wf("pass", 'wire_workflow(func=flow)  # pikku: ignore[MISSING_NAME]'), encoding="utf-8"
    )
    result = analyze(load_config(tmp_path), use_cache=False)
    assert result.diagnostics == [] and result.exit_code == 0
