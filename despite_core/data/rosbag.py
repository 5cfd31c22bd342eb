"""rosbag2 support without a ROS install: the `rosbags` typestore with despite_ros's messages.

The message definitions are read from the package's ``msg/*.msg`` files (the single source of
truth), found in the install prefix (``share/despite_ros/msg``, where CMake and setup.py put
them), on ``AMENT_PREFIX_PATH``, or in the source tree.
"""
from __future__ import annotations

import math
import os
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

MESSAGES = ("PersonActivity", "ActivityArray", "Embedding", "MatchScore", "MatchArray")


def msg_dir() -> Path:
    """Directory holding despite_ros's .msg files; a clear error when none is found."""
    candidates = [Path(sys.prefix) / "share" / "despite_ros" / "msg"]
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            candidates.append(Path(prefix) / "share" / "despite_ros" / "msg")
    candidates.append(Path(__file__).resolve().parents[2] / "msg")
    for c in candidates:
        if all((c / f"{m}.msg").is_file() for m in MESSAGES):
            return c
    raise FileNotFoundError(
        "despite_ros message definitions (msg/*.msg) not found; looked in: "
        + ", ".join(str(c) for c in candidates) + ". Install the package (make install / colcon build).")


@lru_cache(maxsize=1)
def typestore() -> Any:
    """A ROS 2 Jazzy typestore with despite_ros/msg/* registered."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    d = msg_dir()
    types: dict = {}
    for name in MESSAGES:
        types.update(get_types_from_msg((d / f"{name}.msg").read_text(), f"despite_ros/msg/{name}"))
    store.register(types)
    return store


def to_time(store: Any, seconds: float) -> Any:
    """builtin_interfaces/Time from seconds."""
    sec = math.floor(seconds)
    nanosec = min(int(round((seconds - sec) * 1e9)), 999_999_999)
    return store.types["builtin_interfaces/msg/Time"](sec=int(sec), nanosec=nanosec)


def to_seconds(stamp: Any) -> float:
    """Seconds from a Time message (rosbags or rclpy)."""
    return stamp.sec + stamp.nanosec * 1e-9


def to_nanoseconds(seconds: float) -> int:
    return int(round(seconds * 1e9))
