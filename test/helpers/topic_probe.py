"""Test helper process: subscribes to the sim_node topics for SECONDS and prints a JSON report
(message counts, stamps, PointCloud2 field names, ground-truth labels)."""
import json
import sys
import time

import numpy as np
import rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Imu, PointCloud2

from despite_core.data.pointcloud2 import decode_fields
from despite_ros.msg import ActivityArray


def main() -> int:
    seconds = float(sys.argv[1])
    rclpy.init()
    node = rclpy.create_node("despite_topic_probe")
    report = {"clouds": 0, "imu": 0, "gt": 0, "fields": [], "person_points": [], "labels": [],
              "cloud_stamps": [], "imu_stamps": []}

    def on_cloud(msg):
        report["clouds"] += 1
        report["fields"] = [f.name for f in msg.fields]
        f = decode_fields(msg, ["x", "gt_person"])
        report["person_points"].append(int((f["gt_person"] > 0).sum()))
        report["cloud_stamps"].append(msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9)

    def on_imu(msg):
        report["imu"] += 1
        report["imu_stamps"].append(msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9)
        a = msg.linear_acceleration
        report.setdefault("acc_norm", []).append(float(np.sqrt(a.x**2 + a.y**2 + a.z**2)))

    def on_gt(msg):
        report["gt"] += 1
        report["labels"].extend(p.label for p in msg.people)

    # Sensor-data QoS (best effort) on inputs, as the real nodes subscribe.
    node.create_subscription(PointCloud2, "/lidar/points", on_cloud, qos_profile_sensor_data)
    node.create_subscription(Imu, "/person_1/imu/left_forearm", on_imu, qos_profile_sensor_data)
    node.create_subscription(ActivityArray, "/ground_truth/activities", on_gt, 10)
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.05)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
