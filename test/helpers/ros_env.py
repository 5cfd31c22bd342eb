"""Environment for tests that start ROS processes: loopback-only discovery, a unique domain id,
writable ROS_HOME/ROS_LOG_DIR and the shipped Fast DDS profile (shared/ROS_ON_PIP.md)."""
from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_counter = itertools.count()


def unique_domain_id() -> int:
    """A domain id unlikely to collide with parallel test runs on this machine (1..100)."""
    return 1 + (os.getpid() * 7 + next(_counter) * 13) % 100


def ros_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "ROS_DOMAIN_ID": str(unique_domain_id()),
        "ROS_HOME": str(tmp_path / "ros_home"),
        "ROS_LOG_DIR": str(tmp_path / "ros_log"),
        "FASTRTPS_DEFAULT_PROFILES_FILE": str(REPO / "config" / "fastdds_profile.xml"),
        "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp",
        # The installed despite_ros (with its generated msg module) must win over the source tree.
        "PYTHONPATH": os.pathsep.join([str(REPO / "test")] + [p for p in sys.path if p and Path(p).resolve() != REPO]),
        "PYTHONUNBUFFERED": "1",
    })
    return env
