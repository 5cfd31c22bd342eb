"""Finding the node processes a tool started (by their ROS node-name argument), to fault them."""
from __future__ import annotations

from pathlib import Path


def children(pid: int, name: str) -> list[int]:
    """pids of the direct children of ``pid`` whose command line holds ``__node:=name``."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmd = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid and f"__node:={name}".encode() in cmd:
            out.append(int(d.name))
    return out
