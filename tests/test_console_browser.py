"""The web console in a real headless browser: a real ``pikku-runs serve`` process over a
file store holding a completed, a failed (with ``<script>`` in its input and error), a
suspended and a running run and a parent/child pair; Debian's ``chromium`` driven by
``chromium-driver`` through selenium (installed by scripts/install.sh).

Skipped with the reason when chromium, its driver or selenium is missing, except in CI
(``CI`` set), where that is a failure."""

from __future__ import annotations

import asyncio
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from console_support import FAILED, OK, PARENT, SLEEPING, make_runs

from pikku_typing.models import RunStatus
from pikku_typing.state import open_store

ROOT = Path(__file__).resolve().parent.parent
META = ROOT / "examples" / "pikku_gen" / "workflow_meta.json"
WIDTH, HEIGHT = 1280, 900
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"the browser test must run in CI: {reason} (scripts/install.sh installs it)")
    pytest.skip(reason)


def _find(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name) or (name if os.path.isfile(name) else None)
        if found:
            return found
    return None


@dataclass
class Console:
    url: str
    store_url: str
    process: subprocess.Popen[str]


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    """A real ``pikku-runs serve`` process on a free port (``--port 0``: it prints the
    address), stopped with SIGTERM."""
    from pikku_typing.console import missing_extra

    if missing_extra() is not None:
        _unavailable(str(missing_extra()))
    store_url = f"file:{tmp_path / 'state'}"
    asyncio.run(make_runs(store_url))
    script = Path(sys.executable).with_name("pikku-runs")
    command = (
        [str(script)]
        if script.exists()
        else [sys.executable, "-m", "pikku_typing.runtime.runs_cli"]
    )
    env = {k: v for k, v in os.environ.items() if k != "PIKKU_CONSOLE_TOKEN"}
    process = subprocess.Popen(
        [*command, "--store", store_url, "serve", "--port", "0", "--meta", str(META)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stderr is not None
        ready, _, _ = select.select([process.stderr], [], [], 60)
        line = process.stderr.readline() if ready else ""
        assert "console on http://" in line, f"the server did not start: {line!r}"
        url = line.split("console on ", 1)[1].split()[0].rstrip("/")
        yield Console(url, store_url, process)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise AssertionError("the console did not stop on SIGTERM") from None
        rest = process.stderr.read() if process.stderr is not None else ""
        assert "Traceback" not in rest, rest
        assert code == 0, f"exit code {code} after SIGTERM: {rest}"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _unavailable("selenium is not installed (pip install -e '.[dev]')")
    chromium = _find("chromium", "chromium-browser", "/usr/lib/chromium/chromium")
    driver_path = _find("chromedriver", "chromium-driver", "/usr/lib/chromium/chromedriver")
    if chromium is None or driver_path is None:
        _unavailable("Debian's chromium and chromium-driver are not installed")
    assert chromium is not None and driver_path is not None
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.add_argument(f"--window-size={WIDTH},{HEIGHT}")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    try:
        driver.set_page_load_timeout(60)
        yield driver
    finally:
        driver.quit()


def _wait_for(driver: Any, css: str, timeout: float = 30) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css))
    )


def _status(store_url: str, run_id: str) -> RunStatus:
    async def read() -> RunStatus:
        async with open_store(store_url) as store:
            return (await store.get_run(run_id)).status

    return asyncio.run(read())


# ----------------------------------------------------------------- PNG check


def decode_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """``(width, height, rows)`` of an 8-bit RGB/RGBA PNG (what chromium writes), each row
    as raw pixel bytes: enough to check a screenshot without an imaging library."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6), f"unexpected PNG format {depth}/{colour}"
    bpp = 4 if colour == 6 else 3
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up = previous[i]
            corner = previous[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                pred = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + pred) & 0xFF
        rows.append(bytes(line))
        previous = line
    return width, height, [bytes(r) for r in rows]


def pixel(rows: list[bytes], x: int, y: int, bpp: int) -> tuple[int, int, int]:
    row = rows[y]
    return row[x * bpp], row[x * bpp + 1], row[x * bpp + 2]


# --------------------------------------------------------------------- test


def test_console_in_a_real_browser(console: Console, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    # the list: every kind of run, newest first
    browser.get(console.url + "/")
    _wait_for(browser, "#runs")
    rows = browser.find_elements(By.CSS_SELECTOR, "#runs tbody tr")
    ids = [row.get_attribute("data-run-id") for row in rows]
    assert {OK, FAILED, SLEEPING, PARENT} <= set(ids)
    assert ids.index(PARENT) < ids.index(OK)

    # the failed run: its <script> input and error are shown as text, never run
    browser.find_element(By.CSS_SELECTOR, f'a[href="/runs/{FAILED}"]').click()
    _wait_for(browser, "#failure")
    assert browser.execute_script("return typeof window.__pwned") == "undefined"
    assert "<script>window.__pwned = 1</script>" in browser.find_element(By.ID, "input").text
    assert "CardDeclined" in browser.find_element(By.ID, "failure").text
    assert browser.find_elements(By.ID, "cancel") == []  # settled: no cancel

    # the parent run links its child, which links back
    browser.get(console.url + f"/runs/{PARENT}")
    browser.find_element(By.CSS_SELECTOR, "#children a").click()
    _wait_for(browser, "#parent")
    assert browser.find_element(By.ID, "run-status").text == "completed"
    browser.find_element(By.CSS_SELECTOR, "#parent a").click()
    _wait_for(browser, "#children")
    assert browser.find_element(By.ID, "run-id").text == PARENT

    # list -> the suspended run -> cancel
    browser.get(console.url + "/?status=suspended")
    _wait_for(browser, "#runs")
    browser.find_element(By.CSS_SELECTOR, f'a[href="/runs/{SLEEPING}"]').click()
    _wait_for(browser, "#cancel")
    assert browser.find_element(By.ID, "run-status").text == "suspended"
    assert browser.find_element(By.ID, "diagram").get_attribute("data-source") == "meta"
    browser.find_element(By.ID, "cancel").click()
    _wait_for(browser, "#notice")
    assert browser.find_element(By.ID, "run-status").text == "cancelled"
    assert browser.current_url.endswith(f"/runs/{SLEEPING}?done=cancelled")
    assert _status(console.store_url, SLEEPING) is RunStatus.CANCELLED

    # a screenshot of the failed run's page: the expected size, and not blank
    browser.get(console.url + f"/runs/{FAILED}")
    _wait_for(browser, "#timeline")
    png = browser.get_screenshot_as_png()
    (tmp_path / "console.png").write_bytes(png)
    if os.environ.get("PIKKU_CONSOLE_SCREENSHOT"):
        Path(os.environ["PIKKU_CONSOLE_SCREENSHOT"]).write_bytes(png)
    width, height, rows = decode_png(png)
    viewport = browser.execute_script(
        "return [window.innerWidth, window.innerHeight, window.devicePixelRatio]"
    )
    # the viewport of the --window-size window (its height less the browser's own bars)
    assert (width, height) == (round(viewport[0] * viewport[2]), round(viewport[1] * viewport[2]))
    assert width == WIDTH and HEIGHT // 2 < height <= HEIGHT, (width, height)
    bpp = len(rows[0]) // width
    colours = {pixel(rows, x, y, bpp) for y in range(0, height, 7) for x in range(0, width, 7)}
    assert len(colours) > 30, f"the screenshot looks blank ({len(colours)} colours)"
    # the dark header bar at the top, the light page under it
    assert pixel(rows, 5, 5, bpp) == (0x11, 0x18, 0x27)
    assert sum(pixel(rows, width // 2, height - 5, bpp)) > 600
    # the failure's red is on the page (the error text and the failed attempts' bars)
    red = sum(
        1
        for y in range(0, height, 3)
        for x in range(0, width, 3)
        if pixel(rows, x, y, bpp) == (0xB9, 0x1C, 0x1C)
    )
    assert red > 20, f"no failure colour in the screenshot ({red} red samples)"



def test_missing_browser_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    """CI must run the browser test: there a missing browser is a failure, not a skip."""
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="must run in CI"):
        _unavailable("no chromium")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="no chromium"):
        _unavailable("no chromium")
