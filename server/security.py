"""Request guards (ASGI middleware): token, Host and Origin checks against cross-site use, body limits."""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from server.settings import ServerSettings, is_loopback

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
TOKEN_COOKIE = "diffgraph_token"
# `token=...` in a logged URL (query string or form), whatever the parameter's case.
_TOKEN_IN_URL = re.compile(r"((?:^|[?&;\s])token=)[^&\s\"]*", re.IGNORECASE)
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """text with every `token=VALUE` replaced by `token=[redacted]`."""
    return _TOKEN_IN_URL.sub(r"\1" + REDACTED, text) if "token=" in text.lower() else text


class TokenRedactor(logging.Filter):
    """Log filter that takes tokens out of request lines (uvicorn's access log prints the query)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's text and arguments in place; never drops a record."""
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


def install_log_redaction() -> None:
    """Attach the token redactor to uvicorn's loggers (once)."""
    for name in ("uvicorn.access", "uvicorn.error", "uvicorn"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, TokenRedactor) for f in logger.filters):
            logger.addFilter(TokenRedactor())


class BodyTooLarge(Exception):
    """Raised inside receive() when a request body passes the upload limit."""


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


class MalformedHeader(ValueError):
    """A Host or Origin header that does not parse (bad port, stray characters)."""


def _host_port(value: str, default_port: str) -> tuple[str, str]:
    try:
        parsed = urlsplit(f"//{value}")
        return (parsed.hostname or "").lower(), str(parsed.port or default_port)
    except ValueError as exc:
        raise MalformedHeader(f"Host header {value[:80]!r} is malformed: {exc}") from None


def _cookie(headers: dict[str, str], name: str) -> str | None:
    for part in headers.get("cookie", "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


class Guard:
    """Refuses cross-site requests, DNS-rebinding Host names, missing tokens and oversized bodies."""

    def __init__(self, app: ASGIApp, settings: ServerSettings):
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        try:
            problem = self.refusal(scope, headers)
        except MalformedHeader as exc:
            problem = (400, "bad_header", str(exc))
        if problem is not None:
            status, code, text = problem
            await _refuse(scope, receive, send, status, code, text)
            return
        if scope["type"] == "http":
            await self._limited(scope, receive, send, headers)
        else:
            await self.app(scope, receive, send)

    def refusal(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str, str] | None:
        """(status, code, message) when the request must be refused, else None."""
        default_port = "443" if scope.get("scheme") in ("https", "wss") else "80"
        host, port = _host_port(headers.get("host", ""), default_port)
        if self.settings.loopback_only and not self.settings.token and host and not is_loopback(host):
            # A foreign Host on a loopback-only server is a DNS-rebinding page talking to us.
            return 403, "host_refused", f"Host {host!r} is not a loopback name; open the page via 127.0.0.1"
        origin = headers.get("origin")
        if origin is not None and not self._origin_ok(origin, host, port):
            return 403, "origin_refused", f"cross-site request from origin {origin!r} refused"
        if headers.get("sec-fetch-site") == "cross-site" and origin is None:
            return 403, "origin_refused", "cross-site request refused"
        if self.settings.token and not self._token_ok(scope, headers):
            return (
                401,
                "token_required",
                "this server needs a token: Authorization: Bearer <token> or ?token=",
            )
        return None

    def _origin_ok(self, origin: str, host: str, port: str) -> bool:
        if origin in self.settings.allowed_origins:
            return True
        if origin == "null":  # sandboxed iframes and file:// pages
            return False
        try:
            parsed = urlsplit(origin)
            if parsed.scheme not in ("http", "https") or not parsed.hostname:
                return False
            origin_port = str(parsed.port or ("443" if parsed.scheme == "https" else "80"))
        except ValueError:
            return False  # an origin that does not parse is not ours
        return parsed.hostname.lower() == host and origin_port == port

    def _token_ok(self, scope: Scope, headers: dict[str, str]) -> bool:
        expected = (self.settings.token or "").encode()
        offered: list[str] = []
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            offered.append(auth[7:].strip())
        offered += parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [])
        cookie = _cookie(headers, TOKEN_COOKIE)
        if cookie:
            offered.append(cookie)
        return any(hmac.compare_digest(value.encode(), expected) for value in offered)

    async def _limited(self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str]) -> None:
        limit = self.settings.max_upload_size
        length = headers.get("content-length", "")
        if length.isascii() and length.isdigit() and int(length) > limit:
            await _refuse(scope, receive, send, 413, "body_too_large", f"request body over {limit} bytes")
            return
        seen = 0
        started = False

        async def counting_receive() -> dict[str, Any]:
            nonlocal seen
            event = await receive()
            if event["type"] == "http.request":
                seen += len(event.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge()
            return event

        async def tracking_send(event: dict[str, Any]) -> None:
            nonlocal started
            started = started or event["type"] == "http.response.start"
            await send(event)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await _refuse(scope, receive, send, 413, "body_too_large", f"request body over {limit} bytes")


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, code: str, text: str) -> None:
    if scope["type"] == "websocket":
        await receive()  # the websocket.connect event
        await send({"type": "websocket.close", "code": 1008, "reason": text[:120]})
        return
    body = json.dumps({"error": {"type": code, "message": text, "details": "", "extra_info": {}}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
