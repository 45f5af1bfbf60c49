"""The command line starts without the heavy model libraries: they load only when a workflow runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "diffusers", "transformers")


def _modules_after(statement: str) -> dict[str, bool]:
    code = f"import json, sys\n{statement}\nprint(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_cli_import_loads_no_model_library():
    loaded = _modules_after("import diffgraph.cli")
    assert loaded == {m: False for m in HEAVY}, f"imported at start-up: {[m for m, v in loaded.items() if v]}"


def test_cli_help_runs_without_importing_torch():
    loaded = _modules_after(
        "import contextlib, io, diffgraph.cli as c\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()): c.main(['--help'])"
    )
    assert not loaded["torch"] and not loaded["diffusers"]


def test_engine_still_offers_out_of_memory_check():
    from engine import is_out_of_memory

    assert is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert not is_out_of_memory(ValueError("bad value"))


def test_cli_import_leaves_out_the_graph_library():
    # networkx (~0.3 s) is needed only to name the nodes of a dependency cycle.
    code = "import sys, diffgraph.cli\nprint('networkx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_node_pack_loads_pyav_only_when_a_video_is_made(tmp_path):
    code = (
        "import sys\nfrom pathlib import Path\nfrom engine import ModelPaths\nfrom nodes.pack import build_registry\n"
        f"build_registry(ModelPaths(Path({str(tmp_path)!r})), Path({str(tmp_path)!r}))\nprint('av' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"
