"""The official web client in Debian's chromium, walking what a user does, against both client versions.

1.58.1 is the pinned client (installed package); 1.27.10 is the one ComfyUI's release we follow pins,
installed by .ci/run into .cache/frontend-1.27.10 and served with --front-end-root. The real nodes run
on tiny random checkpoints, so every run is quick on CPU. Tests in this module share one server and
one page per client version and run in order, as a user's session would. Screenshots and the console
log go to test-artifacts/browser/<version>/.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine import Environment, ModelPaths
from tests.server.browser_session import BrowserSession
from tests.server.conftest import Folders, LiveServer

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "browser"
OLD_CLIENT = Path(
    os.environ.get(
        "DIFFGRAPH_FRONTEND_1_27", REPO / ".cache" / "frontend-1.27.10" / "comfyui_frontend_package"
    )
)
WORKFLOW_NAMES = sorted(p.stem for p in (REPO / "workflows" / "ui").glob("*.json"))
# Console noise that is not a failure, each with its reason:
ALLOWED = (
    # a request to a host other than this machine, aborted by the suite on purpose
    "net::ERR_FAILED",
    # the 404 that goes with it in Chromium's console
    "Failed to load resource: net::ERR_FAILED",
    # optional files the client probes and ComfyUI also answers 404 for: no user.css, no saved templates
    "/user.css",
    "/api/userdata/comfy.templates.json",
    "/api/userdata/user.css",
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

if not CHROMIUM.exists() and not os.environ.get("CI"):
    pytest.skip(
        "Debian chromium is not installed (apt-get install -y chromium); CI always runs this",
        allow_module_level=True,
    )


def _client_root(version: str) -> Path | None:
    if version == "1.58.1":
        return None  # the installed package
    root = OLD_CLIENT / "static"
    if not (root / "index.html").is_file():
        if os.environ.get("CI"):
            raise AssertionError(f"client {version} is not installed at {root} (.ci/run installs it)")
        pytest.skip(f"client {version} not installed: pip install --target .cache/frontend-{version} ...")
    return root


@pytest.fixture(scope="module", params=["1.58.1", "1.27.10"])
def ui(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserSession]:
    """A server on the real nodes and tiny checkpoints, and a fresh browser profile (a first run)."""
    from playwright.sync_api import sync_playwright

    from engine.model_store import ModelStore
    from nodes.pack import build_registry
    from server.app import create_app

    version = request.param
    root = _client_root(version)
    folders = Folders(tmp_path_factory.mktemp(f"browser-{version}"))
    models_dir: Path = request.getfixturevalue("tiny_models_dir")
    env = Environment(
        folders.base / "output",
        folders.base / "temp",
        folders.base / "input",
        ModelStore(),
        ModelPaths(models_dir),
    )
    registry = build_registry(env.model_paths, env.input_dir)
    settings = folders.settings(serve_frontend=True, front_end_root=root)
    live = LiveServer(create_app(registry, env, settings=settings)).start()
    artifacts = ARTIFACTS / version
    artifacts.mkdir(parents=True, exist_ok=True)
    (artifacts / "console.txt").write_text("")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        session = BrowserSession(page, live.url, artifacts, ALLOWED)
        session.version = version  # type: ignore[attr-defined]
        session.live = live  # type: ignore[attr-defined]
        session.folders = folders  # type: ignore[attr-defined]
        session.watch()
        try:
            yield session
        finally:
            browser.close()
            live.stop()


def _tiny(workflow: dict[str, Any], steps: int = 4) -> dict[str, Any]:
    """The workflow on the tiny SD1.5 checkpoint at 64x64 and a few steps, so CPU CI stays quick."""
    for node in workflow["nodes"]:
        values = node.get("widgets_values") or []
        if node["type"] == "CheckpointLoaderSimple":
            values[0] = "tiny-sd15.safetensors"
        elif node["type"] == "EmptyLatentImage":
            values[0] = values[1] = 64
        elif node["type"] == "KSampler":
            values[2] = steps
        elif node["type"] == "KSamplerAdvanced":
            values[3] = steps
            values[-3] = min(values[-3], steps)
    return workflow


def _template(ui: BrowserSession, name: str) -> dict[str, Any]:
    return ui.js("(name) => fetch(`templates/${name}.json`).then((r) => r.json())", name)


def _visible_nodes(ui: BrowserSession) -> list[str]:
    """Titles of the nodes whose title bar lies inside the visible canvas."""
    return ui.js(
        """() => {
          const canvas = app.canvas, ds = canvas.ds, el = canvas.canvas;
          const rect = el.getBoundingClientRect();
          return app.graph.nodes.filter((n) => {
            const x = (n.pos[0] + ds.offset[0]) * ds.scale, y = (n.pos[1] - 30 + ds.offset[1]) * ds.scale;
            return x >= 0 && y >= 60 && x < rect.width - 50 && y < rect.height - 50;
          }).map((n) => n.title);
        }"""
    )


def test_browser_first_run_shows_a_runnable_workflow_and_templates(ui):
    ui.open()
    ui.wait("() => app.graph.nodes.some((n) => n.type === 'KSampler')", timeout=30)
    ui.shot("1-first-run")
    types = ui.js("() => app.graph.nodes.map((n) => n.type)")
    assert {"CheckpointLoaderSimple", "KSampler", "SaveImage"} <= set(types)
    missing = ui.js(
        "() => app.graph.nodes.filter((n) => !(n.type in LiteGraph.registered_node_types)).length"
    )
    assert missing == 0
    ui.command("Comfy.BrowseTemplates")
    ui.page.get_by_text("txt2img sd15").first.wait_for(timeout=30_000)
    ui.shot("2-templates")
    ui.page.keyboard.press("Escape")
    ui.check_clean()


@pytest.mark.parametrize("name", WORKFLOW_NAMES)
def test_browser_ready_workflow_opens_with_nodes_in_view(ui, name):
    workflow = _template(ui, name)
    ui.js("(wf) => app.loadGraphData(wf)", workflow)
    ui.page.wait_for_timeout(300)
    missing = ui.js(
        "() => app.graph.nodes.filter((n) => !(n.type in LiteGraph.registered_node_types)).length"
    )
    assert missing == 0
    visible = _visible_nodes(ui)
    assert len(visible) == len(workflow["nodes"]), visible
    ui.shot(f"3-open-{name}")
    ui.check_clean()


def test_browser_run_shows_progress_preview_and_output(ui):
    ui.js("(wf) => app.loadGraphData(wf)", _tiny(_template(ui, "txt2img_sd15")))
    ui.js("() => app.queuePrompt(0, 1)")
    ui.wait("() => window.__dg.progress > 0", timeout=120)
    done = ui.wait_event("execution_success")
    assert ui.js("() => window.__dg.previews") > 0
    images = [
        i for e in ui.js("() => window.__dg.executed") for i in (e.get("output") or {}).get("images", [])
    ]
    assert images and images[0]["type"] == "output"
    ui.shot("4-output")
    # the same graph again: every node comes from the cache, and the client is told so
    ui.js("() => app.queuePrompt(0, 1)")
    ui.wait_event("execution_success", 2)
    cached = ui.events("execution_cached")[-1]["nodes"]
    assert len(cached) == len(ui.js("() => app.graph.nodes.length")), cached
    ui.check_clean()
    assert done
