"""One web client in Debian's chromium (Playwright) against one diffgraph server, for the browser suite.

Every request that leaves the machine is aborted. Console errors, page errors and failed requests are
collected; `check_clean()` fails on any not on the suite's short allow-list.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}

# Records every execution event the page's api object dispatches, for the test to wait on.
LISTEN_JS = """() => {
  const api = window.comfyAPI.api.api;
  const seen = window.__dg = {progress: 0, progressOf: {}, previews: 0, executed: [], events: [], logs: 0};
  const kinds = ['execution_start', 'execution_cached', 'execution_success', 'execution_error',
                 'execution_interrupted'];
  for (const kind of kinds) api.addEventListener(kind, (e) => seen.events.push([kind, e.detail]));
  api.addEventListener('progress', (e) => {
    seen.progress += 1;
    const id = e.detail && e.detail.prompt_id;
    if (id) seen.progressOf[id] = (seen.progressOf[id] || 0) + 1;
  });
  api.addEventListener('b_preview_with_metadata', () => { seen.previews += 1; });
  api.addEventListener('executed', (e) => { seen.executed.push(e.detail); });
  api.addEventListener('logs', () => { seen.logs += 1; });
}"""


@dataclass
class BrowserSession:
    """A Playwright page on the server at `url`, with what went wrong so far."""

    page: Any
    url: str
    artifacts: Path
    allowed: tuple[str, ...]
    problems: list[str] = field(default_factory=list)
    checked: int = 0

    def watch(self) -> None:
        """Block external requests and start collecting errors."""
        self.page.route("**/*", _block_external)
        self.page.on("pageerror", lambda exc: self.problems.append(f"pageerror: {exc}"))
        self.page.on("console", self._console)
        self.page.on("response", self._response)
        self.page.on("requestfailed", self._request_failed)

    def _console(self, msg: Any) -> None:
        if msg.type == "error":
            where = (msg.location or {}).get("url", "")
            self.problems.append(f"console: {msg.text} ({urlsplit(where).path})")

    def _response(self, response: Any) -> None:
        if response.status >= 400:
            self.problems.append(
                f"http {response.status} {response.request.method} {urlsplit(response.url).path}"
            )

    def _request_failed(self, request: Any) -> None:
        host = urlsplit(request.url).hostname or ""
        # ERR_ABORTED: the page itself dropped the request (a 404 stylesheet, a superseded save); the
        # server's answer, if any, is judged by its status above.
        if host in LOOPBACK and "ERR_ABORTED" not in str(request.failure):
            self.problems.append(f"failed {request.method} {urlsplit(request.url).path}: {request.failure}")

    def open(self, path: str = "/") -> None:
        """Load the client and wait until it is ready; install the event recorder."""
        self.page.goto(self.url + path)
        self.page.wait_for_function("() => window.app && window.app.graph && window.comfyAPI", timeout=90_000)
        self.page.evaluate(LISTEN_JS)

    def js(self, script: str, arg: Any = None) -> Any:
        """Evaluate a function expression in the page."""
        return self.page.evaluate(script, arg)

    def wait(self, script: str, arg: Any = None, timeout: float = 120.0) -> Any:
        """Wait until a function expression is truthy."""
        return self.page.wait_for_function(script, arg=arg, timeout=timeout * 1000).json_value()

    def command(self, name: str) -> None:
        """Run one of the client's commands (sidebar tabs, canvas actions)."""
        self.js("(name) => app.extensionManager.command.execute(name)", name)

    def shot(self, name: str) -> None:
        """Screenshot into the artifacts folder."""
        self.page.wait_for_timeout(300)
        self.page.screenshot(path=self.artifacts / f"{name}.png")

    def events(self, kind: str) -> list[Any]:
        """Details of the recorded events of one kind."""
        return [detail for k, detail in self.js("() => window.__dg.events") if k == kind]

    def wait_event(self, kind: str, count: int = 1, timeout: float = 300.0) -> list[Any]:
        """Wait for the count-th event of a kind; returns all of them."""
        self.wait(
            "([kind, count]) => window.__dg.events.filter((e) => e[0] === kind).length >= count",
            [kind, count],
            timeout,
        )
        return self.events(kind)

    def check_clean(self, *expected: str) -> None:
        """Fail on console errors, page errors and failed requests not on the allow-list (or expected here)."""
        fresh = self.problems[self.checked :]
        self.checked = len(self.problems)
        with (self.artifacts / "console.txt").open("a") as log:
            log.write("".join(f"{p}\n" for p in fresh))
        allowed = self.allowed + expected
        unexpected = [p for p in fresh if not any(a in p for a in allowed)]
        assert not unexpected, json.dumps(unexpected, indent=1)


def _block_external(route: Any) -> None:
    host = urlsplit(route.request.url).hostname or ""
    if route.request.url.startswith(("data:", "blob:")) or host in LOOPBACK:
        route.continue_()
    else:
        route.abort()
