"""The web console (``pikku-runs serve``, SPEC section 10) through Starlette's TestClient:
pages, actions and the security rules. The real browser test is tests/test_console_browser.py."""

from __future__ import annotations

import asyncio
import re
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from console_support import FAILED, OK, PARENT, RUNNING, SLEEPING, XSS, make_runs
from postgres_support import POSTGRES_MARKS, create_schema_dsn, drop_schema_dsn

pytest.importorskip("starlette", reason="the console extra (pikku-workflows[console])")
from registry_support import isolated_registry
from starlette.testclient import TestClient

from pikku_typing import Workflow, WorkflowRuntime, pikku_func, wire_event, wire_workflow
from pikku_typing.console import missing_extra, views
from pikku_typing.console.app import ConsoleSettings, create_app, display_store
from pikku_typing.console.security import host_allowed, is_loopback, session_value
from pikku_typing.console.server import allowed_hosts_for
from pikku_typing.models import RunStatus, StepStatus
from pikku_typing.runtime import runs_cli
from pikku_typing.state import open_store

ROOT = Path(__file__).resolve().parent.parent
META = ROOT / "examples" / "pikku_gen" / "workflow_meta.json"
BASE = "http://127.0.0.1:8765"
TOKEN = "s3cret-token-for-tests-0123456789"


@pytest.fixture
def file_url(tmp_path: Path) -> Iterator[str]:
    url = f"file:{tmp_path / 'state'}"
    asyncio.run(make_runs(url))
    yield url


@pytest.fixture(params=["file", "sqlite", pytest.param("postgres", marks=POSTGRES_MARKS)])
def any_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "file":
        url = f"file:{tmp_path / 'state'}"
    elif request.param == "sqlite":
        url = f"sqlite:{tmp_path / 'runs.db'}"
    else:
        dsn = create_schema_dsn("pikku_console_")
        url = f"postgres:{dsn}"
    try:
        asyncio.run(make_runs(url))
        yield url
    finally:
        if request.param == "postgres":
            drop_schema_dsn(url.removeprefix("postgres:"))


def client_for(url: str, **settings: Any) -> TestClient:
    settings.setdefault("meta_path", META)
    return TestClient(create_app(ConsoleSettings(store_url=url, **settings)), base_url=BASE)


def csrf_of(client: TestClient, run_id: str) -> str:
    page = client.get(f"/runs/{run_id}")
    assert page.status_code == 200
    match = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert match is not None, "the run page has an action form with a CSRF field"
    return match.group(1)


def run_status(url: str, run_id: str) -> RunStatus:
    async def read() -> RunStatus:
        async with open_store(url) as store:
            return (await store.get_run(run_id)).status

    return asyncio.run(read())


def assert_escaped(html: str) -> None:
    """Nothing from the store is rendered as markup: the payload appears only escaped, and
    the only scripts are the console's own (with the CSP nonce)."""
    assert "<script>" in XSS
    assert "<script>window.__pwned" not in html
    assert "<img src=x" not in html
    for tag in re.findall(r"<script[^>]*>", html):
        assert 'nonce="' in tag, tag


# ------------------------------------------------------------------ pages


def test_list_newest_first_with_filters(any_url: str) -> None:
    with client_for(any_url) as client:
        page = client.get("/")
        assert page.status_code == 200
        ids = re.findall(r'data-run-id="([^"]+)"', page.text)
        assert set(ids) >= {OK, FAILED, SLEEPING, RUNNING, PARENT}
        assert ids.index(PARENT) < ids.index(OK), "newest first"
        assert_escaped(page.text)
        assert "CardDeclined" in page.text

        failed = client.get("/", params={"status": "failed"})
        assert re.findall(r'data-run-id="([^"]+)"', failed.text) == [FAILED]
        both = client.get("/", params=[("status", "failed"), ("status", "suspended")])
        assert set(re.findall(r'data-run-id="([^"]+)"', both.text)) == {FAILED, SLEEPING, PARENT}
        onboarding = client.get("/", params={"workflow": "onboarding", "status": "completed"})
        assert re.findall(r'data-run-id="([^"]+)"', onboarding.text) == [OK]
        nothing = client.get("/", params={"workflow": "nope"})
        assert 'id="no-runs"' in nothing.text


def test_list_paging(tmp_path: Path) -> None:
    url = f"file:{tmp_path / 'state'}"
    asyncio.run(make_runs(url, extra=7))
    with client_for(url, page_size=5) as client:
        seen: list[str] = []
        link: str | None = "/?workflow=bulk"
        while link is not None:
            page = client.get(link.replace("&amp;", "&"))
            assert page.status_code == 200
            seen.extend(re.findall(r'data-run-id="([^"]+)"', page.text))
            match = re.search(r'<a href="([^"]+)" rel="next">', page.text)
            link = match.group(1) if match else None
        assert seen == [f"bulk-{i:05d}" for i in reversed(range(7))]
        second = client.get("/", params={"workflow": "bulk", "page": "2"})
        assert 'rel="prev"' in second.text
        assert client.get("/", params={"per_page": "3"}).text.count("data-run-id=") == 3


@pytest.mark.parametrize(
    "query", [{"status": "bogus"}, {"page": "0"}, {"page": "x"}, {"per_page": "100000"}]
)
def test_bad_list_query_is_400(file_url: str, query: dict[str, str]) -> None:
    with client_for(file_url) as client:
        page = client.get("/", params=query)
        assert page.status_code == 400
        assert 'id="message"' in page.text


def test_failed_run_page(any_url: str) -> None:
    with client_for(any_url) as client:
        page = client.get(f"/runs/{FAILED}")
    assert page.status_code == 200
    html = page.text
    assert_escaped(html)
    assert 'id="failure"' in html
    assert "Failed at step <span class=\"mono\">chargeCard</span>" in html
    assert "attempt 2 of 2" in html
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in html  # shown, as text
    assert html.count('class="traceback"') >= 2  # every attempt's traceback
    assert 'id="resume"' in html and 'id="cancel"' not in html  # failed: resume only
    assert "k-failed" in html and "k-wait" in html  # two failed attempts and a retry delay


def test_completed_run_page_with_diagram_from_meta(file_url: str) -> None:
    with client_for(file_url) as client:
        html = client.get(f"/runs/{OK}").text
    assert 'id="output"' in html and "user_id" in html
    assert '<dd class="mono" id="run-version">v-1234abcd</dd>' in html
    assert 'data-source="meta"' in html
    # the analyzer's steps of `onboarding`, in order, the recorded ones with their status
    names = re.findall(r'<div class="name">([^<]+)', html)
    assert names[:4] == ["createUser", "calcTax", "sendWelcome", "coolOff"]
    assert 'class="node st-succeeded"' in html and 'class="node st-not-reached"' in html
    steps = re.findall(r'data-step-key="([^"]+)"', html)
    assert steps == ["createUser", "calcTax"]
    assert 'id="actions"' not in html  # settled: no action


def test_events_of_a_run(any_url: str) -> None:
    with client_for(any_url) as client:
        html = client.get(f"/runs/{SLEEPING}").text
    assert_escaped(html)
    table = html[html.index('<table id="events">') :]
    assert "payment.received" in table and "not yet" in table
    assert "&lt;script&gt;" in table  # the payload, escaped


def test_running_run_page(file_url: str) -> None:
    with client_for(file_url) as client:
        html = client.get(f"/runs/{RUNNING}").text
    assert 'id="run-status">running' in html
    assert 'id="cancel"' in html and 'id="resume"' not in html  # running: cancel only
    assert "k-running" in html  # the attempt in flight, up to now, on the timeline
    assert "held by pid" in html and "test-host" in html
    assert 'class="node st-running"' in html  # the diagram marks the step in flight


def test_diagram_without_meta_uses_recorded_steps(file_url: str, tmp_path: Path) -> None:
    broken = tmp_path / "workflow_meta.json"
    broken.write_text("{not json")
    with client_for(file_url, meta_path=None) as client:
        html = client.get(f"/runs/{OK}").text
        assert 'data-source="recorded"' in html and "no workflow_meta.json found" in html
    with client_for(file_url, meta_path=broken) as client:
        html = client.get(f"/runs/{OK}").text
        assert 'data-source="recorded"' in html and "cannot be read" in html
        broken.write_text(META.read_text())  # reloaded when the file changes
        html = client.get(f"/runs/{OK}").text
        assert 'data-source="meta"' in html


def test_parent_and_child_links(file_url: str) -> None:
    with client_for(file_url) as client:
        parent = client.get(f"/runs/{PARENT}").text
        match = re.search(r'<table id="children">.*?href="/runs/([0-9a-f]{32})"', parent, re.S)
        assert match is not None
        child = client.get(f"/runs/{match.group(1)}").text
    assert 'id="parent"' in child and f'href="/runs/{PARENT}"' in child
    assert "completed" in parent[parent.index('id="children"') :]


@pytest.mark.parametrize("run_id", ["no-such-run", "..%2F..%2Fetc", "%3Cscript%3E"])
def test_unknown_run_is_404(file_url: str, run_id: str) -> None:
    with client_for(file_url) as client:
        page = client.get(f"/runs/{run_id}")
    assert page.status_code == 404
    assert 'id="message"' in page.text
    for tag in re.findall(r"<script[^>]*>", page.text):
        assert 'nonce="' in tag, tag


def test_damaged_record_is_a_page_not_a_traceback(file_url: str) -> None:
    state = Path(file_url.removeprefix("file:"))
    (state / "runs" / f"{FAILED}.json").write_text('{"id": "run-failed", "status": ')
    (state / "steps" / f"{OK}.json").write_text("[[[")
    with client_for(file_url) as client:
        listing = client.get("/")  # the list skips the damaged run and shows the others
        assert listing.status_code == 200 and f'data-run-id="{OK}"' in listing.text
        for run_id in (FAILED, OK):
            page = client.get(f"/runs/{run_id}")
            assert page.status_code == 500, run_id
            assert "Damaged record" in page.text and "Traceback" not in page.text


def test_unreachable_store_is_503() -> None:
    from pikku_typing.errors import StoreUnavailableError
    from pikku_typing.state import InMemoryWorkflowStateService

    class Down(InMemoryWorkflowStateService):
        async def list_runs(self, **kwargs: Any) -> Any:
            raise StoreUnavailableError("connection refused")

    async def opener(url: str) -> Any:
        return Down()

    app = create_app(ConsoleSettings(store_url="memory:", open_store=opener))
    with TestClient(app, base_url=BASE) as client:
        page = client.get("/")
    assert page.status_code == 503 and "connection refused" in page.text


def test_long_runs_show_their_first_and_last_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    from pikku_typing.models import StepKind, StepState
    from pikku_typing.state import InMemoryWorkflowStateService

    store = InMemoryWorkflowStateService()

    async def fill() -> None:
        await store.create_run("loop", {}, run_id="long-run")
        for i in range(10):
            await store.insert_step("long-run", StepState(
                key=f"s#{i}", step_name="s", kind=StepKind.INLINE))

    asyncio.run(fill())

    async def opener(url: str) -> Any:
        return store

    monkeypatch.setattr(views, "DEFAULT_MAX_STEPS", 4)
    app = create_app(ConsoleSettings(store_url="memory:", open_store=opener))
    with TestClient(app, base_url=BASE) as client:
        cut = client.get("/runs/long-run").text
        every = client.get("/runs/long-run?steps=all").text
    assert re.findall(r'data-step-key="([^"]+)"', cut) == ["s#0", "s#1", "s#8", "s#9"]
    assert 'id="steps-cut"' in cut and "Showing 4 of 10 steps" in cut
    assert len(re.findall(r'data-step-key="', every)) == 10 and 'id="steps-cut"' not in every
    assert 'id="step-9"' in cut  # rows keep their position in the run


# ---------------------------------------------------------------- actions


def test_cancel_suspended_run(any_url: str) -> None:
    with client_for(any_url) as client:
        token = csrf_of(client, SLEEPING)
        done = client.post(
            f"/runs/{SLEEPING}/cancel", data={"csrf": token}, follow_redirects=False
        )
        assert done.status_code == 303
        assert done.headers["location"] == f"/runs/{SLEEPING}?done=cancelled"
        page = client.get(done.headers["location"])
        assert 'id="notice"' in page.text and 'id="run-status">cancelled' in page.text
    assert run_status(any_url, SLEEPING) is RunStatus.CANCELLED


def test_cancel_running_run_requests_it(file_url: str) -> None:
    with client_for(file_url) as client:
        done = client.post(
            f"/runs/{RUNNING}/cancel", data={"csrf": csrf_of(client, RUNNING)},
            follow_redirects=False,
        )
        assert done.headers["location"].endswith("done=cancel_requested")

    async def read() -> bool:
        async with open_store(file_url) as store:
            return (await store.get_run(RUNNING)).cancel_requested

    assert asyncio.run(read())


def test_resume_failed_run_resets_its_step(file_url: str) -> None:
    with client_for(file_url) as client:
        done = client.post(
            f"/runs/{FAILED}/resume", data={"csrf": csrf_of(client, FAILED), "attempts": "2"},
            follow_redirects=False,
        )
        assert done.status_code == 303 and done.headers["location"].endswith("done=resumed")

    async def read() -> tuple[RunStatus, StepStatus, int | None]:
        async with open_store(file_url) as store:
            run = await store.get_run(FAILED)
            step = (await store.get_step_states(FAILED))["chargeCard"]
            return run.status, step.status, step.max_attempts

    assert asyncio.run(read()) == (RunStatus.SUSPENDED, StepStatus.SCHEDULED, 4)


def test_refused_actions_are_409_and_change_nothing(file_url: str) -> None:
    with client_for(file_url) as client:
        csrf = csrf_of(client, SLEEPING)
        for path in (f"/runs/{OK}/cancel", f"/runs/{OK}/resume", f"/runs/{RUNNING}/resume"):
            page = client.post(path, data={"csrf": csrf})
            assert page.status_code == 409, path
            assert 'id="refusal"' in page.text
        bad = client.post(f"/runs/{FAILED}/resume", data={"csrf": csrf, "attempts": "0"})
        assert bad.status_code == 409 and "attempts must be between" in bad.text
        missing = client.post("/runs/no-such-run/cancel", data={"csrf": csrf})
        assert missing.status_code == 404
    assert run_status(file_url, OK) is RunStatus.COMPLETED
    assert run_status(file_url, FAILED) is RunStatus.FAILED


# ---------------------------------------------------------------- security


def test_actions_need_post_and_csrf(file_url: str) -> None:
    with client_for(file_url) as client:
        assert client.get(f"/runs/{SLEEPING}/cancel").status_code == 405
        csrf = csrf_of(client, SLEEPING)
        refusals = [
            client.post(f"/runs/{SLEEPING}/cancel"),  # no field
            client.post(f"/runs/{SLEEPING}/cancel", data={"csrf": "x" * 43}),  # wrong field
            client.post(  # right field, other origin
                f"/runs/{SLEEPING}/cancel", data={"csrf": csrf},
                headers={"Origin": "http://evil.example"},
            ),
            client.post(
                f"/runs/{SLEEPING}/cancel", data={"csrf": csrf},
                headers={"Sec-Fetch-Site": "cross-site"},
            ),
            client.post(
                f"/runs/{SLEEPING}/cancel", content=f'{{"csrf": "{csrf}"}}',
                headers={"Content-Type": "application/json"},
            ),
        ]
        for response in refusals:
            assert response.status_code == 403, response.text
        client.cookies.clear()  # the field without its cookie
        assert client.post(f"/runs/{SLEEPING}/cancel", data={"csrf": csrf}).status_code == 403
        assert client.request("DELETE", f"/runs/{SLEEPING}").status_code == 405
    assert run_status(file_url, SLEEPING) is RunStatus.SUSPENDED
    with client_for(file_url) as client:  # same origin, right token: accepted
        csrf = csrf_of(client, SLEEPING)
        ok = client.post(
            f"/runs/{SLEEPING}/cancel", data={"csrf": csrf},
            headers={"Origin": BASE, "Sec-Fetch-Site": "same-origin"}, follow_redirects=False,
        )
        assert ok.status_code == 303


def test_token_is_checked_on_every_request(file_url: str) -> None:
    with client_for(file_url, token=TOKEN) as client:
        for path in ("/", f"/runs/{FAILED}", "/healthz", "/no-such-page"):
            refused = client.get(path)
            assert refused.status_code == 401, path
            assert "CardDeclined" not in refused.text and FAILED not in refused.text
        assert client.post(f"/runs/{SLEEPING}/cancel", data={"csrf": "x" * 43}).status_code == 401
        assert client.get("/", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/?token=wrong").status_code == 401
        assert client.get("/", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert client.get("/", headers={"X-Pikku-Token": TOKEN}).status_code == 200

        login = client.get(f"/runs/{SLEEPING}?token={TOKEN}", follow_redirects=False)
        assert login.status_code == 303
        assert login.headers["location"] == f"/runs/{SLEEPING}"  # the token leaves the URL
        cookie = login.headers["set-cookie"]
        assert TOKEN not in cookie and session_value(TOKEN) in cookie
        assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
        # the session cookie now opens every page, and actions (with the CSRF field)
        csrf = csrf_of(client, SLEEPING)
        done = client.post(f"/runs/{SLEEPING}/cancel", data={"csrf": csrf},
                           follow_redirects=False)
        assert done.status_code == 303
    assert run_status(file_url, SLEEPING) is RunStatus.CANCELLED


def test_host_header_is_checked(file_url: str) -> None:
    """DNS rebinding: a page of evil.example resolving to 127.0.0.1 sends Host: evil.example."""
    with client_for(file_url) as client:
        assert client.get("/", headers={"Host": "evil.example"}).status_code == 400
        assert client.get("/", headers={"Host": "evil.example:8765"}).status_code == 400
        assert client.get("/", headers={"Host": "localhost:8765"}).status_code == 200
        assert client.get("/", headers={"Host": "[::1]:8765"}).status_code == 200


def test_security_headers(file_url: str) -> None:
    with client_for(file_url) as client:
        page = client.get(f"/runs/{FAILED}")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    nonce = re.search(r"'nonce-([^']+)'", csp)
    assert nonce is not None
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["cache-control"] == "no-store"
    # no external resource at all: works offline, no CDN
    assert not re.search(r'(src|href)="(https?:)?//', page.text)


def test_security_helpers() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert is_loopback("127.1.2.3") and is_loopback("[::1]")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2") and not is_loopback("")
    assert host_allowed("127.0.0.1:8765", ["127.0.0.1"])
    assert not host_allowed("127.0.0.1.evil.example", ["127.0.0.1"])
    assert host_allowed("anything", ["*"])
    assert allowed_hosts_for("0.0.0.0", []) == ["*"]
    assert allowed_hosts_for("0.0.0.0", ["runs.internal"]) == ["runs.internal"]
    assert "localhost" in allowed_hosts_for("127.0.0.1", [])
    assert display_store("postgres:postgresql://u:pw@db/x") == "postgres:postgresql://u:***@db/x"
    assert display_store("postgres:host=db password=pw") == "postgres:host=db password=***"
    assert display_store("file:.pikku/state") == "file:.pikku/state"


def test_find_meta_from_the_project(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT / "examples" / "app")
    assert views.find_meta() == META.resolve()


# ----------------------------------------------------------------- the CLI


def test_serve_refuses_non_loopback_without_token(
    capsys: pytest.CaptureFixture[str], file_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PIKKU_CONSOLE_TOKEN", raising=False)
    code = runs_cli.main(["--store", file_url, "serve", "--host", "0.0.0.0", "--port", "0"])
    err = capsys.readouterr().err
    assert code == 2
    assert "requires a token" in err and "PIKKU_CONSOLE_TOKEN" in err
    assert "Traceback" not in err
    code = runs_cli.main(["--store", file_url, "serve", "--host", "0.0.0.0", "--token", "short"])
    assert code == 2 and "at least 16 characters" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["serve", "--meta", "/no/such/meta.json"], 2, "no workflow_meta.json"),
        (["serve", "--port", "70000"], 2, "--port must be between"),
        (["serve", "--page-size", "0"], 2, "--page-size must be between"),
    ],
)
def test_serve_usage_errors(
    capsys: pytest.CaptureFixture[str], file_url: str, args: list[str], code: int, text: str
) -> None:
    assert runs_cli.main(["--store", file_url, *args]) == code
    assert text in capsys.readouterr().err


def test_serve_missing_store_and_busy_port(
    capsys: pytest.CaptureFixture[str], file_url: str, tmp_path: Path
) -> None:
    assert runs_cli.main(["--store", f"file:{tmp_path / 'nothing'}", "serve"]) == 3
    assert "no file store" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert runs_cli.main(["--store", file_url, "serve", "--port", str(port)]) == 2
        assert "cannot listen on 127.0.0.1" in capsys.readouterr().err


def test_missing_extra_names_it(
    capsys: pytest.CaptureFixture[str], file_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    assert missing_extra() is not None
    code = runs_cli.main(["--store", file_url, "serve"])
    err = capsys.readouterr().err
    assert code == 2
    assert "pip install 'pikku-workflows[console]'" in err and "uvicorn" in err
    assert "Traceback" not in err


# ------------------------------------------------------- runs of the runtime

CHARGE_FAILS = {"on": True}


async def _load_customer(data: dict[str, Any]) -> dict[str, Any]:
    return {"id": "c1"}


async def _charge(data: dict[str, Any]) -> dict[str, Any]:
    if CHARGE_FAILS["on"]:
        raise RuntimeError("card <b>declined</b>")
    return {"ok": True}


async def _billing(workflow: Workflow, data: dict[str, Any]) -> dict[str, Any]:
    await workflow.do("loadCustomer", "console.load", {"id": data["customer"]})
    charged = await workflow.do("chargeCard", "console.charge", {"amount": 1},
                                retries=1, retry_delay=0)
    return {"charged": charged["ok"]}


@pytest.fixture
def billing_workflow() -> Iterator[str]:
    with isolated_registry(clear=False):
        pikku_func(name="console.load")(_load_customer)
        pikku_func(name="console.charge")(_charge)
        wire_workflow(name="console-billing", func=_billing)
        CHARGE_FAILS["on"] = True
        yield "console-billing"


def test_runs_made_by_the_runtime(tmp_path: Path, billing_workflow: str) -> None:
    """A run failed by the real runtime, resumed from the console, completed by a worker."""
    url = f"sqlite:{tmp_path / 'runs.db'}"

    async def start_and_drain() -> str:
        async with WorkflowRuntime(state=open_store(url)) as runtime:
            handle = await runtime.client(billing_workflow).start({"customer": "c1"})
            await runtime.drain()
            return handle.run_id

    async def recover_and_drain() -> None:
        async with WorkflowRuntime(state=open_store(url)) as runtime:
            await runtime.recover()
            await runtime.drain()

    run_id = asyncio.run(start_and_drain())
    with client_for(url) as client:
        html = client.get(f"/runs/{run_id}").text
        assert 'id="run-status">failed' in html
        assert "attempt 2 of 2" in html and "card &lt;b&gt;declined&lt;/b&gt;" in html
        assert "RuntimeError" in html and 'class="traceback"' in html  # a real traceback
        assert re.findall(r'data-step-key="([^"]+)"', html) == ["loadCustomer", "chargeCard"]
        listing = client.get("/", params={"workflow": billing_workflow}).text
        assert re.findall(r'data-run-id="([^"]+)"', listing) == [run_id]

        done = client.post(f"/runs/{run_id}/resume", data={"csrf": csrf_of(client, run_id)},
                           follow_redirects=False)
        assert done.status_code == 303
        CHARGE_FAILS["on"] = False
        asyncio.run(recover_and_drain())

        html = client.get(f"/runs/{run_id}").text
        assert 'id="run-status">completed' in html
        assert 'id="output"' in html and "charged" in html
        assert html.count('<span class="badge s-failed">failed</span>') == 2  # two attempts
        assert 'id="actions"' not in html


async def _order(workflow: Workflow, data: dict[str, Any]) -> dict[str, Any]:
    paid = await workflow.wait_for_event("awaitPayment", "console.paid")
    billed = await workflow.run_child("bill", "console-billing", {"customer": "c9"})
    return {"paid": paid, "billed": billed}


def test_parent_child_and_events_made_by_the_runtime(
    tmp_path: Path, billing_workflow: str
) -> None:
    """A parent waiting for an event, then running a child: the console shows the event,
    links parent and child both ways and the child step's run."""
    wire_event(name="console.paid", payload=dict)
    wire_workflow(name="console-order", func=_order)
    CHARGE_FAILS["on"] = False
    url = f"sqlite:{tmp_path / 'runs.db'}"

    async def start() -> str:
        async with WorkflowRuntime(state=open_store(url)) as runtime:
            handle = await runtime.client("console-order").start({"order": 1})
            await runtime.drain()
            return handle.run_id

    async def pay(run_id: str) -> None:
        async with WorkflowRuntime(state=open_store(url)) as runtime:
            assert await runtime.send_event(run_id, "console.paid", {"amount": 3})
            await runtime.recover()
            await runtime.drain()

    run_id = asyncio.run(start())
    with client_for(url) as client:
        waiting = client.get(f"/runs/{run_id}").text
        assert 'id="run-status">suspended' in waiting and 'id="events"' not in waiting
        asyncio.run(pay(run_id))
        parent = client.get(f"/runs/{run_id}").text
        assert 'id="run-status">completed' in parent, parent[parent.find("<h1>"):][:300]
        events = parent[parent.index('<table id="events">') :]
        assert "console.paid" in events and "awaitPayment" in events
        children = parent[parent.index('<table id="children">') :]
        child_id = re.search(r'href="/runs/([0-9a-f]{32})"', children)
        assert child_id is not None and "console-billing" in children
        child = client.get(f"/runs/{child_id.group(1)}").text
        assert 'id="parent"' in child and f'href="/runs/{run_id}"' in child
        assert 'id="run-status">completed' in child
        listing = client.get("/", params={"workflow": "console-billing"}).text
        assert f"child of <a href=\"/runs/{run_id}\">" in listing
