"""Test helper process: subscribes to the sim_node topics for SECONDS at most (with ``--until FILE``:
until that file exists, so the test can stop it once the node has exited instead of guessing a
window; with ``--ready FILE``: touches that file once subscribed, so the test starts the node
after it) and prints a JSON report:
message counts, every message's header stamp in integer nanoseconds (clouds, ground truth and each
IMU topic), PointCloud2 field names, ground-truth labels, and each IMU sample's linear acceleration
rotated into the world frame by its orientation."""
import json
import os
import sys
import time

import numpy as np
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Imu, PointCloud2

from despite_core.data.pointcloud2 import decode_fields
from despite_ros.msg import ActivityArray


def stamp_ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def main() -> int:
    seconds = float(sys.argv[1])
    rest = sys.argv[2:]
    opts = {}
    while rest[:1] in (["--until"], ["--ready"]):
        opts[rest[0][2:]], rest = rest[1], rest[2:]
    until = opts.get("until")
    rclpy.init()
    node = rclpy.create_node("despite_topic_probe")
    report = {"clouds": 0, "gt": 0, "fields": [], "person_points": [], "labels": [], "cloud_stamps_ns": [],
              "gt_stamps_ns": []}

    def on_cloud(msg):
        report["clouds"] += 1
        report["fields"] = [f.name for f in msg.fields]
        f = decode_fields(msg, ["x", "gt_person"])
        report["person_points"].append(int((f["gt_person"] > 0).sum()))
        report["cloud_stamps_ns"].append(stamp_ns(msg.header.stamp))

    imu_topics = rest or ["/person_1/imu/left_forearm"]
    imu = {t: {"stamps_ns": [], "acc_world": []} for t in imu_topics}

    def on_imu(topic, msg):
        q, a = msg.orientation, msg.linear_acceleration
        w, x, y, z = q.w, q.x, q.y, q.z                        # sensor -> world rotation of the orientation
        rot = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])
        imu[topic]["stamps_ns"].append(stamp_ns(msg.header.stamp))
        imu[topic]["acc_world"].append([round(float(v), 6) for v in rot @ np.array([a.x, a.y, a.z])])

    def on_gt(msg):
        report["gt"] += 1
        report["gt_stamps_ns"].append(stamp_ns(msg.header.stamp))
        report["labels"].extend(p.label for p in msg.people)

    # Clouds with sensor-data QoS (best effort), as the real nodes subscribe. IMU reliable with a deep
    # queue (sim_node publishes reliable): the gravity check sums consecutive samples, and every
    # sample lost on a best-effort link would loosen its bound.
    node.create_subscription(PointCloud2, "/lidar/points", on_cloud, qos_profile_sensor_data)
    imu_qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
    for t in imu_topics:
        node.create_subscription(Imu, t, lambda m, t=t: on_imu(t, m), imu_qos)
    node.create_subscription(ActivityArray, "/ground_truth/activities", on_gt, 10)
    if "ready" in opts:
        open(opts["ready"], "w").close()
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end and not (until and os.path.exists(until)):
            rclpy.spin_once(node, timeout_sec=0.05)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    report["imu"] = imu
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
