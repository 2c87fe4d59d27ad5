"""``pikku-analyze --baseline``: VALID and INVALID examples (Fixit style) for every code of SPEC
section 9, plus the baseline sources (file, directory, ``git:REF``) and the report formats.

Each case is a list of edits to a base project (``app/types.py``, ``app/rpcs.py``,
``app/flow.py``). The baseline is the ``workflow_meta.json`` generated from the base; the
edited project is compared with it. An INVALID case must be reported with its code; a VALID
one (a compatible change) must report nothing at all.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from pikku_analyzer import CODES, analyze, load_config
from pikku_analyzer.cli import main
from pikku_analyzer.codegen.render import meta_json
from pikku_analyzer.codes import COMPAT_CODES
from pikku_analyzer.compat import BaselineError, compare, parse_baseline, read_baseline
from pikku_analyzer.shapes import with_type_shapes
from pikku_typing.meta import META_VERSION, AnalysisReport

TYPES = '''
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, NotRequired, TypedDict

from pydantic import BaseModel


class Address(TypedDict):
    street: str
    city: str


class OrderInput(TypedDict):
    order_id: str
    amount: Decimal
    address: Address
    tags: list[str]
    note: NotRequired[str]


class Receipt(BaseModel):
    receipt_id: str
    total: Decimal
    status: Literal["paid", "refunded"]


@dataclass
class Shipment:
    tracking: str
    carrier: str = "ups"


class Payment(TypedDict):
    amount: int


class Label(TypedDict):
    text: str


class Printed(TypedDict):
    printed: bool
'''

RPCS = '''
from pikku_typing import pikku_func

from app.types import Receipt, Shipment


@pikku_func(name="payments.charge")
async def charge(data: dict) -> Receipt:
    raise NotImplementedError


@pikku_func(name="payments.charge_v2")
async def charge_v2(data: dict) -> Receipt:
    raise NotImplementedError


@pikku_func(name="shipping.ship")
async def ship(data: dict) -> Shipment:
    raise NotImplementedError


@pikku_func(name="emails.send")
def send(data: dict) -> None:
    return None
'''

FLOW = '''
from pikku_typing import Workflow, wire_event, wire_workflow

from app.types import Label, OrderInput, Payment, Printed

wire_event(name="payment.received", payload=Payment)
wire_event(name="payment.settled", payload=Payment)


async def checkout(workflow: Workflow, data: OrderInput) -> None:
    await workflow.do("charge", "payments.charge", {"id": data["order_id"]})
    await workflow.do("ship", "shipping.ship", {"id": data["order_id"]})
    await workflow.sleep("coolOff", "1d")
    await workflow.do("notify", "emails.send", {"to": "x"})
    await workflow.wait_for_event("paid", "payment.received", timeout="3d")
    await workflow.run_child("label", "labels", {"text": "x"})


async def labels(workflow: Workflow, data: Label) -> Printed:
    return {"printed": True}


wire_workflow(name="checkout", func=checkout)
wire_workflow(name="labels", func=labels)
'''

Edit = tuple[str, str, str]
"""(file, old text, new text): ``old`` must occur in the file."""

CHARGE = 'await workflow.do("charge", "payments.charge", {"id": data["order_id"]})'
SHIP = 'await workflow.do("ship", "shipping.ship", {"id": data["order_id"]})'
NOTIFY = 'await workflow.do("notify", "emails.send", {"to": "x"})'

VALID: dict[str, list[Edit]] = {
    "child output field added as optional": [("types", "    printed: bool", "    printed: bool\n    pages: NotRequired[int]")],
    "step appended at the end": [("flow", '    await workflow.run_child("label", "labels", {"text": "x"})', '    await workflow.run_child("label", "labels", {"text": "x"})\n    await workflow.do("audit", lambda: 1)')],
    "event timeout edited": [("flow", 'timeout="3d"', 'timeout="5d"')],
    "description edited": [
        ("flow", CHARGE, CHARGE[:-1] + ', description="Charge the card")'),
        ("flow", 'wire_workflow(name="checkout", func=checkout)', 'wire_workflow(name="checkout", func=checkout, description="x")'),
    ],
    "optional input field added": [("types", "    note: NotRequired[str]", "    note: NotRequired[str]\n    coupon: NotRequired[str | None]")],
    "optional output field with a default": [("types", "    total: Decimal\n", "    total: Decimal\n    currency: str = \"EUR\"\n")],
    "input field widened to optional": [("types", "    amount: Decimal", "    amount: Decimal | None")],
    "input class renamed, same fields": [
        ("types", "class OrderInput(TypedDict):", "class CheckoutInput(TypedDict):"),
        ("flow", "Label, OrderInput, Payment, Printed", "CheckoutInput, Label, Payment, Printed"),
        ("flow", "data: OrderInput", "data: CheckoutInput"),
    ],
    "literal value added": [("types", 'Literal["paid", "refunded"]', 'Literal["paid", "refunded", "void"]')],
    "optional input field removed": [("types", "    note: NotRequired[str]\n", "")],
    "step removed": [("flow", "    " + NOTIFY + "\n", "")],
    "lines moved and code reformatted": [
        ("flow", "async def checkout", "\n\n# a comment\nasync def checkout"),
        ("flow", SHIP, 'await workflow.do(\n        "ship",\n        "shipping.ship",\n        {"id": data["order_id"]},\n    )'),
    ],
    "another workflow added": [("flow", 'wire_workflow(name="checkout", func=checkout)', 'wire_workflow(name="checkout", func=checkout)\nwire_workflow(name="checkout2", func=checkout)')],
    "int widened to float": [("types", "    tracking: str", "    tracking: str\n    weight: float = 0.0")],
    "step target changed behind workflow.patched()": [
        ("flow", "    " + CHARGE, '    if await workflow.patched("charge-v2"):\n        await workflow.do("charge", "payments.charge_v2", {})\n    else:\n        ' + CHARGE)
    ],
    "step inserted behind workflow.patched()": [
        ("flow", "    " + SHIP, '    if await workflow.patched("fraud"):\n        await workflow.do("fraudCheck", lambda: True)\n    ' + SHIP)
    ],
    "step inserted behind not workflow.patched()": [
        ("flow", "    " + SHIP, '    if not await workflow.patched("fraud"):\n        pass\n    else:\n        await workflow.do("fraudCheck", lambda: True)\n    ' + SHIP)
    ],
    "step moved into an if with the same target": [("flow", "    " + NOTIFY, "    if data[\"tags\"]:\n        " + NOTIFY)],
}

INVALID: dict[str, tuple[str, list[Edit]]] = {
    "workflow unwired": ("WORKFLOW_REMOVED", [("flow", 'wire_workflow(name="checkout", func=checkout)', "")]),
    "workflow renamed": ("WORKFLOW_REMOVED", [("flow", 'name="checkout"', 'name="checkout_v2"')]),
    "required input field added": ("WORKFLOW_INPUT_CHANGED", [("types", "    order_id: str", "    order_id: str\n    country: str")]),
    "input scalar retyped": ("WORKFLOW_INPUT_CHANGED", [("types", "    amount: Decimal", "    amount: str")]),
    "required input field removed": ("WORKFLOW_INPUT_CHANGED", [("types", "    tags: list[str]\n", "")]),
    "nested field retyped": ("WORKFLOW_INPUT_CHANGED", [("types", "    city: str", "    city: int")]),
    "list item retyped": ("WORKFLOW_INPUT_CHANGED", [("types", "    tags: list[str]", "    tags: list[int]")]),
    "optional input field became required": ("WORKFLOW_INPUT_CHANGED", [("types", "    note: NotRequired[str]", "    note: str")]),
    "input type replaced by a scalar": ("WORKFLOW_INPUT_CHANGED", [("flow", "data: OrderInput", "data: int")]),
    "step calls another RPC": ("STEP_TARGET_CHANGED", [("flow", '"payments.charge"', '"payments.charge_v2"')]),
    "rpc step became inline": ("STEP_TARGET_CHANGED", [("flow", SHIP, 'await workflow.do("ship", lambda: 1)')]),
    "sleep became a step": ("STEP_TARGET_CHANGED", [("flow", 'await workflow.sleep("coolOff", "1d")', 'await workflow.do("coolOff", lambda: 1)')]),
    "rpc output scalar retyped": ("STEP_OUTPUT_CHANGED", [("types", "    total: Decimal", "    total: str")]),
    "rpc output literal value removed": ("STEP_OUTPUT_CHANGED", [("types", 'Literal["paid", "refunded"]', 'Literal["paid"]')]),
    "rpc output dataclass gets a required field": ("STEP_OUTPUT_CHANGED", [("types", "    tracking: str", "    tracking: str\n    weight: float")]),
    "rpc output type replaced": ("STEP_OUTPUT_CHANGED", [("rpcs", "async def ship(data: dict) -> Shipment:", "async def ship(data: dict) -> str:")]),
    "step renamed": ("STEP_RENAMED", [("flow", '"ship", "shipping.ship"', '"shipParcel", "shipping.ship"')]),
    "step changed in the old branch of a patch": (
        "STEP_TARGET_CHANGED",
        [("flow", "    " + CHARGE, '    if await workflow.patched("charge-v2"):\n        await workflow.do("charge", "payments.charge_v2", {})\n    else:\n        await workflow.do("charge", "emails.send", {})')],
    ),
    "wait for another event": ("STEP_TARGET_CHANGED", [("flow", '"paid", "payment.received"', '"paid", "payment.settled"')]),
    "child runs another workflow": (
        "STEP_TARGET_CHANGED",
        [("flow", '"label", "labels"', '"label", "checkout"')],
    ),
    "event payload retyped": (
        "STEP_OUTPUT_CHANGED",
        [("types", "    amount: int", "    amount: str")],
    ),
    "child output retyped": ("STEP_OUTPUT_CHANGED", [("types", "    printed: bool", "    printed: str")]),
    "step inserted": ("STEP_INSERTED", [("flow", "    " + SHIP, '    await workflow.do("fraudCheck", lambda: True)\n    ' + SHIP)]),
}


def write_project(root: Path, edits: list[Edit] = ()) -> Path:  # type: ignore[assignment]
    files = {"types": TYPES, "rpcs": RPCS, "flow": FLOW}
    for name, old, new in edits:
        assert old in files[name], (name, old)
        files[name] = files[name].replace(old, new)
    app = root / "app"
    app.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text('[tool.pikku]\nsrc = ["app"]\n', encoding="utf-8")
    (app / "__init__.py").write_text("", encoding="utf-8")
    for name, text in files.items():
        (app / f"{name}.py").write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return root


def meta_of(root: Path) -> str:
    config = load_config(root)
    return meta_json(with_type_shapes(analyze(config, use_cache=False).report, config))


def findings(tmp_path: Path, edits: list[Edit]) -> list[tuple[str, str]]:
    base = write_project(tmp_path / "base")
    baseline = parse_baseline(meta_of(base), "baseline")
    new = write_project(tmp_path / "new", edits)
    config = load_config(new)
    current = with_type_shapes(analyze(config, use_cache=False).report, config)
    return [(f.code, f.message) for f in compare(baseline, current, root=config.root)]


def test_every_compat_code_is_a_known_code_with_cases() -> None:
    assert set(COMPAT_CODES) <= set(CODES)
    assert {code for code, _ in INVALID.values()} == set(COMPAT_CODES)  # each code planted
    severities = {c: CODES[c].severity for c in COMPAT_CODES}
    assert severities == {
        "WORKFLOW_REMOVED": "error",
        "WORKFLOW_INPUT_CHANGED": "error",
        "STEP_TARGET_CHANGED": "error",
        "STEP_OUTPUT_CHANGED": "error",
        "STEP_RENAMED": "warning",
        "STEP_INSERTED": "warning",
    }


def test_the_base_is_compatible_with_itself(tmp_path: Path) -> None:
    assert findings(tmp_path, []) == []


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid(tmp_path: Path, name: str) -> None:
    assert findings(tmp_path, VALID[name]) == []


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid(tmp_path: Path, name: str) -> None:
    code, edits = INVALID[name]
    found = findings(tmp_path, edits)
    assert [c for c, _ in found] == [code], found


def test_messages_name_what_changed(tmp_path: Path) -> None:
    found = dict(findings(tmp_path, INVALID["input scalar retyped"][1]))
    assert "amount: decimal -> str" in found["WORKFLOW_INPUT_CHANGED"]
    found = dict(findings(tmp_path, INVALID["required input field added"][1]))
    assert "new required field 'country'" in found["WORKFLOW_INPUT_CHANGED"]
    found = dict(findings(tmp_path, INVALID["nested field retyped"][1]))
    assert "address.city: str -> int" in found["WORKFLOW_INPUT_CHANGED"]
    found = dict(findings(tmp_path, INVALID["step calls another RPC"][1]))
    assert "was rpc payments.charge, now rpc payments.charge_v2" in found["STEP_TARGET_CHANGED"]
    found = dict(findings(tmp_path, INVALID["step renamed"][1]))
    assert "'ship'" in found["STEP_RENAMED"] and "'shipParcel'" in found["STEP_RENAMED"]


def test_meta_records_field_shapes_and_version(tmp_path: Path) -> None:
    meta = json.loads(meta_of(write_project(tmp_path)))
    assert meta["version"] == META_VERSION == 2
    order = meta["types"]["app.types.OrderInput"]
    assert order["kind"] == "object" and order["class"] == "typeddict"
    assert order["fields"]["amount"] == {"type": {"kind": "scalar", "name": "decimal"}, "required": True}
    assert order["fields"]["note"]["required"] is False
    assert order["fields"]["address"]["type"] == {"kind": "ref", "name": "app.types.Address"}
    assert meta["types"]["app.types.Shipment"]["fields"]["carrier"]["required"] is False
    assert meta["types"]["app.types.Receipt"]["class"] == "model"
    # the JSON report keeps its SPEC layout: no types table, version 1
    report = AnalysisReport.model_validate_json(meta_of(write_project(tmp_path)))
    assert "types" not in report.model_dump()
    assert report.types == meta["types"]


def test_version_1_baseline_compares_types_by_name(tmp_path: Path) -> None:
    base = write_project(tmp_path / "base")
    data = json.loads(meta_of(base))
    data["version"] = 1
    del data["types"]
    baseline = parse_baseline(json.dumps(data), "v1")
    new = write_project(tmp_path / "new", INVALID["input scalar retyped"][1])
    config = load_config(new)
    current = with_type_shapes(analyze(config, use_cache=False).report, config)
    assert compare(baseline, current) == []  # same names: nothing provable
    new2 = write_project(tmp_path / "new2", INVALID["step calls another RPC"][1])
    config = load_config(new2)
    current = with_type_shapes(analyze(config, use_cache=False).report, config)
    assert [f.code for f in compare(baseline, current)] == ["STEP_TARGET_CHANGED"]


def test_recursive_types_terminate(tmp_path: Path) -> None:
    recursive = [("types", "    street: str", '    street: str\n    parent: "Address | None"')]
    assert findings(tmp_path, []) == []
    base = write_project(tmp_path / "a", recursive)
    baseline = parse_baseline(meta_of(base), "a")
    new = write_project(tmp_path / "b", [*recursive, ("types", "    city: str", "    city: int")])
    config = load_config(new)
    current = with_type_shapes(analyze(config, use_cache=False).report, config)
    assert [f.code for f in compare(baseline, current)] == ["WORKFLOW_INPUT_CHANGED"]


# -- the command line ----------------------------------------------------------------------


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_formats_and_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = write_project(tmp_path / "base")
    baseline = tmp_path / "baseline.json"
    baseline.write_text(meta_of(base), encoding="utf-8")
    new = write_project(tmp_path / "new", INVALID["step calls another RPC"][1] + INVALID["step inserted"][1])
    code, out, _ = _cli(capsys, str(new), "--no-generate", "--no-cache", "--baseline", str(baseline))
    assert code == 1
    assert "error STEP_TARGET_CHANGED" in out and "warning STEP_INSERTED" in out
    code, out, _ = _cli(capsys, str(new), "--no-generate", "--no-cache", "--format", "json", "--baseline", str(baseline))
    assert code == 1
    report = json.loads(out)
    assert sorted(d["code"] for d in report["diagnostics"]) == ["STEP_INSERTED", "STEP_TARGET_CHANGED"]
    assert report["version"] == 1 and "types" not in report
    code, out, _ = _cli(capsys, str(new), "--no-generate", "--no-cache", "--format", "sarif", "--baseline", str(tmp_path / "base" / "app"))
    assert code == 2  # a directory without workflow_meta.json
    code, out, _ = _cli(capsys, str(new), "--no-generate", "--no-cache", "--format", "sarif", "--baseline", str(baseline))
    assert code == 1
    results = json.loads(out)["runs"][0]["results"]
    assert {r["ruleId"] for r in results} == {"STEP_TARGET_CHANGED", "STEP_INSERTED"}
    # only warnings: exit 0
    warn = write_project(tmp_path / "warn", INVALID["step inserted"][1])
    code, out, _ = _cli(capsys, str(warn), "--no-generate", "--no-cache", "--baseline", str(baseline))
    assert code == 0 and "STEP_INSERTED" in out


def test_cli_ignore_comment_acknowledges_a_change(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = write_project(tmp_path / "base")
    baseline = tmp_path / "baseline.json"
    baseline.write_text(meta_of(base), encoding="utf-8")
    edits = [("flow", "    " + SHIP, '    await workflow.do("fraudCheck", lambda: True)  # pikku: ignore[STEP_INSERTED]\n    ' + SHIP)]
    new = write_project(tmp_path / "new", edits)
    code, out, _ = _cli(capsys, str(new), "--no-generate", "--no-cache", "--baseline", str(baseline))
    assert code == 0 and "STEP_INSERTED" not in out


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "is not JSON"),
        ("[]", "is not a workflow_meta.json"),
        ('{"version": 99, "workflows": []}', "schema version 99"),
        ('{"version": 2, "workflows": [{"name": 1}]}', "not a valid workflow_meta.json"),
    ],
)
def test_bad_baseline_files_are_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    project = write_project(tmp_path / "p")
    bad = tmp_path / "bad.json"
    bad.write_text(content, encoding="utf-8")
    code, _, err = _cli(capsys, str(project), "--no-generate", "--no-cache", "--baseline", str(bad))
    assert code == 2
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    code, _, err = _cli(capsys, str(project), "--no-generate", "--baseline", str(tmp_path / "missing.json"))
    assert code == 2 and "no such file" in err


def test_a_file_that_does_not_parse_is_not_a_removed_workflow(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = write_project(tmp_path / "base")
    baseline = tmp_path / "baseline.json"
    baseline.write_text(meta_of(base), encoding="utf-8")
    new = write_project(tmp_path / "new", [("flow", "async def checkout(", "async def checkout(:")])
    code, out, _ = _cli(capsys, str(new), "--no-generate", "--no-cache", "--baseline", str(baseline))
    assert code == 1 and "SYNTAX_ERROR" in out and "WORKFLOW_REMOVED" not in out


def test_watch_and_baseline_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _cli(capsys, str(tmp_path), "--watch", "--baseline", "x.json")
    assert code == 2 and "--watch" in err


# -- git:REF -------------------------------------------------------------------------------

GIT = shutil.which("git")


def _git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=root,
        check=True,
        capture_output=True,
    )


@pytest.mark.skipif(GIT is None, reason="git is not installed")
def test_git_ref_baseline_reads_the_committed_meta_without_checkout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "repo"
    project = write_project(repo / "svc")  # a project in a sub-directory of the repository
    assert main([str(project), "--no-cache"]) == 0  # generates svc/pikku_gen/workflow_meta.json
    capsys.readouterr()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "base")
    write_project(repo / "svc", INVALID["step calls another RPC"][1])
    code, out, err = _cli(capsys, str(project), "--no-generate", "--no-cache", "--baseline", "git:main")
    assert code == 1, err
    assert "STEP_TARGET_CHANGED" in out
    # the work tree was not touched by reading the baseline
    assert '"payments.charge_v2"' in (project / "app" / "flow.py").read_text(encoding="utf-8")
    code, _, err = _cli(capsys, str(project), "--no-generate", "--baseline", "git:nope")
    assert code == 2 and "unknown git ref 'nope'" in err
    _git(repo, "rm", "-q", "svc/pikku_gen/workflow_meta.json")
    _git(repo, "commit", "-q", "-m", "drop meta")
    code, _, err = _cli(capsys, str(project), "--no-generate", "--baseline", "git:HEAD")
    assert code == 2 and "svc/pikku_gen/workflow_meta.json does not exist at HEAD" in err
    code, _, err = _cli(capsys, str(project), "--no-generate", "--baseline", "git:")
    assert code == 2 and "needs a ref" in err


def test_git_ref_outside_a_repository(tmp_path: Path) -> None:
    project = write_project(tmp_path / "p")
    with pytest.raises(BaselineError, match="not in a git repository"):
        read_baseline("git:main", load_config(project))


TRICKY = '''"""A module docstring
that goes on at column 0
class NotAClass:
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

try:
    from decimal import Decimal
except ImportError:  # pragma: no cover
    Decimal = float
if t.TYPE_CHECKING:
    from app.other import Thing
else:
    Thing = object

Payload = dict[str, "Item"]


def helper() -> None:
    text = """
class Fake:
    x: int
"""


@dataclass
class Item:
    """An item.
with a docstring at column 0
"""
    name: str
    price: Decimal = Decimal(0)


class Order(t.TypedDict, total=False):
    items: list[Item]
'''


def test_type_modules_are_read_from_their_relevant_statements() -> None:
    """The fast path (only classes, imports, aliases parsed) finds what a full parse finds."""
    import ast as ast_module

    from pikku_analyzer import shapes

    fast = shapes._parse_module("app.tricky", False, TRICKY.encode())
    assert fast is not None
    tree = ast_module.parse(TRICKY)
    classes = {n.name for n in tree.body if isinstance(n, ast_module.ClassDef)}
    assert set(fast.classes) == classes == {"Item", "Order"}
    assert fast.imports["Decimal"] == "decimal.Decimal" and fast.imports["Thing"] == "app.other.Thing"
    assert fast.imports["t"] == "typing" and set(fast.aliases) == {"Payload"}
    relevant = shapes._relevant_source(TRICKY.encode())
    assert relevant is not None and "def helper" not in relevant and "class Fake" not in relevant
    builder = shapes.ShapeBuilder(None)
    builder.modules["app.tricky"] = fast
    builder.modules["app"] = None
    order = builder.types.get("app.tricky.Order") or (builder.named("app.tricky.Order") and builder.types["app.tricky.Order"])
    assert order["class"] == "typeddict" and order["fields"]["items"]["required"] is False
    item = builder.types["app.tricky.Item"]
    assert item["class"] == "dataclass"
    assert item["fields"]["price"] == {"type": {"kind": "scalar", "name": "decimal"}, "required": False}
