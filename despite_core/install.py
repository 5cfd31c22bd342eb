"""Where the ROS package ``despite_ros`` is installed: its ``share/despite_ros`` data (messages,
model bundles, launch and config files) and ``lib/despite_ros`` executables. Plain paths, no ROS:
the runtime, the bag reader and the ROS tools all look things up through this one search."""
from __future__ import annotations

import os
import sys
from pathlib import Path

SOURCE_ROOT = Path(__file__).resolve().parents[1]
"""The source tree's root (its ``msg/``, ``models/``, ``launch/`` and ``config/`` mirror share/despite_ros)."""


def install_prefixes() -> list[Path]:
    """Where the package may be installed, in search order: AMENT_PREFIX_PATH entries (a sourced
    ROS workspace), then this interpreter's prefix (the venv `make` installs into)."""
    return [Path(p) for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p] + [Path(sys.prefix)]


def installed(relative: str) -> Path | None:
    """The first ``prefix / relative`` that is a file, or None."""
    return next((p / relative for p in install_prefixes() if (p / relative).is_file()), None)
