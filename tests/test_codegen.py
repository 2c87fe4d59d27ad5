"""Code generation (SPEC section 5): the files, their content, determinism, writing only what
changed, staleness, leftovers, and that the generated code runs."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
from codegen_fixture import example_report, examples_config, report_of_examples

from pikku_analyzer.codegen import (
    HEADER,
    GeneratedFile,
    obsolete_generated,
    remove_obsolete,
    render_package,
    stale_generated,
    write_generated,
)
from pikku_analyzer.codegen.render import identifier, layout, pystr, signature, wiring_modules
from pikku_analyzer.codegen.types import TypeRenderer, split_module
from pikku_analyzer.config import PikkuConfig
from pikku_typing.meta import (
    AnalysisReport,
    Diagnostic,
    EventMeta,
    RpcMeta,
    RpcStepMeta,
    WorkflowMeta,
)

REPO = Path(__file__).resolve().parents[1]
MODULES = (
    "__init__",
    "workflow_map",
    "workflow_meta",
    "workflow_types",
    "workflow_wirings",
    "workflow_workers",
)


def config(tmp_path: Path, *, package: str = "pikku_gen", split: bool = True) -> PikkuConfig:
    return PikkuConfig(
        root=tmp_path,
        package=package,
        out_dir=tmp_path / "out",
        stub_dir=tmp_path / ("stubs" if split else "out"),
    )


def by_name(files: list[GeneratedFile]) -> dict[str, str]:
    """The generated package's files by name (not the partial stubs of ``pikku_typing``)."""
    return {f.path.name: f.content for f in files if f.path.parent.name != "pikku_typing"}


def typed_api(files: list[GeneratedFile]) -> dict[str, str]:
    return {f.path.name: f.content for f in files if f.path.parent.name == "pikku_typing"}


# ------------------------------------------------------------------ layout and content


def test_files_and_where_they_go(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    files = render_package(example_report(), cfg)
    paths = [f.path for f in files]
    assert paths == sorted(paths)
    assert all(p.is_absolute() for p in paths)
    py = {p.name for p in paths if p.parent == cfg.package_dir.resolve()}
    pyi = {p.name for p in paths if p.parent == cfg.stub_package_dir.resolve()}
    assert py == {f"{m}.py" for m in MODULES} | {"workflow_meta.json"}
    assert pyi == {f"{m}.pyi" for m in MODULES}  # every .pyi has its .py twin
    api = {
        p.relative_to(cfg.stub_dir.resolve()).as_posix()
        for p in paths
        if p.parent.name == "pikku_typing"
    }
    assert api == {"pikku_typing/__init__.pyi", "pikku_typing/py.typed"}


def test_stub_dir_defaults_to_the_package_dir(tmp_path: Path) -> None:
    cfg = config(tmp_path, split=False)
    files = render_package(example_report(), cfg)
    assert {f.path.parent for f in files} == {cfg.package_dir.resolve()}
    assert len(files) == 2 * len(MODULES) + 1


def test_partial_stubs_of_pikku_typing(tmp_path: Path) -> None:
    """SPEC 5, second round: ``<stub_dir>/pikku_typing/`` is a PEP 561 partial stub package
    whose ``Workflow``, ``rpc``, ``WorkflowRuntime`` and ``WorkflowClient`` are typed by the
    maps, and which re-exports every other public name of the installed library."""
    import pikku_typing

    report = example_report().model_copy(
        update={
            "events": [
                EventMeta(
                    name="payment.received",
                    payload_type="app.types.WelcomeEmail",
                    file="app/rpcs.py",
                    line=3,
                )
            ]
        }
    )
    api = typed_api(render_package(report, config(tmp_path)))
    assert api["py.typed"] == "partial\n"
    init = api["__init__.pyi"]
    exported = init.split("__all__ = [", 1)[1]
    assert sorted(re.findall(r'"([^"]+)",', exported)) == sorted(pikku_typing.__all__)
    for name in pikku_typing.__all__:
        if name not in ("Workflow", "WorkflowClient", "WorkflowRuntime", "rpc"):
            assert f"{name} as {name}" in init, name
    assert "class Workflow(_Workflow, metaclass=abc.ABCMeta):" in init
    assert 'rpc_name: Literal["users.create"],\n        data: app.types.CreateUserInput,' in init
    assert 'event_name: Literal["payment.received"],\n        timeout: None = None,' in init
    assert ") -> app.types.WelcomeEmail | None: ..." in init  # with a timeout
    assert 'name: Literal["onboarding"],\n    ) -> WorkflowClient[' in init
    assert 'workflow_name: Literal["onboarding"],' in init
    assert "name: KnownEventName," in init and "workflow_name: KnownWorkflowName," in init
    # not when the stubs sit beside the generated .py files (no stub_dir of their own)
    assert typed_api(render_package(report, config(tmp_path, split=False))) == {}


def test_wirings_import_the_modules_that_declare_events(tmp_path: Path) -> None:
    report = example_report().model_copy(
        update={
            "events": [
                EventMeta(name="a", file="app/events.py", line=1, module="app.events"),
                EventMeta(name="b", file="app/more_events.py", line=1),
            ]
        }
    )
    modules = wiring_modules(report)
    assert "app.events" in modules and "app.more_events" in modules


def test_header_on_every_python_file(tmp_path: Path) -> None:
    for file in render_package(example_report(), config(tmp_path)):
        if file.path.suffix in (".py", ".pyi"):
            assert file.content.startswith(HEADER + "\n"), file.path
            assert "do not edit" in HEADER.lower() and "pikku-analyze" in HEADER
        assert file.content.endswith("\n") and not file.content.endswith("\n\n")


def test_generated_file_is_frozen() -> None:
    file = GeneratedFile(path=Path("/x/y.py"), content="")
    with pytest.raises(AttributeError):
        file.content = "z"  # type: ignore[misc]


def test_do_is_overloaded_per_rpc_with_a_catch_all_last(tmp_path: Path) -> None:
    stub = by_name(render_package(example_report(), config(tmp_path)))["workflow_types.pyi"]
    for name, data, out in (
        ("users.create", "app.types.CreateUserInput", "app.types.User"),
        ("users.get", "app.types.GetUserInput", "app.types.User"),
        ("emails.send", "app.types.WelcomeEmail", "app.types.EmailReceipt"),
    ):
        block = f'        rpc_name: Literal["{name}"],\n        data: {data},\n'
        assert block in stub
        after = stub.split(block, 1)[1]
        assert after.split("-> ", 1)[1].startswith(f"{out}: ...")
    do = stub.split("class RPCInvoker:", 1)[0].split("async def wait_for_event(", 1)[0]
    assert do.count("@overload") == 3 + 2 + 1
    overloads = do.split("@overload")
    assert "rpc_name: KnownRPCName," in overloads[-1]
    assert "-> NoReturn" in overloads[-1]
    assert "import app.types\n" in stub
    invoker = stub.split("class RPCInvoker:", 1)[1]
    assert invoker.count("@overload") == 3 + 1
    assert (
        '        rpc_name: Literal["users.get"],\n        data: app.types.GetUserInput,\n'
        "    ) -> app.types.User: ..." in invoker
    )
    assert "def invoke(self, rpc_name: KnownRPCName, data: object) -> NoReturn: ..." in invoker


def test_workflow_client_overloads_and_maps(tmp_path: Path) -> None:
    files = by_name(render_package(example_report(), config(tmp_path)))
    stub = files["workflow_map.pyi"]
    assert 'name: Literal["onboarding"],\n' in stub
    assert ") -> WorkflowClient[app.types.OnboardingInput, app.types.OnboardingOutput]: ..." in stub
    assert (
        "def workflow_client(runtime: WorkflowRuntime, name: KnownWorkflowName) -> NoReturn" in stub
    )
    assert 'RPCName: TypeAlias = Literal["emails.send", "users.create", "users.get"]' in stub
    assert 'WorkflowName: TypeAlias = Literal["onboarding"]' in stub
    assert '"users.create": RPCSpec[app.types.CreateUserInput, app.types.User],' in stub
    py = files["workflow_map.py"]
    assert (
        "def workflow_client(runtime: WorkflowRuntime, name: str) -> WorkflowClient[Any, Any]:"
        in py
    )
    assert "import app" not in py  # the runtime module never imports user code


def test_init_exports(tmp_path: Path) -> None:
    files = by_name(render_package(example_report(), config(tmp_path)))
    for name in ("__init__.py", "__init__.pyi"):
        for export in (
            "Workflow",
            "wire_workflow",
            "WorkflowMap",
            "RPCMap",
            "workflow_client",
            "rpc",
        ):
            assert f'"{export}",' in files[name], (name, export)
        assert "workflow_wirings" not in files[name].split('"""', 2)[2]  # no import cycle


def test_meta_json_is_the_report_sorted_without_diagnostics(tmp_path: Path) -> None:
    report = example_report()
    report = report.model_copy(
        update={
            "rpcs": list(reversed(report.rpcs)),
            "diagnostics": [
                Diagnostic(code="X", severity="warning", file="a.py", line=1, column=1, message="m")
            ],
        }
    )
    text = by_name(render_package(report, config(tmp_path)))["workflow_meta.json"]
    loaded = AnalysisReport.model_validate_json(text)
    assert loaded.diagnostics == []
    assert [r.name for r in loaded.rpcs] == ["emails.send", "users.create", "users.get"]
    assert loaded.workflows == report.workflows
    assert json.loads(text)["version"] == 2  # META_VERSION: the report's layout plus "types"


def test_workers_one_orchestrator_per_workflow_one_step_worker_per_rpc(tmp_path: Path) -> None:
    report = example_report().model_copy(deep=True)
    inline = WorkflowMeta(
        name="quick",
        execution_mode="inline",
        func="app.quick:quick",
        file="app/quick.py",
        line=1,
        steps=[RpcStepMeta(step_name="s", rpc_name="users.get", line=2)],
    )
    report = report.model_copy(update={"workflows": [*report.workflows, inline]})
    workers = by_name(render_package(report, config(tmp_path)))["workflow_workers.py"]
    assert 'orchestrator_queue("onboarding"): onboarding_orchestrator,' in workers
    assert 'step_queue("onboarding", "users.create"): onboarding_step_users_create,' in workers
    assert 'step_queue("onboarding", "emails.send"): onboarding_step_emails_send,' in workers
    assert 'orchestrator_queue("quick"): quick_orchestrator,' in workers
    assert 'step_queue("quick"' not in workers  # inline mode: steps run in the orchestrator
    assert workers.count("await run_step_job(runtime, job)") == 2
    assert workers.count("await run_orchestrator_job(runtime, job)") == 2


def test_wirings_import_every_wiring_module(tmp_path: Path) -> None:
    wirings = by_name(render_package(example_report(), config(tmp_path)))["workflow_wirings.py"]
    assert "import app.onboarding\nimport app.rpcs\n" in wirings


def test_wiring_modules_follow_the_source_root_offset() -> None:
    report = AnalysisReport(
        workflows=[
            WorkflowMeta(name="w", func="app.flows:w", file="src/app/wiring.py", line=1),
        ],
        rpcs=[RpcMeta(name="r", func="app.rpcs:r", file="src/app/rpcs.py")],
    )
    assert wiring_modules(report) == ["app.flows", "app.rpcs", "app.wiring"]


def test_empty_report_renders(tmp_path: Path) -> None:
    files = by_name(render_package(AnalysisReport(), config(tmp_path)))
    assert "WORKERS: Final[dict[str, WorkerFunc]] = {}" in files["workflow_workers.py"]
    assert "WIRED_MODULES: Final[tuple[str, ...]] = ()" in files["workflow_wirings.py"]
    assert "RPCName: TypeAlias = str" in files["workflow_map.pyi"]
    assert "@overload\ndef workflow_client" not in files["workflow_map.pyi"]


def test_duplicate_and_dynamic_names_are_skipped(tmp_path: Path) -> None:
    report = AnalysisReport(
        workflows=[
            WorkflowMeta(name="w", func="app.a:w", file="app/a.py", line=1),
            WorkflowMeta(name="w", func="app.b:w", file="app/b.py", line=1),
            WorkflowMeta(name="<dynamic>", func="app.c:w", file="app/c.py", line=1),
        ],
        rpcs=[
            RpcMeta(name="r", func="app.a:r", input_type="int", output_type="str"),
            RpcMeta(name="r", func="app.b:r", input_type="str", output_type="int"),
        ],
    )
    files = by_name(render_package(report, config(tmp_path)))
    assert files["workflow_types.pyi"].count('Literal["r"]') == 2  # do and rpc.invoke
    assert files["workflow_map.pyi"].count('name: Literal["w"]') == 1
    assert "<dynamic>" not in files["workflow_map.pyi"]


# ------------------------------------------------------------------ determinism


def test_same_input_same_bytes_whatever_the_order(tmp_path: Path) -> None:
    report = example_report()
    first = render_package(report, config(tmp_path))
    assert render_package(report, config(tmp_path)) == first
    rng = random.Random(7)
    rpcs = list(report.rpcs)
    for _ in range(5):
        rng.shuffle(rpcs)
        shuffled = report.model_copy(update={"rpcs": list(rpcs)})
        assert render_package(shuffled, config(tmp_path)) == first


# ------------------------------------------------------------------ helpers


def test_type_rendering() -> None:
    types = TypeRenderer()
    assert types.render("app.types.User") == "app.types.User"
    assert types.render("list[app.models.Item] | None") == "list[app.models.Item] | None"
    assert types.render("dict[str,int]") == "dict[str, int]"
    assert types.render("typing.Optional[decimal.Decimal]") == "decimal.Decimal | None"
    assert types.render("Union[int, app.types.User]") == "int | app.types.User"
    assert types.render("Literal['a', 'b']") == 'Literal["a", "b"]'
    assert types.render("app.types.Outer.Inner") == "app.types.Outer.Inner"
    assert types.render("collections.abc.Sequence[int]") == "collections.abc.Sequence[int]"
    assert types.modules == {"app.types", "app.models", "decimal", "collections.abc"}
    assert types.typing_names == {"Literal"}
    for unknown in (None, "<dynamic>", "", "not valid[", "SomeLocalName", "f(x)", "lambda: 1"):
        assert types.render(unknown) == "Any"
    assert split_module(["datetime", "datetime"]) == ("datetime", "datetime")
    assert split_module(["app", "types", "Outer", "Inner"]) == ("app.types", "Outer.Inner")


def test_identifiers_and_literals() -> None:
    assert identifier("users.create") == "users_create"
    assert identifier("class") == "_class"
    assert identifier("1st-step") == "_1st_step"
    for text in ("plain", 'He said "hi"', "it's", "tab\tnew\nline", "back\\slash", "\x00é"):
        assert eval(pystr(text)) == text
    assert pystr("x") == '"x"'
    assert layout('Literal["a"]', "A = ") == 'A = Literal["a"]'
    names = ", ".join(f'"{"n" * 30}{i}"' for i in range(3))
    long = layout(f"Literal[{names}]", "A = ")
    assert long.startswith("A = Literal[\n    ") and long.endswith(",\n]")
    nested = layout(f"X[dict[str, {'T' * 90}], int]", "    a: ", ",")
    assert nested == (
        f"    a: X[\n        dict[\n            str,\n            {'T' * 90},\n        ],\n"
        "        int,\n    ],"
    )
    assert signature("def f", ["a: int"], " -> None: ...") == "def f(a: int) -> None: ..."


# ------------------------------------------------------------------ writing


def test_write_only_what_changed_and_atomically(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    files = render_package(example_report(), cfg)
    assert stale_generated(files) == [f.path for f in files]
    assert write_generated(files) == [f.path for f in files]
    assert stale_generated(files) == []
    mtimes = {f.path: f.path.stat().st_mtime_ns for f in files}
    assert write_generated(files) == []
    assert {f.path: f.path.stat().st_mtime_ns for f in files} == mtimes
    target = files[0].path
    target.write_text("edited by hand\n", encoding="utf-8")
    (files[1].path).unlink()
    assert stale_generated(files) == [files[0].path, files[1].path]
    assert write_generated(files) == [files[0].path, files[1].path]
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []
    for file in files:
        assert file.path.read_text(encoding="utf-8") == file.content


def test_obsolete_generated_files_are_found_and_removed(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    files = render_package(example_report(), cfg)
    write_generated(files)
    old = cfg.package_dir / "workflow_old.py"
    old.write_text(HEADER + "\nX = 1\n", encoding="utf-8")
    old_stub = cfg.stub_package_dir / "workflow_old.pyi"
    old_stub.write_text(HEADER + "\nX: int\n", encoding="utf-8")
    mine = cfg.package_dir / "handwritten.py"
    mine.write_text("X = 1\n", encoding="utf-8")
    notes = cfg.package_dir / "NOTES.md"
    notes.write_text(HEADER + "\n", encoding="utf-8")
    assert obsolete_generated(files, cfg) == sorted([old.resolve(), old_stub.resolve()])
    assert remove_obsolete(files, cfg) == sorted([old.resolve(), old_stub.resolve()])
    assert not old.exists() and not old_stub.exists()
    assert mine.exists() and notes.exists()
    assert obsolete_generated(files, cfg) == []


def test_obsolete_on_missing_directories(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    assert obsolete_generated(render_package(example_report(), cfg), cfg) == []


# ------------------------------------------------------------------ the committed example


def test_committed_example_output_is_fresh() -> None:
    """``stubs/`` and ``examples/pikku_gen/`` are what the generator makes of ``examples/``
    (the analyzer's report when it runs, else the hand-made equivalent)."""
    cfg = examples_config()
    files = render_package(report_of_examples(), cfg)
    assert stale_generated(files) == [], "run: pikku-analyze examples"
    assert obsolete_generated(files, cfg) == []


def _run_example(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "examples"), str(REPO)])}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO / "examples",
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_generated_package_imports_and_registers() -> None:
    proc = _run_example(
        "import pikku_gen, pikku_gen.workflow_wirings\n"
        "from pikku_typing.wiring import registry\n"
        "print(sorted(registry.workflows), sorted(registry.rpcs))\n"
        "print(pikku_gen.load_meta().workflows[0].name, sorted(pikku_gen.RPCS))\n"
        "print(pikku_gen.Workflow.__module__, pikku_gen.wire_workflow.__module__)\n"
        "import pikku_typing; print(pikku_gen.rpc is pikku_typing.rpc)\n"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "['onboarding'] ['emails.send', 'users.create', 'users.get']",
        "onboarding ['emails.send', 'users.create', 'users.get']",
        "pikku_typing.interaction pikku_typing.wiring",
        "True",
    ]


def test_workflow_client_registers_the_workflows_itself() -> None:
    proc = _run_example(
        "from pikku_gen import workflow_client\n"
        "from pikku_typing import InMemoryWorkflowStateService, WorkflowRuntime\n"
        "from pikku_typing.wiring import registry\n"
        "assert not registry.workflows\n"
        "client = workflow_client(WorkflowRuntime(InMemoryWorkflowStateService()), 'onboarding')\n"
        "print(client.name, sorted(registry.rpcs))\n"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["onboarding ['emails.send', 'users.create', 'users.get']"]


def test_generated_workers_run_the_example_workflow(tmp_path: Path) -> None:
    """The runtime driven by the generated ``WORKERS`` and ``workflow_client``."""
    proc = _run_example(
        "import asyncio\n"
        "from decimal import Decimal\n"
        "import pikku_gen.workflow_wirings\n"
        "from pikku_gen import workflow_client\n"
        "from pikku_gen.workflow_workers import WORKERS\n"
        "from pikku_typing import InMemoryWorkflowStateService, WorkflowRuntime\n"
        "calls = []\n"
        "def spy(worker):\n"
        "    async def wrapped(runtime, job):\n"
        "        calls.append(job.queue)\n"
        "        await worker(runtime, job)\n"
        "    return wrapped\n"
        "async def main():\n"
        "    workers = {queue: spy(worker) for queue, worker in WORKERS.items()}\n"
        "    async with WorkflowRuntime(InMemoryWorkflowStateService(), workers=workers) as rt:\n"
        "        client = workflow_client(rt, 'onboarding')\n"
        "        handle = await client.start(\n"
        "            {'email': 'ada@example.com', 'name': 'Ada', 'plan_price': Decimal('10')})\n"
        "        for _ in range(300):  # until completed (the sleep step lasts 1 s)\n"
        "            await rt.drain()\n"
        "            run = await client.get_run(handle.run_id)\n"
        "            if run.status == 'completed':\n"
        "                break\n"
        "            await asyncio.sleep(0.2)\n"
        "        print(run.status, run.output['emails_sent'], run.output['tax'])\n"
        "        print(sorted(set(calls)))\n"
        "asyncio.run(main())\n"
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "completed 3 0.80"
    assert lines[1] == str(
        sorted(
            [
                "pikku-workflow-onboarding-orchestrator",
                "pikku-workflow-onboarding-rpc-emails.send",
                "pikku-workflow-onboarding-rpc-users.create",
            ]
        )
    )
