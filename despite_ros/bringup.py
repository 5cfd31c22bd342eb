"""Start the despite nodes: one table of launch arguments (:data:`LAUNCH_ARGUMENTS`) resolved by
:func:`plan` into node specs, used by launch/har.launch.py (``ros2 launch despite_ros
har.launch.py points_topic:=/ouster/points``) and by ``despite-ros bringup --points-topic
/ouster/points`` alike, so both paths start the same executables with the same parameters,
namespace and remappings.

Each node is its own process with ``--ros-args -r __node:=NAME [-r __ns:=NS] --params-file F
[-p K:=V ...] -r FROM:=TO ...``; the shipped Fast DDS profile is set unless
FASTRTPS_DEFAULT_PROFILES_FILE is already set.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from despite_core.install import SOURCE_ROOT, installed

# node name -> private topic remappings (shared/ARCHITECTURE.md, "Topics"). The outputs are
# relative names: under namespace:=robot1 they become /robot1/despite/...; without one, /despite/...
# har_node's input is the points_topic launch argument (the value here is its default).
NODES: dict[str, dict[str, str]] = {
    "sim_node": {"/lidar/points": "/lidar/points"},
    "har_node": {
        "~/input/points": "/lidar/points",
        "~/output/activities": "despite/activities",
        "~/output/embeddings": "despite/embeddings",
        "~/output/events": "despite/events",
        "~/output/alerts": "despite/alerts",
        "~/output/markers": "despite/markers",
        "~/output/truth": "despite/truth",
    },
    "matching_node": {
        "~/input/embeddings": "despite/embeddings",
        "~/output/matches": "despite/matches",
        "~/output/imu_activities": "despite/imu_activities",
    },
}
PIPELINE = ("har_node", "matching_node")
RESPAWN_DELAY_S = 2.0
RVIZ_CONFIG = "rviz/despite.rviz"


@dataclass(frozen=True)
class LaunchArgument:
    name: str
    default: str
    description: str
    boolean: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


# The launch arguments of har.launch.py and the flags of `despite-ros bringup` (same names, '-' for '_').
LAUNCH_ARGUMENTS: tuple[LaunchArgument, ...] = (
    LaunchArgument("use_sim", "false", "also start sim_node, the built-in simulated scene (publishes on points_topic "
                   "and /person_N/imu/<site>); off for a real LiDAR", boolean=True),
    LaunchArgument("params", "", "parameter YAML (empty: the installed config/har.yaml)"),
    LaunchArgument("points_topic", NODES["har_node"]["~/input/points"],
                   "the LiDAR's sensor_msgs/PointCloud2 topic, e.g. /ouster/points, /velodyne_points, /livox/lidar "
                   "(a relative name is under the namespace)"),
    LaunchArgument("imu_topic", "", "sensor_msgs/Imu topic pattern with {wearer} and {site} "
                   "(empty: matching_node's imu_topic in the parameter file, /{wearer}/imu/{site})"),
    LaunchArgument("wearers", "", "comma-separated wearer ids, e.g. alice,bob (empty: matching_node's wearers in the "
                   "parameter file)"),
    LaunchArgument("model", "", "model bundle directory for har_node and matching_node (empty: the parameter file's, "
                   "else the installed models/default)"),
    LaunchArgument("namespace", "", "ROS namespace of the nodes and of their despite/... topics (empty: none)"),
    LaunchArgument("use_sim_time", "false", "har_node and matching_node run on /clock (ros2 bag play --clock); windows "
                   "always follow the message stamps", boolean=True),
    LaunchArgument("respawn", "false", f"restart a node that exits, after {RESPAWN_DELAY_S:g} s", boolean=True),
    LaunchArgument("rviz", "false", f"also start rviz2 with the shipped {RVIZ_CONFIG}", boolean=True),
    LaunchArgument("rviz_frame", "lidar", "RViz fixed frame: your LiDAR's frame_id (os_sensor, velodyne, livox_frame)"),
)
ARGUMENT_NAMES = tuple(a.name for a in LAUNCH_ARGUMENTS)
_NAME = re.compile(r"^/?[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*$")
_TOPIC = re.compile(r"^(~/)?/?[A-Za-z_{][A-Za-z0-9_{}]*(/[A-Za-z_{][A-Za-z0-9_{}]*)*$")


@dataclass(frozen=True)
class NodeSpec:
    """One process: an executable of this package (or rviz2), its parameter overrides (typed values,
    on top of the parameter file) and its remappings."""

    name: str
    parameters: dict[str, object]
    remappings: tuple[tuple[str, str], ...]
    package: str = "despite_ros"
    arguments: tuple[str, ...] = ()


@dataclass(frozen=True)
class LaunchPlan:
    params: Path
    namespace: str                     # "" or an absolute namespace, e.g. /robot1
    respawn: bool
    nodes: tuple[NodeSpec, ...]


def share_dir() -> Path:
    """share/despite_ros of the install, else the source tree (its launch/, config/ and models/
    have the same layout)."""
    found = installed("share/despite_ros/config/har.yaml")
    return found.parents[1] if found else SOURCE_ROOT


def parse_bool(name: str, value: str) -> bool:
    v = str(value).strip().lower()
    if v in ("true", "1", "yes", "on"):
        return True
    if v in ("false", "0", "no", "off", ""):
        return False
    raise ValueError(f"{name}:={value!r}: expected true or false")


def plan(values: Mapping[str, str] | None = None, *, share: Path | None = None,
         overrides: Mapping[str, Mapping[str, object]] | None = None, only: Sequence[str] | None = None) -> LaunchPlan:
    """The nodes to start for these launch-argument values (names of :data:`LAUNCH_ARGUMENTS`; the
    missing ones take their defaults). ``overrides``: further typed parameters per node (bringup's
    --set, the demo); ``only``: start just these of the planned nodes. ValueError names a bad value."""
    values = dict(values or {})
    unknown = sorted(set(values) - set(ARGUMENT_NAMES))
    if unknown:
        raise ValueError(f"unknown launch arguments {unknown}; known: {list(ARGUMENT_NAMES)}")
    v = {a.name: str(values.get(a.name, a.default)) for a in LAUNCH_ARGUMENTS}
    flags = {a.name: parse_bool(a.name, v[a.name]) for a in LAUNCH_ARGUMENTS if a.boolean}
    share = Path(share) if share is not None else share_dir()
    params = Path(v["params"]).expanduser() if v["params"] else share / "config" / "har.yaml"
    if not params.is_file():
        raise FileNotFoundError(f"params:={params}: parameter file not found")
    ns = v["namespace"].strip()
    if ns and not _NAME.match(ns):
        raise ValueError(f"namespace:={ns!r}: not a ROS namespace (letters, digits, '_', separated by '/')")
    ns = ("/" + ns.lstrip("/")) if ns else ""
    points = v["points_topic"].strip()
    if not _TOPIC.match(points) or "{" in points:
        raise ValueError(f"points_topic:={points!r}: not a ROS topic name")
    pipeline: dict[str, object] = {}
    if v["model"]:
        model = Path(v["model"]).expanduser()
        if not (model / "model.yaml").is_file():
            raise FileNotFoundError(f"model:={model}: not a model bundle (no model.yaml); see `despite export`")
        pipeline["model"] = str(model.resolve())
    matching: dict[str, object] = dict(pipeline)
    if v["imu_topic"]:
        if not all(k in v["imu_topic"] for k in ("{wearer}", "{site}")):
            raise ValueError(f"imu_topic:={v['imu_topic']!r}: the pattern needs {{wearer}} and {{site}}")
        matching["imu_topic"] = v["imu_topic"]
    if v["wearers"].strip():
        wearers = [w.strip() for w in v["wearers"].split(",") if w.strip()]
        bad = [w for w in wearers if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", w)]
        if bad or len(set(wearers)) != len(wearers):
            raise ValueError(f"wearers:={v['wearers']!r}: expected distinct ids made of letters, digits and '_'")
        matching["wearers"] = wearers
    if flags["use_sim_time"]:
        if flags["use_sim"]:
            raise ValueError("use_sim_time:=true needs a /clock publisher (ros2 bag play --clock); sim_node "
                             "(use_sim:=true) publishes none: use one or the other")
        pipeline["use_sim_time"] = matching["use_sim_time"] = True
    per_node = {"sim_node": {}, "har_node": pipeline, "matching_node": matching}
    names = (("sim_node",) if flags["use_sim"] else ()) + PIPELINE
    if only is not None:
        bad = [n for n in only if n not in NODES]
        if bad:
            raise ValueError(f"unknown nodes {bad}; known: {list(NODES)}")
        names = tuple(only)
    overrides = overrides or {}
    bad = [n for n in overrides if n not in NODES]
    if bad:
        raise ValueError(f"overrides for unknown nodes {bad}; known: {list(NODES)}")
    specs = []
    for n in names:
        remaps = {**NODES[n]}
        for src in ("~/input/points", "/lidar/points"):
            if src in remaps:
                remaps[src] = points
        specs.append(NodeSpec(n, {**per_node[n], **dict(overrides.get(n, {}))},
                              tuple((a, b) for a, b in remaps.items() if a != b)))
    if flags["rviz"]:
        frame = v["rviz_frame"].strip()
        if not _NAME.match(frame.lstrip("/")):
            raise ValueError(f"rviz_frame:={frame!r}: not a frame id")
        specs.append(NodeSpec("rviz2", {}, (("lidar/points", points),), package="rviz2",
                              arguments=("-d", str(share / RVIZ_CONFIG), "-f", frame)))
    return LaunchPlan(namespaced_params(params, ns), ns, flags["respawn"], tuple(specs))


def namespaced_params(params: Path, namespace: str) -> Path:
    """The parameter file for nodes in ``namespace``. rcl matches a parameter file's node keys against
    the node's fully qualified name, so a file keyed ``har_node:`` (config/har.yaml, and the usual
    way to write one) is silently ignored by ``/robot1/har_node``; under a namespace the bare keys are
    rewritten as ``/robot1/har_node`` into a derived file (cached by content, beside the temp files).
    Keys that already start with ``/`` (``/**``, fully qualified names) are kept as they are."""
    if not namespace:
        return params
    import hashlib

    import yaml

    text = params.read_text()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ValueError(f"params:={params}: not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"params:={params}: expected node names at the top level, got {type(data).__name__}")
    out = {(k if str(k).startswith("/") else f"{namespace}/{k}"): v for k, v in data.items()}
    digest = hashlib.sha256((namespace + "\0" + text).encode()).hexdigest()[:16]
    import tempfile

    path = Path(tempfile.gettempdir()) / "despite_ros" / f"{params.stem}-{digest}.yaml"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(f"# {params} for namespace {namespace} (written by despite_ros.bringup)\n"
                       + yaml.safe_dump(out, sort_keys=False))
        tmp.replace(path)
    return path


def executable(node: str) -> list[str]:
    """The installed lib/despite_ros/<node> wrapper, else ``python -m despite_ros.nodes.<node>``;
    rviz2 from PATH."""
    if node == "rviz2":
        exe = shutil.which("rviz2")
        if exe is None:
            raise FileNotFoundError("rviz:=true needs rviz2 on PATH (a ROS 2 desktop install: "
                                    "sudo apt install ros-jazzy-rviz2)")
        return [exe]
    exe = installed(f"lib/despite_ros/{node}")
    if exe is not None and os.access(exe, os.X_OK):
        return [str(exe)]
    return [sys.executable, "-m", f"despite_ros.nodes.{node}"]


def format_value(value: object) -> str:
    """A typed parameter value as the YAML text that ``-p NAME:=TEXT`` parses back to the same value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value)                     # a YAML double-quoted scalar: "{wearer}/x", "true" stay strings
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError("an empty list parameter has no type on the command line; give at least one item")
        return "[" + ", ".join(format_value(x) for x in value) + "]"
    raise TypeError(f"unsupported parameter value {value!r}")


def node_command(spec: NodeSpec, params: Path, namespace: str = "") -> list[str]:
    cmd = [*executable(spec.name), *spec.arguments, "--ros-args", "-r", f"__node:={spec.name}"]
    if namespace:
        cmd += ["-r", f"__ns:={namespace}"]
    if spec.package == "despite_ros":
        cmd += ["--params-file", str(params)]
    for k, v in spec.parameters.items():
        cmd += ["-p", f"{k}:={format_value(v)}"]
    for src, dst in spec.remappings:
        cmd += ["-r", f"{src}:={dst}"]
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
    """The processes of a :class:`LaunchPlan`; :meth:`stop` ends them (SIGINT, then SIGKILL after
    ``grace`` s); :meth:`respawn_exited` restarts those that exited when the plan says so."""

    plan: LaunchPlan
    env: dict[str, str] | None = None
    stdout: object = None
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)
    exited_at: dict[str, float] = field(default_factory=dict)     # nodes seen exited, waiting to restart

    def _spawn(self, spec: NodeSpec) -> subprocess.Popen:
        return subprocess.Popen(node_command(spec, self.plan.params, self.plan.namespace), env=ros_environment(self.env),
                                stdout=self.stdout, stderr=subprocess.STDOUT if self.stdout else None,
                                start_new_session=True)

    def start(self) -> "Bringup":
        try:
            for spec in self.plan.nodes:
                self.procs[spec.name] = self._spawn(spec)
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

    def respawn_exited(self, exited_for: float = RESPAWN_DELAY_S) -> list[tuple[str, int]]:
        """Restart the nodes that exited at least ``exited_for`` s ago (first seen now: remembered);
        returns (node, exit code) of those restarted."""
        now, done = time.monotonic(), []
        seen = self.exited_at
        for spec in self.plan.nodes:
            p = self.procs[spec.name]
            if p.poll() is None:
                continue
            since = seen.setdefault(spec.name, now)
            if now - since >= exited_for:
                del seen[spec.name]
                self.procs[spec.name] = self._spawn(spec)
                self.restarts[spec.name] = self.restarts.get(spec.name, 0) + 1
                done.append((spec.name, p.returncode))
        return done

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


def run(launch: LaunchPlan) -> int:
    """Run until Ctrl-C (or, without respawn, until a node exits); returns the first failing exit
    code (0 on Ctrl-C). SIGINT and SIGTERM (systemd, docker stop) both stop the nodes cleanly, even
    when this process was started with SIGINT ignored (a background job)."""
    def stop_request(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, stop_request)
    signal.signal(signal.SIGTERM, stop_request)
    b = Bringup(launch).start()
    print(f"started {', '.join(f'{n} (pid {p.pid})' for n, p in b.procs.items())}"
          f"{' in ' + launch.namespace if launch.namespace else ''}; Ctrl-C stops them", flush=True)
    try:
        while True:
            time.sleep(0.2)
            if launch.respawn:
                for n, code in b.respawn_exited():
                    print(f"{n} exited with code {code}; restarted (restart {b.restarts[n]})", file=sys.stderr, flush=True)
            elif (done := b.poll()) is not None:
                print(f"{done[0]} exited with code {done[1]}; stopping the others", file=sys.stderr)
                b.stop()
                return done[1] or 0
    except KeyboardInterrupt:
        codes = b.stop()
        bad = {n: c for n, c in codes.items() if c not in (0, -signal.SIGINT, 130)}
        return 1 if bad else 0


def parse_overrides(items: list[str]) -> dict[str, dict[str, object]]:
    """``node.param=value`` items -> {node: {param: value}}, each value read as YAML (as
    ``ros2 run ... -p param:=value`` reads it: 2 is an int, true a bool, [a, b] a list)."""
    import yaml

    out: dict[str, dict[str, object]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        node, dot, name = key.partition(".")
        if not sep or not dot or node not in NODES or not name:
            raise ValueError(f"--set {item!r}: expected NODE.PARAM=VALUE with NODE one of {list(NODES)}")
        try:
            parsed = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError as e:
            raise ValueError(f"--set {item!r}: the value is not valid YAML ({e.problem})") from None
        if parsed is None or isinstance(parsed, dict):
            parsed = value                                   # 'null', '~', '{...}': the literal text
        out.setdefault(node, {})[name] = parsed
    return out
