"""What stands between the network and the routes: body size, security headers, login
throttling, and 422 answers that stay small.

Decisions:

- Body size is checked in an ASGI middleware, first on ``Content-Length`` (refused before
  a byte is read) and then on the bytes as they arrive (a chunked body has no length):
  413 either way. The limit is a setting (``api.max_body_bytes``).
- A 422 names the field at fault and shows at most ``ECHO_CHARS`` of the value it
  refused: echoing a body back whole turns a 100 MB mistake into a 100 MB answer. It is
  written as ASCII JSON, so a value holding a lone surrogate (valid JSON, not valid
  UTF-8) cannot fail the answer itself.
- Every answer carries ``X-Content-Type-Options``, ``X-Frame-Options`` and
  ``Referrer-Policy``; every answer but the interactive docs (which load their script
  from a CDN) carries a Content-Security-Policy that allows exactly the review page's
  one inline style block and one inline script block (its live updates), by their
  hashes, and fetches from this site only.
- Logins are throttled per client address: ``api.login_failures`` failures within
  ``api.login_window_s``, then 429 with ``Retry-After`` until the oldest one ages out.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ECHO_CHARS = 200
"""Characters of a refused value a 422 shows: enough to recognise it."""

_DOCS = ("/docs", "/redoc")


def _inline_hash(tag: str) -> str:
    """The CSP source of the review page's one inline ``tag`` block (templates/base.html)."""
    text = (Path(__file__).parent / "templates" / "base.html").read_text(encoding="utf-8")
    match = re.search(rf"<{tag}>(.*?)</{tag}>", text, re.DOTALL)
    if match is None:
        return "'none'"
    digest = hashlib.sha256(match.group(1).encode()).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


def _style_hash() -> str:
    return _inline_hash("style")


CSP = (
    "default-src 'none'; "
    f"style-src {_style_hash()}; "
    f"script-src {_inline_hash('script')}; "
    "connect-src 'self'; "
    "img-src 'self' data:; "
    "form-action 'self'; "
    "frame-ancestors 'none'; "
    "base-uri 'none'"
)
"""The page's own style and script blocks only (the script fetches this site's pages
for live updates), no frames, forms only to this site."""

_COMMON = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


def security_headers(path: str) -> list[tuple[bytes, bytes]]:
    """The security headers of an answer to ``path`` (the CSP on all but the docs)."""
    extra = list(_COMMON)
    if not path.startswith(_DOCS):
        extra.append((b"content-security-policy", CSP.encode()))
    return extra


class SecurityHeaders:
    """Adds the security headers to every answer (``security_headers``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = security_headers(str(scope.get("path", "")))

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)


class BodyLimit:
    """Refuses a request body over ``max_bytes`` with 413, declared or streamed."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and not (declared.isdigit() and int(declared) <= self.max_bytes):
            await self._refuse(send)
            return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(413, detail=self._detail())
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except HTTPException as exc:
            if exc.status_code != 413 or started:
                raise
            await self._refuse(send)

    def _detail(self) -> str:
        return f"request body larger than {self.max_bytes} bytes (api.max_body_bytes)"

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"detail": self._detail()}).encode()
        headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return str(value.decode("latin-1").strip())
    return None


def short(value: Any) -> Any:
    """``value`` as a 422 may show it: short scalars whole, the rest cut or summarised."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return (
            value
            if len(value) <= ECHO_CHARS
            else f"{value[:ECHO_CHARS]}... ({len(value)} characters)"
        )
    if isinstance(value, dict):
        return f"an object of {len(value)} fields"
    if isinstance(value, list | tuple):
        return f"an array of {len(value)} items"
    return f"a {type(value).__name__}"


async def validation_error(request: Request, exc: Exception) -> Response:
    """FastAPI's 422 body (``detail``: a list naming each field at fault), with each
    refused value shortened and the answer ASCII-only."""
    assert isinstance(exc, RequestValidationError)  # registered for it alone
    detail = []
    for error in exc.errors():
        item = {key: error[key] for key in ("type", "loc", "msg") if key in error}
        if "input" in error:
            item["input"] = short(error["input"])
        detail.append(item)
    body = json.dumps({"detail": detail}, ensure_ascii=True, default=str)
    return Response(body, status_code=422, media_type="application/json")


class LoginThrottle:
    """Failed logins per client address in a sliding window; thread-safe (FastAPI runs
    the login route in its thread pool)."""

    MAX_CLIENTS = 10_000
    """Addresses remembered at most; the least recently failing are forgotten first, so
    a scan from many addresses cannot grow memory without bound."""

    def __init__(
        self, *, failures: int, window_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.failures, self.window_s, self._clock = failures, window_s, clock
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after_s(self, client: str) -> int | None:
        """Seconds until ``client`` may try again; None when it may now."""
        with self._lock:
            times = self._recent(client)
            if len(times) < self.failures:
                return None
            return max(1, math.ceil(times[0] + self.window_s - self._clock()))

    def failed(self, client: str) -> None:
        with self._lock:
            times = self._recent(client)
            times.append(self._clock())
            self._seen[client] = times
            self._seen.move_to_end(client)
            while len(self._seen) > self.MAX_CLIENTS:
                self._seen.popitem(last=False)

    def _recent(self, client: str) -> deque[float]:
        times = self._seen.get(client, deque())
        while times and times[0] <= self._clock() - self.window_s:
            times.popleft()
        return times
