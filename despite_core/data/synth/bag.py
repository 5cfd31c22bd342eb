"""Write the synthetic world as a rosbag2 (MCAP) with the fixed topics of shared/ARCHITECTURE.md:
full PointCloud2 scans on /lidar/points, one sensor_msgs/Imu topic per wearer and site, and the
ground truth as despite_ros/ActivityArray on /ground_truth/activities. Readable with `rosbags`
(and `ros2 bag` on a ROS machine). Messages are written in time order.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from despite_core.data.pointcloud2 import encode
from despite_core.data.rosbag import to_nanoseconds, to_time, typestore
from despite_core.data.synth.motion import CLASS_NAMES

if TYPE_CHECKING:
    from despite_core.data.synth.lidar import Scan
    from despite_core.data.synth.world import SceneState, WorldConfig

LIDAR_TOPIC = "/lidar/points"
LIDAR_FRAME = "lidar"
GT_TOPIC = "/ground_truth/activities"
# Bag time starts at a fixed epoch so a seed always gives the same bag (2026-01-01T00:00:00Z).
EPOCH = 1767225600.0


def imu_topic(wearer: str, site: str) -> str:
    return f"/{wearer}/imu/{site}"


class SynthBagWriter:
    """Streams scenes into one MCAP bag (zstd chunk compression unless ``compress=False``)."""

    def __init__(self, path: str | Path, config: "WorldConfig", *, overwrite: bool = False,
                 compress: bool = True) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer
        from rosbags.rosbag2.enums import CompressionFormat, CompressionMode

        self.path = Path(path)
        if self.path.exists():
            if not overwrite:
                raise FileExistsError(f"{self.path}: a bag exists here already (use --overwrite)")
            import shutil

            shutil.rmtree(self.path)
        self.store = typestore()
        self.config = config
        self.writer = Writer(self.path, version=9, storage_plugin=StoragePlugin.MCAP)
        if compress:
            self.writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
        self.writer.open()
        t = self.store.types
        self._T = t
        self.lidar_conn = self.writer.add_connection(LIDAR_TOPIC, "sensor_msgs/msg/PointCloud2", typestore=self.store)
        self.gt_conn = self.writer.add_connection(GT_TOPIC, "despite_ros/msg/ActivityArray", typestore=self.store)
        self.imu_conns: dict[str, object] = {}
        self.messages = 0
        self._imu_next: dict[int, int] = {}

    def _write(self, conn, stamp: float, msg, msgtype: str) -> None:
        self.writer.write(conn, to_nanoseconds(EPOCH + stamp), self.store.serialize_cdr(msg, msgtype))
        self.messages += 1

    def _header(self, stamp: float, frame: str):
        return self._T["std_msgs/msg/Header"](stamp=to_time(self.store, EPOCH + stamp), frame_id=frame)

    def begin_scene(self, scene: "SceneState", t_offset: float) -> None:
        for p in scene.people:
            for site in p.imu.sites:
                topic = imu_topic(f"person_{p.pid}", site)
                if topic not in self.imu_conns:
                    self.imu_conns[topic] = self.writer.add_connection(topic, "sensor_msgs/msg/Imu", typestore=self.store)
            self._imu_next[p.pid] = 0

    def _write_imu_until(self, scene: "SceneState", t_end: float, t_offset: float) -> None:
        """Write every IMU sample with time < t_end (scene time) not written yet, in time order."""
        T = self._T
        Quaternion, Vector3 = T["geometry_msgs/msg/Quaternion"], T["geometry_msgs/msg/Vector3"]
        Imu = T["sensor_msgs/msg/Imu"]
        c = self.config.imu.scaled(self.config.difficulty)
        fs = c.rate
        # Covariances from the error model (diagonal), as drivers report them.
        cov_o = np.diag([max(c.orientation_offset, 1e-6) ** 2] * 3).ravel()
        cov_g = np.diag([max(c.gyro_noise_density * np.sqrt(fs), 1e-9) ** 2] * 3).ravel()
        cov_a = np.diag([max(c.acc_noise_density * np.sqrt(fs), 1e-9) ** 2] * 3).ravel()
        rows = []
        for p in scene.people:
            times = p.imu.times
            k0 = self._imu_next[p.pid]
            k1 = int(np.searchsorted(times, t_end - 1e-9))
            if k1 <= k0:
                continue
            quat = p.imu.quat[k0:k1]
            for k in range(k0, k1):
                rows.append((times[k], p, k, quat[k - k0]))
            self._imu_next[p.pid] = k1
        rows.sort(key=lambda r: (r[0], r[1].pid))
        for t, p, k, q in rows:
            for s, site in enumerate(p.imu.sites):
                g, a = p.imu.gyro[k, s], p.imu.acc[k, s]
                msg = Imu(
                    header=self._header(t_offset + t, f"person_{p.pid}/{site}"),
                    orientation=Quaternion(x=float(q[s, 1]), y=float(q[s, 2]), z=float(q[s, 3]), w=float(q[s, 0])),
                    orientation_covariance=cov_o,
                    angular_velocity=Vector3(x=float(g[0]), y=float(g[1]), z=float(g[2])),
                    angular_velocity_covariance=cov_g,
                    linear_acceleration=Vector3(x=float(a[0]), y=float(a[1]), z=float(a[2])),
                    linear_acceleration_covariance=cov_a,
                )
                self._write(self.imu_conns[imu_topic(f"person_{p.pid}", site)], t_offset + t, msg, "sensor_msgs/msg/Imu")

    def write_scan(self, scene: "SceneState", scan: "Scan", t_offset: float) -> None:
        T = self._T
        self._write_imu_until(scene, scan.stamp + 1e-9, t_offset)
        fields, point_step, data = encode({
            "x": scan.xyz[:, 0], "y": scan.xyz[:, 1], "z": scan.xyz[:, 2], "intensity": scan.intensity,
            "t": scan.t, "ring": scan.ring, "gt_person": scan.gt_person})
        PointField = T["sensor_msgs/msg/PointField"]
        msg = T["sensor_msgs/msg/PointCloud2"](
            header=self._header(t_offset + scan.stamp, LIDAR_FRAME), height=1, width=len(scan.xyz),
            fields=[PointField(name=f.name, offset=f.offset, datatype=f.datatype, count=f.count) for f in fields],
            is_bigendian=False, point_step=point_step, row_step=point_step * len(scan.xyz),
            data=np.frombuffer(data, np.uint8), is_dense=True)
        self._write(self.lidar_conn, t_offset + scan.stamp, msg, "sensor_msgs/msg/PointCloud2")
        self._write_ground_truth(scene, scan, t_offset)

    def _write_ground_truth(self, scene: "SceneState", scan: "Scan", t_offset: float) -> None:
        T = self._T
        Point = T["geometry_msgs/msg/Point"]
        people = []
        for p in scene.people:
            labels, _ = p.labels_at(np.array([scan.stamp]))
            cid = int(labels[0])
            k = int(p.sample_index(scan.stamp))
            c = scene.lidar.world_to_sensor(p.kin.positions[k, 0])
            people.append(T["despite_ros/msg/PersonActivity"](
                track_id=p.pid, wearer_id=f"person_{p.pid}", position=Point(x=float(c[0]), y=float(c[1]), z=float(c[2])),
                label=CLASS_NAMES[cid] if cid >= 0 else "", class_id=cid if cid >= 0 else 65535,  # 65535: unlabelled
                confidence=1.0, scores=np.zeros(0, np.float32),
                window_start=to_time(self.store, EPOCH + t_offset + scan.stamp),
                window_duration=float(1.0 / scene.lidar.config.rate)))
        msg = T["despite_ros/msg/ActivityArray"](
            header=self._header(t_offset + scan.stamp, LIDAR_FRAME), model_id="ground_truth", source="ground_truth",
            people=people)
        self._write(self.gt_conn, t_offset + scan.stamp, msg, "despite_ros/msg/ActivityArray")

    def end_scene(self, scene: "SceneState", t_offset: float) -> None:
        self._write_imu_until(scene, scene.duration, t_offset)

    def close(self) -> None:
        self.writer.close()
