"""sim_node: the synthetic world live. Publishes full PointCloud2 scans on /lidar/points, one
sensor_msgs/Imu topic per wearer and site (/person_<k>/imu/<site>) and the ground truth on
/ground_truth/activities, in real time (or ``rate`` times faster), scene after scene.

Thin glue: the world, its schedule (despite_core.data.synth.world.iter_timeline) and the
PointCloud2 codec live in despite_core; this node only converts and publishes.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, replace

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, Quaternion, Vector3
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Imu, PointCloud2, PointField
from std_msgs.msg import Header

from despite_core.data.pointcloud2 import fill_message
from despite_core.data.rotations import matrix_to_quat
from despite_core.data.synth.bag import LIDAR_FRAME, UNLABELLED_CLASS_ID, imu_covariances, imu_topic, scan_arrays
from despite_core.data.synth.imu import ImuConfig
from despite_core.data.synth.lidar import LidarConfig
from despite_core.data.synth.world import WorldConfig, build_scene, ground_truth, iter_timeline
from despite_ros.msg import ActivityArray, PersonActivity
from despite_ros.nodes import common
from despite_ros.nodes.common import declare


@dataclass(frozen=True)
class SimParams:
    seed: int = 0
    people: int = 2
    difficulty: float = 1.0
    lidar_beams: int = 64
    lidar_columns: int = 1024
    lidar_rate: float = 10.0
    imu_rate: float = 100.0
    scene_seconds: float = 60.0
    rate: float = 1.0                 # real-time factor (2 = twice as fast as real time)
    duration: float = 0.0             # seconds of simulated time to publish, 0 = forever
    edition: int = 1                  # world edition: 1 = the 15 base classes, 2 = + fall, lying, get up

    def world(self) -> WorldConfig:
        lidar = replace(LidarConfig(beams=self.lidar_beams), columns=self.lidar_columns, rate=self.lidar_rate)
        return WorldConfig(minutes=self.scene_seconds / 60, people=self.people, seed=self.seed,
                           difficulty=self.difficulty, scene_minutes=self.scene_seconds / 60, lidar=lidar,
                           imu=ImuConfig(rate=self.imu_rate), edition=self.edition)


DOCS = {
    "seed": ("random seed of the world",),
    "people": ("people per scene", 1, 8),
    "difficulty": ("0 ideal sensors .. 2 harsh (docs/synthetic-world.md)", 0, 2),
    "lidar_beams": ("LiDAR beams: 16, 32, 64 or 128", 16, 128),
    "lidar_columns": ("azimuth steps per turn", 64, 4096),
    "lidar_rate": ("scans per second", 1, 40),
    "imu_rate": ("IMU samples per second (a multiple of lidar_rate)", 10, 1000),
    "scene_seconds": ("length of one scene (new room, new people)", 5, 3600),
    "rate": ("real-time factor: 1 = real time, 2 = twice as fast", 0.01, 100),
    "duration": ("simulated seconds to publish before exiting; 0 = forever", 0, 1e6),
    "edition": ("world edition: 1 = the 15 base classes, 2 = + fall, lying, get up (docs/synthetic-world.md)", 1, 2),
}


class SimNode(Node):
    def __init__(self) -> None:
        super().__init__("sim_node")
        self.params: SimParams = declare(self, SimParams, DOCS)
        self.config = self.params.world()          # validates (a clear ValueError on a bad combination)
        reliable = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        self.cloud_pub = self.create_publisher(PointCloud2, "/lidar/points", reliable)
        self.gt_pub = self.create_publisher(ActivityArray, "/ground_truth/activities", reliable)
        self.imu_pubs: dict[str, rclpy.publisher.Publisher] = {}
        self.cov = imu_covariances(self.config)
        self.get_logger().info(
            f"simulating {self.params.people} people, {self.params.lidar_beams}-beam LiDAR at "
            f"{self.params.lidar_rate} Hz, IMU at {self.params.imu_rate} Hz, x{self.params.rate} real time")

    def _stamp(self, t: float) -> Time:
        sec = int(np.floor(t))
        return Time(sec=sec, nanosec=min(int(round((t - sec) * 1e9)), 999_999_999))

    def run(self) -> None:
        p = self.params
        t0_ros = self.get_clock().now().nanoseconds * 1e-9
        t0_wall = time.monotonic()
        offset = 0.0
        index = 0
        while rclpy.ok():
            scene = build_scene(self.config, index, p.scene_seconds)
            for t, kind, payload in iter_timeline(scene, full=True, noise_scale=p.difficulty):
                sim_t = offset + t
                if p.duration and sim_t >= p.duration:
                    return
                delay = t0_wall + sim_t / p.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                if not rclpy.ok():
                    return
                stamp = self._stamp(t0_ros + sim_t)
                if kind == "scan":
                    self._publish_scan(scene, payload, stamp)
                else:
                    self._publish_imu(*payload, stamp)
            offset += p.scene_seconds
            index += 1

    def _publish_scan(self, scene, scan, stamp: Time) -> None:
        msg = PointCloud2()
        fill_message(msg, scan_arrays(scan), frame_id=LIDAR_FRAME, field_factory=PointField)
        msg.header.stamp = stamp
        self.cloud_pub.publish(msg)
        gt = ActivityArray(header=Header(stamp=stamp, frame_id=LIDAR_FRAME), model_id="ground_truth",
                           source="ground_truth")
        for pid, cid, c in ground_truth(scene, scan.stamp):
            gt.people.append(PersonActivity(
                track_id=pid, wearer_id=f"person_{pid}", position=Point(x=float(c[0]), y=float(c[1]), z=float(c[2])),
                label=self.config.class_names[cid] if cid >= 0 else "", class_id=cid if cid >= 0 else UNLABELLED_CLASS_ID,
                confidence=1.0, window_start=stamp, window_duration=1.0 / self.params.lidar_rate))
        self.gt_pub.publish(gt)

    def _publish_imu(self, person, k: int, stamp: Time) -> None:
        q = matrix_to_quat(person.imu.orientation[k])
        for s, site in enumerate(person.imu.sites):
            topic = imu_topic(f"person_{person.pid}", site)
            if topic not in self.imu_pubs:
                self.imu_pubs[topic] = self.create_publisher(Imu, topic, QoSProfile(depth=50))
            g, a = person.imu.gyro[k, s], person.imu.acc[k, s]
            msg = Imu(header=Header(stamp=stamp, frame_id=f"person_{person.pid}/{site}"),
                      orientation=Quaternion(w=float(q[s, 0]), x=float(q[s, 1]), y=float(q[s, 2]), z=float(q[s, 3])),
                      angular_velocity=Vector3(x=float(g[0]), y=float(g[1]), z=float(g[2])),
                      linear_acceleration=Vector3(x=float(a[0]), y=float(a[1]), z=float(a[2])))
            msg.orientation_covariance, msg.angular_velocity_covariance, msg.linear_acceleration_covariance = (
                c.tolist() for c in self.cov)
            self.imu_pubs[topic].publish(msg)


def main(args: list[str] | None = None) -> int:
    return common.main("sim_node", SimNode, run=SimNode.run, args=args)


if __name__ == "__main__":
    sys.exit(main())
