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

    imu_topics = sys.argv[2:] or ["/person_1/imu/left_forearm"]
    world_sum = {t: np.zeros(3) for t in imu_topics}
    report["imu_count"] = {t: 0 for t in imu_topics}

    def on_imu(topic, msg):
        report["imu_count"][topic] += 1
        if topic == imu_topics[0]:
            report["imu"] += 1
            report["imu_stamps"].append(msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9)
        q, a = msg.orientation, msg.linear_acceleration
        w, x, y, z = q.w, q.x, q.y, q.z                        # sensor -> world rotation of the orientation
        rot = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])
        world_sum[topic] += rot @ np.array([a.x, a.y, a.z])

    def on_gt(msg):
        report["gt"] += 1
        report["labels"].extend(p.label for p in msg.people)

    # Sensor-data QoS (best effort) on inputs, as the real nodes subscribe.
    node.create_subscription(PointCloud2, "/lidar/points", on_cloud, qos_profile_sensor_data)
    for t in imu_topics:
        node.create_subscription(Imu, t, lambda m, t=t: on_imu(t, m), qos_profile_sensor_data)
    node.create_subscription(ActivityArray, "/ground_truth/activities", on_gt, 10)
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.05)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    report["imu_world_mean"] = {t: (world_sum[t] / max(report["imu_count"][t], 1)).tolist() for t in imu_topics}
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
