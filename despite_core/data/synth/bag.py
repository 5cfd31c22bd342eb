"""Write the synthetic world as a rosbag2 (MCAP) with the fixed topics of shared/ARCHITECTURE.md:
full PointCloud2 scans on /lidar/points, one sensor_msgs/Imu topic per wearer and site, and the
ground truth as despite_ros/ActivityArray on /ground_truth/activities. Readable with `rosbags`
(and `ros2 bag` on a ROS machine). Messages are written in time order.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from despite_core.data.pointcloud2 import encode
from despite_core.data.rosbag import GT_TOPIC, BagWriter, to_nanoseconds, to_time, typestore
from despite_core.data.rotations import matrix_to_quat
from despite_core.data.synth.lidar import Scan
from despite_core.data.synth.world import SceneState, WorldConfig, ground_truth

LIDAR_TOPIC = "/lidar/points"
LIDAR_FRAME = "lidar"
# Bag time starts at a fixed epoch so a seed always gives the same bag (2026-01-01T00:00:00Z).
EPOCH = 1767225600.0


UNLABELLED_CLASS_ID = 65535   # class_id of a ground-truth entry whose frame has no label ("" label)


def imu_topic(wearer: str, site: str) -> str:
    return f"/{wearer}/imu/{site}"


def scan_arrays(scan: "Scan") -> dict[str, np.ndarray]:
    """The PointCloud2 fields of a synthetic scan, in the order of shared/ARCHITECTURE.md."""
    return {"x": scan.xyz[:, 0], "y": scan.xyz[:, 1], "z": scan.xyz[:, 2], "intensity": scan.intensity,
            "t": scan.t, "ring": scan.ring, "gt_person": scan.gt_person}


def imu_covariances(config: "WorldConfig") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Diagonal orientation / angular velocity / acceleration covariances from the error model."""
    c = config.imu.scaled(config.difficulty)
    fs = c.rate
    return (np.diag([max(c.orientation_offset, 1e-6) ** 2] * 3).ravel(),
            np.diag([max(c.gyro_noise_density * np.sqrt(fs), 1e-9) ** 2] * 3).ravel(),
            np.diag([max(c.acc_noise_density * np.sqrt(fs), 1e-9) ** 2] * 3).ravel())


class SynthBagWriter:
    """Streams scenes into one MCAP bag in rosbag2's layout (:class:`BagWriter`: ``NAME/NAME_0.mcap`` +
    metadata.yaml, or one ``NAME.mcap`` file; zstd chunk compression unless ``compress=False``)."""

    def __init__(self, path: str | Path, config: "WorldConfig", *, overwrite: bool = False,
                 compress: bool = True) -> None:
        self.path = Path(path)
        self.store = typestore()
        self.config = config
        self.writer = BagWriter(self.path, compress=compress, overwrite=overwrite)
        t = self.store.types
        self._T = t
        self.lidar_conn = self.writer.add_connection(LIDAR_TOPIC, "sensor_msgs/msg/PointCloud2")
        self.gt_conn = self.writer.add_connection(GT_TOPIC, "despite_ros/msg/ActivityArray")
        self.imu_conns: dict[str, object] = {}
        self.messages = 0
        self._cov = imu_covariances(config)

    def _write(self, conn, stamp: float, msg, msgtype: str) -> None:
        self.writer.write(conn, to_nanoseconds(EPOCH + stamp), self.store.serialize_cdr(msg, msgtype))
        self.messages += 1

    def _header(self, stamp: float, frame: str):
        return self._T["std_msgs/msg/Header"](stamp=to_time(self.store, EPOCH + stamp), frame_id=frame)

    def begin_scene(self, scene: "SceneState") -> None:
        for p in scene.people:
            for site in p.imu.sites:
                topic = imu_topic(f"person_{p.pid}", site)
                if topic not in self.imu_conns:
                    self.imu_conns[topic] = self.writer.add_connection(topic, "sensor_msgs/msg/Imu")

    def write(self, scene: "SceneState", stamp: float, kind: str, payload) -> None:
        """Write one event of :func:`despite_core.data.synth.world.iter_timeline` at bag time ``stamp``."""
        if kind == "scan":
            self._write(self.lidar_conn, stamp, self._cloud(payload, stamp), "sensor_msgs/msg/PointCloud2")
            self._write(self.gt_conn, stamp, self._ground_truth(scene, payload.stamp, stamp),
                        "despite_ros/msg/ActivityArray")
        else:
            person, k = payload
            for s, site in enumerate(person.imu.sites):
                self._write(self.imu_conns[imu_topic(f"person_{person.pid}", site)], stamp,
                            self._imu(person, k, s, site, stamp), "sensor_msgs/msg/Imu")

    def _imu(self, person, k: int, s: int, site: str, stamp: float):
        T = self._T
        q = matrix_to_quat(person.imu.orientation[k, s])
        g, a = person.imu.gyro[k, s], person.imu.acc[k, s]
        V = T["geometry_msgs/msg/Vector3"]
        return T["sensor_msgs/msg/Imu"](
            header=self._header(stamp, f"person_{person.pid}/{site}"),
            orientation=T["geometry_msgs/msg/Quaternion"](x=float(q[1]), y=float(q[2]), z=float(q[3]), w=float(q[0])),
            orientation_covariance=self._cov[0],
            angular_velocity=V(x=float(g[0]), y=float(g[1]), z=float(g[2])), angular_velocity_covariance=self._cov[1],
            linear_acceleration=V(x=float(a[0]), y=float(a[1]), z=float(a[2])), linear_acceleration_covariance=self._cov[2])

    def _cloud(self, scan: "Scan", stamp: float):
        T = self._T
        fields, point_step, data = encode(scan_arrays(scan))
        PointField = T["sensor_msgs/msg/PointField"]
        return T["sensor_msgs/msg/PointCloud2"](
            header=self._header(stamp, LIDAR_FRAME), height=1, width=len(scan.xyz),
            fields=[PointField(name=f.name, offset=f.offset, datatype=f.datatype, count=f.count) for f in fields],
            is_bigendian=False, point_step=point_step, row_step=point_step * len(scan.xyz),
            data=np.frombuffer(data, np.uint8), is_dense=True)

    def _ground_truth(self, scene: "SceneState", scene_stamp: float, stamp: float):
        T = self._T
        Point = T["geometry_msgs/msg/Point"]
        people = [T["despite_ros/msg/PersonActivity"](
            track_id=pid, wearer_id=f"person_{pid}", position=Point(x=float(c[0]), y=float(c[1]), z=float(c[2])),
            label=self.config.class_names[cid] if cid >= 0 else "", class_id=cid if cid >= 0 else UNLABELLED_CLASS_ID,
            confidence=1.0, scores=np.zeros(0, np.float32), window_start=to_time(self.store, EPOCH + stamp),
            window_duration=float(1.0 / scene.lidar.config.rate))
            for pid, cid, c in ground_truth(scene, scene_stamp)]
        return T["despite_ros/msg/ActivityArray"](
            header=self._header(stamp, LIDAR_FRAME), model_id="ground_truth", source="ground_truth", people=people)

    def close(self) -> None:
        self.writer.close()

    def abort(self) -> None:
        self.writer.abort()
