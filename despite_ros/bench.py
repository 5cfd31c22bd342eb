"""`despite-ros bench`: the live pipeline measured on this machine, side by side in one run.

- ``perception``: the perception front end (despite_core.runtime.perception: floor plane,
  background, clustering, the person classifier, tracking, FPS) vs the Open3D baseline (plane
  RANSAC ground removal + DBSCAN on the non-ground points) on the same simulated scans: 64 beams x
  1024 columns with 2 people, and 128 beams x 2048 columns with 8 people; median and p95 per scan
  (every scan from the first: detection runs while the background is learned) and the ratio.
- ``latency``: har_node as a real process (bringup, shipped DDS profile); scans of the simulated
  world published in real time at 10 and 20 Hz with 1, 2, 4 and 8 people; latency from each scan's
  publication to the receipt of the ActivityArray whose window ends with it (p50, p95, max); whether
  a backlog grows (latency trend over the run, scans the node never selected); the node's CPU and
  peak memory.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np


def sim_scans(seconds: float, people: int, rate: float, beams: int = 64, seed: int = 11,
              columns: int = 1024) -> list[dict]:
    """Full scans of the simulated world (arrays per field), in order."""
    from despite_core.data.synth.bag import scan_arrays
    from despite_core.data.synth.lidar import LidarConfig
    from despite_core.data.synth.world import WorldConfig, build_scene, iter_timeline

    cfg = WorldConfig(minutes=seconds / 60, people=people, seed=seed, scene_minutes=seconds / 60,
                      lidar=replace(LidarConfig(beams=beams, columns=columns), rate=rate))
    scene = build_scene(cfg, 0, seconds)
    return [scan_arrays(p) for _, kind, p in iter_timeline(scene, full=True) if kind == "scan"]


def sim_clouds(seconds: float, people: int, rate: float, beams: int = 64, columns: int = 1024) -> list:
    """:func:`sim_scans` as sensor_msgs/PointCloud2 messages (frame ``lidar``; stamps set by the caller)."""
    from sensor_msgs.msg import PointCloud2, PointField

    from despite_core.data.pointcloud2 import fill_message

    msgs = []
    for s in sim_scans(seconds, people, rate, beams=beams, columns=columns):
        m = PointCloud2()
        fill_message(m, s, frame_id="lidar", field_factory=PointField)
        msgs.append(m)
    return msgs


def _stats(ms: list[float]) -> dict:
    a = np.asarray(ms, np.float64)
    return {"median_ms": round(float(np.median(a)), 2), "p95_ms": round(float(np.percentile(a, 95)), 2),
            "max_ms": round(float(a.max()), 2), "n": int(a.size)}


def bench_perception(seconds: float = 8.0, people: int = 2, beams: int = 64, columns: int = 1024) -> dict:
    import open3d as o3d

    from despite_core.runtime.perception import Perception

    scans = sim_scans(seconds, people, 10.0, beams=beams, columns=columns)
    xyz = [np.stack([s["x"], s["y"], s["z"]], 1) for s in scans]
    per = Perception()
    ours = [per.process(pts, k * 0.1).seconds * 1e3 for k, pts in enumerate(xyz)][1:]   # the first: floor search
    base = []
    for pts in xyz[1:]:
        t0 = time.perf_counter()
        pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts.astype(np.float64)))
        _, inliers = pc.segment_plane(distance_threshold=0.1, ransac_n=3, num_iterations=100)
        rest = pc.select_by_index(inliers, invert=True)
        np.asarray(rest.cluster_dbscan(eps=0.3, min_points=10))
        base.append((time.perf_counter() - t0) * 1e3)
    o, b = _stats(ours), _stats(base)
    return {"beams": beams, "columns": columns, "points_per_scan": int(np.mean([len(p) for p in xyz])),
            "people": people, "ours": o, "open3d_baseline": b,
            "speedup_median": round(b["median_ms"] / o["median_ms"], 1), "speedup_p95": round(b["p95_ms"] / o["p95_ms"], 1)}


def _proc_cpu_mem(pid: int) -> tuple[float, int]:
    """(user+system CPU seconds, peak resident memory in bytes) of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    peak = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1]) * 1024
    return cpu, peak


def bench_latency(rate: float, people: int, seconds: float, env: dict | None = None) -> dict:
    """har_node as a process; this process publishes the scans at ``rate`` and listens."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import PointCloud2

    from despite_ros.bringup import Bringup, plan, use_shipped_dds_profile
    from despite_ros.msg import ActivityArray
    from despite_ros.nodes.har_node import stamp_ns, to_time

    msgs = sim_clouds(seconds, people, rate)
    b = Bringup(plan(overrides={"har_node": {"providers": "cpu"}}, only=("har_node",)), env=env,
                stdout=open(os.devnull, "w")).start()
    use_shipped_dds_profile()
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("despite_bench", context=ctx)
    published: dict[int, float] = {}
    latency: list[tuple[float, float]] = []
    outputs = []

    def on_acts(msg):
        now = time.perf_counter()
        s = stamp_ns(msg.header.stamp)
        if s in published and msg.people:
            latency.append((published[s], (now - published[s]) * 1e3))
            outputs.append(len(msg.people))

    node.create_subscription(ActivityArray, "/despite/activities", on_acts, QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
    from diagnostic_msgs.msg import DiagnosticArray

    diag: dict[str, str] = {}
    node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: [diag.update({kv.key: kv.value for kv in st.values})
                                                                          for st in m.status if st.name.startswith("har_node")], 10)
    pub = node.create_publisher(PointCloud2, "/lidar/points", qos_profile_sensor_data)
    ex = rclpy.executors.SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    try:
        deadline = time.monotonic() + 60
        while (pub.get_subscription_count() == 0 or node.count_publishers("/despite/activities") == 0) \
                and time.monotonic() < deadline:
            ex.spin_once(timeout_sec=0.1)
        time.sleep(1.0)
        pid = b.procs["har_node"].pid
        cpu0, _ = _proc_cpu_mem(pid)
        t_start = time.perf_counter()
        base_ns = time.time_ns()
        for k, m in enumerate(msgs):
            due = t_start + k / rate
            while (wait := due - time.perf_counter()) > 0:
                ex.spin_once(timeout_sec=min(wait, 0.01))
            ns = base_ns + int(k / rate * 1e9)
            m.header.stamp = to_time(ns)
            published[ns] = time.perf_counter()
            pub.publish(m)
        end = time.perf_counter() + 2.0
        while time.perf_counter() < end:
            ex.spin_once(timeout_sec=0.05)
        wall = time.perf_counter() - t_start
        cpu1, peak = _proc_cpu_mem(pid)
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
        b.stop()
    if not latency:
        return {"rate_hz": rate, "people": people, "error": "no ActivityArray received"}
    lat = np.array([x[1] for x in latency])
    half = len(lat) // 2
    return {"rate_hz": rate, "people": people, "scans": len(msgs), "outputs": len(lat),
            "mean_tracks": round(float(np.mean(outputs)), 2), **{k: v for k, v in _stats(lat.tolist()).items() if k != "n"},
            "latency_first_half_ms": round(float(np.median(lat[:half])), 2) if half else None,
            "latency_second_half_ms": round(float(np.median(lat[half:])), 2) if half else None,
            "node_cpu_percent": round(100 * (cpu1 - cpu0) / wall, 1), "node_peak_rss_mb": round(peak / 2**20, 1),
            # har_node's own count (its last /diagnostics): scans it took, model periods without one
            "node_scans_selected": int(diag.get("scans_selected", -1)), "node_missing_periods": int(diag.get("missing_periods", -1))}


def table(result: dict) -> str:
    lines = []
    for p in result.get("perception", []):
        lines += [f"| perception, {p['beams']} beams x {p['columns']} columns ({p['points_per_scan']} points), "
                  f"{p['people']} people | median ms | p95 ms |", "|---|---:|---:|",
                  f"| despite_core.runtime.perception | {p['ours']['median_ms']} | {p['ours']['p95_ms']} |",
                  f"| Open3D plane RANSAC + DBSCAN | {p['open3d_baseline']['median_ms']} | {p['open3d_baseline']['p95_ms']} |",
                  f"| speed-up | {p['speedup_median']}x | {p['speedup_p95']}x |", ""]
    if "latency" in result:
        lines += ["| rate Hz | people | p50 ms | p95 ms | max ms | 1st half / 2nd half p50 ms | scans selected / sent | "
                  "missed periods | har_node CPU % | peak RSS MB |",
                  "|---:|---:|---:|---:|---:|---|---|---:|---:|---:|"]
        for r in result["latency"]:
            if "error" in r:
                lines.append(f"| {r['rate_hz']} | {r['people']} | {r['error']} |")
                continue
            lines.append(f"| {r['rate_hz']:g} | {r['people']} | {r['median_ms']} | {r['p95_ms']} | {r['max_ms']} | "
                         f"{r['latency_first_half_ms']} / {r['latency_second_half_ms']} | "
                         f"{r['node_scans_selected']} / {r['scans']} | {r['node_missing_periods']} | {r['node_cpu_percent']} | "
                         f"{r['node_peak_rss_mb']} |")
    return "\n".join(lines)


def run(kind: str, seconds: float, out: Path | None) -> int:
    result: dict = {}
    if kind in ("perception", "all"):
        result["perception"] = [bench_perception(), bench_perception(people=8, beams=128, columns=2048)]
    if kind in ("latency", "all"):
        os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        result["latency"] = [bench_latency(rate, people, seconds) for rate in (10.0, 20.0) for people in (1, 2, 4, 8)]
    print(table(result))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1))
    return 0
