"""launch/har.launch.py, checked here without ROS 2's launch packages (not installable from PyPI):
the file is loaded with minimal stand-ins for launch / launch_ros that record what it declares,
and compared with `despite-ros bringup` (same executables, parameter file and remappings)."""
from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import yaml

from despite_ros.bringup import NODES, node_command

REPO = Path(__file__).resolve().parents[1]


class Recorder:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


def stand_ins(share: Path) -> dict[str, types.ModuleType]:
    mods = {}
    for name in ("launch", "launch.actions", "launch.conditions", "launch.substitutions", "launch_ros",
                 "launch_ros.actions", "ament_index_python", "ament_index_python.packages"):
        mods[name] = types.ModuleType(name)
    mods["launch"].LaunchDescription = lambda actions: list(actions)
    for cls in ("DeclareLaunchArgument", "SetEnvironmentVariable"):
        setattr(mods["launch.actions"], cls, type(cls, (Recorder,), {}))
    mods["launch.conditions"].IfCondition = type("IfCondition", (Recorder,), {})
    mods["launch.substitutions"].LaunchConfiguration = type("LaunchConfiguration", (Recorder,), {})
    mods["launch_ros.actions"].Node = type("Node", (Recorder,), {})
    mods["ament_index_python.packages"].get_package_share_directory = lambda pkg: str(share)
    return mods


def load_launch(monkeypatch, share: Path):
    for name, mod in stand_ins(share).items():
        monkeypatch.setitem(sys.modules, name, mod)
    spec = importlib.util.spec_from_file_location("har_launch", REPO / "launch" / "har.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description()


def test_launch_file_declares_what_bringup_starts(monkeypatch):
    share = Path(sys.prefix) / "share" / "despite_ros"
    actions = load_launch(monkeypatch, share)
    nodes = {a.kwargs["name"]: a for a in actions if type(a).__name__ == "Node"}
    assert set(nodes) == set(NODES) == {"sim_node", "har_node", "matching_node"}
    args = {a.args[0]: a.kwargs for a in actions if type(a).__name__ == "DeclareLaunchArgument"}
    assert args["params"]["default_value"] == str(share / "config" / "har.yaml")
    env = [a.args for a in actions if type(a).__name__ == "SetEnvironmentVariable"]
    assert env == [("FASTRTPS_DEFAULT_PROFILES_FILE", str(share / "config" / "fastdds_profile.xml"))]
    params = yaml.safe_load((share / "config" / "har.yaml").read_text())
    for name, node in nodes.items():
        assert node.kwargs["package"] == "despite_ros" and node.kwargs["executable"] == name
        exe = Path(sys.prefix) / "lib" / "despite_ros" / name         # installed by the CMake package
        assert exe.is_file(), exe
        assert node.kwargs["parameters"][0].args == ("params",)
        assert name in params and "ros__parameters" in params[name]
        # bringup's command line carries exactly the launch file's remappings
        cmd = node_command(name, share / "config" / "har.yaml")
        remaps = [cmd[i + 1] for i, x in enumerate(cmd) if x == "-r" and not cmd[i + 1].startswith("__node:=")]
        assert remaps == [f"{a}:={b}" for a, b in node.kwargs["remappings"]]
        assert cmd[0] == str(exe) and cmd[cmd.index("--params-file") + 1] == str(share / "config" / "har.yaml")
    assert nodes["sim_node"].kwargs["condition"].args[0].args == ("use_sim",)
    assert "condition" not in nodes["har_node"].kwargs


def test_parameter_file_matches_the_nodes_declared_parameters():
    from dataclasses import fields

    from despite_ros.nodes.har_node import HarParams
    from despite_ros.nodes.matching_node import MatchingParams
    from despite_ros.nodes.sim_node import SimParams

    params = yaml.safe_load((REPO / "config" / "har.yaml").read_text())
    for name, cls in (("sim_node", SimParams), ("har_node", HarParams), ("matching_node", MatchingParams)):
        assert set(params[name]["ros__parameters"]) == {f.name for f in fields(cls)}, name
