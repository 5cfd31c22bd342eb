"""Launch the despite live pipeline on a stock ROS 2 Jazzy install:

    ros2 launch despite_ros har.launch.py points_topic:=/ouster/points [wearers:=alice,bob] [use_sim:=true] ...

Starts har_node and matching_node on a real LiDAR by default (sim_node, the built-in simulated
scene, only with use_sim:=true). The arguments (`ros2 launch despite_ros har.launch.py --show-args`)
are despite_ros.bringup.LAUNCH_ARGUMENTS and are resolved by despite_ros.bringup.plan, the table and
the resolver `despite-ros bringup` uses too (one source for both paths). Fast DDS uses the shipped
profile (32 MiB shared memory, UDP on loopback): 1 MB clouds are otherwise lost.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from despite_ros.bringup import LAUNCH_ARGUMENTS, RESPAWN_DELAY_S, plan


def _nodes(context):
    share = get_package_share_directory("despite_ros")
    launch = plan({a.name: LaunchConfiguration(a.name).perform(context) for a in LAUNCH_ARGUMENTS}, share=share)
    actions = []
    for spec in launch.nodes:
        actions.append(Node(package=spec.package, executable=spec.name, name=spec.name,
                            namespace=launch.namespace or None, output="screen",
                            parameters=[str(launch.params), spec.parameters] if spec.package == "despite_ros" else [],
                            remappings=list(spec.remappings), arguments=list(spec.arguments),
                            respawn=launch.respawn, respawn_delay=RESPAWN_DELAY_S))
    return actions


def generate_launch_description():
    share = get_package_share_directory("despite_ros")
    return LaunchDescription([
        *(DeclareLaunchArgument(a.name, default_value=a.default, description=a.description) for a in LAUNCH_ARGUMENTS),
        SetEnvironmentVariable("FASTRTPS_DEFAULT_PROFILES_FILE", os.path.join(share, "config", "fastdds_profile.xml")),
        OpaqueFunction(function=_nodes),
    ])
