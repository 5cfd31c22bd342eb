"""launch/har.launch.py, checked here without ROS 2's launch packages (not installable from PyPI):
the file is loaded with minimal stand-ins for launch / launch_ros that record what it declares,
its OpaqueFunction is run on argument values, and the nodes it would start are compared with the
command lines of `despite-ros bringup` for the same values (one table, one resolver)."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml

from despite_ros.bringup import LAUNCH_ARGUMENTS, NODES, format_value, node_command, parse_overrides, plan

REPO = Path(__file__).resolve().parents[1]
SHARE = Path(sys.prefix) / "share" / "despite_ros"
BIN = Path(sys.prefix) / "bin"


class Recorder:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class LaunchConfiguration(Recorder):
    def perform(self, context):
        return context[self.args[0]]


def stand_ins(share: Path) -> dict[str, types.ModuleType]:
    mods = {}
    for name in ("launch", "launch.actions", "launch.substitutions", "launch_ros",
                 "launch_ros.actions", "ament_index_python", "ament_index_python.packages"):
        mods[name] = types.ModuleType(name)
    mods["launch"].LaunchDescription = lambda actions: list(actions)
    for cls in ("DeclareLaunchArgument", "SetEnvironmentVariable", "OpaqueFunction"):
        setattr(mods["launch.actions"], cls, type(cls, (Recorder,), {}))
    mods["launch.substitutions"].LaunchConfiguration = LaunchConfiguration
    mods["launch_ros.actions"].Node = type("Node", (Recorder,), {})
    mods["ament_index_python.packages"].get_package_share_directory = lambda pkg: str(share)
    return mods


def launch(monkeypatch, **given):
    """(declared arguments, environment actions, Node actions) of the launch file for these values."""
    for name, mod in stand_ins(SHARE).items():
        monkeypatch.setitem(sys.modules, name, mod)
    spec = importlib.util.spec_from_file_location("har_launch", REPO / "launch" / "har.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    actions = module.generate_launch_description()
    declared = {a.args[0]: a.kwargs for a in actions if type(a).__name__ == "DeclareLaunchArgument"}
    context = {name: kw["default_value"] for name, kw in declared.items()} | given
    nodes = [n for a in actions if type(a).__name__ == "OpaqueFunction" for n in a.kwargs["function"](context)]
    env = [a.args for a in actions if type(a).__name__ == "SetEnvironmentVariable"]
    return declared, env, {n.kwargs["name"]: n.kwargs for n in nodes}


def test_defaults_start_the_pipeline_on_a_real_lidar(monkeypatch):
    declared, env, nodes = launch(monkeypatch)
    assert list(declared) == [a.name for a in LAUNCH_ARGUMENTS]
    assert {"use_sim", "params", "points_topic", "imu_topic", "wearers", "model", "namespace", "use_sim_time",
            "respawn", "rviz"} <= set(declared)
    assert declared["use_sim"]["default_value"] == "false"
    assert set(nodes) == {"har_node", "matching_node"}                 # no simulator by default
    assert env == [("FASTRTPS_DEFAULT_PROFILES_FILE", str(SHARE / "config" / "fastdds_profile.xml"))]
    params = yaml.safe_load((SHARE / "config" / "har.yaml").read_text())
    for name, node in nodes.items():
        assert node["package"] == "despite_ros" and node["executable"] == name
        assert (Path(sys.prefix) / "lib" / "despite_ros" / name).is_file()     # installed by the CMake package
        assert node["parameters"] == [str(SHARE / "config" / "har.yaml"), {}]
        assert name in params and "ros__parameters" in params[name]
        assert node["namespace"] is None and node["respawn"] is False
    assert ("~/input/points", "/lidar/points") in nodes["har_node"]["remappings"]
    assert ("~/output/activities", "despite/activities") in nodes["har_node"]["remappings"]


CASES = [
    {"use_sim": "true"},
    {"points_topic": "/ouster/points", "wearers": "alice,bob", "imu_topic": "/{wearer}/imu/{site}/data"},
    {"points_topic": "velodyne_points", "namespace": "robot1", "respawn": "true", "use_sim_time": "true",
     "model": str(SHARE / "models" / "default")},
    {"use_sim": "true", "points_topic": "/livox/lidar", "namespace": "/a/b"},
]


@pytest.mark.parametrize("given", CASES)
def test_launch_file_and_bringup_start_the_same_processes(monkeypatch, given):
    _, _, nodes = launch(monkeypatch, **given)
    p = plan(given, share=SHARE)
    assert [s.name for s in p.nodes] == list(nodes)
    for spec in p.nodes:
        node = nodes[spec.name]
        cmd = node_command(spec, p.params, p.namespace)
        remaps = [cmd[i + 1] for i, x in enumerate(cmd) if x == "-r" and not cmd[i + 1].startswith("__")]
        assert remaps == [f"{a}:={b}" for a, b in node["remappings"]]
        sets = [cmd[i + 1] for i, x in enumerate(cmd) if x == "-p"]
        assert sets == [f"{k}:={format_value(v)}" for k, v in node["parameters"][1].items()]
        assert cmd[cmd.index("--params-file") + 1] == node["parameters"][0]
        assert (f"__ns:={node['namespace']}" in cmd) == (node["namespace"] is not None)
        assert node["respawn"] == (given.get("respawn") == "true")


def test_arguments_reach_the_nodes(monkeypatch):
    _, _, nodes = launch(monkeypatch, **CASES[2], wearers="alice")
    har, match = nodes["har_node"], nodes["matching_node"]
    assert har["namespace"] == "/robot1"
    assert ("~/input/points", "velodyne_points") in har["remappings"]       # relative: under the namespace
    model = str((SHARE / "models" / "default").resolve())
    assert har["parameters"][1] == {"model": model, "use_sim_time": True}
    assert match["parameters"][1] == {"model": model, "wearers": ["alice"], "use_sim_time": True}
    _, _, nodes = launch(monkeypatch, **CASES[3])
    assert ("/lidar/points", "/livox/lidar") in nodes["sim_node"]["remappings"]   # the simulator follows points_topic
    assert ("~/input/points", "/livox/lidar") in nodes["har_node"]["remappings"]
    _, _, nodes = launch(monkeypatch, rviz="true", rviz_frame="os_sensor", points_topic="/ouster/points")
    rviz = nodes["rviz2"]
    assert rviz["package"] == "rviz2" and rviz["arguments"] == ["-d", str(SHARE / "rviz" / "despite.rviz"), "-f", "os_sensor"]
    assert ("lidar/points", "/ouster/points") in rviz["remappings"]


def test_the_launch_testing_runs_fit_the_launch_arguments(monkeypatch):
    """test/test_har_launch.py (launch_testing: skipped here, run by colcon test) launches har.launch.py
    with its CASES: they are launch arguments, and through the launch file the simulated run starts
    sim_node, while the real-sensor run (the default) starts no simulator and remaps har_node's input
    to the topic that test publishes on and looks up in the node graph."""
    import ast

    tree = ast.parse((REPO / "test" / "test_har_launch.py").read_text())
    cases = next(ast.literal_eval(n.value) for n in tree.body
                 if isinstance(n, ast.Assign) and [getattr(t, "id", None) for t in n.targets] == ["CASES"])
    assert set(cases) == {"sim", "real_sensor"}
    names = {a.name for a in LAUNCH_ARGUMENTS}
    for values in cases.values():
        assert set(values) <= names, set(values) - names
    _, _, sim = launch(monkeypatch, **cases["sim"])
    assert set(sim) == {"sim_node", "har_node", "matching_node"}
    _, _, real = launch(monkeypatch, **cases["real_sensor"])
    topic = cases["real_sensor"]["points_topic"]
    assert set(real) == {"har_node", "matching_node"} and "use_sim" not in cases["real_sensor"]
    assert topic.startswith("/") and topic != NODES["har_node"]["~/input/points"]
    assert ("~/input/points", topic) in real["har_node"]["remappings"] and real["har_node"]["namespace"] is None
    # the launch test reads har_node's /diagnostics key scans_selected
    assert '"scans_selected"' in (REPO / "despite_ros" / "nodes" / "har_node.py").read_text()


@pytest.mark.parametrize("given, message", [
    ({"use_sim": "maybe"}, "expected true or false"),
    ({"points_topic": "/bad topic"}, "not a ROS topic"),
    ({"namespace": "9lives"}, "not a ROS namespace"),
    ({"imu_topic": "/imu/{site}"}, "needs {wearer} and {site}"),
    ({"wearers": "alice,alice"}, "distinct ids"),
    ({"model": "/nonexistent"}, "not a model bundle"),
    ({"params": "/nonexistent.yaml"}, "parameter file not found"),
    ({"use_sim": "true", "use_sim_time": "true"}, "needs a /clock publisher"),
    ({"point_topic": "/x"}, "unknown launch arguments"),
])
def test_bad_arguments_are_named(given, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message.replace("{", r"\{").replace("}", r"\}")):
        plan(given, share=SHARE)


def test_parameter_values_survive_the_command_line():
    """-p NAME:=TEXT is read as YAML by rcl: each typed value must come back as itself."""
    for value in (True, False, 3, 0.3, float("nan"), "/{wearer}/imu/{site}", "{wearer}/imu/{site}", "true", "7",
                  ["alice", "bob"], [""], ["fall", "lying"]):
        back = yaml.safe_load(format_value(value))
        assert back == value or (value != value and back != back), (value, back)
        assert type(back) is type(value)
    assert parse_overrides(["har_node.stride=2", "har_node.model=/m", "matching_node.wearers=[a, b]",
                            "har_node.fusion=false"]) == {
        "har_node": {"stride": 2, "model": "/m", "fusion": False}, "matching_node": {"wearers": ["a", "b"]}}
    with pytest.raises(ValueError, match="NODE.PARAM=VALUE"):
        parse_overrides(["ghost.x=1"])


def test_bringup_flags_are_the_launch_arguments():
    out = subprocess.run([str(BIN / "despite-ros"), "bringup", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for a in LAUNCH_ARGUMENTS:
        assert a.flag in out.stdout, a.flag
    bad = subprocess.run([str(BIN / "despite-ros"), "bringup", "--points-topic", "/bad topic"], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "not a ROS topic" in bad.stderr and "Traceback" not in bad.stderr


def test_parameter_file_matches_the_nodes_declared_parameters():
    from dataclasses import fields

    from despite_ros.nodes.har_node import HarParams
    from despite_ros.nodes.matching_node import MatchingParams
    from despite_ros.nodes.sim_node import SimParams

    params = yaml.safe_load((REPO / "config" / "har.yaml").read_text())
    for name, cls in (("sim_node", SimParams), ("har_node", HarParams), ("matching_node", MatchingParams)):
        assert set(params[name]["ros__parameters"]) == {f.name for f in fields(cls)}, name
    assert set(NODES) == {"sim_node", "har_node", "matching_node"}


def test_shipped_rviz_config_shows_the_pipeline():
    cfg = SHARE / "rviz" / "despite.rviz"
    assert cfg.is_file(), "rviz/despite.rviz is not installed to share/"
    manager = yaml.safe_load(cfg.read_text())["Visualization Manager"]
    topics = {d["Class"]: d.get("Topic", {}).get("Value") for d in manager["Displays"]}
    assert topics["rviz_default_plugins/MarkerArray"] == NODES["har_node"]["~/output/markers"]
    rviz = next(s for s in plan({"rviz": "true", "points_topic": "/ouster/points"}, share=SHARE).nodes if s.name == "rviz2")
    assert (topics["rviz_default_plugins/PointCloud2"], "/ouster/points") in rviz.remappings
    assert manager["Global Options"]["Fixed Frame"] == next(a.default for a in LAUNCH_ARGUMENTS if a.name == "rviz_frame")
