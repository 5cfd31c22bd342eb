"""Start the despite nodes from plain Python, for machines without `ros2 launch`: the same
executables (lib/despite_ros/<node>), the same parameter YAML and the same remappings as
launch/har.launch.py, which imports :data:`NODES` from here (one table for both paths).

Each node is its own process with ``--ros-args --params-file F -r __node:=NAME -r FROM:=TO``;
the shipped Fast DDS profile is set unless FASTRTPS_DEFAULT_PROFILES_FILE is already set.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from despite_core.install import SOURCE_ROOT, installed

# node name -> private topic remappings (shared/ARCHITECTURE.md, "Topics")
NODES: dict[str, dict[str, str]] = {
    "sim_node": {},
    "har_node": {
        "~/input/points": "/lidar/points",
        "~/output/activities": "/despite/activities",
        "~/output/embeddings": "/despite/embeddings",
        "~/output/events": "/despite/events",
        "~/output/alerts": "/despite/alerts",
        "~/output/markers": "/despite/markers",
        "~/output/truth": "/despite/truth",
    },
    "matching_node": {
        "~/input/embeddings": "/despite/embeddings",
        "~/output/matches": "/despite/matches",
        "~/output/imu_activities": "/despite/imu_activities",
    },
}
PIPELINE = ("har_node", "matching_node")


def share_dir() -> Path:
    """share/despite_ros of the install, else the source tree (its launch/, config/ and models/
    have the same layout)."""
    found = installed("share/despite_ros/config/har.yaml")
    return found.parents[1] if found else SOURCE_ROOT


def executable(node: str) -> list[str]:
    """The installed lib/despite_ros/<node> wrapper, else ``python -m despite_ros.nodes.<node>``."""
    exe = installed(f"lib/despite_ros/{node}")
    if exe is not None and os.access(exe, os.X_OK):
        return [str(exe)]
    return [sys.executable, "-m", f"despite_ros.nodes.{node}"]


def node_command(node: str, params: Path, overrides: dict[str, str] | None = None) -> list[str]:
    cmd = [*executable(node), "--ros-args", "--params-file", str(params), "-r", f"__node:={node}"]
    for src, dst in NODES[node].items():
        cmd += ["-r", f"{src}:={dst}"]
    for k, v in (overrides or {}).items():
        cmd += ["-p", f"{k}:={v}"]
    return cmd


def use_shipped_dds_profile() -> None:
    """For THIS process's own rclpy participants (demo, bench, replay publish or subscribe too):
    the shipped Fast DDS profile unless one is set. Without it a process publishing 0.5-1 MB
    clouds uses Fast DDS's 512 KB shared-memory default and best-effort scans are lost
    (measured: 58 % of 32-beam scans in a replay)."""
    os.environ.setdefault("FASTRTPS_DEFAULT_PROFILES_FILE", str(share_dir() / "config" / "fastdds_profile.xml"))


def ros_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env.setdefault("FASTRTPS_DEFAULT_PROFILES_FILE", str(share_dir() / "config" / "fastdds_profile.xml"))
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


@dataclass
class Bringup:
    """The node processes; :meth:`stop` ends them (SIGINT, then SIGKILL after ``grace`` s)."""

    params: Path
    nodes: tuple[str, ...] = PIPELINE
    overrides: dict[str, dict[str, str]] = field(default_factory=dict)
    env: dict[str, str] | None = None
    stdout: object = None
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start(self) -> "Bringup":
        if not Path(self.params).is_file():
            raise FileNotFoundError(f"{self.params}: parameter file not found")
        unknown = [n for n in self.nodes if n not in NODES]
        if unknown:
            raise ValueError(f"unknown nodes {unknown}; known: {list(NODES)}")
        env = ros_environment(self.env)
        try:
            for n in self.nodes:
                self.procs[n] = subprocess.Popen(node_command(n, self.params, self.overrides.get(n)), env=env,
                                                 stdout=self.stdout, stderr=subprocess.STDOUT if self.stdout else None,
                                                 start_new_session=True)
        except BaseException:
            self.stop()                                 # none of the started nodes may outlive a failed start
            raise
        return self

    def poll(self) -> tuple[str, int] | None:
        """(node, exit code) of the first node that has exited, else None."""
        for n, p in self.procs.items():
            if p.poll() is not None:
                return n, p.returncode
        return None

    def stop(self, grace: float = 10.0) -> dict[str, int]:
        for p in self.procs.values():
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGINT)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + grace
        codes = {}
        for n, p in self.procs.items():
            try:
                codes[n] = p.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                codes[n] = p.wait(timeout=10)
        return codes


def run(params: Path, nodes: tuple[str, ...], overrides: dict[str, dict[str, str]]) -> int:
    """Run until a node exits or Ctrl-C; returns the first failing exit code (0 on Ctrl-C)."""
    b = Bringup(Path(params), nodes, overrides).start()
    print(f"started {', '.join(f'{n} (pid {p.pid})' for n, p in b.procs.items())}; Ctrl-C stops them", flush=True)
    try:
        while (done := b.poll()) is None:
            time.sleep(0.2)
        print(f"{done[0]} exited with code {done[1]}; stopping the others", file=sys.stderr)
        b.stop()
        return done[1] or 0
    except KeyboardInterrupt:
        codes = b.stop()
        bad = {n: c for n, c in codes.items() if c not in (0, -signal.SIGINT, 130)}
        return 1 if bad else 0


def parse_overrides(items: list[str]) -> dict[str, dict[str, str]]:
    """``node.param=value`` items -> {node: {param: value}}."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        node, dot, name = key.partition(".")
        if not sep or not dot or node not in NODES or not name:
            raise ValueError(f"--set {item!r}: expected NODE.PARAM=VALUE with NODE one of {list(NODES)}")
        out.setdefault(node, {})[name] = value
    return out
