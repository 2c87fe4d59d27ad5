"""``pikku-runs serve``: check the options, bind the socket, run the console under uvicorn.

Exit codes are those of ``pikku-runs``: 2 for a usage error (a non-loopback address without
a token, a bad ``--meta``, an address that cannot be bound), 3 when the store cannot be
opened. SIGTERM (or Ctrl-C) stops the server gracefully.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final, TextIO

import uvicorn

from pikku_typing._term import one_line
from pikku_typing.console import views
from pikku_typing.console.app import ConsoleSettings, create_app, display_store
from pikku_typing.console.security import LOOPBACK_NAMES, is_loopback
from pikku_typing.runtime import runs_cli
from pikku_typing.runtime.runs_cli import EXIT_STORE, EXIT_USAGE, CliError

TOKEN_ENV: Final = "PIKKU_CONSOLE_TOKEN"
MIN_TOKEN_LENGTH: Final = 16
_WILDCARDS: Final = ("0.0.0.0", "::", "")


def resolve_token(token: str | None) -> str | None:
    value = token if token is not None else os.environ.get(TOKEN_ENV)
    value = (value or "").strip()
    if not value:
        return None
    if len(value) < MIN_TOKEN_LENGTH:
        raise CliError(
            f"the console token must have at least {MIN_TOKEN_LENGTH} characters (make one with "
            "python -c 'import secrets; print(secrets.token_urlsafe(24))')",
            EXIT_USAGE,
        )
    return value


def allowed_hosts_for(host: str, extra: Sequence[str]) -> list[str]:
    """Which ``Host`` headers the console answers: the loopback names on loopback, the bound
    name (plus ``--allow-host``) elsewhere, anything on a wildcard address without
    ``--allow-host`` (the token is then the guard)."""
    if is_loopback(host):
        return [*LOOPBACK_NAMES, host, *extra]
    if host in _WILDCARDS:
        return list(extra) if extra else ["*"]
    return [host, *extra]


def settings_from_options(
    *,
    store_url: str,
    host: str,
    token: str | None,
    allow_hosts: Sequence[str] = (),
    meta: str | None = None,
    page_size: int = views.DEFAULT_PAGE_SIZE,
) -> ConsoleSettings:
    """Validate the options of ``pikku-runs serve`` (raises :class:`CliError`)."""
    resolved = resolve_token(token)
    if not is_loopback(host) and resolved is None:
        raise CliError(
            f"binding the console to {host or 'all addresses'} (not loopback) requires a token: "
            f"--token TOKEN or {TOKEN_ENV}",
            EXIT_USAGE,
        )
    meta_path: Path | None
    if meta is not None:
        meta_path = Path(meta).expanduser().resolve()
        if meta_path.is_dir():
            meta_path = meta_path / views.META_FILE
        if not meta_path.is_file():
            raise CliError(f"--meta: no workflow_meta.json at {meta_path}", EXIT_USAGE)
    else:
        meta_path = views.find_meta()
    if not 1 <= page_size <= views.MAX_PAGE_SIZE:
        raise CliError(f"--page-size must be between 1 and {views.MAX_PAGE_SIZE}", EXIT_USAGE)
    return ConsoleSettings(
        store_url=store_url,
        token=resolved,
        allowed_hosts=allowed_hosts_for(host, allow_hosts),
        meta_path=meta_path,
        page_size=page_size,
    )


async def _check_store(url: str) -> None:
    store = await runs_cli.open_store(url)
    try:
        await store.list_runs(limit=1)
    finally:
        with contextlib.suppress(Exception):
            await store.close()


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free port)."""
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise CliError(f"cannot listen on {host}:{port}: {exc}", EXIT_USAGE) from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
        sock.set_inheritable(True)
    except OSError as exc:
        sock.close()
        raise CliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", EXIT_USAGE) from exc
    return sock


def serve(
    *,
    store_url: str,
    host: str,
    port: int,
    token: str | None,
    allow_hosts: Sequence[str] = (),
    meta: str | None = None,
    page_size: int = views.DEFAULT_PAGE_SIZE,
    out: TextIO | None = None,
) -> int:
    """Run the console until SIGTERM / Ctrl-C (raises :class:`CliError` on bad options)."""
    out = out or sys.stderr
    if not 0 <= port <= 65535:
        raise CliError(f"--port must be between 0 and 65535, not {port}", EXIT_USAGE)
    settings = settings_from_options(
        store_url=store_url,
        host=host,
        token=token,
        allow_hosts=allow_hosts,
        meta=meta,
        page_size=page_size,
    )
    try:
        asyncio.run(_check_store(store_url))
    except CliError:
        raise
    except Exception as exc:
        raise CliError(f"cannot open store {store_url}: {one_line(exc)}", EXIT_STORE) from exc
    sock = bind(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in str(bound_host) else str(bound_host)
    config = uvicorn.Config(
        create_app(settings),
        log_level="warning",
        access_log=False,
        lifespan="on",
        server_header=False,
        proxy_headers=False,
    )
    server = uvicorn.Server(config)
    login = " (open it once with ?token=TOKEN)" if settings.token else ""
    meta_note = f"; diagrams from {settings.meta_path}" if settings.meta_path else ""
    print(
        f"pikku-runs: console on http://{shown}:{bound_port}/{login} over "
        f"{display_store(store_url)}{meta_note}; SIGTERM or Ctrl-C stops it",
        file=out,
        flush=True,
    )
    # uvicorn stops gracefully on SIGTERM, then re-raises it to the handler it found: a no-op
    # one here, so a stop by SIGTERM exits 0 (Ctrl-C still ends as KeyboardInterrupt, 130)
    previous = signal.signal(signal.SIGTERM, _ignore_signal)
    try:
        asyncio.run(server.serve(sockets=[sock]))
    finally:
        sock.close()
        signal.signal(signal.SIGTERM, previous)
    return 0


def _ignore_signal(signum: int, frame: object) -> None:
    """The SIGTERM handler while uvicorn runs (uvicorn installs its own on top)."""
