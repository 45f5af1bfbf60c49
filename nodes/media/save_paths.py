"""ComfyUI's output file naming shared by every writer: prefix tokens, subfolders and the counter.

A prefix like `runs/%date:yyyy-MM-dd%/%KSampler.seed%_%width%` goes through two substitutions, in the
order ComfyUI applies them: first the ones its web client performs before queueing (`%date:FORMAT%`,
`%Node.input%`), so headless runs of API prompts name files the same way, then the server-side tokens
(`%width%`, `%height%`, `%year%` ...). The directory part becomes a subfolder that must stay inside the
output folder; the file part gets `_{counter:05}_` and the suffix. Files are created exclusively, so a
counter taken by another writer (another prompt, another process) moves on instead of overwriting.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from engine import (
    Hidden,
    Node,
    NodeInputError,
    PathRefused,
    apply_text_replacements,
    atomic_write,
    resolve_inside,
)

# Placeholder size for checking a prefix before the image exists (tokens never add path separators).
CHECK_SIZE = 1
# The tooltip every writer shows on its filename_prefix input.
PREFIX_TIP = (
    "Start of the file names; a folder part (a/b/name) writes into a subfolder of the output folder. "
    "Tokens such as %date:yyyy-MM-dd%, %KSampler.seed% or %width% are replaced when saving."
)


@dataclass
class SaveTarget:
    """Where a writer puts its files: folder, file base name, first free counter, UI subfolder."""

    folder: Path
    base: str
    counter: int
    subfolder: str

    def write(self, suffix: str, batch_index: int, writer: Callable[[IO[bytes]], Any]) -> str:
        """Write one file `{base}_{counter:05}_{suffix}` without ever replacing an existing one.

        `%batch_num%` in the base becomes the batch index. Returns the file name; the counter moves on.
        """
        base = self.base.replace("%batch_num%", str(batch_index))
        while True:
            name = f"{base}_{self.counter:05}_{suffix}"
            self.counter += 1
            try:
                # Written aside and linked into place without replacing: a file that appeared since
                # the scan bumps the counter instead, and a crash never leaves a torn file.
                atomic_write(self.folder / name, writer, replace=False)
                return name
            except FileExistsError:
                continue


@dataclass(frozen=True)
class PromptWidgets:
    """`%Node.input%` lookup in an API prompt: the first node whose class_type, else `_meta.title`, is
    the name; only literal inputs count (a linked input has no value before the run)."""

    prompt: Mapping[str, Any]

    def widget_value(self, node_name: str, widget_name: str) -> tuple[bool, Any]:
        """(found, value) of the named literal input."""
        nodes = [n for n in self.prompt.values() if isinstance(n, dict)]
        matches = [n for n in nodes if n.get("class_type") == node_name] or [
            n for n in nodes if (n.get("_meta") or {}).get("title") == node_name
        ]
        for node in matches[:1]:
            value = (node.get("inputs") or {}).get(widget_name)
            if value is not None and not isinstance(value, list):
                return True, value
        return False, None


def expand_client_tokens(prefix: str, now: datetime, prompt: Mapping[str, Any] | None = None) -> str:
    """The web client's `%date:FORMAT%` and `%Node.input%` expansion (engine rule), over an API prompt.

    A UI workflow arrives with these already expanded by the conversion; an API prompt written by hand
    may still carry them. Tokens the client would leave alone (unknown nodes, linked inputs, `%width%`...)
    stay in place.
    """
    return apply_text_replacements(prefix, PromptWidgets(prompt or {}), now)


def expand_prefix_tokens(
    prefix: str,
    width: int,
    height: int,
    now: datetime | None = None,
    prompt: Mapping[str, Any] | None = None,
) -> str:
    """Client tokens first, then ComfyUI's %width% %height% %year% %month% %day% %hour% %minute% %second%."""
    if "%" not in prefix:
        return prefix
    now = now or datetime.now()
    prefix = expand_client_tokens(prefix, now, prompt)
    tokens = {
        "%width%": str(width),
        "%height%": str(height),
        "%year%": str(now.year),
        "%month%": f"{now.month:02}",
        "%day%": f"{now.day:02}",
        "%hour%": f"{now.hour:02}",
        "%minute%": f"{now.minute:02}",
        "%second%": f"{now.second:02}",
    }
    for name, value in tokens.items():
        prefix = prefix.replace(name, value)
    return prefix


def next_counter(folder: Path, base: str) -> int:
    """1 + the largest N among files named `<base>_N...` in folder (ComfyUI's rule), else 1."""
    highest = 0
    if folder.is_dir():
        for entry in folder.iterdir():
            name = entry.name
            if not name.startswith(base + "_"):
                continue
            digits = name[len(base) + 1 :].split("_")[0]
            if digits.isdigit():
                highest = max(highest, int(digits))
    return highest + 1


def resolve_prefix(root: Path, expanded: str, prefix: str, input_name: str) -> tuple[Path, str]:
    """(folder, file base) of an expanded prefix under root; refuses anything leaving root."""
    head, _, name = expanded.replace("\\", "/").rpartition("/")
    if not name or name in (".", ".."):
        raise NodeInputError(
            input_name, f"{input_name} {prefix!r} has no file name part; end it with a name like 'ComfyUI'"
        )
    try:
        path = resolve_inside(root, head, name, need_name=True)
    except PathRefused as exc:
        raise NodeInputError(
            input_name,
            f"{input_name} {prefix!r} would save outside the output folder ({exc.message}); use a relative prefix "
            "such as 'ComfyUI' or 'subfolder/name'",
        ) from None
    return path.parent, name


def check_prefix(root: Path, prefix: Any, input_name: str = "filename_prefix") -> str | None:
    """A validation message when a literal prefix would leave root, else None (links are None)."""
    if not isinstance(prefix, str):
        return None
    try:
        resolve_prefix(root, expand_prefix_tokens(prefix, CHECK_SIZE, CHECK_SIZE), prefix, input_name)
    except NodeInputError as exc:
        return exc.message
    return None


def save_target(
    root: Path,
    prefix: str,
    width: int,
    height: int,
    input_name: str = "filename_prefix",
    prompt: Mapping[str, Any] | None = None,
) -> SaveTarget:
    """Resolve a filename prefix (tokens, subfolders) under root and find its first free counter."""
    expanded = expand_prefix_tokens(prefix, width, height, prompt=prompt)
    folder, base = resolve_prefix(root, expanded, prefix, input_name)
    folder.mkdir(parents=True, exist_ok=True)
    subfolder = folder.relative_to(root.resolve()).as_posix()
    return SaveTarget(folder, base, next_counter(folder, base), "" if subfolder == "." else subfolder)


# Hidden inputs of the nodes that embed the prompt and the UI workflow in what they write.
HIDDEN_METADATA = {"prompt": Hidden.PROMPT, "extra_pnginfo": Hidden.EXTRA_PNGINFO}


class OutputFileNode(Node):
    """Base of the nodes that write files under the output folder from a `filename_prefix` input.

    They are output nodes and all embed the prompt and workflow, so both are declared here once.
    """

    output_node = True
    hidden = HIDDEN_METADATA

    @classmethod
    def validate_inputs(cls, values: Mapping[str, Any], env: Any) -> str | None:
        """Refuse a prefix that would write outside the output folder before anything runs."""
        return None if env is None else check_prefix(Path(env.output_dir), values.get("filename_prefix"))
