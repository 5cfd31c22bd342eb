"""Launch the despite live pipeline on a stock ROS 2 Jazzy install:
`ros2 launch despite_ros har.launch.py [use_sim:=true] [params:=FILE]`.

Starts har_node and matching_node (and sim_node, the built-in simulated scene, unless
use_sim:=false) with the parameters of config/har.yaml and the remappings of
despite_ros.bringup.NODES, the table `despite-ros bringup` uses too (one source for both paths).
Fast DDS uses the shipped profile (32 MiB shared memory, UDP on loopback): 1 MB clouds are
otherwise lost.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from despite_ros.bringup import NODES, PIPELINE


def generate_launch_description():
    share = get_package_share_directory("despite_ros")
    params = os.path.join(share, "config", "har.yaml")
    profile = os.path.join(share, "config", "fastdds_profile.xml")
    actions = [
        DeclareLaunchArgument("use_sim", default_value="true", description="start sim_node (the built-in simulated scene)"),
        DeclareLaunchArgument("params", default_value=params, description="parameter YAML"),
        SetEnvironmentVariable("FASTRTPS_DEFAULT_PROFILES_FILE", profile),
        Node(package="despite_ros", executable="sim_node", name="sim_node", output="screen",
             parameters=[LaunchConfiguration("params")], remappings=list(NODES["sim_node"].items()),
             condition=IfCondition(LaunchConfiguration("use_sim"))),
    ]
    for name in PIPELINE:
        actions.append(Node(package="despite_ros", executable=name, name=name, output="screen",
                            parameters=[LaunchConfiguration("params")], remappings=list(NODES[name].items())))
    return LaunchDescription(actions)
