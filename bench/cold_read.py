"""Bench: a cold checkpoint with and without `diffgraph run`'s read-ahead during the library imports.

    python -m bench.cold_read --ckpt COPY.safetensors --out bench/results/cold_read.json [--rounds 2]

Each round drops the file from the page cache (posix_fadvise DONTNEED: pass a copy of your own, the
cache of that file is emptied for every process), then a fresh interpreter imports what a run imports
(the node pack and registry), optionally with the read-ahead thread started first, reports how much
of the file was resident when the imports ended, and reads the whole file once (what loading needs).
Modes alternate. Memory stays small: the file is read in 64 MiB pieces into a reused buffer.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CHUNK = 64 << 20


def resident_bytes(path: Path) -> int:
    """Bytes of the file in the page cache (mincore through a read-only mapping)."""
    import ctypes
    import mmap

    size = path.stat().st_size
    if size == 0:
        return 0
    page = mmap.PAGESIZE
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    ]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        pages = (size + page - 1) // page
        vec = ctypes.create_string_buffer(pages)
        if libc.mincore(ctypes.c_void_p(addr), size, vec) != 0:
            raise OSError(ctypes.get_errno(), "mincore failed")
        libc.munmap(ctypes.c_void_p(addr), size)
    finally:
        os.close(fd)
    return sum(b & 1 for b in vec.raw) * page


def evict(path: Path) -> None:
    """Drop the file's pages from the page cache."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def child(path: Path, prefetch: bool) -> dict[str, Any]:
    """One fresh process: (read-ahead), imports, then one full read of the file."""
    started = time.time()
    if prefetch:
        from diffgraph.prefetch import start_read_ahead

        start_read_ahead([path])
    import tempfile

    from engine import ModelPaths
    from nodes.pack import build_registry

    scratch = Path(tempfile.mkdtemp())
    build_registry(ModelPaths(scratch), scratch)
    imported = time.time()
    resident = resident_bytes(path)
    buffer = bytearray(CHUNK)
    with open(path, "rb", buffering=0) as f:
        while f.readinto(buffer):
            pass
    done = time.time()
    return {
        "imports_s": imported - started,
        "resident_after_imports_mib": resident >> 20,
        "read_after_imports_s": done - imported,
        "imports_plus_read_s": done - started,
    }


def main() -> int:
    """Alternate fresh processes with and without read-ahead; write the medians as JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", type=Path, required=True)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--child", choices=("none", "prefetch"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.ckpt, args.child == "prefetch")))
        return 0
    rows = []
    for i in range(args.rounds):
        for mode in ("none", "prefetch") if i % 2 == 0 else ("prefetch", "none"):
            evict(args.ckpt)
            cold = resident_bytes(args.ckpt) >> 20
            cmd = [sys.executable, "-m", "bench.cold_read", "--child", mode, "--ckpt", str(args.ckpt)]
            out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout
            rows.append(
                {"round": i, "mode": mode, "resident_before_mib": cold, **json.loads(out.splitlines()[-1])}
            )
            print(json.dumps(rows[-1]), file=sys.stderr)
    summary = {
        mode: {
            k: round(statistics.median(r[k] for r in rows if r["mode"] == mode), 3)
            for k in (
                "imports_s",
                "read_after_imports_s",
                "imports_plus_read_s",
                "resident_after_imports_mib",
            )
        }
        for mode in ("none", "prefetch")
    }
    result = {
        "file_bytes": args.ckpt.stat().st_size,
        "what": __doc__.splitlines()[0],
        "rows": rows,
        "median": summary,
        "cpus": os.cpu_count(),
        "load_avg_after": os.getloadavg(),
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
