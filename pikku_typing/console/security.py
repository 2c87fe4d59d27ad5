"""The console's security rules, as one pure ASGI middleware (no store access here).

* **Token.** When the console has a token (``--token`` / ``PIKKU_CONSOLE_TOKEN``; required
  for a non-loopback address), every request must carry it: the header
  ``Authorization: Bearer TOKEN`` (or ``X-Pikku-Token: TOKEN``), or the session cookie that a
  ``?token=TOKEN`` login sets (the cookie holds an HMAC of the token, never the token). A
  request without it gets 401 and nothing from the store.
* **Host.** The ``Host`` header must name an allowed host (loopback names when bound to
  loopback): a DNS-rebinding page cannot reach the console under its own name.
* **CSRF.** Actions are POST only; a POST needs the form field ``csrf`` equal to the
  ``pikku_csrf`` cookie (double submit, ``SameSite=Strict``), and its ``Origin`` /
  ``Sec-Fetch-Site`` (when the browser sends them) must be this origin.
* **Headers.** Every response has a strict Content-Security-Policy (no external source at
  all; the one inline script carries a per-response nonce), ``X-Frame-Options: DENY``,
  ``nosniff``, ``Referrer-Policy: same-origin`` and ``no-store``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

TOKEN_HEADER: Final = "x-pikku-token"
CSRF_COOKIE: Final = "pikku_csrf"
CSRF_FIELD: Final = "csrf"
SESSION_COOKIE: Final = "pikku_console"
LOOPBACK_NAMES: Final = ("localhost", "127.0.0.1", "::1")
MAX_FORM_BYTES: Final = 16 * 1024


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (``127.0.0.0/8``, ``::1``)."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def session_value(token: str) -> str:
    """The session cookie's value: an HMAC of the token (the cookie never holds the token)."""
    return hmac.new(token.encode(), b"pikku-console-session", hashlib.sha256).hexdigest()


def new_csrf() -> str:
    return secrets.token_urlsafe(32)


def csrf_cookie_ok(value: str | None) -> bool:
    return value is not None and 20 <= len(value) <= 100 and value.isascii()


def host_allowed(host_header: str, allowed: Iterable[str]) -> bool:
    """``Host`` (``name``, ``name:port``, ``[v6]:port``) against the allowed names (``*``
    allows any)."""
    names = list(allowed)
    if "*" in names:
        return True
    host = host_header.strip().lower()
    if host.startswith("["):
        name = host[1 : host.find("]")] if "]" in host else host
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return any(name == allowed_name.strip("[]").lower() for allowed_name in names)


def _security_headers(nonce: str) -> list[tuple[bytes, bytes]]:
    csp = (
        "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; "
        f"script-src 'nonce-{nonce}'; form-action 'self'; frame-ancestors 'none'; "
        "base-uri 'none'"
    )
    return [
        (b"content-security-policy", csp.encode()),
        (b"x-frame-options", b"DENY"),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"same-origin"),  # no-referrer makes POSTs Origin: null
        (b"cache-control", b"no-store"),
        (b"cross-origin-opener-policy", b"same-origin"),
        (b"cross-origin-resource-policy", b"same-origin"),
    ]


class SecurityMiddleware:
    """Token, Host and CSRF checks and the security headers (see the module docstring)."""

    def __init__(
        self, app: ASGIApp, *, token: str | None, allowed_hosts: Iterable[str]
    ) -> None:
        self.app = app
        self.token = token
        self.session = session_value(token) if token else None
        self.allowed_hosts = tuple(allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(16)
        scope.setdefault("state", {})["csp_nonce"] = nonce
        extra = _security_headers(nonce)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        headers = Headers(scope=scope)
        response = self._refusal(scope, headers)
        if response is not None:
            await response(scope, receive, send_with_headers)
            return
        if scope["method"] == "POST":
            body, response = await self._check_post(scope, headers, receive)
            if response is not None:
                await response(scope, receive, send_with_headers)
                return
            receive = _replay(body)
        await self.app(scope, receive, send_with_headers)

    # ------------------------------------------------------------ checks

    def _refusal(self, scope: Scope, headers: Headers) -> Response | None:
        if not host_allowed(headers.get("host", ""), self.allowed_hosts):
            return PlainTextResponse("400 Bad Request: this Host is not allowed\n", 400)
        if scope["method"] not in ("GET", "HEAD", "POST"):
            return PlainTextResponse("405 Method Not Allowed\n", 405)
        if self.token is None or self.session is None:
            return None
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        given = query.get("token")
        if given is not None and scope["method"] in ("GET", "HEAD"):
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return _unauthorized("the token is not valid")
            # log in: set the session cookie, and drop the token from the address bar
            rest = urlencode([(k, v) for k, v in query.items() if k != "token"])
            target = scope.get("path", "/") + (f"?{rest}" if rest else "")
            response = RedirectResponse(target or "/", status_code=303)
            response.set_cookie(
                _cookie_name(SESSION_COOKIE, scope),
                self.session,
                httponly=True,
                samesite="strict",
                secure=scope.get("scheme") == "https",
                path="/",
            )
            return response
        if self._authorized(scope, headers):
            return None
        return _unauthorized("a token is required")

    def _authorized(self, scope: Scope, headers: Headers) -> bool:
        assert self.token is not None and self.session is not None
        bearer = headers.get("authorization", "")
        if bearer.lower().startswith("bearer "):
            return hmac.compare_digest(bearer[7:].strip().encode(), self.token.encode())
        header = headers.get(TOKEN_HEADER)
        if header is not None:
            return hmac.compare_digest(header.strip().encode(), self.token.encode())
        cookie = _cookies(headers).get(_cookie_name(SESSION_COOKIE, scope))
        return cookie is not None and hmac.compare_digest(cookie.encode(), self.session.encode())

    async def _check_post(
        self, scope: Scope, headers: Headers, receive: Receive
    ) -> tuple[bytes, Response | None]:
        refused = _cross_origin(scope, headers)
        if refused is not None:
            return b"", _forbidden(refused)
        body = b""
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b"", _forbidden("the client went away")
            body += message.get("body", b"")
            more = bool(message.get("more_body", False))
            if len(body) > MAX_FORM_BYTES:
                return b"", PlainTextResponse("413 the form is too large\n", 413)
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            return body, _forbidden("actions are HTML form posts")
        form = dict(parse_qsl(body.decode("utf-8", "replace")))
        cookie = _cookies(headers).get(_cookie_name(CSRF_COOKIE, scope))
        field = form.get(CSRF_FIELD)
        if (
            not csrf_cookie_ok(cookie)
            or field is None
            or not hmac.compare_digest(field.encode(), (cookie or "").encode())
        ):
            return body, _forbidden("the CSRF check failed (reload the page and try again)")
        return body, None


def _cross_origin(scope: Scope, headers: Headers) -> str | None:
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return f"a {site} request cannot act on runs"
    origin = headers.get("origin")
    if origin is not None and origin != "null":
        expected = f"{scope.get('scheme', 'http')}://{headers.get('host', '')}"
        if origin.lower() != expected.lower():
            return "a request from another origin cannot act on runs"
    elif origin == "null":
        return "a request from an opaque origin cannot act on runs"
    return None


def _cookie_name(base: str, scope: Scope) -> str:
    """Cookies are shared by every port of a host: the name carries the port, so two consoles
    on one machine keep separate sessions."""
    server = scope.get("server")
    port = server[1] if isinstance(server, (tuple, list)) and len(server) > 1 else None
    return f"{base}_{port}" if port else base


def cookie_name(base: str, scope: Scope) -> str:
    return _cookie_name(base, scope)


def _cookies(headers: Headers) -> Mapping[str, str]:
    from starlette.requests import cookie_parser

    return cookie_parser(headers.get("cookie", ""))


def _unauthorized(why: str) -> Response:
    return PlainTextResponse(
        f"401 Unauthorized: {why}. Open the console with ?token=TOKEN once (it sets a "
        "session cookie), or send the header 'Authorization: Bearer TOKEN'.\n",
        401,
        headers={"WWW-Authenticate": 'Bearer realm="pikku-console"'},
    )


def _forbidden(why: str) -> Response:
    return PlainTextResponse(f"403 Forbidden: {why}\n", 403)


def _replay(body: bytes) -> Receive:
    """A ``receive`` that hands the already-read body to the app."""
    sent = False

    async def receive() -> MutableMapping[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive
