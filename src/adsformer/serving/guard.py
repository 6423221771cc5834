"""What stands between a client and the routes: :class:`RequestGuard` (body size limit, every response
counted, no 500 without a clean body), :class:`StrictJSONRoute` (JSON without NaN, Infinity or numbers out
of range) and :func:`validation_errors` (422 bodies that name the field and echo nothing unsafe).

* **Body size**: a body over ``max_body_bytes`` (by its ``Content-Length`` or as it streams in) gets 413
  before any route sees it; bodies within it are read whole, then handed to the app.
* **Counting**: every response -- 2xx, 4xx, the guard's own 413, a 500 -- adds one to
  ``adsformer_http_requests_total{route, status}`` (``route`` is the route template, ``<unmatched>`` for
  paths the app does not serve) and its latency to ``adsformer_http_request_seconds``.
* **500**: an exception escaping the app is logged and answered with ``{"detail": "internal server
  error"}`` -- no traceback, path, URL or other internal detail.
* **JSON**: ``NaN``, ``Infinity``, ``-Infinity``, floats beyond the double range and integers of more than
  30 digits are not JSON numbers this API accepts: they parse to a marker that fails validation of
  whatever field holds them, so the 422 names that field. Invalid UTF-8 and nesting too deep for the parser
  are a JSON decode error (422, ``loc`` = ``["body", position]``).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adsformer.serving.metrics import ServingMetrics

log = logging.getLogger("adsformer.serving")

MAX_ERRORS = 50  # errors listed in one 422 body
_MAX_DIGITS = 30


class NotANumber:
    """What a JSON number this API refuses parses to (``text`` is its source, shortened)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text if len(text) <= 24 else f"{text[:12]}...({len(text)} characters)"

    def __repr__(self) -> str:
        return self.text


def _float(text: str) -> float | NotANumber:
    value = float(text)
    return value if math.isfinite(value) else NotANumber(text)


def _int(text: str) -> int | NotANumber:
    return int(text) if len(text.lstrip("-")) <= _MAX_DIGITS else NotANumber(text)


def strict_json(body: bytes) -> Any:
    """``json.loads`` for request bodies (see the module docstring)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise json.JSONDecodeError("the body is not UTF-8 text", "", exc.start) from None
    try:
        return json.loads(text, parse_float=_float, parse_int=_int, parse_constant=NotANumber)
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", "", 0) from None


class StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = strict_json(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    """An :class:`APIRoute` whose JSON bodies are parsed by :func:`strict_json`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict


def _text(value: Any, limit: int) -> str:
    """``value`` as text that always encodes (lone surrogates escaped), at most ``limit`` characters."""
    text = str(value).encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _safe_input(value: Any) -> bool:
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, int):
        return abs(value) < 10**_MAX_DIGITS
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str) and len(value) <= 100


def validation_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Pydantic-style errors made safe to return: ``type``, ``loc`` (short, encodable names), ``msg``, and
    ``input`` only when it is a short scalar; at most :data:`MAX_ERRORS`."""
    out = []
    for e in list(errors)[:MAX_ERRORS]:
        e = e if isinstance(e, dict) else {"msg": str(e)}
        loc = [
            p if isinstance(p, int) and not isinstance(p, bool) else _text(p, 80) for p in e.get("loc", ())
        ]
        value = e.get("input")
        msg = _text(e.get("msg", "invalid"), 300)
        if isinstance(value, NotANumber):
            msg = (
                f"{value.text} is not an accepted number (NaN, Infinity and numbers beyond the double range "
                f"or of more than {_MAX_DIGITS} digits are not)"
            )
        item: dict[str, Any] = {"type": _text(e.get("type", "value_error"), 60), "loc": loc, "msg": msg}
        if _safe_input(value):
            item["input"] = _text(value, 100) if isinstance(value, str) else value
        out.append(item)
    return out


def error_message(errors: list[dict[str, Any]], total: int) -> str:
    fields = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors)
    more = f" (and {total - len(errors)} more)" if total > len(errors) else ""
    return f"invalid request: {fields}{more}"


class RequestGuard:
    """Pure ASGI middleware: the body limit, the request counter and the last-resort 500 (see the module
    docstring). ``paths`` are the app's route paths (to label a 413 sent before routing)."""

    def __init__(
        self, app: ASGIApp, *, metrics: ServingMetrics, max_body_bytes: int, paths: Iterable[str] = ()
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = int(max_body_bytes)
        self.paths = frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status: list[int] = []

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
            await send(message)

        try:
            body = await self._read_body(scope, receive)
            if body is None:
                limit = self.max_body_bytes
                await JSONResponse(
                    {"detail": f"request body larger than {limit} bytes (max_body_bytes)"}, status_code=413
                )(scope, receive, counted)
            elif isinstance(body, bytes):
                await self.app(scope, _replay(body, receive), counted)
        except Exception:
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if not status:
                await JSONResponse({"detail": "internal server error"}, status_code=500)(
                    scope, receive, counted
                )
            else:
                status.append(500)
        finally:
            route = getattr(scope.get("route"), "path", None)
            if route is None:
                route = scope.get("path") if scope.get("path") in self.paths else "<unmatched>"
            code = str(status[-1]) if status else "499"  # 499: the client went away first
            self.metrics.requests.labels(route, code).inc()
            self.metrics.http_latency.labels(route).observe(time.perf_counter() - start)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | bool | None:
        """The whole body; None when it is over the limit; False when the client disconnected."""
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    if int(value) > self.max_body_bytes:
                        return None
                except ValueError:
                    pass
        chunks, total = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return False
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for the disconnect

    return replay
