"""Server settings: where it listens, who may talk to it, where user data lives, size limits."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from engine.errors import DiffgraphError

MB = 1024 * 1024


class InsecureBindError(DiffgraphError):
    """Listening beyond loopback without a token or an explicit --insecure."""

    code = "insecure_bind"


def is_loopback(host: str) -> bool:
    """True for names and addresses that only this machine can reach."""
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass
class ServerSettings:
    """Everything create_app needs besides the registry and the execution environment."""

    user_dir: Path
    host: str = "127.0.0.1"
    port: int = 8188
    front_end_root: Path | None = None
    token: str | None = None
    insecure: bool = False
    max_upload_size: int = 100 * MB
    max_prompt_size: int = 16 * MB
    allowed_origins: tuple[str, ...] = ()
    history_limit: int = 10_000
    # Re-queue (once) the prompt that was running when the server crashed.
    requeue: bool = True
    # What to do with a corrupt or newer-version queue database: rename it and start fresh, or refuse.
    bad_database: Literal["move", "refuse"] = "move"
    # Longest text a single prompt input may hold (characters); longer text is refused at validation.
    max_text_length: int = 20_000
    db_path: Path | None = None
    serve_frontend: bool = True
    argv: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.user_dir = Path(self.user_dir)
        if self.front_end_root is not None:
            self.front_end_root = Path(self.front_end_root)
        if self.token == "":
            self.token = None

    @property
    def database(self) -> Path:
        """The SQLite file holding queue and history."""
        return self.db_path or self.user_dir / "diffgraph.sqlite3"

    @property
    def loopback_only(self) -> bool:
        """True when the server listens only on this machine."""
        return is_loopback(self.host)

    def check_bind(self) -> None:
        """Refuse to listen beyond loopback unless a token protects it or the user said --insecure."""
        if not self.loopback_only and not self.token and not self.insecure:
            raise InsecureBindError(
                f"refusing to listen on {self.host}: anyone on the network could run workflows and read "
                "files. Pass --token SECRET (or set DIFFGRAPH_TOKEN), or --insecure if the network is trusted"
            )
