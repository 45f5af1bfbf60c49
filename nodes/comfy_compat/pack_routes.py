"""HTTP routes of ComfyUI packs: their aiohttp-style handlers served as Starlette endpoints.

Packs declare routes with `PromptServer.instance.routes.get(path)` and write handlers against
aiohttp's request and response types. Each handler is wrapped here: it receives a request object with
the aiohttp attributes packs use (match_info, query, rel_url, headers, json(), post(), text(), read())
and its aiohttp response is turned into a Starlette one. Path patterns other than plain `{name}` and
`{name:.*}` are refused when the pack loads, never served half-right.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from multidict import CIMultiDict, MultiDict
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from yarl import URL

Endpoint = Callable[[Request], Awaitable[Response]]
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([^{}]*))?\}")


class UnsupportedRoute(ValueError):
    """A route diffgraph cannot serve as the pack declared it."""


def starlette_path(path: str) -> str:
    """aiohttp's path syntax in Starlette's: `{x}` stays, `{x:.*}` becomes `{x:path}`; others refused."""

    def convert(match: re.Match[str]) -> str:
        name, pattern = match.group(1), match.group(2)
        if pattern is None:
            return "{" + name + "}"
        if pattern in (".*", ".+"):
            return "{" + name + ":path}"
        raise UnsupportedRoute(f"route {path!r}: the pattern {pattern!r} of {{{name}}} is not supported")

    if not path.startswith("/"):
        raise UnsupportedRoute(f"route {path!r} does not start with '/'")
    return _PARAM.sub(convert, path)


class PackRequest:
    """The aiohttp request attributes packs read, over a Starlette request."""

    def __init__(self, request: Request):
        self._request = request
        self.method = request.method
        self.path = request.url.path
        self.match_info: dict[str, str] = dict(request.path_params)
        self.query: MultiDict[str] = MultiDict(request.query_params.multi_items())
        self.rel_url = URL(str(request.url.path) + (f"?{request.url.query}" if request.url.query else ""))
        self.headers: CIMultiDict[str] = CIMultiDict(request.headers.items())
        self.content_type = request.headers.get("content-type", "").split(";")[0].strip()

    async def read(self) -> bytes:
        """The raw body."""
        return await self._request.body()

    async def text(self) -> str:
        """The body as text."""
        return (await self._request.body()).decode("utf-8")

    async def json(self) -> Any:
        """The body parsed as JSON."""
        return await self._request.json()

    async def post(self) -> MultiDict[Any]:
        """Form fields (url-encoded or multipart)."""
        form = await self._request.form()
        return MultiDict(form.multi_items())


def starlette_response(result: Any) -> Response:
    """A pack handler's aiohttp response as a Starlette response."""
    if isinstance(result, web.FileResponse):
        return FileResponse(str(result._path), status_code=result.status)  # aiohttp keeps the path private
    if isinstance(result, web.Response):
        body = result.body
        if body is None:
            content = b""
        elif isinstance(body, bytes | bytearray):
            content = bytes(body)
        else:
            content = bytes(body._value) if hasattr(body, "_value") else str(body).encode()
        headers = {k: v for k, v in result.headers.items() if k.lower() != "content-length"}
        return Response(content=content, status_code=result.status, headers=headers)
    raise TypeError(
        f"a pack route returned {type(result).__name__}; only aiohttp Response/FileResponse are served"
    )


def endpoint(handler: Callable[[Any], Any]) -> Endpoint:
    """A Starlette endpoint calling an aiohttp-style pack handler."""

    async def call(request: Request) -> Response:
        try:
            result = await handler(PackRequest(request))
        except web.HTTPException as exc:  # aiohttp handlers raise these for 4xx/3xx answers
            return Response(content=exc.text or "", status_code=exc.status, headers=dict(exc.headers))
        return starlette_response(result)

    call.__name__ = getattr(handler, "__name__", "pack_route")
    return call
