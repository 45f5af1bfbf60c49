"""Capture the API prompts the installed web client queues for the UI files of the client-prompt corpus.

Usage (from the repository root; needs Debian's chromium and the `comfyui-frontend-package` wheel):

    python -m tests.engine.make_client_prompts [NAME ...]

For each `tests/engine/data/client_prompts/corpus/NAME.json` it serves the client from our server (the
builtin node pack's `/object_info`), loads the file with `app.loadGraphData`, presses Run
(`app.queuePrompt`) and records the body of the `POST /api/prompt` it sends, which is answered here
without running anything. The browser's clock is fixed at NOW in UTC and, while queueing,
`Math.random` is replaced by the seeded generator `engine.formats.ui_transforms.ChoiceRandom` also implements,
so dates and `{a|b}` choices are reproducible. Each capture is written to `captured/NAME.json` with the
client version, the clock, the seed and how many random numbers the client drew.
"""

from __future__ import annotations

import importlib.metadata
import json
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from engine import Environment, ModelPaths

DATA = Path(__file__).parent / "data" / "client_prompts"
CORPUS = DATA / "corpus"
CAPTURED = DATA / "captured"
CHROMIUM = Path("/usr/bin/chromium")
NOW = datetime(2025, 3, 7, 9, 5, 3)  # single-digit fields show the padding rules; read as UTC
CHOICE_SEED = 20250307
CHECKPOINT = "tiny-sd15.safetensors"  # the corpus' ckpt_name; an empty file is enough for the combo
SETTINGS = {"Comfy.TutorialCompleted": True, "Comfy.Notification.ShowVersionUpdates": False}

# Park-Miller, as ChoiceRandom: the products stay below 2**53, so JS doubles compute it exactly.
PIN_RANDOM_JS = """(seed) => {
  let state = (seed % 2147483647) || 1;
  window.__dgRandom = {calls: 0, original: Math.random};
  Math.random = () => {
    window.__dgRandom.calls += 1;
    state = (state * 48271) % 2147483647;
    return state / 2147483647;
  };
}"""
UNPIN_RANDOM_JS = "() => { Math.random = window.__dgRandom.original; return window.__dgRandom.calls; }"


def client_version() -> str:
    """The installed comfyui-frontend-package version."""
    return importlib.metadata.version("comfyui-frontend-package")


def _start_server(base: Path) -> Any:
    from nodes.pack import build_registry
    from server.app import create_app
    from server.settings import ServerSettings
    from tests.server.conftest import LiveServer

    models, input_dir = base / "models", base / "input"
    (models / "checkpoints").mkdir(parents=True)
    (models / "checkpoints" / CHECKPOINT).write_bytes(b"")
    input_dir.mkdir()
    settings_file = base / "user" / "default" / "comfy.settings.json"
    settings_file.parent.mkdir(parents=True)
    settings_file.write_text(json.dumps(SETTINGS))
    env = Environment(base / "output", base / "temp", input_dir, None, ModelPaths(models))
    registry = build_registry(env.model_paths, input_dir)
    settings = ServerSettings(user_dir=base / "user", serve_frontend=True)
    return LiveServer(create_app(registry, env, settings=settings)).start()


def _only_loopback(route: Any) -> None:
    host = urlsplit(route.request.url).hostname or ""
    if route.request.url.startswith(("data:", "blob:")) or host in ("127.0.0.1", "localhost"):
        route.continue_()
    else:
        route.abort()


def capture(page: Any, workflow: dict[str, Any], sent: list[dict[str, Any]]) -> dict[str, Any]:
    """Load one UI workflow, queue it, and return the captured request body and random draw count."""
    sent.clear()
    page.evaluate("(wf) => app.loadGraphData(wf)", workflow)
    page.wait_for_timeout(300)
    page.evaluate(PIN_RANDOM_JS, CHOICE_SEED)
    page.evaluate("() => app.queuePrompt(0, 1)")
    page.wait_for_function("() => window.__dgSent === true", timeout=30_000)
    calls = page.evaluate(UNPIN_RANDOM_JS)
    page.evaluate("() => { window.__dgSent = false; }")
    (body,) = sent
    return {"body": body, "random_calls": calls}


def generate(paths: list[Path], out_dir: Path) -> list[Path]:
    """Capture the prompt the installed client queues for each UI file; one record per file in out_dir."""
    from playwright.sync_api import sync_playwright

    out_dir.mkdir(parents=True, exist_ok=True)
    sent: list[dict[str, Any]] = []

    def answer_prompt(route: Any) -> None:
        if route.request.method != "POST":
            route.continue_()
            return
        sent.append(json.loads(route.request.post_data or "{}"))
        route.fulfill(status=200, json={"prompt_id": "captured", "number": 0, "node_errors": {}})
        route.request.frame.page.evaluate("() => { window.__dgSent = true; }")

    written = []
    with tempfile.TemporaryDirectory() as tmp:
        live = _start_server(Path(tmp))
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True)
                page = browser.new_context(timezone_id="UTC").new_page()
                page.clock.set_fixed_time(NOW.replace(tzinfo=UTC))
                page.route("**/*", _only_loopback)
                page.route("**/api/prompt", answer_prompt)
                page.goto(live.url + "/")
                page.wait_for_function(
                    "() => window.app && window.app.graph && window.comfyAPI", timeout=90_000
                )
                for path in paths:
                    result = capture(page, json.loads(path.read_text(encoding="utf-8")), sent)
                    record = {
                        "client_version": client_version(),
                        "timezone": "UTC",
                        "now": NOW.isoformat(),
                        "choice_seed": CHOICE_SEED,
                        "random_calls": result["random_calls"],
                        "prompt": result["body"]["prompt"],
                    }
                    out = out_dir / path.name
                    out.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
                    written.append(out)
                browser.close()
        finally:
            live.stop()
    return written


def main(names: list[str]) -> int:
    """Capture the named corpus files (all when none are named) into data/client_prompts/captured."""
    paths = [CORPUS / f"{n}.json" for n in names] if names else sorted(CORPUS.glob("*.json"))
    for out in generate(paths, CAPTURED):
        record = json.loads(out.read_text(encoding="utf-8"))
        print(f"{out.name}: {len(record['prompt'])} nodes, {record['random_calls']} random draws")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
