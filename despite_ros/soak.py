"""`despite-ros bench soak`: har_node and matching_node driven for minutes, to show that memory and
latency stay bounded and that every drop is counted.

This process publishes LiDAR scans (simulated, ``--beams`` x 1024 columns, ``--people`` people;
a few seconds of scans generated once and replayed in a loop with new stamps) at ``--rate`` Hz and
``--wearers`` x 4 sensor_msgs/Imu streams at 100 Hz, all stamped with the wall clock, while both
nodes run as processes (bringup). Per minute it reports the latency from a scan's publication to
the ActivityArray whose window ends with it (p50, p95), each node's resident memory (mean) and CPU,
the scans and IMU samples sent and received (the highest IMU message rate the node sustained is the
received rate when it falls short of the sent one), and the nodes' drops by cause from their last
/diagnostics; over the run, the RSS slope (MB per minute, least squares over samples every 5 s).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

IMU_RATE = 100.0


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_s(pid: int) -> float:
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def soak(minutes: float, rate: float = 20.0, beams: int = 128, people: int = 4, wearers: int = 4,
         loop_seconds: float = 6.0, progress: bool = True) -> dict:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import Imu, PointCloud2

    from despite_core.runtime.inference import default_bundle_path, load_bundle
    from despite_ros.bench import sim_clouds
    from despite_ros.bringup import Bringup, plan, use_shipped_dds_profile
    from despite_ros.msg import ActivityArray
    from despite_ros.nodes.har_node import stamp_ns, to_time

    if minutes <= 0 or rate <= 0 or not 1 <= people <= 8 or wearers < 0:
        raise ValueError("need --minutes > 0, --rate > 0, 1 <= --people <= 8, --wearers >= 0")
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    sites = load_bundle(default_bundle_path()).imu_layout.sites
    names = [f"w{k + 1}" for k in range(wearers)]
    scans = sim_clouds(loop_seconds, people, rate, beams=beams, columns=1024)
    args = {"wearers": ",".join(names)} if names else {}
    nodes = ("har_node", "matching_node") if names else ("har_node",)
    b = Bringup(plan(args, overrides={n: {"providers": "cpu"} for n in nodes}, only=nodes),
                stdout=open(os.devnull, "w")).start()
    use_shipped_dds_profile()
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("despite_soak", context=ctx)
    published: dict[int, float] = {}
    arrivals: list[tuple[float, float]] = []            # (time since start, latency ms)
    diag: dict[str, dict[str, str]] = {}
    t_start = [0.0]

    def on_acts(msg):
        now = time.perf_counter()
        s = stamp_ns(msg.header.stamp)
        if msg.people and s in published:
            arrivals.append((now - t_start[0], (now - published.pop(s)) * 1e3))

    def on_diag(msg):
        for st in msg.status:
            key = st.name.split(":")[0]
            diag[key] = {"level": int.from_bytes(st.level, "little") if isinstance(st.level, bytes) else int(st.level),
                         **{kv.key: kv.value for kv in st.values}}

    node.create_subscription(ActivityArray, "/despite/activities", on_acts, QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 50)
    pub = node.create_publisher(PointCloud2, "/lidar/points", qos_profile_sensor_data)
    imu_pubs = {(w, s): node.create_publisher(Imu, f"/{w}/imu/{s}", qos_profile_sensor_data) for w in names for s in sites}
    ex = rclpy.executors.SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    pids = {n: p.pid for n, p in b.procs.items()}
    rss: dict[str, list[tuple[float, float]]] = {n: [] for n in pids}
    per_minute: list[dict] = []
    sent = {"scans": 0, "imu": 0}
    imu_msg = Imu()
    imu_msg.orientation.w, imu_msg.linear_acceleration.z = 1.0, 9.81
    rng = np.random.default_rng(0)
    try:
        deadline = time.monotonic() + 90
        while (pub.get_subscription_count() == 0 or node.count_publishers("/despite/activities") == 0
               or any(p.get_subscription_count() == 0 for p in imu_pubs.values())) and time.monotonic() < deadline:
            ex.spin_once(timeout_sec=0.1)
            if (done := b.poll()) is not None:
                raise RuntimeError(f"{done[0]} exited with code {done[1]} before the soak started")
        time.sleep(1.0)
        t0 = t_start[0] = time.perf_counter()
        total = minutes * 60.0
        next_scan, next_imu, next_rss, k = t0, t0, t0, 0
        minute_start = {"t": t0, "cpu": {n: _cpu_s(p) for n, p in pids.items()}, "sent": dict(sent), "arr": 0,
                        "diag": {}}
        while (now := time.perf_counter()) - t0 < total:
            if (done := b.poll()) is not None:
                raise RuntimeError(f"{done[0]} exited with code {done[1]} {now - t0:.0f} s into the soak")
            if now >= next_scan:
                m = scans[k % len(scans)]
                ns = time.time_ns()
                m.header.stamp = to_time(ns)
                published[ns] = time.perf_counter()
                pub.publish(m)
                sent["scans"] += 1
                k += 1
                next_scan += 1.0 / rate
            if now >= next_imu:
                ns = time.time_ns()
                imu_msg.header.stamp = to_time(ns)
                imu_msg.angular_velocity.x = float(rng.normal(0, 0.01))
                for p in imu_pubs.values():
                    p.publish(imu_msg)
                sent["imu"] += len(imu_pubs)
                next_imu += 1.0 / IMU_RATE
            if now >= next_rss:
                for n, p in pids.items():
                    rss[n].append((now - t0, _rss_mb(p)))
                next_rss += 5.0
            if now - minute_start["t"] >= 60.0:
                per_minute.append(_minute(minute_start, now, pids, sent, arrivals, rss, diag))
                if progress:
                    print(json.dumps(per_minute[-1]), flush=True)
                minute_start = {"t": now, "cpu": {n: _cpu_s(p) for n, p in pids.items()}, "sent": dict(sent),
                                "arr": len(arrivals), "diag": {n: dict(v) for n, v in diag.items()}}
            ex.spin_once(timeout_sec=max(0.0, min(next_scan, next_imu) - time.perf_counter()))
        end = time.perf_counter() + 3.0
        while time.perf_counter() < end:
            ex.spin_once(timeout_sec=0.05)
        if time.perf_counter() - minute_start["t"] > 10:
            per_minute.append(_minute(minute_start, time.perf_counter(), pids, sent, arrivals, rss, diag))
        alive = b.poll() is None
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
        codes = b.stop()
    slopes = {}
    for n, pts in rss.items():
        t, r = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
        # first 30 s excluded: model loading, caches and the background filling up
        sel = t >= min(30.0, t.max() / 2) if len(t) else t
        slopes[n] = round(float(np.polyfit(t[sel] / 60, r[sel], 1)[0]), 2) if sel.sum() >= 3 else None
    return {"minutes": minutes, "rate_hz": rate, "beams": beams, "people": people, "wearers": wearers,
            "imu_topics": len(imu_pubs), "imu_sent_hz": len(imu_pubs) * IMU_RATE, "per_minute": per_minute,
            "rss_slope_mb_per_min": slopes, "rss_mb_last": {n: round(v[-1][1], 1) for n, v in rss.items() if v},
            "nodes_alive": alive, "exit_codes": codes, "outputs": len(arrivals),
            "diagnostics": {n: {k: v for k, v in d.items()} for n, d in diag.items()}}


DROPS = {"har_node": ("invalid", "decode_errors", "missing_periods", "duplicates", "backwards", "bad_stamps",
                      "stamps_held", "errors", "tracks_refused", "lost_tracks_evicted", "track_windows_evicted",
                      "track_windows_refused", "tube_caches_evicted", "fusion_tracks_evicted"),
         "matching_node": ("invalid", "late", "duplicate", "backwards", "bad_embeddings", "stale_batches", "errors")}


def _minute(start: dict, now: float, pids: dict, sent: dict, arrivals: list, rss: dict, diag: dict) -> dict:
    span = now - start["t"]
    lat = np.array([a[1] for a in arrivals[start["arr"]:]])
    out = {"seconds": round(span, 1), "scans_sent": sent["scans"] - start["sent"]["scans"],
           "imu_sent_hz": round((sent["imu"] - start["sent"]["imu"]) / span, 1), "outputs": len(lat),
           "latency_p50_ms": round(float(np.median(lat)), 1) if len(lat) else None,
           "latency_p95_ms": round(float(np.percentile(lat, 95)), 1) if len(lat) else None}
    for n, p in pids.items():
        out[f"{n}_rss_mb"] = round(float(np.mean([r for _, r in rss[n][-12:]])), 1) if rss[n] else None   # last 60 s
        out[f"{n}_cpu_percent"] = round(100 * (_cpu_s(p) - start["cpu"][n]) / span, 1)
        d, d0 = diag.get(n, {}), start["diag"].get(n, {})
        out[f"{n}_drops"] = {k: int(d.get(k, 0)) - int(d0.get(k, 0)) for k in DROPS[n] if k in d}
        if n == "har_node":
            out["har_node_scans_selected"] = int(d.get("scans_selected", 0)) - int(d0.get("scans_selected", 0))
        else:
            out["matching_node_imu_received_hz"] = round((int(d.get("imu", 0)) - int(d0.get("imu", 0))) / span, 1)
    return out


def table(r: dict) -> str:
    lines = [f"soak: {r['minutes']:g} min, {r['rate_hz']:g} Hz x {r['beams']} beams, {r['people']} people, "
             f"{r['wearers']} wearers x 4 IMUs at 100 Hz ({r['imu_sent_hz']:g} Imu msgs/s)", "",
             "| minute | scans sent / selected | outputs | latency p50 / p95 ms | har_node RSS MB / CPU % | "
             "matching_node RSS MB / CPU % | IMU received / sent Hz | drops (har_node; matching_node) |",
             "|---:|---|---:|---|---|---|---|---|"]
    for i, m in enumerate(r["per_minute"], 1):
        drops = "; ".join(", ".join(f"{k} {v}" for k, v in m.get(f"{n}_drops", {}).items() if v) or "none"
                          for n in ("har_node", "matching_node") if f"{n}_drops" in m)
        lines.append(f"| {i} | {m['scans_sent']} / {m.get('har_node_scans_selected')} | {m['outputs']} | "
                     f"{m['latency_p50_ms']} / {m['latency_p95_ms']} | {m.get('har_node_rss_mb')} / "
                     f"{m.get('har_node_cpu_percent')} | {m.get('matching_node_rss_mb', '-')} / "
                     f"{m.get('matching_node_cpu_percent', '-')} | {m.get('matching_node_imu_received_hz', '-')} / "
                     f"{m['imu_sent_hz']} | {drops} |")
    lines.append("")
    lines.append(f"RSS slope after the first 30 s (MB/min): {r['rss_slope_mb_per_min']}; nodes alive at the end: "
                 f"{r['nodes_alive']}")
    return "\n".join(lines)


IMU_RAMP_HZ = (100.0, 200.0, 400.0, 800.0, 1600.0)     # per Imu topic


def imu_rate(rates_hz=IMU_RAMP_HZ, seconds: float = 10.0, wearers: int = 4, progress: bool = True) -> dict:
    """The highest sensor_msgs/Imu message rate matching_node takes in: matching_node alone (no
    scans, so no matching: its IMU intake only) subscribed to ``wearers`` x 4 Imu topics, offered
    each per-topic rate of ``rates_hz`` in turn for ``seconds`` by this one Python process (every
    topic one message per tick, stamped with the wall clock). Per step: offered, sent (what the
    publisher managed) and received (matching_node's own count from its /diagnostics: samples
    accepted, plus those it dropped as invalid, duplicate or backwards) messages per second, and
    both processes' CPU; sustained: the highest step at which received was at least 99 % of sent."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Imu

    from despite_core.runtime.inference import default_bundle_path, load_bundle
    from despite_ros.bringup import Bringup, plan, use_shipped_dds_profile
    from despite_ros.nodes.har_node import to_time

    rates = [float(r) for r in rates_hz]
    if not rates or min(rates) <= 0 or seconds <= 0 or wearers < 1:
        raise ValueError("need rates > 0 Hz, --seconds > 0 and --wearers >= 1")
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    sites = load_bundle(default_bundle_path()).imu_layout.sites
    names = [f"w{k + 1}" for k in range(wearers)]
    b = Bringup(plan({"wearers": ",".join(names)}, overrides={"matching_node": {"providers": "cpu"}},
                     only=("matching_node",)), stdout=open(os.devnull, "w")).start()
    use_shipped_dds_profile()
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("despite_imu_rate", context=ctx)
    diag: dict[str, str] = {}
    seen = [0]

    def on_diag(msg):
        for st in msg.status:
            if st.name.startswith("matching_node"):
                diag.update({kv.key: kv.value for kv in st.values})
                seen[0] += 1

    def received() -> int:
        return sum(int(diag.get(k, 0)) for k in ("imu", "invalid", "duplicate", "backwards"))

    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 50)
    pubs = [node.create_publisher(Imu, f"/{w}/imu/{s}", qos_profile_sensor_data) for w in names for s in sites]
    ex = rclpy.executors.SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    pid = b.procs["matching_node"].pid
    msg = Imu()
    msg.orientation.w, msg.linear_acceleration.z = 1.0, 9.81
    steps = []

    def settle(s: float) -> None:
        """Spin until two diagnostics newer than now have come (each 1 s): the counts include all sent."""
        want, end = seen[0] + 2, time.monotonic() + s
        while (seen[0] < want or time.monotonic() < end) and time.monotonic() < end + 10:
            ex.spin_once(timeout_sec=0.05)

    try:
        deadline = time.monotonic() + 90
        while any(p.get_subscription_count() == 0 for p in pubs) or not diag:
            ex.spin_once(timeout_sec=0.1)
            if (done := b.poll()) is not None:
                raise RuntimeError(f"{done[0]} exited with code {done[1]} before the run started")
            if time.monotonic() > deadline:
                raise RuntimeError("matching_node did not subscribe and report within 90 s")
        settle(1.0)
        last_ns = 0
        for rate in rates:
            got0, cpu0, own0 = received(), _cpu_s(pid), time.process_time()
            sent, period = 0, 1.0 / rate
            t0 = time.perf_counter()
            tick, next_spin = t0, t0
            while (now := time.perf_counter()) - t0 < seconds:
                if now >= tick:
                    last_ns = max(time.time_ns(), last_ns + 1)
                    msg.header.stamp = to_time(last_ns)
                    for p in pubs:
                        p.publish(msg)
                    sent += len(pubs)
                    tick += period
                    if tick < now - 0.1:                  # more than 100 ms behind: the publisher is the limit
                        tick = now
                if now >= next_spin:
                    ex.spin_once(timeout_sec=0.0)
                    next_spin = now + 0.05
                elif tick > now:
                    time.sleep(min(tick - now, 0.001))
            span = time.perf_counter() - t0
            cpu, own = _cpu_s(pid) - cpu0, time.process_time() - own0
            settle(2.0)
            if (done := b.poll()) is not None:
                raise RuntimeError(f"{done[0]} exited with code {done[1]} at {rate:g} Hz per topic")
            got = received() - got0
            steps.append({"hz_per_topic": rate, "offered_msgs_per_s": round(rate * len(pubs), 1),
                          "sent_msgs_per_s": round(sent / span, 1), "received_msgs_per_s": round(got / span, 1),
                          "received_fraction": round(got / sent, 4) if sent else None,
                          "matching_node_cpu_percent": round(100 * cpu / span, 1),
                          "publisher_cpu_percent": round(100 * own / span, 1)})
            if progress:
                print(json.dumps(steps[-1]), flush=True)
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
        codes = b.stop()
    kept = [s for s in steps if s["received_fraction"] is not None and s["received_fraction"] >= 0.99]
    return {"topics": len(pubs), "wearers": wearers, "seconds_per_step": seconds, "steps": steps,
            "sustained_msgs_per_s": max((s["received_msgs_per_s"] for s in kept), default=None),
            "exit_codes": codes, "diagnostics": dict(diag)}


def imu_rate_table(r: dict) -> str:
    lines = [f"imu-rate: matching_node alone, {r['wearers']} wearers x 4 Imu topics ({r['topics']}), "
             f"{r['seconds_per_step']:g} s per step, one publishing process", "",
             "| Hz per topic | offered msgs/s | sent msgs/s | received msgs/s | received / sent | "
             "matching_node CPU % | publisher CPU % |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for s in r["steps"]:
        lines.append(f"| {s['hz_per_topic']:g} | {s['offered_msgs_per_s']:g} | {s['sent_msgs_per_s']:g} | "
                     f"{s['received_msgs_per_s']:g} | {s['received_fraction']} | {s['matching_node_cpu_percent']} | "
                     f"{s['publisher_cpu_percent']} |")
    lines += ["", f"highest rate received in full (>= 99 % of sent): {r['sustained_msgs_per_s']} msgs/s"]
    return "\n".join(lines)
