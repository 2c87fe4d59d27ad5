"""``--fix`` / ``--add-ignore`` / ``--diff``: libcst, format-preserving, only changed lines."""

from __future__ import annotations

import textwrap
from datetime import UTC
from pathlib import Path

import pytest

from pikku_analyzer import analyze, load_config
from pikku_analyzer.cli import main
from pikku_analyzer.fix import FileEdit, close_match, rewrite

SOURCE = '''
from pikku_typing import Workflow, pikku_func, wire_workflow
import time

@pikku_func(name="users.create")
async def create(data: int) -> int:
    return data

@pikku_func(name="emails.send")
async def send(data: int) -> int:
    return data

@pikku_func(name="emails.sent")
async def sent(data: int) -> int:
    return data

async def flow(workflow: Workflow, data: int) -> None:
    await workflow.do("a", 'users.craete',   data)   # odd spacing, kept
    await workflow.do(
        "b",
        "emails.sen",  # two close matches: not fixed
        data,
    )
    await workflow.do("c", "zzz", data)  # no close match
    x = time.time()
    y = """text
    more"""; z = time.time()

wire_workflow(name="flow", func=flow)
'''.lstrip("\\n")


def project(tmp_path: Path) -> Path:
    (tmp_path / "pyproject.toml").write_text("[tool.pikku]\n", encoding="utf-8")
    (tmp_path / "flow.py").write_text(SOURCE, encoding="utf-8")
    return tmp_path / "flow.py"


def changed_lines(before: str, after: str) -> list[int]:
    a, b = before.splitlines(), after.splitlines()
    assert len(a) == len(b)
    return [i for i, (x, y) in enumerate(zip(a, b, strict=True), start=1) if x != y]


def test_close_match() -> None:
    assert close_match("users.craete", ["users.create", "emails.send"]) == "users.create"
    assert close_match("emails.sen", ["emails.send", "emails.sent"]) is None
    assert close_match("zzz", ["users.create"]) is None


def test_fix_rewrites_only_the_literal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = project(tmp_path)
    assert main([str(tmp_path), "--fix", "--no-generate"]) == 1  # two UNKNOWN_RPC remain
    after = path.read_text(encoding="utf-8")
    # the RPC name, both time.time() and the `import time` left unused; nothing else
    assert after == (
        SOURCE.replace("import time\n", "", 1)
        .replace("'users.craete',", "'users.create',")
        .replace("x = time.time()", "x = (await workflow.now()).timestamp()")
        .replace("z = time.time()", "z = (await workflow.now()).timestamp()")
    )
    assert "    await workflow.do(\"a\", 'users.create',   data)   # odd spacing, kept" in after
    captured = capsys.readouterr()
    out = captured.out
    assert "fixed 1 file" in captured.err
    assert out.count("UNKNOWN_RPC") == 2
    result = analyze(load_config(tmp_path), use_cache=False)
    assert sorted(d.line for d in result.diagnostics if d.code == "UNKNOWN_RPC") == [20, 23]


def test_diff_is_a_dry_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = project(tmp_path)
    assert main([str(tmp_path), "--diff", "--no-generate"]) == 1
    out = capsys.readouterr().out
    assert path.read_text(encoding="utf-8") == SOURCE
    assert out.startswith("--- a/flow.py\n+++ b/flow.py\n")
    assert "-    await workflow.do(\"a\", 'users.craete',   data)" in out
    assert "+    await workflow.do(\"a\", 'users.create',   data)" in out
    assert sum(1 for line in out.splitlines() if line.startswith("+") and not line.startswith("+++")) == 3
    assert "+    x = (await workflow.now()).timestamp()" in out


def test_diff_with_nothing_to_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.pikku]\n", encoding="utf-8")
    (tmp_path / "ok.py").write_text("x = 1\n", encoding="utf-8")
    assert main([str(tmp_path), "--diff", "--no-generate"]) == 0
    assert capsys.readouterr().out == ""


def test_add_ignore(tmp_path: Path) -> None:
    path = project(tmp_path)
    assert main([str(tmp_path), "--add-ignore", "NON_DETERMINISTIC_CALL", "--no-generate"]) == 1
    after = path.read_text(encoding="utf-8")
    assert changed_lines(SOURCE, after) == [25, 27]
    lines = after.splitlines()
    assert lines[24] == "    x = time.time()  # pikku: ignore[NON_DETERMINISTIC_CALL]"
    assert lines[26] == '    more"""; z = time.time()  # pikku: ignore[NON_DETERMINISTIC_CALL]'
    result = analyze(load_config(tmp_path), use_cache=False)
    assert "NON_DETERMINISTIC_CALL" not in {d.code for d in result.diagnostics}


def test_add_ignore_merges_and_keeps_comments(tmp_path: Path) -> None:
    path = project(tmp_path)
    main([str(tmp_path), "--add-ignore", "UNKNOWN_RPC", "--no-generate"])
    after = path.read_text(encoding="utf-8").splitlines()
    assert after[17].endswith("# odd spacing, kept  # pikku: ignore[UNKNOWN_RPC]")
    assert after[20] == '        "emails.sen",  # two close matches: not fixed  # pikku: ignore[UNKNOWN_RPC]'
    edit = FileEdit(path, "flow.py", ignores={18: {"DYNAMIC_STEP_NAME"}})
    merged = rewrite(path.read_text(encoding="utf-8"), edit).splitlines()[17]
    assert merged.endswith("# pikku: ignore[DYNAMIC_STEP_NAME, UNKNOWN_RPC]")
    assert main([str(tmp_path), "--no-generate"]) == 0


def test_rewrite_never_touches_multiline_strings() -> None:
    source = textwrap.dedent('''
        x = """a
        b"""
        y = 1
    ''').lstrip()
    edit = FileEdit(Path("x.py"), "x.py", ignores={1: {"X"}, 3: {"X"}})
    assert rewrite(source, edit) == 'x = """a\nb"""\ny = 1  # pikku: ignore[X]\n'


# ---------------------------------------------------------- deterministic helpers (SPEC 8)

NONDET = """
import random
import time
import uuid
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from pikku_typing import Workflow, wire_workflow


async def helper(w: Workflow) -> float:
    return random.random()


def sync_helper() -> float:
    return time.time()


async def flow(wf: Workflow, data: dict) -> None:
    started = time.time()  # keep this comment
    now = datetime.now()
    utc = datetime.now(timezone.utc)
    local = datetime.now(ZoneInfo("Europe/Helsinki"))
    token = uuid.uuid4().hex
    roll = int(random.random() * 6) + 1
    key = lambda: random.random()
    total = sum(random.random() for _ in range(3))
    other = random.randint(1, 6)
    await helper(wf)
    await wf.do("inside", lambda: time.time())


wire_workflow(name="flow", func=flow)
""".lstrip("\n")


def test_fix_rewrites_non_deterministic_calls_to_the_recorded_helpers(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.pikku]\n", encoding="utf-8")
    path = tmp_path / "flow.py"
    path.write_text(NONDET, encoding="utf-8")
    before = analyze(load_config(tmp_path), use_cache=False)
    assert sum(d.code == "NON_DETERMINISTIC_CALL" for d in before.diagnostics) == 10
    main([str(tmp_path), "--fix", "--no-generate"])
    after = path.read_text(encoding="utf-8")
    rewritten = {
        "    return random.random()": "    return await w.random()",  # a helper: its own parameter
        "    started = time.time()  # keep this comment": "    started = (await wf.now()).timestamp()  # keep this comment",
        "    now = datetime.now()": "    now = (await wf.now()).astimezone().replace(tzinfo=None)",
        "    utc = datetime.now(timezone.utc)": "    utc = await wf.now()",
        '    local = datetime.now(ZoneInfo("Europe/Helsinki"))': '    local = (await wf.now()).astimezone(ZoneInfo("Europe/Helsinki"))',
        "    token = uuid.uuid4().hex": "    token = (await wf.uuid4()).hex",
        "    roll = int(random.random() * 6) + 1": "    roll = int(await wf.random() * 6) + 1",
        # imports left unused are removed; those still used are kept
        "import uuid\n": "",
        "from datetime import datetime, timezone\n": "",
    }
    expected = NONDET
    for old, new in rewritten.items():
        assert old in expected
        expected = expected.replace(old, new, 1)
    assert after == expected
    compile(after, "flow.py", "exec")  # still valid Python
    result = analyze(load_config(tmp_path), use_cache=False)
    left = [
        after.splitlines()[d.line - 1].strip()
        for d in result.diagnostics
        if d.code == "NON_DETERMINISTIC_CALL"
    ]
    # not rewritten: a lambda, a generator expression (await is not allowed or changes the
    # meaning there), random.randint (no recorded equivalent)
    assert left == [
        "key = lambda: random.random()",
        "total = sum(random.random() for _ in range(3))",
        "other = random.randint(1, 6)",
    ]


def test_fix_diff_shows_the_helper_rewrite_without_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.pikku]\n", encoding="utf-8")
    path = tmp_path / "flow.py"
    path.write_text(NONDET, encoding="utf-8")
    assert main([str(tmp_path), "--fix", "--diff", "--no-generate"]) == 1
    out = capsys.readouterr().out
    assert path.read_text(encoding="utf-8") == NONDET
    assert "-    token = uuid.uuid4().hex\n" in out
    assert "+    token = (await wf.uuid4()).hex\n" in out


def test_helper_rewrite_keeps_the_values_types() -> None:
    """The rewritten calls return what the originals returned (a float, a naive local
    datetime, an aware one), now from the recorded ``workflow.now()``."""
    import asyncio
    from datetime import datetime, timedelta, timezone

    line = "    return time.time(), datetime.now(), datetime.now(timezone.utc), datetime.now(tz)\n"
    source = "import time\nfrom datetime import datetime, timezone\nasync def f(wf, tz):\n" + line
    calls = {
        (4, line.index("time.time")): ("time.time", "wf"),
        (4, line.index("datetime.now()")): ("datetime.datetime.now", "wf"),
        (4, line.index("datetime.now(timezone")): ("datetime.datetime.now", "wf"),
        (4, line.index("datetime.now(tz)")): ("datetime.datetime.now", "wf"),
    }
    new = rewrite(source, FileEdit(Path("f.py"), "f.py", calls=calls))
    assert "time.time" not in new and "datetime.now" not in new
    recorded = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    class FakeWorkflow:
        async def now(self) -> datetime:
            return recorded

    namespace: dict[str, object] = {}
    exec(compile(new, "f.py", "exec"), namespace)
    helsinki = timezone(timedelta(hours=2))
    stamp, naive, aware, zoned = asyncio.run(namespace["f"](FakeWorkflow(), helsinki))  # type: ignore[operator]
    assert stamp == recorded.timestamp()
    assert naive.tzinfo is None and naive == recorded.astimezone().replace(tzinfo=None)
    assert aware == recorded and aware.tzinfo is not None
    assert zoned == recorded and zoned.utcoffset() == timedelta(hours=2)


def test_fix_renames_unknown_event_and_workflow_names(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.pikku]\n", encoding="utf-8")
    source = textwrap.dedent('''
        from pikku_typing import Workflow, WorkflowRuntime, wire_event, wire_workflow

        wire_event(name="payment.received", payload=dict)
        wire_event(name="order.cancelled", payload=dict)

        async def order(workflow: Workflow, data: dict) -> None:
            await workflow.wait_for_event("pay", 'payment.recieved', timeout="1d")  # kept
            await workflow.run_child("bill", "billng", data)
            await workflow.wait_for_event("gone", "order." + "canceled")  # not a literal: left

        async def billing(workflow: Workflow, data: dict) -> None:
            pass

        wire_workflow(name="order", func=order)
        wire_workflow(name="billing", func=billing)
        runtime = WorkflowRuntime()
        client = runtime.client("ordr")
    ''').lstrip()
    path = tmp_path / "flow.py"
    path.write_text(source, encoding="utf-8")
    assert main([str(tmp_path), "--fix", "--no-generate"]) == 1  # the concatenated name stays
    after = path.read_text(encoding="utf-8")
    assert after == (
        source.replace("'payment.recieved'", "'payment.received'")
        .replace('"billng"', '"billing"')
        .replace('client("ordr")', 'client("order")')
    )
    result = analyze(load_config(tmp_path), use_cache=False)
    assert [(d.code, d.line) for d in result.diagnostics] == [("UNKNOWN_EVENT", 9)]
